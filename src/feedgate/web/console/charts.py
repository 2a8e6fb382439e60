"""Charts as server-rendered SVG: the geometry of a stacked bar chart (one bar per category, a
segment per series) and of a horizontal bar chart, computed here and drawn by
``templates/_charts.html`` with SVG presentation attributes only (``fill``, ``x``, ...): the
Content-Security-Policy allows no inline style, and no script is needed to draw a bar.

Every value a chart shows is also in a table beside it (the page's), so a chart is a picture
of numbers one can read, never the only place they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["PALETTE", "Bar", "Chart", "Tick", "colours_for", "hbars", "stacked"]

#: Series colours (colour-blind-safe, Okabe-Ito order, then greys).
PALETTE: Final = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#56b4e9",
    "#d55e00",
    "#f0e442",
    "#000000",
    "#7f7f7f",
    "#bcbcbc",
)
_LEFT: Final = 48  # room for the value axis' labels
_TOP: Final = 10
_BOTTOM: Final = 34  # room for the category labels


def colours_for(names: Sequence[str]) -> dict[str, str]:
    """A colour per name, in order: give the same names to every chart of a page and a
    source has one colour on all of them."""
    return {name: PALETTE[n % len(PALETTE)] for n, name in enumerate(names)}


@dataclass(frozen=True, slots=True)
class Bar:
    """One rectangle, its colour and what its tooltip (``<title>``) says."""

    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    """A label on an axis at (x, y), with a grid line from (x, y) to (x2, y2) (none: equal)."""

    x: float
    y: float
    text: str
    x2: float = 0.0
    y2: float = 0.0
    anchor: str = "middle"


@dataclass(frozen=True, slots=True)
class Chart:
    """What the template draws: the viewBox, the bars, the axis labels and the legend."""

    width: int
    height: int
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    legend: tuple[tuple[str, str], ...]  # (colour, series name)
    label: str  # the chart's accessible name


def _step(top: int) -> int:
    """A round step for about four grid lines up to ``top``."""
    raw = max(1, top) / 4
    power = 1
    while True:
        for unit in (1, 2, 5):
            if unit * power >= raw:
                return unit * power
        power *= 10


def stacked(
    label: str,
    categories: Sequence[str],
    series: Mapping[str, Sequence[int]],
    *,
    width: int = 720,
    height: int = 240,
    colours: Mapping[str, str] | None = None,
) -> Chart:
    """A stacked bar per category (e.g. a day), a segment per series (e.g. a source), each
    series' values in category order; ``colours`` by series name (default: :func:`colours_for`
    the series)."""
    colours = {**colours_for(list(series)), **(colours or {})}
    totals = [sum(values[i] for values in series.values()) for i in range(len(categories))]
    step = _step(max(totals, default=0))
    top = max(step, -(-max(totals, default=0) // step) * step)
    plot_w, plot_h = width - _LEFT - 8, height - _TOP - _BOTTOM
    slot = plot_w / max(1, len(categories))
    bar_w = max(2.0, slot * 0.7)
    bars: list[Bar] = []
    ticks: list[Tick] = []
    for n, category in enumerate(categories):
        x = _LEFT + n * slot + (slot - bar_w) / 2
        y = float(_TOP + plot_h)
        for name, values in series.items():
            value = values[n]
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            bars.append(Bar(x, y, bar_w, h, colours[name], f"{category}: {name} {value:,}"))
        every = max(1, len(categories) // 10)  # at most about ten labels
        if n % every == 0:
            ticks.append(Tick(x + bar_w / 2, height - _BOTTOM + 16, category[5:] or category))
    for value in range(0, top + 1, step):
        line = _TOP + plot_h - plot_h * value / top
        ticks.append(Tick(_LEFT - 6, line + 4, f"{value:,}", width - 8, line, "end"))
    return Chart(
        width,
        height,
        tuple(bars),
        tuple(ticks),
        tuple((colours[name], name) for name in series),
        label,
    )


def hbars(
    label: str,
    rows: Sequence[tuple[str, Mapping[str, int]]],
    *,
    width: int = 720,
    row_height: int = 22,
    label_width: int = 260,
    colours: Mapping[str, str] | None = None,
) -> Chart:
    """A horizontal bar per row (its name, and its value per series, stacked left to right):
    top observables (one series per source) or observables held per source (per kind)."""
    names: dict[str, None] = {}
    for _row, parts in rows:
        names.update(dict.fromkeys(parts))
    colours = {**colours_for(list(names)), **(colours or {})}
    totals = [sum(parts.values()) for _row, parts in rows]
    top = max(totals, default=0) or 1
    plot_w = width - label_width - 70
    bars: list[Bar] = []
    ticks: list[Tick] = []
    for n, (row, parts) in enumerate(rows):
        y = 4 + n * row_height
        x = float(label_width)
        shown = row if len(row) <= 40 else row[:39] + "…"
        ticks.append(Tick(label_width - 8, y + row_height * 0.65, shown, anchor="end"))
        for name, value in parts.items():
            if value <= 0:
                continue
            w = max(1.0, plot_w * value / top)
            bars.append(Bar(x, y + 2, w, row_height - 6, colours[name], f"{row}: {name} {value:,}"))
            x += w
        ticks.append(Tick(x + 6, y + row_height * 0.65, f"{totals[n]:,}", anchor="start"))
    height = 8 + max(1, len(rows)) * row_height
    return Chart(
        width,
        height,
        tuple(bars),
        tuple(ticks),
        tuple((colours[name], name) for name in names),
        label,
    )
