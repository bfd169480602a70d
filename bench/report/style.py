"""One visual identity per model and per inference mode, shared by every figure of a run.

A reader learns once that a model is the blue circles and that dashed means chunked, and
that holds in every figure and in the HTML report: colours and markers are assigned to
the sorted model names of the whole run, line styles to its sorted modes (``full`` always
solid), before any figure picks its rows. Text sizes are set for figures shown at about
800 pixels wide (a README column); footers are wrapped to the figure's width.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass

import matplotlib
import pandas as pd
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

#: Text sizes (points) readable when a 9-inch figure at 100 dpi is shown 800 pixels wide.
RC: dict[str, object] = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 13,
}
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
#: Line styles of the inference modes after ``full`` (solid).
MODE_LINESTYLES: tuple[str, ...] = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))
#: Bar hatches of the modes after ``full`` (bars have no line style to speak of).
MODE_HATCHES: tuple[str, ...] = ("//", "..", "xx", "\\\\")
FULL = "full"


@dataclass(frozen=True)
class Look:
    """How one model, or one inference mode, is drawn."""

    colour: str = "#444444"
    marker: str = "o"
    linestyle: object = "-"
    hatch: str = ""


class Identity:
    """Colour + marker per model, line style + hatch per inference mode, for a whole run."""

    def __init__(self, models: Iterable[str], modes: Iterable[str] = (FULL,)) -> None:
        names = sorted({str(m) for m in models})
        cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
        self.models = {
            m: Look(colour=to_hex(cmap(i % cmap.N)), marker=MARKERS[i % len(MARKERS)])
            for i, m in enumerate(names)
        }
        others = sorted({str(m) for m in modes} - {FULL})
        self.modes = {FULL: Look()} | {
            m: Look(linestyle=MODE_LINESTYLES[i % len(MODE_LINESTYLES)],
                    hatch=MODE_HATCHES[i % len(MODE_HATCHES)])
            for i, m in enumerate(others)
        }  # fmt: skip

    @classmethod
    def of(cls, *tables: pd.DataFrame | None) -> Identity:
        """The identity of every model and mode found in ``tables`` (results, frames...)."""
        models: set[str] = set()
        modes: set[str] = {FULL}
        for table in tables:
            if table is None or table.empty:
                continue
            models |= set(table["model"].dropna().astype(str))
            if "mode" in table.columns:
                modes |= set(table["mode"].dropna().astype(str))
        return cls(models, modes)

    def model(self, name: str) -> Look:
        return self.models.get(str(name), Look())

    def mode(self, name: str) -> Look:
        return self.modes.get(str(name), Look(linestyle=MODE_LINESTYLES[0]))

    def line(self, model: str, mode: str = FULL) -> dict[str, object]:
        """``Axes.plot`` keywords of one model under one mode."""
        look = self.model(model)
        return dict(color=look.colour, marker=look.marker, linestyle=self.mode(mode).linestyle,
                    markersize=6, linewidth=1.8)  # fmt: skip

    def bar(self, model: str, mode: str = FULL) -> dict[str, object]:
        """``Axes.bar`` keywords of one model under one mode."""
        return dict(color=self.model(model).colour, hatch=self.mode(mode).hatch,
                    edgecolor="#222222", linewidth=0.6)  # fmt: skip


def series_label(model: str, settings: dict[str, str] | None = None) -> str:
    """``model`` or ``model (temporal_chunks(4), dtype=bfloat16)``: the mode by its value
    (it names itself), other settings as key=value; only settings that vary are given."""
    parts = [v if k == "mode" else f"{k}={v}" for k, v in (settings or {}).items()]
    return f"{str(model)} ({', '.join(parts)})" if parts else str(model)


def footer(fig: Figure, lines: Iterable[str]) -> None:
    """Notes under the figure, wrapped to its width so none runs off the image.

    Drawn as the figure's ``supxlabel``, for which the constrained layout keeps room at the
    very bottom, under the legend, so the notes overlap nothing and stay in the image.
    """
    text = [line for line in lines if line]
    if not text:
        return
    size = 9.0
    chars = max(40, int(fig.get_figwidth() * 72 / (size * 0.55)))
    wrapped = "\n".join(textwrap.fill(line, chars, subsequent_indent="  ") for line in text)
    fig.set_size_inches(fig.get_figwidth(), fig.get_figheight() + (wrapped.count("\n") + 1) * 0.18)
    fig.supxlabel(wrapped, x=0.01, ha="left", fontsize=size, color="#444444")
