"""NormalizationLayer, BatchNormalizationLayer, ConvolutionLayer, PoolingLayer: values against
numpy and torch's own functions with the layers' arrays, example by example on ragged batches;
moving statistics in training and their use in evaluation; gradcheck in float64; typed errors;
NetTrain in a chain; Export/Import and to_torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wlnet import (
    All,
    BatchNormalizationLayer,
    ConvolutionLayer,
    Export,
    FlattenLayer,
    Import,
    InputError,
    LinearLayer,
    LongShortTermMemoryLayer,
    NetChain,
    NetInitialize,
    NetTrain,
    NormalizationLayer,
    NotSupportedError,
    OptionError,
    PoolingLayer,
    ReshapeLayer,
    SequenceLastLayer,
    ShapeError,
    to_torch,
)
from wlnet.core.data import Seq
from wlnet.core.runtime import Ctx
from wlnet.core.shapes import VARYING, Real

RNG = np.random.default_rng(9)
RAGGED = [RNG.standard_normal((t, 4)).round(3) for t in (6, 3, 5)]  # sequences of size-4 vectors
EPS = 0.001


def close(got, want, atol=1e-5):
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), atol=atol)


def arrays(net) -> dict:
    return {k[-1]: v.numpy().astype(np.float64) for k, v in net.arrays().items()}


def with_random_arrays(layer, seed=0):
    """The layer with every array drawn at random (so that scales and biases are not 1 and 0)."""
    g = torch.Generator().manual_seed(seed)
    net = NetInitialize(layer)
    return net.with_arrays({k: torch.rand(v.shape, generator=g) + 0.5 for k, v in net.arrays().items()})


# ---- NormalizationLayer ------------------------------------------------------------------------
def test_layer_norm_of_each_step_equals_torchs_layer_norm_on_a_ragged_batch():
    net = with_random_arrays(NormalizationLayer(2, "Same", Input=("Varying", 4)))
    a = arrays(net)
    out = net([x.tolist() for x in RAGGED])
    for got, x in zip(out, RAGGED):
        want = F.layer_norm(torch.tensor(x), (4,), torch.tensor(a["Scaling"]), torch.tensor(a["Biases"]), EPS)
        close(got, want)


def _np_norm(x, axes, eps=EPS, unbiased=False, rms=False):
    if rms:
        return x / np.sqrt((x ** 2).mean(axes, keepdims=True) + eps)
    mu = x.mean(axes, keepdims=True)
    var = ((x - mu) ** 2).sum(axes, keepdims=True) / (np.prod([x.shape[a] for a in axes]) - unbiased)
    return (x - mu) / np.sqrt(var + eps)


def test_default_levels_rms_unbiased_and_normalization_over_the_real_steps_of_a_ragged_sequence():
    m = RNG.standard_normal((3, 5))
    net = with_random_arrays(NormalizationLayer(Input=(3, 5)))
    a = arrays(net)
    assert a["Scaling"].shape == (3,)  # the default: each row normalized, one scale per row
    close(net(m.tolist()), _np_norm(m, (1,)) * a["Scaling"][:, None] + a["Biases"][:, None])
    net = with_random_arrays(NormalizationLayer([1, 2], "Same", Method="RMS", Input=(3, 5)))
    a = arrays(net)
    close(net(m.tolist()), _np_norm(m, (0, 1), rms=True) * a["Scaling"] + a["Biases"])
    net = NetInitialize(NormalizationLayer(2, "Same", Unbiased=True, Epsilon=0.5, Input=(3, 5)))
    close(net(m.tolist()), _np_norm(m, (1,), eps=0.5, unbiased=True))
    # over level 1 of a ragged sequence (each channel over its own real steps), a scale per channel
    net = with_random_arrays(NormalizationLayer(1, Input=("Varying", 4)))
    a = arrays(net)
    out = net([x.tolist() for x in RAGGED])
    for got, x in zip(out, RAGGED):
        close(got, _np_norm(x, (0,)) * a["Scaling"] + a["Biases"])
    v = RNG.standard_normal(4)
    close(NetInitialize(NormalizationLayer(Input=4))(v.tolist()), _np_norm(v, (0,)))


def test_normalization_without_scaling_or_biases_has_no_arrays():
    layer = NormalizationLayer(2, "Same", Scaling=None, Biases=None, Input=("Varying", 4))
    assert layer.initialized() and layer.arrays() == {}
    close(layer(RAGGED[1].tolist()), _np_norm(RAGGED[1], (1,)))


# ---- BatchNormalizationLayer -------------------------------------------------------------------
def _run(net, value, train):
    module = net.build(trainable=True)
    out, _ = module({"Input": value}, {}, Ctx(train, None))
    return out["Output"], {n: p.detach().clone() for n, p in module.named_parameters()}


def test_batch_norm_in_training_equals_torchs_and_updates_the_moving_statistics():
    net = with_random_arrays(BatchNormalizationLayer(Momentum=0.8, Input=(3, 5)))
    a = arrays(net)
    x = torch.tensor(RNG.standard_normal((4, 3, 5)), dtype=torch.float32)
    y, after = _run(net, x, train=True)
    rm, rv = torch.tensor(a["MovingMean"]).float(), torch.tensor(a["MovingVariance"]).float()
    want = F.batch_norm(x, rm.clone(), rv.clone(), torch.tensor(a["Scaling"]).float(),
                        torch.tensor(a["Biases"]).float(), training=True, eps=EPS)
    close(y.detach(), want)
    xs = x.numpy().astype(np.float64)
    close(after["MovingMean"], 0.8 * a["MovingMean"] + 0.2 * xs.mean((0, 2)))
    close(after["MovingVariance"], 0.8 * a["MovingVariance"] + 0.2 * xs.var((0, 2)))
    y_eval, same = _run(net, x, train=False)  # evaluation: the moving values, unchanged
    close(y_eval.detach(), F.batch_norm(x, rm, rv, torch.tensor(a["Scaling"]).float(),
                                        torch.tensor(a["Biases"]).float(), training=False, eps=EPS))
    close(same["MovingMean"], a["MovingMean"])


def test_batch_norm_of_a_ragged_sequence_counts_real_steps_only():
    net = with_random_arrays(BatchNormalizationLayer(Interleaving=True, Input=("Varying", 4)))
    a = arrays(net)
    data = torch.nn.utils.rnn.pad_sequence([torch.tensor(x, dtype=torch.float32) for x in RAGGED], batch_first=True)
    lengths = torch.tensor([len(x) for x in RAGGED])
    y, after = _run(net, Seq(data, lengths), train=True)
    real = np.concatenate(RAGGED)  # every real step of the batch, (14, 4)
    mu, var = real.mean(0), real.var(0)
    for j, x in enumerate(RAGGED):
        close(y.data[j, :len(x)].detach(), (x - mu) / np.sqrt(var + EPS) * a["Scaling"] + a["Biases"])
        assert float(y.data[j, len(x):].detach().abs().sum()) == 0.0
    close(after["MovingMean"], 0.9 * a["MovingMean"] + 0.1 * mu)
    close(after["MovingVariance"], 0.9 * a["MovingVariance"] + 0.1 * var)


def test_net_train_updates_the_moving_statistics_by_the_formula_not_by_gradients():
    layer = BatchNormalizationLayer(Input=2)
    net = NetInitialize(NetChain([layer, LinearLayer(1)]), RandomSeeding=2)
    xs = RNG.standard_normal((6, 2)).astype(np.float32)
    data = [(x.tolist(), [1.0]) for x in xs]
    res = NetTrain(net, data, All, MaxTrainingRounds=1, BatchSize=6, TrainingProgressReporting=None,
                   ValidationSet=None, RandomSeeding=1)
    bn = res["TrainedNet"].arrays()
    x64 = xs.astype(np.float64)
    close(bn[(1, "MovingMean")], 0.1 * x64.mean(0))
    close(bn[(1, "MovingVariance")], 0.9 + 0.1 * x64.var(0))
    assert not torch.equal(bn[(1, "Scaling")], torch.ones(2))  # trained


# ---- ConvolutionLayer, PoolingLayer ------------------------------------------------------------
CONVS = [dict(), dict(Stride=2), dict(PaddingSize=(2, 1)), dict(Dilation=2, PaddingSize=1),
         dict(ChannelGroups=2, Stride=2, PaddingSize=(0, 3))]


@pytest.mark.parametrize("opts", CONVS, ids=[str(o) for o in CONVS])
def test_convolution_over_a_ragged_sequence_equals_torchs_conv1d_example_by_example(opts):
    net = with_random_arrays(ConvolutionLayer(6, 3, Interleaving=True, Input=("Varying", 4), **opts))
    a = arrays(net)
    w, b = torch.tensor(a["Weights"]), torch.tensor(a["Biases"])
    pad = opts.get("PaddingSize", 0)
    pad = pad if isinstance(pad, tuple) else (pad, pad)
    out = net([x.tolist() for x in RAGGED])
    for got, x in zip(out, RAGGED):
        xt = F.pad(torch.tensor(x).T.unsqueeze(0), pad)
        want = F.conv1d(xt, w, b, stride=opts.get("Stride", 1), dilation=opts.get("Dilation", 1),
                        groups=opts.get("ChannelGroups", 1))[0].T
        close(got, want)


def test_padding_same_keeps_the_length():
    conv = ConvolutionLayer(3, 4, Dilation=2, PaddingSize="Same", Interleaving=True, Input=("Varying", 4))
    assert conv.pad == (3, 3)
    net = with_random_arrays(conv)
    assert [len(o) for o in net([x.tolist() for x in RAGGED])] == [len(x) for x in RAGGED]
    assert PoolingLayer(2, PaddingSize="Same", Interleaving=True, Input=(5, 4)).output_ports()["Output"] == Real(5, 4)
    with pytest.raises(NotSupportedError):
        PoolingLayer(2, 2, PaddingSize="Same")


def test_convolution_channels_first_and_its_types():
    net = with_random_arrays(ConvolutionLayer(2, 2, Input=(3, 7), Stride=2))
    assert net.output_ports()["Output"] == Real(2, 3)
    a = arrays(net)
    x = RNG.standard_normal((3, 7))
    close(net(x.tolist()), F.conv1d(torch.tensor(x)[None], torch.tensor(a["Weights"]), torch.tensor(a["Biases"]),
                                    stride=2)[0])
    assert ConvolutionLayer(5, 3, Interleaving=True, Input=("Varying", 2)).output_ports()["Output"] == \
        Real(VARYING, 5)
    assert ConvolutionLayer(5, 3, Interleaving=True, PaddingSize=1, Input=(10, 2)).output_ports()["Output"] == \
        Real(10, 5)
    assert NetInitialize(ConvolutionLayer(5, 3, Interleaving=True, Input=(4, 2))).arrays()[("Weights",)].shape == \
        (5, 2, 3)


POOLS = [dict(Function="Max"), dict(Function="Mean", PaddingSize=1), dict(Function="Total", Stride=2),
         dict(Function="Max", PaddingSize=(1, 2), Stride=2)]


@pytest.mark.parametrize("opts", POOLS, ids=[str(o) for o in POOLS])
def test_pooling_over_a_ragged_sequence_equals_torchs_pooling_example_by_example(opts):
    layer = PoolingLayer(3, Interleaving=True, Input=("Varying", 4), **opts)
    pad = opts.get("PaddingSize", 0)
    pad = pad if isinstance(pad, tuple) else (pad, pad)
    stride = opts.get("Stride", 1)
    out = layer([x.tolist() for x in RAGGED])
    for got, x in zip(out, RAGGED):
        xt = torch.tensor(x).T.unsqueeze(0)
        if opts["Function"] == "Max":
            want = F.max_pool1d(F.pad(xt, pad, value=-np.inf), 3, stride)
        else:
            want = F.avg_pool1d(F.pad(xt, pad), 3, stride) * (3 if opts["Function"] == "Total" else 1)
        close(got, want[0].T)


def test_gradcheck_float64_convolution_pooling_and_normalizations():
    gen = torch.Generator().manual_seed(4)
    lengths = torch.tensor([5, 3])
    mask = Seq(torch.zeros(2, 5), lengths).mask().unsqueeze(-1)
    x = (torch.randn(2, 5, 4, dtype=torch.float64, generator=gen) * mask).requires_grad_()
    layers = [
        with_random_arrays(ConvolutionLayer(3, 2, Interleaving=True, PaddingSize=1, Stride=2, Input=("Varying", 4))),
        PoolingLayer(2, Interleaving=True, Function="Mean", PaddingSize=1, Input=("Varying", 4)),
        PoolingLayer(2, Interleaving=True, Input=("Varying", 4)),
        with_random_arrays(NormalizationLayer(2, "Same", Input=("Varying", 4))),
        with_random_arrays(NormalizationLayer(1, Input=("Varying", 4))),
    ]
    for layer in layers:
        module = layer.build(trainable=True).double()
        names = [n for n, _ in module.named_parameters()]
        params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]

        def f(x, *ps, module=module, names=names):
            out, _ = torch.func.functional_call(module, dict(zip(names, ps)),
                                                ({"Input": Seq(x, lengths)}, {}, Ctx(False, None)))
            return out["Output"].data

        assert torch.autograd.gradcheck(f, (x, *params)), layer.name
    bn = with_random_arrays(BatchNormalizationLayer(Interleaving=True, Input=("Varying", 4)))
    module = bn.build(trainable=True).double()
    fixed = {n: p.detach().clone() for n, p in module.named_parameters()}

    def g(x, scale, bias):  # training mode: the batch's statistics; moving arrays copied each call
        ps = {**{n: v.clone() for n, v in fixed.items()}, "Scaling": scale, "Biases": bias}
        out, _ = torch.func.functional_call(module, ps, ({"Input": Seq(x, lengths)}, {}, Ctx(True, None)))
        return out["Output"].data

    assert torch.autograd.gradcheck(g, (x, fixed["Scaling"].clone().requires_grad_(),
                                        fixed["Biases"].clone().requires_grad_()))


# ---- errors, nets, files -----------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: ConvolutionLayer(0, 2), lambda: ConvolutionLayer(2, 0), lambda: ConvolutionLayer(2, 2, Stride=0),
    lambda: ConvolutionLayer(3, 2, ChannelGroups=2), lambda: ConvolutionLayer(2, 2, Interleaving="yes"),
    lambda: PoolingLayer(2, Function="Median"), lambda: PoolingLayer(2, 2, Stride=2), lambda: PoolingLayer(0),
    lambda: NormalizationLayer(0), lambda: NormalizationLayer(2, "Other"), lambda: NormalizationLayer(Method="L1"),
    lambda: NormalizationLayer(Epsilon=-1), lambda: BatchNormalizationLayer(Momentum=2),
    lambda: BatchNormalizationLayer(Epsilon=0),
])
def test_bad_options_are_option_errors(make):
    with pytest.raises(OptionError) as info:
        make()
    assert "Layer" in str(info.value)


@pytest.mark.parametrize("make", [
    lambda: ConvolutionLayer(2, 5, Interleaving=True, Input=(3, 2)),
    lambda: ConvolutionLayer(2, 2, Input=("Varying", 2)),
    lambda: ConvolutionLayer(2, 2, ChannelGroups=2, Interleaving=True, Input=("Varying", 3)),
    lambda: PoolingLayer(2, Input=3), lambda: NormalizationLayer(Input=("Varying", 3)),
    lambda: NormalizationLayer(3, Input=(2, 2)), lambda: BatchNormalizationLayer(Input=("Varying", 3)),
    lambda: NormalizationLayer(2, "Same", Scaling=[1.0, 1.0], Input=(2, 3)),
])
def test_shapes_that_cannot_fit_are_shape_errors_naming_the_layer(make):
    with pytest.raises(ShapeError) as info:
        make()
    assert "Layer" in str(info.value)


def test_a_sequence_shorter_than_the_kernel_is_an_input_error_naming_the_port():
    conv = NetInitialize(ConvolutionLayer(2, 4, Interleaving=True, Input=("Varying", 4)))
    before = conv(RAGGED[0].tolist())
    with pytest.raises(InputError) as info:
        conv([RAGGED[0].tolist(), RAGGED[0][:2].tolist()])
    assert 'ConvolutionLayer, port "Input"' in str(info.value)
    assert conv(RAGGED[0].tolist()) == before


def test_net_train_a_convolution_pooling_lstm_chain_one_round():
    chain = NetChain([ConvolutionLayer(5, 2, Interleaving=True), NormalizationLayer(2, "Same"),
                      BatchNormalizationLayer(Interleaving=True), PoolingLayer(2, Interleaving=True),
                      LongShortTermMemoryLayer(3), SequenceLastLayer(), LinearLayer(1)], Input=("Varying", 4))
    net = NetInitialize(chain, RandomSeeding=1)
    data = [(x.tolist(), [float(x.mean())]) for x in RAGGED]
    res = NetTrain(net, data, All, MaxTrainingRounds=1, TrainingProgressReporting=None, RandomSeeding=1)
    before, after = net.arrays(), res["TrainedNet"].arrays()
    assert all(not torch.equal(before[k], after[k]) for k in before if k[-1] in ("Weights", "Scaling"))


ROUND_TRIP = {
    "Convolution": lambda: ConvolutionLayer(3, 2, Interleaving=True, PaddingSize=(1, 0), Stride=2, Dilation=1,
                                            Input=("Varying", 4)),
    "Convolution-no-biases": lambda: ConvolutionLayer(2, 3, Biases=None, Input=(4, 6)),
    "Pooling": lambda: PoolingLayer(2, 2, Function="Mean", Interleaving=True, Input=("Varying", 4)),
    "Normalization": lambda: NormalizationLayer(2, "Same", Method="RMS", Input=("Varying", 4)),
    "BatchNormalization": lambda: BatchNormalizationLayer(Momentum=0.5, Interleaving=True, Input=("Varying", 4)),
}


@pytest.mark.parametrize("case", list(ROUND_TRIP))
def test_export_import_and_to_torch(case, tmp_path):
    bare = ROUND_TRIP[case]()
    x = RNG.standard_normal((4, 6)) if case == "Convolution-no-biases" else RAGGED[0]
    for net in (bare, with_random_arrays(bare)):
        Export(tmp_path / "n.wlnet", net)
        back = Import(tmp_path / "n.wlnet")
        assert type(back) is type(net) and back.input_form() == net.input_form()
        assert back.input_ports() == net.input_ports() and back.output_ports() == net.output_ports()
    assert back(x.tolist()) == net(x.tolist())
    close(to_torch(net)(torch.tensor(x, dtype=torch.float32)[None])[0].detach(), net(x.tolist()))


# ---- ONNX forms (io/onnx/export_layers.py) -----------------------------------------------------
ONNX_CASES = {
    "Convolution": lambda: ConvolutionLayer(3, 3, Interleaving=True, PaddingSize=(1, 2), Stride=2,
                                            Input=("Varying", 4)),
    "Convolution-groups": lambda: ConvolutionLayer(4, 2, Interleaving=True, Dilation=2, ChannelGroups=2,
                                                   Input=("Varying", 4)),
    "Convolution-channels-first": lambda: ConvolutionLayer(2, 3, Input=(4, 6)),
    "Pooling-max": lambda: PoolingLayer(2, 2, Interleaving=True, Input=("Varying", 4)),
    "Pooling-max-wide-padding": lambda: PoolingLayer(3, Interleaving=True, PaddingSize=(0, 3), Input=("Varying", 4)),
    "Pooling-mean": lambda: PoolingLayer(3, Interleaving=True, PaddingSize=1, Function="Mean", Input=("Varying", 4)),
    "Pooling-total": lambda: PoolingLayer(2, Interleaving=True, Function="Total", Input=("Varying", 4)),
    "Normalization": lambda: NormalizationLayer(2, "Same", Input=("Varying", 4)),
    "Normalization-RMS": lambda: NormalizationLayer(2, "Same", Method="RMS", Input=("Varying", 4)),
    "BatchNormalization": lambda: BatchNormalizationLayer(Interleaving=True, Input=("Varying", 4)),
    "chain": lambda: NetChain([ConvolutionLayer(6, 2, Interleaving=True), ReshapeLayer(("Varying", 2, 3)),
                               NormalizationLayer(3, 2), FlattenLayer(-1), PoolingLayer(2, Interleaving=True),
                               FlattenLayer()], Input=("Varying", 4)),
}


@pytest.mark.parametrize("case", list(ONNX_CASES))
def test_onnx_forms_match_wlnet_in_onnxruntime_on_a_ragged_batch(case):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx.reference import ReferenceEvaluator

    from wlnet.io.onnx import to_model
    net = with_random_arrays(ONNX_CASES[case]())
    model = to_model(net)
    onnx.checker.check_model(model, full_check=True)
    seqs = [RNG.standard_normal((4, 6)).astype(np.float32)] if case.endswith("channels-first") else \
        [x.astype(np.float32) for x in RAGGED]
    want = net([s.tolist() for s in seqs])
    x = np.zeros((len(seqs), max(len(s) for s in seqs), *seqs[0].shape[1:]), np.float32)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
    feeds = {"Input": x}
    if net.input_ports()["Input"].varying:
        feeds["Input_lengths"] = np.array([len(s) for s in seqs], np.int64)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    got = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)
    for i, v in enumerate(want):
        v = np.asarray(v)
        close(got[0][i][:len(v)] if v.ndim == got[0][i].ndim else got[0][i], v)
    one = ReferenceEvaluator(model).run(None, {"Input": x[:1, :len(seqs[0])]})[0]  # one example: no padding
    close(one[0], want[0])
