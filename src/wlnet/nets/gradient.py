"""NetPortGradient: net(x, NetPortGradient("Input")) is the gradient, with respect to the data
given to an input port, of the sum of every element of the net's outputs (before any decoder;
a sequence's steps past its length left out)."""

from __future__ import annotations

import torch

from ..core.errors import InputError, NotSupportedError, OptionError


class NetPortGradient:
    """NetPortGradient("Input"), as the port of an evaluation: net(x, NetPortGradient("Input"))
    is the gradient of the sum of the net's outputs with respect to x, in x's shape.

    >>> net = NetInitialize(LinearLayer(1, Input=2, Weights=[[2.0, -3.0]], Biases=[0.5]))
    >>> net([1.0, 1.0], NetPortGradient("Input"))
    [2.0, -3.0]
    """

    __slots__ = ("port",)

    def __init__(self, port):
        if not isinstance(port, str):
            raise OptionError(f"NetPortGradient: give the name of an input port, such as \"Input\", but {port!r} "
                              "was given.")
        self.port = port

    def __eq__(self, other) -> bool:
        return isinstance(other, NetPortGradient) and other.port == self.port

    def __hash__(self) -> int:
        return hash(("NetPortGradient", self.port))

    def __repr__(self) -> str:
        return f"NetPortGradient({self.port!r})"


def _total(v) -> torch.Tensor:
    """The sum of an output's elements: (B, ...) tensors, Seqs over their real steps, lists of these."""
    from ..core.data import Seq

    if isinstance(v, list | tuple) and not isinstance(v, Seq):
        return sum((_total(x) for x in v), torch.zeros(()))
    if isinstance(v, Seq):
        data, lengths = v
        if lengths is None:
            return data.sum()
        steps = torch.arange(data.shape[1], device=data.device)
        mask = (steps[None, :] < lengths.to(data.device)[:, None]).to(data.dtype)
        return (data * mask.reshape(*mask.shape, *[1] * (data.ndim - 2))).sum()
    return v.sum()


def port_gradient(net, data, grad: NetPortGradient, options: dict):
    """The Evaluation of net on data whose result is the gradient at port grad.port."""
    from ..core import options as O
    from ..core.data import Seq, move_all, write_port
    from ..core.runtime import Ctx, compiled
    from .evaluate import Evaluation, evaluation_options, read_inputs

    ports = net.input_ports()
    if grad.port not in ports:
        raise InputError(f"{net.name}: {grad!r} names no input port; the input ports are "
                         f"{', '.join(repr(p) for p in ports)}.")
    if grad.port in net.encoders or ports[grad.port].integer:
        raise NotSupportedError(f"{net.name}: the input port \"{grad.port}\" takes "
                                f"{'encoded data' if grad.port in net.encoders else 'integers'}, which have no "
                                "gradient; NetPortGradient is of a port of real arrays.")
    train, device, dtype, _, seed = evaluation_options(net, options)
    module = compiled(net, device, dtype)
    values, batched, kind, _ = read_inputs(net, data, dtype)
    values = move_all(values, device, dtype)
    v = values[grad.port]
    leaf = (v.data if isinstance(v, Seq) else v).detach().clone().requires_grad_(True)
    values[grad.port] = Seq(leaf, v.lengths) if isinstance(v, Seq) else leaf
    ctx = Ctx(train, O.generator(seed, net.name, device), False)
    with torch.enable_grad():
        outputs, _ = module(values, {}, ctx)
        total = sum((_total(o) for o in outputs.values()), torch.zeros((), device=device, dtype=dtype))
        (g,) = torch.autograd.grad(total, leaf, allow_unused=True)
    g = torch.zeros_like(leaf) if g is None else g.detach()
    result = write_port(Seq(g, v.lengths) if isinstance(v, Seq) else g, batched, kind)
    return Evaluation(result, {}, batched, kind)


__all__ = ["NetPortGradient", "port_gradient"]
