"""What nets, encoders, decoders, NetStateObjects and training results show of themselves: the
plain-text repr and the notebook HTML (`_repr_html_`) carry the same facts."""

from __future__ import annotations

import base64
import html.parser
import re

import pytest

import wlnet as w
from wlnet.core.net import Net
from wlnet.examples.applications import addition_net, comparison_data, comparison_net
from wlnet.examples.sequences import LM_ALPHABET, language_model
from wlnet.show import display


class _Tags(html.parser.HTMLParser):
    """Checks that every tag opened is closed, in order."""

    VOID = {"img", "br"}

    def __init__(self):
        super().__init__()
        self.stack, self.bad = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):  # <img ... />: opened and closed at once
        pass

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.bad.append(tag)


def balanced(text: str) -> bool:
    p = _Tags()
    p.feed(text)
    return not p.stack and not p.bad


def test_the_page_classifier_shows_sizes_encoder_decoder_and_arrays():
    net = w.NetInitialize(comparison_net(), RandomSeeding=1)
    page, line = net._repr_html_(), repr(net)
    for fact in ("LongShortTermMemoryLayer(20)", "SequenceLastLayer()", "LinearLayer(3)", "SoftmaxLayer()",
                 "a string of the characters x, y", "one of Less, Greater, Equal",
                 "a sequence of size-2 vectors", "a vector of size 3", "1,903 numbers", "7.61 kB"):
        assert fact in page, fact
        assert fact in line, fact
    assert "initialized" in line and "uninitialized" not in line
    assert page.count("<details") == 4 and balanced(page)
    assert "LongShortTermMemoryLayer(20) — 12 arrays (1,840 numbers" in page  # the LSTM's own block
    assert "SequenceLastLayer() — no arrays" in page and "14 arrays (1,903 numbers" in line


def test_an_uninitialized_layer_and_the_addition_net():
    layer = w.LongShortTermMemoryLayer(3)
    assert "uninitialized" in layer._repr_html_() and "12 arrays, not yet initialized" in repr(layer)
    net = addition_net()
    page = net._repr_html_()
    assert "a string of the characters 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, +" in page
    assert page.count("LongShortTermMemoryLayer(80)") == 2 and balanced(page)


def test_a_graph_nests_its_chain_and_cuts_a_long_alphabet():
    net = w.NetInitialize(language_model(LM_ALPHABET, 16), RandomSeeding=2)
    page = net._repr_html_()
    assert "EmbeddingLayer(32)" in page and "LongShortTermMemoryLayer(16)" in page
    assert "NetMapOperator" in page and "LinearLayer(96)" in page  # the operator's own layer, one level in
    assert f"({len(LM_ALPHABET)} in all)" in page and "newline, space" in page
    assert re.search(r"<code>predict</code> NetChain", page) and balanced(page)
    text = display.text(net)
    assert "  predict:" in text and "EmbeddingLayer(32)" in text


def test_encoders_decoders_and_state_objects():
    enc = w.NetEncoder(("Class", ["a", "b"]))
    dec = w.NetDecoder(("Characters", "xy"))
    assert "one of a, b" in enc._repr_html_() and "NetEncoder" in enc._repr_html_()
    assert "a string of the characters x, y" in dec._repr_html_()
    lstm = w.NetInitialize(w.LongShortTermMemoryLayer(2, Input=("Varying", 1)), RandomSeeding=3)
    state = w.NetStateObject(lstm)
    assert "states held: none yet" in state._repr_html_()
    state([[0.5], [0.2]])
    page = state._repr_html_()
    assert "State" in page and "CellState" in page and balanced(page)


def test_training_results_embed_their_loss_plot():
    data = comparison_data()
    res = w.NetTrain(comparison_net(), data, w.All, MaxTrainingRounds=3, BatchSize=64,
                     ValidationSet=w.Scaled(0.2), TrainingProgressReporting=None, RandomSeeding=4)
    page = res._repr_html_()
    png = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert png is not None and base64.b64decode(png.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{res['RoundLossList'][-1]:.4g}" in page and f"{res['ValidationLossList'][-1]:.4g}" in page
    assert "<td>rounds</td><td>3</td>" in page and "MaxTrainingRounds" in page and balanced(page)


def test_progress_reporting_values(monkeypatch):
    from wlnet.core.errors import OptionError
    from wlnet.train import options as train_options

    def mode(value):
        return train_options.parse({"TrainingProgressReporting": value}).reporting

    assert mode(w.Automatic) == mode("Panel") == mode("ProgressIndicator") == "bar"  # outside a notebook
    assert mode("Print") == "Print" and mode(None) is None
    monkeypatch.setattr(train_options, "in_notebook", lambda: True)
    assert mode(w.Automatic) == mode("Panel") == "panel" and mode("ProgressIndicator") == "bar"
    with pytest.raises(OptionError, match=r'"Panel".*\'Chart\''):
        mode("Chart")


def _boxes_and_arrows(fig):
    """The figure drawn: the boxes (text bounding patches) and the arrows' end points, in pixels."""
    from matplotlib.text import Annotation

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = [(t.get_text(), t.get_bbox_patch().get_window_extent(renderer)) for t in ax.texts
             if not isinstance(t, Annotation) and t.get_bbox_patch() is not None
             and t.get_bbox_patch().get_facecolor()[:3] != (1.0, 1.0, 1.0)]  # (edge labels sit on white)
    arrows = [(ax.transData.transform(a.xyann), ax.transData.transform(a.xy)) for a in ax.texts
              if isinstance(a, Annotation)]
    return boxes, arrows


def _crosses(box, a, b, steps=200) -> bool:
    """Whether the segment a→b passes through the inside of box (shrunk by 2 px)."""
    x0, y0, x1, y1 = box.x0 + 2, box.y0 + 2, box.x1 - 2, box.y1 - 2
    return any(x0 < a[0] + (b[0] - a[0]) * i / steps < x1 and y0 < a[1] + (b[1] - a[1]) * i / steps < y1
               for i in range(steps + 1))


def test_summary_graphic_boxes_carry_sizes_coders_and_no_arrow_crosses_a_box():
    chain = w.NetInitialize(comparison_net(), RandomSeeding=1)
    lstm = w.LongShortTermMemoryLayer(2, Input=("Varying", 3))
    graph = w.NetGraph([lstm], [(w.NetPort("s0"), w.NetPort(1, "State")), (w.NetPort("c0"), w.NetPort(1, "CellState")),
                                (w.NetPort(1, "State"), w.NetPort("state"))])
    for net, facts in ((chain, ["LongShortTermMemoryLayer(20)", "T×2 → T×20", "LinearLayer(3)", "characters x,",
                                "one of Less, Greater, Equal"]),
                       (graph, ["s0", "c0", "state", "T×3 → T×2"])):
        boxes, arrows = _boxes_and_arrows(w.Information(net, "SummaryGraphic"))
        text = "\n".join(t for t, _ in boxes)
        for fact in facts:
            assert fact in text, fact
        for i, (_, p) in enumerate(boxes):
            for _, q in boxes[i + 1:]:
                assert not p.overlaps(q)
        assert arrows
        for a, b in arrows:
            assert not any(_crosses(box, a, b) for _, box in boxes)


class _Pair(Net):
    """A net kind the display modules know nothing of: two layers, the first feeding the second.
    It declares only the protocol, so whatever its summary shows came through the protocol."""

    def __init__(self, first, second):
        self._first, self._second = first, second

    def input_ports(self) -> dict:
        return self._first.input_ports()

    def output_ports(self) -> dict:
        return self._second.output_ports()

    def leaves(self) -> list:
        return [((k,) + pos, leaf) for k, net in self.parts() for pos, leaf in net.leaves()]

    def parts(self) -> list:
        return [("first", self._first), ("second", self._second)]


def test_a_net_kind_unknown_to_the_display_is_summarized_through_the_protocol():
    pair = _Pair(w.NetInitialize(w.LinearLayer(3, Input=2), RandomSeeding=1), w.SoftmaxLayer(Input=3))
    text = display.text(pair).splitlines()
    assert text[0] == "_Pair  (initialized)"
    assert text[1] == "  input Input: a vector of size 2" and text[2] == "  output Output: a vector of size 3"
    assert text[3] == "  first:" and text[4] == "    LinearLayer(3, Input=2)  (initialized)"
    assert "  second:" in text and "    SoftmaxLayer(Input=3)  (initialized)" in text
    assert text[-1] == "  2 arrays (9 numbers, 36 bytes)"  # 3×2 weights and 3 biases, float32
    page = pair._repr_html_()
    assert page.count("<details") == 2 and balanced(page)
    assert "LinearLayer(3, Input=2) — 2 arrays (9 numbers, 36 bytes)" in page
    boxes, arrows = _boxes_and_arrows(w.Information(pair, "SummaryGraphic"))  # one box between its ports
    assert [t.split("\n")[0] for t, _ in boxes] == ["Input", "1  _Pair", "Output"] and len(arrows) == 2


def test_parts_wiring_and_codes_of_graphs_and_operators():
    bi = w.NetBidirectionalOperator(w.GatedRecurrentLayer(3))
    chain = w.NetChain({"bi": bi, "map": w.NetMapOperator(w.LinearLayer(2))}, Input=("Varying", 2))
    assert [k for k, _ in chain.parts()] == ["bi", "map"]
    assert [k for k, _ in chain.parts()[0][1].parts()] == ["ForwardNet", "BackwardNet"]
    assert [n.short_code() for _, n in chain.parts()] == ["NetBidirectionalOperator(GatedRecurrentLayer(3))",
                                                         "NetMapOperator(LinearLayer(2))"]
    assert [n.summary_code() for _, n in chain.parts()] == ["NetBidirectionalOperator", "NetMapOperator"]
    assert chain.summary_code() == chain.short_code() == "NetChain" and w.LinearLayer(2).parts() == []
    nodes, edges = chain.wiring()
    assert [k for k, _ in nodes] == ["bi", "map"]
    assert edges == [(("graph", "Input"), ("bi", "Input")), (("bi", "Output"), ("map", "Input")),
                     (("map", "Output"), ("graph", "Output"))]
    g = w.NetGraph({"a": w.LinearLayer(3), "b": w.LinearLayer(3), "c": w.CatenateLayer()},
                   [("b", "c"), (["a", "b"], "c")], Input=2)
    nodes, edges = g.wiring()
    assert [k for k, _ in nodes][-1] == "c"  # evaluated after both layers that feed it
    assert (("a", "Output"), ("c", "Input")) in edges and (("b", "Output"), ("c", "Input")) in edges


def test_information_is_its_table_of_properties():
    from wlnet.core.errors import OptionError
    from wlnet.show import info

    net = w.NetInitialize(comparison_net(), RandomSeeding=1)
    props = w.Information(net, "Properties")
    assert props == list(info.PROPERTIES) and len(set(props)) == len(props) and "Properties" in props
    answers = {p: w.Information(net, p) for p in props}
    assert answers["ArraysTotalElementCount"] == 1903 and answers["ArraysTotalByteCount"] == 4 * 1903
    assert answers["ArraysTotalSize"] == "7.61 kB" and answers["LayersCount"] == 4
    assert answers["LayerTypeCounts"] == {"LongShortTermMemoryLayer": 1, "SequenceLastLayer": 1, "LinearLayer": 1,
                                          "SoftmaxLayer": 1}
    summary = w.Information(net)
    assert list(summary) == ["LayersCount", "ArraysCount", "InputPortNames", "OutputPortNames",
                             "ArraysTotalElementCount", "ArraysTotalSize"]
    assert all(summary[p] == answers[p] for p in summary)
    for bad in ("NotAProperty", ["Arrays"], 3):
        with pytest.raises(OptionError, match="is not a known property; the properties are Arrays, ArraysCount"):
            w.Information(net, bad)
    state = w.NetStateObject(w.NetInitialize(w.LongShortTermMemoryLayer(2, Input=("Varying", 1)), RandomSeeding=3))
    assert w.Information(state, "LayersCount") == 1  # a NetStateObject answers for its net
    with pytest.raises(OptionError, match="Information: expected a net, but was given list"):
        w.Information([state])
