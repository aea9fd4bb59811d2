"""The sizing chart: monthly cost per preset beside its memory headroom, recommendation marked.

Kept apart from ``perflib.plots`` (analysis charts) so the two areas evolve independently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

if TYPE_CHECKING:
    from perflib.sizing import PresetComparison

COST_COLOR = "#8fb3d9"
REC_COLOR = "#2e7d32"
PEAK_COLOR = "#c62828"
P95_COLOR = "#ef6c00"
LIMIT_COLOR = "#37474f"


def _rows(comparison: PresetComparison) -> list[dict[str, Any]]:
    """The compared presets by memory, plus the recommended size when no run used it."""
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
    return rows


def plot_preset_comparison(comparison: PresetComparison, *, title: str | None = None) -> Figure:
    """Two panels sharing the presets, one unit each: $/30 d per preset (left) and memory
    (right: limit, measured peak and p95, the required size, the peak's share of the limit
    and the OOM kills). Never twin axes: a "171 MB" marker beside a $ axis reads as "$1".
    The recommended preset is outlined; a size the rules suggest but no run used is added
    as a hatched bar marked "not run", never titled as the recommendation."""
    import numpy as np
    from matplotlib.patches import Patch

    rows = _rows(comparison)
    rec = comparison.recommendation
    fig = Figure(figsize=(max(10.0, 3.6 * len(rows)), 5.2), layout="constrained")
    ax, axm = fig.subplots(1, 2)
    x = np.arange(len(rows))
    names = [r["preset"].replace(":", "\n") for r in rows]
    costs = [float(r["monthly_cost_usd"]) for r in rows]
    is_rec = [r["preset"] == rec.recommended_preset for r in rows]
    bars = ax.bar(
        x,
        costs,
        width=0.55,
        color=[REC_COLOR if r else COST_COLOR for r in is_rec],
        edgecolor=[REC_COLOR if r else "none" for r in is_rec],
        linewidth=2,
        zorder=2,
    )
    for bar, r, c in zip(bars, rows, costs, strict=True):
        if r.get("not_run"):
            bar.set_hatch("//")
            bar.set_alpha(0.6)
        ax.text(bar.get_x() + bar.get_width() / 2, c, f"${c:.2f}", ha="center", va="bottom")
    ax.set_xticks(x, names)
    ax.set_ylabel("$ per 30 days")
    ax.set_ylim(0, max(costs) * 1.18)
    ax.set_title(f"Monthly cost ({comparison.region}, prices {comparison.price_set})", fontsize=10)
    untested = any(r.get("not_run") for r in rows)
    handles = [Patch(color=COST_COLOR)]
    texts = ["tested preset"]
    if untested:  # the sizing rules' size, never run: a candidate, not the recommendation
        handles.append(Patch(facecolor=REC_COLOR, edgecolor=REC_COLOR, hatch="//", alpha=0.6))
        texts.append("sizing rules' size, not run (worth testing next)")
    else:
        handles.append(Patch(facecolor=REC_COLOR, edgecolor=REC_COLOR))
        texts.append("recommended")
    ax.legend(handles, texts, loc="upper left", fontsize=8)

    lim = [float(r["memory_limit_mb"]) for r in rows]
    peak = [np.nan if r.get("peak_memory_mb") is None else r["peak_memory_mb"] for r in rows]
    p95 = [np.nan if r.get("p95_memory_mb") is None else r["p95_memory_mb"] for r in rows]
    axm.bar(x, lim, width=0.55, color="none", edgecolor=LIMIT_COLOR, lw=1.5, label="memory limit")
    # side by side: a peak of 130 MB and a p95 of 125 MB would hide one another
    axm.scatter(x - 0.1, peak, marker="v", s=60, color=PEAK_COLOR, label="peak memory", zorder=4)
    axm.scatter(x + 0.1, p95, marker="o", s=40, color=P95_COLOR, label="p95 memory", zorder=4)
    if rec.required_memory_mb == rec.required_memory_mb:  # not NaN
        axm.axhline(
            rec.required_memory_mb,
            color=REC_COLOR,
            ls="--",
            lw=1,
            label=f"required memory {rec.required_memory_mb:.0f} MB",
        )
    for xi, r, pk, lm in zip(x, rows, peak, lim, strict=True):
        if r.get("not_run"):
            text = "not run"
        else:
            text = f"peak {pk / lm * 100:.0f}% of limit"
            if r.get("oom_kills"):
                text += f"\n{int(r['oom_kills'])} OOM kill(s)"
        axm.annotate(
            text,
            (xi, lm),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 4),
            textcoords="offset points",
            color=LIMIT_COLOR,
        )
    axm.set_xticks(x, names)
    axm.set_ylabel("memory (MB = MiB)")
    axm.set_ylim(0, max(lim) * 1.22)
    axm.set_title("Memory limit and measured use", fontsize=10)
    axm.legend(loc="upper left", fontsize=8)
    headline = (
        f"{rec.recommended_preset} suggested by the sizing rules, not run yet"
        if untested
        else f"recommended: {rec.recommended_preset}"
    )
    fig.suptitle(title or f"Cost and memory headroom per preset — {headline}", fontsize=11)
    return fig
