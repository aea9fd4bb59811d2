"""Shared-CPU throttling as a finding: the burst balance replay against an independent loop,
the statements on synthetic runs of known truth, and `compare` flagging a throttled pair."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perflib import analysis as an
from perflib.fly.burst import INITIAL_BALANCE_S, SHARED_BASELINE_PER_CPU
from tests.analysis.test_analysis import T0, _analysis_stub, make_requests, make_samples, manifest


def _run(cpu: np.ndarray, throttled: np.ndarray | None, preset: str = "shared-cpu-1x:1024mb"):
    s = make_samples(np.full(len(cpu), 200.0), cpu=cpu, throttled=throttled)
    m = manifest(T0, vm={"preset": preset, "memory_mb": 1024})
    cpu_s = an.cpu_summary(s, m)
    return cpu_s, m


def test_balance_replay_matches_a_hand_loop() -> None:
    cpu = np.r_[np.full(30, 2.0), np.full(90, 30.0)]  # 2 % then 30 % of a vCPU, 1 s samples
    summary, m = _run(cpu, np.zeros(len(cpu)))
    t = an.throttling_analysis(summary, m)
    # independent: balance += 0.0625·dt − cpu/100·dt, clamped to [0, 500], from 5 s
    b, expect = INITIAL_BALANCE_S, []
    for i, c in enumerate(cpu):
        dt = 1.0 if i else 0.0
        b = min(500.0, max(0.0, b + SHARED_BASELINE_PER_CPU * dt - c / 100 * dt))
        expect.append(b)
    np.testing.assert_allclose(t.balance["balance_s"], expect)
    first_zero = int(np.argmax(np.array(expect) <= 0))
    assert t.exhausted_at_t_s == pytest.approx(first_zero)  # samples start at k6 start


def test_a_run_averaging_above_baseline_says_when_the_balance_runs_out() -> None:
    cpu = np.full(120, 8.0)  # 8 % mean: above the 6.25 % of one shared vCPU
    summary, m = _run(cpu, np.zeros(120))
    t = an.throttling_analysis(summary, m)
    assert t.applies and t.exceeds_baseline and not t.throttled
    assert t.baseline_pct == pytest.approx(6.25) and t.mean_load_pct == pytest.approx(8.0)
    # balance ÷ (load − baseline): 5 s / 0.0175 and 500 s / 0.0175
    assert t.time_to_exhaust_fresh_s == pytest.approx(5 / 0.0175)
    assert t.time_to_exhaust_full_s == pytest.approx(500 / 0.0175)
    assert "mean CPU 8.0 % is above the shared-cpu-1x:1024mb baseline 6.25 %" in t.statement
    assert "throttled whatever its RAM" in t.statement and "no throttling" in t.statement
    quiet = an.throttling_analysis(*_run(np.full(120, 3.0), np.zeros(120)))
    assert not quiet.exceeds_baseline and quiet.time_to_exhaust_full_s is None
    assert "at or below" in quiet.statement and "whatever its RAM" not in quiet.statement
    perf = an.throttling_analysis(*_run(np.full(120, 8.0), None, "performance-1x:2048mb"))
    assert not perf.applies and not perf.exceeds_baseline


def test_measured_throttling_is_the_finding() -> None:
    thr = np.r_[np.zeros(60), np.full(20, 50.0), np.zeros(40)]  # 20 samples half throttled
    t = an.throttling_analysis(*_run(np.full(120, 20.0), thr))
    assert t.throttled and t.basis == "measured"
    assert t.throttled_s == pytest.approx(10.0) and t.first_throttled_t_s == pytest.approx(60)
    assert "throttled for 10 s from t = 60 s" in t.statement
    assert list(t.spans["span_s"]) == [20.0]


def _with_throttling(requests: pd.DataFrame, cpu: np.ndarray, thr: np.ndarray) -> an.RunAnalysis:
    a = _analysis_stub(requests)
    a.throttling = an.throttling_analysis(*_run(cpu, thr))
    return a


def test_compare_flags_a_throttled_vs_unthrottled_pair() -> None:
    n = 120
    base = make_requests(6000, seed=30, duration_s=n)
    slow = make_requests(6000, seed=31, duration_s=n)
    late = ((slow["start_time"] - T0).dt.total_seconds() >= 60).to_numpy()
    slow.loc[late, "duration_ms"] *= 2.0  # throttled from t = 60 s: everything slows
    a = _with_throttling(base, np.full(n, 5.0), np.zeros(n))
    thr = np.r_[np.zeros(60), np.full(60, 80.0)]
    b = _with_throttling(slow, np.full(n, 20.0), thr)
    cmp = an.compare_runs(a, b, n_resamples=300, seed=1, labels=("1 GB", "512 MB"))
    assert cmp.throttling_differs
    assert "CPU throttling differed: 512 MB" in cmp.throttling_note
    assert "from t = 60 s" in cmp.throttling_note and "1 GB was not" in cmp.throttling_note
    assert "latency (p95 per endpoint, per stage)" in cmp.confounded
    assert list(cmp.throttling["throttled"]) == [False, True]
    # over the whole run B looks slower; over the unthrottled window [0, 60) s it is not
    assert cmp.latency.set_index("name").loc[an.ALL, "change"] == "slower"
    assert cmp.unthrottled_window_s == pytest.approx(60.0)
    assert cmp.unthrottled is not None
    early = cmp.unthrottled.set_index("name").loc[an.ALL]
    assert early["change"] in ("unchanged", "inconclusive")
    assert early["n_b"] == int((~late).sum())
    assert "unthrottled window (first 60 s)" in str(cmp)
    # neither throttled: nothing flagged
    c2 = an.compare_runs(a, _with_throttling(base, np.full(n, 5.0), np.zeros(n)), n_resamples=200)
    assert not c2.throttling_differs and c2.throttling_note == "" and c2.unthrottled is None


def test_recommendation_says_when_sustained_load_exceeds_the_shared_baseline() -> None:
    from perflib.rundir import RunDir
    from perflib.sizing import recommend

    run = "data/runs/02-load-1024mb"
    rec = recommend([run])
    # independent: the mean of cpu_pct over the k6 window of samples.csv
    rd = RunDir.open(run)
    s = pd.read_csv(rd.samples_path, parse_dates=["time"])
    t0 = pd.Timestamp(rd.manifest["k6_started_at"])
    t1 = pd.Timestamp(rd.manifest["k6_ended_at"])
    load = s.loc[(s["time"] >= t0) & (s["time"] <= t1), "cpu_pct"].mean()
    assert load > 6.25  # the recorded run averages above one shared vCPU's baseline
    sc = rec.shared_cpu
    assert sc is not None and sc["mean_load_pct"] == pytest.approx(load, abs=0.01)
    assert sc["time_to_exhaust_fresh_s"] == pytest.approx(5.0 / (load / 100 - 0.0625), rel=1e-3)
    assert sc["reason"] in rec.reasons
    assert f"averaged {load:.1f} % CPU under load, above the shared-cpu-1x baseline" in sc["reason"]
    names = [o["preset"] for o in sc["options"]]
    assert names[0].startswith("shared-cpu-2x") and names[-1].startswith("performance-1x")
    assert all(o["monthly_usd"] > 0 for o in sc["options"])
    assert rec.to_dict()["shared_cpu"] == sc
