"""Import of bad .wlnet files: each is a FileFormatError naming the file and what is wrong, no
code from the file ever runs, and the file is left as it was. Property-based tests mutate real
exported files (bytes, and the structure's JSON) and require "loads and evaluates, or raises a
NetError". Atomic writes: a failure mid-write leaves the old file and no temporary file."""

from __future__ import annotations

import errno
import json
import os
import pickle
import random

import numpy as np
import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import wlnet.io.files as files
from wlnet import (
    ElementwiseLayer,
    Export,
    ExportError,
    FileFormatError,
    GatedRecurrentLayer,
    Import,
    LinearLayer,
    LongShortTermMemoryLayer,
    NetChain,
    NetDecoder,
    NetError,
    NetInitialize,
    NetStateObject,
    SequenceLastLayer,
    SoftmaxLayer,
)

LINEAR = 3  # the index of the LinearLayer in small_net's layers

RAGGED = [[[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]], [[1.0, 1.0]]]


def small_net():
    layers = [LongShortTermMemoryLayer(2, Dropout={"VariationalInput": 0.1}),
              GatedRecurrentLayer(2, LearningRateMultipliers={"ResetGateBiases": 0.5}), SequenceLastLayer(),
              LinearLayer(2), ElementwiseLayer("Tanh"), SoftmaxLayer()]
    return NetInitialize(NetChain(layers, Input=("Varying", 2), Output=NetDecoder(("Class", ["a", "b"]))),
                         RandomSeeding=1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The bytes of an exported small net, its structure and its tensors."""
    path = tmp_path_factory.mktemp("good") / "net.wlnet"
    Export(path, small_net())
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    doc = json.loads(json.loads(data[8:8 + n])["__metadata__"]["wlnet"])
    return data, doc, st_load(data)


def write(path, doc, tensors, meta=None):
    path.write_bytes(st_save(tensors, metadata=meta if meta is not None else {"wlnet": json.dumps(doc)}))
    return path


def refused(path, match):
    """Import(path) raises a FileFormatError naming the file and matching `match`; the file is unchanged."""
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(FileFormatError, match=match) as e:
        Import(path)
    assert repr(os.fspath(path)) in str(e.value)
    if before is not None:
        assert path.read_bytes() == before
    return str(e.value)


def test_a_file_that_is_not_there_or_not_a_file(tmp_path):
    refused(tmp_path / "none.wlnet", "does not exist")
    (tmp_path / "dir.wlnet").mkdir()
    refused(tmp_path / "dir.wlnet", "is a directory, not a file")
    os.mkfifo(tmp_path / "pipe.wlnet")
    refused(tmp_path / "pipe.wlnet", "is not a regular file")
    (tmp_path / "empty.wlnet").write_bytes(b"")
    refused(tmp_path / "empty.wlnet", "the file is empty")


def test_every_truncation_is_refused(exported, tmp_path):
    data, _, _ = exported
    path = tmp_path / "cut.wlnet"
    for i in range(len(data)):
        path.write_bytes(data[:i])
        with pytest.raises(FileFormatError, match=r"is not a readable \.wlnet file|cannot be read as a net"):
            Import(path)
    path.write_bytes(data)
    assert Import(path)(RAGGED) == small_net()(RAGGED)


def test_random_bytes_are_refused(tmp_path):
    rng = random.Random(5)
    path = tmp_path / "random.wlnet"
    for size in (1, 7, 8, 9, 100, 5000):
        for _ in range(5):
            data = bytes(rng.randrange(256) for _ in range(size))
            if size > 8 and rng.random() < 0.6:  # a plausible header length, random header
                data = rng.randrange(0, size - 8 + 1).to_bytes(8, "little") + data[8:]
            path.write_bytes(data)
            refused(path, r"is not a readable \.wlnet file")


def test_a_pickle_is_refused_and_its_payload_never_runs(tmp_path):
    class Payload:
        def __init__(self, marker):
            self.marker = str(marker)

        def __reduce__(self):
            return os.mkdir, (self.marker,)

    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(Payload(proof)))  # the payload works: unpickling it makes its marker
    assert proof.is_dir()
    marker = tmp_path / "marker"
    for protocol in (0, 2, 4, 5):
        path = tmp_path / f"evil{protocol}.wlnet"
        path.write_bytes(pickle.dumps(Payload(marker), protocol=protocol))
        message = refused(path, r"is not a readable \.wlnet file")
        if protocol >= 2:
            assert "Python pickle" in message and "never loads pickles" in message
        assert not marker.exists()
    path = tmp_path / "torch.wlnet"  # torch.save's zip of pickles
    torch.save({"w": torch.zeros(2), "evil": Payload(marker)}, path)
    refused(path, "zip archive")
    assert not marker.exists()


def test_a_wolfram_wlnet_file_is_recognised_and_onnx_named_as_the_bridge(tmp_path):
    hdf5 = b"\x89HDF\r\n\x1a\n" + bytes(range(200))
    for block in (0, 512, 2048):
        path = tmp_path / f"wolfram{block}.wlnet"
        path.write_bytes(b"\x00" * block + hdf5)
        refused(path, r'Wolfram Language \.wlnet file \(HDF5.*cannot read.*Export\["net\.onnx", net\]')


def test_other_safetensors_files_and_bad_headers(exported, tmp_path):
    data, doc, tensors = exported
    refused(write(tmp_path / "plain.wlnet", doc, {"x": torch.zeros(2)}, meta={"other": "1"}),
            "a safetensors file, but not one wlnet wrote")
    n = int.from_bytes(data[:8], "little")
    path = tmp_path / "bad.wlnet"
    path.write_bytes((2**40).to_bytes(8, "little") + data[8:])
    refused(path, "header of 1099511627776 bytes, but at most")
    header = json.loads(data[8:8 + n])
    name = next(k for k in header if k != "__metadata__")

    def with_header(change, match):
        h = json.loads(data[8:8 + n])
        change(h)
        text = json.dumps(h).encode()
        path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n:])
        refused(path, match)

    with_header(lambda h: h[name].update(dtype="Q9"), "unknown dtype 'Q9'")
    with_header(lambda h: h[name].update(shape=[-1]), "not a list of sizes")
    with_header(lambda h: h[name].update(shape=[10**6, 10**6]), "needs 4000000000000 bytes")
    with_header(lambda h: h[name].update(data_offsets=[4, 4 + h[name]["data_offsets"][1] - h[name]["data_offsets"][0]]),
                "starts at byte 4 of the data|take .* bytes after the header")
    with_header(lambda h: h[name].pop("shape"), "is not dtype, shape and data_offsets")
    with_header(lambda h: h["__metadata__"].update(wlnet="[" * 100000), "not valid JSON")
    with_header(lambda h: h["__metadata__"].update(wlnet='{"a": NaN}'), "not valid JSON")
    path.write_bytes(data[:8] + b"\xff" * n + data[8 + n:])
    refused(path, "header is not valid JSON")
    path.write_bytes(data + b"\x00")
    refused(path, r"bytes after the header, but .* follow \(extra bytes")


def test_a_newer_format_version_says_to_upgrade(exported, tmp_path):
    _, doc, tensors = exported
    refused(write(tmp_path / "v2.wlnet", {**doc, "version": 2}, tensors),
            "format version 2 by a newer wlnet; this wlnet reads versions up to 1. Upgrade")
    refused(write(tmp_path / "v0.wlnet", {**doc, "version": "1"}, tensors), "version must be a positive integer")
    refused(write(tmp_path / "fmt.wlnet", {**doc, "format": "other"}, tensors), "format is 'other'")


def _layer(doc, i):
    return doc["net"]["args"][0][i]["$new"]


def _changed(doc, change):
    doc = json.loads(json.dumps(doc))
    change(doc)
    return doc


def test_unknown_classes_options_constants_and_tags(exported, tmp_path):
    _, doc, tensors = exported
    cases = {
        "names the class 'FooLayer', which wlnet does not know": lambda d: _layer(d, 1).update({"class": "FooLayer"}),
        "names the class 'NetTrain'": lambda d: _layer(d, 1).update({"class": "NetTrain"}),
        "names the class 'posix.system'": lambda d: d["net"].update({"class": "posix.system"}),
        r"layer 2 \(SequenceLastLayer\) cannot be rebuilt: .*unknown option.*Foo|Foo": lambda d: _layer(d, 1)[
            "options"].update(Foo=1),
        "names the constant 'Sometimes'": lambda d: _layer(d, 0)["options"].update(Dropout={"$value": "Sometimes"}),
        "names the function 'system'": lambda d: _layer(d, 0)["options"].update(Dropout={"$function": "system"}),
        "unknown tag '\\$eval'": lambda d: _layer(d, 0)["options"].update(Dropout={"$eval": "1"}),
        "must have the fields class, args, options": lambda d: _layer(d, 1).update(code="x"),
        "cannot be rebuilt from its arguments: TypeError": lambda d: _layer(d, 1)["args"].append(1),
        "the structure's kind must be": lambda d: d.update(kind="Script"),
        "not a port type": lambda d: d["ports"]["inputs"].update(Input={"dims": "x"}),
        "ports differ from the recorded ones": lambda d: d["ports"]["outputs"].update(
            Extra={"dims": None, "integer": False, "levels": None}),
    }
    for i, (match, change) in enumerate(cases.items()):
        refused(write(tmp_path / f"c{i}.wlnet", _changed(doc, change), tensors), match)


def test_arrays_whose_shapes_or_dtypes_disagree_or_that_are_missing_or_extra(exported, tmp_path):
    _, doc, tensors = exported
    key = "4/Weights"  # the LinearLayer's, 2×2
    bad = dict(tensors)
    bad[key] = tensors[key].reshape(4)
    refused(write(tmp_path / "shape.wlnet", doc, bad), r"recorded as 'F32' \[2, 2\], but the array '4/Weights' in the "
            r"file is 'F32' \[4\]")
    bad[key] = tensors[key].double()
    refused(write(tmp_path / "dtype.wlnet", doc, bad), r"recorded as 'F32' \[2, 2\].* is 'F64' \[2, 2\]")
    as_f64 = _changed(doc, lambda d: _layer(d, LINEAR)["arrays"]["Weights"].update(dtype="F64"))
    refused(write(tmp_path / "f64.wlnet", as_f64, bad), r"array 'Weights' is recorded as F64 \[2, 2\], but the rebuilt")
    wide = dict(tensors, **{key: torch.zeros(2, 3)})
    as_wide = _changed(doc, lambda d: _layer(d, LINEAR)["arrays"]["Weights"].update(shape=[2, 3]))
    refused(write(tmp_path / "wide.wlnet", as_wide, wide), "cannot connect")
    missing = {k: t for k, t in tensors.items() if k != key}
    refused(write(tmp_path / "missing.wlnet", doc, missing), "refers to the array '4/Weights', which the file does not "
            r"hold \(missing\)")
    extra = dict(tensors, stray=torch.ones(3))
    refused(write(tmp_path / "extra.wlnet", doc, extra), r"arrays that no layer uses \(extra\): 'stray'")
    nan = dict(tensors, **{key: torch.full((2, 2), float("nan"))})
    refused(write(tmp_path / "nan.wlnet", doc, nan), "NaN or infinite")


def test_bad_states_of_a_net_state_object(tmp_path):
    obj = NetStateObject(NetInitialize(GatedRecurrentLayer(2, Input=("Varying", 2))))
    obj(RAGGED)
    path = tmp_path / "obj.wlnet"
    Export(path, obj)
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    doc, tensors = json.loads(json.loads(data[8:8 + n])["__metadata__"]["wlnet"]), st_load(data)
    assert doc["kind"] == "NetStateObject" and len(doc["states"]) == 1
    elsewhere = _changed(doc, lambda d: d["states"][0].__setitem__(0, {"$tuple": [1, "State"]}))
    refused(write(tmp_path / "pos.wlnet", elsewhere, tensors), r"at \(1, 'State'\) is not a state position")
    (name,) = [k for k in tensors if k.startswith("states/")]
    wrong = dict(tensors, **{name: torch.zeros(2, 5)})
    as_wrong = _changed(doc, lambda d: d["states"][0][1].update(shape=[2, 5]))
    refused(write(tmp_path / "n.wlnet", as_wrong, wrong), r"must be a B×2 array of reals, but is F32 \[2, 5\]")
    twice = _changed(doc, lambda d: d["states"].append(d["states"][0]))
    refused(write(tmp_path / "twice.wlnet", twice, tensors), "is given twice")
    uninitialized = _changed(doc, lambda d: d["net"].update(arrays={}))
    refused(write(tmp_path / "uninit.wlnet", uninitialized, {name: tensors[name]}), "not initialized")


# ---- property-based: mutated real files ------------------------------------------------------------
def loads_and_evaluates_or_refuses(path) -> bool:
    """True if the file loaded and evaluated; any error must be a NetError."""
    try:
        net = Import(path)
    except NetError:
        return False
    try:
        net(RAGGED)
        net(RAGGED[0], "Probabilities")
        net(RAGGED, NetEvaluationMode="Train", RandomSeeding=2)
    except NetError:
        pass
    return True


MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 16)),
)


def mutate(data: bytes, header_end: int, mutation, in_header: bool) -> bytes:
    kind, at, arg = mutation
    at = 8 + at % (header_end - 8) if in_header else at % (len(data) + 1)
    if kind == "flip" and at < len(data):
        return data[:at] + bytes([data[at] ^ (1 << arg)]) + data[at + 1:]
    if kind == "set" and at < len(data):
        return data[:at] + bytes([arg]) + data[at + 1:]
    if kind == "cut":
        return data[:at]
    if kind == "insert":
        return data[:at] + arg + data[at:]
    if kind == "delete":
        return data[:at] + data[at + arg:]
    return data


@settings(max_examples=150, deadline=5000, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3), in_header=st.booleans())
def test_mutated_bytes_load_and_evaluate_or_raise_a_net_error(exported, tmp_path, mutations, in_header):
    data, _, _ = exported
    header_end = 8 + int.from_bytes(data[:8], "little")
    for m in mutations:
        data = mutate(data, header_end, m, in_header)
    path = tmp_path / "mutated.wlnet"
    path.write_bytes(data)
    loads_and_evaluates_or_refuses(path)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-1, 4) | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["Varying", "Automatic", "Tanh", "Ramp", "F32", "Input", "4/Weights", "NetChain", "LinearLayer",
                       "$tuple", "$new", "$value", "$dict"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["$tuple", "$dict", "$value", "$new", "$float", "class", "args", "options", "arrays",
                        "Input", "Dropout", "tensor", "dtype", "shape", "dims"]), inner, max_size=3),
    max_leaves=8,
)


def _paths(x, path=()):
    yield path
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _paths(v, (*path, k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _paths(v, (*path, i))


def nudge(x, step: int):
    """A value near x of the same kind (an int moved by step, a float scaled, a bool negated)."""
    if isinstance(x, bool):
        return not x
    if isinstance(x, int):
        return x + step
    if isinstance(x, float):
        return x * (1 + step / 2)
    return x


@settings(max_examples=150, deadline=5000, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(choice=st.integers(0, 10**6), value=JSON_VALUES, action=st.sampled_from(["replace", "delete", "nudge"]),
       step=st.integers(-3, 3), skip_arrays=st.booleans())
def test_mutated_structures_load_and_evaluate_or_raise_a_net_error(exported, tmp_path, choice, value, action, step,
                                                                    skip_arrays):
    _, doc, tensors = exported
    doc = json.loads(json.dumps(doc))
    paths = [p for p in list(_paths(doc))[1:] if not (skip_arrays and "arrays" in p)]
    path = paths[choice % len(paths)]
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if action == "delete":
        del parent[path[-1]]
    elif action == "nudge" and isinstance(parent[path[-1]], bool | int | float):
        parent[path[-1]] = nudge(parent[path[-1]], step)
    else:
        parent[path[-1]] = value
    loads_and_evaluates_or_refuses(write(tmp_path / "mutated.wlnet", doc, tensors))


def test_a_mutated_array_value_still_loads_and_evaluates(exported, tmp_path):
    _, doc, tensors = exported
    changed = dict(tensors, **{"4/Biases": tensors["4/Biases"] + 1})
    assert loads_and_evaluates_or_refuses(write(tmp_path / "biases.wlnet", doc, changed))
    net = Import(tmp_path / "biases.wlnet")
    np.testing.assert_array_equal(net.arrays()[(4, "Biases")].numpy(), tensors["4/Biases"].numpy() + 1)


# ---- atomic writes ---------------------------------------------------------------------------------
def half_then(error):
    """A safetensors writer that writes half of the file, then fails with `error`."""
    def save_file(tensors, path, metadata=None):
        data = st_save(tensors, metadata=metadata)
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
        raise error

    return save_file


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, error):
    path = tmp_path / "net.wlnet"
    old = small_net()
    Export(path, old)
    before = path.read_bytes()
    monkeypatch.setattr(safetensors.torch, "save_file", half_then(error))
    bigger = NetInitialize(LongShortTermMemoryLayer(16, Input=("Varying", 8)))
    if isinstance(error, OSError):
        with pytest.raises(ExportError, match="cannot write .*No space left on device"):
            Export(path, bigger)
    else:
        with pytest.raises(KeyboardInterrupt):
            Export(path, bigger)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.wlnet"]
    monkeypatch.undo()
    assert Import(path)(RAGGED) == old(RAGGED)
    Export(path, bigger)  # and a write that completes replaces it
    assert Import(path).input_form() == bigger.input_form()
    assert os.listdir(tmp_path) == ["net.wlnet"]


class FailingFile:
    """A file object whose writes stop with an error after `budget` bytes."""

    def __init__(self, f, budget):
        self.f, self.budget = f, budget

    def write(self, b):
        if len(b) > self.budget:
            self.f.write(b[:self.budget])
            raise OSError(errno.EIO, "Input/output error")
        self.budget -= len(b)
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_atomic_writes_of_chunks_that_fail_midway_or_at_the_rename(tmp_path, monkeypatch):
    path = tmp_path / "model.bin"
    files.atomic_write(path, [b"old ", b"bytes"])
    assert path.read_bytes() == b"old bytes"
    real = os.fdopen
    monkeypatch.setattr(files.os, "fdopen", lambda fd, mode: FailingFile(real(fd, mode), 6))
    with pytest.raises(ExportError, match=r"cannot write .*model\.bin.*Input/output error"):
        files.atomic_write(path, [b"new ", b"bytes, more of them"])
    assert path.read_bytes() == b"old bytes" and os.listdir(tmp_path) == ["model.bin"]
    monkeypatch.undo()

    def fail(a, b):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(ExportError, match="Permission denied"):
        Export(tmp_path / "net.wlnet", LinearLayer(2))
    assert os.listdir(tmp_path) == ["model.bin"]
