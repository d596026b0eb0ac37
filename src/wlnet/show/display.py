"""What a net, an encoder, a decoder, a NetStateObject or a training result shows of itself: a
plain-text summary and the same facts as HTML for notebooks (`_repr_html_`).

A net's summary: its kind, whether it is initialized, every port with its shape and the encoder
or decoder there ("a string of the characters x, y" → "one of Less, Greater, Equal"), its
layers (position or name, type with its size, arrays), and its arrays' total count and size.
Containers and operators nest; in HTML each nested one is a collapsible block.
"""

from __future__ import annotations

import base64
import html
import io

from ..core.shapes import describe

_SHOWN = 12  # alphabets and label lists longer than this are cut


def coder_text(coder) -> str:
    """An encoder or decoder in English: what it takes (encoder) or gives (decoder)."""
    if coder.kind == "Class":
        return "one of " + _items([str(lab) for lab in coder.labels])
    if coder.kind == "Integers":
        return f"a sequence of integer ids {coder.origin}..{coder.origin + coder.size - 1}"
    chars = [_char(c) for c in (coder.alphabet if hasattr(coder, "alphabet") else coder.labels)]
    return "a string of the characters " + _items(chars)


def _char(c: str) -> str:
    return {"\n": "newline", " ": "space", "\t": "tab"}.get(c, c)


def _items(items: list) -> str:
    if len(items) <= _SHOWN:
        return ", ".join(items)
    return f"{', '.join(items[:_SHOWN])}, … ({len(items)} in all)"


def port_text(t, coder=None) -> str:
    """A port's description; with an encoder or decoder, what the user gives or gets, then the
    array inside."""
    return describe(t) if coder is None else f"{coder_text(coder)} ({describe(t)})"


def ports_text(net) -> str:
    """"Input: … → Output: …" with the encoders and decoders."""
    ins = ", ".join(f"{p}: {port_text(t, net.encoders.get(p))}" for p, t in net.input_ports().items())
    outs = ", ".join(f"{p}: {port_text(t, net.decoders.get(p))}" for p, t in net.output_ports().items())
    return f"{ins} → {outs}"


def _count(n: int) -> str:
    return f"{n:,}"


def byte_text(n: int) -> str:
    """A byte count in words: "7.61 kB"."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def summary(net) -> dict:
    """The facts both forms show: what it is, initialized, ports, arrays, and the summaries of
    its parts (layers, nested containers, an operator's nets)."""
    return {"code": net.summary_code(), "initialized": net.initialized(),
            "inputs": [(p, port_text(t, net.encoders.get(p))) for p, t in net.input_ports().items()],
            "outputs": [(p, port_text(t, net.decoders.get(p))) for p, t in net.output_ports().items()],
            "states": [(p, describe(t)) for p, t in net.state_ports().items()],
            "parts": [(key, summary(part)) for key, part in net.parts()], "arrays": arrays_text(net)}


def short_code(net) -> str:
    """A part of a container in a one-line summary: a layer with its size, an operator with what
    it holds, a container by its type."""
    return net.short_code()


def text(net) -> str:
    """The plain-text summary, one fact a line; nested nets indented."""
    return _text(summary(net), "")


def _text(s: dict, indent: str) -> str:
    state = "initialized" if s["initialized"] else "uninitialized"
    lines = [f"{indent}{s['code']}  ({state})"]
    for label, items in (("input", s["inputs"]), ("output", s["outputs"]), ("state", s["states"])):
        lines += [f"{indent}  {label} {p}: {d}" for p, d in items]
    for key, part in s["parts"]:
        lines.append(f"{indent}  {key}:")
        lines.append(_text(part, indent + "    "))
    lines.append(f"{indent}  {s['arrays']}")
    return "\n".join(lines)


def arrays_text(net) -> str:
    """The arrays' count, numbers and bytes."""
    arrays = list(net.arrays().values())
    if not arrays:
        return "no arrays"
    n = f"{len(arrays)} array{'s' if len(arrays) > 1 else ''}"
    have = [t for t in arrays if t is not None]
    if not have:
        return f"{n}, not yet initialized"
    count, size = sum(t.numel() for t in have), sum(t.numel() * t.element_size() for t in have)
    missing = len(arrays) - len(have)
    return f"{n} ({_count(count)} numbers, {byte_text(size)})" + (f", {missing} not yet initialized" if missing else "")


def html_of(net) -> str:
    """The summary as HTML: a table of ports, the layers as nested collapsible blocks."""
    return _html(summary(net), header=True)


def _html(s: dict, header: bool) -> str:
    """A nested block's headline names its part, so the block itself goes without `header`."""
    e = html.escape
    state = "initialized" if s["initialized"] else "<b>uninitialized</b>"
    rows = "".join(f"<tr><td>{label}</td><td><code>{e(str(p))}</code></td><td>{e(d)}</td></tr>"
                   for label, items in (("input", s["inputs"]), ("output", s["outputs"]), ("state", s["states"]))
                   for p, d in items)
    parts = "".join(f"<details{' open' if len(s['parts']) <= 8 else ''}><summary><code>{e(str(key))}</code> "
                    f"{e(part['code'])} — {e(part['arrays'])}</summary>"
                    f"<div style='margin-left:1.5em'>{_html(part, header=False)}</div></details>"
                    for key, part in s["parts"])
    head = f"<p><b>{e(s['code'])}</b> ({state})</p>" if header else ""
    tail = f"<p>{e(s['arrays'])}</p>" if header else ""
    return f"<div class='wlnet-net'>{head}<table>{rows}</table>{parts}{tail}</div>"


def coder_html(coder) -> str:
    kind = type(coder).__name__
    return f"<p><b>{kind}</b> {html.escape(coder.kind)}: {html.escape(coder_text(coder))}</p>"


def state_html(state) -> str:
    stored = ", ".join(f"{'/'.join(str(x) for x in pos)}" for pos in state._states) or "none yet"
    return f"<div><p><b>NetStateObject</b>, states held: {html.escape(stored)}</p>{html_of(state.net)}</div>"


def figure_png(fig) -> str:
    """A matplotlib figure as base64 PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def results_html(results) -> str:
    """A NetTrain result: its loss plot inline, then the figures of the run."""
    v = results._values
    e = html.escape
    loss = v["RoundLossList"][-1] if v["RoundLossList"] else float("nan")
    val = v["ValidationLossList"]
    facts = [("final round loss", f"{loss:.4g}"),
             ("final validation loss", f"{val[-1]:.4g}" if val else "no validation set"),
             ("rounds", str(v["TotalRounds"])), ("batches", _count(v["TotalBatches"])),
             ("training time", f"{v['TotalTrainingTime']:.3g} s"),
             ("examples/s", _count(round(v["MeanExamplesPerSecond"]))),
             ("stopped because", str(v["ReasonTrainingStopped"]))]
    rows = "".join(f"<tr><td>{e(k)}</td><td>{e(x)}</td></tr>" for k, x in facts)
    img = f"<img src='data:image/png;base64,{figure_png(results['LossPlot'])}' alt='loss per round'/>" \
        if v["RoundLossList"] else ""
    return f"<div class='wlnet-results'><p><b>NetTrainResultsObject</b></p>{img}<table>{rows}</table></div>"
