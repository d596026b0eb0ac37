"""CTCLossLayer: the connectionist temporal classification loss.

Input: a sequence of T probability vectors of size c+1, the last entry of each the blank's
probability; Target: a sequence of S class indices 1..c. The loss of an example is

    −log Σ_{alignments a of the target} Π_t p_t(a_t)

over every path a of T classes that, repeats merged and blanks removed, reads the target (the
forward recursion of Graves et al. 2006), each example over its own T and S. A target needs
S plus its number of adjacent repeats steps at most T; a longer one is an error, not an
infinite loss. log p is the log_softmax of the logits where the input is a SoftmaxLayer's
output, else log max(p, 1e-7).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.data import Seq
from ..core.errors import InputError, ShapeError, TrainingError, where
from ..core.shapes import SCALAR, VARYING, ArrayType, Index, Real, describe, unify
from ..core.symbols import Automatic
from .base import Layer, _unset
from .basic import with_logits
from .loss import EPS, _LossLayer, check_probabilities
from .shape import _input_type


def _not_a_loss_function(out, target):
    raise TrainingError("NetTrain: CTCLossLayer cannot be given as LossFunction; put it in a NetGraph after the net, "
                        'with the net\'s output on its "Input" and the target sequences on its "Target".')


class CTCLossLayer(_LossLayer):
    """The CTC loss of a sequence of class probability vectors (size c+1, the last entry the
    blank) against a target sequence of class indices 1..c, each example over its own lengths;
    the target must not need more steps than the input has.

    Ports: "Input" (a sequence of probability vectors), "Target" (a sequence of integers
    1..c), "Output" (the loss, a real number per example). Options Input, Target: shapes.

    >>> p = [[0.5, 0.5], [0.5, 0.5]]  # two steps, one class and the blank
    >>> round(CTCLossLayer()({"Input": p, "Target": [1]}), 4)  # −log(3/4): "1-", "-1", "11"
    0.2877
    """

    OPTIONS = {"Input": Automatic, "Target": Automatic}
    kind = staticmethod(_not_a_loss_function)

    def __init__(self, **options):
        Layer.__init__(self, (), options)
        spec = options.get("Input", Automatic)
        t = Real(VARYING, None) if _unset(spec) else _input_type(self, spec)
        self._accept("Input", t)
        target = options.get("Target", Automatic)
        g = Index(VARYING) if _unset(target) else _input_type(self, target, "Target")
        g = ArrayType(g.dims, True, g.levels)
        self._accept("Target", g)
        self._in = {"Input": t, "Target": g}
        self._derive()
        self._out = {"Output": SCALAR}

    def input_ports(self) -> dict:
        return dict(self._in)

    def _accept(self, port, t) -> None:
        if t.dims is None:
            return
        if port == "Input":
            if t.integer or len(t.dims) != 2:
                raise ShapeError(f'{where(self.name, "Input")}the layer expects a sequence of probability vectors, '
                                 f"but its input is {describe(t)}.")
            if isinstance(t.dims[1], int) and t.dims[1] < 2:
                raise ShapeError(f'{where(self.name, "Input")}the vectors need at least 2 entries (a class and the '
                                 f"blank), but its input is {describe(t)}.")
        elif port == "Target" and len(t.dims) != 1:
            raise ShapeError(f'{where(self.name, "Target")}the layer expects a sequence of class indices, but its '
                             f"target is {describe(t)}.")

    def infer(self, inputs: dict) -> Layer:
        new_in = dict(self._in)
        for port in ("Input", "Target"):
            t = inputs.get(port)
            if t is not None and t.dims is not None:
                self._accept(port, t)
                if port == "Target":
                    t = ArrayType(t.dims, True, t.levels)
                new_in[port] = unify(t, self._in[port], "the preceding layer", f'{self.name} port "{port}"')
        if new_in == self._in:
            return self
        new = self._copy()
        new._in = new_in
        new._derive()
        return new

    def _derive(self) -> None:
        t, g = self._in["Input"], self._in["Target"]
        c = t.dims[1] - 1 if t.dims is not None and isinstance(t.dims[1], int) else None
        if c is not None and g.levels is not None and g.levels > c:
            raise ShapeError(f'{where(self.name, "Target")}the target holds indices up to {g.levels}, but the input '
                             f"has only {c} classes besides the blank.")
        self._in["Target"] = ArrayType(g.dims, True, c if c is not None else g.levels)

    def forward(self, arrays, inputs, ctx):
        x, t = inputs["Input"], inputs["Target"]
        o = x.data if isinstance(x, Seq) else x
        td = t.data if isinstance(t, Seq) else t
        B, T, C = o.shape
        lengths = x.lengths if isinstance(x, Seq) and x.lengths is not None else torch.full((B,), T)
        tlen = t.lengths if isinstance(t, Seq) and t.lengths is not None else torch.full((B,), td.shape[1])
        self._check_target(td, tlen, lengths, C)
        logits = with_logits(o)
        if logits is not None:  # o = softmax(logits)
            logp = torch.log_softmax(logits, -1)
        else:
            mask = x.mask() if isinstance(x, Seq) else None
            check_probabilities(o, mask, True, where(self.name, "Input"), " Put a SoftmaxLayer before it.")
            logp = torch.log(o.clamp_min(EPS))
        targets = (td - 1).clamp(min=0)  # classes 1..c → 0..c-1; the blank, Wolfram's last class, is C-1
        loss = F.ctc_loss(logp.transpose(0, 1), targets, lengths, tlen, blank=C - 1, reduction="none",
                          zero_infinity=False)
        if logits is None:
            # torch's ctc_loss gives d loss/d log p as if log p were a log_softmax's output (its gradient
            # carries + p, which the softmax's Jacobian removes); for probabilities given as they are,
            # that term is taken off: a zero added whose gradient is −p at the real steps
            real = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).to(o.device, o.dtype)  # (B, T)
            e = logp.exp() * real.unsqueeze(-1)
            loss = loss - (e - e.detach()).sum((1, 2))
        return {"Output": loss}

    def _check_target(self, td: torch.Tensor, tlen: torch.Tensor, lengths: torch.Tensor, C: int) -> None:
        B, S = td.shape
        real = torch.arange(S).unsqueeze(0) < tlen.unsqueeze(1)  # (B, S)
        values = td.cpu()[real]
        if values.numel() and (int(values.min()) < 1 or int(values.max()) > C - 1):
            bad = int(values.min()) if int(values.min()) < 1 else int(values.max())
            raise InputError(f'{where(self.name, "Target")}the class index {bad} is out of range: the input vectors '
                             f"have {C} entries (the last the blank), so indices must lie between 1 and {C - 1}.")
        cpu = td.cpu()
        repeats = ((cpu[:, 1:] == cpu[:, :-1]) & real[:, 1:]).sum(1) if S > 1 else torch.zeros(B, dtype=torch.int64)
        need = tlen + repeats
        bad = (need > lengths).nonzero()
        if len(bad):
            j = int(bad[0])
            place = f" of example {j + 1}" if B > 1 else ""
            raise InputError(f'{where(self.name, "Target")}the target{place} has {int(tlen[j])} classes and '
                             f"{int(repeats[j])} adjacent repeats, so it needs at least {int(need[j])} input steps, "
                             f"but the input has {int(lengths[j])}.")
