"""wlnet: the Wolfram Language's recurrent neural-net framework on PyTorch."""

from .errors import (
    ConstructionError,
    EncodingError,
    InitializationError,
    InputError,
    NetError,
    NotSupportedError,
    OptionError,
    ShapeError,
    TrainingError,
)
from .info import Information, NetExtract, Options
from .initialize import NetInitialize
from .layers.recurrent import LongShortTermMemoryLayer
from .symbols import All, Automatic

__all__ = [
    "All",
    "Automatic",
    "ConstructionError",
    "EncodingError",
    "InitializationError",
    "InputError",
    "Information",
    "LongShortTermMemoryLayer",
    "NetError",
    "NetExtract",
    "NetInitialize",
    "NotSupportedError",
    "OptionError",
    "Options",
    "ShapeError",
    "TrainingError",
]
