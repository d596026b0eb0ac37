"""The cell registry (`kernels.cells`) and the extensions beyond Wolfram's layers that it declares:
GatedRecurrentLayer's MemoryGateStateBiases and ResetGateTarget -> "State", LongShortTermMemoryLayer's
peepholes. Values and final states against float64 numpy written from the formulas, gradients by
gradcheck, the fused kernel against the reference unroll with dropout masks, the kernels each variant
runs (the default layers' unchanged), bad options, .wlnet and ONNX round trips (against onnxruntime)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import wlnet as w
from wlnet.kernels import cells, dropout, native, recurrence

F64 = torch.float64


def sigmoid(u):
    return 1 / (1 + np.exp(-u))


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def arrays_for(cell, n, k, seed, extras=()):
    names = [name for name, _ in cell.arrays] + list(extras)
    rules = dict(cell.extras) | {name: rule for name, rule in cell.arrays}
    return {name: rand(*cells.shape_of(rules[name], n, k), seed=seed + j) * 0.6 for j, name in enumerate(names)}


# ---- independent float64 references, one sequence x (T, k) -------------------------------------
def gru_ref(a, x, s, target="StateProduct"):
    a = {name: v.astype(np.float64) for name, v in a.items()}
    b_ms = a.get("MemoryGateStateBiases", 0.0)
    out = []
    for xt in x.astype(np.float64):
        z = sigmoid(a["InputGateInputWeights"] @ xt + a["InputGateStateWeights"] @ s + a["InputGateBiases"])
        r = sigmoid(a["ResetGateInputWeights"] @ xt + a["ResetGateStateWeights"] @ s + a["ResetGateBiases"])
        if target == "State":  # m = tanh(W_mx x + b_m + W_ms (r∗s) + b_ms)
            inner = a["MemoryGateStateWeights"] @ (r * s) + b_ms
        else:  # m = tanh(W_mx x + b_m + r∗(W_ms s + b_ms))
            inner = r * (a["MemoryGateStateWeights"] @ s + b_ms)
        m = np.tanh(a["MemoryGateInputWeights"] @ xt + a["MemoryGateBiases"] + inner)
        s = (1 - z) * m + z * s
        out.append(s)
    return np.array(out), s


def lstm_ref(a, x, s, c):
    """ONNX's LSTM with peepholes: i, f see p∘c_{t-1}, o sees p∘c_t."""
    a = {name: v.astype(np.float64) for name, v in a.items()}

    def pre(g, xt, s):
        return a[f"{g}GateInputWeights"] @ xt + a[f"{g}GateStateWeights"] @ s + a[f"{g}GateBiases"]

    out = []
    for xt in x.astype(np.float64):
        i = sigmoid(pre("Input", xt, s) + a.get("InputGateCellStateWeights", 0.0) * c)
        f = sigmoid(pre("Forget", xt, s) + a.get("ForgetGateCellStateWeights", 0.0) * c)
        m = np.tanh(pre("Memory", xt, s))
        c = f * c + i * m
        o = sigmoid(pre("Output", xt, s) + a.get("OutputGateCellStateWeights", 0.0) * c)
        s = o * np.tanh(c)
        out.append(s)
    return np.array(out), s, c


GRU_FORMS = [("StateProduct", True), ("State", False), ("State", True)]
PEEPHOLES = ("InputGateCellStateWeights", "ForgetGateCellStateWeights", "OutputGateCellStateWeights")


def gru_layer(n, k, target, with_bms, seed=1, **options):
    a = arrays_for(cells.GRU, n, k, seed, ["MemoryGateStateBiases"] if with_bms else [])
    form = {} if target == "StateProduct" else {"ResetGateTarget": target}
    return w.GatedRecurrentLayer(n, Input=("Varying", k), **a, **form, **options), a


def run_graph(layer, seqs, state_ports: dict):
    """The layer in a NetGraph fed initial states; → outputs per sequence, final states."""
    g = w.NetGraph({"r": layer}, [*((w.NetPort(p), w.NetPort("r", p)) for p in state_ports),
                                  *((w.NetPort("r", p), w.NetPort("final" + p)) for p in state_ports)])
    got = g({"Input": seqs, **state_ports}, WorkingPrecision="Real64")
    return got


# ---- values against the references ---------------------------------------------------------------
@pytest.mark.parametrize("target, with_bms", GRU_FORMS)
def test_gru_extensions_against_the_formulas_ragged(target, with_bms):
    n, k = 4, 3
    layer, a = gru_layer(n, k, target, with_bms)
    seqs = [rand(L, k, seed=10 + L) for L in (5, 2, 4)]
    s0 = rand(3, n, seed=7)
    got = run_graph(layer, seqs, {"State": s0})
    for b, x in enumerate(seqs):
        out, s = gru_ref(a, x, s0[b].astype(np.float64), target)
        np.testing.assert_allclose(np.array(got["Output"][b]), out, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.array(got["finalState"][b]), s, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("which", [PEEPHOLES, PEEPHOLES[:1], PEEPHOLES[2:]])
def test_lstm_peepholes_against_the_formulas_ragged(which):
    n, k = 3, 2
    a = arrays_for(cells.LSTM, n, k, 3, which)
    layer = w.LongShortTermMemoryLayer(n, Input=("Varying", k), **a)
    assert layer.cell.present == frozenset(which) and layer.cell.kernels == ("unroll",)
    seqs = [rand(L, k, seed=20 + L) for L in (4, 1, 3)]
    s0, c0 = rand(3, n, seed=8), rand(3, n, seed=9)
    got = run_graph(layer, seqs, {"State": s0, "CellState": c0})
    for b, x in enumerate(seqs):
        out, s, c = lstm_ref(a, x, s0[b].astype(np.float64), c0[b].astype(np.float64))
        np.testing.assert_allclose(np.array(got["Output"][b]), out, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.array(got["finalState"][b]), s, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.array(got["finalCellState"][b]), c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["bms", "state", "peep"])
def test_extension_gradients_gradcheck(variant):
    n, k, T, B = 3, 2, 4, 2
    if variant == "peep":
        cell = cells.LSTM.variant(PEEPHOLES)
    else:
        cell = cells.GRU.variant(["MemoryGateStateBiases"], {"ResetGateTarget": "State"} if variant == "state" else {})
    a = {name: torch.tensor(v, dtype=F64, requires_grad=True) for name, v in arrays_for(cell, n, k, 5).items()}
    x = torch.tensor(rand(B, T, k, seed=6), dtype=F64, requires_grad=True)
    lengths = torch.tensor([4, 2])
    names = list(a)

    def f(x, *arrs):
        out, final = recurrence.run(cell, dict(zip(names, arrs)), x, lengths, ())
        return out, *final

    assert torch.autograd.gradcheck(f, (x, *a.values()))


# ---- kernels --------------------------------------------------------------------------------------
def measured_as(monkeypatch, rule):
    """The measured choice (`choice.choose`) replaced by `rule(cell, n, grad)` → kernel."""
    from wlnet.kernels import choice

    monkeypatch.delenv(choice.ENV, raising=False)
    monkeypatch.setattr(choice, "choose", lambda cell, dtype, n, B, T, k, ragged, grad: (rule(cell, n, grad), None))


def test_the_default_layers_run_the_kernels_they_ran(monkeypatch):
    for cls in (w.LongShortTermMemoryLayer, w.GatedRecurrentLayer, w.BasicRecurrentLayer):
        layer = cls(3, Input=("Varying", 2))
        assert layer.cell is cls.CELL and cls.CELL.variant() is cls.CELL
        assert layer.cell.kernels[-1] == "unroll"
    built = native.usable_for(torch.device("cpu"), torch.float32) is not None
    # without masks the kernel measured faster on this machine (here: fused from n = 512 on), else torch's
    measured_as(monkeypatch, lambda cell, n, grad: "fused" if n is not None and n >= 512 else "native")
    for cell in (cells.GRU, cells.RNN):
        assert recurrence.choose(cell, "cpu", torch.float32, grad=False) == ("native" if built else "fused")
        assert recurrence.choose(cell, "cpu", torch.float32, n=512, grad=True) == "fused"
    assert recurrence.choose(cells.LSTM, "cpu", torch.float32, n=512, grad=False) == "fused"
    assert recurrence.choose(cells.LSTM, "cpu", torch.float32, n=64, grad=False) == ("native" if built else "fused")
    masks = dropout.Masks(m=torch.ones(1, 1, 1))
    assert recurrence.choose(cells.LSTM, "cpu", torch.float32, masks) == ("native" if built else "custom")
    assert recurrence.choose(cells.GRU, "cpu", torch.float32, masks) == ("native" if built else "unroll")


def test_the_variants_kernels(monkeypatch):
    measured_as(monkeypatch, lambda cell, n, grad: "native")
    built = native.usable_for(torch.device("cpu"), torch.float32) is not None
    bms = cells.GRU.variant(["MemoryGateStateBiases"])
    # torch's GRU has b_hn inside the reset product, and so has the native kernel
    assert bms.kernels == ("native", "fused", "unroll") and bms.array_names[-1] == "MemoryGateStateBiases"
    assert recurrence.choose(bms, "cpu", torch.float32) == ("native" if built else "fused")
    assert recurrence.choose(bms, "cpu", torch.float32, dropout.Masks(s=torch.ones(1, 3, 1))) == \
        ("native" if built else "unroll")
    state = cells.GRU.variant((), {"ResetGateTarget": "State"})
    assert state.kernels == ("unroll",) and state.array_names == cells.GRU.array_names
    assert cells.GRU.variant(["MemoryGateStateBiases"]) is bms  # one object per variant
    assert bms.array_shapes(4, 2)["MemoryGateStateBiases"] == (4,)
    assert bms.element_count(4, 2) == cells.GRU.element_count(4, 2) + 4 == 3 * 4 * (2 + 4 + 1) + 4


def kernels_taking(cell, masks):
    """The cell's kernels that run with `masks` here (the fused one takes weight and input masks only)."""
    built = native.usable_for(torch.device("cpu"), F64) is not None
    return [k for k in cell.kernels if k != "unroll" and (k != "native" or built)
            and (k != "fused" or (masks.s is None and masks.m is None))]


@pytest.mark.parametrize("methods", [(), ("VariationalWeights",), ("VariationalInput", "VariationalWeights"),
                                     ("VariationalState", "StateUpdate", "VariationalInput")])
@pytest.mark.parametrize("variant", ["gru+bms", "gru", "lstm", "rnn"])
def test_every_kernel_equals_the_unroll_values_and_gradients(variant, methods):
    n, k, B, T = 4, 3, 3, 5
    cell = {"gru+bms": cells.GRU.variant(["MemoryGateStateBiases"]), "gru": cells.GRU, "lstm": cells.LSTM,
            "rnn": cells.RNN}[variant]
    methods = [m for m in methods if m in cell.dropout]
    a = {name: torch.tensor(v, dtype=F64) for name, v in arrays_for(cell, n, k, 2).items()}
    x = torch.tensor(rand(B, T, k, seed=3), dtype=F64)
    lengths = torch.tensor([5, 3, 1])
    states = tuple(torch.tensor(rand(B, n, seed=4 + j), dtype=F64) for j in range(len(cell.states)))
    masks = dropout.draw_masks(cell, dict.fromkeys(methods, 0.4), B, T, n, k, torch.Generator().manual_seed(1),
                               "cpu", F64)
    weights = torch.tensor(rand(B, T, n, seed=9), dtype=F64)

    def grads(kernel):
        xs, arrs, s0 = x.clone().requires_grad_(), {m: v.clone().requires_grad_() for m, v in a.items()}, \
            tuple(s.clone().requires_grad_() for s in states)
        if kernel == "unroll":
            out, final = recurrence.unroll(cell, dropout.mask_arrays(arrs, masks.weights) if masks.weights else arrs,
                                           xs, lengths, s0, masks.x, masks.s, masks.m)
        else:
            out, final = recurrence.run_on(kernel, cell, xs, lengths, arrs, s0, masks)
        ((out * weights).sum() + sum(f.sum() for f in final)).backward()
        return [out.detach(), *(f.detach() for f in final), xs.grad, *(s.grad for s in s0),
                *(arrs[m].grad for m in a)]

    others = kernels_taking(cell, masks)
    if not others:
        pytest.skip(f"no kernel but the unroll runs {cell.name} with {methods} here")
    want = grads("unroll")
    for kernel in others:
        for j, (g, r) in enumerate(zip(grads(kernel), want)):
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10, msg=f"{kernel}, value {j}")


def test_extended_layers_train_with_dropout():
    layer, _ = gru_layer(3, 2, "State", True, Dropout={"VariationalState": 0.3, "StateUpdate": 0.2})
    m = layer.build(trainable=True)
    assert "MemoryGateStateBiases" in dict(m.named_parameters())
    from wlnet.core.data import Seq
    from wlnet.core.runtime import Ctx

    out, _ = m({"Input": Seq(torch.randn(2, 4, 2), None)}, {}, Ctx(True, torch.Generator().manual_seed(0)))
    out["Output"].data.sum().backward()
    assert m.MemoryGateStateBiases.grad is not None and m.MemoryGateStateBiases.grad.abs().sum() > 0


def test_b_ms_of_zeros_computes_wolframs_layer():
    n, k = 3, 2
    plain, a = gru_layer(n, k, "StateProduct", False)
    zero = w.GatedRecurrentLayer(n, Input=("Varying", k), **a, MemoryGateStateBiases=np.zeros(n))
    x = rand(4, k, seed=1)
    np.testing.assert_allclose(zero(x), plain(x), rtol=1e-6, atol=1e-7)


# ---- options, errors, saving -----------------------------------------------------------------------
def test_options_and_errors():
    assert "ResetGateTarget" not in w.Options(w.GatedRecurrentLayer)  # Wolfram's options, as its page lists them
    assert "MemoryGateStateBiases" not in w.Options(w.GatedRecurrentLayer)
    with pytest.raises(w.OptionError, match=r"GatedRecurrentLayer.*ResetGateTarget must be one of 'StateProduct', "
                                            r"'State', but was given 'Before'"):
        w.GatedRecurrentLayer(3, ResetGateTarget="Before")
    with pytest.raises(w.ShapeError, match=r"GatedRecurrentLayer.*MemoryGateStateBiases must have dimensions 3"):
        w.GatedRecurrentLayer(3, MemoryGateStateBiases=np.zeros(4))
    with pytest.raises(w.ShapeError, match=r"LongShortTermMemoryLayer.*InputGateCellStateWeights"):
        w.LongShortTermMemoryLayer(3, InputGateCellStateWeights=np.zeros((3, 3)))
    with pytest.raises(w.OptionError, match="PeepholeWeights"):
        w.LongShortTermMemoryLayer(3, PeepholeWeights=np.zeros(3))


def test_asked_for_extras_are_initialized_and_counted():
    layer = w.GatedRecurrentLayer(3, Input=("Varying", 2), MemoryGateStateBiases=w.Automatic)
    assert w.Information(layer, "ArraysTotalElementCount") == 3 * 3 * (2 + 3 + 1) + 3
    net = w.NetInitialize(layer)
    assert np.array_equal(w.NetExtract(net, "MemoryGateStateBiases"), np.zeros(3, np.float32))
    assert w.Information(net, "ArraysCount") == 10


@pytest.mark.parametrize("make", [
    lambda: gru_layer(3, 2, "State", True)[0],
    lambda: gru_layer(3, 2, "StateProduct", True)[0],
    lambda: w.LongShortTermMemoryLayer(3, Input=("Varying", 2), **arrays_for(cells.LSTM, 3, 2, 4, PEEPHOLES)),
    lambda: w.GatedRecurrentLayer(3, Input=("Varying", 2), MemoryGateStateBiases=w.Automatic),
])
def test_wlnet_files_and_inputform_keep_the_extensions(make, tmp_path):
    net = make()
    path = str(tmp_path / "net.wlnet")
    w.Export(path, net)
    back = w.Import(path)
    assert back.cell is net.cell and list(back._arrays) == list(net._arrays)
    rebuilt = eval(w.Information(net, "InputForm"), vars(w))
    assert rebuilt.cell is net.cell
    if net.initialized():
        x = rand(4, 2, seed=2)
        assert np.array_equal(back(x), net(x)) and np.array_equal(rebuilt(x), net(x))
    else:
        assert back.missing_arrays() == net.missing_arrays()


# ---- ONNX out and back ------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: gru_layer(3, 2, "State", True)[0],
    lambda: gru_layer(3, 2, "StateProduct", True)[0],
    lambda: gru_layer(3, 2, "State", False)[0],
    lambda: w.LongShortTermMemoryLayer(3, Input=("Varying", 2), **arrays_for(cells.LSTM, 3, 2, 4, PEEPHOLES)),
    lambda: w.LongShortTermMemoryLayer(3, Input=("Varying", 2), **arrays_for(cells.LSTM, 3, 2, 4, PEEPHOLES[1:2])),
])
def test_onnx_export_of_the_extensions_against_onnxruntime_and_back(make, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from wlnet.io.onnx import export_onnx, import_onnx

    net = make()
    path = str(tmp_path / "net.onnx")
    export_onnx(path, net)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    x = rand(2, 5, 2, seed=3)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    want = sess.run(["Output"], {"Input": x})[0]
    np.testing.assert_allclose(want, np.array(net(x)), atol=1e-5)
    back = import_onnx(path)
    (layer,) = [leaf for _, leaf in back.leaves() if type(leaf) is type(net)]
    assert layer.cell is net.cell
    for name, t in net._arrays.items():
        np.testing.assert_array_equal(layer._arrays[name].numpy(), t.numpy(), err_msg=name)


@pytest.mark.parametrize("backward_target", ["StateProduct", "State"])
def test_onnx_export_of_a_bidirectional_operator_over_extended_grus(backward_target, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from wlnet.io.onnx import export_onnx, import_onnx

    fw = gru_layer(3, 2, "StateProduct", True, seed=1)[0]
    bw = gru_layer(3, 2, backward_target, False, seed=30)[0]
    net = w.NetBidirectionalOperator((fw, bw), Input=("Varying", 2))
    path = str(tmp_path / "bi.onnx")
    export_onnx(path, net)
    model = onnx.load(path)
    grus = [node for node in model.graph.node if node.op_type == "GRU"]
    # one bidirectional node where both directions have the same ONNX attributes, else one each
    assert len(grus) == (1 if backward_target == "StateProduct" else 2)
    x = rand(2, 5, 2, seed=3)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(["Output"], {"Input": x})[0], np.array(net(x)), atol=1e-5)
    back = import_onnx(path)
    np.testing.assert_allclose(np.array(back(x)), np.array(net(x)), atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: gru_layer(2, 1, "StateProduct", True)[0],
    lambda: gru_layer(2, 1, "State", True)[0],
    lambda: w.LongShortTermMemoryLayer(2, Input=("Varying", 1), **arrays_for(cells.LSTM, 2, 1, 4, PEEPHOLES)),
])
def test_nettrain_trains_the_extra_arrays(make):
    net = make()
    extras = [name for name in net._arrays if name in net.cell.extra_names]
    data = [([[1.0], [2.0], [3.0]], [[0.5, -0.5], [0.2, 0.1], [-0.3, 0.4]])] * 4
    trained = w.NetTrain(net, data, MaxTrainingRounds=3, TrainingProgressReporting=None,
                         LossFunction=w.MeanSquaredLossLayer())
    assert trained.cell is net.cell
    assert all(not np.array_equal(w.NetExtract(trained, name), w.NetExtract(net, name)) for name in extras)
