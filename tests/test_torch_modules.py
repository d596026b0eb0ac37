"""Plain torch modules: from_torch(nn.LSTM / nn.GRU / nn.RNN / nn.Linear / activations /
nn.Sequential) against the torch modules themselves (values, ragged batches as packed sequences,
gradients of inputs and of every array, in float64); to_torch(net) against the net, its gradients
against torch's modules holding the same arrays, torch.export, training in a plain loop and back
with from_torch; the modules and options that do not map, refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import wlnet as w
from wlnet.core.runtime import param_name
from wlnet.kernels import cells

F64 = torch.float64
CELLS = {torch.nn.LSTM: cells.LSTM, torch.nn.GRU: cells.GRU, torch.nn.RNN: cells.RNN}


def torch_rnn(kind, k, n, layers=1, seed=0, **kw):
    torch.manual_seed(seed)
    m = kind(k, n, num_layers=layers, batch_first=True, **kw).double()
    if kind is torch.nn.GRU:  # b_hn sits inside the reset product: only zero maps
        with torch.no_grad():
            for name, p in m.named_parameters():
                if name.startswith("bias_hh"):
                    p[2 * n:] = 0
    return m


def packed_run(m, x, lengths):
    """torch's own ragged semantics: a packed sequence; output zero-padded, each final state at its end."""
    p = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, h = m(p)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, h


@pytest.mark.parametrize("kind", [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN])
@pytest.mark.parametrize("layers", [1, 2])
def test_from_torch_recurrent_values_ragged_and_gradients(kind, layers):
    m = torch_rnn(kind, 3, 4, layers)
    net = w.from_torch(m)
    assert isinstance(net, w.NetChain if layers > 1 else (w.LongShortTermMemoryLayer, w.GatedRecurrentLayer,
                                                           w.BasicRecurrentLayer))
    x = torch.randn(3, 5, 3, dtype=F64)
    lengths = torch.tensor([5, 2, 4])
    want, h = packed_run(m, x, lengths)
    got = net([x[i, :t].numpy() for i, t in enumerate(lengths.tolist())], WorkingPrecision="Real64")
    for i, t in enumerate(lengths.tolist()):
        np.testing.assert_allclose(got[i], want[i, :t].detach().numpy(), atol=1e-10)
    # gradients through to_torch against torch's, array by array
    mod = w.to_torch(net).double()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, final = mod(xa, lengths=lengths, return_states=True)
    torch.testing.assert_close(out, want, atol=1e-10, rtol=0)
    last = (layers, "State") if layers > 1 else ("State",)
    torch.testing.assert_close(final[last], (h[0] if kind is torch.nn.LSTM else h)[-1], atol=1e-10, rtol=0)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    m.zero_grad()
    (packed_run(m, xb, lengths)[0] * weights).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-10, rtol=0)
    cell = CELLS[kind]
    params = dict(mod.named_parameters())
    for i in range(layers):
        g = [getattr(m, f"{p}_l{i}").grad for p in ("weight_ih", "weight_hh", "bias_ih")]
        for name, want_grad in cell.unpack(*g).items():
            pos = (i + 1,) if layers > 1 else ()
            torch.testing.assert_close(params[param_name(pos, name)].grad, want_grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN])
@pytest.mark.parametrize("layers", [1, 2])
def test_from_torch_bidirectional_values_ragged_final_states_and_gradients(kind, layers):
    m = torch_rnn(kind, 3, 4, layers, bidirectional=True)
    net = w.from_torch(m)
    ops = [net] if layers == 1 else [w.NetExtract(net, i) for i in (1, 2)]
    assert all(isinstance(op, w.NetBidirectionalOperator) and op.aggregator == "Catenate" for op in ops)
    x = torch.randn(3, 5, 3, dtype=F64)
    lengths = torch.tensor([5, 2, 4])
    want, h = packed_run(m, x, lengths)  # (B, T, 2n): forward, then backward
    got = net([x[i, :t].numpy() for i, t in enumerate(lengths.tolist())], WorkingPrecision="Real64")
    for i, t in enumerate(lengths.tolist()):
        np.testing.assert_allclose(got[i], want[i, :t].detach().numpy(), atol=1e-10)
    mod = w.to_torch(net).double()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, final = mod(xa, lengths=lengths, return_states=True)
    torch.testing.assert_close(out, want, atol=1e-10, rtol=0)
    h_n = h[0] if kind is torch.nn.LSTM else h  # (2·layers, B, n): the last layer's forward, then backward
    top = (layers,) if layers > 1 else ()
    torch.testing.assert_close(final[(*top, "ForwardNet", "State")], h_n[-2], atol=1e-10, rtol=0)
    torch.testing.assert_close(final[(*top, "BackwardNet", "State")], h_n[-1], atol=1e-10, rtol=0)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (packed_run(m, xb, lengths)[0] * weights).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-10, rtol=0)
    params = dict(mod.named_parameters())
    for i in range(layers):
        for suffix, key in (("", "ForwardNet"), ("_reverse", "BackwardNet")):
            g = [getattr(m, f"{p}_l{i}{suffix}").grad for p in ("weight_ih", "weight_hh", "bias_ih")]
            for name, want_grad in CELLS[kind].unpack(*g).items():
                pos = ((i + 1,) if layers > 1 else ()) + (key,)
                torch.testing.assert_close(params[param_name(pos, name)].grad, want_grad, atol=1e-10, rtol=0)


def test_to_torch_of_sequence_layers_list_layers_and_operators_values_and_gradcheck():
    P = w.NetPort
    net = w.NetInitialize(w.NetGraph(
        {"lstm": w.LongShortTermMemoryLayer(3), "rest": w.SequenceRestLayer(),
         "bi": w.NetBidirectionalOperator(w.GatedRecurrentLayer(2), "Mean"), "rev": w.SequenceReverseLayer(),
         "map": w.NetMapOperator(w.NetChain([w.LinearLayer(3), w.ElementwiseLayer("Tanh")])),
         "cat": w.CatenateLayer(-1), "max": w.AggregationLayer("Max", 1), "total": w.TotalLayer(),
         "times": w.ThreadingLayer("Times"), "most": w.SequenceMostLayer(), "mean": w.AggregationLayer("Mean", 1),
         "out": w.CatenateLayer()},
        [(P("Input"), "lstm", "rest", "bi"), ("rest", "rev", "map"), (["bi", "map"], "cat", "max"),
         (["map", "rest"], "total"), (["total", "rest"], "times", "most", "mean"), (["max", "mean"], "out")],
        Input=("Varying", 2)), RandomSeeding=7)
    mod = w.to_torch(net)
    assert sorted(n for n, _ in mod.named_parameters()) == sorted(param_name(k[:-1], k[-1]) for k in net.arrays())
    seqs = [np.random.default_rng(2).normal(size=(t, 2)).astype(np.float32) for t in (5, 3, 4)]
    x = torch.zeros(3, 5, 2)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = torch.from_numpy(s)
    lengths = torch.tensor([5, 3, 4])
    np.testing.assert_allclose(mod(x, lengths=lengths).detach().numpy(), net(seqs), atol=1e-6)
    mod64 = w.to_torch(net).double()
    assert torch.autograd.gradcheck(lambda v: mod64(v, lengths=lengths), (x.double().requires_grad_(),))
    mod64(x.double(), lengths=lengths).sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in mod64.parameters())


def test_to_torch_of_a_lone_operator_and_back():
    op = w.NetInitialize(w.NetBidirectionalOperator((w.LongShortTermMemoryLayer(3), w.BasicRecurrentLayer(2)),
                                                    Input=("Varying", 2)), RandomSeeding=3)
    mod = w.to_torch(op)
    assert {n.split(".")[0] for n, _ in mod.named_parameters()} == {"ForwardNet", "BackwardNet"}
    x = torch.randn(2, 4, 2)
    np.testing.assert_allclose(mod(x).detach().numpy(), op(x.numpy()), atol=1e-6)
    with torch.no_grad():
        for p in mod.parameters():
            p.mul_(0.5)
    back = w.from_torch(mod)
    assert isinstance(back, w.NetBidirectionalOperator)
    np.testing.assert_allclose(back(x.numpy()), mod(x).detach().numpy(), atol=1e-6)
    mapped = w.NetInitialize(w.NetMapOperator(w.LinearLayer(3), Input=("Varying", 2)))
    np.testing.assert_allclose(w.to_torch(mapped)(x).detach().numpy(), mapped(x.numpy()), atol=1e-6)


def test_from_torch_lstm_sums_the_two_biases_and_keeps_dropout_between_layers():
    m = torch_rnn(torch.nn.LSTM, 2, 3, layers=2, dropout=0.25)
    net = w.from_torch(m)
    assert [type(x).__name__ for _, x in net.leaves()] == ["LongShortTermMemoryLayer", "DropoutLayer",
                                                          "LongShortTermMemoryLayer"]
    assert w.NetExtract(net, 2).p == 0.25
    b = (m.bias_ih_l0 + m.bias_hh_l0).detach().numpy()
    np.testing.assert_allclose(w.NetExtract(net, (1, "ForgetGateBiases")), b[3:6], atol=1e-7)  # torch: i, f, g, o
    np.testing.assert_allclose(w.NetExtract(net, (1, "MemoryGateBiases")), b[6:9], atol=1e-7)


def test_from_torch_sequential_linear_and_activations_values_and_gradients():
    torch.manual_seed(2)
    m = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3, bias=False),
                            torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(3, 3), torch.nn.Sigmoid(),
                            torch.nn.Softmax(dim=-1)).double().eval()
    net = w.from_torch(m)
    assert [type(x).__name__ for _, x in net.leaves()] == ["LinearLayer", "ElementwiseLayer", "LinearLayer",
                                                          "ElementwiseLayer", "DropoutLayer", "LinearLayer",
                                                          "ElementwiseLayer", "SoftmaxLayer"]
    x = torch.randn(6, 4, dtype=F64)
    torch.testing.assert_close(net(x, WorkingPrecision="Real64"), m(x), atol=1e-12, rtol=0)
    mod = w.to_torch(net).double()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    mod(xa)[:, 0].sum().backward()
    m(xb)[:, 0].sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(dict(mod.named_parameters())["1.Weights"].grad, m[0].weight.grad)
    torch.testing.assert_close(dict(mod.named_parameters())["6.Biases"].grad, m[5].bias.grad)


def test_to_torch_values_states_and_gradcheck():
    net = w.NetInitialize(w.NetGraph([w.LongShortTermMemoryLayer(3), w.SequenceLastLayer(), w.LinearLayer(2)],
                                     [(1, 2, 3)], Input=("Varying", 2)), RandomSeeding=4)
    mod = w.to_torch(net)
    assert [n for n, _ in mod.named_parameters()] == [f"{p}.{a}" for (p, a) in [(k[0], k[1]) for k in
                                                                                net.arrays()]]
    seqs = [np.random.default_rng(1).normal(size=(t, 2)).astype(np.float32) for t in (4, 1, 3)]
    x = torch.zeros(3, 4, 2)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = torch.from_numpy(s)
    lengths = torch.tensor([4, 1, 3])
    np.testing.assert_allclose(mod(x, lengths=lengths).detach().numpy(), net(seqs), atol=1e-6)
    s0 = torch.randn(3, 3)
    want = net({"Input": seqs, w.NetPort(w.All, "States"): {(1, "State"): s0.numpy()}})
    np.testing.assert_allclose(mod(x, lengths=lengths, states={(1, "State"): s0}).detach().numpy(), want, atol=1e-6)
    mod64 = w.to_torch(net).double()
    xd = x.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: mod64(v, lengths=lengths), (xd,))


def test_to_torch_trains_in_a_plain_loop_and_comes_back_with_from_torch():
    net = w.NetInitialize(w.NetChain([w.GatedRecurrentLayer(3), w.SequenceLastLayer(), w.LinearLayer(1)],
                                     Input=("Varying", 2)), RandomSeeding=5)
    before = {k: v.copy() for k, v in w.Information(net, "Arrays").items()}
    mod = w.to_torch(net)
    opt = torch.optim.Adam(mod.parameters(), lr=0.05)
    x, y = torch.randn(8, 4, 2), torch.randn(8, 1)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = ((mod(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    trained = w.from_torch(mod)
    for k, v in w.Information(net, "Arrays").items():
        np.testing.assert_array_equal(v, before[k])  # the net given to to_torch is unchanged
    params = dict(mod.named_parameters())
    for (pos, a), v in {(k[:-1], k[-1]): v for k, v in w.Information(trained, "Arrays").items()}.items():
        np.testing.assert_array_equal(v, params[param_name(pos, a)].detach().numpy())
    with torch.no_grad():
        np.testing.assert_allclose(trained(x.numpy()), mod(x).numpy(), atol=1e-6)


def test_to_torch_dropout_acts_in_training_mode_only():
    net = w.NetInitialize(w.LongShortTermMemoryLayer(4, Input=("Varying", 2), Dropout=0.5))
    mod = w.to_torch(net)
    x = torch.randn(2, 5, 2)
    np.testing.assert_allclose(mod(x).detach().numpy(), net(x.numpy()), atol=1e-6)
    mod.train()
    assert not torch.allclose(mod(x), mod(x))


def test_torch_export_of_an_lstm_chain():
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(3), w.LongShortTermMemoryLayer(2)],
                                     Input=("Varying", 2)), RandomSeeding=6)
    mod = w.to_torch(net)
    x = torch.randn(2, 5, 2)
    program = torch.export.export(mod, (x,))
    x2 = torch.randn(2, 5, 2)
    np.testing.assert_allclose(program.module()(x2).detach().numpy(), net(x2.numpy()), atol=1e-6)


def test_torch_export_with_lengths_of_a_ragged_batch():
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(3), w.GatedRecurrentLayer(2), w.SequenceLastLayer(),
                                      w.LinearLayer(2)], Input=("Varying", 2)), RandomSeeding=6)
    mod = w.to_torch(net)
    x = torch.randn(4, 5, 2)
    program = torch.export.export(mod, (x,), {"lengths": torch.tensor([5, 3, 2, 4])})
    x2, lengths2 = torch.randn(4, 5, 2), torch.tensor([1, 5, 4, 2])  # other values, the same shapes
    expected = net([x2[i, :n].numpy() for i, n in enumerate(lengths2.tolist())])
    np.testing.assert_allclose(program.module()(x2, lengths=lengths2).detach().numpy(), expected, atol=1e-6)


def test_torch_export_with_lengths_and_states_is_refused_before_the_trace_fails():
    net = w.NetInitialize(w.LongShortTermMemoryLayer(2, Input=("Varying", 2)), RandomSeeding=1)
    mod = w.to_torch(net)
    with pytest.raises(w.NotSupportedError, match="with lengths and return_states=True is not supported") as info:
        torch.export.export(mod, (torch.randn(2, 3, 2),), {"lengths": torch.tensor([3, 1]), "return_states": True})
    assert "GuardOnDataDependentSymNode" not in str(info.value)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_from_torch_gru_with_its_b_hn(bidirectional):
    # torch's trained GRUs have b_hn ≠ 0, inside the reset product: the layer's MemoryGateStateBiases
    torch.manual_seed(3)
    m = torch.nn.GRU(3, 4, num_layers=2, batch_first=True, bidirectional=bidirectional).double()
    with torch.no_grad():
        m.bias_hh_l1[8:] = 0  # (the second layer's forward b_hn zero: that layer is Wolfram's own)
    net = w.from_torch(m)
    layers = [leaf for _, leaf in net.leaves() if isinstance(leaf, w.GatedRecurrentLayer)]
    held = ["MemoryGateStateBiases" in leaf._arrays for leaf in layers]
    assert held == ([True, True, False, True] if bidirectional else [True, False])
    assert layers[held.index(False)].cell is w.GatedRecurrentLayer.CELL
    x = torch.randn(3, 5, 3, dtype=F64)
    lengths = torch.tensor([5, 2, 4])
    want, h = packed_run(m, x, lengths)
    mod = w.to_torch(net).double()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = mod(xa, lengths=lengths)
    torch.testing.assert_close(out, want, atol=1e-10, rtol=0)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    mine, _ = packed_run(m, xb, lengths)
    (mine * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-10, rtol=0)


def test_refused_modules_and_options():
    with pytest.raises(w.NotSupportedError, match="proj_size=2"):
        w.from_torch(torch.nn.LSTM(2, 3, proj_size=2))
    with pytest.raises(w.NotSupportedError, match="nonlinearity='relu'"):
        w.from_torch(torch.nn.RNN(2, 3, nonlinearity="relu"))
    with pytest.raises(w.NotSupportedError, match=r"module 2 of the Sequential is a torch.nn.modules.conv.Conv1d"):
        w.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Conv1d(1, 1, 1)))
    with pytest.raises(w.NotSupportedError, match="dim=-1"):
        w.from_torch(torch.nn.Softmax(dim=0))
    with pytest.raises(w.NetError, match="expected a torch.nn.Module"):
        w.from_torch("LSTM")
    with pytest.raises(w.NetError, match="empty"):
        w.from_torch(torch.nn.Sequential())
    with pytest.raises(w.InitializationError):
        w.to_torch(w.LinearLayer(2, Input=3))
    with pytest.raises(w.NetError, match="to_torch: expected a net"):
        w.to_torch(torch.nn.Linear(2, 2))
    mod = w.to_torch(w.NetInitialize(w.LinearLayer(2, Input=3)))
    with pytest.raises(w.NetError, match=r"takes 1 input tensor\(s\)"):
        mod(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(w.NetError, match="no.*Varying|none"):
        mod(torch.zeros(1, 3), lengths=torch.tensor([1]))
