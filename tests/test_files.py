"""The one atomic write behind every file wlnet writes (.wlnet, .onnx, checkpoints): targets that
are not regular files refused and left alone, full disks and file-size limits as ExportErrors
with the old file intact and no temporary left, and temporaries of killed writes recognised and
removed by the next write."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time

import pytest

import wlnet as w
from wlnet.io import files

HOST = hashlib.blake2s(socket.gethostname().encode(), digest_size=4).hexdigest()


def small_net():
    return w.NetInitialize(w.LinearLayer(2, Input=3))


def writers(path):
    """Each way wlnet writes a file, as a function of the target path."""
    def onnx():
        pytest.importorskip("onnx")
        from wlnet.io.onnx import export_onnx

        export_onnx(path, small_net())

    return {
        "bytes": lambda: files.atomic_write(path, b"new bytes"),
        "wlnet": lambda: w.Export(path, small_net(), "WLNet"),
        "onnx": onnx,
    }


@pytest.mark.parametrize("how", ["bytes", "wlnet", "onnx"])
def test_a_fifo_is_refused_and_left_a_fifo(tmp_path, how):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    with pytest.raises(w.ExportError, match=re.escape(f"cannot write {str(path)!r}: it is a FIFO (named pipe), not a "
                                                      "regular file")):
        writers(path)[how]()
    assert stat.S_ISFIFO(os.lstat(path).st_mode)
    assert os.listdir(tmp_path) == ["pipe"]


def test_a_socket_and_a_directory_are_refused(tmp_path):
    path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        with pytest.raises(w.ExportError, match="it is a socket, not a regular file"):
            files.atomic_write(path, b"x")
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        server.close()
    (tmp_path / "d").mkdir()
    with pytest.raises(w.ExportError, match="it is a directory"):
        files.atomic_write(tmp_path / "d", b"x")
    with pytest.raises(w.ExportError, match="names a directory"):
        files.atomic_write(str(tmp_path / "new") + "/", b"x")
    assert sorted(os.listdir(tmp_path)) == ["d", "s"] and not os.listdir(tmp_path / "d")


@pytest.fixture
def no_renames(monkeypatch):
    """A safety net for tests that aim writes at device nodes: a rename or unlink of anything under
    /dev fails instead of replacing the device (the assertions name the refusal, not this)."""
    real_replace, real_unlink = os.replace, os.unlink

    def guarded(real):
        def call(a, *rest, **kw):
            if any(os.path.abspath(os.fspath(p)).startswith("/dev/") for p in (a, *rest[:1])):
                raise OSError(errno.EPERM, "safety net: no renames under /dev in tests")
            return real(a, *rest, **kw)
        return call

    monkeypatch.setattr(files.os, "replace", guarded(real_replace))
    monkeypatch.setattr(files.os, "unlink", guarded(real_unlink))


@pytest.mark.skipif(not os.access("/dev/null", os.W_OK) or not os.path.exists("/dev/null"),
                    reason="/dev/null is not writable here")
def test_dev_null_is_refused_and_stays_a_character_device(tmp_path, no_renames):
    before = os.stat("/dev/null")
    assert stat.S_ISCHR(before.st_mode)
    for target in ("/dev/null", tmp_path / "link"):  # and through a symbolic link to it
        if target != "/dev/null":
            os.symlink("/dev/null", target)
        with pytest.raises(w.ExportError, match=re.escape(f"cannot write {str(target)!r}: it is a character device, "
                                                          "not a regular file")):
            files.atomic_write(target, b"x")
    with pytest.raises(w.ExportError, match="it is a character device"):
        w.Export("/dev/null", small_net(), "WLNet")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    assert os.path.islink(tmp_path / "link") and os.listdir(tmp_path) == ["link"]
    assert not [n for n in os.listdir("/dev") if n.startswith(files.TEMP_PREFIX)]


# ---- full disks and size limits ------------------------------------------------------------------
def test_a_writer_that_runs_out_of_space_leaves_the_old_file(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"old")
    seen = []

    def writer(tmp):
        seen.append(tmp)
        with open(tmp, "wb") as f:
            f.write(b"half of the new")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(w.ExportError, match=re.escape(f"Export: cannot write {str(path)!r}: No space left on device.")):
        files.atomic_write(path, writer)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.bin"]
    assert seen and not os.path.exists(seen[0])


def test_mkstemp_failing_is_an_export_error_and_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "net.wlnet"
    w.Export(path, small_net())
    before = path.read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.tempfile, "mkstemp", full)
    with pytest.raises(w.ExportError, match=re.escape(f"cannot write {str(path)!r}: No space left on device.")):
        w.Export(path, w.NetInitialize(w.LinearLayer(5, Input=3)))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["net.wlnet"]


FSIZE = textwrap.dedent("""
    import os, resource, sys
    import wlnet as w
    from wlnet.io.onnx import export_onnx

    folder = sys.argv[1]
    small = w.NetInitialize(w.LinearLayer(1, Input=1))
    big = w.NetInitialize(w.LinearLayer(200, Input=200))  # 160 kB of weights
    for name in ("net.wlnet", "net.onnx"):
        w.Export(os.path.join(folder, name), small)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
    for name in ("net.wlnet", "net.onnx"):
        try:
            w.Export(os.path.join(folder, name), big)
        except w.ExportError as e:
            print(name, "|", e)
        else:
            print(name, "| written")
""")


def test_a_file_size_limit_is_an_export_error_and_keeps_the_old_file(tmp_path):
    pytest.importorskip("onnx")
    resource = pytest.importorskip("resource")
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    if hard != resource.RLIM_INFINITY and hard < 65536:
        pytest.skip("the file-size limit here is already below the test's")
    script = tmp_path / "fsize.py"
    script.write_text(FSIZE)
    folder = tmp_path / "out"
    folder.mkdir()
    out = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" | ", 1) for line in out.stdout.strip().splitlines())
    for name in ("net.wlnet", "net.onnx"):
        assert re.search(rf"cannot write .*{re.escape(name)}'?: File too large", lines[name]), lines
    assert sorted(os.listdir(folder)) == ["net.onnx", "net.wlnet"]
    assert w.Import(folder / "net.wlnet").input_form() == w.NetInitialize(w.LinearLayer(1, Input=1)).input_form()
    assert os.path.getsize(folder / "net.onnx") < 65536


# ---- temporaries of killed writes --------------------------------------------------------------------
def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_temporary_file_is_named_by_a_fixed_prefix_the_host_and_the_pid(tmp_path):
    seen = []

    def writer(tmp):
        seen.append(os.path.basename(tmp))
        with open(tmp, "wb") as f:
            f.write(b"x")

    files.atomic_write(tmp_path / "a.bin", writer)
    assert re.fullmatch(rf"\.wlnet-tmp-{HOST}-{os.getpid()}-.+\.tmp", seen[0]), seen
    assert os.listdir(tmp_path) == ["a.bin"]


def test_stale_temporaries_of_gone_processes_are_removed_by_the_next_write(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f".wlnet-tmp-{HOST}-{dead_pid()}-abc123.tmp",
            "live": f".wlnet-tmp-{HOST}-{live.pid}-def456.tmp",
            "mine": f".wlnet-tmp-{HOST}-{os.getpid()}-ghi789.tmp",
            "other host": f".wlnet-tmp-{'0' * 8 if HOST != '0' * 8 else '1' * 8}-{dead_pid()}-jkl.tmp",
            "not ours": ".net.wlnet.abc.tmp",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        files.atomic_write(tmp_path / "net.bin", b"whole")
        left = set(os.listdir(tmp_path))
        assert names["dead"] not in left
        assert left == {"net.bin", *(n for k, n in names.items() if k != "dead")}
    finally:
        live.kill()
        live.wait()
    files.atomic_write(tmp_path / "net.bin", b"whole again")  # the live one's process is gone now
    assert names["live"] not in set(os.listdir(tmp_path)) and names["mine"] in set(os.listdir(tmp_path))


KILLED = textwrap.dedent("""
    import sys, time
    from wlnet.io import files

    def writer(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
            f.flush()
        open(sys.argv[2], "w").close()
        time.sleep(120)

    files.atomic_write(sys.argv[1], writer)
""")


def test_a_write_killed_midway_leaves_a_temporary_the_next_write_removes(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "net.bin").write_bytes(b"old")
    script, ready = tmp_path / "killed.py", tmp_path / "ready"
    script.write_text(KILLED)
    p = subprocess.Popen([sys.executable, str(script), str(folder / "net.bin"), str(ready)],
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.monotonic() + 60
    while not ready.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL
    left = sorted(os.listdir(folder))
    assert len(left) == 2 and left[1] == "net.bin" and (folder / "net.bin").read_bytes() == b"old"
    assert left[0].startswith(f".wlnet-tmp-{HOST}-{p.pid}-")
    w.Export(folder / "other.wlnet", small_net())  # any write into the folder
    assert sorted(os.listdir(folder)) == ["net.bin", "other.wlnet"]


# ---- what the replaced file keeps ------------------------------------------------------------------
def test_permissions_are_kept_on_replace_and_follow_the_umask_when_new(tmp_path):
    old_mask = os.umask(0o027)
    try:
        w.Export(tmp_path / "new.wlnet", small_net())
        files.atomic_write(tmp_path / "new.bin", b"x")
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(os.stat(tmp_path / "new.wlnet").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "new.bin").st_mode) == 0o640
    path = tmp_path / "kept.wlnet"
    w.Export(path, small_net())
    os.chmod(path, 0o604)
    w.Export(path, small_net())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o604


def test_a_symbolic_link_is_followed_and_kept(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "net.bin").write_bytes(b"old")
    os.symlink(real / "net.bin", tmp_path / "link.bin")
    files.atomic_write(tmp_path / "link.bin", b"new")
    assert os.path.islink(tmp_path / "link.bin") and (real / "net.bin").read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["link.bin", "real"] and os.listdir(real) == ["net.bin"]
