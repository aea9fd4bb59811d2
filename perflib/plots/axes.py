"""Axis helpers every chart shares: labelled log ticks, a y range that does not magnify noise.

Why: matplotlib's log axis labels only whole decades, so a latency spread of 4–5 s (the
smoke run against the emulated upstreams) gets an axis with no number on it; and autoscaling
a series that moves 124→131 MB stretches 5 % of noise across the full height.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np
from matplotlib.ticker import FuncFormatter, Locator, MaxNLocator, NullFormatter

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Mantissas tried in turn, coarse to fine, until a span gets at least three labelled ticks.
_MANTISSAS: tuple[tuple[float, ...], ...] = (
    (1.0,),
    (1.0, 2.0, 5.0),
    (1.0, 2.0, 3.0, 5.0, 7.0),
    (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0),
)


def log_ticks(lo: float, hi: float, *, max_ticks: int = 8) -> list[float]:
    """Round values in ``[lo, hi]`` for a log axis: decades when the span has three, else
    1-2-5 steps, else finer mantissas, else round linear steps; thinned to ``max_ticks``."""
    if not (lo > 0 and hi >= lo and math.isfinite(hi)):
        return []
    e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks: list[float] = []
    for subs in _MANTISSAS:
        ticks = [
            round(m * 10.0**e, 12)
            for e in range(e0, e1 + 1)
            for m in subs
            if lo <= m * 10.0**e <= hi * (1 + 1e-9)
        ]
        if len(ticks) >= 3:
            break
    if len(ticks) < 3:  # narrower than the finest mantissas: round linear steps inside it
        inside = MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
        ticks = [float(t) for t in inside if lo <= t <= hi]
    step = math.ceil(len(ticks) / max_ticks)
    return ticks[::step]


class RoundLogLocator(Locator):
    """:func:`log_ticks` of the axis' view, computed at draw time (so later autoscaling,
    a shared axis or a zoom never leaves stale ticks)."""

    def __call__(self) -> list[float]:
        assert self.axis is not None
        lo, hi = sorted(self.axis.get_view_interval())
        return self.tick_values(lo, hi)

    def tick_values(self, vmin: float, vmax: float) -> list[float]:
        lo, hi = sorted((vmin, vmax))
        return log_ticks(lo, hi)


def label_log_axis(ax: Axes, which: Literal["x", "y"] = "x") -> None:
    """Put labelled round ticks on a log-scaled axis of ``ax``."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(RoundLogLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,g}"))
    axis.set_minor_formatter(NullFormatter())


def y_from_zero(ax: Axes, *, min_span: float = 0.0, headroom: float = 0.08) -> None:
    """Start the y axis at zero, with ``headroom`` above the highest value (and a span of at
    least ``min_span``), so a small change looks small: a line's height is then its share
    of the whole value, and no point sits on the frame."""
    top = float(ax.dataLim.y1) if ax.has_data() and np.isfinite(ax.dataLim.y1) else 0.0
    top = max(top * (1 + headroom), min_span)
    ax.set_ylim(0, top if top > 0 else 1.0)
