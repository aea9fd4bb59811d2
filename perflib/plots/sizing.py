"""The sizing chart: monthly cost per preset with its memory headroom, recommendation marked.

Kept apart from ``perflib.plots`` (analysis charts) so the two areas evolve independently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from perflib.sizing import PresetComparison

COST_COLOR = "#8fb3d9"
REC_COLOR = "#2e7d32"
PEAK_COLOR = "#c62828"
P95_COLOR = "#ef6c00"
LIMIT_COLOR = "#37474f"


def plot_preset_comparison(
    comparison: PresetComparison, ax: Axes | None = None, *, title: str | None = None
) -> Figure:
    """Bars: $/30 d per preset (left axis). Markers on the right axis: memory limit, measured
    peak and p95, with the peak's share of the limit and the OOM kills written above each bar.
    The recommended preset is outlined (and added as a hatched bar when no run used it)."""
    import numpy as np

    from perflib.cost import monthly_cost
    from perflib.fly.presets import parse_preset

    table = comparison.table.sort_values("memory_limit_mb").reset_index(drop=True)
    rec = comparison.recommendation
    rows: list[dict[str, Any]] = table.to_dict("records")
    if rec.recommended_preset and rec.recommended_preset not in set(table["preset"]):
        p = parse_preset(rec.recommended_preset)
        rows.append(
            {
                "preset": p.name,
                "memory_limit_mb": float(p.memory_mb),
                "monthly_cost_usd": monthly_cost(
                    p, 1, comparison.region, price_set=comparison.price_set
                ),
                "peak_memory_mb": None,
                "p95_memory_mb": None,
                "oom_kills": None,
                "not_run": True,
            }
        )
        rows.sort(key=lambda r: r["memory_limit_mb"])
    if ax is None:  # the object API, as perflib.plots: no pyplot state to close afterwards
        fig = Figure(figsize=(max(7.0, 2.2 * len(rows)), 5.0))
        ax = fig.subplots()
    else:
        fig = ax.get_figure(root=True)
    x = np.arange(len(rows))
    costs = [float(r["monthly_cost_usd"]) for r in rows]
    is_rec = [r["preset"] == rec.recommended_preset for r in rows]
    bars = ax.bar(
        x,
        costs,
        width=0.55,
        color=[REC_COLOR if r else COST_COLOR for r in is_rec],
        edgecolor=[REC_COLOR if r else "none" for r in is_rec],
        linewidth=2,
        hatch=None,
        label="$ per 30 days",
        zorder=2,
    )
    for bar, r in zip(bars, rows, strict=True):
        if r.get("not_run"):
            bar.set_hatch("//")
            bar.set_alpha(0.6)
    for xi, c in zip(x, costs, strict=True):
        ax.text(
            xi,
            c / 2,
            f"${c:.2f}",
            ha="center",
            va="center",
            fontsize=9,
            color="black",
            fontweight="bold",
            zorder=5,
        )
    ax.set_xticks(x, [r["preset"].replace(":", "\n") for r in rows])
    ax.set_ylabel(f"$ per 30 days ({comparison.region}, prices {comparison.price_set})")
    ax.set_ylim(0, max(costs) * 1.15)

    ax2 = ax.twinx()
    lim = [float(r["memory_limit_mb"]) for r in rows]
    ax2.scatter(x, lim, marker="_", s=900, color=LIMIT_COLOR, label="memory limit", zorder=3)
    peak = [np.nan if r.get("peak_memory_mb") is None else r["peak_memory_mb"] for r in rows]
    p95 = [np.nan if r.get("p95_memory_mb") is None else r["p95_memory_mb"] for r in rows]
    ax2.scatter(x, peak, marker="v", color=PEAK_COLOR, label="peak memory", zorder=4)
    ax2.scatter(x, p95, marker="o", color=P95_COLOR, label="p95 memory", zorder=4)
    if rec.required_memory_mb == rec.required_memory_mb:  # not NaN
        ax2.axhline(
            rec.required_memory_mb,
            color=REC_COLOR,
            ls="--",
            lw=1,
            label=f"required = peak × 1.3 ({rec.required_memory_mb:.0f} MB)",
        )
    for xi, r, pk, lm in zip(x, rows, peak, lim, strict=True):
        if r.get("not_run"):
            text = "not run"
        else:
            text = f"peak {pk / lm * 100:.0f}% of limit"
            if r.get("oom_kills"):
                text += f"\n{int(r['oom_kills'])} OOM kill(s)"
        ax2.annotate(
            text,
            (xi, lm),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 6),
            textcoords="offset points",
            color=LIMIT_COLOR,
        )
    ax2.set_ylabel("memory (MB = MiB)")
    ax2.set_ylim(0, max(lim) * 1.25)
    from matplotlib.patches import Patch

    h1 = [Patch(color=COST_COLOR), Patch(facecolor=REC_COLOR, edgecolor=REC_COLOR)]
    l1 = ["$ per 30 days", "recommended"]
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(
        h1 + h2,
        l1 + l2,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    ax.set_title(
        title
        or f"Cost and memory headroom per preset\nrecommended: {rec.recommended_preset} (outlined)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig
