"""Writing a file atomically: a crash mid-write never leaves a partial file under the target name."""

from __future__ import annotations

import os
import tempfile

from ..core.errors import ExportError


def atomic_write(path, data, who: str = "Export", sync_directory: bool = True) -> None:
    """Write `data` to `path`: into a temporary file in the same directory, flushed to disk, then
    renamed over `path` (a rename within a directory is atomic). `data` is bytes-like, an
    iterable of bytes-like chunks, or a function that writes the file whose path it is given.
    On failure the temporary file is removed and any old file under `path` is left as it was;
    an OSError becomes an ExportError naming the file. sync_directory=False leaves the flush of
    the rename itself to a later write in the same directory (the file is whole either way)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ExportError(f"{who}: cannot write {path!r}: the directory {folder!r} does not exist.")
    if os.path.isdir(path):
        raise ExportError(f"{who}: cannot write {path!r}: it is a directory.")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
        with os.fdopen(fd, "r+b") as f:
            if callable(data):
                data(tmp)
            else:
                for chunk in (data,) if isinstance(data, bytes | bytearray | memoryview) else data:
                    f.write(chunk)
                f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        if sync_directory:
            _sync_directory(folder)
    except OSError as e:
        raise ExportError(f"{who}: cannot write {path!r}: {e.strerror or e}.") from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _sync_directory(folder: str) -> None:
    """Flush the directory entry of the rename (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
