"""The sequence building blocks against the equivalent plain torch code, forward + backward.

Run: .venv/bin/python bench/new_layers.py [repeats] [--small] [name ...] (only the layers whose
names contain one of the names given)

Each layer runs through its trainable module (the one NetTrain runs) on a ragged batch of
64 sequences of lengths 50..200 of size-64 vectors (--small: 32 of lengths 20..60 of size 32,
where the few µs of each call's own bookkeeping weigh more); the plain-torch twin computes the same
thing on the same padded tensor and lengths, written as one would by hand (the same masking
of the padding where the result depends on it: a sequence's padding is not known to be zero,
an ElementwiseLayer("Exp") before makes it 1). One call is forward, a sum of the output, and
backward. Times are medians; each round runs the two one after the other, in alternating
order. Target: ratio ≤ 1.3.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
import torch.nn.functional as F

from wlnet import (
    AppendLayer,
    AttentionLayer,
    BatchNormalizationLayer,
    ConvolutionLayer,
    CTCLossLayer,
    FlattenLayer,
    NetInitialize,
    NormalizationLayer,
    PaddingLayer,
    PartLayer,
    PoolingLayer,
    PrependLayer,
    ReplicateLayer,
    ReshapeLayer,
    SequenceIndicesLayer,
)
from wlnet.core.data import Seq
from wlnet.core.runtime import Ctx

SMALL = "--small" in sys.argv
B, K = (32, 32) if SMALL else (64, 64)
G = torch.Generator().manual_seed(0)
LENGTHS = torch.randint(20, 61, (B,), generator=G) if SMALL else torch.randint(50, 201, (B,), generator=G)
T = int(LENGTHS.max())
MASK = torch.arange(T) < LENGTHS.unsqueeze(1)  # (B, T)
X = torch.randn(B, T, K, generator=G) * MASK.unsqueeze(-1)
ELEM = torch.randn(B, K, generator=G)
TARGET_LEN = torch.randint(3, 10, (B,), generator=G)
TARGET = torch.randint(1, K, (B, int(TARGET_LEN.max())), generator=G)


def race(f, g, repeats: int, inner: int = 5, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        f()
        g()
    tf, tg = [], []
    for r in range(repeats):
        pair = ((f, tf), (g, tg)) if r % 2 == 0 else ((g, tg), (f, tf))
        for fn, times in pair:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times.append((time.perf_counter() - t0) / inner)
    return statistics.median(tf), statistics.median(tg)


def module_call(layer, inputs):
    """forward + backward through the layer's trainable module; (call, its parameters by name)."""
    module = layer.build(trainable=True)
    params = dict(module.named_parameters())
    leaves = [v for v in _tensors(inputs) if v.is_floating_point()]

    def call():
        for v in leaves:
            v.grad = None
        out, _ = module(inputs, {}, Ctx(True, None))
        y = next(iter(out.values()))
        (y.data if isinstance(y, Seq) else y).float().sum().backward()

    return call, params


def _tensors(inputs):
    for v in inputs.values():
        for x in v if isinstance(v, list) else [v]:
            yield x.data if isinstance(x, Seq) else x


def leaf(t):
    return t.clone().requires_grad_()


def plain(fn, *tensors):
    def call():
        for t in tensors:
            t.grad = None
        fn(*tensors).sum().backward()

    return call


def zero_pad(y, lengths):
    m = torch.arange(y.shape[1]) < lengths.unsqueeze(1)
    return y * m.view(*m.shape, *(1,) * (y.ndim - 2))


def cases():
    x = leaf(X)
    seq = {"Input": Seq(x, LENGTHS)}
    out = []

    out.append(("PartLayer(-1)", PartLayer(-1, Input=("Varying", K)), seq,
                lambda x: x[torch.arange(B), LENGTHS - 1]))
    out.append(("PartLayer(slice(2, -2))", PartLayer(slice(2, -2), Input=("Varying", K)), seq,
                lambda x: zero_pad(x[:, 1:1 + int((LENGTHS - 2).max())], LENGTHS - 2)))  # steps 2..L-1
    out.append(("FlattenLayer()", FlattenLayer(Input=("Varying", K)), seq, lambda x: x.reshape(B, -1)))
    out.append(("ReshapeLayer((Varying, 4, K//4))", ReshapeLayer(("Varying", 4, K // 4), Input=("Varying", K)), seq,
                lambda x: x.reshape(B, T, 4, K // 4)))
    out.append(("ReplicateLayer(3, 2)", ReplicateLayer(3, 2, Input=("Varying", K)), seq,
                lambda x: x.unsqueeze(2).expand(B, T, 3, K)))
    out.append(("PaddingLayer([[2, 3]])", PaddingLayer([[2, 3]], Input=("Varying", K)), seq,
                lambda x: F.pad(zero_pad(x, LENGTHS), (0, 0, 2, 3))))  # zero past each length, then padded
    e = leaf(ELEM)
    app = {"Input": Seq(x, LENGTHS), "Element": e}
    out.append(("AppendLayer()", AppendLayer(Input=("Varying", K)), app,
                lambda x, e: torch.cat([x, torch.zeros_like(e).unsqueeze(1)], 1).index_put(
                    (torch.arange(B), LENGTHS), e)))
    out.append(("PrependLayer()", PrependLayer(Input=("Varying", K)), app,
                lambda x, e: torch.cat([e.unsqueeze(1), x], 1)))
    norm = NetInitialize(NormalizationLayer(2, "Same", Input=("Varying", K)))
    w, b = (leaf(t) for t in norm.arrays().values())
    out.append(("NormalizationLayer(2, Same)", norm, seq,
                lambda x, w=w, b=b: zero_pad(F.layer_norm(x, (K,), w, b, 0.001), LENGTHS), (w, b)))
    bn = NetInitialize(BatchNormalizationLayer(Interleaving=True, Input=("Varying", K)))
    sw, sb = leaf(torch.ones(K)), leaf(torch.zeros(K))
    rm, rv = torch.zeros(K), torch.ones(K)

    def bn_plain(x, sw=sw, sb=sb):
        real = x[MASK]  # (steps, K)
        mean, var = real.mean(0), real.var(0, unbiased=False)
        with torch.no_grad():
            rm.mul_(0.9).add_(mean, alpha=0.1)
            rv.mul_(0.9).add_(var, alpha=0.1)
        return zero_pad((x - mean) * torch.rsqrt(var + 0.001) * sw + sb, LENGTHS)

    out.append(("BatchNormalizationLayer(Interleaving)", bn, seq, bn_plain, (sw, sb)))
    conv = NetInitialize(ConvolutionLayer(64, 5, Interleaving=True, PaddingSize=2, Input=("Varying", K)))
    cw, cb = (leaf(t) for t in conv.arrays().values())
    out.append(("ConvolutionLayer(64, 5, PaddingSize=2)", conv, seq,
                lambda x, cw=cw, cb=cb: zero_pad(F.conv1d(F.pad(x.transpose(1, 2), (2, 2)), cw, cb).transpose(1, 2),
                                                 LENGTHS), (cw, cb)))
    out.append(("PoolingLayer(2, 2) Max", PoolingLayer(2, 2, Interleaving=True, Input=("Varying", K)), seq,
                lambda x: zero_pad(F.max_pool1d(x.masked_fill(~MASK.unsqueeze(-1), float("-inf")).transpose(1, 2),
                                                2, 2).transpose(1, 2), LENGTHS // 2)))
    out.append(("SequenceIndicesLayer()", SequenceIndicesLayer(Input=("Varying", K)), seq, None))
    p = leaf(torch.softmax(X, -1))
    ctc = {"Input": Seq(p, LENGTHS), "Target": Seq(TARGET, TARGET_LEN)}

    def ctc_plain(p):
        logp = torch.log(p.clamp_min(1e-7))
        loss = F.ctc_loss(logp.transpose(0, 1), TARGET - 1, LENGTHS, TARGET_LEN, blank=K - 1, reduction="none")
        e = logp.exp() * MASK.unsqueeze(-1)
        return loss - (e - e.detach()).sum((1, 2))

    out.append(("CTCLossLayer()", CTCLossLayer(Input=("Varying", K)), ctc, ctc_plain, (), p))
    # attention: every step of each sequence queries that sequence's real steps
    att = NetInitialize(AttentionLayer(Key=("Varying", K), Value=("Varying", K), Query=("Varying", K)))
    aw = leaf(next(iter(att.arrays().values())))
    qkv = {"Key": Seq(x, LENGTHS), "Value": Seq(x, LENGTHS), "Query": Seq(x, LENGTHS)}
    hidden = ~MASK.unsqueeze(1)  # (B, 1, T): the keys past each length

    def attention_plain(x, aw=aw):
        s = (x @ aw.t()) @ x.transpose(1, 2)  # (B, T, T)
        return zero_pad(torch.softmax(s.masked_fill(hidden, float("-inf")), -1) @ x, LENGTHS)

    out.append(("AttentionLayer() Bilinear, query sequence", att, qkv, attention_plain, (aw,)))
    dot = AttentionLayer("Dot", ScoreRescaling="DimensionSqrt", Key=("Varying", K), Value=("Varying", K), Query=K)
    one = {"Key": Seq(x, LENGTHS), "Value": Seq(x, LENGTHS), "Query": e}

    def dot_plain(x, e):
        s = (x @ e.unsqueeze(-1)).squeeze(-1) / K ** 0.5  # (B, T)
        w = torch.softmax(s.masked_fill(~MASK, float("-inf")), -1)
        return (w.unsqueeze(-1) * x).sum(1)

    out.append(("AttentionLayer(Dot) one query", dot, one, dot_plain))
    return out, x, e


def main(repeats: int) -> None:
    torch.set_num_threads(1)
    rows, x, e = cases()
    print(f"{'layer':<40} {'wlnet':>10} {'torch':>10} {'ratio':>7}   (forward + backward, ragged batch {B}×≤{T}×{K})")
    only = [a for a in sys.argv[1:] if not a.isdigit() and not a.startswith("--")]
    for row in rows:
        name, layer, inputs, fn = row[:4]
        if only and not any(o in name for o in only):
            continue
        extra = row[4] if len(row) > 4 else ()
        first = row[5] if len(row) > 5 else x
        call, _ = module_call(layer, inputs)
        if fn is None:  # integer output, no backward: forward only against torch.arange
            module = layer.build(trainable=True)

            def call(module=module, inputs=inputs):
                module(inputs, {}, Ctx(True, None))

            def twin():
                zero_pad(torch.arange(1, T + 1).expand(B, T), LENGTHS)

            t_wl, t_pt = race(call, twin, repeats)
        else:
            args = (first, e) if "Element" in inputs or "Query" in inputs and inputs["Query"] is e else (first,)
            t_wl, t_pt = race(call, plain(fn, *args, *extra), repeats)
        print(f"{name:<40} {t_wl * 1e3:8.3f}ms {t_pt * 1e3:8.3f}ms {t_wl / t_pt:7.2f}")


if __name__ == "__main__":
    numbers = [a for a in sys.argv[1:] if a.isdigit()]
    main(int(numbers[0]) if numbers else 20)
