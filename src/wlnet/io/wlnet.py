"""wlnet's own file format, ".wlnet": one safetensors file.

The arrays are its tensors; the net's structure (`structure.py`: classes, constructor arguments,
options, port types, a format name and version) is a JSON document in its metadata under the
key "wlnet". Reading checks the safetensors header itself (sizes, offsets, dtypes) before the
safetensors library parses it, and loads nothing but tensors and JSON: no pickle, no code.

Checksums: the metadata entry "wlnet-checksums" holds the SHA-256 of the structure's JSON text
and of each array (its dtype, shape and bytes), `{"algorithm": "sha256", "document": HEX,
"arrays": {name: HEX}}`. Reading refuses a file whose structure or arrays do not match them
(damaged since it was written). A file without the entry (written before checksums were kept)
is read as before; a reader that predates them ignores the entry.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import re
import stat
from typing import NamedTuple

import torch

from ..core.errors import ExportError, FileFormatError, NotSupportedError
from ..core.net import Net
from ..nets.state import NetStateObject
from . import structure
from .files import atomic_write

MAX_HEADER = 64 * 2**20  # bytes of safetensors header (the JSON) accepted
HDF5 = b"\x89HDF\r\n\x1a\n"  # the signature of an HDF5 file (Wolfram's own .wlnet), at 0, 512, 1024, 2048, ...
CHECKSUMS = "wlnet-checksums"  # the metadata entry of the checksums
ITEM_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _safetensors():
    try:
        import safetensors.torch
    except ImportError:
        raise NotSupportedError(
            "Export/Import of .wlnet files needs the safetensors package: pip install 'wlnet[save]'."
        ) from None
    return safetensors.torch


# ---- writing --------------------------------------------------------------------------------------
def export_wlnet(path, obj, check: bool = True, sync_directory: bool = True) -> None:
    """Write a net or NetStateObject to `path` (atomically). Nothing is written when the net cannot
    be saved faithfully (check=False skips rebuilding it to make sure, for a net whose structure
    was checked before, such as each checkpoint of a run after the first)."""
    if not isinstance(obj, Net | NetStateObject):
        raise ExportError(f"Export: expected a net or a NetStateObject, but was given {type(obj).__name__}.")
    if isinstance(obj, NetStateObject):
        for pos, t in obj._states.items():  # a NaN or infinite state: the net overflowed on what it was given
            if not bool(torch.isfinite(t).all()):
                raise ExportError(f"Export: the NetStateObject's state at {pos!r} holds NaN or infinite values, which "
                                  "a file does not keep. Call reset() on it (or evaluate it on finite data) first.")
    with obj._lock if isinstance(obj, NetStateObject) else contextlib.nullcontext():  # not mid-evaluation
        doc, tensors = structure.encode(obj)
    name = obj.net.name if isinstance(obj, NetStateObject) else obj.name
    if check:
        try:  # what is written must read back: rebuild the net from the document now
            rebuilt = structure.decode(doc, tensors)
        except structure.StructureError as e:
            raise ExportError(f"Export: the {name} cannot be saved: rebuilt from what it keeps, {e}") from None
        _check_same(obj, rebuilt, name)
    write_document(path, doc, tensors, sync_directory=sync_directory)


def write_document(path, doc: dict, tensors: dict, key: str = "wlnet", who: str = "Export",
                   sync_directory: bool = True) -> None:
    """Write a safetensors file (atomically) of `tensors` whose metadata holds the JSON `doc` under `key`."""
    text = json.dumps(doc, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    metadata = {key: text, CHECKSUMS: json.dumps(checksums(text, tensors), separators=(",", ":"))}
    st = _safetensors()
    from safetensors import SafetensorError

    def save(tmp):
        try:
            st.save_file(tensors, tmp, metadata=metadata)
        except SafetensorError as e:  # its I/O errors (a full disk, a file-size limit) as the OSError they are
            raise _os_error(e) from e

    atomic_write(path, save, who, sync_directory)


def _os_error(e: Exception) -> OSError:
    """safetensors' error text "... I/O error: File too large (os error 27)" as OSError(27, ...)."""
    m = re.search(r"\(os error (\d+)\)", str(e))
    if m is None:
        return OSError(str(e))
    return OSError(int(m.group(1)), os.strerror(int(m.group(1))))


def checksums(text: str, tensors: dict) -> dict:
    """The checksums entry of a file whose structure is the JSON `text` and whose arrays are `tensors`."""
    return {"algorithm": "sha256", "document": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "arrays": {k: array_digest(t) for k, t in tensors.items()}}


def array_digest(t: torch.Tensor) -> str:
    """The SHA-256 (hex) of an array's dtype, shape and bytes: the bytes safetensors writes
    (little-endian), seen through a flat uint8 view of the contiguous tensor."""
    t = t.detach().cpu()
    h = hashlib.sha256(f"{structure.DTYPE_NAMES.get(t.dtype)} {list(t.shape)}\n".encode())
    if t.numel():
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _check_same(obj, rebuilt, name: str) -> None:
    a = obj.net if isinstance(obj, NetStateObject) else obj
    b = rebuilt.net if isinstance(rebuilt, NetStateObject) else rebuilt

    def summary(net):
        return ([(pos, leaf.name) for pos, leaf in net.leaves()],
                {k: None if t is None else (tuple(t.shape), t.dtype) for k, t in net.arrays().items()},
                net.input_ports(), net.output_ports(), net.state_positions())

    if summary(a) != summary(b):
        raise ExportError(f"Export: the {name} cannot be saved: rebuilt from the arguments it keeps, its layers, "
                          "arrays or ports differ from its own.")


# ---- reading --------------------------------------------------------------------------------------
def import_wlnet(path):
    """The net (or NetStateObject) in the .wlnet file `path`; a FileFormatError naming the file
    and what is wrong with it otherwise."""
    path = os.fspath(path)
    doc, tensors = read_document(path, WLNET, structure_version, uses=structure.tensor_names)
    try:
        return structure.decode(doc, tensors)
    except structure.StructureError as e:
        raise FileFormatError(f"Import: {path!r} cannot be read as a net: {e}") from None
    except RecursionError:
        raise _bad(path, WLNET, "its structure is nested too deeply") from None


class Kind(NamedTuple):
    """What a file is read as: its metadata key and the words of the messages."""

    key: str
    who: str
    what: str


WLNET = Kind("wlnet", "Import", ".wlnet file")


def read_document(path: str, kind: Kind, check=None, arrays: bool = True, uses=None) -> tuple[dict, dict | None]:
    """(the JSON document under kind.key in the metadata, {name: tensor}, or None without
    `arrays`) of a safetensors file, its header and checksums checked before the library reads
    it; `check(doc)` may raise a StructureError (a newer version) before the arrays are read, and
    `uses(doc)`, the set of array names the document can refer to, refuses arrays it cannot
    before any is read (a header may list a million)."""
    def before_entries(doc, header):
        if check is not None:
            try:
                check(doc)
            except structure.StructureError as e:
                raise _bad(path, kind, str(e)) from None
        if uses is not None and arrays:
            used = uses(doc)
            unused = [k for k in header if k != "__metadata__" and k not in used]
            if unused:
                raise _bad(path, kind, f"it holds {structure.unused_text(unused)}")

    header, doc, identity, sums = _read_header(path, kind, before_entries)
    return doc, _load_tensors(path, header, identity, kind, sums) if arrays else None


def structure_version(doc) -> None:
    if not isinstance(doc, dict):
        raise structure.StructureError("the structure is not a JSON object.")
    if doc.get("format") == structure.FORMAT:
        structure.check_not_newer(doc.get("version"))


def _bad(path: str, kind: Kind, reason: str) -> FileFormatError:
    return FileFormatError(f"{kind.who}: {path!r} is not a readable {kind.what}: {reason}.")


def _identity(st) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _read_header(path: str, kind: Kind, before_entries=None) -> tuple[dict, dict, tuple, dict | None]:
    """(the checked safetensors header, the wlnet document in it, the file's identity, its
    checksums or None); `before_entries` as `_parse_header` takes it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileFormatError(f"{kind.who}: {path!r} does not exist.") from None
    except OSError as e:
        raise FileFormatError(f"{kind.who}: cannot read {path!r}: {e.strerror or e}.") from None
    if stat.S_ISDIR(st.st_mode):
        raise FileFormatError(f"{kind.who}: {path!r} is a directory, not a file.")
    if not stat.S_ISREG(st.st_mode):
        raise FileFormatError(f"{kind.who}: {path!r} is not a regular file.")
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            size = st.st_size

            def read_at(offset: int) -> bytes:
                f.seek(offset)
                return f.read(8)

            head = f.read(8)
            if len(head) < 8:
                _recognise(path, read_at, size, kind)
                raise _bad(path, kind, "the file is empty" if not head else
                           f"it has {len(head)} bytes, fewer than the 8 of a .wlnet file's header length (truncated)")
            n = int.from_bytes(head, "little")
            if n > MAX_HEADER or n > size - 8:
                _recognise(path, read_at, size, kind)
                raise _bad(path, kind, f"its first 8 bytes give a header of {n} bytes, but "
                           + (f"at most {MAX_HEADER} are allowed (corrupt, or not a .wlnet file)" if n > MAX_HEADER
                              else f"only {size - 8} bytes follow (truncated, or not a .wlnet file)"))
            text = f.read(n)
            header, doc, sums = _parse_header(text, size - 8 - n, path,
                                              lambda: _recognise(path, read_at, size, kind), kind, before_entries)
    except OSError as e:
        raise FileFormatError(f"{kind.who}: cannot read {path!r}: {e.strerror or e}.") from None
    return header, doc, _identity(st), sums


def _load_tensors(path: str, header: dict, identity: tuple, kind: Kind, sums: dict | None = None) -> dict:
    """The file's arrays, read by the safetensors library (its header already checked here),
    each checked against its checksum in `sums` (when the file has them)."""
    names = {k for k in header if k != "__metadata__"}
    if not names:
        return {}
    _safetensors()
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            if f.metadata() != header["__metadata__"] or set(f.keys()) != names:
                raise _bad(path, kind, "it changed while it was read")
            tensors = {k: f.get_tensor(k) for k in names}
        if _identity(os.stat(path)) != identity:
            raise _bad(path, kind, "it changed while it was read")
    except FileFormatError:
        raise
    except Exception as e:  # the library's own checks (SafetensorError), or the file gone meanwhile
        raise _bad(path, kind, f"the safetensors library cannot read its arrays ({type(e).__name__}: {e})") from None
    for k, t in tensors.items():
        e = header[k]
        if list(t.shape) != e["shape"] or structure.DTYPE_NAMES.get(t.dtype) != e["dtype"]:
            raise _bad(path, kind, f"the safetensors library read the array {k!r} as {t.dtype} {list(t.shape)}, "
                       "not as its header says")
    if sums is not None:
        for k in header:
            if k != "__metadata__" and array_digest(tensors[k]) != sums["arrays"][k]:
                raise _bad(path, kind, f"the data of the array {k!r} does not match its checksum: the file is "
                           "damaged (changed since it was written)")
    return tensors


def _recognise(path: str, read_at, size: int, kind: Kind) -> None:
    """Name the formats a user may mistake for a .wlnet file (called once the file is known not
    to be a safetensors file: a header length may look like a pickle's first bytes)."""
    head = read_at(0)
    if head.startswith(HDF5):
        raise _wolfram(path, kind)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise _bad(path, kind, "it is a Python pickle (as pickle.dump and old torch.save write), and wlnet never "
                   "loads pickles: loading one can run any code. Save nets with Export(path, net)")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        raise _bad(path, kind, "it is a zip archive (torch.save writes zip archives of pickles), and wlnet never "
                   "loads pickles: loading one can run any code. Save nets with Export(path, net)")
    offset = 512  # an HDF5 file may start after a user block of 512, 1024, 2048, ... bytes
    while offset + 8 <= size:
        if read_at(offset) == HDF5:
            raise _wolfram(path, kind)
        offset *= 2


def _wolfram(path: str, kind: Kind) -> FileFormatError:
    return FileFormatError(
        f"{kind.who}: {path!r} is a Wolfram Language .wlnet file (HDF5 holding Wolfram-internal expressions), "
        "which wlnet cannot read. In Wolfram, export the net to ONNX (Export[\"net.onnx\", net]) and Import "
        "that file here."
    )


def _no_duplicates(pairs):
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise ValueError(f"the key {k[:60]!r} appears twice")
            seen.add(k)
    return out


def _no_constants(name):
    raise ValueError(f"{name} is not a JSON number")


def _json(text: str, collect: bool = True):
    """The JSON value of `text` (no duplicate keys, no NaN); collect=False pauses the cyclic
    garbage collector meanwhile (a header of a million objects parses in half the time; a
    parse makes no cycles)."""
    paused = not collect and gc.isenabled()
    if paused:
        gc.disable()
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    finally:
        if paused:
            gc.enable()


def _parse_header(text: bytes, data_size: int, path: str, recognise, kind: Kind,
                  before_entries=None) -> tuple[dict, dict, dict | None]:
    """The safetensors header ({name: entry}, each checked against the `data_size` bytes that
    follow it), the wlnet document in its metadata (checked against its checksum) and the
    checksums (None in a file written before they were kept). `before_entries(doc, header)`
    may refuse the document before the entries are checked."""
    try:
        header = _json(text.decode("utf-8"), collect=False)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        recognise()
        raise _bad(path, kind, f"its header is not valid JSON ({e}): corrupt, or not a {kind.what}") from None
    if not isinstance(header, dict):
        raise _bad(path, kind, "its header is not a JSON object")
    meta = header.get("__metadata__")
    if kind.key == WLNET.key and isinstance(meta, dict) and "wlnet-training" in meta:
        raise _bad(path, kind, "it holds the training state of a NetTrain checkpoint, not a net; Import the .wlnet "
                   "file written beside it")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()) or kind.key not in meta:
        raise _bad(path, kind, f"it is a safetensors file, but not one wlnet wrote (its header holds no {kind.key!r} "
                   "structure)")
    unknown = [k for k in meta if k not in (kind.key, CHECKSUMS)]
    if unknown:  # (a damaged name of the checksums would otherwise pass for a file without them)
        raise _bad(path, kind, f"its header holds the metadata entry {unknown[0][:60]!r}, which this wlnet does not "
                   "know (damaged, or written by a newer wlnet)")
    try:
        doc = _json(meta[kind.key])
    except (ValueError, RecursionError) as e:
        raise _bad(path, kind, f"its {kind.key} structure is not valid JSON ({e})") from None
    sums = _checksums(meta.get(CHECKSUMS), [k for k in header if k != "__metadata__"], path, kind)
    if sums is not None and hashlib.sha256(meta[kind.key].encode("utf-8")).hexdigest() != sums["document"]:
        raise _bad(path, kind, f"its {kind.key} structure does not match its checksum: the file is damaged (changed "
                   "since it was written)")
    if before_entries is not None:  # (before the entries: a header may list a million)
        before_entries(doc, header)
    spans = []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise _bad(path, kind, f"its header entry for the array {name!r} is not dtype, shape and data_offsets")
        dtype, shape, offsets = e["dtype"], e["shape"], e["data_offsets"]
        if dtype not in ITEM_SIZES:
            raise _bad(path, kind, f"the array {name!r} has the unknown dtype {dtype!r}")
        if not isinstance(shape, list) or len(shape) > 32 or not all(_count(d) for d in shape):
            raise _bad(path, kind, f"the array {name!r} has the shape {str(shape)[:60]}, not a list of sizes")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(d) for d in offsets):
            raise _bad(path, kind, f"the array {name!r} has the data offsets {str(offsets)[:60]}, not two byte "
                       "positions")
        count = 1
        for d in shape:
            count *= d
        if offsets[1] - offsets[0] != count * ITEM_SIZES[dtype]:
            raise _bad(path, kind, f"the array {name!r} ({dtype} {shape}) needs {count * ITEM_SIZES[dtype]} bytes, but "
                       f"its data offsets span {offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise _bad(path, kind, f"the data of the array {name!r} starts at byte {begin} of the data, not at {end}")
        end = stop
    if end != data_size:
        raise _bad(path, kind, f"its arrays take {end} bytes after the header, but {data_size} follow "
                   + ("(truncated)" if end > data_size else "(extra bytes: corrupt)"))
    return header, doc, sums


def _checksums(text: str | None, names: list, path: str, kind: Kind) -> dict | None:
    """The checksums entry, checked to be one this wlnet reads and to name the arrays `names`."""
    if text is None:
        return None
    try:
        sums = _json(text)
    except (ValueError, RecursionError):
        sums = None
    if not isinstance(sums, dict) or set(sums) != {"algorithm", "document", "arrays"} or \
            not isinstance(sums["arrays"], dict) or \
            not all(isinstance(v, str) for v in (sums["algorithm"], sums["document"], *sums["arrays"].values())):
        raise _bad(path, kind, f"its {CHECKSUMS} entry is not a table of checksums (damaged)")
    if sums["algorithm"] != "sha256":
        raise _bad(path, kind, f"its checksums are of the kind {sums['algorithm'][:40]!r}, which this wlnet does not "
                   "know (damaged, or written by a newer wlnet)")
    listed = sums["arrays"]
    if len(listed) != len(names) or not all(k in listed for k in names):
        odd = next((k for k in names if k not in listed), None)
        what = f"the array {odd!r} has none" if odd is not None else \
            f"they name {next(k for k in listed if k not in set(names))[:60]!r}, which the file does not hold"
        raise _bad(path, kind, f"its checksums do not match its arrays ({what}): the file is damaged")
    return sums


def _count(d) -> bool:
    return isinstance(d, int) and not isinstance(d, bool) and d >= 0
