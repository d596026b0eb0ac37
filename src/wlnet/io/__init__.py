"""Export and Import: keeping nets in files, the format chosen by the extension (or named).

".wlnet" is wlnet's own safe format (`wlnet.io.wlnet`); ".onnx" is ONNX (`wlnet.io.onnx`). The
modules of each format, and the libraries they need, are imported only when a file of that
format is written or read.
"""

from __future__ import annotations

import importlib
import os

from ..core.errors import NotSupportedError, OptionError

FORMATS = {"WLNet": ".wlnet", "ONNX": ".onnx"}  # Wolfram's format names and their extensions


def _format(path, fmt, who: str) -> str:
    if not isinstance(path, str | os.PathLike):
        raise OptionError(f"{who}: the file name must be a string or a path, but was given {type(path).__name__}.")
    names = ", ".join(f'"{k}" ({e})' for k, e in FORMATS.items())
    if fmt is not None:
        for name in FORMATS:
            if isinstance(fmt, str) and fmt.lower() == name.lower():
                return name
        raise OptionError(f"{who}: {fmt!r} is not a format wlnet knows; the formats are {names}.")
    ext = os.path.splitext(os.fspath(path))[1].lower()
    for name, e in FORMATS.items():
        if ext == e:
            return name
    raise OptionError(
        f"{who}: cannot tell the format of {os.fspath(path)!r} from its extension {ext or '(none)'!r}; the "
        f"formats are {names}. Use one of these extensions, or name the format: "
        f"{who}(path, {'net, ' if who == 'Export' else ''}\"WLNet\")."
    )


def _onnx():
    try:
        return importlib.import_module(".onnx", __name__)
    except ModuleNotFoundError as e:
        if e.name == __name__ + ".onnx":
            raise NotSupportedError("ONNX files cannot be read or written: this wlnet has no ONNX support.") from None
        if e.name and e.name.split(".")[0] in ("onnx", "onnxruntime", "onnxscript"):
            raise NotSupportedError(f"ONNX files need the {e.name.split('.')[0]} package: pip install "
                                    "'wlnet[onnx]'.") from None
        raise


def Export(path, net, fmt=None) -> str:
    """Export(path, net) writes a net (or a NetStateObject, with its stored states) to a file in
    the format of the extension: ".wlnet" (wlnet's own) or ".onnx". Export(path, net, "WLNet")
    names the format. The file is written atomically (`files.atomic_write`: an interrupted write
    leaves any old file as it was; a path naming a device, a FIFO or a directory is refused);
    returns the path.

    >>> Export("net.wlnet", NetInitialize(LinearLayer(2, Input=3)))  # doctest: +SKIP
    'net.wlnet'
    """
    fmt = _format(path, fmt, "Export")
    if fmt == "WLNet":
        from .wlnet import export_wlnet

        export_wlnet(path, net)
    else:
        _onnx().export_onnx(path, net)
    return os.fspath(path)


def Import(path, fmt=None):
    """Import(path) reads the net in a ".wlnet" or ".onnx" file (a NetStateObject comes back as
    one); Import(path, "WLNet") names the format. A file that is not a readable net of that
    format is a FileFormatError naming the file and what is wrong. Reading a .wlnet file never
    runs code from it.

    >>> net = Import("net.wlnet")  # doctest: +SKIP
    """
    fmt = _format(path, fmt, "Import")
    if fmt == "WLNet":
        from .wlnet import import_wlnet

        return import_wlnet(path)
    return _onnx().import_onnx(path)


__all__ = ["Export", "Import"]
