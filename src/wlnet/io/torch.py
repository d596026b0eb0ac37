"""Plain torch modules: `to_torch(net)` gives a `torch.nn.Module` to train in one's own loop or
to `torch.export`; `from_torch(module)` turns torch's recurrent, linear and activation modules
(and `nn.Sequential`s of them) into a net.

Legend: B batch, T (padded) length, k input size, n output size.
"""

from __future__ import annotations

import torch

from ..coders.encoders import NetEncoder
from ..core.data import Seq
from ..core.errors import NetError, NotSupportedError
from ..core.net import Net
from ..core.runtime import Ctx, module_arrays
from ..kernels import cells
from ..layers.base import LayerModule
from ..layers.basic import DropoutLayer, ElementwiseLayer, LinearLayer, SoftmaxLayer
from ..layers.recurrent import LAYERS
from ..layers.sequence import EmbeddingLayer
from ..nets.containers import GraphModule, NetChain
from ..nets.operators import NetBidirectionalOperator


class TorchNet(torch.nn.Module):
    """A net as a plain torch module.

    Parameters: copies of the net's arrays, named by position and Wolfram name as in the
    net's compiled modules ("1.InputGateInputWeights"; a lone layer's by the name alone; an
    operator's under its nets' keys, "ForwardNet.InputGateInputWeights").

    forward(*inputs, lengths=None, states=None, return_states=False): `inputs` are tensors in
    the order of the net's input ports, batch first: (B, T, k) zero-padded sequences of vectors,
    int64 (B, T) sequences of indices (1-based, as EmbeddingLayer takes them; at a port whose
    encoder is ("Integers", n, origin), such as a net from torch's nn.Embedding, the ids that
    encoder takes: 0-based for origin 0), (B, k) vectors. `lengths`: int64 (B,) for a ragged batch
    of the only "Varying" port, or a dict port → lengths. `states`: initial recurrent states
    {position: (B, n)} (positions as in Information(net, "RecurrentStatesPositionList")). Returns
    the output tensor ((B, T, n) for a sequence, zero past each length after a recurrent layer),
    a dict port → tensor for several outputs, and with return_states also the final states
    {position: (B, n)}. Dropout acts in training mode (`module.train()`), as in NetTrain.

    `from_torch` turns it back into a net with its current parameters."""

    def __init__(self, net: Net):
        super().__init__()
        net._require_initialized()
        self.net = net
        self.input_types = net.input_ports()
        # ports taking ids from `origin` (an "Integers" encoder): the shift to the 1-based indices
        self.shifts = {p: 1 - e.origin for p, e in net.encoders.items() if getattr(e, "kind", None) == "Integers"}
        built = net.build(trainable=True)
        self._kind = type(built)
        if isinstance(built, LayerModule):
            for name, p in built.named_parameters():
                self.register_parameter(name, p)
        else:  # its children, so that the parameter names are the compiled module's
            for name, child in built.named_children():
                self.add_module(name, child)
            if isinstance(built, GraphModule):  # run by GraphModule.forward on self (torch.export follows it)
                self.plan, self.outputs, self.scalar = built.plan, built.outputs, built.scalar
            else:  # an operator's module, run as it is (not registered: its children are)
                object.__setattr__(self, "_core", built)
        self.train(False)

    def forward(self, *inputs, lengths=None, states=None, return_states: bool = False):
        net = self.net
        if len(inputs) != len(self.input_types):
            raise NetError(f"{net.name}: the module takes {len(self.input_types)} input tensor(s), for the ports "
                           f"{', '.join(repr(p) for p in self.input_types)}, but was given {len(inputs)}.")
        if lengths is not None and not isinstance(lengths, dict):
            varying = [p for p, t in self.input_types.items() if t.varying]
            if len(varying) != 1:
                raise NetError(f"{net.name}: give lengths as a dict port → lengths; the \"Varying\" ports are "
                               f"{', '.join(repr(p) for p in varying) or 'none'}.")
            lengths = {varying[0]: lengths}
        values = {}
        for (port, t), x in zip(self.input_types.items(), inputs):
            if port in self.shifts and self.shifts[port]:
                x = x + self.shifts[port]
            if t.varying:
                ln = (lengths or {}).get(port)
                ln = None if ln is None else torch.as_tensor(ln, dtype=torch.int64, device="cpu")
                x = Seq(x, ln)
            values[port] = x
        tracing = torch.compiler.is_compiling()
        if tracing and return_states and lengths:
            raise NotSupportedError(
                f"{net.name}: torch.export / torch.compile of the module with lengths and return_states=True is not "
                "supported: the final states of a ragged batch are read from a packed sequence, whose size depends "
                "on the lengths' values. Export without return_states (the outputs are exact), or without lengths.")
        # traced with lengths: the padded kernels, whose shapes do not depend on the lengths' values (the outputs
        # are the same; the final states, which the packed kernels give, are not asked for)
        ctx = Ctx(self.training, None, not (tracing and lengths))
        states = {tuple(p) if isinstance(p, tuple) else (p,): v for p, v in (states or {}).items()}
        if self._kind is LayerModule:
            out, final = net.run(self._parameters, values, states, ctx, None)
        elif self._kind is GraphModule:
            out, final = GraphModule.forward(self, values, states, ctx)
        else:
            out, final = self._core(values, states, ctx)
        out = {p: v.data if isinstance(v, Seq) else v for p, v in out.items()}
        result = out if len(out) > 1 else next(iter(out.values()))
        return (result, final) if return_states else result

    def extra_repr(self) -> str:
        return self.net.name


def to_torch(net: Net) -> TorchNet:
    """A torch module computing `net`, whose parameters are copies of its arrays (see `TorchNet`).

    >>> m = to_torch(NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2))))
    >>> m(torch.zeros(4, 5, 2)).shape
    torch.Size([4, 5, 3])
    """
    if not isinstance(net, Net):
        raise NetError(f"to_torch: expected a net, but was given a {type(net).__name__}.")
    return TorchNet(net)


# ---- from torch --------------------------------------------------------------------------------
_RECURRENT = {cell.torch_module: cell for cell in cells.CELLS}  # torch.nn class name → cell
_ACTIVATIONS = {"Tanh": "Tanh", "Sigmoid": "LogisticSigmoid", "ReLU": "Ramp"}


def _recurrent(m, who: str) -> list:
    """The layers of an nn.LSTM / nn.GRU / nn.RNN stack: one recurrent layer per layer (a
    NetBidirectionalOperator of two for a bidirectional stack), DropoutLayers between them."""
    kind = type(m).__name__
    cell = _RECURRENT[kind]
    layer = LAYERS[cell.name]
    if getattr(m, "proj_size", 0):
        raise NotSupportedError(f"from_torch: {who} is an nn.{kind} with proj_size={m.proj_size}; "
                                f"{cell.name} has no projection of its state.")
    if getattr(m, "nonlinearity", "tanh") != "tanh":
        raise NotSupportedError(f"from_torch: {who} is an nn.{kind} with nonlinearity={m.nonlinearity!r}; "
                                f"{cell.name} computes tanh.")
    out = []
    n, k = m.hidden_size, m.input_size
    D = 2 if m.bidirectional else 1
    for i in range(m.num_layers):
        size = k if i == 0 else D * n
        nets = []
        for suffix in ("", "_reverse")[:D]:
            w_ih, w_hh = (getattr(m, f"{p}_l{i}{suffix}").detach() for p in ("weight_ih", "weight_hh"))
            b_ih = getattr(m, f"bias_ih_l{i}{suffix}").detach() if m.bias else torch.zeros(w_ih.shape[0])
            b_hh = getattr(m, f"bias_hh_l{i}{suffix}").detach() if m.bias else None
            # (a GRU's nonzero b_hn, inside the reset product, gives the layer its MemoryGateStateBiases)
            nets.append(layer(n, Input=("Varying", size), **cell.unpack(w_ih, w_hh, b_ih, b_hh)))
        if i and m.dropout:
            out.append(DropoutLayer(m.dropout))
        out.append(nets[0] if D == 1 else NetBidirectionalOperator(tuple(nets), Input=("Varying", size)))
    return out


def _layers(m, who: str) -> list:
    kind = type(m).__name__
    if isinstance(m, torch.nn.Sequential):
        return [x for i, child in enumerate(m, 1) for x in _layers(child, f"module {i} of {who}")]
    if kind in _RECURRENT and isinstance(m, torch.nn.RNNBase):
        return _recurrent(m, who)
    if isinstance(m, torch.nn.Embedding):
        if m.max_norm is not None or m.scale_grad_by_freq or m.sparse:
            raise NotSupportedError(f"from_torch: {who} is an nn.Embedding with max_norm, scale_grad_by_freq or "
                                    "sparse set; EmbeddingLayer has none of these.")
        return [_Ids(m.num_embeddings), EmbeddingLayer(m.embedding_dim, m.num_embeddings, Weights=m.weight.detach())]
    if isinstance(m, torch.nn.Linear):
        b = m.bias.detach() if m.bias is not None else torch.zeros(m.out_features)
        return [LinearLayer(m.out_features, Input=m.in_features, Weights=m.weight.detach(), Biases=b)]
    if kind in _ACTIVATIONS:
        return [ElementwiseLayer(_ACTIVATIONS[kind])]
    if isinstance(m, torch.nn.Softmax):
        if m.dim not in (-1,):
            raise NotSupportedError(f"from_torch: {who} is an nn.Softmax over dim={m.dim}; SoftmaxLayer normalizes "
                                    "the last dimension: use nn.Softmax(dim=-1).")
        return [SoftmaxLayer()]
    if isinstance(m, torch.nn.Dropout):
        return [DropoutLayer(m.p)]
    raise NotSupportedError(
        f"from_torch: {who} is a {type(m).__module__}.{type(m).__qualname__}, which has no wlnet form; modules that "
        "map are nn.LSTM, nn.GRU, nn.RNN, nn.Embedding, nn.Linear, nn.Tanh, nn.Sigmoid, nn.ReLU, nn.Softmax(dim=-1), "
        "nn.Dropout and nn.Sequential of them (or a module made by to_torch)."
    )


class _Ids:
    """Marks that the net's input takes torch's 0-based ids (the encoder ("Integers", n, 0))."""

    def __init__(self, n: int):
        self.n = n


def from_torch(module: torch.nn.Module) -> Net:
    """A net computing `module`: nn.LSTM / nn.GRU / nn.RNN (batch first or not: nets take
    batches first; a stack of num_layers becomes a NetChain, with DropoutLayers for torch's
    dropout between layers; a bidirectional one a NetBidirectionalOperator of its two directions
    per layer, whose output is torch's, forward then backward; the two biases summed, but for a
    GRU's b_hn, which sits inside the reset product: nonzero, it becomes the layer's
    MemoryGateStateBiases, an array beyond Wolfram's GatedRecurrentLayer),
    nn.Embedding (first: an EmbeddingLayer whose port takes torch's 0-based ids, through the encoder
    ("Integers", n, 0); its padding_idx row is used as it is, and trained like the others),
    nn.Linear, nn.Tanh / nn.Sigmoid / nn.ReLU, nn.Softmax(dim=-1), nn.Dropout, nn.Sequential of
    these; or a module made by `to_torch`, which gives its net with the module's current
    parameters.

    >>> from_torch(torch.nn.LSTM(2, 3, batch_first=True)).name
    'LongShortTermMemoryLayer'
    """
    if isinstance(module, TorchNet):
        return module.net.with_arrays(module_arrays(module.net, module))
    if not isinstance(module, torch.nn.Module):
        raise NetError(f"from_torch: expected a torch.nn.Module, but was given a {type(module).__name__}.")
    layers = _layers(module, f"the {type(module).__name__}")
    if not layers:
        raise NetError("from_torch: the nn.Sequential is empty; a net needs at least one layer.")
    ids = [i for i, x in enumerate(layers) if isinstance(x, _Ids)]
    if ids and ids != [0]:
        raise NotSupportedError("from_torch: an nn.Embedding maps the ids a net is given, so it must be the first "
                                "module; here a module comes before it (or there are several).")
    if ids:
        return NetChain(layers[1:], Input=NetEncoder(("Integers", layers[0].n, 0)))
    return layers[0] if len(layers) == 1 else NetChain(layers)


__all__ = ["TorchNet", "to_torch", "from_torch"]
