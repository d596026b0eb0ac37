"""ONNX in (`importer`): wlnet values joined along a feature axis and picked apart again, and the
two directions of a bidirectional recurrent node.

A Concat of wlnet values along a size-1 feature axis (torch's h_n of several layers, a
bidirectional node's Y and Y_h) is kept as a `Stacked` value, so that a Gather or Slice can
pick its parts again; any other use joins the parts with a CatenateLayer. A bidirectional
node's outputs are `Part`s, edge sources decided when the net is built, from what the graph
reads: its whole Y (joined as the graph joins it: catenated, summed or averaged over the
directions) makes it a NetBidirectionalOperator whose state ports give the final states; a
graph that reads its final states only, or each direction's Y apart, gets the two directions
as two layers, the backward one between SequenceReverseLayers.
"""

from __future__ import annotations

from ...core.errors import NetError
from ...core.shapes import VARYING
from ...layers.join import CatenateLayer, TotalLayer
from ...layers.sequence import SequenceReverseLayer
from ...nets.operators import NetBidirectionalOperator
from .values import TIME, Data, Stacked, Var

PREFIXES = ("Forward", "Backward")


class Bidirectional:
    """A bidirectional recurrent node: its layer class, the two directions' arrays, its input,
    the initial states given to each direction ({state: (forward src, backward src)}), the
    node (for naming) and, once decided, the sources of what it gives."""

    def __init__(self, im, cls, n: int, k: int, arrays: tuple, x: Data, states_in: dict):
        self.cls, self.n, self.k, self.arrays, self.x, self.states_in = cls, n, k, arrays, x, states_in
        self.node, self.slot = im.node, im.slot()  # the place of its layers among the others
        self.made: dict | None = None  # (what, direction) → edge source


class Part:
    """An edge source of a Bidirectional: `what` "Y" or a state port; `d` 0 (forward), 1
    (backward), or how both directions are joined ("Catenate", "Total", "Mean")."""

    __slots__ = ("node", "what", "d")

    def __init__(self, node: Bidirectional, what: str, d):
        self.node, self.what, self.d = node, what, d

    def __repr__(self) -> str:
        return f"<{self.what} {self.d} of a bidirectional node>"


def outputs(bi: Bidirectional, layout: int, states: tuple) -> list:
    """The node's Y, Y_h (and Y_c) as Stacked values of the two directions."""
    x, n = bi.x, bi.n
    if layout == 0:  # Y (T, 2, B, n), Y_h (2, B, n)
        y_axes, y_axis, s_axes, s_axis = (x.axes[0], 1, x.axes[1], n), 1, (1, x.axes[1], n), 0
    else:  # Y (B, T, 2, n), Y_h (B, 2, n)
        y_axes, y_axis, s_axes, s_axis = (x.axes[0], x.axes[1], 1, n), 2, (x.axes[0], 1, n), 1
    outs = [Stacked(tuple(Data(Part(bi, "Y", d), y_axes) for d in (0, 1)), y_axis)]
    outs += [Stacked(tuple(Data(Part(bi, s, d), s_axes) for d in (0, 1)), s_axis) for s in states]
    return outs


def directions(parts: tuple):
    """The Bidirectional whose Y the parts are, forward then backward, or None."""
    if len(parts) != 2 or not all(isinstance(p, Data) and isinstance(p.src, Part) and p.src.what == "Y"
                                  for p in parts):
        return None
    a, b = parts[0].src, parts[1].src
    return a.node if a.node is b.node and (a.d, b.d) == (0, 1) else None


def joined(im, parts: tuple, axis: int) -> Data:
    """wlnet values catenated along the feature axis `axis` of their ONNX axes: a CatenateLayer
    (for a bidirectional node's Y, the operator's own "Catenate"). The flattened features of
    the result are the parts' one after another only if every feature axis before `axis` has
    size 1."""
    bi = directions(parts)
    if not all(isinstance(p, Data) for p in parts):
        raise im.fail("zeros joined with wlnet values are supported as the initial states of a bidirectional node "
                      "only.")
    first = parts[0]
    axes = [im.axes(p) for p in parts]
    size = sum(a[axis] if isinstance(a[axis], int) else 0 for a in axes)
    out_axes = first.axes[:axis] + (size,) + first.axes[axis + 1:]
    if bi is not None:
        return Data(Part(bi, "Y", "Catenate"), out_axes)
    for a, p in zip(axes, parts):
        if len(a) != len(axes[0]) or not isinstance(a[axis], int) or p.integer != first.integer or p.sub != first.sub:
            raise im.fail("a Concat of wlnet values joins values of the same rank along a feature axis.")
        if any(u is not v and u != v for i, (u, v) in enumerate(zip(a, axes[0])) if i != axis):
            raise im.fail(f"a Concat of wlnet values of axes {axes[0]} and {a} along axis {axis}: their other axes "
                          "differ.")
    if any(isinstance(u, int) and u != 1 for u in axes[0][:axis]):
        raise im.fail(f"a Concat of wlnet values of axes {axes[0]} along axis {axis} interleaves their features "
                      "(a feature axis of size > 1 comes before it); CatenateLayer joins them one after another.")
    sequence = any(u == TIME or isinstance(u, Var) for u in axes[0])
    key = im.add(CatenateLayer, {"Input": list(parts)}, *((-1,) if sequence else ()))
    return Data((key, "Output"), out_axes, first.integer, first.sub)


def materialize(im, v):
    """A Stacked value as one wlnet value (its parts joined); anything else unchanged."""
    return joined(im, v.parts, v.axis) if isinstance(v, Stacked) else v


def reduced(im, v: Stacked, axis: int, how: str, keep: bool) -> Data:
    """ReduceSum / ReduceMean over the stacked axis: a bidirectional node's "Total" / "Mean" of its
    two directions, or a TotalLayer of the parts."""
    if not all(isinstance(p, Data) for p in v.parts):
        raise im.fail("a reduction of zeros joined with wlnet values is not supported.")
    axes = v.parts[0].axes
    out_axes = axes[:axis] + ((1,) if keep else ()) + axes[axis + 1:]
    bi = directions(v.parts)
    if bi is not None:
        return Data(Part(bi, "Y", how), out_axes)
    if how != "Total":
        raise im.fail("ReduceMean over wlnet values stacked along an axis is supported for the two directions of a "
                      "bidirectional recurrent node only.")
    key = im.add(TotalLayer, {"Input": list(v.parts)})
    return Data((key, "Output"), out_axes)


# ---- deciding the sources, when the net is built --------------------------------------------------
def resolve(im) -> None:
    """Replace every Part among the edge and output sources by the source it stands for. The
    nodes are decided last first: a node's layers read the Parts of the nodes before it."""
    for bi in reversed(im.bidirectional):
        sources = [s for s, _ in im.edges] + [s for s, _ in im.outputs.values()]
        used = {(s.what, s.d) for s in sources if isinstance(s, Part) and s.node is bi}
        if not used:
            del im.layers[bi.slot]
            continue
        im.node = bi.node
        bi.made = _make(im, bi, used)
    im.node = None

    def final(src):
        return src.node.made[(src.what, src.d)] if isinstance(src, Part) else src

    im.edges = [(final(s), d) for s, d in im.edges]
    im.outputs = {name: (final(s), d) for name, (s, d) in im.outputs.items()}


def _make(im, bi: Bidirectional, used: set) -> dict:
    whole = {d for what, d in used if what == "Y" and isinstance(d, str)}
    apart = {d for what, d in used if what == "Y" and isinstance(d, int)}
    cls, options = bi.cls, {"Input": (VARYING, bi.k)}
    if len(whole) == 1 and not apart:  # the operator, joining the directions as the graph does
        how = whole.pop()
        try:
            nets = tuple(cls(bi.n, **options, **arrays) for arrays in bi.arrays)
        except NetError as e:
            raise im.fail(f"its arrays do not make a {cls.__name__}: {e}", NetError) from None
        key = im.add(NetBidirectionalOperator, {"Input": bi.x}, nets, *((how,) if how != "Catenate" else ()),
                     at=bi.slot)
        for s, srcs in bi.states_in.items():
            for prefix, src in zip(PREFIXES, srcs):
                if src is not None:
                    im.edges.append((im.src(src), (key, prefix + s)))
        made = {("Y", how): (key, "Output")}
        made.update({(s, d): (key, PREFIXES[d] + s) for s in cls.CELL.states for d in (0, 1)})
        return made
    if "Mean" in whole:
        raise im.fail("the mean of the two directions' Y is used beside another use of Y; only one form of it maps "
                      "to a NetBidirectionalOperator.")
    keys = []  # two layers, the backward one reading the sequence reversed
    for d, arrays in enumerate(bi.arrays):
        x = bi.x if d == 0 else (im.add(SequenceReverseLayer, {"Input": bi.x}), "Output")
        feeds = {"Input": x, **{s: srcs[d] for s, srcs in bi.states_in.items() if srcs[d] is not None}}
        keys.append(im.add(cls, feeds, bi.n, **options, **arrays, at=bi.slot if d == 0 else None))
    im.recurrent.extend(keys)
    made = {(s, d): (keys[d], s) for s in cls.CELL.states for d in (0, 1)}
    ys = [(keys[0], "Output"), (im.add(SequenceReverseLayer, {"Input": (keys[1], "Output")}), "Output")] \
        if {"Y"} & {what for what, _ in used} else []
    if ys:
        made.update({("Y", 0): ys[0], ("Y", 1): ys[1]})
    if "Catenate" in whole:
        made[("Y", "Catenate")] = (im.add(CatenateLayer, {"Input": ys}, -1), "Output")
    if "Total" in whole:
        made[("Y", "Total")] = (im.add(TotalLayer, {"Input": ys}), "Output")
    return made
