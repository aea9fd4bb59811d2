"""Every chart renders (Agg) with a title, labelled axes, a legend and the data it claims."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from perflib import analysis as an
from perflib import plots
from perflib.stats import percentile
from tests.analysis.test_analysis import (
    T0,
    _analysis_stub,
    _step_log,
    make_requests,
    make_samples,
    manifest,
)


def _render(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    assert data.startswith(b"\x89PNG")
    return data


def _labelled(fig: Figure) -> None:
    """Each data axes has both axis labels and a title (on itself or the figure)."""
    assert fig.axes
    for ax in fig.axes:
        assert ax.get_ylabel(), f"unlabelled y axis on {ax.get_title()!r}"
        if ax.get_xlabel() == "" and ax.get_shared_x_axes().get_siblings(ax) == [ax]:
            # a twin axes shares its host's x label
            assert any(o is not ax and o.get_xlabel() for o in fig.axes)
    assert any(ax.get_title() for ax in fig.axes) or fig.get_suptitle()


@pytest.fixture(scope="module")
def run() -> an.RunAnalysis:
    return _run()


def _run() -> an.RunAnalysis:
    req = make_requests(1500, seed=3, fail_rate=0.02)
    a = _analysis_stub(req)
    m = manifest(T0)
    a.stages = an.stage_table(m)
    a.latency_over_time = an.latency_over_time(req, origin=T0)
    pts = pd.DataFrame(
        {
            "time": [T0 + pd.Timedelta(seconds=s) for s in range(120)],
            "metric": pd.Categorical(["vus"] * 120),
            "value": np.minimum(np.arange(120) // 3, 20).astype(float),
        }
    )
    a.vus = an.vus_series(pts, origin=T0)
    mem = np.concatenate([np.full(20, 120.0), np.linspace(200, 850, 100), np.full(20, 300.0)])
    cpu = np.clip(np.linspace(5, 110, 140), 0, 100)
    s = make_samples(
        mem, t0=T0 - pd.Timedelta(seconds=20), cpu=cpu, throttled=np.where(cpu > 90, 30.0, 0.0)
    )
    events = an.resource_events(
        None,
        {
            "service.log": "2026-11-01T12:01:30Z Out of memory: Killed process 7 (python)\n"
            "2026-11-01T12:01:31Z reboot: Restarting system\n"
        },
        origin=T0,
    )
    a.memory = an.memory_summary(s, m, events=events)
    a.cpu = an.cpu_summary(s, m)
    a.steps = an.parse_step_log(_step_log(slow_step=3))
    a.step_attribution = an.step_attribution(a.steps)
    return a


def test_latency_over_time_chart_has_one_panel_per_endpoint(run: an.RunAnalysis) -> None:
    a = run
    fig = plots.plot_latency_over_time(a.latency_over_time, vus=a.vus, stages=a.stages)
    _labelled(fig)
    endpoints = sorted(set(a.latency_over_time["name"].astype(str)) - {an.ALL})
    assert len(endpoints) == 2
    panels = [ax for ax in fig.axes if ax.get_ylabel() == "http_req_duration (ms)"]
    # one panel per endpoint, never a percentile pooled over /health and enrichment
    assert [ax.get_title() for ax in panels] == endpoints
    assert "Latency" in fig.get_suptitle()
    assert "(s)" in panels[-1].get_xlabel()
    assert {ax.get_ylabel() for ax in fig.axes} == {"http_req_duration (ms)", "virtual users (VUs)"}
    for ax, name in zip(panels, endpoints, strict=True):
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == ["p50", "p95", "p99", "VUs"]
        rows = a.latency_over_time[a.latency_over_time["name"] == name]
        np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), rows["p95"])
        assert ax.get_ylim()[0] == 0  # from zero: a small change looks small
        # stages shaded and named
        assert {t.get_text() for t in ax.texts} >= {"ramp 0→10 VUs", "hold 10 VUs", "ramp 10→0 VUs"}
    _render(fig)
    one = plots.plot_latency_over_time(a.latency_over_time, endpoint="/health")
    assert [ax.get_title() for ax in one.axes] == ["/health"]
    _render(plots.plot_latency_over_time(a.latency_over_time.iloc[0:0]))


def _log_tick_labels(fig: Figure) -> list[tuple[str, list[str]]]:
    """Per log-scaled axis: the tick labels shown inside its view (after a draw)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    out = []
    for ax in fig.axes:
        for which, axis, lim in (("x", ax.xaxis, ax.get_xlim()), ("y", ax.yaxis, ax.get_ylim())):
            if axis.get_scale() != "log":
                continue
            lo, hi = sorted(lim)
            shown = [
                t.get_text()
                for t, v in zip(axis.get_majorticklabels(), axis.get_majorticklocs(), strict=True)
                if t.get_visible() and t.get_text() and lo <= v <= hi
            ]
            out.append((f"{ax.get_title()} {which}", shown))
    return out


def test_log_axes_carry_tick_labels_on_a_narrow_spread() -> None:
    # the smoke run's shape: every request 4.2–5.1 s, less than a decade, so matplotlib's
    # default log axis would label nothing
    rng = np.random.default_rng(1)
    req = make_requests(300, seed=1)
    req["duration_ms"] = rng.uniform(4200, 5100, len(req))
    figs = [plots.plot_latency_distribution(req)]
    b = req.copy()
    b["duration_ms"] = b["duration_ms"] * 1.1
    cmp = an.compare_runs(_analysis_stub(req), _analysis_stub(b), n_resamples=100)
    figs.append(plots.plot_comparison(cmp))
    found = [item for fig in figs for item in _log_tick_labels(fig)]
    assert len(found) == 6  # 2 endpoints × (histogram, ECDF) + the comparison's 2 ECDFs
    for where, shown in found:
        assert len(shown) >= 2, f"{where}: tick labels {shown}"
        assert all(float(t.replace(",", "")) > 0 for t in shown)


def test_log_ticks_are_round_values_inside_the_span() -> None:
    from perflib.plots.axes import log_ticks

    assert log_ticks(3.0, 40_000.0) == [10.0, 100.0, 1000.0, 10_000.0]
    narrow = log_ticks(4200.0, 5100.0)
    assert len(narrow) >= 2 and all(4100 <= t <= 5100 for t in narrow)
    assert log_ticks(150.0, 900.0) == [200.0, 500.0] or len(log_ticks(150.0, 900.0)) >= 3
    assert len(log_ticks(0.01, 1e9)) <= 8
    assert log_ticks(0.0, 10.0) == []


def test_throughput_chart(run: an.RunAnalysis) -> None:
    tp = an.throughput(run.requests, origin=T0)
    fig = plots.plot_throughput(tp, vus=run.vus, stages=run.stages)
    _labelled(fig)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "throughput (req/s)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "all endpoints" and "VUs" in labels
    allrows = tp[tp["name"] == an.ALL]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), allrows["req_per_s"])
    bars = fig.axes[1].patches
    np.testing.assert_allclose([b.get_height() for b in bars], allrows["error_rate_pct"])
    assert "no failed requests" not in [t.get_text() for t in fig.axes[1].texts]
    _render(fig)
    # no failures: the error panel says so instead of standing empty
    ok = an.throughput(make_requests(500, seed=4), origin=T0)
    quiet = plots.plot_throughput(ok)
    assert "no failed requests" in [t.get_text() for t in quiet.axes[1].texts]
    assert quiet.axes[1].get_ylim() == (0.0, 1.0)  # 0–1 %, not a magnified 0–0.05


def test_stage_names_stand_upright_when_their_stage_is_narrow() -> None:
    stages = pd.DataFrame(
        {
            "stage": ["ramp-2/s", "hold-2/s for a long while", "ramp-40/s"],
            "start_s": [0.0, 2.0, 98.0],
            "end_s": [2.0, 98.0, 100.0],
        }
    )
    lot = pd.DataFrame(columns=["t_s", "name", "p50", "p95", "p99"])
    fig = plots.plot_latency_over_time(lot, stages=stages)
    texts = {t.get_text(): t.get_rotation() for t in fig.axes[0].texts}
    assert texts["ramp-2/s"] == 90 and texts["ramp-40/s"] == 90
    assert texts["hold-2/s for a long while"] == 0
    _render(fig)


def test_distribution_chart(run: an.RunAnalysis) -> None:
    a = run
    fig = plots.plot_latency_distribution(a.requests)
    _labelled(fig)
    assert len(fig.axes) == 4  # 2 endpoints × (histogram, ECDF)
    texts = [
        t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()
    ]
    p95 = percentile(a.requests.loc[a.requests["name"] == "/health", "duration_ms"], 95)
    assert f"p95 = {p95:,.1f} ms" in texts
    _render(fig)
    _render(plots.plot_latency_distribution(a.requests.iloc[0:0]))


def test_memory_chart_marks_limit_thresholds_and_oom(run: an.RunAnalysis) -> None:
    a = run
    fig = plots.plot_memory(
        a.memory.timeline, limit_mb=a.memory.limit_mb, events=a.memory.events, stages=a.stages
    )
    _labelled(fig)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "VM limit 1024 MB" in labels and "OOM kill" in labels and "restart" in labels
    assert "alert 800 MB (sustained)" in labels
    assert "MB" in ax.get_ylabel()
    oom_line = [ln for ln in ax.get_lines() if ln.get_label() == "OOM kill"][0]
    assert oom_line.get_xdata()[0] == pytest.approx(90.0)
    _render(fig)


def test_memory_chart_draws_guide_lines_only_below_the_limit(run: an.RunAnalysis) -> None:
    a = run
    for limit in (512.0, 768.0, 1024.0, 2048.0):
        fig = plots.plot_memory(a.memory.timeline, limit_mb=limit)
        ax = fig.axes[0]
        levels = [
            ln.get_ydata()[0]
            for ln in ax.get_lines()
            if ln.get_label().endswith("MB") or "MB (" in ln.get_label()
        ]
        guides = [v for v in levels if v != limit]
        assert all(v < limit for v in guides), (limit, guides)
        expected = [t for t in an.GUIDE_MEMORY_THRESHOLDS_MB if t < limit]
        assert sorted(guides) == sorted(expected)
        assert limit in levels


def test_cpu_chart(run: an.RunAnalysis) -> None:
    a = run
    fig = plots.plot_cpu(a.cpu.timeline, stages=a.stages)
    _labelled(fig)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "sustained > 70 % → dedicated CPU" in labels
    _render(fig)
    empty = make_samples(np.array([]))
    _render(plots.plot_cpu(an.cpu_summary(empty, {}).timeline))


def test_cpu_chart_shows_the_shared_baseline_and_the_burst_balance() -> None:
    m = manifest(T0, vm={"preset": "shared-cpu-1x:512mb", "memory_mb": 512})
    n = 120
    quiet = make_samples(np.full(n, 200.0), cpu=np.full(n, 8.0), throttled=np.zeros(n))
    cpu = an.cpu_summary(quiet, m)
    thr = an.throttling_analysis(cpu, m)
    fig = plots.plot_cpu(cpu.timeline, throttling=thr)
    _labelled(fig)
    top, bottom = fig.axes[0], fig.axes[1]
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert "shared baseline 6.25 % (shared-cpu-1x:512mb)" in labels
    base = [ln for ln in top.get_lines() if ln.get_label().startswith("shared baseline")][0]
    assert base.get_ydata()[0] == pytest.approx(6.25)
    # the 50 % / 70 % guide lines are far above an 8 % load: named, not drawn off-scale
    assert top.get_ylim()[1] < 50 and any("above this scale" in x for x in labels)
    balance = bottom.get_lines()[0]
    np.testing.assert_allclose(balance.get_ydata(), thr.balance["balance_s"])
    assert "no throttling" in [t.get_text() for t in bottom.texts]  # never an empty panel
    _render(fig)
    hot = make_samples(np.full(n, 200.0), cpu=np.full(n, 40.0),
                       throttled=np.r_[np.zeros(60), np.full(60, 80.0)])  # fmt: skip
    cpu2 = an.cpu_summary(hot, m)
    fig2 = plots.plot_cpu(cpu2.timeline, throttling=an.throttling_analysis(cpu2, m))
    legend2 = [t.get_text() for t in fig2.axes[1].get_legend().get_texts()]
    assert "throttled" in legend2 and not fig2.axes[1].texts
    _render(fig2)


def test_steps_chart_names_every_step_and_hides_no_bar(run: an.RunAnalysis) -> None:
    a = run
    fig = plots.plot_steps(a.step_attribution)
    _labelled(fig)
    assert "Step 3 dominates" in fig.get_suptitle()
    per = a.step_attribution.per_step
    assert len(per) == 6
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    lat, share = fig.axes
    labels = [t.get_text() for t in lat.get_yticklabels()]
    # every step named by number and by what the service logs for it, for both panels
    assert labels == [f"Step {s}: {w}" for s, w in zip(per["step"], per["what"], strict=True)]
    assert share.get_shared_y_axes().joined(lat, share)
    for ax in fig.axes:
        box = ax.get_legend().get_window_extent(renderer)
        for bar in ax.patches:
            assert not box.overlaps(bar.get_window_extent(renderer)), ax.get_title()
    assert lat.xaxis.get_scale() == "log"
    # the p95 bars are the per-step p95s
    p95 = [b.get_width() for b in lat.containers[1]]
    np.testing.assert_allclose(p95, per["p95"])
    _render(fig)
    _render(plots.plot_steps(an.step_attribution(an.parse_step_log(""))))


def test_comparison_chart(run: an.RunAnalysis) -> None:
    a = run
    b = _analysis_stub(make_requests(1500, seed=9, scale=1.3))
    cmp = an.compare_runs(a, b, n_resamples=200, labels=("1 GB", "512 MB"))
    fig = plots.plot_comparison(cmp)
    _labelled(fig)
    *ecdfs, delta = fig.axes
    # one ECDF panel per endpoint, none pooled over /health and enrichment
    assert [ax.get_title() for ax in ecdfs] == ["ECDF: /api/v1/leads/process", "ECDF: /health"]
    for ax, name in zip(ecdfs, ("/api/v1/leads/process", "/health"), strict=True):
        line = ax.get_lines()[0]
        np.testing.assert_allclose(line.get_xdata(), np.sort(cmp.samples_a[name]))
        assert line.get_label() == f"1 GB (n={cmp.samples_a[name].size:,})"
    assert "Δp95 = 512 MB − 1 GB (% of 1 GB)" in delta.get_xlabel()
    assert f"{cmp.confidence:.0%} confidence interval" in delta.get_xlabel()
    row = cmp.latency.set_index("name").loc[an.ALL]
    dot = delta.containers[-1][0]  # the (all) row's errorbar marker, plotted last
    assert dot.get_xdata()[0] == pytest.approx(100 * row["delta_ms"] / row["p95_a"])
    assert len(delta.get_yticklabels()) == len(cmp.latency)
    _render(fig)
    one = plots.plot_comparison(cmp, endpoint=an.ALL)
    assert one.axes[0].get_title() == "ECDF: all endpoints"


def test_plot_run_gives_every_chart(run: an.RunAnalysis) -> None:
    figs = plots.plot_run(run)
    assert set(figs) == {"latency", "throughput", "distribution", "memory", "cpu", "steps"}
    for fig in figs.values():
        _labelled(fig)
        _render(fig)


def test_trends_chart_circles_the_regressions() -> None:
    t0 = pd.Timestamp("2026-11-01T12:00:00Z")
    trend = pd.DataFrame(
        {
            "profile": ["load"] * 4 + ["smoke"] * 2,
            "preset": ["shared-cpu-1x:1024mb"] * 4 + ["shared-cpu-1x:512mb"] * 2,
            "started_at": [t0 + pd.Timedelta(days=d) for d in range(6)],
            "p95_ms": [100.0, 104.0, 140.0, 141.0, 20.0, 21.0],
            "memory_peak_mb": [300.0, 310.0, 320.0, 330.0, 150.0, 155.0],
            "regression": [False, False, True, False, False, False],
        }
    )
    fig = plots.plot_trends(trend)
    _labelled(fig)
    ax1, ax2 = fig.axes
    labels = [t.get_text() for t in ax1.get_legend().get_texts()]
    assert labels == ["load @ shared-cpu-1x:1024mb", "smoke @ shared-cpu-1x:512mb"]
    np.testing.assert_allclose(ax1.get_lines()[0].get_ydata(), [100.0, 104.0, 140.0, 141.0])
    np.testing.assert_allclose(ax2.get_lines()[1].get_ydata(), [150.0, 155.0])
    circled = np.concatenate([c.get_offsets()[:, 1] for c in ax1.collections])
    assert list(circled) == [140.0]  # the one regression, and only it
    # from zero: the 150→330 MB memory peaks and 20→141 ms p95s are not magnified
    assert ax1.get_ylim()[0] == 0 and ax2.get_ylim()[0] == 0
    assert ax2.get_ylim()[1] >= 330.0
    _render(fig)
    _render(plots.plot_trends(trend.iloc[0:0]))
