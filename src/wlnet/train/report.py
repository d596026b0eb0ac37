"""What NetTrain shows while it trains: the live progress bar (or per-round lines, or in a
notebook the panel with the loss curves)."""

from __future__ import annotations

import sys

from .results import loss_plot

WHO = "NetTrain"


# ---- progress ------------------------------------------------------------------------------------
class Progress:
    """A live tqdm bar (rounds, loss, validation loss, examples/s), per-round lines, nothing, or
    in a notebook the panel: tqdm's notebook bar and the loss curves (training and validation)
    with the round's figures, redrawn at most every `PANEL_SECONDS`."""

    PANEL_SECONDS = 0.5

    def __init__(self, mode, rounds: int | None, seconds: float | None):
        self.mode = mode
        self.bar = None
        self.last = 0.0
        self.by_time = rounds is None
        self.panel = None  # the notebook display the curves are drawn in
        self.losses, self.vals, self.drawn, self.line = [], [], 0.0, ""
        if mode == "panel":
            from IPython.display import HTML, display

            self.panel = display(HTML("<p>NetTrain: starting</p>"), display_id=True)
            mode = "bar"
        if mode == "bar":
            from tqdm.auto import tqdm

            common = {"desc": WHO, "file": sys.stderr, "dynamic_ncols": True, "mininterval": 0.25}
            if self.by_time:
                self.bar = tqdm(total=seconds, unit="s", **common,
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s "
                                           "[{elapsed}{postfix}]")
            else:
                self.bar = tqdm(total=rounds, unit="round", **common,
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} rounds "
                                           "[{elapsed}<{remaining}{postfix}]")

    def due(self, now: float) -> bool:
        return self.bar is not None and now - self.last >= 0.25

    def show(self, now, elapsed, r, loss, val, rate, advance=0, extra: str = "") -> None:
        """Update the bar's text (and, for rounds, its count); tqdm redraws at most 4 times a second."""
        self.last = now
        text = f"round {r}, loss {loss:.4g}" + (f", validation {val:.4g}" if val is not None else "") + extra + \
            f", {rate:,.0f} examples/s"
        self.bar.set_postfix_str(text, refresh=False)
        if self.by_time:
            self.bar.update(min(elapsed, self.bar.total) - self.bar.n)
        else:
            self.bar.update(advance)

    def round_end(self, now, elapsed, r, loss, val, rate, measured: dict | None = None,
                  validated: dict | None = None) -> None:
        extra = measurement_text(measured, validated)
        if self.panel is not None:
            self.losses.append(loss)
            if val is not None:
                self.vals.append(val)
            self.line = f"round {r}: loss {loss:.4g}" + (f", validation loss {val:.4g}" if val is not None else "") \
                + extra + f", {rate:,.0f} examples/s, {elapsed:.1f} s"
            if now - self.drawn >= self.PANEL_SECONDS:
                self.draw(now)
        if self.mode == "Print":
            print(f"{WHO}: round {r}: loss {loss:.6g}" + (f", validation loss {val:.6g}" if val is not None else "")
                  + extra + f", {rate:,.0f} examples/s", flush=True)
        elif self.bar is not None:
            self.show(now, elapsed, r, loss, val, rate, advance=1, extra=extra)

    def draw(self, now: float) -> None:
        """The panel's loss curves and the latest round's figures."""
        from IPython.display import HTML

        from ..show.display import figure_png

        self.drawn = now
        png = figure_png(loss_plot(self.losses, self.vals))
        self.panel.update(HTML(f"<img src='data:image/png;base64,{png}' alt='loss per round'/>"
                               f"<p>{self.line}</p>"))

    def close(self, elapsed) -> None:
        if self.panel is not None and self.losses:
            self.draw(float("inf"))  # the final curves, however recent the last drawing
        if self.bar is not None:
            if self.by_time:
                self.bar.total = elapsed
                self.bar.n = elapsed
            self.bar.close()


def measurement_text(measured: dict | None, validated: dict | None) -> str:
    """", accuracy 0.95 (validation 0.9)" for each scalar measurement but the loss."""
    parts = []
    for name, v in (measured or {}).items():
        if name == "Loss" or not isinstance(v, float):
            continue
        val = (validated or {}).get(name)
        label = name[0].lower() + name[1:]
        parts.append(f", {label} {v:.4g}" + (f" (validation {val:.4g})" if val is not None else ""))
    return "".join(parts)


__all__ = ["Progress", "measurement_text"]
