"""Every chart renders (Agg) with a title, labelled axes, a legend and the data it claims."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from test_analysis import (
    T0,
    _analysis_stub,
    _step_log,
    make_requests,
    make_samples,
    manifest,
)

from perflib import analysis as an
from perflib import plots
from perflib.stats import percentile


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


def test_latency_over_time_chart(run: an.RunAnalysis) -> None:
    a = run
    fig = plots.plot_latency_over_time(a.latency_over_time, vus=a.vus, stages=a.stages)
    _labelled(fig)
    ax = fig.axes[0]
    assert "Latency" in ax.get_title()
    assert "(ms)" in ax.get_ylabel() and "(s)" in ax.get_xlabel()
    assert fig.axes[1].get_ylabel() == "virtual users (VUs)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["p50", "p95", "p99", "VUs"]
    # the plotted p95 line is the analysis' per-bucket p95
    allrows = a.latency_over_time[a.latency_over_time["name"] == an.ALL]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), allrows["p95"])
    # stages shaded and named
    assert {t.get_text() for t in ax.texts} >= {"ramp-up", "steady", "ramp-down"}
    _render(fig)


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
    _render(fig)


def test_distribution_chart(run: an.RunAnalysis) -> None:
    a = run
    fig = plots.plot_latency_distribution(a.requests)
    _labelled(fig)
    assert len(fig.axes) == 4  # 2 endpoints × (histogram, ECDF)
    texts = [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
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


def test_cpu_chart(run: an.RunAnalysis) -> None:
    a = run
    fig = plots.plot_cpu(a.cpu.timeline, stages=a.stages)
    _labelled(fig)
    assert fig.axes[1].get_ylabel() == "throttled (% of time)"
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "sustained > 70 % → dedicated CPU" in labels
    _render(fig)
    empty = make_samples(np.array([]))
    _render(plots.plot_cpu(an.cpu_summary(empty, {}).timeline))


def test_steps_and_comparison_charts(run: an.RunAnalysis) -> None:
    a = run
    fig = plots.plot_steps(a.step_attribution)
    _labelled(fig)
    assert "Step 3 dominates" in fig.get_suptitle()
    _render(fig)
    _render(plots.plot_steps(an.step_attribution(an.parse_step_log(""))))

    b = _analysis_stub(make_requests(1500, seed=9, scale=1.3))
    cmp = an.compare_runs(a, b, n_resamples=200, labels=("1 GB", "512 MB"))
    fig = plots.plot_comparison(cmp)
    _labelled(fig)
    assert "Δp95 = 512 MB − 1 GB (% of 1 GB)" in fig.axes[1].get_xlabel()
    row = cmp.latency.set_index("name").loc[an.ALL]
    dot = fig.axes[1].containers[-1][0]  # the (all) row's errorbar marker, plotted last
    assert dot.get_xdata()[0] == pytest.approx(100 * row["delta_ms"] / row["p95_a"])
    assert len(fig.axes[1].get_yticklabels()) == len(cmp.latency)
    _render(fig)


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
    _render(fig)
    _render(plots.plot_trends(trend.iloc[0:0]))
