"""Never silent, never stuck: damaged .wlnet files (checksums), headers listing many arrays,
non-finite states on Import and Export, the native module's loading from several threads at
once, a NetStateObject used from several threads, and LinearLayer's Input of another rank."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import safetensors
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from wlnet import (
    BasicRecurrentLayer,
    EmbeddingLayer,
    Export,
    ExportError,
    FileFormatError,
    FlattenLayer,
    GatedRecurrentLayer,
    Import,
    LinearLayer,
    LongShortTermMemoryLayer,
    NetChain,
    NetInitialize,
    NetStateObject,
    OptionError,
    SequenceLastLayer,
)
from wlnet.io.wlnet import CHECKSUMS, Kind, read_document, write_document
from wlnet.kernels import native

SEQ = [[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]]


def small_net():
    return NetInitialize(NetChain([LongShortTermMemoryLayer(3), GatedRecurrentLayer(2), SequenceLastLayer(),
                                   LinearLayer(2)], Input=("Varying", 2)), RandomSeeding=3)


def split(data: bytes) -> tuple[dict, int]:
    """(the safetensors header of a file's bytes, where its data starts)."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), 8 + n


def with_header(data: bytes, change) -> bytes:
    """The file's bytes with its header JSON changed by `change` (the data section kept)."""
    header, start = split(data)
    change(header)
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data[start:]


def refused(path, match: str) -> str:
    before = path.read_bytes()
    with pytest.raises(FileFormatError, match=match) as e:
        Import(path)
    assert repr(os.fspath(path)) in str(e.value)
    assert path.read_bytes() == before
    return str(e.value)


# ---- checksums -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "net.wlnet"
    net = small_net()
    Export(path, net)
    return net, path.read_bytes()


def test_the_checksums_are_the_sha256_of_the_structure_and_of_each_arrays_dtype_shape_and_bytes(exported):
    net, data = exported
    header, _ = split(data)
    meta = header["__metadata__"]
    sums = json.loads(meta[CHECKSUMS])
    assert sums["algorithm"] == "sha256"
    assert sums["document"] == hashlib.sha256(meta["wlnet"].encode("utf-8")).hexdigest()
    tensors = st_load(data)
    assert set(sums["arrays"]) == set(tensors) and len(tensors) == 12 + 9 + 2
    for name, t in tensors.items():
        a = t.numpy()
        want = hashlib.sha256(f"F32 {list(a.shape)}\n".encode() + np.ascontiguousarray(a, "<f4").tobytes())
        assert sums["arrays"][name] == want.hexdigest(), name


def test_every_flipped_bit_in_the_arrays_is_refused_as_damage(exported, tmp_path):
    net, data = exported
    _, start = split(data)
    rng = random.Random(5)
    path = tmp_path / "flipped.wlnet"
    names = set()
    for _ in range(50):
        at, bit = rng.randrange(start, len(data)), rng.randrange(8)
        path.write_bytes(data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1:])
        message = refused(path, r"the data of the array '[^']+' does not match its checksum: the file is damaged")
        names.add(message.split("'")[3])
    assert len(names) > 3  # the flips fell in many arrays, each named
    path.write_bytes(data)
    got = Import(path)  # the undamaged file reads
    for k, t in net.arrays().items():
        assert torch.equal(got.arrays()[k], t)


def test_a_changed_structure_or_checksum_table_is_refused(exported, tmp_path):
    _, data = exported
    path = tmp_path / "bad.wlnet"

    def meta_changed(change, match):
        path.write_bytes(with_header(data, lambda h: change(h["__metadata__"])))
        return refused(path, match)

    def doc(m, f):  # the structure's text changed, still valid JSON
        m["wlnet"] = f(m["wlnet"])

    meta_changed(lambda m: doc(m, lambda s: s.replace('"args":[2]', '"args":[3]', 1)),
                 "its wlnet structure does not match its checksum: the file is damaged")
    meta_changed(lambda m: doc(m, lambda s: s.replace('"kind":"Net"', '"kind":"Ne\\u0074"', 1)),  # the same JSON
                 "its wlnet structure does not match its checksum")

    def table(m, f):
        sums = json.loads(m[CHECKSUMS])
        f(sums)
        m[CHECKSUMS] = json.dumps(sums)

    meta_changed(lambda m: table(m, lambda s: s["arrays"].pop(next(iter(s["arrays"])))),
                 r"its checksums do not match its arrays \(the array '[^']+' has none\)")
    meta_changed(lambda m: table(m, lambda s: s["arrays"].update(stray="00")),
                 r"they name 'stray', which the file does not hold")
    meta_changed(lambda m: table(m, lambda s: s.update(algorithm="crc99")),
                 "checksums are of the kind 'crc99', which this wlnet does not know")
    meta_changed(lambda m: table(m, lambda s: s.pop("document")), "is not a table of checksums")
    meta_changed(lambda m: m.update({CHECKSUMS: "{not json"}), "is not a table of checksums")
    # a damaged name of the entry does not pass for a file written before checksums
    meta_changed(lambda m: m.update({"wlnet-checksumr": m.pop(CHECKSUMS)}),
                 "holds the metadata entry 'wlnet-checksumr', which this wlnet does not know")


def test_a_file_written_without_checksums_reads_as_before(exported, tmp_path):
    net, data = exported
    header, _ = split(data)
    path = tmp_path / "old.wlnet"
    path.write_bytes(st_save(st_load(data), metadata={"wlnet": header["__metadata__"]["wlnet"]}))
    got = Import(path)
    for k, t in net.arrays().items():
        assert torch.equal(got.arrays()[k], t)
    np.testing.assert_array_equal(got(SEQ), net(SEQ))


def test_checkpoint_documents_carry_checksums_of_every_dtype(tmp_path):
    tensors = {"f64": torch.randn(3, dtype=torch.float64), "bf16": torch.randn(2, 2).bfloat16(),
               "i64": torch.arange(5), "u8": torch.arange(4, dtype=torch.uint8), "bool": torch.tensor([True, False]),
               "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3)}
    kind = Kind("wlnet-training", "NetTrain", "checkpoint")
    path = tmp_path / "state.wlnet"
    write_document(path, {"format": "wlnet-training", "round": 1}, tensors, kind.key, kind.who)
    doc, got = read_document(path, kind)
    assert doc == {"format": "wlnet-training", "round": 1}
    for k, t in tensors.items():
        assert got[k].dtype == t.dtype and torch.equal(got[k], t), k
    data = path.read_bytes()
    _, start = split(data)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0x10]))  # the last byte of the last array
    assert read_document(path, kind, arrays=False)[0] == doc  # the documents alone still read
    with pytest.raises(FileFormatError, match="does not match its checksum: the file is damaged"):
        read_document(path, kind)
    # the same bytes under another shape are another array
    path.write_bytes(with_header(data, lambda h: h["f64"].update(shape=[3, 1])))
    with pytest.raises(FileFormatError, match="the data of the array 'f64' does not match its checksum"):
        read_document(path, kind)


# ---- a header listing a million arrays -------------------------------------------------------------
def test_arrays_the_structure_cannot_use_are_refused_before_any_array_is_read(exported, tmp_path, monkeypatch):
    _, data = exported

    def add(h):  # (no checksums: as a file of an older wlnet, or one made to look like it)
        h["__metadata__"].pop(CHECKSUMS, None)
        for i in range(200_000):
            h[f"x{i}"] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}

    path = tmp_path / "many.wlnet"
    path.write_bytes(with_header(data, add))
    opened = []
    real = safetensors.safe_open
    monkeypatch.setattr(safetensors, "safe_open", lambda *a, **k: opened.append(a) or real(*a, **k))
    t0 = time.perf_counter()
    refused(path, r"arrays that no layer uses \(extra\): 'x")
    seconds = time.perf_counter() - t0
    assert not opened  # refused from the header: no array was read
    assert seconds < 60, seconds
    path.write_bytes(data)
    Import(path)
    assert opened  # (the patched reader is the one Import uses)


# ---- non-finite states and arrays ------------------------------------------------------------------
def state_file(tmp_path, value: float):
    """A NetStateObject's file whose stored state is `value` everywhere (written as an older
    wlnet would have, without checksums)."""
    obj = NetStateObject(NetInitialize(GatedRecurrentLayer(2, Input=("Varying", 2))))
    obj([SEQ, SEQ[:2]])
    path = tmp_path / "obj.wlnet"
    Export(path, obj)
    data = path.read_bytes()
    header, _ = split(data)
    tensors = st_load(data)
    (name,) = [k for k in tensors if k.startswith("states/")]
    tensors[name] = torch.full_like(tensors[name], value)
    path.write_bytes(st_save(tensors, metadata={"wlnet": header["__metadata__"]["wlnet"]}))
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_net_state_object_file_with_a_non_finite_state_is_refused(tmp_path, value):
    refused(state_file(tmp_path, value), r"the NetStateObject's state at \('State',\) holds NaN or infinite values")


def test_a_finite_state_of_such_a_file_reads(tmp_path):
    got = Import(state_file(tmp_path, 0.25))
    np.testing.assert_array_equal(got.states()[("State",)], np.full((2, 2), 0.25, np.float32))


def test_export_refuses_a_net_state_object_whose_state_is_not_finite(tmp_path):
    obj = NetStateObject(NetInitialize(BasicRecurrentLayer(2, Input=("Varying", 2))))
    obj(SEQ)
    obj._states = {p: torch.where(torch.arange(2) == 1, float("nan"), v) for p, v in obj._states.items()}
    path = tmp_path / "obj.wlnet"
    with pytest.raises(ExportError, match=r"state at \('State',\) holds NaN or infinite values.*reset\(\)"):
        Export(path, obj)
    assert not path.exists()


@pytest.mark.parametrize("layer, array", [
    (LinearLayer(2, Input=3), "Weights"),
    (LongShortTermMemoryLayer(2, Input=("Varying", 3)), "ForgetGateStateWeights"),
    (GatedRecurrentLayer(2, Input=("Varying", 3)), "ResetGateBiases"),
    (BasicRecurrentLayer(2, Input=("Varying", 3)), "InputWeights"),
    (EmbeddingLayer(2, 4), "Weights"),
])
def test_a_file_with_non_finite_arrays_is_refused_for_every_layer_with_arrays(tmp_path, layer, array):
    path = tmp_path / "net.wlnet"
    Export(path, NetInitialize(layer))
    data = path.read_bytes()
    header, _ = split(data)
    tensors = st_load(data)
    tensors[array] = tensors[array].clone().index_fill_(0, torch.tensor([0]), float("inf"))
    path.write_bytes(st_save(tensors, metadata={"wlnet": header["__metadata__"]["wlnet"]}))
    refused(path, f"{array} contains NaN or infinite values")
    # and Export refuses such a net in the first place
    bad = NetInitialize(layer).with_arrays({((), array): tensors[array]})
    assert not torch.isfinite(bad.arrays()[(array,)]).all()
    with pytest.raises(ExportError, match=f"{array} contains NaN or infinite values"):
        Export(tmp_path / "bad.wlnet", bad)
    assert not (tmp_path / "bad.wlnet").exists()


# ---- the native module's loading from several threads at once --------------------------------------
class _FakeModule:
    """What get() reads of a built module as it keeps it: its product's getter and setter."""

    def set_gemm(self, i):
        pass

    def gemm(self):
        return 0


@pytest.fixture
def fresh_native(monkeypatch):
    """native.get() as in a new process, its build `_build` as the test sets it."""
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_error", None)
    monkeypatch.setattr(native, "_chosen_gemm", lambda lib: "blas")
    monkeypatch.setattr(native, "_gemm_fns", list(native._gemm_fns))  # the real module's, kept for later tests
    monkeypatch.delenv("WLNET_NO_NATIVE", raising=False)
    return monkeypatch


def first_calls_at_once(k: int = 4) -> list:
    """What native.get() gives (a module, or the error raised) to k threads calling it at once."""
    barrier, out = threading.Barrier(k), [None] * k

    def call(i):
        barrier.wait()
        try:
            out[i] = native.get()
        except RuntimeError as e:
            out[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_threads_calling_first_at_once_all_get_the_one_built_module(fresh_native):
    builds = []

    def slow_build():
        builds.append(1)
        time.sleep(0.3)  # the others arrive while it builds
        return _FakeModule()

    fresh_native.setattr(native, "_build", slow_build)
    fresh_native.setenv("WLNET_REQUIRE_NATIVE", "1")
    got = first_calls_at_once()
    assert len(builds) == 1
    assert all(isinstance(m, _FakeModule) for m in got) and len({id(m) for m in got}) == 1, got


def test_threads_calling_first_at_once_all_get_the_same_error_when_it_fails(fresh_native):
    def failing_build():
        time.sleep(0.3)
        raise RuntimeError("Error building extension: no compiler")

    fresh_native.setattr(native, "_build", failing_build)
    fresh_native.setenv("WLNET_REQUIRE_NATIVE", "1")
    got = first_calls_at_once()
    assert all(isinstance(e, RuntimeError) for e in got), got
    assert len({str(e) for e in got}) == 1 and "no compiler" in str(got[0])
    fresh_native.delenv("WLNET_REQUIRE_NATIVE")
    fresh_native.setattr(native, "_tried", False)
    assert first_calls_at_once() == [None] * 4  # optional: every thread the fallback


@pytest.mark.skipif(native.disabled(), reason="the native kernels are disabled here")
def test_four_threads_first_calls_in_a_new_process_all_get_the_real_module():
    try:
        built = native.get() is not None
    except RuntimeError:
        built = False
    if not built:
        pytest.skip("the native kernels do not build here")
    code = (
        "import threading\n"
        "from wlnet.kernels import native\n"
        "b, out = threading.Barrier(4), []\n"
        "def call():\n"
        "    b.wait()\n"
        "    try:\n"
        "        out.append(id(native.get()) if native.get() is not None else 'None')\n"
        "    except RuntimeError as e:\n"
        "        out.append('error')\n"
        "ts = [threading.Thread(target=call) for _ in range(4)]\n"
        "[t.start() for t in ts]\n"
        "[t.join() for t in ts]\n"
        "print(len(set(out)), out.count('None') + out.count('error'))\n"
    )
    env = dict(os.environ, WLNET_REQUIRE_NATIVE="1")
    env.pop("WLNET_NO_NATIVE", None)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1", "0"], run.stdout + run.stderr


# ---- a NetStateObject from several threads ---------------------------------------------------------
def counting_object() -> NetStateObject:
    """An LSTM whose cell state adds tanh(0.5) at every step (input and forget gates open, the
    other arrays zero), so that the state after N single steps tells N."""
    zero = {f"{g}Gate{w}Weights": [[0.0]] for g in ("Input", "Forget", "Output", "Memory")
            for w in ("Input", "State")}
    layer = LongShortTermMemoryLayer(1, Input=("Varying", 1), InputGateBiases=[30.0], ForgetGateBiases=[30.0],
                                     OutputGateBiases=[0.0], MemoryGateBiases=[0.5], **zero)
    return NetStateObject(layer)


def test_two_threads_of_fifty_updates_keep_all_hundred():
    serial = counting_object()
    for _ in range(100):
        serial([[1.0]])
    fifty = counting_object()
    for _ in range(50):
        fifty([[1.0]])
    cell = ("CellState",)
    assert serial.states()[cell] != fifty.states()[cell]  # the count is visible in the state

    obj = counting_object()
    barrier = threading.Barrier(2)

    def updates():
        barrier.wait()
        for _ in range(50):
            obj([[1.0]])

    threads = [threading.Thread(target=updates) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(obj.states()[cell], serial.states()[cell])
    np.testing.assert_array_equal(obj.states()[("State",)], serial.states()[("State",)])


def test_a_net_state_object_still_copies_after_the_lock():
    import copy
    import pickle

    obj = counting_object()
    obj([[1.0]])
    for other in (copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
        np.testing.assert_array_equal(other.states()[("CellState",)], obj.states()[("CellState",)])
        other([[1.0]])
        assert other.states()[("CellState",)] != obj.states()[("CellState",)]  # its own states, its own lock


# ---- LinearLayer's Input ---------------------------------------------------------------------------
@pytest.mark.parametrize("spec, shape", [([2, 2], "the shape 2×2, an array of rank 2"),
                                         ((3, 4, 5), "the shape 3×4×5, an array of rank 3"),
                                         ((), r"the shape \(\), a real number"),
                                         (("Varying", 3), "the shape Varying×3")])
def test_linear_layer_refuses_an_input_that_is_not_a_vector(spec, shape):
    with pytest.raises(OptionError, match=f"LinearLayer: option Input must be a size k.*{shape}.*not supported yet"):
        LinearLayer(2, Input=spec)


def test_linear_layer_refuses_a_huge_input_shape_quickly_and_briefly():
    t0 = time.perf_counter()
    with pytest.raises(OptionError, match=r"the shape 1×1×1×1×\.\.\., an array of rank 10000000") as e:
        LinearLayer(2, Input=[1] * 10**7)
    assert time.perf_counter() - t0 < 1.0 and len(str(e.value)) < 300


def test_linear_layer_still_takes_a_size_or_a_one_element_shape():
    for spec in (3, [3], (3,)):
        layer = NetInitialize(LinearLayer(2, Input=spec))
        assert layer.array_shapes()["Weights"] == (2, 3)
        x = [1.0, -2.0, 0.5]
        w, b = layer.arrays()[("Weights",)].numpy(), layer.arrays()[("Biases",)].numpy()
        np.testing.assert_allclose(layer(x), w @ np.array(x, np.float32) + b, rtol=1e-6)
    with pytest.raises(OptionError, match=r"use NetMapOperator\(LinearLayer\(2\)\)"):
        LinearLayer(2, Input=("Varying", 3))


def test_the_flattening_chain_the_error_names_computes_wolframs_linear_layer_on_a_matrix():
    with pytest.raises(OptionError, match=r"Flatten the array first.*NetChain\(\[FlattenLayer\(\), LinearLayer\(2\)\]"):
        LinearLayer(2, Input=[2, 3])
    chain = NetInitialize(NetChain([FlattenLayer(), LinearLayer(2)], Input=[2, 3]), RandomSeeding=4)
    x = np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]], np.float32)
    w, b = chain.arrays()[(2, "Weights")].numpy(), chain.arrays()[(2, "Biases")].numpy()
    assert w.shape == (2, 6)
    np.testing.assert_allclose(chain(x.tolist()), w @ x.reshape(-1) + b, rtol=1e-6)
