"""matplotlib charts: one run's (run), the preset comparison's (sizing)."""

from __future__ import annotations

from perflib.plots.run import (
    plot_comparison,
    plot_cpu,
    plot_latency_distribution,
    plot_latency_over_time,
    plot_memory,
    plot_run,
    plot_steps,
    plot_throughput,
    plot_trends,
)
from perflib.plots.sizing import (
    COST_COLOR,
    LIMIT_COLOR,
    P95_COLOR,
    PEAK_COLOR,
    REC_COLOR,
    plot_preset_comparison,
)

__all__ = [
    "COST_COLOR",
    "LIMIT_COLOR",
    "P95_COLOR",
    "PEAK_COLOR",
    "REC_COLOR",
    "plot_comparison",
    "plot_cpu",
    "plot_latency_distribution",
    "plot_latency_over_time",
    "plot_memory",
    "plot_preset_comparison",
    "plot_run",
    "plot_steps",
    "plot_throughput",
    "plot_trends",
]
