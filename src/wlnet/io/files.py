"""Writing a file atomically: a crash mid-write never leaves a partial file under the target name.

Every file wlnet writes (.wlnet nets, .onnx models, training checkpoints) goes through
`atomic_write`. The temporary file is named `.wlnet-tmp-<host>-<pid>-<random>.tmp` (host: a
short hash of the machine's name), beside the target; one left by a process that was killed
mid-write is removed by the next write into that folder from the same machine, once no process
of that pid is running.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import tempfile

from ..core.errors import ExportError

TEMP_PREFIX = ".wlnet-tmp-"
_TEMP = re.compile(re.escape(TEMP_PREFIX) + r"([0-9a-f]{8})-([0-9]+)-.*\.tmp\Z", re.S)


def atomic_write(path, data, who: str = "Export", sync_directory: bool = True) -> None:
    """Write `data` to `path`: into a temporary file in the same directory, flushed to disk, then
    renamed over `path` (a rename within a directory is atomic). `data` is bytes-like, an
    iterable of bytes-like chunks, or a function that writes the file whose path it is given.

    A symbolic link is followed: the file it names is replaced, the link kept. An existing
    target that is not a regular file (a directory, a device such as /dev/null, a FIFO, a
    socket) is refused. A replaced file keeps its permission bits; a new one gets those the
    umask allows (as `open` would). On failure (a full disk, a file-size limit, an interrupt)
    the temporary file is removed and any old file under `path` is left as it was; an OSError
    becomes an ExportError naming the file. sync_directory=False leaves the flush of the rename
    itself to a later write in the same directory (the file is whole either way)."""
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if path.endswith(("/", os.sep)):
        raise ExportError(f"{who}: cannot write {path!r}: it names a directory; give a file name.")
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise ExportError(f"{who}: cannot write {path!r}: the directory {folder!r} does not exist.")
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    except OSError as e:
        raise ExportError(f"{who}: cannot write {path!r}: {e.strerror or e}.") from e
    if old is not None and not stat.S_ISREG(old.st_mode):
        raise ExportError(f"{who}: cannot write {path!r}: it is {_kind(old.st_mode)}, not a regular file; it was "
                          "left as it is. Give the name of a file.")
    mode = stat.S_IMODE(old.st_mode) if old is not None else 0o666 & ~_umask()
    remove_stale_temporaries(folder)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=temp_prefix(), suffix=".tmp")
        if callable(data):
            os.close(fd)
            data(tmp)
            _fsync_path(tmp)  # by name: the function may have made a new file under it
        else:
            with os.fdopen(fd, "r+b") as f:
                for chunk in (data,) if isinstance(data, bytes | bytearray | memoryview) else data:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
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


def temp_prefix() -> str:
    """The start of the name of this process's temporary files."""
    return f"{TEMP_PREFIX}{_host()}-{os.getpid()}-"


def remove_stale_temporaries(folder) -> list[str]:
    """Remove the temporary files in `folder` that writes on this machine left behind when their
    process was killed (no process of their pid runs); → the names removed. Those of running
    processes, of other machines (a shared folder) and any other file are kept."""
    if os.name != "posix":  # no way here to ask whether a pid runs without touching it
        return []
    removed = []
    host, me = _host(), os.getpid()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or m.group(1) != host:
            continue
        pid = int(m.group(2))
        try:
            if pid == me or _running(pid) or not entry.is_file(follow_symlinks=False):
                continue
            os.unlink(entry.path)
        except OSError:  # gone already (another writer cleaned it), or not ours to remove
            continue
        removed.append(entry.name)
    return removed


def _running(pid: int) -> bool:
    if pid <= 0:  # kill(0 or -n, 0) would ask about process groups
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it runs, as another user (EPERM)
        return True
    return True


def _host() -> str:
    return hashlib.blake2s(socket.gethostname().encode(errors="replace"), digest_size=4).hexdigest()


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _umask() -> int:
    """The process's umask, read without changing it where the system tells it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
