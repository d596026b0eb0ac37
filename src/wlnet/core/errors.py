"""The one hierarchy of user-facing errors.

Every message names the layer (or net), the port or option, what was expected, what was
received, and, where there is one, the fix.
"""

from __future__ import annotations


class NetError(Exception):
    """Base of every error wlnet raises for a user's mistake.

    >>> issubclass(OptionError, NetError) and issubclass(ShapeError, NetError)
    True
    """


class OptionError(NetError, ValueError):
    """A layer, net or function was given an unknown option or an option value it cannot take.

    >>> try:
    ...     LongShortTermMemoryLayer(0)
    ... except OptionError as e:
    ...     print(str(e).split(",")[0])
    LongShortTermMemoryLayer: n (the output size) must be a positive integer
    """


class ShapeError(NetError, ValueError):
    """Array or port shapes that do not fit together.

    >>> try:
    ...     NetChain([LongShortTermMemoryLayer(3), LinearLayer(2)], Input=("Varying", 2))
    ... except ShapeError:
    ...     print("a sequence cannot feed a LinearLayer")
    a sequence cannot feed a LinearLayer
    """


class InputError(NetError, ValueError):
    """Data supplied to a port that does not match the port.

    >>> try:
    ...     NetInitialize(LinearLayer(2, Input=3))([1, 2])
    ... except InputError as e:
    ...     print(str(e).split(" or")[0])
    LinearLayer: data supplied to port "Input" was a vector of size 2, but expected a vector of size 3
    """


class InitializationError(NetError, RuntimeError):
    """A net was evaluated or trained while some of its arrays are missing.

    >>> try:
    ...     LinearLayer(2, Input=3)([1, 2, 3])
    ... except InitializationError:
    ...     print("NetInitialize it first")
    NetInitialize it first
    """


class ConstructionError(NetError, ValueError):
    """A NetChain or NetGraph whose topology is wrong (cycles, unknown layers or ports, ...).

    >>> try:
    ...     NetGraph({"a": LinearLayer(2)}, [("a", "b")])
    ... except ConstructionError as e:
    ...     print(e)
    NetGraph: an edge refers to the layer 'b', but the layers are 'a'.
    """


class EncodingError(InputError):
    """A value a NetEncoder cannot encode, or a NetDecoder cannot decode.

    >>> try:
    ...     NetEncoder(("Characters", "ab")).encode("abc")
    ... except EncodingError as e:
    ...     print(str(e).split(".")[0])
    NetEncoder, port "Input": the character 'c' in 'abc' is not in the encoder's alphabet 'ab'
    """


class TrainingError(NetError, ValueError):
    """Bad training data or options, detected before training starts.

    >>> try:
    ...     NetTrain(NetInitialize(LinearLayer(1, Input=1)), [([1.0], [2.0])], ValidationSet=Scaled(0.5))
    ... except TrainingError as e:
    ...     print(e)
    NetTrain: ValidationSet=Scaled(0.5) needs at least 2 examples; the data has 1.
    """


class ProcessGroupError(TrainingError, RuntimeError):
    """Data-parallel training stopped because another process stopped responding or failed.

    >>> issubclass(ProcessGroupError, NetError)
    True
    """


class NotSupportedError(NetError, NotImplementedError):
    """A valid request that this version cannot carry out.

    >>> try:
    ...     NetTrain(NetInitialize(LinearLayer(1, Input=1)), [([1.0], [2.0])], WorkingPrecision="Mixed")
    ... except NotSupportedError:
    ...     print("not yet")
    not yet
    """


class FileFormatError(NetError, ValueError):
    """A file that Import cannot read as a net: missing, not a regular file, empty, truncated,
    corrupt, of another format, or written by a newer wlnet.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "bad.wlnet")
    >>> _ = open(path, "wb").write(b"not a net")
    >>> try:
    ...     Import(path)
    ... except FileFormatError:
    ...     print("not a net")
    not a net
    """


class ExportError(NetError, ValueError):
    """A net that Export cannot write (a Python function where a named one is needed, a class
    that is not wlnet's), or a destination it cannot write to.

    >>> import os, tempfile
    >>> try:
    ...     Export(os.path.join(tempfile.mkdtemp(), "f.wlnet"), NetInitialize(ElementwiseLayer(abs, Input=3)))
    ... except ExportError:
    ...     print("a Python function cannot be kept in a file")
    a Python function cannot be kept in a file
    """


def where(layer: str | None, port: str | None = None) -> str:
    """The prefix that places a message: 'LongShortTermMemoryLayer, port "Input": '."""
    parts = []
    if layer:
        parts.append(layer)
    if port:
        parts.append(f'port "{port}"')
    return (", ".join(parts) + ": ") if parts else ""


class NetWarning(UserWarning):
    """A warning about a run that went on but not as it should (e.g. training that diverged).

    >>> issubclass(NetWarning, Warning)
    True
    """
