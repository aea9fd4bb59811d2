"""Charts of one run or a comparison: matplotlib Figures, never ``plt.show()``.

Every function returns a :class:`matplotlib.figure.Figure` built with the object API (no
pyplot state), so notebooks display it, reports save it, and headless CI renders it (the
Agg backend is selected when no display is available). Each chart has a title, axis labels
with units and a legend; the x axis is "seconds since k6 started" throughout.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

if not os.environ.get("DISPLAY") and "MPLBACKEND" not in os.environ:
    matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from perflib.analysis import ALL, GUIDE_MEMORY_THRESHOLDS_MB
from perflib.analysis.slo import default_slos
from perflib.plots.axes import label_log_axis, y_from_zero

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from perflib.analysis import Comparison, RunAnalysis, StepAttribution, Throttling

_STAGE_COLOURS = ("#e8f0fe", "#fef7e0", "#fce8e6", "#e6f4ea", "#f3e8fd")


def _threshold_style() -> dict[float, tuple[str, str]]:
    """Colour and label of each memory line the guide names, from the SLO file (its numbers
    are not retyped here): the under-load target, the peak target, the sustained alert."""
    slos = default_slos()
    style: dict[float, tuple[str, str]] = {}
    for sid, colour, what in (
        ("memory_load", "#f9ab00", "load target"),
        ("memory_peak", "#e37400", "peak target"),
    ):
        if any(s.id == sid for s in slos.slo):
            level = float(slos.resolved_target(slos.get(sid)))
            style[level] = (colour, f"{what} {level:g} MB")
    alert = slos.sustained_threshold("memory_sustained")
    style[alert] = ("#d93025", f"alert {alert:g} MB (sustained)")
    return style


def _figure(
    nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] = (10, 4.5), **kw: Any
) -> tuple[Figure, Any]:
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _shade_stages(ax: Axes, stages: pd.DataFrame | None) -> None:
    """Shade each load-profile stage and name it at the foot of the axes."""
    if stages is None or len(stages) == 0:
        return
    span = max(float(stages["end_s"].max() - stages["start_s"].min()), 1e-9)
    for i, st in enumerate(stages.itertuples()):
        ax.axvspan(
            st.start_s,
            st.end_s,
            color=_STAGE_COLOURS[i % len(_STAGE_COLOURS)],
            alpha=0.6,
            zorder=0,
            lw=0,
        )
        # names at the foot of the plot area, clear of the title and the legend; upright
        # when the stage is too narrow for its name (a stress profile's short ramps)
        narrow = (st.end_s - st.start_s) / span < 0.0075 * len(str(st.stage)) + 0.01
        ax.text(
            (st.start_s + st.end_s) / 2,
            0.01,
            st.stage,
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            rotation=90 if narrow else 0,
            fontsize=7 if narrow else 8,
            color="#5f6368",
        )


def _vus_axis(ax: Axes, vus: pd.DataFrame | None) -> tuple[list[Any], list[str]]:
    """Draw the VUs on a second y axis; the legend handles and labels of both axes."""
    handles, labels = ax.get_legend_handles_labels()
    if vus is not None and len(vus):
        ax2 = ax.twinx()
        ax2.step(vus["t_s"], vus["vus"], where="post", color="#5f6368", alpha=0.7, label="VUs")
        ax2.set_ylabel("virtual users (VUs)")
        ax2.set_ylim(bottom=0)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    return handles, labels


def _no_data(ax: Axes, what: str) -> None:
    ax.text(
        0.5, 0.5, f"no {what}", transform=ax.transAxes, ha="center", va="center", color="#80868b"
    )


def plot_latency_over_time(
    lot: pd.DataFrame,
    *,
    vus: pd.DataFrame | None = None,
    stages: pd.DataFrame | None = None,
    endpoint: str | None = None,
    percentiles: Sequence[str] = ("p50", "p95", "p99"),
    title: str | None = None,
) -> Figure:
    """Latency percentiles per bucket (from :func:`perflib.analysis.latency_over_time`) with
    the k6 VUs on a second axis and the load-profile stages shaded: one panel per endpoint
    (or just ``endpoint``). Never a percentile of all endpoints pooled: a mix of ``/health``
    and enrichment zig-zags with the mix, not with the service's speed."""
    if endpoint is not None:
        names = [endpoint]
    else:
        names = sorted(set(lot["name"].astype(str)) - {ALL}) if len(lot) else []
        if not names and len(lot):
            names = [ALL]  # only a pooled series was computed
    rows = max(len(names), 1)
    fig, axes = _figure(rows, 1, size=(10, 1.0 + 3.2 * rows), sharex=True)
    width = _bucket_width(lot) if len(lot) else 1.0
    for i, name in enumerate(names or [None]):
        ax = axes[i, 0]
        _shade_stages(ax, stages)
        sel = lot[lot["name"] == name] if name is not None else lot.iloc[0:0]
        for col, style in zip(percentiles, ("-", "--", ":", "-."), strict=False):
            if len(sel) and col in sel:
                ax.plot(sel["t_s"] + width / 2, sel[col], style, marker=".", label=col)
        if not len(sel):
            _no_data(ax, "requests")
        ax.set_ylabel("http_req_duration (ms)")
        y_from_zero(ax)
        handles, labels = _vus_axis(ax, vus)
        if handles:
            ax.legend(handles, labels, loc="upper left", fontsize=8)
        ax.set_title("all endpoints" if name == ALL else (name or ""), fontsize=10)
    axes[rows - 1, 0].set_xlabel("time since k6 start (s)")
    fig.suptitle(title or "Latency percentiles per time bucket, per endpoint")
    return fig


def plot_throughput(
    tp: pd.DataFrame,
    *,
    vus: pd.DataFrame | None = None,
    stages: pd.DataFrame | None = None,
    title: str | None = None,
) -> Figure:
    """Requests per second per endpoint (from :func:`perflib.analysis.throughput`) and the
    error rate of all requests, with the VUs and stages."""
    fig, axes = _figure(2, 1, size=(10, 6), sharex=True, height_ratios=(2, 1))
    ax, axe = axes[0, 0], axes[1, 0]
    _shade_stages(ax, stages)
    if len(tp):
        allrows = tp[tp["name"] == ALL]
        for name in [ALL, *sorted(set(tp["name"]) - {ALL})]:
            sel = tp[tp["name"] == name]
            ax.plot(
                sel["t_s"] + _bucket_width(tp) / 2,
                sel["req_per_s"],
                marker=".",
                lw=2 if name == ALL else 1,
                label="all endpoints" if name == ALL else name,
            )
        axe.bar(
            allrows["t_s"],
            allrows["error_rate_pct"],
            width=0.9 * _bucket_width(tp),
            align="edge",
            color="#d93025",
            alpha=0.7,
            label="failed requests",
        )
        axe.legend(loc="upper left", fontsize=8)
        if not (allrows["error_rate_pct"].fillna(0) > 0).any():
            _no_data(axe, "failed requests")
    else:
        _no_data(ax, "requests")
        _no_data(axe, "requests")
    ax.set_ylabel("throughput (req/s)")
    ax.set_ylim(bottom=0)
    handles, labels = _vus_axis(ax, vus)
    if handles:
        ax.legend(handles, labels, loc="upper left", fontsize=8)
    ax.set_title(title or "Throughput and errors per time bucket")
    axe.set_ylabel("error rate (%)")
    axe.set_xlabel("time since k6 start (s)")
    y_from_zero(axe, min_span=1.0)  # at least 0–1 %: a 0.02 % blip is not a wall of red
    return fig


def _bucket_width(rows: pd.DataFrame) -> float:
    """The bucket width of a per-bucket frame (its smallest step between bucket starts)."""
    steps = np.diff(np.sort(rows["t_s"].unique()))
    return float(steps.min()) if steps.size else 1.0


def plot_latency_distribution(
    requests: pd.DataFrame,
    *,
    endpoints: Sequence[str] | None = None,
    bins: int = 50,
    title: str | None = None,
) -> Figure:
    """Per endpoint: a histogram of request durations (log-spaced bins) and their ECDF with
    p50/p95/p99 marked (k6's linear-interpolation percentiles)."""
    from perflib.stats import percentile

    names = (
        list(endpoints)
        if endpoints is not None
        else (sorted(requests["name"].astype("string").dropna().unique()) if len(requests) else [])
    )
    rows = max(len(names), 1)
    fig, axes = _figure(rows, 2, size=(11, 3.2 * rows))
    if not names:
        for ax in axes[0]:
            _no_data(ax, "requests")
            ax.set_xlabel("http_req_duration (ms)")
        axes[0, 0].set_ylabel("requests")
        axes[0, 1].set_ylabel("fraction of requests ≤ x")
    for i, name in enumerate(names):
        v = requests.loc[requests["name"].astype("string") == name, "duration_ms"].to_numpy(
            dtype="float64"
        )
        v = v[~np.isnan(v)]
        hist, ecdf = axes[i, 0], axes[i, 1]
        if v.size:
            lo, hi = max(v.min(), 1e-3), max(v.max(), 1e-3 * 1.01)
            # no more bins than the data can fill (a smoke run has 4 requests per endpoint)
            nbins = int(min(bins, max(5, np.ceil(2 * np.sqrt(v.size)))))
            edges = np.geomspace(lo, hi * 1.0001, nbins + 1) if hi > lo else nbins
            hist.hist(v, bins=edges, color="#1a73e8", alpha=0.8)
            hist.set_xscale("log")
            xs = np.sort(v)
            ecdf.step(
                xs, np.arange(1, xs.size + 1) / xs.size, where="post", color="#1a73e8", label="ECDF"
            )
            ecdf.set_xscale("log")
            ecdf.set_ylim(0, 1.02)
            for p, c in ((50, "#188038"), (95, "#e37400"), (99, "#d93025")):
                q = percentile(v, p)
                for ax in (hist, ecdf):
                    ax.axvline(q, color=c, ls="--", lw=1, label=f"p{p} = {q:,.1f} ms")
            for ax in (hist, ecdf):
                label_log_axis(ax, "x")
            ecdf.legend(fontsize=8, loc="best")  # one legend, where the curve leaves room
        else:
            _no_data(hist, "requests")
        hist.set_title(f"{name}: histogram (n={v.size:,})")
        ecdf.set_title(f"{name}: ECDF")
        hist.set_xlabel("http_req_duration (ms, log scale)")
        ecdf.set_xlabel("http_req_duration (ms, log scale)")
        hist.set_ylabel("requests")
        ecdf.set_ylabel("fraction of requests ≤ x")
    fig.suptitle(title or "Latency distribution per endpoint")
    return fig


def plot_memory(
    timeline: pd.DataFrame,
    *,
    limit_mb: float | None = None,
    thresholds_mb: Sequence[float] = GUIDE_MEMORY_THRESHOLDS_MB,
    events: pd.DataFrame | None = None,
    stages: pd.DataFrame | None = None,
    title: str | None = None,
) -> Figure:
    """Memory over time with the VM limit, the guide's thresholds and OOM/restart events.

    ``timeline``: :attr:`MemorySummary.timeline` (``t_s``, ``memory_used_mb``).
    """
    fig, axes = _figure()
    ax = axes[0, 0]
    _shade_stages(ax, stages)
    if len(timeline) and timeline["memory_used_mb"].notna().any():
        ax.plot(
            timeline["t_s"],
            timeline["memory_used_mb"],
            color="#1a73e8",
            lw=1.5,
            label="memory used",
        )
    else:
        _no_data(ax, "memory samples")
    style = _threshold_style()
    # a guide line at or above the VM's limit is a level this VM never reaches: not drawn
    for lvl in [t for t in thresholds_mb if not limit_mb or t < limit_mb]:
        colour, label = style.get(float(lvl), ("#9aa0a6", f"{lvl:g} MB"))
        ax.axhline(lvl, color=colour, ls="--", lw=1, label=label)
    if limit_mb:
        ax.axhline(limit_mb, color="black", lw=1.5, label=f"VM limit {limit_mb:g} MB")
    if events is not None and len(events):
        ev = events[events["t_s"].notna()] if "t_s" in events else events.iloc[0:0]
        for kind, colour in (("oom_killed", "#d93025"), ("restart", "#5f6368")):
            sel = ev[ev["type"] == kind]
            for j, t in enumerate(sel["t_s"]):
                ax.axvline(
                    t,
                    color=colour,
                    lw=1.2,
                    ls=":" if kind == "restart" else "-",
                    label=("OOM kill" if kind == "oom_killed" else "restart") if j == 0 else None,
                )
    ax.set_xlabel("time since k6 start (s)")
    ax.set_ylabel("memory (MB = MiB)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "Memory over time")
    return fig


def plot_cpu(
    timeline: pd.DataFrame,
    *,
    threshold_pct: float = 70.0,
    average_target_pct: float = 50.0,
    stages: pd.DataFrame | None = None,
    title: str | None = None,
    throttling: Throttling | None = None,
) -> Figure:
    """CPU (% of one vCPU) over time with the preset's guaranteed share (6.25 % per shared
    vCPU) and the guide's 50 % average / 70 % dedicated-CPU lines (drawn when the scale
    reaches them, else named in the legend); below, the burst balance replayed over the run
    (:attr:`RunAnalysis.throttling`) with the throttled stretches shaded — or "no throttling".
    ``timeline``: :attr:`CpuSummary.timeline`."""
    fig, axes = _figure(2, 1, size=(10, 6), sharex=True)
    ax, axb = axes[0, 0], axes[1, 0]
    _shade_stages(ax, stages)
    cpu = timeline["cpu_pct"] if "cpu_pct" in timeline else pd.Series(dtype="float64")
    has_cpu = bool(len(timeline) and cpu.notna().any())
    if has_cpu:
        ax.plot(timeline["t_s"], cpu, color="#1a73e8", lw=1.2, label="CPU")
    else:
        _no_data(ax, "CPU samples")
    base = throttling.baseline_pct if throttling is not None else None
    if throttling is not None and throttling.applies and base is not None:
        ax.axhline(
            base, color="#188038", lw=1.5, label=f"shared baseline {base:g} % ({throttling.preset})"
        )
    if throttling is not None and throttling.mean_load_pct is not None:
        ax.axhline(
            throttling.mean_load_pct,
            color="#1a73e8",
            ls=":",
            lw=1,
            label=f"mean under load {throttling.mean_load_pct:.1f} %",
        )
    top = max(float(cpu.max()) if has_cpu else 0.0, base or 0.0, 10.0) * 1.25
    guides = [
        (average_target_pct, "#f9ab00", f"average target {average_target_pct:g} %"),
        (threshold_pct, "#d93025", f"sustained > {threshold_pct:g} % → dedicated CPU"),
    ]
    off = []
    for level, colour, label in guides:
        if level <= top:
            ax.axhline(level, color=colour, ls="--", lw=1, label=label)
        else:
            off.append(f"{level:g} %")
    ax.set_ylim(0, top)
    ax.set_ylabel("CPU (% of one vCPU)")
    handles, labels = ax.get_legend_handles_labels()
    if off:  # the guide's lines far above the load: said, not drawn off-scale
        handles.append(Line2D([], [], color="none"))
        labels.append(f"guide lines at {' and '.join(off)}: above this scale")
    ax.legend(handles, labels, loc="upper left", fontsize=8)
    ax.set_title(title or "CPU and shared-CPU burst balance over time")
    _plot_balance(axb, timeline, throttling)
    axb.set_xlabel("time since k6 start (s)")
    return fig


def _step_label(step: int, what: object) -> str:
    """``Step 2: Using Diretrix to find CPF`` (the service's own words), shortened to fit."""
    text = str(what).strip() if isinstance(what, str) and what.strip() else ""
    if len(text) > 34:
        text = text[:33].rstrip() + "…"
    return f"Step {step}: {text}" if text else f"Step {step}"


def _plot_balance(ax: Axes, timeline: pd.DataFrame, t: Throttling | None) -> None:
    """The burst balance (CPU-seconds) with throttled stretches shaded; says "no
    throttling" when there was none, never an empty panel."""
    thr = (
        timeline["cpu_throttled_pct"]
        if "cpu_throttled_pct" in timeline
        else pd.Series(dtype="float64")
    )
    if t is not None and t.applies and len(t.balance):
        ax.plot(t.balance["t_s"], t.balance["balance_s"], color="#188038", lw=1.2,
                label=f"burst balance (replayed from the CPU samples, {t.initial_balance_s:g} s "
                "at the first)")  # fmt: skip
        ax.set_ylabel("burst balance (CPU-s)")
        ax.set_ylim(bottom=0)
        if t.exhausted_at_t_s is not None:
            ax.axvline(t.exhausted_at_t_s, color="#d93025", ls=":", lw=1,
                       label=f"balance exhausted, t = {t.exhausted_at_t_s:.0f} s")  # fmt: skip
    else:
        ax.set_yticks([])
        ax.set_ylabel("throttled stretches")
    shaded = False
    if len(thr) and thr.notna().any():
        on = (thr.fillna(0) > 0).to_numpy()
        ts = timeline["t_s"].to_numpy(dtype="float64")
        for i in np.flatnonzero(on):
            nxt = ts[i + 1] if i + 1 < len(ts) else ts[i] + 1.0
            ax.axvspan(ts[i], nxt, color="#d93025", alpha=0.3, lw=0,
                       label=None if shaded else "throttled")  # fmt: skip
            shaded = True
    if not shaded:
        if t is not None and not t.applies:
            msg = f"no throttling ({t.cpu_kind} CPU: no burst balance)"
        elif len(thr) and thr.notna().any():
            msg = "no throttling"
        elif t is not None and t.applies:
            msg = "no throttling measured (balance replayed from CPU)"
        else:
            msg = "no throttling data"
        ax.text(0.5, 0.5, msg, transform=ax.transAxes, ha="center", va="center",
                color="#5f6368", fontsize=11)  # fmt: skip
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8)


def plot_steps(attribution: StepAttribution, *, title: str | None = None) -> Figure:
    """Per-step p50/p95/p99 (bars, log scale) and each step's share of the slow requests'
    excess time (:func:`perflib.analysis.step_attribution`). Every step is named on the
    shared y axis and the legends sit below the panels, so no bar hides behind one."""
    per = attribution.per_step
    rows = max(len(per), 1)
    fig, axes = _figure(1, 2, size=(13, 2.2 + 0.55 * rows), sharey=True)
    ax, axs = axes[0, 0], axes[0, 1]
    below = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.14), "fontsize": 8}
    if len(per):
        whats = per["what"] if "what" in per else [None] * len(per)
        labels = [_step_label(int(s), w) for s, w in zip(per["step"], whats, strict=True)]
        y = np.arange(len(per))
        for k, (col, colour) in enumerate(
            (("p50", "#188038"), ("p95", "#e37400"), ("p99", "#d93025"))
        ):
            ax.barh(y + (k - 1) * 0.27, per[col], height=0.27, color=colour, label=col)
        ax.set_xscale("log")
        label_log_axis(ax, "x")
        # a 0 ms percentile has no bar on a log axis: say so instead of leaving a gap
        for yi, (_, r) in zip(y, per.iterrows(), strict=True):
            zero = [c for c in ("p50", "p95", "p99") if not r[c] > 0]
            if zero:
                ax.annotate(
                    f"{'/'.join(zero)} = 0 ms",
                    (0, yi),
                    xycoords=("axes fraction", "data"),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8,
                    color="#5f6368",
                )
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        axs.barh(
            y - 0.2,
            per["share_tail_pct"],
            height=0.4,
            color="#9aa0a6",
            label="share of the slow requests' time",
        )
        colours = ["#d93025" if s == attribution.dominant_step else "#1a73e8" for s in per["step"]]
        axs.barh(
            y + 0.2,
            per["excess_tail_pct"],
            height=0.4,
            color=colours,
            label="share of their excess over each step's median",
        )
        axs.set_xlim(0, 100)
        ax.legend(ncol=3, **below)
        axs.legend(ncol=1, **below)
    else:
        _no_data(ax, "Step timings")
        _no_data(axs, "Step timings")
    ax.set_xlabel("step duration (ms, log scale)")
    ax.set_ylabel("service step")
    ax.set_title("Per-step latency")
    axs.set_xlabel("share in the requests at or above the p95 of total time (%)")
    axs.set_ylabel("service step")
    axs.set_title("What makes the slowest requests slow (red: the dominant step)")
    fig.suptitle(title or attribution.advice, fontsize=10)
    return fig


def plot_comparison(
    cmp: Comparison, *, endpoint: str | None = None, title: str | None = None
) -> Figure:
    """Two runs/groups: overlaid ECDFs, one panel per endpoint (or just ``endpoint``; never
    pooled over endpoints of different speed by default), and the Δp95 with its CI per
    endpoint beside them."""
    if endpoint is not None:
        names = [endpoint]
    else:
        names = sorted((set(cmp.samples_a) | set(cmp.samples_b)) - {ALL}) or [ALL]
    rows = len(names)
    fig = Figure(figsize=(12, max(4.5, 1.2 + 3.0 * rows)), layout="constrained")
    grid = fig.add_gridspec(rows, 2)
    ecdfs = [fig.add_subplot(grid[i, 0]) for i in range(rows)]
    axd = fig.add_subplot(grid[:, 1])
    a_label, b_label = cmp.labels
    pc = f"p{cmp.percentile:g}"
    for ax, name in zip(ecdfs, names, strict=True):
        for data, label, colour in (
            (cmp.samples_a.get(name), a_label, "#1a73e8"),
            (cmp.samples_b.get(name), b_label, "#e37400"),
        ):
            if data is not None and data.size:
                xs = np.sort(data)
                ax.step(
                    xs,
                    np.arange(1, xs.size + 1) / xs.size,
                    where="post",
                    color=colour,
                    label=f"{label} (n={xs.size:,})",
                )
        if ax.get_legend_handles_labels()[0]:
            ax.axhline(cmp.percentile / 100, color="#5f6368", ls=":", lw=1, label=pc)
            ax.set_xscale("log")
            label_log_axis(ax, "x")
            ax.set_ylim(0, 1.02)
            ax.legend(loc="best", fontsize=8)
        else:
            _no_data(ax, "requests")
        ax.set_xlabel("http_req_duration (ms, log scale)")
        ax.set_ylabel("fraction of requests ≤ x")
        ax.set_title(f"ECDF: {'all endpoints' if name == ALL else name}", fontsize=10)
    lat = cmp.latency
    if len(lat):
        # relative to the baseline, so endpoints of very different speed share one axis
        base = lat[f"{pc}_a"].to_numpy(dtype="float64")
        rel = 100.0 * lat["delta_ms"].to_numpy(dtype="float64") / base
        lo = 100.0 * lat["ci_low"].to_numpy(dtype="float64") / base
        hi = 100.0 * lat["ci_high"].to_numpy(dtype="float64") / base
        y = np.arange(len(lat))
        band = 100.0 * (cmp.factor - 1.0)
        axd.axvspan(-band, band, color="#e8eaed", zorder=0, label=f"equivalence margin ±{band:g} %")
        for i, change in enumerate(lat["change"]):
            colour = {"slower": "#d93025", "faster": "#188038"}.get(change, "#5f6368")
            err = np.nan_to_num(np.abs([[rel[i] - lo[i]], [hi[i] - rel[i]]]))
            axd.errorbar(
                rel[i],
                y[i],
                xerr=err,
                fmt="o",
                color=colour,
                capsize=4,
                label=change if change not in axd.get_legend_handles_labels()[1] else None,
            )
        axd.axvline(0, color="black", lw=1)
        axd.set_yticks(y, list(lat["name"]))
        axd.invert_yaxis()
        axd.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8)
    else:
        _no_data(axd, "common endpoints")
    axd.set_xlabel(
        f"Δ{pc} = {b_label} − {a_label} (% of {a_label}),\n{cmp.confidence:.0%} confidence interval"
    )
    axd.set_ylabel("endpoint")
    axd.set_title(f"Δ{pc} per endpoint (resampling {cmp.unit})")
    fig.suptitle(title or f"{b_label} vs {a_label}")
    return fig


def plot_run(analysis: RunAnalysis) -> dict[str, Figure]:
    """Every chart of one run, by name (what a report notebook shows)."""
    a = analysis
    return {
        "latency": plot_latency_over_time(a.latency_over_time, vus=a.vus, stages=a.stages),
        "throughput": plot_throughput(a.throughput, vus=a.vus, stages=a.stages),
        "distribution": plot_latency_distribution(a.requests),
        "memory": plot_memory(
            a.memory.timeline, limit_mb=a.memory.limit_mb, events=a.memory.events, stages=a.stages
        ),
        "cpu": plot_cpu(a.cpu.timeline, stages=a.stages, throttling=a.throttling),
        "steps": plot_steps(a.step_attribution),
    }


def plot_trends(trend: pd.DataFrame, *, title: str | None = None) -> Figure:
    """p95 latency and memory peak of every run over time, one line per profile and VM, the
    runs flagged as regressions circled (``trend`` is
    :func:`perflib.store.flag_regressions` of :meth:`perflib.store.Store.runs_frame`)."""
    fig, axes = _figure(2, 1, size=(10, 6), sharex=True)
    ax1, ax2 = axes[0, 0], axes[1, 0]
    for (profile, preset), g in trend.groupby(["profile", "preset"], dropna=False):
        label = f"{profile} @ {preset}"
        ax1.plot(g["started_at"], g["p95_ms"], marker="o", label=label)
        ax2.plot(g["started_at"], g["memory_peak_mb"], marker="o", label=label)
        bad = g[g["regression"].astype(bool)]
        ax1.scatter(
            bad["started_at"], bad["p95_ms"], s=160, facecolors="none", edgecolors="#d93025", lw=2
        )
    if len(trend):
        # beside the plot, never over the latest run (the point a reader looks for)
        ax1.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        # dates and times, the date said once (runs of one afternoon share it)
        from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

        locator = AutoDateLocator()
        ax2.xaxis.set_major_locator(locator)
        fmt = ConciseDateFormatter(locator)
        fmt.formats[5] = "%H:%M:%S"  # seconds ticks as times, not a bare "30"
        ax2.xaxis.set_major_formatter(fmt)
    else:
        _no_data(ax1, "runs")
        _no_data(ax2, "runs")
    # from zero: a 124→131 MB wobble then looks like the 5 % it is, not like a trend
    y_from_zero(ax1)
    y_from_zero(ax2)
    ax1.set_ylabel("p95 latency (ms)")
    ax2.set_ylabel("memory peak (MB)")
    ax2.set_xlabel("run start (UTC)")
    ax1.set_title(title or "Runs over time (circled: regression)")
    return fig
