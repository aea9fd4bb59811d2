"""Tests of perflib.analysis against independent brute-force computations (numpy, loops)."""

from __future__ import annotations

import json
from argparse import Namespace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perflib import analysis as an
from perflib.analysis.slo import load_slos
from perflib.cli import main as cli_main
from perflib.cli.analyze import cli_analyze
from perflib.fly import oom_count, parse_log_lines
from perflib.rundir import EventLog, RunDir, SampleWriter, iso
from perflib.stats import percentile, spans_above
from tests.synthetic_runs import write_run_dir

T0 = pd.Timestamp("2026-11-01T12:00:00Z")
ENDPOINTS = ("/health", "/api/v1/leads/process")


# ----------------------------------------------------------------------------- builders
# Frames use the exact column names and dtypes of the ingest contract (perflib.ingest).


def make_requests(
    n: int = 2000,
    *,
    seed: int = 0,
    duration_s: float = 120.0,
    t0: pd.Timestamp = T0,
    scale: float = 1.0,
    fail_rate: float = 0.0,
) -> pd.DataFrame:
    """Requests as perflib.ingest.read_requests returns them (time = end of request)."""
    rng = np.random.default_rng(seed)
    end_s = np.sort(rng.uniform(0.5, duration_s, n))
    names = rng.choice(ENDPOINTS, size=n, p=[0.4, 0.6])
    base = np.where(names == "/health", 8.0, 900.0) * scale
    dur = base * rng.lognormal(0.0, 0.4, n)
    failed = rng.random(n) < fail_rate
    status = np.where(failed, np.where(rng.random(n) < 0.5, "502", "0"), "200")
    error_code = np.where(status == "0", "1211", np.where(status == "502", "1502", None))
    time = t0 + pd.to_timedelta(end_s, unit="s")
    return pd.DataFrame(
        {
            "time": time,
            "start_time": time - pd.to_timedelta(dur, unit="ms"),
            "duration_ms": dur,
            "blocked_ms": 0.0,
            "connecting_ms": 0.0,
            "tls_ms": 0.0,
            "sending_ms": 0.01,
            "waiting_ms": dur - 0.02,
            "receiving_ms": 0.01,
            "failed": pd.array(failed, dtype="boolean"),
            "name": pd.Categorical(names),
            "method": pd.Categorical(np.where(names == "/health", "GET", "GET")),
            "status": pd.Categorical(status),
            "scenario": pd.Categorical(["default"] * n),
            "group": pd.Categorical([""] * n),
            "error_code": pd.Categorical(error_code),
            "expected_response": pd.Categorical(np.where(failed, "false", "true")),
        }
    )


def make_samples(
    memory: np.ndarray,
    *,
    t0: pd.Timestamp = T0,
    interval_s: float = 1.0,
    limit_mb: float = 1024.0,
    cpu: np.ndarray | None = None,
    throttled: np.ndarray | None = None,
) -> pd.DataFrame:
    """samples.csv as RunDir.samples() returns it."""
    n = len(memory)
    return pd.DataFrame(
        {
            "time": t0 + pd.to_timedelta(np.arange(n) * interval_s, unit="s"),
            "memory_used_mb": np.asarray(memory, dtype="float64"),
            "memory_limit_mb": float(limit_mb),
            "cpu_pct": np.asarray(cpu if cpu is not None else np.full(n, 20.0), dtype="float64"),
            "cpu_throttled_pct": np.asarray(
                throttled if throttled is not None else np.full(n, np.nan), dtype="float64"
            ),
            "source": pd.array(["local"] * n, dtype="string"),
        }
    )


#: How the analysis names them: by the load (the load profile starts from 0 VUs).
LABELS = {"ramp-up": "ramp 0→10 VUs", "steady": "hold 10 VUs", "ramp-down": "ramp 10→0 VUs"}
STAGES = [
    {"name": "ramp-up", "start_s": 0.0, "duration_s": 30.0, "target": 10},
    {"name": "steady", "start_s": 30.0, "duration_s": 60.0, "target": 10},
    {"name": "ramp-down", "start_s": 90.0, "duration_s": 20.0, "target": 0},
]


def manifest(t0: pd.Timestamp = T0, **extra: object) -> dict:
    m = {
        "schema": 1,
        "profile": "load",
        "stages": STAGES,
        "k6_started_at": iso(t0.to_pydatetime()),
        "k6_ended_at": iso((t0 + pd.Timedelta(seconds=120)).to_pydatetime()),
        "vm": {"preset": "shared-cpu-1x:1024mb", "memory_mb": 1024},
    }
    m.update(extra)
    return m


# ----------------------------------------------------------------------------- latency


def test_latency_over_time_matches_brute_force_per_bucket() -> None:
    req = make_requests(3000, seed=1)
    out = an.latency_over_time(req, bucket="10s", origin=T0)
    # brute force: loop over buckets and endpoints, numpy percentile of that bucket's raw values
    secs = (req["time"] - T0).dt.total_seconds().to_numpy()
    checked = 0
    for row in out.itertuples():
        in_bucket = (secs >= row.t_s) & (secs < row.t_s + 10)
        if row.name != an.ALL:
            in_bucket &= (req["name"] == row.name).to_numpy()
        vals = req["duration_ms"].to_numpy()[in_bucket]
        assert row.count == vals.size
        for p in (50, 95, 99):
            assert getattr(row, f"p{p}") == pytest.approx(np.percentile(vals, p))
        assert row.bucket_start == T0 + pd.Timedelta(seconds=row.t_s)
        checked += 1
    # 12 buckets × (2 endpoints + all)
    assert checked == 36
    assert out.loc[out["name"] == an.ALL, "count"].sum() == len(req)


def test_latency_over_time_is_not_an_average_of_percentiles() -> None:
    # one bucket of 9 fast requests, another of 1 slow: the 20 s bucket p95 is not the mean
    # of per-10 s p95s.
    times = [T0 + pd.Timedelta(seconds=s) for s in [1, 2, 3, 4, 5, 6, 7, 8, 9, 15]]
    req = make_requests(10).iloc[:10].copy()
    req["time"] = pd.DatetimeIndex(times)
    req["duration_ms"] = [10.0] * 9 + [1000.0]
    wide = an.latency_over_time(req, bucket="20s", origin=T0, by_endpoint=False)
    narrow = an.latency_over_time(req, bucket="10s", origin=T0, by_endpoint=False)
    assert wide["p95"].iloc[0] == pytest.approx(np.percentile(req["duration_ms"], 95))
    assert wide["p95"].iloc[0] != pytest.approx(narrow["p95"].mean())


def test_latency_by_stage_splits_on_manifest_stages() -> None:
    req = make_requests(2500, seed=2, duration_s=118)
    out = an.latency_by_stage(req, manifest())
    secs = (req["time"] - T0).dt.total_seconds().to_numpy()
    for st in STAGES:
        row = out[(out["stage"] == LABELS[st["name"]]) & (out["name"] == an.ALL)].iloc[0]
        mask = (secs >= st["start_s"]) & (secs < st["start_s"] + st["duration_s"])
        vals = req["duration_ms"].to_numpy()[mask]
        assert row["count"] == vals.size
        assert row["p95"] == pytest.approx(np.percentile(vals, 95))
        assert row["req_per_s"] == pytest.approx(vals.size / st["duration_s"])
        assert row["target"] == st["target"]
    # the graceful-stop tail (110 s .. 118 s) is kept, under "(after)"
    after = out[(out["stage"] == an.AFTER) & (out["name"] == an.ALL)]
    assert after["count"].iloc[0] == int((secs >= 110).sum()) > 0
    assert out.loc[out["name"] == an.ALL, "count"].sum() == len(req)
    assert list(out["stage"].drop_duplicates()) == [*LABELS.values(), an.AFTER]


def test_assign_stage_boundaries() -> None:
    stages = an.stage_table(manifest())
    labels = an.assign_stage(pd.Series([-0.1, 0.0, 29.999, 30.0, 109.9, 110.0]), stages)
    ramp_up, hold, ramp_down = LABELS.values()
    assert list(labels) == [an.BEFORE, ramp_up, ramp_up, hold, ramp_down, an.AFTER]
    assert list(stages["stage_name"]) == ["ramp-up", "steady", "ramp-down"]
    assert list(stages["flat"]) == [False, True, False]


def test_stage_labels_describe_the_load_of_each_profile() -> None:
    from perflib.profiles import PROFILES, unique_labels

    load = [ld.label for ld in PROFILES["load"].stage_loads()]
    assert load == ["ramp 0→5 VUs", "ramp 5→10 VUs", "ramp 10→20 VUs", "ramp 20→0 VUs"]
    assert not any(ld.flat for ld in PROFILES["load"].stage_loads())  # the guide ramps throughout
    stress = [ld.label for ld in PROFILES["stress"].stage_loads()][:3]
    assert stress == ["ramp 1→2 it/s", "hold 2 it/s", "ramp 2→5 it/s"]
    assert [ld.label for ld in PROFILES["soak"].stage_loads()] == ["hold 10 VUs"]
    assert [ld.label for ld in PROFILES["smoke"].stage_loads()] == ["hold 1 VU"]
    # a recorded manifest without start_load takes the named profile's start
    m = {"profile": "load", "executor": "ramping-vus", "stages": PROFILES["load"].scaled_stages()}
    assert list(an.stage_table(m)["stage"]) == load
    twice = PROFILES["load"].stage_loads()[:1] * 2
    assert unique_labels(twice) == ["ramp 0→5 VUs", "ramp 0→5 VUs (2)"]


# ----------------------------------------------------------------------------- throughput, errors


def test_throughput_and_errors() -> None:
    req = make_requests(4000, seed=4, fail_rate=0.05)
    tp = an.throughput(req, bucket="10s", origin=T0)
    allr = tp[tp["name"] == an.ALL]
    assert allr["requests"].sum() == len(req)
    assert allr["failed"].sum() == int(req["failed"].sum())
    first = allr.iloc[0]
    secs = (req["time"] - T0).dt.total_seconds()
    assert first["requests"] == int((secs < 10).sum())
    assert first["req_per_s"] == pytest.approx(first["requests"] / 10)

    summ = an.throughput_summary(req, duration_s=120.0)
    row = summ[summ["name"] == an.ALL].iloc[0]
    assert row["req_per_s"] == pytest.approx(len(req) / 120.0)
    assert row["error_rate_pct"] == pytest.approx(100 * req["failed"].mean())

    br = an.error_breakdown(req)
    assert br["count"].sum() == int(req["failed"].sum())
    assert br["pct_of_failures"].sum() == pytest.approx(100.0)
    # independent count of one cell
    mask = (req["name"] == "/health") & (req["status"] == "502") & req["failed"].to_numpy()
    cell = br[(br["name"] == "/health") & (br["status"] == "502")]
    assert cell["count"].iloc[0] == int(mask.sum())
    assert set(br["error_code"]) <= {"1211", "1502"}
    assert (br.loc[br["status"] == "0", "error_code"] == "1211").all()


def test_failed_falls_back_to_status_when_k6_emitted_no_http_req_failed() -> None:
    req = make_requests(100, seed=5, fail_rate=0.3)
    expected = int(((req["status"] == "0") | (req["status"] == "502")).sum())
    req["failed"] = pd.array([pd.NA] * len(req), dtype="boolean")
    rate, failed, n = an.error_rate(req)
    assert (failed, n) == (expected, 100)
    assert rate == pytest.approx(expected)


def _points(rows: list[tuple[float, str, float, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": [T0 + pd.Timedelta(seconds=s) for s, *_ in rows],
            "metric": pd.Categorical([m for _, m, _, _ in rows]),
            "value": [v for *_, v, _ in rows],
            "scenario": pd.Categorical([sc for *_, sc in rows]),
        }
    )


def test_saturation_flag_and_evidence() -> None:
    pts = _points(
        [
            (1, "vus", 5, None),
            (2, "vus", 20, None),
            (40.5, "dropped_iterations", 1, "enrich"),
            (41, "dropped_iterations", 1, "enrich"),
            (50, "dropped_iterations", 1, "health"),
        ]
    )
    sat = an.saturation(pts, origin=T0)
    assert sat.saturated and sat.dropped_iterations == 3
    assert sat.first_t_s == pytest.approx(40.5)
    assert sat.by_scenario == {"enrich": 2, "health": 1}
    assert sat.max_vus == 20
    assert "3 dropped_iterations" in sat.evidence and "40.5" in sat.evidence

    calm = an.saturation(_points([(1, "vus", 5, None)]), origin=T0)
    assert not calm.saturated and calm.dropped_iterations == 0
    assert not an.saturation(None).saturated


# ----------------------------------------------------------------------------- memory


def test_leak_estimate_recovers_known_slope() -> None:
    rng = np.random.default_rng(7)
    n = 600  # 10 min at 1 s
    truth = 3.0  # MB/min
    mem = 300 + truth * np.arange(n) / 60 + rng.normal(0, 4, n)
    s = make_samples(mem)
    est = an.leak_estimate(s["time"], s["memory_used_mb"], min_mb_per_min=1.0)
    assert est is not None
    assert est.ci_low <= truth <= est.ci_high
    assert est.slope_mb_per_min == pytest.approx(truth, rel=0.1)
    assert est.suspected

    flat = make_samples(300 + rng.normal(0, 4, n))
    est0 = an.leak_estimate(flat["time"], flat["memory_used_mb"])
    assert est0 is not None and est0.ci_low <= 0 <= est0.ci_high
    assert not est0.suspected
    assert an.leak_estimate(flat["time"][:5], flat["memory_used_mb"][:5]) is None


def test_spans_above_sustained_edges() -> None:
    # samples every 1 s; 800 crossed strictly. A sample stands for its second: 60 samples
    # above → 60 s (sustained), 59 samples → 59 s (not sustained).
    def mem(k: int) -> np.ndarray:
        return np.concatenate([np.full(10, 500.0), np.full(k, 850.0), np.full(10, 500.0)])

    for k, span in ((60, 60.0), (59, 59.0)):
        s = make_samples(mem(k))
        sp = spans_above(s["time"], s["memory_used_mb"], 800.0, max_gap_s=5.0)
        assert len(sp) == 1 and sp["span_s"].iloc[0] == pytest.approx(span)
        ms = an.memory_summary(s, {}, sustained_s=60.0)
        assert ms.longest_above_s == pytest.approx(span)
        assert ms.sustained_above is (span >= 60.0)
    # exactly 800 is not above; a gap longer than max_gap_s breaks the run
    s = make_samples(np.full(100, 800.0))
    assert len(spans_above(s["time"], s["memory_used_mb"], 800.0, max_gap_s=5.0)) == 0
    # a gap longer than max_gap_s: the sample before it stands for the nominal 1 s only
    s = make_samples(np.full(100, 900.0)).drop(index=range(40, 50)).reset_index(drop=True)
    sp = spans_above(s["time"], s["memory_used_mb"], 800.0, max_gap_s=5.0)
    assert list(sp["span_s"]) == [40.0, 50.0]


def test_memory_summary_idle_load_peak_and_time_above() -> None:
    # k6 starts at T0 + 20 s and runs 100 s; samples from T0.
    mem = np.concatenate([np.full(20, 120.0), np.linspace(300, 750, 100), np.full(20, 200.0)])
    s = make_samples(mem)
    k6_start = T0 + pd.Timedelta(seconds=20)
    m = manifest(
        k6_start,
        k6_ended_at=iso((k6_start + pd.Timedelta(seconds=99.5)).to_pydatetime()),
    )
    ms = an.memory_summary(s, m, leak_min_window_s=30.0)
    assert ms.idle_mb == pytest.approx(120.0)
    assert ms.load_mb == pytest.approx(np.median(np.linspace(300, 750, 100)))
    assert ms.peak_mb == pytest.approx(750.0) and ms.peak_t_s == pytest.approx(99.0)
    assert ms.limit_mb == 1024.0
    above700 = ms.time_above.set_index("threshold_mb").loc[700.0, "seconds"]
    assert above700 == pytest.approx(float((np.linspace(300, 750, 100) > 700).sum()))
    assert set(ms.time_above["threshold_mb"]) == {500.0, 700.0, 800.0, 1024.0}
    assert set(ms.timeline["phase"]) == {"idle", "load", "after"}
    # the leak window is the flat "hold 10 VUs" stage: memory rises linearly there
    assert ms.leak is not None and ms.leak.slope_mb_per_min == pytest.approx(
        (750 - 300) / 99 * 60, rel=0.01
    )
    assert ms.leak.window == "stage hold 10 VUs, 60 s" and ms.leak_verdict == "leak suspected"
    # the hold stage covers 60 samples at 1 s = 60 s: enough for a 60 s minimum, not for 61 s
    assert an.memory_summary(s, m, leak_min_window_s=60.0).leak is not None
    short = an.memory_summary(s, m, leak_min_window_s=61.0)
    assert short.leak is None and short.leak_verdict.startswith("not testable in this profile")
    # no stage table: the load is unknown, so no slope either
    bare = an.memory_summary(s, {**m, "stages": []}, leak_min_window_s=30.0)
    assert bare.leak is None and "run `perflib run soak`" in bare.leak_verdict


def test_flat_memory_on_a_ramp_claims_no_leak() -> None:
    """The guide's load profile ramps throughout: memory that follows the VUs up is no leak,
    and the verdict says the profile cannot test it."""
    from perflib.profiles import PROFILES

    stages = PROFILES["load"].scaled_stages(1)
    m = manifest(T0, stages=stages, executor="ramping-vus")
    total = int(sum(st["duration_s"] for st in stages))
    # memory rising with the VUs (a ramp), 8 MB/min: a slope over it would cry "leak"
    s = make_samples(200 + np.arange(total) * (8 / 60))
    ms = an.memory_summary(s, m, leak_min_window_s=30.0)
    assert ms.leak is None
    assert ms.leak_verdict == "not testable in this profile — run `perflib run soak`"
    assert "ramp 5→10 VUs" in ms.leak_note
    # flat memory on the same ramp: still not testable, never "no leak"
    flat = an.memory_summary(make_samples(np.full(total, 200.0)), m, leak_min_window_s=30.0)
    assert flat.leak is None and flat.leak_verdict.startswith("not testable")


def test_a_real_slope_on_a_flat_window_is_a_leak() -> None:
    from perflib.profiles import PROFILES

    stages = PROFILES["soak"].scaled_stages(1 / 6)  # hold 10 VUs for 300 s
    m = manifest(T0, stages=stages, executor="constant-vus", profile="soak")
    rng = np.random.default_rng(4)
    leaking = 150 + np.arange(310) * (3.0 / 60) + rng.normal(0, 1.0, 310)  # +3 MB/min
    ms = an.memory_summary(make_samples(leaking), m)  # the SLO file's minimum window (300 s)
    assert ms.leak is not None and ms.leak.window.startswith("stage hold 10 VUs")
    assert ms.leak.slope_mb_per_min == pytest.approx(3.0, rel=0.1)
    assert ms.leak.suspected and ms.leak_verdict == "leak suspected"
    steady = an.memory_summary(make_samples(150 + rng.normal(0, 1.0, 310)), m)
    assert steady.leak is not None and steady.leak_verdict == "no leak suspected"


def test_oom_lines_and_events_make_one_events_frame(tmp_path: Path) -> None:
    log = (
        "2026-11-01 12:00:05,120 INFO service.app: started\n"
        "2026-11-01T12:01:00Z app[2865134a394268] cdg [info][  258.930660] Out of memory: "
        "Killed process 476 (python) total-vm:38749148kB, anon-rss:32433276kB\n"
        "2026-11-01T12:01:00Z app[2865134a394268] cdg [info] INFO Main child exited with signal\n"
        "2026-11-01T12:01:01Z app[2865134a394268] cdg [info] INFO Process appears to have been"
        " OOM killed!\n"
        "app[2865134a394268] cdg [info][  261.303965] reboot: Restarting system\n"
    )
    found = parse_log_lines(log.splitlines(), source="service.log")
    assert [e["type"] for e in found.events] == ["oom_killed", "oom_killed"]
    assert [e["type"] for e in found.untimed_events] == ["restart"]
    assert found.events[0]["detail"]["pid"] == 476
    assert found.events[0]["detail"]["process"] == "python"
    assert pd.Timestamp(found.events[0]["time"]) == pd.Timestamp("2026-11-01T12:01:00Z")

    path = tmp_path / "events.jsonl"
    ev = EventLog(path)
    ev.record("oom_killed", {"pid": 476}, time=datetime(2026, 11, 1, 12, 1, tzinfo=UTC))
    ev.record("restart", {}, time=datetime(2026, 11, 1, 12, 1, 3, tzinfo=UTC))
    ev.close()
    from perflib.rundir import read_events

    frame = an.resource_events(read_events(path), {"service.log": log}, origin=T0)
    assert len(frame) == 5
    assert set(frame["source"]) == {"events.jsonl", "service.log"}
    assert frame["t_s"].iloc[0] == pytest.approx(60.0)
    assert pd.isna(frame["time"].iloc[-1]) and frame["signal"].iloc[-1] == "reboot"
    # the same kill seen in events.jsonl, the kernel line and init's line counts once
    assert oom_count(frame) == 1
    ms = an.memory_summary(make_samples(np.full(10, 100.0)), {}, events=frame)
    assert (ms.oom_kills, ms.restarts) == (1, 1)
    # one log with two kernel lines is two kills, even at the same second
    twice = log + log.split("\n", 1)[1]
    assert len(parse_log_lines(twice.splitlines()).events) == 4
    assert oom_count(an.resource_events(None, {"fly.log": twice})) == 2


# ----------------------------------------------------------------------------- CPU


def test_cpu_summary_average_full_throttled_and_dedicated_rule() -> None:
    cpu = np.concatenate([np.full(10, 5.0), np.full(70, 100.0), np.full(40, 40.0)])
    thr = np.concatenate([np.zeros(10), np.full(70, 50.0), np.zeros(40)])
    s = make_samples(np.full(120, 200.0), cpu=cpu, throttled=thr)
    m = manifest(T0 + pd.Timedelta(seconds=10))
    c = an.cpu_summary(s, m, sustained_s=60.0)
    load = cpu[10:]
    assert c.avg_pct == pytest.approx(load.mean())
    assert c.p95_pct == pytest.approx(np.percentile(load, 95))
    assert c.time_full_s == pytest.approx(70.0)
    assert c.throttled_s == pytest.approx(70 * 0.5)
    assert c.throttled_any_s == pytest.approx(70.0)
    assert c.longest_above_s == pytest.approx(70.0)  # 70 one-second samples: 70 s
    assert c.dedicated_cpu_advised
    short = an.cpu_summary(make_samples(np.full(59, 1.0), cpu=np.full(59, 80.0)), {})
    assert short.longest_above_s == pytest.approx(59.0) and not short.dedicated_cpu_advised
    assert short.throttled_s is None  # never known


# ----------------------------------------------------------------------------- steps

SERVICE_LOG = """\
2026-11-01 12:00:01,001 INFO service.pipeline: Step 0: Checking for duplicate requests (0 ms) lead=L1
2026-11-01 12:00:01,101 INFO service.pipeline: Step 1: Fetching lead from C2S (100 ms) lead=L1
2026-11-01 12:00:01,301 INFO service.pipeline: Step 2: Using Diretrix to find CPF (200 ms) lead=L1
2026-11-01 12:00:01,305 WARNING service.pipeline: Diretrix phone lookup failed: timeout
2026-11-01 12:00:01,701 INFO service.pipeline: Step 3: Enriching 1 CPF(s) with Work API (400 ms) lead=L1
2026-11-01 12:00:01,751 INFO service.pipeline: Step 5: Storing 1 person(s) in database (50 ms) lead=L1
garbage Step 9: no timing here
"""


def test_parse_step_log_with_prefixes() -> None:
    df = an.parse_step_log(SERVICE_LOG)
    assert list(df["step"]) == [0, 1, 2, 3, 5]
    assert list(df["ms"]) == [0.0, 100.0, 200.0, 400.0, 50.0]
    assert df["what"].iloc[3] == "Enriching 1 CPF(s) with Work API"
    assert (df["request"] == "L1").all()
    assert df["time"].iloc[1] == pd.Timestamp("2026-11-01T12:00:01.101Z")
    # the service's own format (service/logsetup.py FORMAT) without ids
    plain = an.parse_step_log(
        "2026-11-01 12:00:01,101 INFO service.pipeline: Step 1: Fetching lead from C2S (12 ms)\n"
    )
    assert plain["ms"].iloc[0] == 12.0 and pd.isna(plain["request"].iloc[0])
    tagged = an.parse_step_log(
        "2026-11-01 12:00:01,101 INFO service.pipeline: Step 1: Fetching lead from C2S "
        "(12 ms) (lead 3f2a-77)\n[req-9f8e7d6c] Step 2: Using Diretrix to find CPF (30 ms)\n"
    )
    assert list(tagged["request"]) == ["3f2a-77", "9f8e7d6c"]
    # Fly's app[<machine id>] is not a request id; ids repeating a step are not used
    fly = an.parse_step_log(
        "2026-11-01T12:00:01Z app[2865134a394268] cdg [info] Step 1: Fetching lead (5 ms)\n"
    )
    assert pd.isna(fly["request"].iloc[0])
    same = an.parse_step_log(_step_log(n=50, with_ids=False).replace("ms)", "ms) worker=w1"))
    same["request"] = "w1"
    assert "approximate" in an.step_attribution(same).method


def _step_log(seed: int = 0, n: int = 400, slow_step: int = 3, with_ids: bool = True) -> str:
    rng = np.random.default_rng(seed)
    base = {1: 80.0, 2: 150.0, 3: 300.0, 4: 1.0, 5: 20.0, 6: 90.0}
    lines = []
    for i in range(n):
        tail = rng.random() < 0.06
        for step, ms in base.items():
            v = ms * rng.lognormal(0, 0.2)
            if tail and step == slow_step:
                v *= 15
            rid = f" req={i:05d}" if with_ids else ""
            lines.append(
                f"2026-11-01 12:00:01,000 INFO service.pipeline: Step {step}: "
                f"step {step} ({round(v)} ms){rid}"
            )
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("slow_step", [2, 5])
def test_step_attribution_finds_the_step_that_makes_the_tail(slow_step: int) -> None:
    steps = an.parse_step_log(_step_log(slow_step=slow_step))
    sa = an.step_attribution(steps)
    assert sa.dominant_step == slow_step
    # independent computation of the tail share
    wide = steps.pivot_table(index="request", columns="step", values="ms", aggfunc="sum")
    total = wide.sum(axis=1)
    tail = wide[total >= np.percentile(total, 95)]
    excess = {c: max(float((tail[c] - wide[c].median()).sum()), 0.0) for c in wide.columns}
    assert sa.dominant_share_pct == pytest.approx(100 * excess[slow_step] / sum(excess.values()))
    share = 100 * tail[slow_step].sum() / tail.to_numpy().sum()
    assert sa.per_step.set_index("step").loc[slow_step, "share_tail_pct"] == pytest.approx(share)
    assert sa.tail_requests == len(tail)
    assert an.STEP_ADVICE[slow_step] in sa.advice
    row = sa.per_step.set_index("step").loc[slow_step]
    assert row["p95"] == pytest.approx(
        np.percentile(steps.loc[steps["step"] == slow_step, "ms"], 95)
    )
    # without request ids it falls back to the per-step p95 shares (and says so)
    approx = an.step_attribution(an.parse_step_log(_step_log(slow_step=slow_step, with_ids=False)))
    assert "approximate" in approx.method
    assert approx.dominant_step == slow_step


def test_step_attribution_empty() -> None:
    sa = an.step_attribution(an.parse_step_log("no steps here\n"))
    assert sa.dominant_step is None and "no Step timings" in sa.advice


# ----------------------------------------------------------------------------- comparison


def test_compare_runs_detects_a_shift_and_not_identical_runs() -> None:
    base = make_requests(3000, seed=10)
    shifted = make_requests(3000, seed=11, scale=1.4)
    ra = _analysis_stub(base)
    cmp = an.compare_runs(ra, _analysis_stub(shifted), n_resamples=500, seed=1)
    row = cmp.latency.set_index("name").loc["/api/v1/leads/process"]
    assert row["change"] == "slower" and row["ci_low"] > 0
    assert row["mannwhitney_p"] < 0.001
    assert row["p95_b"] == pytest.approx(
        np.percentile(shifted.loc[shifted["name"] == "/api/v1/leads/process", "duration_ms"], 95)
    )
    assert cmp.unit == "requests" and cmp.changed
    assert "p95 slower (Δ +" in row["verdict"]

    # equal distributions with enough requests: the 90 % CI lies inside ±10 % → unchanged
    ra = _analysis_stub(make_requests(20000, seed=10))
    rb = _analysis_stub(make_requests(20000, seed=12))
    ra.memory = an.memory_summary(make_samples(np.full(10, 300.0)), {})
    rb.memory = an.memory_summary(make_samples(np.r_[np.full(9, 300.0), 350.0]), {})
    cmp0 = an.compare_runs(ra, rb, n_resamples=500, seed=1)
    assert "memory peak: A 300 MB, B 350 MB (Δ +50 MB)" in str(cmp0)
    assert cmp0.memory["delta_peak_mb"].tolist() == [0.0, 50.0]
    assert (cmp0.latency["change"] == "unchanged").all()
    assert not cmp0.changed
    assert cmp0.latency["verdict"].str.startswith("p95 unchanged").all()
    for r in cmp0.latency.itertuples():  # the word follows from the printed interval
        assert -r.margin_ms < r.ci_low and r.ci_high < r.margin_ms
        assert r.margin_ms == pytest.approx(0.10 * r.p95_a) and r.ci_level == pytest.approx(0.90)


def test_compare_runs_too_few_requests_is_inconclusive() -> None:
    small_a = _analysis_stub(make_requests(40, seed=20))
    small_b = _analysis_stub(make_requests(40, seed=21))
    cmp = an.compare_runs(small_a, small_b, n_resamples=500, seed=1)
    row = cmp.latency.set_index("name").loc[an.ALL]
    assert row["change"] == "inconclusive" and not cmp.changed
    assert row["more_to_decide"] > 0
    assert f"~{row['more_to_decide']:,} more requests per side" in row["verdict"]
    assert row["equivalence"]["verdict"] == "inconclusive"


def test_compare_groups_resample_runs() -> None:
    group_a = [_analysis_stub(make_requests(800, seed=s)) for s in range(5)]
    group_b = [_analysis_stub(make_requests(800, seed=100 + s, scale=1.5)) for s in range(5)]
    cmp = an.compare_runs(group_a, group_b, n_resamples=999, seed=2)
    assert cmp.unit == "runs"
    row = cmp.latency.set_index("name").loc[an.ALL]
    assert row["runs_a"] == 5 and row["runs_b"] == 5
    run_p95_a = [np.percentile(r.requests["duration_ms"], 95) for r in group_a]
    assert row["p95_a"] == pytest.approx(np.mean(run_p95_a))
    assert row["change"] == "slower"
    # with 5 vs 5 runs the smallest Mann-Whitney p is 2/252
    assert row["mannwhitney_p"] == pytest.approx(2 / 252)


def _analysis_stub(requests: pd.DataFrame) -> an.RunAnalysis:
    """A RunAnalysis holding only requests (what compare_runs reads)."""
    empty = make_samples(np.array([]))
    mem = an.memory_summary(empty, {})
    return an.RunAnalysis(
        run=RunDir(Path("/nonexistent/run"), {}),
        slos=load_slos(),
        requests=requests,
        points=pd.DataFrame(),
        k6_start=T0,
        k6_end=None,
        stages=an.stage_table({}),
        latency_over_time=pd.DataFrame(),
        latency_by_stage=pd.DataFrame(),
        throughput=pd.DataFrame(),
        summary=pd.DataFrame(),
        errors=pd.DataFrame(),
        saturation=an.Saturation(False, 0),
        vus=pd.DataFrame(),
        samples=empty,
        memory=mem,
        cpu=an.cpu_summary(empty, {}),
        steps=an.parse_step_log(""),
        step_attribution=an.step_attribution(an.parse_step_log("")),
    )


# ----------------------------------------------------------------------------- whole runs


def write_run(
    root: Path,
    name: str = "run",
    *,
    memory: np.ndarray | None = None,
    cpu: np.ndarray | None = None,
    log: str = "",
    oom: bool = False,
    profile: str = "load",
) -> RunDir:
    """A run directory without k6 output (analysis must cope) + samples, events, log."""
    start = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    mem = (
        memory if memory is not None else np.concatenate([np.full(20, 120.0), np.full(120, 400.0)])
    )
    cpu = cpu if cpu is not None else np.full(len(mem), 30.0)
    samples = [
        {
            "time": start + timedelta(seconds=i),
            "memory_used_mb": float(m),
            "memory_limit_mb": 1024.0,
            "cpu_pct": float(c),
            "cpu_throttled_pct": None,
            "source": "local",
        }
        for i, (m, c) in enumerate(zip(mem, cpu, strict=True))
    ]
    events = [("oom_killed", {"pid": 1}, start + timedelta(seconds=100))] if oom else []
    return write_run_dir(
        root / name,
        manifest(T0 - pd.Timedelta(seconds=-20), profile=profile),
        samples=samples,
        events=events,
        service_log=log,
    )


def test_analyze_run_without_k6_output_gives_no_data_verdicts(tmp_path: Path) -> None:
    run = write_run(tmp_path, log=SERVICE_LOG, oom=True)
    a = an.analyze_run(run.path)
    assert any("no k6 output" in w for w in a.warnings)
    v = a.verdicts.set_index("id")
    assert v.loc["health_p95", "verdict"] == "no data"
    assert v.loc["memory_idle", "verdict"] == "pass" and v.loc["memory_idle", "measured"] == 120.0
    assert v.loc["oom_kills", "verdict"] == "critical"
    assert v.loc["db_p95", "measured"] == pytest.approx(50.0)
    assert "smoke_p95" not in v.index  # profile-restricted SLOs are skipped
    assert a.worst_verdict == "critical"
    json.dumps(a.to_dict())  # JSON-ready


def test_cli_analyze_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = write_run(tmp_path, "ok")
    assert cli_analyze(Namespace(run_dir=str(ok.path), slo=None, json=False)) == 0
    out = capsys.readouterr().out
    assert "SLO verdicts" in out and "Memory at idle" in out
    bad = write_run(tmp_path, "oom", oom=True)
    assert cli_analyze(Namespace(run_dir=str(bad.path), slo=None, json=True)) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["worst_verdict"] == "critical"
    # bad input goes through the CLI's one error style: one line, exit 2
    assert cli_main(["analyze", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perflib analyze: error: not a run directory") and err.count("\n") == 1
    broken = tmp_path / "broken.toml"
    broken.write_text("version = 1\n[[slo]]\nid = 'x'\nkind = 'latency'\n", encoding="utf-8")
    assert cli_main(["analyze", str(ok.path), "--slo", str(broken)]) == 2
    assert "target" in capsys.readouterr().err
    # --fail-on alert makes an alert fail the run
    hot = write_run(tmp_path, "hot", cpu=np.full(140, 90.0))
    assert cli_analyze(Namespace(run_dir=str(hot.path), slo=None, json=True)) == 0
    capsys.readouterr()
    assert cli_analyze(Namespace(run_dir=str(hot.path), slo=None, json=True, fail_on="alert")) == 1


# ----------------------------------------------------------------------------- real k6

K6_SCRIPT = """
import http from 'k6/http';
const B = __ENV.BASE_URL;
export const options = {
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(95)', 'p(99)', 'count'],
  scenarios: {
    mixed: { executor: 'constant-vus', vus: 2, duration: '3s', exec: 'mixed' },
    flood: { executor: 'constant-arrival-rate', rate: 40, timeUnit: '1s', duration: '2s',
             preAllocatedVUs: 1, maxVUs: 1, exec: 'flood' },
  },
  thresholds: {
    'http_req_duration{name:/fast}': ['p(95)<60000'],
    'http_req_duration{name:/slow}': ['p(95)<60000'],
    'http_req_duration{name:/fail}': ['p(95)<60000'],
  },
};
let i = 0;
export function mixed() {
  http.get(`${B}/fast`, { tags: { name: '/fast' } });
  http.get(`${B}/slow`, { tags: { name: '/slow' } });
  if (i++ % 3 === 0) http.get(`${B}/fail`, { tags: { name: '/fail' } });
}
export function flood() { http.get(`${B}/slow`, { tags: { name: '/slow' } }); }
"""


@pytest.fixture(scope="module")
def k6_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A real k6 run against a loopback server: NDJSON + k6's own --summary-export."""
    import subprocess
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from perflib.tooling import find_k6

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's API
            if self.path.startswith("/slow"):
                time.sleep(0.03)
            code = 503 if self.path.startswith("/fail") else 200
            body = b"ok"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    d = tmp_path_factory.mktemp("k6run")
    (d / "script.js").write_text(K6_SCRIPT, encoding="utf-8")
    started = datetime.now(UTC)
    try:
        proc = subprocess.run(
            [
                find_k6(),
                "run",
                "--quiet",
                "--no-usage-report",
                "--out",
                f"json={d / 'k6.ndjson.gz'}",
                "--summary-export",
                str(d / "summary.json"),
                "-e",
                f"BASE_URL=http://127.0.0.1:{server.server_address[1]}",
                str(d / "script.js"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    ended = datetime.now(UTC)
    summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))["metrics"]
    run = RunDir.create(
        d / "run",
        {
            "schema": 1,
            "profile": "smoke",
            "k6_outputs": ["k6.ndjson.gz"],
            "stages": [{"name": "steady", "start_s": 0.0, "duration_s": 3.0, "target": 2}],
            "k6_started_at": iso(started),
            "k6_ended_at": iso(ended),
            "vm": {"preset": "shared-cpu-1x:1024mb", "memory_mb": 1024},
        },
    )
    (d / "k6.ndjson.gz").rename(run.path / "k6.ndjson.gz")
    return run.path, summary


@pytest.mark.k6
def test_real_k6_run_figures_equal_k6_summary(k6_run: tuple[Path, dict]) -> None:
    from perflib import ingest as k6

    path, summary = k6_run
    req = k6.read_requests(path)
    points = k6.read_points(path, metrics=["vus", "vus_max", "dropped_iterations"])
    dur = summary["http_req_duration"]
    assert len(req) == summary["http_reqs"]["count"] == dur["count"]

    # whole-run percentiles and per-endpoint splits equal k6's own (sink.go interpolation)
    summ = an.throughput_summary(req).set_index("name")
    assert summ.loc[an.ALL, "p95"] == pytest.approx(dur["p(95)"], rel=1e-9)
    assert summ.loc[an.ALL, "p99"] == pytest.approx(dur["p(99)"], rel=1e-9)
    assert summ.loc[an.ALL, "p50"] == pytest.approx(dur["med"], rel=1e-9)
    for name in ("/fast", "/slow", "/fail"):
        sub = summary[f"http_req_duration{{name:{name}}}"]
        assert summ.loc[name, "requests"] == sub["count"]
        assert summ.loc[name, "p95"] == pytest.approx(sub["p(95)"], rel=1e-9)

    # one bucket spanning the run = the whole-run figure (nothing averaged)
    lot = an.latency_over_time(req, bucket="1h")
    row = lot[lot["name"] == an.ALL].iloc[0]
    assert row["count"] == dur["count"] and row["p95"] == pytest.approx(dur["p(95)"], rel=1e-9)

    # errors: k6's http_req_failed rate, all of them the 503s of /fail (error_code 1503)
    failed = summary["http_req_failed"]
    assert an.error_rate(req)[1] == failed["passes"]
    br = an.error_breakdown(req)
    assert list(br["name"]) == ["/fail"] and list(br["status"]) == ["503"]
    assert list(br["error_code"]) == ["1503"] and br["count"].sum() == failed["passes"]

    # the arrival-rate scenario with one VU cannot keep up: k6 dropped iterations
    sat = an.saturation(points)
    assert sat.saturated
    assert sat.dropped_iterations == summary["dropped_iterations"]["count"] > 0
    assert set(sat.by_scenario) == {"flood"}


@pytest.mark.k6
def test_analyze_run_on_a_real_k6_run(k6_run: tuple[Path, dict]) -> None:
    path, summary = k6_run
    a = an.analyze_run(path)
    v = a.verdicts.set_index("id")
    assert v.loc["smoke_p95", "measured"] == pytest.approx(
        summary["http_req_duration"]["p(95)"], rel=1e-9
    )
    assert v.loc["smoke_errors", "measured"] == pytest.approx(
        100 * summary["http_req_failed"]["value"], rel=1e-9
    )
    assert v.loc["saturation", "verdict"] == "alert"
    assert v.loc["memory_idle", "verdict"] == "no data"  # no samples.csv in this run
    assert any("samples.csv" in w for w in a.warnings)
    by_stage = a.latency_by_stage
    assert by_stage.loc[by_stage["name"] == an.ALL, "count"].sum() == len(a.requests)
    assert a.vus["vus"].max() >= 2


@pytest.mark.k6
def test_compare_runs_loads_run_directories(k6_run: tuple[Path, dict]) -> None:
    path, summary = k6_run
    cmp = an.compare_runs(path, RunDir.open(path), n_resamples=200)
    assert cmp.unit == "requests" and not cmp.changed
    row = cmp.latency.set_index("name").loc[an.ALL]
    assert row["p95_a"] == row["p95_b"] == pytest.approx(summary["http_req_duration"]["p(95)"])
    assert row["delta_ms"] == 0 and row["mannwhitney_p"] == pytest.approx(1.0)
    errs = cmp.errors.set_index("side")
    assert errs.loc["A", "failed"] == summary["http_req_failed"]["passes"]
    assert errs.loc["A", "error_rate_pct"] == errs.loc["B", "error_rate_pct"]
    assert errs.loc["A", "fisher_p"] == pytest.approx(1.0)
    rate = 100 * summary["http_req_failed"]["value"]
    assert f"error rate: A {rate:.2f} % of {int(summary['http_reqs']['count']):,}" in str(cmp)


@pytest.mark.k6
def test_analyze_run_reports_a_truncated_k6_output(
    k6_run: tuple[Path, dict], tmp_path: Path
) -> None:
    import gzip
    import shutil

    path, summary = k6_run
    cut = tmp_path / "cut"
    shutil.copytree(path, cut, ignore=shutil.ignore_patterns("*.k6cache"))
    text = gzip.decompress((path / "k6.ndjson.gz").read_bytes()).decode()
    (cut / "k6.ndjson.gz").write_bytes(gzip.compress(text[: len(text) - 40].encode()))
    a = an.analyze_run(cut)
    assert any("unterminated" in w for w in a.warnings), a.warnings
    # the requests before the cut are all there
    assert summary["http_reqs"]["count"] - 1 <= len(a.requests) <= summary["http_reqs"]["count"]


@pytest.mark.k6
def test_analyze_run_without_k6_times_and_with_empty_samples(
    k6_run: tuple[Path, dict], tmp_path: Path
) -> None:
    import shutil

    path, summary = k6_run
    run_path = tmp_path / "bare"
    shutil.copytree(path, run_path, ignore=shutil.ignore_patterns("*.k6cache"))
    run = RunDir.open(run_path)
    del run.manifest["k6_started_at"], run.manifest["k6_ended_at"]
    run.save_manifest()
    SampleWriter(run.samples_path).close()  # header only
    a = an.analyze_run(run_path)
    assert any("k6_started_at" in w for w in a.warnings)
    # the window comes from the requests: the first request's start, the last one's end
    assert a.k6_start == a.requests["start_time"].min()
    assert a.k6_end == a.requests["time"].max()
    assert a.memory.samples == 0 and a.memory.peak_mb is None and a.cpu.avg_pct is None
    v = a.verdicts.set_index("id")
    assert v.loc["memory_peak", "verdict"] == "no data"
    assert v.loc["smoke_p95", "measured"] == pytest.approx(
        summary["http_req_duration"]["p(95)"], rel=1e-9
    )
    assert a.latency_by_stage.loc[a.latency_by_stage["name"] == an.ALL, "count"].sum() == len(
        a.requests
    )


# ----------------------------------------------------------------------------- recorded fixtures

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_fly_log_fixture_oom_and_restarts() -> None:
    """Fly `fly logs` text (tests/fixtures/fly, shapes from github.com/phoenixframework/flame/issues/63): two kills on two
    machines, one restart seen as the guest's reboot line and the runner's line."""
    text = (FIXTURES / "fly" / "fly_logs.txt").read_text(encoding="utf-8")
    frame = an.resource_events(None, {"fly logs": text})
    kernel = frame[frame["signal"] == "kernel"]
    assert [d["pid"] for d in kernel["detail"]] == [512, 476]
    assert kernel["time"].iloc[0] == pd.Timestamp("2026-11-20T10:04:51Z")
    assert oom_count(frame) == 2
    ms = an.memory_summary(make_samples(np.full(5, 100.0)), {}, events=frame)
    assert (ms.oom_kills, ms.restarts) == (2, 1)
    # `fly logs --json` (one kill: the kernel line and init's line) with the JSON timestamps
    js = an.resource_events(None, {"fly json": (FIXTURES / "fly" / "fly_logs.jsonl").read_text()})
    assert list(js["signal"]) == ["kernel", "init"] and oom_count(js) == 1
    # events carry microseconds (the one timestamp format of events.jsonl)
    assert js["time"].iloc[0] == pd.Timestamp("2026-11-20T10:04:51.904311Z")
    assert js["detail"].iloc[0]["pid"] == 512
    jsteps = an.parse_step_log((FIXTURES / "fly" / "fly_logs.jsonl").read_text())
    assert list(jsteps["step"]) == [6] and jsteps["what"].iloc[0] == "send message"
    assert jsteps["time"].iloc[0] == pd.Timestamp("2026-11-20T10:04:52.5Z")
    # the Step line inside a Fly log line is parsed too
    steps = an.parse_step_log(text)
    assert list(steps["step"]) == [3] and steps["ms"].iloc[0] == 412.0


def test_recorded_k6_fixture_equals_its_summary_export(tmp_path: Path) -> None:
    """A real k6 v1.1.0 output committed by the ingest (several scenarios, groups, failures)."""
    import shutil

    from perflib import ingest as k6

    src = FIXTURES / "k6" / "mixed.ndjson.gz"
    if not src.exists():  # pragma: no cover - fixture owned by the ingest area
        pytest.skip("tests/fixtures/k6/mixed.ndjson.gz not recorded")
    shutil.copy(src, tmp_path / "mixed.ndjson.gz")  # the ingest caches beside its source
    export = json.loads((FIXTURES / "k6" / "mixed-export.json").read_text(encoding="utf-8"))
    metrics = export["metrics"]
    req = k6.read_requests(tmp_path / "mixed.ndjson.gz")
    dur = metrics["http_req_duration"]
    summ = an.throughput_summary(req).set_index("name")
    assert summ.loc[an.ALL, "requests"] == dur["count"] == metrics["http_reqs"]["count"]
    for key, stat in (("p95", "p(95)"), ("p99", "p(99)"), ("p50", "med"), ("max", "max")):
        assert summ.loc[an.ALL, key] == pytest.approx(dur[stat], rel=1e-9, abs=1e-12)
    slow = metrics["http_req_duration{name:slow}"]
    assert summ.loc["slow", "p95"] == pytest.approx(slow["p(95)"], rel=1e-9)
    # one bucket over the whole run reproduces k6's figure; finer buckets partition the count
    lot = an.latency_over_time(req, bucket="1D", by_endpoint=False)
    assert lot["p95"].iloc[0] == pytest.approx(dur["p(95)"], rel=1e-9)
    fine = an.latency_over_time(req, bucket="1s", by_endpoint=False)
    assert fine["count"].sum() == dur["count"]
    # failures: k6's http_req_failed passes = failed requests; 404s are among them
    failed = metrics["http_req_failed"]
    assert an.error_rate(req)[1] == failed["passes"]
    br = an.error_breakdown(req)
    assert br["count"].sum() == failed["passes"]
    if "http_reqs{status:404}" in metrics:
        assert (
            br.loc[br["status"] == "404", "count"].sum()
            == metrics["http_reqs{status:404}"]["count"]
        )
    # per-scenario split through the same selector the SLO file uses
    api = req[req["scenario"].astype("string") == "api"]
    assert percentile(api["duration_ms"], 95) == pytest.approx(
        metrics["http_req_duration{scenario:api}"]["p(95)"], rel=1e-9
    )
