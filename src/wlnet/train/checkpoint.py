"""TrainingProgressCheckpointing: the checkpoints NetTrain writes, and resuming from them exactly.

("Directory", dir[, settings]) writes, every Interval rounds, the net with its current arrays as
dir/<run>_round-00005.wlnet (Export's format; <run> the time the run started, to the millisecond) and beside it
dir/<run>_round-00005.training: a safetensors file (no pickle) whose JSON metadata holds the
round, the counters, the loss and measurement lists, the stopping rule's memory and the
optimizer's settings, and whose tensors are the arrays in the working precision, the optimizer's
state, the best arrays so far (with a ValidationSet), the order of the examples still to come
and the random generators' states (the shuffling one and each process's dropout one).
("File", path[, settings]) overwrites path and path + ".training" instead. Every file is written
atomically, the .training file last: a checkpoint exists once it is complete, so a process
killed at any moment leaves the previous one intact.

Settings: {"Interval": rounds (or ("Rounds", n); default 1), "Resume": True | False (default)}.
With "Resume" True, NetTrain continues from the latest complete checkpoint of the same run
(same net arrays and shapes, data, BatchSize, Method, precision and number of processes;
another run's checkpoint is an error) and ends as a run that was never interrupted would: same
arrays, same loss lists. Without a checkpoint it starts afresh. Under torchrun rank 0 writes and
every rank reads the same checkpoint, which must lie on a file system all of them see.
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
import re
import time
import warnings

import numpy as np
import torch

from ..core.data import Seq
from ..core.errors import FileFormatError, NetWarning, OptionError, TrainingError
from ..io.structure import NONFINITE, float_value

WHO = "NetTrain"
KEY = "wlnet-training"
FORMAT_VERSION = 1
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


def parse(spec) -> Checkpointing | None:
    return None if spec is None else Checkpointing(spec)


# ---- plain values of the training state: JSON, with arrays as tensors -----------------------------
def _plain(v, tensors: dict, label: str):
    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float_value(v)
    if isinstance(v, list | tuple):
        items = [_plain(x, tensors, f"{label}/{i}") for i, x in enumerate(v)]
        return items if isinstance(v, list) else {"$tuple": items}
    if isinstance(v, dict):
        return {"$dict": [[_plain(k, tensors, label), _plain(x, tensors, f"{label}/{k}")] for k, x in v.items()]}
    if isinstance(v, torch.Tensor | np.ndarray):
        t = torch.as_tensor(v).detach().cpu().contiguous().clone()
        tensors[label] = t
        return {"$tensor": label, "numpy": isinstance(v, np.ndarray)}
    if isinstance(v, np.generic):
        return _plain(v.item(), tensors, label)
    if callable(v):
        return {"$function": getattr(v, "__name__", "function")}
    raise TrainingError(f"{WHO}: the training state holds {v!r}, which a checkpoint cannot hold.")


def _unplain(v, tensors: dict):
    if isinstance(v, list):
        return [_unplain(x, tensors) for x in v]
    if not isinstance(v, dict):
        return v
    if "$tuple" in v:
        return tuple(_unplain(x, tensors) for x in v["$tuple"])
    if "$dict" in v:
        return {_unplain(k, tensors): _unplain(x, tensors) for k, x in v["$dict"]}
    if "$float" in v:
        return NONFINITE[v["$float"]]
    if "$tensor" in v:
        t = tensors[v["$tensor"]].clone()
        return t.numpy() if v.get("numpy") else t
    if "$function" in v:
        return v["$function"]
    raise ValueError(f"unknown value {v!r}")


def fingerprint(module, problem, validation, batch, method, dtype, world, source) -> dict:
    """What must be the same for a checkpoint to be of this run."""
    def digest(dataset) -> str:
        if dataset is None:
            return "none"
        h = hashlib.sha256()
        for side in (dataset.inputs, dataset.targets):
            for port in sorted(side):
                v = side[port]
                for t in (v.data, v.lengths) if isinstance(v, Seq) else (v,):
                    if t is not None:
                        h.update(f"{port}{tuple(t.shape)}{t.dtype}".encode())
                        h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    name, settings = method
    from .loop import GeneratorSource

    return {
        "arrays": [[k, list(p.shape), str(p.dtype)] for k, p in module.named_parameters()],
        "data": "generator" if isinstance(source, GeneratorSource) else digest(problem.data),
        "validation": digest(validation.data if validation is not None else None),
        "losses": sorted(problem.losses.items()),
        "BatchSize": batch,
        "RoundLength": source.round_length,
        "Method": [name, {k: _plain(v, {}, k) for k, v in settings.items()}],
        "WorkingPrecision": str(dtype),
        "processes": world,
    }


# ---- writing and reading ------------------------------------------------------------------------------
class Checkpointer:
    """Writes the checkpoints of one NetTrain call and restores the latest one."""

    def __init__(self, spec: Checkpointing, group):
        self.spec, self.group = spec, group
        now = time.time()
        self.run = time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
        self.written: list[str] = []
        self.state = None  # the checkpoint resumed from: (doc, tensors)
        if spec.kind == "Directory" and group.rank == 0:
            try:
                os.makedirs(spec.path, exist_ok=True)
            except OSError as e:
                raise OptionError(f"{WHO}: TrainingProgressCheckpointing: cannot create the directory {spec.path!r}: "
                                  f"{e.strerror or e}.") from None

    # ---- resuming ----
    def find(self) -> dict | None:
        """The latest complete checkpoint (read now, checked against the run later), or None."""
        if not self.spec.resume:
            return None
        from ..io.wlnet import Kind, read_document

        kind = Kind(KEY, WHO, "checkpoint")
        fields = {"written": float, "round": int, "seed": int, "run": str, "fingerprint": dict}

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

        found = []  # the documents first (the headers alone), the arrays of the latest only
        for path in self.spec.candidates():
            got = read(path, False)
            if got is not None:
                found.append((got[0]["written"], got[0]["round"], path))
        chosen = None
        for _, _, path in sorted(found, reverse=True):
            got = read(path, True)
            if got is not None:
                chosen = (got[0]["written"], got[0]["round"], path, *got)
                break
        mine = chosen[1] if chosen else -1
        rounds = self.group.share(mine)
        if rounds != mine:
            def which(k):
                return "no checkpoint" if k < 0 else f"the checkpoint of round {k}"

            raise TrainingError(
                f"{WHO}: process {self.group.rank} finds {which(mine)} in {self.spec.path!r}, but process 0 finds "
                f"{which(rounds)}; with several processes, checkpoints must be on a file system every process reads.")
        if chosen is None:
            return None
        self.state = (chosen[2], chosen[3], chosen[4])
        self.run = chosen[3]["run"]
        return chosen[3]

    def restore(self, run, fp: dict) -> None:
        """Put the run, its module, optimizer, sources and generators back as the checkpoint has them."""
        path, doc, tensors = self.state
        saved, now = _unplain(doc["fingerprint"], {}), _unplain(_plain(fp, {}, ""), {})
        if saved != now:
            differ = [k for k in now if not isinstance(saved, dict) or saved.get(k) != now[k]]
            raise TrainingError(
                f"{WHO}: the checkpoint {path!r} belongs to another run: its {', '.join(differ)} "
                f"{'differ' if len(differ) > 1 else 'differs'} from this one's. Resume with the same net, data and "
                "options, or checkpoint into another directory.")
        try:
            _restore(run, doc, tensors, self.group.rank)
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
            raise TrainingError(f"{WHO}: the checkpoint {path!r} cannot be resumed from: {type(e).__name__}: {e}") \
                from None

    # ---- writing ----
    def due(self, r: int) -> bool:
        return r % self.spec.interval == 0

    def write(self, run, r: int, fp: dict) -> None:
        """Write round r's checkpoint (every rank calls this; rank 0 writes)."""
        dropout = _gather_states(run.ctx.generator, self.group)
        if self.group.rank != 0:
            return
        from ..core.runtime import module_arrays
        from ..io.wlnet import export_wlnet, write_document

        net_file, state_file = self.spec.files(self.run, r)
        # the net's structure is checked at the first checkpoint (it does not change); the rename of
        # the net's file is flushed with the state's, in the same directory
        export_wlnet(net_file, run.net.with_arrays(module_arrays(run.net, run.module)), check=not self.written,
                     sync_directory=False)
        tensors: dict = {}
        doc = _state(run, r, fp, dropout, tensors)
        doc["run"] = self.run
        doc["net_file"] = os.path.basename(net_file)
        write_document(state_file, doc, tensors, KEY, WHO)
        for f in (net_file, state_file):
            if f not in self.written:
                self.written.append(f)


def _check_version(doc) -> None:
    from ..io.structure import StructureError

    if isinstance(doc, dict) and isinstance(doc.get("version"), int) and doc["version"] > FORMAT_VERSION:
        raise StructureError(f"it was written in checkpoint format version {doc['version']} by a newer wlnet; this "
                             f"wlnet reads versions up to {FORMAT_VERSION}.")


def _gather_states(generator, group) -> list:
    """Every rank's dropout generator state (rank 0 gets them all; a rank gets its own)."""
    if generator is None:
        return []
    state = generator.get_state()
    if group.world == 1:
        return [state]
    t = state.to(group.device)
    parts = [torch.empty_like(t) for _ in range(group.world)]
    group.dist.all_gather(parts, t)
    return [p.cpu() for p in parts]


RUN_FIELDS = ("losses", "val_losses", "batch_losses", "round_measurements", "val_measurements", "examples", "batches",
              "lr_first", "lr_last", "planned_rounds", "reason", "best_loss")


def _state(run, r: int, fp: dict, dropout: list, tensors: dict) -> dict:
    from .loop import GeneratorSource

    module, source = run.module, run.source
    for name, p in module.named_parameters():
        tensors[f"arrays/{name}"] = p.detach().cpu().clone()
    if run.best is not None:
        for name, p in run.best.items():
            tensors[f"best/{name}"] = p.detach().cpu().clone()
    for i, s in enumerate(dropout):
        tensors[f"generator/dropout/{i}"] = s.clone()
    sd = run.optimizer.state_dict()
    doc = {
        "format": KEY, "version": FORMAT_VERSION, "written": time.time(), "round": r,
        "batch": source.steps(), "seed": run.seed, "fingerprint": _plain(fp, {}, ""),
        "run_fields": _plain({k: getattr(run, k) for k in RUN_FIELDS}, tensors, "run"),
        "elapsed": time.perf_counter() - run.t0, "val_time": run.val_time,
        "warned": [bool(getattr(run, "_huge", False)), bool(getattr(run, "_grew", False))],
        "stopping": _plain([getattr(run.stopping, "best", None), getattr(run.stopping, "waited", 0)], tensors,
                           "stopping"),
        "optimizer": {"param_groups": _plain(sd["param_groups"], tensors, "optimizer/groups"),
                      "state": _plain(sd["state"], tensors, "optimizer/state")},
    }
    if isinstance(source, GeneratorSource):
        doc["source"] = {"round": source.round, "absolute": source.absolute}
    else:
        tensors["generator/shuffle"] = source.g.get_state()
        tensors["source/stream"] = source.stream.clone()
    return doc


def _restore(run, doc: dict, tensors: dict, rank: int) -> None:
    from .loop import GeneratorSource

    module, source = run.module, run.source
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(tensors[f"arrays/{name}"])
    names = [n for n, _ in module.named_parameters()]
    best = {n: tensors[f"best/{n}"].to(run.group.device) for n in names if f"best/{n}" in tensors}
    run.best = best or None
    automatic = run.max_rounds is None
    for k, v in _unplain(doc["run_fields"], tensors).items():
        if k in RUN_FIELDS and (k != "planned_rounds" or automatic):  # a given MaxTrainingRounds may be raised
            setattr(run, k, v)
    run.best_loss = math.inf if run.best_loss is None else run.best_loss
    if run.reason == "MaxTrainingRounds":
        run.reason = None  # MaxTrainingRounds may have been raised to train on
    run.start_round = int(doc["round"])
    run.elapsed_before, run.val_time = float(doc["elapsed"]), float(doc["val_time"])
    run._huge, run._grew = doc["warned"]
    best, waited = _unplain(doc["stopping"], tensors)
    if run.stopping.criterion is not None:
        run.stopping.best, run.stopping.waited = best, waited
    sd = {"param_groups": _unplain(doc["optimizer"]["param_groups"], tensors),
          "state": _unplain(doc["optimizer"]["state"], tensors)}
    run.optimizer.load_state_dict(sd)
    key = f"generator/dropout/{rank}"
    if run.ctx.generator is not None and key in tensors:
        run.ctx.generator.set_state(tensors[key])
    if isinstance(source, GeneratorSource):
        source.round, source.absolute = doc["source"]["round"], doc["source"]["absolute"]
        source.pending = None  # the first batch was read to learn the losses; training goes on from the checkpoint
    else:
        source.g.set_state(tensors["generator/shuffle"])
        source.stream = tensors["source/stream"].clone()
