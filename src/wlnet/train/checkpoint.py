"""TrainingProgressCheckpointing: the checkpoints NetTrain writes, and resuming from them exactly.

("Directory", dir[, settings]) writes, every Interval rounds, the net with its current arrays as
dir/<run>_round-00005.wlnet (Export's format; <run> the time the run started, to the
millisecond) and beside it dir/<run>_round-00005.training: a safetensors file (no pickle)
whose JSON metadata holds the round, the seed, the run's fingerprint and identity
(`fingerprint`, `identity`), and {name: state} of every stateful part of the run (`hooks`: the
run's records, the optimizer, the source of batches, the dropout generators, the validation's
best arrays, the stopping rule's and the rounds' memory, the warnings given), their tensors
(the arrays in the working precision, the optimizer's state, the generators' states, the order
of the examples still to come) stored as the file's tensors.
("File", path[, settings]) overwrites path and path + ".training" instead. Every file is written
atomically, the .training file last: a checkpoint exists once it is complete, so a process
killed at any moment leaves the previous one intact.

Settings: {"Interval": rounds (or ("Rounds", n); default 1), "Resume": True | False (default)}.
With "Resume" True, NetTrain continues from the latest complete checkpoint of the same run and
ends as a run that was never interrupted would: same arrays, same loss lists. The same run: the
same net (structure and the content of the arrays it starts from), data and ValidationSet as
given, losses, BatchSize, RoundLength, Method, precision, RandomSeeding and number of
processes, hashed into the run's identity, by which its checkpoints are found. Several runs may
share a directory: each resumes its own latest checkpoint and leaves the others'; a run that
finds none of its own starts afresh, with a warning naming what differs from the latest
checkpoint there. A "File" holds one checkpoint: another run's is an error, not overwritten.
Under torchrun rank 0's net and data identify the run, rank 0 writes, and every rank reads the
same checkpoint, which must lie on a file system all of them see.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import time
import warnings

import numpy as np
import torch

from ..core import options as O
from ..core.errors import FileFormatError, NetError, NetWarning, OptionError, TrainingError
from ..io.structure import StructureError, json_value, python_value
from .data import Problem

WHO = "NetTrain"
KEY = "wlnet-training"
FORMAT_VERSION = 3  # 3: the run's identity; 2: {name: part.state_dict()}; 1: a fixed list of fields
ROUND_FILE = re.compile(r"^(?P<run>.+)_round-(?P<round>\d+)\.training$")


class Checkpointing:
    """The parsed option: kind ("Directory" | "File"), path, interval (rounds), resume."""

    def __init__(self, spec):
        form = ('("Directory", dir), ("File", path), or either with a third element of settings '
                '{"Interval": rounds, "Resume": True}')
        if not isinstance(spec, tuple | list) or len(spec) not in (2, 3) or spec[0] not in ("Directory", "File") \
                or not isinstance(spec[1], str | os.PathLike):
            raise OptionError(f"{WHO}: TrainingProgressCheckpointing must be None, {form}, but was given {spec!r}.")
        self.kind, self.path = spec[0], os.fspath(spec[1])
        settings = spec[2] if len(spec) == 3 else {}
        if not isinstance(settings, dict):
            raise OptionError(f"{WHO}: TrainingProgressCheckpointing: the settings must be a dict, but were given "
                              f"{settings!r}. The form is {form}.")
        for k in settings:
            if k not in ("Interval", "Resume"):
                raise OptionError(f'{WHO}: TrainingProgressCheckpointing: {k!r} is not a setting; the settings are '
                                  '"Interval" and "Resume".')
        iv = settings.get("Interval", 1)
        if isinstance(iv, tuple | list) and len(iv) == 2 and iv[0] == "Rounds":
            iv = iv[1]
        if isinstance(iv, bool) or not isinstance(iv, int) or iv < 1:
            raise OptionError(f'{WHO}: TrainingProgressCheckpointing: "Interval" must be a positive number of rounds '
                              f'(n or ("Rounds", n)), but was given {settings["Interval"]!r}.')
        self.interval = iv
        self.resume = settings.get("Resume", False)
        if not isinstance(self.resume, bool):
            raise OptionError(f'{WHO}: TrainingProgressCheckpointing: "Resume" must be True or False, but was given '
                              f"{self.resume!r}.")
        if self.kind == "File" and os.path.isdir(self.path):
            raise OptionError(f'{WHO}: TrainingProgressCheckpointing: ("File", {self.path!r}) names a directory; use '
                              f'("Directory", {self.path!r}) to write a file per checkpoint there.')

    def files(self, run: str, r: int) -> tuple[str, str]:
        """(the net's file, the training state's file) of round r."""
        if self.kind == "File":
            return self.path, self.path + ".training"
        stem = os.path.join(self.path, f"{run}_round-{r:05d}")
        return stem + ".wlnet", stem + ".training"

    def candidates(self) -> list[str]:
        """The training-state files that may be resumed from."""
        if self.kind == "File":
            return [self.path + ".training"] if os.path.isfile(self.path + ".training") else []
        if not os.path.isdir(self.path):
            return []
        return [p for p in glob.glob(os.path.join(glob.escape(self.path), "*.training"))
                if ROUND_FILE.match(os.path.basename(p))]


# ---- the training state as JSON, its arrays as the file's tensors ------------------------------------------
def encode(state, tensors: dict, label: str):
    """A part's state as JSON (`structure.json_value`), each tensor or numpy array put in
    `tensors` (CPU copies, named label/0, label/1, ...) and written as {"$tensor": name} or
    {"$numpy": name}, a function as {"$function": its name}."""
    def other(v):
        if isinstance(v, torch.Tensor | np.ndarray):
            name = f"{label}/{len(tensors)}"
            tensors[name] = torch.as_tensor(v).detach().cpu().contiguous().clone()
            return {"$numpy" if isinstance(v, np.ndarray) else "$tensor": name}
        if isinstance(v, np.generic):
            return json_value(v.item(), other)
        if callable(v):
            return {"$function": getattr(v, "__name__", "function")}
        raise TrainingError(f"{WHO}: the training state holds {v!r}, which a checkpoint cannot hold.")

    return json_value(state, other)


def decode(v, tensors: dict, where: str):
    """`encode`'s JSON back (a function as its name)."""
    def tagged(tag, x, depth, at):
        if tag in ("$tensor", "$numpy"):
            if not isinstance(x, str) or x not in tensors:
                raise StructureError(f"{at} refers to the array {x!r}, which the file does not hold.")
            t = tensors[x].clone()
            return t.numpy() if tag == "$numpy" else t
        if tag == "$function" and isinstance(x, str):
            return x
        raise StructureError(f"{at} has the unknown tag {tag!r}.")

    return python_value(v, tagged, where)


def array_content(arrays: dict) -> str:
    """A hash (BLAKE2b, hex) of arrays {key: tensor}: their keys, shapes, dtypes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for key in sorted(arrays, key=repr):
        t = arrays[key].detach()
        h.update(f"{key!r} {list(t.shape)} {t.dtype}\n".encode())
        if t.numel():
            h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _structure(net) -> str:
    """A hash of the net without its arrays' values: its layers, options and ports as a file holds
    them (a net a file cannot hold, with a Python function in it: its layers' kinds and places)."""
    from ..io import structure

    try:
        doc, _ = structure.encode(net)
        text = json.dumps(doc, sort_keys=True, default=str)
    except NetError:
        text = repr([(pos, type(leaf).__name__) for pos, leaf in net.leaves()])
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def fingerprint(net, reading, o, world: int) -> dict:
    """What makes a run this run: the net it starts from (its structure, and its arrays' content
    once initialized: a net not initialized, with RandomSeeding Automatic, is initialized with the
    seed of the checkpoint resumed from), the data and ValidationSet as given, and the options
    that shape the training. `reading` is `sources.Reading`."""
    v = reading.validation
    return {
        "net": _structure(net),
        "arrays": array_content(net.arrays()) if net.initialized() else "drawn with the run's seed",
        "data": reading.problem.data.digest() if reading.generator is None else "generator",
        "validation": "none" if v is None else v.data.digest() if isinstance(v, Problem) else repr(v),  # or Scaled(f)
        "losses": sorted(reading.problem.losses.items()),
        "BatchSize": o.batch_size,
        "RoundLength": o.round_length,
        "Method": [o.method, dict(o.settings)],
        "WorkingPrecision": str(o.dtype),
        "RandomSeeding": O.seed(o.seeding, WHO),
        "processes": world,
    }


def identity(fp: dict) -> str:
    """The fingerprint's hash: the name a run's checkpoints are found by."""
    text = json.dumps(encode(fp, {}, ""), sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _normal(fp) -> object:
    """A fingerprint as it reads back from a file (tuples, names of functions), to compare."""
    return decode(encode(fp, {}, ""), {}, "the fingerprint")


def differences(saved, fp: dict) -> str:
    """What differs between a checkpoint's fingerprint (as the file holds it) and `fp`, in words."""
    try:
        saved = decode(saved, {}, "the fingerprint")
    except StructureError:
        return "fingerprint cannot be read"
    now = _normal(fp)
    differ = [k for k in now if not isinstance(saved, dict) or saved.get(k) != now[k]]
    if not differ:
        return "fingerprint differs"
    plural = len(differ) > 1 or differ[0] in ("arrays", "losses", "processes")
    return f"{', '.join(differ)} {'differ' if plural else 'differs'}"


# ---- writing and reading ------------------------------------------------------------------------------
class Checkpointer:
    """Writes the checkpoints of one NetTrain call and restores the latest one."""

    def __init__(self, spec: Checkpointing, group):
        self.spec, self.group = spec, group
        now = time.time()
        self.run = time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
        self.written: list[str] = []
        self.state = None  # the checkpoint resumed from: (path, doc, tensors)
        self.fingerprint, self.identity = None, None  # set by `identify`
        if spec.kind == "Directory" and group.rank == 0:
            try:
                os.makedirs(spec.path, exist_ok=True)
            except OSError as e:
                raise OptionError(f"{WHO}: TrainingProgressCheckpointing: cannot create the directory {spec.path!r}: "
                                  f"{e.strerror or e}.") from None

    # ---- resuming ----
    def identify(self, fp: dict) -> None:
        """This run's fingerprint (rank 0's, on every rank): written with its checkpoints, and what
        finds them."""
        self.fingerprint, self.identity = fp, identity(fp)

    def find(self) -> dict | None:
        """The latest complete checkpoint of this run (read now, its parts put back by `restore`),
        or None. Checkpoints of other runs in the directory are left alone; a run that finds none
        of its own there starts afresh and says so. ("File", path) holds one checkpoint: another
        run's is an error rather than overwritten."""
        if not self.spec.resume:
            return None
        from ..io.wlnet import Kind, read_document

        kind = Kind(KEY, WHO, "checkpoint")
        fields = {"written": float, "round": int, "seed": int, "run": str, "identity": str, "fingerprint": dict,
                  "parts": dict}

        def read(path, arrays):
            try:
                doc, tensors = read_document(path, kind, _check_version, arrays)
                if not isinstance(doc, dict) or doc.get("format") != KEY or \
                        not all(isinstance(doc.get(k), t) for k, t in fields.items()):
                    raise FileFormatError(f"{WHO}: {path!r} is not a readable checkpoint: it holds no training state.")
                return doc, tensors
            except FileFormatError as e:
                warnings.warn(f"{WHO}: skipping the checkpoint {path!r}: {e}", NetWarning, stacklevel=5)
                return None

        own, others = [], []  # the documents first (the headers alone), the arrays of the latest only
        for path in self.spec.candidates():
            got = read(path, False)
            if got is not None:
                doc = got[0]
                (own if doc["identity"] == self.identity else others).append((doc["written"], doc["round"], path, doc))
        chosen = None
        for _, _, path, _ in sorted(own, key=lambda c: c[:3], reverse=True):
            got = read(path, True)
            if got is not None:
                chosen = (got[0]["round"], path, *got)
                break
        if chosen is None and others:
            _, _, path, doc = max(others, key=lambda c: c[:3])
            differ = differences(doc["fingerprint"], self.fingerprint)
            what = f"the checkpoint {path!r} belongs to another run: its {differ} from this one's"
            if self.spec.kind == "File":
                raise TrainingError(f"{WHO}: {what}. Resume with the same net, data and options, or checkpoint into "
                                    "another file (this run would overwrite it).")
            if self.group.rank == 0:
                warnings.warn(f"{WHO}: {self.spec.path!r} holds no checkpoint of this run, which starts afresh "
                              f"({what}).", NetWarning, stacklevel=5)
        mine = chosen[0] if chosen else -1
        rounds = self.group.share(mine)
        if rounds != mine:
            def which(k):
                return "no checkpoint" if k < 0 else f"the checkpoint of round {k}"

            raise TrainingError(
                f"{WHO}: process {self.group.rank} finds {which(mine)} in {self.spec.path!r}, but process 0 finds "
                f"{which(rounds)}; with several processes, checkpoints must be on a file system every process reads.")
        if chosen is None:
            return None
        self.state = (chosen[1], chosen[2], chosen[3])
        self.run = chosen[2]["run"]
        return chosen[2]

    def restore(self, parts: dict) -> None:
        """Put every part back as the checkpoint has it (a part the checkpoint does not hold, such as
        a stopping rule added on resuming, starts afresh)."""
        path, doc, tensors = self.state
        try:
            saved = decode(doc["fingerprint"], {}, "the fingerprint")
            if saved != _normal(self.fingerprint):  # the identity matched: only a damaged file gets here
                differ = differences(doc["fingerprint"], self.fingerprint)
                raise StructureError(f"its fingerprint is not its run's: its {differ}")
            states = {name: decode(doc["parts"][name], tensors, f"the checkpoint's {name}")
                      for name in parts if name in doc["parts"]}
            for name, state in states.items():
                parts[name].load_state_dict(state)
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError, StructureError) as e:
            raise TrainingError(f"{WHO}: the checkpoint {path!r} cannot be resumed from: {type(e).__name__}: {e}") \
                from None

    # ---- writing ----
    def due(self, r: int) -> bool:
        return r % self.spec.interval == 0

    def write(self, run, parts: dict, seed: int) -> None:
        """Write round r's checkpoint: the net with the run's arrays and {name: part.state_dict()}
        (every rank calls this, a part's state may need the others; rank 0 writes)."""
        states = {name: part.state_dict() for name, part in parts.items()}
        if self.group.rank != 0:
            return
        from ..core.runtime import module_arrays
        from ..io.wlnet import export_wlnet, write_document

        r = run.round
        net_file, state_file = self.spec.files(self.run, r)
        # the net's structure is checked at the first checkpoint (it does not change); the rename of
        # the net's file is flushed with the state's, in the same directory
        export_wlnet(net_file, run.net.with_arrays(module_arrays(run.net, run.module)), check=not self.written,
                     sync_directory=False)
        tensors: dict = {}
        doc = {"format": KEY, "version": FORMAT_VERSION, "written": time.time(), "round": r, "seed": seed,
               "run": self.run, "identity": self.identity, "net_file": os.path.basename(net_file),
               "fingerprint": encode(self.fingerprint, {}, ""),
               "parts": {name: encode(state, tensors, name) for name, state in states.items()}}
        write_document(state_file, doc, tensors, KEY, WHO)
        for f in (net_file, state_file):
            if f not in self.written:
                self.written.append(f)


def _check_version(doc) -> None:
    version = doc.get("version") if isinstance(doc, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise StructureError(f"it was written in checkpoint format version {version} by a newer wlnet; this "
                             f"wlnet reads versions up to {FORMAT_VERSION}.")
    if isinstance(version, int) and version < FORMAT_VERSION:
        raise StructureError(f"it was written in checkpoint format version {version} by an older wlnet; this wlnet "
                             f"resumes from version {FORMAT_VERSION}.")
