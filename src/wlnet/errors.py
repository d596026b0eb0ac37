"""The one hierarchy of user-facing errors.

Every message names the layer (or net), the port or option, what was expected, what was
received, and, where there is one, the fix.
"""

from __future__ import annotations


class NetError(Exception):
    """Base of every error wlnet raises for a user's mistake."""


class OptionError(NetError, ValueError):
    """A layer, net or function was given an unknown option or an option value it cannot take."""


class ShapeError(NetError, ValueError):
    """Array or port shapes that do not fit together."""


class InputError(NetError, ValueError):
    """Data supplied to a port that does not match the port."""


class InitializationError(NetError, RuntimeError):
    """A net was evaluated or trained while some of its arrays are missing."""


class ConstructionError(NetError, ValueError):
    """A NetChain or NetGraph whose topology is wrong (cycles, unknown layers or ports, ...)."""


class EncodingError(InputError):
    """A value a NetEncoder cannot encode, or a NetDecoder cannot decode."""


class TrainingError(NetError, ValueError):
    """Bad training data or options, detected before training starts."""


class ProcessGroupError(TrainingError, RuntimeError):
    """Data-parallel training stopped because another process stopped responding or failed."""


class NotSupportedError(NetError, NotImplementedError):
    """A valid request that this version cannot carry out."""


class FileFormatError(NetError, ValueError):
    """A file that Import cannot read as a net: missing, not a regular file, empty, truncated,
    corrupt, of another format, or written by a newer wlnet."""


class ExportError(NetError, ValueError):
    """A net that Export cannot write (a Python function where a named one is needed, a class
    that is not wlnet's), or a destination it cannot write to."""


def where(layer: str | None, port: str | None = None) -> str:
    """The prefix that places a message: 'LongShortTermMemoryLayer, port "Input": '."""
    parts = []
    if layer:
        parts.append(layer)
    if port:
        parts.append(f'port "{port}"')
    return (", ".join(parts) + ": ") if parts else ""


class NetWarning(UserWarning):
    """A warning about a run that went on but not as it should (e.g. training that diverged)."""
