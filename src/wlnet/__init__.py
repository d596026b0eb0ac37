"""wlnet: the Wolfram Language's recurrent neural-net framework on PyTorch."""

from .coders.decoders import NetDecoder
from .coders.encoders import (
    DigitCharacter,
    LetterCharacter,
    LowercaseCharacter,
    NetEncoder,
    PunctuationCharacter,
    UppercaseCharacter,
    WhitespaceCharacter,
    WordCharacter,
)
from .core.errors import (
    ConstructionError,
    EncodingError,
    ExportError,
    FileFormatError,
    InitializationError,
    InputError,
    NetError,
    NetWarning,
    NotSupportedError,
    OptionError,
    ProcessGroupError,
    ShapeError,
    TrainingError,
)
from .core.net import NetPort
from .core.symbols import All, Automatic
from .io import Export, Import
from .io.torch import from_torch, to_torch
from .layers.attention import AttentionLayer, SequenceAttentionLayer
from .layers.basic import DropoutLayer, ElementwiseLayer, LinearLayer, SoftmaxLayer
from .layers.conv import ConvolutionLayer, PoolingLayer
from .layers.ctc import CTCLossLayer
from .layers.extend import AppendLayer, DotLayer, PaddingLayer, PrependLayer
from .layers.join import CatenateLayer, ThreadingLayer, TotalLayer
from .layers.loss import CrossEntropyLossLayer, MeanAbsoluteLossLayer, MeanSquaredLossLayer
from .layers.normalization import BatchNormalizationLayer, NormalizationLayer
from .layers.recurrent import BasicRecurrentLayer, GatedRecurrentLayer, LongShortTermMemoryLayer
from .layers.sequence import (
    AggregationLayer,
    EmbeddingLayer,
    SequenceLastLayer,
    SequenceMostLayer,
    SequenceRestLayer,
    SequenceReverseLayer,
    UnitVectorLayer,
)
from .layers.shape import FlattenLayer, PartLayer, ReplicateLayer, ReshapeLayer, SequenceIndicesLayer
from .nets.containers import NetChain, NetGraph
from .nets.edit import NetAppend, NetDelete, NetDrop, NetInsert, NetJoin, NetPrepend, NetTake, Normal
from .nets.gradient import NetPortGradient
from .nets.initialize import NetInitialize
from .nets.measure import NetMeasurements
from .nets.operators import NetBidirectionalOperator, NetMapOperator, NetNestOperator
from .nets.rewrite import NetFlatten, NetRename, NetReplace, NetReplacePart
from .nets.state import NetStateObject
from .show.info import Information, NetExtract, Options
from .train.api import NetTrain, NetTrainResultsObject, Scaled
from .wolfram import from_wolfram, to_wolfram

__all__ = [
    "AggregationLayer",
    "All",
    "AppendLayer",
    "AttentionLayer",
    "Automatic",
    "BasicRecurrentLayer",
    "BatchNormalizationLayer",
    "CTCLossLayer",
    "CatenateLayer",
    "ConstructionError",
    "ConvolutionLayer",
    "CrossEntropyLossLayer",
    "DigitCharacter",
    "DotLayer",
    "DropoutLayer",
    "ElementwiseLayer",
    "EmbeddingLayer",
    "EncodingError",
    "Export",
    "ExportError",
    "FileFormatError",
    "FlattenLayer",
    "GatedRecurrentLayer",
    "Import",
    "Information",
    "InitializationError",
    "InputError",
    "LetterCharacter",
    "LinearLayer",
    "LongShortTermMemoryLayer",
    "LowercaseCharacter",
    "MeanAbsoluteLossLayer",
    "MeanSquaredLossLayer",
    "NetAppend",
    "NetBidirectionalOperator",
    "NetChain",
    "NetDecoder",
    "NetDelete",
    "NetDrop",
    "NetEncoder",
    "NetError",
    "NetExtract",
    "NetFlatten",
    "NetGraph",
    "NetInitialize",
    "NetInsert",
    "NetJoin",
    "NetMapOperator",
    "NetMeasurements",
    "NetNestOperator",
    "NetPort",
    "NetPortGradient",
    "NetPrepend",
    "NetRename",
    "NetReplace",
    "NetReplacePart",
    "NetStateObject",
    "NetTake",
    "NetTrain",
    "NetTrainResultsObject",
    "NetWarning",
    "Normal",
    "NormalizationLayer",
    "NotSupportedError",
    "OptionError",
    "Options",
    "PaddingLayer",
    "PartLayer",
    "PoolingLayer",
    "PrependLayer",
    "ProcessGroupError",
    "PunctuationCharacter",
    "ReplicateLayer",
    "ReshapeLayer",
    "Scaled",
    "SequenceAttentionLayer",
    "SequenceIndicesLayer",
    "SequenceLastLayer",
    "SequenceMostLayer",
    "SequenceRestLayer",
    "SequenceReverseLayer",
    "ShapeError",
    "SoftmaxLayer",
    "ThreadingLayer",
    "TotalLayer",
    "TrainingError",
    "UnitVectorLayer",
    "UppercaseCharacter",
    "WhitespaceCharacter",
    "WordCharacter",
    "from_torch",
    "from_wolfram",
    "to_torch",
    "to_wolfram",
]
