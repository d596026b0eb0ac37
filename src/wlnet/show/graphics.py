"""Figures: `figure()` makes the matplotlib Figures that wlnet returns (a notebook shows them as
images without `%matplotlib inline`); the "SummaryGraphic" of a net, its layers and ports as
boxes and arrows.

Every box is measured before it is placed: columns are as wide as their widest box, and each
arrow runs from the right edge of one box to the left edge of the next, so no arrow crosses a
box's text."""

from __future__ import annotations

import io
import textwrap

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.shapes import ListType, describe

# (this module is imported only when a figure is made: matplotlib loads then)

_GAP, _MARGIN, _ROW_GAP = 90, 20, 26  # pixels between columns, around the picture, between rows
_CENTRED = {"ha": "center", "va": "center", "fontsize": 8}  # a box's text


class WLFigure(Figure):
    """A matplotlib Figure that a notebook shows by itself, as PNG (or SVG where a front end asks
    for it); everything else is the Figure's own (savefig, axes, ...)."""

    def _repr_png_(self) -> bytes:
        return self._bytes("png")

    def _repr_svg_(self) -> str:
        return self._bytes("svg").decode("utf-8")

    def _bytes(self, fmt: str) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format=fmt, bbox_inches="tight")
        return buffer.getvalue()


def figure(**kwargs) -> WLFigure:
    """A WLFigure (kwargs as for matplotlib.figure.Figure) drawn by the Agg canvas: no pyplot, no
    backend to choose."""
    fig = WLFigure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _dims(t) -> str:
    if isinstance(t, ListType):
        return "list" if t.items is None else ", ".join(_dims(i) for i in t.items)
    if t.dims is None:
        return "array"
    if not t.dims:
        return "scalar"
    return "×".join("n" if d is None else ("T" if d == "Varying" else str(d)) for d in t.dims)


def _coder(coder) -> str:
    from .display import coder_text

    return "\n" + textwrap.fill(coder_text(coder), 36) if coder is not None else ""


def _node_text(key, node) -> str:
    ins, outs = list(node.input_ports().values()), list(node.output_ports().values())
    flow = f"{_dims(ins[0]) if ins else ''} → {_dims(outs[0]) if outs else ''}"
    return f"{key}  {node.short_code()}\n{flow}"


def summary_graphic(net):
    """A matplotlib Figure: graph inputs (with their encoders) on the left, layers in topological
    order with their sizes and shapes, graph outputs (with their decoders) on the right; edges as
    arrows, labelled with their ports where these are not the main ones. Save with fig.savefig."""
    nodes, edges = net.wiring()
    ins, outs = net.input_ports(), net.output_ports()
    boxes = {}  # key → (text, box style)
    for p, t in ins.items():
        boxes[("in", p)] = (f"{p}\n{_dims(t)}{_coder(net.encoders.get(p))}", {"boxstyle": "round", "fc": "#e8f0fe"})
    for k, node in nodes:
        boxes[k] = (_node_text(k, node), {"boxstyle": "square", "fc": "#fff4d6"})
    for p, t in outs.items():
        boxes[("out", p)] = (f"{p}\n{_dims(t)}{_coder(net.decoders.get(p))}", {"boxstyle": "round", "fc": "#e6f4ea"})
    rank = {}  # a node's column: one past the furthest node that feeds it (graph inputs: 0)
    for k, _ in nodes:
        rank[k] = 1 + max((rank.get(src[0], 0) for src, dst in edges if dst[0] == k and src[0] != "graph"),
                          default=0)
    layers = [[k for k, _ in nodes if rank[k] == r] for r in range(1, max(rank.values(), default=0) + 1)]
    columns = [[("in", p) for p in ins]] + layers + [[("out", p) for p in outs]]

    fig = figure(dpi=100)
    renderer = fig.canvas.get_renderer()
    size = {}
    for key, (text, box) in boxes.items():  # each box's size in pixels, drawn once to be measured
        probe = fig.text(0.5, 0.5, text, bbox=box, **_CENTRED)
        probe.draw(renderer)  # (the box around the text takes its size when drawn)
        extent = probe.get_bbox_patch().get_window_extent(renderer)
        size[key] = (extent.width, extent.height)
        probe.remove()
    title_h = 30
    widths = [max((size[k][0] for k in col), default=0) for col in columns]
    heights = [sum(size[k][1] for k in col) + _ROW_GAP * max(len(col) - 1, 0) for col in columns]
    W = 2 * _MARGIN + sum(widths) + _GAP * (len(columns) - 1)
    H = 2 * _MARGIN + max(heights) + title_h
    centre = {}
    x = _MARGIN
    for col, w, h in zip(columns, widths, heights):
        y = _MARGIN + (max(heights) + h) / 2  # the column centred vertically, top to bottom
        for k in col:
            centre[k] = (x + w / 2, y - size[k][1] / 2)
            y -= size[k][1] + _ROW_GAP
        x += w + _GAP
    fig.set_size_inches(W / fig.dpi, H / fig.dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, W)
    ax.set_ylim(0, H)
    ax.set_axis_off()
    for key, (text, box) in boxes.items():
        ax.text(*centre[key], text, bbox=box, **_CENTRED)

    def at(end):
        return ("in", end[1]) if end[0] == "graph" else end[0]

    for src, dst in edges:
        a, b = at(src), ("out", dst[1]) if dst[0] == "graph" else dst[0]
        start = (centre[a][0] + size[a][0] / 2 + 3, centre[a][1])
        end = (centre[b][0] - size[b][0] / 2 - 3, centre[b][1])
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "#555", "shrinkA": 0,
                                                          "shrinkB": 0})
        label = " → ".join(p for p in (src[1], dst[1]) if p not in ("Output", "Input"))
        if label:  # on the arrow, over a white ground, a third of the way along
            ax.text(start[0] + (end[0] - start[0]) / 3, start[1] + (end[1] - start[1]) / 3, label, fontsize=7,
                    color="#555", ha="center", va="center",
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.9})
    count = len(net.leaves())
    first_in = describe(next(iter(ins.values()))) if ins else "no input"
    ax.text(W / 2, H - _MARGIN / 2 - 8, f"{net.name}: {count} layer{'s' if count != 1 else ''}, {first_in} in",
            ha="center", va="center", fontsize=9)
    return fig

