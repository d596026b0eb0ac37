"""The "SummaryGraphic" of a net: its layers and ports as boxes and arrows (matplotlib)."""

from __future__ import annotations

from .shapes import ListType, describe


def _dims(t) -> str:
    if isinstance(t, ListType):
        return "list" if t.items is None else ", ".join(_dims(i) for i in t.items)
    if t.dims is None:
        return "array"
    if not t.dims:
        return "scalar"
    return "×".join("n" if d is None else ("T" if d == "Varying" else str(d)) for d in t.dims)


def summary_graphic(net):
    """A matplotlib Figure: graph inputs on the left, layers in topological order, graph
    outputs on the right, edges as arrows labelled with port names. Save with fig.savefig."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .containers import NetGraph

    if isinstance(net, NetGraph):
        nodes = [(k, net._nodes[k]) for k in net._order]
        edges = [(src, dst) for src, dst in _all_edges(net)]
    else:
        nodes = [(1, net)]
        edges = [(("graph", p), (1, p)) for p in net.input_ports()] + \
                [((1, p), ("graph", p)) for p in net.output_ports()]
    ins = list(net.input_ports())
    outs = list(net.output_ports())
    columns = [[("graph", p) for p in ins]] + [[k] for k, _ in nodes] + [[("out", p) for p in outs]]
    pos = {}
    for x, col in enumerate(columns):
        for y, item in enumerate(col):
            pos[item] = (x * 2.2, -y * 1.2)
    width = max(4.0, 2.2 * len(columns))
    height = max(2.0, 1.2 * max(len(c) for c in columns) + 0.8)
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_axis_off()
    style = {"ha": "center", "va": "center", "fontsize": 8}
    for p in ins:
        x, y = pos[("graph", p)]
        t = net.input_ports()[p]
        ax.text(x, y, f"{p}\n{_dims(t)}", bbox={"boxstyle": "round", "fc": "#e8f0fe"}, **style)
    for k, node in nodes:
        x, y = pos[k]
        ax.text(x, y, f"{k}\n{node.name}", bbox={"boxstyle": "square", "fc": "#fff4d6"}, **style)
    for p in outs:
        x, y = pos[("out", p)]
        ax.text(x, y, f"{p}\n{_dims(net.output_ports()[p])}", bbox={"boxstyle": "round", "fc": "#e6f4ea"}, **style)
    for src, dst in edges:
        a = pos[("graph", src[1])] if src[0] == "graph" else pos[src[0]]
        b = pos[("out", dst[1])] if dst[0] == "graph" else pos[dst[0]]
        ax.annotate("", xy=(b[0] - 0.6, b[1]), xytext=(a[0] + 0.6, a[1]),
                    arrowprops={"arrowstyle": "->", "color": "#555"})
        label = " → ".join(p for p in (src[1], dst[1]) if p not in ("Output", "Input"))
        if label:
            ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.15, label, fontsize=7, color="#555", ha="center")
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    count = len(net.leaves())
    first_in = describe(next(iter(net.input_ports().values())))
    ax.set_title(f"{net.name}: {count} layer{'s' if count != 1 else ''}, {first_in} in", fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _all_edges(graph):
    for k in graph._order:
        for port, src in graph._feeds[k].items():
            for s in src if isinstance(src, list) else [src]:  # a list port's sources one by one
                yield s, (k, port)
    for port, src in graph._graph_out.items():
        yield src, ("graph", port)
