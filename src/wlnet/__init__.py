"""wlnet: the Wolfram Language's recurrent neural-net framework on PyTorch."""

from .containers import NetChain, NetGraph
from .encoders import (
    DigitCharacter,
    LetterCharacter,
    LowercaseCharacter,
    NetDecoder,
    NetEncoder,
    PunctuationCharacter,
    UppercaseCharacter,
    WhitespaceCharacter,
    WordCharacter,
)
from .errors import (
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
from .info import Information, NetExtract, Options
from .initialize import NetInitialize
from .io import Export, Import
from .layers.basic import DropoutLayer, ElementwiseLayer, LinearLayer, SoftmaxLayer
from .layers.recurrent import BasicRecurrentLayer, GatedRecurrentLayer, LongShortTermMemoryLayer
from .layers.sequence import EmbeddingLayer, SequenceLastLayer, UnitVectorLayer
from .measure import NetMeasurements
from .net import NetPort
from .state import NetStateObject
from .symbols import All, Automatic
from .train import NetTrain, NetTrainResultsObject, Scaled

__all__ = [
    "All",
    "Automatic",
    "BasicRecurrentLayer",
    "ConstructionError",
    "DigitCharacter",
    "DropoutLayer",
    "ElementwiseLayer",
    "EmbeddingLayer",
    "EncodingError",
    "Export",
    "ExportError",
    "FileFormatError",
    "GatedRecurrentLayer",
    "Import",
    "Information",
    "InitializationError",
    "InputError",
    "LetterCharacter",
    "LinearLayer",
    "LongShortTermMemoryLayer",
    "LowercaseCharacter",
    "NetChain",
    "NetDecoder",
    "NetEncoder",
    "NetError",
    "NetExtract",
    "NetGraph",
    "NetInitialize",
    "NetMeasurements",
    "NetPort",
    "NetStateObject",
    "NetTrain",
    "NetTrainResultsObject",
    "NetWarning",
    "NotSupportedError",
    "OptionError",
    "ProcessGroupError",
    "Options",
    "PunctuationCharacter",
    "Scaled",
    "SequenceLastLayer",
    "ShapeError",
    "SoftmaxLayer",
    "TrainingError",
    "UnitVectorLayer",
    "UppercaseCharacter",
    "WhitespaceCharacter",
    "WordCharacter",
]
