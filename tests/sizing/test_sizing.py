"""The recommender's rules (each with a triggering case and one just below it), the VPA-style
second opinion against the worked VPA numbers (docs/guide.md#second-opinion), pool sizing, capacity and the preset
comparison. Synthetic run directories are written through perflib.rundir, exactly as the
runner writes them; expected prices come from Fly's published figures (docs/guide.md#fly-sizes-and-prices), not
from the price table."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from perflib import cli
from perflib.rundir import RunDir
from perflib.sizing import (
    SizingError,
    capacity,
    capacity_limits,
    compare_presets,
    evidence_from_analysis,
    evidence_from_run,
    evidence_from_samples,
    pool_advice,
    pool_size,
    recommend,
    rule_512,
    rule_buffer,
    second_opinion,
    vpa_bucket_end_mb,
    vpa_confidence,
    vpa_percentile_mb,
    vpa_target_mb,
)
from perflib.sizing.capacity import _capacity_reason
from tests.synthetic_runs import write_run_dir

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
# 2026-10-01 price set ($6/GB, data/fly_price_sets.csv): shared-1x 256 MB 2.19 → 512 MB 3.69, 1 GB 6.69(≈6.70)
# We use prices derived by hand from the formula 0.695 + 6 × GB, rounded like Fly:
P26 = {"512": 3.69, "768": 5.20, "1024": 6.70, "1280": 8.20, "shared-2x:1024": 7.39}
P25 = {"512": 3.19, "1024": 5.70}  # published 2025-08-19


def k6_lines(requests: Sequence[tuple[float, float, bool]]) -> list[dict]:
    """k6 NDJSON lines: one request = http_reqs, http_req_duration, http_req_failed points at its
    end time (t seconds after T0, duration ms, failed)."""
    lines = [
        {
            "type": "Metric",
            "metric": m,
            "data": {"name": m, "type": k, "contains": c, "thresholds": [], "submetrics": None},
        }
        for m, k, c in [
            ("http_reqs", "counter", "default"),
            ("http_req_duration", "trend", "time"),
            ("http_req_failed", "rate", "default"),
        ]
    ]
    for t, dur, failed in requests:
        ts = (T0 + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")
        tags = {
            "name": "/api/v1/leads/process",
            "method": "GET",
            "scenario": "default",
            "status": "500" if failed else "200",
            "expected_response": "false" if failed else "true",
        }
        for metric, value in (
            ("http_reqs", 1),
            ("http_req_duration", dur),
            ("http_req_failed", int(failed)),
        ):
            lines.append(
                {
                    "type": "Point",
                    "metric": metric,
                    "data": {"time": ts, "value": value, "tags": tags},
                }
            )
    return lines


def make_run(
    path: Path,
    preset: str,
    memory: Sequence[float],
    *,
    cpu: Sequence[float] | None = None,
    oom_at: int | None = None,
    p95_ms: float = 800.0,
    rate: float = 0.5,
    profile: str = "load",
    time_scale: float = 1.0,
    requests: Sequence[tuple[float, float, bool]] | None = None,
    upstreams: str | None = None,
    stages: list[dict] | None = None,
) -> RunDir:
    """A run directory with one sample per second and a k6 summary-export file."""
    n = len(memory)
    limit = float(preset.split(":")[1].removesuffix("mb"))
    manifest = {
        "schema": 1,
        **({"upstreams": upstreams} if upstreams else {}),
        **({"stages": stages} if stages else {}),
        "profile": profile,
        "time_scale": time_scale,
        "vm": {"preset": preset, "cpu_kind": "shared", "cpus": 1, "memory_mb": limit},
        "k6_started_at": T0.isoformat(),
        "k6_ended_at": (T0 + timedelta(seconds=n)).isoformat(),
        "exit": {"status": "oom_killed" if oom_at is not None else "ok"},
    }
    samples = [
        {
            "time": T0 + timedelta(seconds=i),
            "memory_used_mb": float(m),
            "memory_limit_mb": limit,
            "cpu_pct": float(cpu[i]) if cpu else 20.0,
            "cpu_throttled_pct": None,
            "source": "test",
        }
        for i, m in enumerate(memory)
    ]
    events = (
        [("oom_killed", {"memory_mb": limit}, T0 + timedelta(seconds=oom_at))]
        if oom_at is not None
        else []
    )
    count = rate * n
    summary = {
        "metrics": {
            "http_req_duration": {"avg": p95_ms / 2, "med": p95_ms / 2, "p(95)": p95_ms},
            "http_reqs": {"count": count, "rate": rate},
            "http_req_failed": {"passes": 0, "fails": int(count), "value": 0.0},
            "data_received": {"count": 2000.0 * count, "rate": 2000.0 * rate},
        }
    }
    return write_run_dir(
        path,
        manifest,
        samples=samples,
        events=events,
        summary=summary,
        k6_lines=k6_lines(requests) if requests is not None else None,
    )


def ramp(peak: float, n: int = 240, start: float = 150.0) -> np.ndarray:
    return np.linspace(start, peak, n)


def plateau(level: float, seconds: int, n: int = 240, base: float = 300.0) -> list[float]:
    """``base`` MB except ``seconds`` consecutive samples at ``level`` in the middle."""
    out = [base] * n
    s = (n - seconds) // 2
    out[s : s + seconds] = [level] * seconds
    return out


# ----------------------------------------------------------------- the 30 % buffer


def test_buffer_rule_arithmetic_and_reason() -> None:
    req, why = rule_buffer(412.0)
    assert req == pytest.approx(535.6)
    assert "peak 412 MB × 1.3 = 536 MB" in why and why.startswith("Guide, Optimization Checklist")


def test_buffer_picks_smallest_memory_step_that_fits(tmp_path: Path) -> None:
    # 393 × 1.3 = 510.9 ≤ 512 → 512 MB; 394 × 1.3 = 512.2 → 768 MB (next 256 MB step)
    a = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(393))
    b = make_run(tmp_path / "b", "shared-cpu-1x:1024mb", ramp(394))
    ra, rb = recommend([a.path]), recommend([b.path])
    assert ra.recommended_preset == "shared-cpu-1x:512mb"
    assert rb.recommended_preset == "shared-cpu-1x:768mb"
    assert ra.monthly_cost_usd == P26["512"] and rb.monthly_cost_usd == P26["768"]
    # current = the runs' preset (1 GB): saving = 6.70 − 3.69
    assert ra.current_preset == "shared-cpu-1x:1024mb"
    assert ra.monthly_savings_usd == pytest.approx(P26["1024"] - P26["512"])
    assert ra.memory_mb == 512


# ----------------------------------------------------------------- 512 MB only below 400 MB


def test_512_rule_boundary() -> None:
    assert rule_512(400.0).triggered  # "Peak memory <400 MB": 400 is not below
    assert "rules out 512 MB" in rule_512(400.0).reason
    assert not rule_512(399.9).triggered
    assert "allows 512 MB" in rule_512(399.9).reason


def test_512_rule_is_cited_in_recommendation(tmp_path: Path) -> None:
    r = recommend([make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(405)).path])
    assert any(
        "Option 1: load-test peak 405 MB ≥ 400 MB → rules out 512 MB" in x for x in r.reasons
    )
    assert r.memory_mb > 512


# ----------------------------------------------------------------- OOM


def test_oom_rules_out_that_size_and_smaller(tmp_path: Path) -> None:
    ok = make_run(tmp_path / "big", "shared-cpu-1x:1024mb", ramp(300))
    oom = make_run(tmp_path / "small", "shared-cpu-1x:512mb", ramp(512, n=120), oom_at=119)
    # without the OOM run: 300 × 1.3 = 390 MB and 300 < 400 → 512 MB
    assert recommend([ok.path]).recommended_preset == "shared-cpu-1x:512mb"
    r = recommend([ok.path, oom.path])
    assert r.memory_mb > 512
    # the killed run's need is above 512 MB: VPA's bump max(612, 614.4) × 1.3 = 798.7 MB is
    # below the next tested clean size (1024 MB), so 768 MB is ruled out and 1024 MB picked
    assert r.recommended_preset == "shared-cpu-1x:1024mb"
    assert r.required_memory_mb == pytest.approx(max(512 + 100, 512 * 1.2) * 1.3)
    assert r.memory_basis == "VPA OOM bump" and not r.peak_censored
    assert any(
        "1 OOM kill(s) at shared-cpu-1x:512mb → 512 MB and every smaller size ruled out" in x
        for x in r.reasons
    )
    # the OOM run's peak is cut off at its limit: the buffer uses the completed run's peak
    assert r.peak_memory_mb == pytest.approx(300.0)


def test_oom_at_1gb_forces_more_than_1gb(tmp_path: Path) -> None:
    oom = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(1000, n=60), oom_at=59)
    r = recommend([oom.path])
    assert r.memory_mb > 1024
    # censored: never 1000 × 1.3 = 1300 → 1536; VPA: max(1124, 1228.8) × 1.3 = 1597 → 1792
    assert r.recommended_preset == "shared-cpu-1x:1792mb"
    assert r.peak_censored and r.memory_basis == "VPA OOM bump"
    assert not any("peak 1000 MB × 1.3" in x for x in r.reasons)
    no_oom = make_run(tmp_path / "b", "shared-cpu-1x:1024mb", ramp(700, n=60))
    assert recommend([no_oom.path]).memory_mb == 1024  # 700 × 1.3 = 910


def test_oom_at_512_alone_needs_at_least_1024(tmp_path: Path) -> None:
    # the case: a run killed at 512 MB must not read as "peak 512 × 1.3 = 666 → 768"
    oom = make_run(tmp_path / "a", "shared-cpu-1x:512mb", ramp(511, n=60), oom_at=59)
    r = recommend([oom.path])
    bump = max(512 + 100, 512 * 1.2)  # Kubernetes VPA RecordOOM
    assert r.required_memory_mb == pytest.approx(bump * 1.3)
    assert r.memory_mb >= 1024 and r.recommended_preset == "shared-cpu-1x:1024mb"
    assert r.peak_censored and r.to_dict()["peak_censored"] is True
    why = _rule(r, "censored_peak")[0].reason
    assert "lower bound" in why and "VPA" in why and "no larger size was tested" in why
    assert not any(x.rule == "buffer" for x in r.rules)


def test_oom_at_512_uses_the_next_tested_clean_size_when_smaller(tmp_path: Path) -> None:
    oom = make_run(tmp_path / "a", "shared-cpu-1x:512mb", ramp(511, n=60), oom_at=59)
    clean = make_run(tmp_path / "b", "shared-cpu-1x:768mb", ramp(560, n=60))  # 560 × 1.3 = 728
    r = recommend([oom.path, clean.path])
    assert r.memory_basis == "next tested size without kills"
    assert r.required_memory_mb == pytest.approx(768.0)
    assert r.recommended_preset == "shared-cpu-1x:768mb"
    assert (
        "next tested size without kills, shared-cpu-1x:768mb" in _rule(r, "censored_peak")[0].reason
    )
    # a clean run whose own peak × 1.3 does not fit is no evidence that its size holds
    tight = make_run(tmp_path / "c", "shared-cpu-1x:768mb", ramp(600, n=60))  # 780 > 768
    r2 = recommend([oom.path, tight.path])
    assert r2.memory_basis == "VPA OOM bump" and r2.memory_mb >= 1024


# ----------------------------------------------------------------- memory consistently > 800


def test_longest_span_above() -> None:
    times = [T0 + timedelta(seconds=i) for i in range(10)]
    vals = [0, 900, 900, 900, 0, 900, 900, 900, 900, 0]
    import pandas as pd

    from perflib.stats import longest_span_above

    def span(t: list, v: list, thr: float) -> float:
        return longest_span_above(pd.Series(t), pd.Series(v), thr, max_gap_s=5.0)

    assert span(times, vals, 800) == 4.0
    assert span(times, vals, 900) == 0.0  # strictly above
    # a gap longer than max_gap_s breaks a span
    gap = times[:3] + [t + timedelta(seconds=30) for t in times[3:]]
    assert span(gap, [900] * 10, 800) == 7.0


def _rule(rec, name):  # noqa: ANN001, ANN202
    return [x for x in rec.rules if x.rule == name]


def test_memory_consistently_above_800(tmp_path: Path) -> None:
    hit = make_run(tmp_path / "hit", "shared-cpu-1x:2048mb", plateau(810, 61))
    below = make_run(tmp_path / "below", "shared-cpu-1x:2048mb", plateau(810, 59))
    at = make_run(tmp_path / "at", "shared-cpu-1x:2048mb", plateau(800, 120))
    rh, rb, ra = recommend([hit.path]), recommend([below.path]), recommend([at.path])
    assert _rule(rh, "memory_sustained")[0].triggered
    assert not _rule(rb, "memory_sustained")[0].triggered
    assert not _rule(ra, "memory_sustained")[0].triggered  # 800 is not above 800
    assert any(
        "memory consistently > 800 MB" in x and "61 s ≥ 60 s → scale up" in x for x in rh.reasons
    )
    assert rh.memory_mb > 1024


def test_sustain_window_scales_with_time_scale(tmp_path: Path) -> None:
    # a run shortened 10×: 7 s above 800 MB counts as "consistently" (≥ 6 s)
    r = make_run(tmp_path / "a", "shared-cpu-1x:2048mb", plateau(810, 7, n=40), time_scale=0.1)
    assert _rule(recommend([r.path]), "memory_sustained")[0].triggered
    r2 = make_run(tmp_path / "b", "shared-cpu-1x:2048mb", plateau(810, 5, n=40), time_scale=0.1)
    assert not _rule(recommend([r2.path]), "memory_sustained")[0].triggered


# ----------------------------------------------------------------- p95 > 3 s


def test_p95_above_3s_scales_up(tmp_path: Path) -> None:
    slow = make_run(tmp_path / "slow", "shared-cpu-1x:1024mb", ramp(300), p95_ms=3001)
    edge = make_run(tmp_path / "edge", "shared-cpu-1x:1024mb", ramp(300), p95_ms=3000)
    rs, re_ = recommend([slow.path]), recommend([edge.path])
    # strictly larger than shared-cpu-1x:1024mb, cheapest: shared-cpu-2x:1024mb (1.39 + 6)
    assert rs.recommended_preset == "shared-cpu-2x:1024mb"
    assert rs.monthly_cost_usd == P26["shared-2x:1024"]
    assert any("p95 latency > 3 s" in x and "3001 ms > 3000 ms" in x for x in rs.reasons)
    assert re_.recommended_preset == "shared-cpu-1x:512mb"
    assert not _rule(re_, "p95")[0].triggered


# ----------------------------------------------------------------- CPU > 70 % sustained


def test_cpu_sustained_above_70_needs_performance(tmp_path: Path) -> None:
    hot = make_run(
        tmp_path / "hot", "shared-cpu-1x:1024mb", ramp(300), cpu=plateau(75, 61, base=20)
    )
    short = make_run(
        tmp_path / "short", "shared-cpu-1x:1024mb", ramp(300), cpu=plateau(75, 59, base=20)
    )
    flat = make_run(
        tmp_path / "flat", "shared-cpu-1x:1024mb", ramp(300), cpu=plateau(70, 200, base=20)
    )
    r = recommend([hot.path])
    assert r.recommended_preset == "performance-1x:2048mb"
    assert r.monthly_cost_usd == 33.00  # the reported 2026-10-01 quote
    assert r.cpu_kind == "performance"
    assert any("CPU consistently > 70 %" in x for x in r.reasons)
    assert recommend([short.path]).cpu_kind == "shared"
    assert recommend([flat.path]).cpu_kind == "shared"  # 70 % is not above 70 %


# ----------------------------------------------------------------- HA


def test_ha_doubles_instances_and_cost(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300))
    single = recommend([run.path], price_set="2025-08-19")
    ha = recommend([run.path], ha=True, price_set="2025-08-19")
    assert ha.instances == 2 and single.instances == 1
    assert ha.monthly_cost_usd == pytest.approx(2 * P25["512"])
    assert ha.monthly_savings_usd == pytest.approx(P25["1024"] - 2 * P25["512"])
    assert any("Option 2" in x and "2 instances" in x for x in ha.reasons)


def test_price_set_choice_and_region(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300))
    r25 = recommend([run.path], price_set="2025-08-19")
    assert r25.monthly_cost_usd == P25["512"] and r25.price_set == "2025-08-19"
    assert recommend([run.path]).price_set == "2026-10-01"
    # sjc 2025: 1.1923 × 3.195 = 3.8094 → 3.81
    assert recommend([run.path], price_set="2025-08-19", region="sjc").monthly_cost_usd == 3.81
    with pytest.raises(SizingError, match="unknown price set"):
        recommend([run.path], price_set="1999")


def test_json_keys_from_design(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300))
    d = json.loads(recommend([run.path]).to_json())
    for key in (
        "recommended_preset",
        "memory_mb",
        "monthly_cost_usd",
        "current_preset",
        "monthly_savings_usd",
        "reasons",
        "second_opinion",
        "pool_size",
        "price_set",
    ):
        assert key in d
    assert isinstance(d["reasons"], list) and all(isinstance(x, str) for x in d["reasons"])


# ----------------------------------------------------------------- pool size


@pytest.mark.parametrize(
    ("rpm", "n"), [(0, 5), (9.99, 5), (10, 10), (50, 10), (50.01, 20), (600, 20)]
)
def test_pool_size_boundaries(rpm: float, n: int) -> None:
    assert pool_size(rpm) == n


def test_pool_advice_memory() -> None:
    a = pool_advice(60.0, current=10)
    assert (a.connections, a.memory_mb_low, a.memory_mb_high) == (20, 100.0, 200.0)
    assert "+10 connections ≈ +50 to +100 MB" in a.reason
    with pytest.raises(SizingError):
        pool_size(-1)


def test_pool_from_measured_rate(tmp_path: Path) -> None:
    # 0.5 req/s = 30 req/min → 10 connections
    r = recommend([make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300), rate=0.5).path])
    assert r.pool is not None and r.pool.connections == 10 and r.pool.req_per_min == 30


@pytest.mark.parametrize(("n_enrichment", "pool"), [(200, 10), (201, 20)])
def test_pool_counts_enrichment_requests_not_health(
    tmp_path: Path, n_enrichment: int, pool: int
) -> None:
    """240 s of k6 window: 200 enrichments = 50 req/min → 10 (50 is in the middle band);
    201 = 50.25 req/min → 20. 400 /health requests on top would make every case 150
    req/min → 20 if they were counted."""
    run = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300), rate=2.5)
    reqs = [(i * 1.19, 5.0, False, HEALTH) for i in range(200)]
    reqs += [(i * 1.19 + 0.6, 5.0, False, HEALTH) for i in range(200)]
    reqs += [(i * 1.19 + 0.01, 900.0, False, ENR) for i in range(n_enrichment)]
    write_k6_requests(run.path / "k6.ndjson.gz", reqs)
    r = recommend([run.path])
    assert r.pool is not None
    assert r.pool.req_per_min == pytest.approx(n_enrichment / 240 * 60)
    assert r.pool.connections == pool
    assert pool_size((n_enrichment + 400) / 240 * 60) == 20  # what counting /health gave
    assert "/api/v1/leads/process requests only" in r.pool.reason
    assert "/health excluded" in r.pool.reason


def test_pool_without_per_request_output_says_it_counts_everything(tmp_path: Path) -> None:
    # no k6 NDJSON: only k6's all-requests rate (0.5 req/s = 30 req/min) is known
    r = recommend([make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300), rate=0.5).path])
    assert r.pool is not None and r.pool.req_per_min == 30 and r.pool.connections == 10
    assert "all k6 requests incl. /health" in r.pool.reason


# ----------------------------------------------------------------- VPA second opinion


@pytest.mark.parametrize(
    ("p90", "target"), [(300, 362.6), (380, 454.4), (420, 488.1), (445, 523.4)]
)
def test_vpa_target_matches_anchor_table(p90: float, target: float) -> None:
    # docs/guide.md#second-opinion: the worked VPA numbers (10 MB first bucket, ×1.05, end, ×1.15)
    assert vpa_target_mb(p90) == pytest.approx(target, abs=0.05)


def test_vpa_bucket_end_independent() -> None:
    # bucket b spans [1e7·(1.05^b − 1)/0.05, 1e7·(1.05^(b+1) − 1)/0.05) bytes
    x = 300 * 1024 * 1024
    b = 0
    while 1e7 * (1.05 ** (b + 1) - 1) / 0.05 <= x:
        b += 1
    assert vpa_bucket_end_mb(300) == pytest.approx(1e7 * (1.05 ** (b + 1) - 1) / 0.05 / 2**20)


def test_vpa_percentile_walks_buckets() -> None:
    vals = [100.0 * i for i in range(1, 11)]  # 10 peaks, p90 → 9th bucket
    assert vpa_percentile_mb(vals, 0.9) == pytest.approx(vpa_bucket_end_mb(900))
    assert vpa_percentile_mb(vals, 0.5) == pytest.approx(vpa_bucket_end_mb(500))


def test_vpa_confidence() -> None:
    assert vpa_confidence(86400, 1440) == 1.0  # one day of per-minute samples
    assert vpa_confidence(240, 240) == pytest.approx(240 / 86400)  # a 4-minute test
    assert vpa_confidence(8 * 86400, 1440) == 1.0  # few samples cap it


def test_second_opinion_per_interval_peaks_and_oom_bump(tmp_path: Path) -> None:
    # ten 60-s intervals whose peaks are 100..1000 MB
    mem = [50.0] * 600
    for i in range(10):
        mem[i * 60 + 30] = 100.0 * (i + 1)
    run = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", mem)
    from perflib.sizing import evidence_from_run

    ev = evidence_from_run(run)
    so = second_opinion([ev], interval_s=60)
    assert so.intervals == 10
    assert so.target_mb == pytest.approx(vpa_bucket_end_mb(900) * 1.15)
    assert so.p90_peak_mb == pytest.approx(np.percentile(np.arange(100, 1001, 100), 90))
    assert so.krr_mb == pytest.approx(1000 * 1.15)
    assert so.confidence == pytest.approx(min(600 / 86400, 600 / 1440))
    assert "not 24 h of production" in so.caveat and "24 h" in so.caveat
    # an OOM at 512 MB adds max(512 + 100, 512 × 1.2) = 614.4 MB
    oom = make_run(tmp_path / "b", "shared-cpu-1x:512mb", ramp(500, n=120), oom_at=119)
    so2 = second_opinion([evidence_from_run(oom)], interval_s=60)
    assert so2.oom_bump_mb == pytest.approx(614.4)
    assert so2.target_mb >= vpa_bucket_end_mb(614.4) * 1.15 - 1e-9


def test_second_opinion_shown_in_recommendation(tmp_path: Path) -> None:
    r = recommend([make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300)).path])
    assert r.second_opinion is not None
    assert r.second_opinion.preset is not None
    assert r.confidence == "low"


# ----------------------------------------------------------------- samples input


def test_recommend_from_samples_and_events(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", "shared-cpu-1x:512mb", ramp(500, n=100), oom_at=99)
    r = recommend(samples=run.samples_path, events=run.events_path)
    assert r.memory_mb > 500  # OOM at the limit seen in samples (512) rules out ≤ 512
    assert any("OOM" in x for x in r.reasons)
    ev = evidence_from_samples(run.samples_path)
    assert ev.oom_count == 0 and ev.peak_mb == pytest.approx(500)


# ----------------------------------------------------------------- capacity

ENR = "/api/v1/leads/process"
HEALTH = "/health"


def write_k6_requests(
    path: Path, reqs: Sequence[tuple[float, float, bool, str]], drops: Sequence[float] = ()
) -> None:
    """k6 NDJSON with requests given by START (s after T0), duration ms, failed, name: each
    emits http_reqs, http_req_duration, http_req_waiting (= duration), http_req_failed at
    its END time, as k6 does; ``drops`` are dropped_iterations points (s after T0)."""
    decl = [
        ("http_reqs", "counter", "default"),
        ("http_req_duration", "trend", "time"),
        ("http_req_waiting", "trend", "time"),
        ("http_req_failed", "rate", "default"),
        ("dropped_iterations", "counter", "default"),
    ]
    lines: list[dict] = [
        {
            "type": "Metric",
            "metric": m,
            "data": {"name": m, "type": k, "contains": c, "thresholds": [], "submetrics": None},
        }
        for m, k, c in decl
    ]

    def ts(t: float) -> str:
        return (T0 + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")

    for i, (start, dur, failed, name) in enumerate(reqs):
        end = round(start + dur / 1000, 6)  # k6 writes microseconds
        tags = {
            "name": name,
            "method": "GET",
            "scenario": "stress",
            "status": "500" if failed else "200",
            "expected_response": "false" if failed else "true",
            "url": f"http://127.0.0.1:1{name}?i={i}",  # distinct: ingest keys by end + tags
        }
        dur_exact = (end - start) * 1000
        for metric, value in (
            ("http_reqs", 1),
            ("http_req_duration", dur_exact),
            ("http_req_waiting", dur_exact),
            ("http_req_failed", int(failed)),
        ):
            lines.append(
                {
                    "type": "Point",
                    "metric": metric,
                    "data": {"time": ts(end), "value": value, "tags": tags},
                }
            )
    for t in drops:
        lines.append(
            {
                "type": "Point",
                "metric": "dropped_iterations",
                "data": {"time": ts(t), "value": 1, "tags": {"scenario": "stress"}},
            }
        )
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for obj in lines:
            fh.write(json.dumps(obj) + "\n")


def stress_stages(rates: Sequence[int], ramp_s: float = 2.0, hold_s: float = 10.0) -> list[dict]:
    """The stress profile's stage list (runner's manifest shape): ramp-N/s then hold-N/s."""
    out, t = [], 0.0
    for n in rates:
        out.append({"name": f"ramp-{n}/s", "start_s": t, "duration_s": ramp_s, "target": n})
        out.append(
            {"name": f"hold-{n}/s", "start_s": t + ramp_s, "duration_s": hold_s, "target": n}
        )
        t += ramp_s + hold_s
    return out


def iterations(
    stages: Sequence[dict],
    per_stage: Mapping[str, tuple[float, float]],
    *,
    failed_every: Mapping[str, int] | None = None,
    slow: Mapping[str, tuple[int, float]] | None = None,
    missing: Mapping[str, int] | None = None,
) -> list[tuple[float, float, bool, str]]:
    """The stress script's iterations at each stage's target rate: GET /health, then the
    enrichment at once. ``per_stage[name] = (health ms, enrichment ms)``; ``failed_every``:
    every k-th enrichment fails; ``slow[name] = (every k-th, ms)``: slower enrichments;
    ``missing[name] = every k-th enrichment never ends (not in the k6 output)``."""
    out = []
    for st in stages:
        h_ms, e_ms = per_stage[st["name"]]
        rate = st["target"]
        n = int(round(st["duration_s"] * rate))
        for k in range(n):
            t = st["start_s"] + (k + 0.5) / rate
            out.append((t, h_ms, False, HEALTH))
            every = (missing or {}).get(st["name"])
            if every and k % every == 0:
                continue
            dur = e_ms
            sk = (slow or {}).get(st["name"])
            if sk and k % sk[0] == 0:
                dur = sk[1]
            fe = (failed_every or {}).get(st["name"])
            out.append((t + h_ms / 1000, dur, bool(fe and k % fe == 0), ENR))
    return out


def make_stress_run(
    path: Path,
    stages: list[dict],
    reqs: Sequence[tuple[float, float, bool, str]],
    drops: Sequence[float] = (),
    preset: str = "shared-cpu-1x:1024mb",
    tail_s: float = 5.0,
) -> RunDir:
    total = stages[-1]["start_s"] + stages[-1]["duration_s"] + tail_s
    run = make_run(path, preset, ramp(300, n=int(total)), profile="stress", rate=4.0, stages=stages)
    write_k6_requests(run.path / "k6.ndjson.gz", reqs, drops)
    return run


RATES = (2, 5, 10, 20)
OK = {
    "ramp-2/s": (5.0, 800.0),
    "hold-2/s": (5.0, 800.0),
    "ramp-5/s": (8.0, 1500.0),
    "hold-5/s": (8.0, 1500.0),
    "ramp-10/s": (10.0, 2500.0),
    "hold-10/s": (10.0, 2500.0),
    "ramp-20/s": (12.0, 3500.0),
    "hold-20/s": (12.0, 3500.0),
}


@pytest.mark.parametrize(
    ("case", "expected_stage"),
    [
        ("all_pass", "hold-20/s"),
        ("drop_in_hold_10", "hold-5/s"),
        ("drop_in_warmup_only", "hold-20/s"),
        ("drop_in_ramp_only", "hold-20/s"),
        ("errors_in_hold_10", "hold-5/s"),
        ("slow_enrichment_hold_20", "hold-10/s"),
        ("slow_health_hold_5", "hold-2/s"),
        ("hold_10_fails_hold_20_passes", "hold-5/s"),
    ],
)
def test_capacity_is_the_expected_hold_stage(
    tmp_path: Path, case: str, expected_stage: str
) -> None:
    stages = stress_stages(RATES)
    per = dict(OK)
    drops: list[float] = []
    failed_every: dict[str, int] = {}
    if case == "drop_in_hold_10":
        drops = [30.0]  # hold-10/s is 26–36 s, its warm-up 26–27 s
    elif case == "drop_in_warmup_only":
        drops = [26.5]
    elif case == "drop_in_ramp_only":
        drops = [25.0]
    elif case in ("errors_in_hold_10", "hold_10_fails_hold_20_passes"):
        failed_every = {"hold-10/s": 20}  # 5 of 100 enrichments = 2.5 % of 200 requests
    elif case == "slow_enrichment_hold_20":
        per["hold-20/s"] = (12.0, 5200.0)
    elif case == "slow_health_hold_5":
        per["hold-5/s"] = (60.0, 1500.0)
    run = make_stress_run(
        tmp_path / case, stages, iterations(stages, per, failed_every=failed_every), drops
    )
    cap = capacity(run.path)
    target = int(expected_stage.split("-")[1].removesuffix("/s"))
    assert cap.max_sustained_stage == expected_stage
    # offered req/s = target iterations/s × 2 requests (/health + enrichment) per iteration
    assert cap.max_sustained_rps == target * 2
    t = cap.stages.set_index("stage")
    assert list(t.index) == [f"hold-{n}/s" for n in RATES]  # ramps are not evaluated
    assert t["offered_rps"].tolist() == [n * 2.0 for n in RATES]
    passed = t["within_slo"]
    assert passed[expected_stage] and all(passed[:expected_stage])
    # the figures the verdict rests on, recomputed independently from the generated requests
    reqs = iterations(stages, per, failed_every=failed_every)
    for _, row in t.iterrows():
        w0, b = row["window_start_s"], row["end_s"]
        assert w0 == pytest.approx(row["start_s"] + 0.1 * 10)  # 10 % warm-up
        mine = [r for r in reqs if w0 <= r[0] < b]
        enr = [r[1] for r in mine if r[3] == ENR]
        hl = [r[1] for r in mine if r[3] == HEALTH]
        assert row["requests"] == len(mine)
        assert row["enrichment_p95_ms"] == pytest.approx(np.percentile(enr, 95), abs=0.01)
        assert row["health_p95_ms"] == pytest.approx(np.percentile(hl, 95), abs=0.01)
        assert row["error_rate"] == pytest.approx(sum(r[2] for r in mine) / len(mine))
        assert row["dropped_iterations"] == sum(1 for d in drops if w0 <= d < b)
    if case == "errors_in_hold_10":
        assert t.loc["hold-10/s", "error_rate"] == pytest.approx(
            4 / 180
        )  # k = 20, 40, 60, 80 of 10..99
        assert "errors > 1%" in t.loc["hold-10/s", "fails"]
    if case == "slow_health_hold_5":
        # hold-2/s: 9 s window × 2 iterations/s = 18 enrichments, too few for a firm p95
        assert "2 iterations/s = 2 enrichments/s" in cap.note
        assert "rests on 18 requests" in cap.note
    else:
        assert "rests on" not in cap.note
    if case == "hold_10_fails_hold_20_passes":
        # a stage above a failed one does not count: the service was already behind
        assert t.loc["hold-20/s", "within_slo"] and not t.loc["hold-10/s", "within_slo"]
    assert cap.first_breach_stage == (
        None if expected_stage == "hold-20/s" else t.index[t.index.get_loc(expected_stage) + 1]
    )


def test_late_finishing_requests_count_against_the_stage_that_sent_them(tmp_path: Path) -> None:
    """The old per-bucket method (by k6 END time) judged the first buckets on the fast
    requests alone: the slow ones of hold-2/s only finished in later buckets."""
    stages = stress_stages((2, 5))
    per = {s["name"]: (5.0, 800.0) for s in stages}
    # every 3rd enrichment of hold-2/s takes 12 s: it ends after hold-5/s has begun
    reqs = iterations(stages, per, slow={"hold-2/s": (3, 12000.0)})
    run = make_stress_run(tmp_path / "late", stages, reqs, tail_s=15)
    hold2 = stages[1]
    w0, b = hold2["start_s"] + 1.0, hold2["start_s"] + hold2["duration_s"]
    # the trap: requests ENDING in hold-2/s are all fast (p95 5 s SLO met) ...
    ended = [r[1] for r in reqs if w0 <= r[0] + r[1] / 1000 < b and r[3] == ENR]
    assert np.percentile(ended, 95) < 5000
    # ... but a third of those STARTED there take 12 s
    started = [r[1] for r in reqs if w0 <= r[0] < b and r[3] == ENR]
    assert np.percentile(started, 95) == pytest.approx(12000.0)
    cap = capacity(run.path)
    t = cap.stages.set_index("stage")
    assert t.loc["hold-2/s", "enrichment_p95_ms"] == pytest.approx(12000.0, abs=0.01)
    late = [r for r in reqs if w0 <= r[0] < b and r[3] == ENR and r[0] + r[1] / 1000 >= b]
    assert t.loc["hold-2/s", "enrichment_late"] == len(late) == 7  # 6 slow + the last fast one
    assert not t.loc["hold-2/s", "within_slo"] and t.loc["hold-5/s", "within_slo"]
    assert cap.max_sustained_rps == 0.0 and cap.max_sustained_stage is None
    # only the floor-relative fallback remains, and it is labelled as such
    assert cap.cost_basis.startswith("within the guide's limits only")
    # requests that never finish (not in the k6 output at all) count as errors and as
    # latencies of at least the time left until k6 ended: they cannot improve the figure
    reqs2 = iterations(stages, per, missing={"hold-5/s": 4})
    run2 = make_stress_run(tmp_path / "missing", stages, reqs2, tail_s=3)
    t2 = capacity(run2.path).stages.set_index("stage")
    hold5 = stages[3]
    w0, b = hold5["start_s"] + 1.0, hold5["start_s"] + hold5["duration_s"]
    gone = sum(1 for k in range(50) if k % 4 == 0 and w0 <= hold5["start_s"] + (k + 0.5) / 5 < b)
    assert t2.loc["hold-5/s", "enrichment_unfinished"] == gone
    assert t2.loc["hold-5/s", "errors"] == gone
    assert t2.loc["hold-5/s", "requests"] == 2 * 45  # 9 s × 5 iterations/s × 2
    assert t2.loc["hold-5/s", "enrichment_p95_ms"] == pytest.approx(3000.0, abs=1)  # censored
    assert t2.loc["hold-5/s", "enrichment_p95_lower_bound"]
    # 3000 ms ≤ 5000 ms, but only as a lower bound: it does not pass the latency check
    assert "enrichment p95" in t2.loc["hold-5/s", "fails"]
    assert not t2.loc["hold-2/s", "enrichment_p95_lower_bound"]
    assert not t2.loc["hold-5/s", "within_slo"]


def test_upstream_bound_enrichment_gives_the_labelled_guide_limits_figure(tmp_path: Path) -> None:
    """Nominal emulators: enrichment p95 ≈ 6.5 s > 5 s at every stage, the VM idle."""
    stages = stress_stages(RATES)
    per = {s["name"]: (5.0, 6500.0) for s in stages}
    per["hold-10/s"] = (9.0, 9400.0)  # within floor 6500 + 3000 ms
    per["hold-20/s"] = (15.0, 9600.0)  # beyond it
    run = make_stress_run(tmp_path / "up", stages, iterations(stages, per))
    cap = capacity(run.path, recommended="shared-cpu-1x:512mb")
    assert cap.max_sustained_rps == 0.0
    assert cap.enrichment_upstream_bound
    assert "upstream-bound" in cap.note
    t = cap.stages.set_index("stage")
    assert t["guide_enrichment_limit_ms"].iloc[0] == pytest.approx(6500.0 + 3000.0, abs=0.01)
    assert cap.guide_limits_stage == "hold-10/s" and cap.guide_limits_rps == 20.0
    assert cap.cost_basis_rps == 20.0 and "guide's limits only" in cap.cost_basis
    egress = 2000 / 1e9 * 0.02 * 1e6  # make_run's summary: 2 kB per request at $0.02/GB
    assert cap.cost_per_million_usd == pytest.approx(P26["1024"] / (20 * 2.592) + egress)
    assert cap.recommended_cost_per_million_usd == pytest.approx(P26["512"] / (20 * 2.592) + egress)
    line = _capacity_reason(cap, None)
    assert "0 req/s within enrichment p95 ≤ 5000 ms" in line
    assert "within the guide's limits alone" in line and "20.0 req/s (hold-10/s)" in line
    d = json.loads(json.dumps(cap.to_dict()))
    assert d["guide_limits_rps"] == 20.0 and len(d["stages"]) == len(RATES)


def test_capacity_in_recommendation_with_what_limits_it(tmp_path: Path) -> None:
    stages = stress_stages(RATES)
    per = dict(OK)
    run = make_stress_run(tmp_path / "s", stages, iterations(stages, per), drops=[40.0])
    r = recommend([run.path])
    assert len(r.capacity) == 1 and r.capacity[0].max_sustained_rps == 20.0  # hold-10/s
    cap = r.capacity[0]
    assert cap.recommended_preset == r.recommended_preset
    line = [x for x in r.reasons if x.startswith("Capacity (s, shared-cpu-1x:1024mb")]
    assert line and "20.0 req/s (hold-10/s)" in line[0] and "what limits it" not in line[0]
    assert "hold-20/s: dropped iterations" in line[0]
    assert json.loads(r.to_json())["capacity"][0]["max_sustained_stage"] == "hold-10/s"
    pytest.importorskip("perflib.analysis")
    write_step_log(run, slow_step=3)
    r2 = recommend([run.path])
    assert "upstream-bound: a bigger VM will not raise it" in r2.capacity[0].limited_by
    assert any("what limits it: Step 3" in x for x in r2.reasons)
    write_step_log(run, slow_step=5)
    r3 = recommend([run.path])
    assert r3.capacity[0].limited_by.startswith("Step 5")
    assert "upstream-bound" not in r3.capacity[0].limited_by


def test_capacity_needs_hold_stages(tmp_path: Path) -> None:
    run = make_run(
        tmp_path / "l", "shared-cpu-1x:1024mb", ramp(300, n=20), profile="stress",
        requests=[(1.0, 100.0, False)],
    )  # fmt: skip
    with pytest.raises(SizingError, match="no hold stages"):
        capacity(run.path)


def test_capacity_limits_come_from_the_slo_file(tmp_path: Path) -> None:
    lim = capacity_limits()  # data/slo.toml
    assert (lim.enrichment_p95_ms, lim.health_p95_ms, lim.error_rate, lim.scale_up_p95_ms) == (
        5000.0,
        50.0,
        0.01,
        3000.0,
    )
    text = (
        (Path(__file__).resolve().parents[2] / "data" / "slo.toml")
        .read_text()
        .replace("target = 5000.0", "target = 1000.0")
    )
    (tmp_path / "slo.toml").write_text(text)
    stages = stress_stages((2, 5))
    per = {s["name"]: (5.0, 800.0) for s in stages}
    per["hold-5/s"] = (5.0, 1200.0)
    run = make_stress_run(tmp_path / "s", stages, iterations(stages, per))
    assert capacity(run.path).max_sustained_rps == 10.0
    assert capacity(run.path, slo_file=tmp_path / "slo.toml").max_sustained_rps == 4.0


# ----------------------------------------------------------------- preset comparison


def _latency_requests(dur: float, n: int = 120) -> list[tuple[float, float, bool]]:
    rng = np.random.default_rng(7)
    return [(i * 2.0 + 1, float(dur * rng.uniform(0.8, 1.2)), False) for i in range(n)]


def test_compare_presets_synthetic(tmp_path: Path) -> None:
    big = make_run(
        tmp_path / "gb", "shared-cpu-1x:1024mb", ramp(350), requests=_latency_requests(500)
    )
    small = make_run(
        tmp_path / "half", "shared-cpu-1x:512mb", ramp(380), requests=_latency_requests(520)
    )
    comp = compare_presets([small.path, big.path])
    t = comp.table.set_index("preset")
    assert comp.baseline == "gb"
    assert t.loc["shared-cpu-1x:512mb", "headroom_mb"] == pytest.approx(512 - 380)
    assert t.loc["shared-cpu-1x:1024mb", "peak_memory_mb"] == pytest.approx(350)
    assert t.loc["shared-cpu-1x:512mb", "monthly_cost_usd"] == P26["512"]
    assert t.loc["shared-cpu-1x:512mb", "saving_vs_baseline_usd"] == pytest.approx(
        P26["1024"] - P26["512"]
    )
    assert t.loc["shared-cpu-1x:512mb", "oom_kills"] == 0
    lat = comp.latency["half"]
    if lat.get("available"):  # analysis module present: Δp95 CI + Mann–Whitney
        assert lat["latency"] and "ci_low" in lat["latency"][0]
    d = json.loads(comp.to_json())
    assert d["recommendation"]["recommended_preset"] == comp.recommendation.recommended_preset
    # 380 × 1.3 = 494 ≤ 512 and 380 < 400 → 512 MB
    assert comp.recommendation.recommended_preset == "shared-cpu-1x:512mb"


def test_latency_unchanged_rule(tmp_path: Path) -> None:
    pytest.importorskip("perflib.analysis")
    big = make_run(
        tmp_path / "gb", "shared-cpu-1x:1024mb", ramp(300), requests=_latency_requests(500)
    )
    slow = make_run(
        tmp_path / "slow", "shared-cpu-1x:512mb", ramp(300), requests=_latency_requests(1000)
    )
    same = make_run(
        tmp_path / "same", "shared-cpu-1x:512mb", ramp(300), requests=_latency_requests(500)
    )
    # p95 doubled at 512 MB (CI far from 0, > 10 %): Option 1's "p95 latency unchanged" fails
    r = recommend([big.path, slow.path])
    rule = _rule(r, "latency_unchanged")[0]
    assert rule.triggered and "512 MB and smaller ruled out" in rule.reason
    assert r.recommended_preset == "shared-cpu-1x:768mb"
    assert "was not load-tested" in r.next_steps[0]
    # same latency distribution: the rule holds, 300 × 1.3 = 390 → 512 MB
    r2 = recommend([big.path, same.path])
    assert not _rule(r2, "latency_unchanged")[0].triggered
    assert r2.recommended_preset == "shared-cpu-1x:512mb"


def test_compare_needs_two_runs_of_one_profile(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300))
    b = make_run(tmp_path / "b", "shared-cpu-1x:512mb", ramp(300), profile="smoke")
    with pytest.raises(SizingError, match="at least two runs"):
        compare_presets([a.path])
    with pytest.raises(SizingError, match="different profiles"):
        compare_presets([a.path, b.path])


def test_plot_preset_comparison(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from perflib.plots.sizing import plot_preset_comparison

    a = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(420))
    b = make_run(tmp_path / "b", "shared-cpu-1x:512mb", ramp(420, n=100))  # ≥ 400: not 512
    comp = compare_presets([a.path, b.path], latency=False)
    fig = plot_preset_comparison(comp)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    # the recommendation (768 MB: 420 × 1.3 = 546) was not run: added as its own bar
    assert labels == ["shared-cpu-1x\n512mb", "shared-cpu-1x\n768mb", "shared-cpu-1x\n1024mb"]
    # a size nobody ran is never the chart's headline recommendation
    assert "768mb suggested by the sizing rules, not run yet" in fig.get_suptitle()
    assert "recommended:" not in fig.get_suptitle()
    heights = [round(p.get_height(), 2) for p in ax.patches]
    assert heights == [P26["512"], P26["768"], P26["1024"]]
    # one unit per axes, no twin axes: $ on one panel, MB on the other, side by side
    assert [a.get_ylabel() for a in fig.axes] == ["$ per 30 days", "memory (MB = MiB)"]
    boxes = [a.get_position().bounds for a in fig.axes]
    assert len(set(boxes)) == len(boxes)
    mem = fig.axes[1]
    limits = [round(p.get_height()) for p in mem.patches]
    assert limits == [512, 768, 1024]
    peaks = mem.collections[0].get_offsets()[:, 1]
    assert peaks[0] == pytest.approx(
        comp.table.set_index("preset").loc["shared-cpu-1x:512mb", "peak_memory_mb"]
    )
    fig.savefig(tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 0


# ----------------------------------------------------------------- CLI


def test_cli_recommend_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300))
    assert cli.main(["recommend", str(run.path), "--json", "--price-set", "2025-08-19"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["recommended_preset"] == "shared-cpu-1x:512mb"
    assert d["monthly_cost_usd"] == P25["512"]
    assert d["monthly_savings_usd"] == pytest.approx(P25["1024"] - P25["512"])
    assert cli.main(["recommend", str(run.path)]) == 0  # rich table
    assert "shared-cpu-1x:512mb" in capsys.readouterr().out


def test_cli_recommend_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300))
    code = cli.main(
        [
            "recommend",
            "--samples",
            str(run.samples_path),
            "--events",
            str(run.events_path),
            "--json",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["current_preset"] == "shared-cpu-1x:1024mb"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give RUN_DIR... or --samples"),
        (["--samples", "{tmp}/nope.csv"], "samples file not found"),
        (["--samples", "{tmp}/empty.csv"], "empty samples file"),
        (["--samples", "{tmp}/header.csv"], "no memory samples"),
        (["{run}", "--current", "shared-cpu-3x"], "unknown preset 'shared-cpu-3x'"),
        (["{run}", "--price-set", "2024"], "unknown price set '2024'"),
        (["{tmp}/missing-run"], "no such run directory"),
        (["{tmp}"], "not a run directory"),
    ],
)
def test_cli_recommend_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    run = make_run(tmp_path / "run", "shared-cpu-1x:1024mb", ramp(300))
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text(
        "time,memory_used_mb,memory_limit_mb,cpu_pct,cpu_throttled_pct,source\n"
    )
    args = [a.format(tmp=tmp_path, run=run.path) for a in argv]
    assert cli.main(["recommend", *args]) == 2
    err = capsys.readouterr().err
    assert message in err


def test_cli_recommend_run_without_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300))
    run.samples_path.unlink()
    assert cli.main(["recommend", str(run.path)]) == 2
    assert "missing samples.csv" in capsys.readouterr().err


def test_cli_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300))
    b = make_run(tmp_path / "b", "shared-cpu-1x:512mb", ramp(310))
    assert cli.main(["compare", str(a.path), str(b.path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [r["preset"] for r in d["runs"]] == ["shared-cpu-1x:1024mb", "shared-cpu-1x:512mb"]
    assert cli.main(["compare", str(a.path)]) == 2
    assert "at least two runs" in capsys.readouterr().err
    assert cli.main(["compare", str(a.path), str(b.path)]) == 0


def test_nan_free_json(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300))
    text = recommend([run.path]).to_json()
    assert "NaN" not in text and "Infinity" not in text
    assert not math.isnan(json.loads(text)["required_memory_mb"])


# ----------------------------------------------------------------- real short runs


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two very short real load runs (k6 + the local stack under the VM emulation) at 1 GB
    and 512 MB: the comparison the report is built around."""
    runner = pytest.importorskip("perflib.run.runner")
    base = tmp_path_factory.mktemp("real")
    out = []
    for preset in ("shared-cpu-1x:1024mb", "shared-cpu-1x:512mb"):
        path = base / preset.split(":")[1]
        res = runner.run_profile(
            "load",
            vm=preset,
            time_scale=0.03,
            out=path,
            emulator_env={"EMULATOR_LATENCY_SCALE": "0.05"},
            progress=False,
            sample_interval=0.5,
        )
        assert (path / "samples.csv").is_file(), res.message
        out.append(path)
    return out


@pytest.mark.k6
@pytest.mark.slow
def test_compare_two_real_runs(real_runs: list[Path]) -> None:
    big, small = real_runs
    comp = compare_presets([small, big])
    t = comp.table.set_index("preset")
    assert list(t.index) == ["shared-cpu-1x:1024mb", "shared-cpu-1x:512mb"]
    for preset, limit in (("shared-cpu-1x:1024mb", 1024), ("shared-cpu-1x:512mb", 512)):
        samples = RunDir.open(big if limit == 1024 else small).samples()
        peak = samples["memory_used_mb"].max()
        # headroom = the limit minus the peak read independently from samples.csv
        assert t.loc[preset, "peak_memory_mb"] == pytest.approx(peak, abs=0.05)
        assert t.loc[preset, "headroom_mb"] == pytest.approx(limit - peak, abs=0.05)
        summary = RunDir.open(big if limit == 1024 else small).k6_summary()
        p95 = summary["metrics"]["http_req_duration"]["p(95)"]
        assert t.loc[preset, "p95_latency_ms"] == pytest.approx(p95, abs=0.05)
    assert t.loc["shared-cpu-1x:512mb", "saving_vs_baseline_usd"] == pytest.approx(
        P26["1024"] - P26["512"]
    )
    lat = comp.latency[small.name]
    assert lat["available"], lat
    assert {"ci_low", "ci_high", "mannwhitney_p"} <= set(lat["latency"][0])
    rec = comp.recommendation
    assert rec.recommended_preset is not None
    # the recommendation follows the rule from the measured peak (no OOM expected at 512 MB
    # for this service; if one happened, 512 MB must be ruled out)
    if t.loc["shared-cpu-1x:512mb", "oom_kills"]:
        assert rec.memory_mb > 512
    else:
        assert rec.memory_mb >= rec.peak_memory_mb * 1.3
    assert json.loads(comp.to_json())["runs"][0]["preset"] == "shared-cpu-1x:1024mb"


def test_egress_from_measured_bytes(tmp_path: Path) -> None:
    # 2000 B per request (data_received / http_reqs in the summary)
    run = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300), rate=0.5)
    plain = recommend([run.path])
    assert plain.egress is not None and plain.egress["bytes_per_request"] == 2000
    # 0.5 req/s sustained 30 days = 1.296 M requests × 2 kB = 2.592 GB
    assert plain.egress["monthly_gb"] == pytest.approx(2.592)
    assert plain.monthly_cost_usd == P26["512"]  # machine only unless a volume is given
    # 10 M requests × 2 kB = 20 GB × $0.02 = $0.40 added to both sides
    r = recommend([run.path], monthly_requests=10e6)
    assert r.egress["monthly_usd"] == pytest.approx(0.40)
    assert r.monthly_cost_usd == pytest.approx(P26["512"] + 0.40)
    assert r.monthly_savings_usd == pytest.approx(P26["1024"] - P26["512"])


@pytest.mark.k6
@pytest.mark.slow
def test_pool_and_capacity_on_a_real_load_run(real_runs: list[Path]) -> None:
    big = real_runs[0]
    run = RunDir.open(big)
    # independent count: the enrichment http_reqs points in k6's own NDJSON
    n_enr = n_all = 0
    for path in run.k6_outputs:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                obj = json.loads(line)
                if obj.get("type") == "Point" and obj.get("metric") == "http_reqs":
                    n_all += 1
                    n_enr += "leads/process" in (obj["data"].get("tags") or {}).get("name", "")
    assert 0 < n_enr < n_all  # /health requests exist and are left out
    m = run.manifest
    window = (
        datetime.fromisoformat(m["k6_ended_at"]) - datetime.fromisoformat(m["k6_started_at"])
    ).total_seconds()
    r = recommend([big])
    assert r.pool is not None
    assert r.pool.req_per_min == pytest.approx(n_enr / window * 60, rel=1e-9)
    assert r.pool.connections == pool_size(n_enr / window * 60)
    assert "/health excluded" in r.pool.reason
    # a load run has no hold stages: capacity says so instead of inventing a figure
    with pytest.raises(SizingError, match="no hold stages"):
        capacity(big)


def test_oom_without_a_known_limit_uses_the_memory_reached(tmp_path: Path) -> None:
    import pandas as pd

    times = [T0 + timedelta(seconds=i) for i in range(60)]
    samples = pd.DataFrame(
        {
            "time": times,
            "memory_used_mb": np.linspace(200, 700, 60),
            "memory_limit_mb": np.nan,
            "cpu_pct": 10.0,
            "cpu_throttled_pct": np.nan,
            "source": "fly",
        }
    )
    events = pd.DataFrame({"time": [times[-1]], "type": ["oom_killed"], "detail": [{}]})
    r = recommend(samples=samples, events=events)
    assert _rule(r, "oom")[0].triggered
    assert r.memory_mb > 700 and r.memory_mb >= 700 * 1.3


def test_unreadable_k6_summary_is_not_fatal(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300))
    run.summary_path.write_text(json.dumps({"metrics": [{"name": "http_reqs"}]}))  # k6 v1.5+
    r = recommend([run.path])
    assert r.recommended_preset == "shared-cpu-1x:512mb"
    assert any("has no k6 p95" in x.reason for x in _rule(r, "p95"))


# ----------------------------------------------------------------- p95 > 3 s: what it rests on

STEP_WHAT = {
    1: "Fetching lead from C2S",
    2: "Using Diretrix to find CPF",
    3: "Enriching 1 CPF with Work API",
    5: "Storing 1 person in database",
    6: "Sending enriched data to C2S",
}


def write_step_log(
    run: RunDir, slow_step: int, n: int = 60, ids: bool = False
) -> dict[int, np.ndarray]:
    """service.log in the service's format: every step ~steady, ``slow_step`` spread widely
    (the one that makes the slowest requests slow). Returns the ms written per step."""
    rng = np.random.default_rng(3)
    ms = {s: rng.uniform(90, 110, n).round() for s in STEP_WHAT}
    ms[slow_step] = rng.uniform(200, 6000, n).round()
    lines = []
    for i in range(n):
        for step, what in STEP_WHAT.items():
            ts = (T0 + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S,000")
            lead = f" lead=L{i}" if ids else ""  # the service's format since lead ids
            lines.append(
                f"{ts} INFO service.pipeline: Step {step}: {what} ({ms[step][i]:.0f} ms){lead}"
            )
    run.service_log_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ms


@pytest.mark.parametrize("ids", [False, True])
def test_p95_upstream_bound_does_not_drive_the_pick(tmp_path: Path, ids: bool) -> None:
    pytest.importorskip("perflib.analysis")
    run = make_run(
        tmp_path / "up", "shared-cpu-1x:1024mb", ramp(300), p95_ms=6000, upstreams="nominal"
    )
    ms = write_step_log(run, slow_step=3, ids=ids)
    # independent: the step with the widest p95 − p50 spread (no request ids in the log)
    spread = {s: np.percentile(v, 95) - np.percentile(v, 50) for s, v in ms.items()}
    assert max(spread, key=spread.get) == 3
    r = recommend([run.path])
    assert _rule(r, "p95")[0].triggered  # the guide's rule stays visible, cited
    up = _rule(r, "p95_upstream_bound")[0]
    assert up.triggered
    assert "Step 3 (Enriching 1 CPF with Work API)" in up.reason
    assert "more VM will not fix it" in up.reason and "upstreams: nominal" in up.reason
    # 300 × 1.3 = 390 MB → 512 MB: the p95 rule did not force a larger preset
    assert r.recommended_preset == "shared-cpu-1x:512mb"
    assert any("upstream-bound — Step 3" in s and "'nominal' emulators" in s for s in r.next_steps)
    att = r.to_dict()["latency_attribution"][0]
    assert att["dominant_step"] == 3 and att["upstream"] and att["headroom"]
    assert att["method"].startswith("per request" if ids else "approximate")
    assert att["cpu_p95_pct"] == pytest.approx(20.0)  # make_run's constant 20 % on 1 vCPU


def test_p95_in_service_step_still_scales_up(tmp_path: Path) -> None:
    pytest.importorskip("perflib.analysis")
    run = make_run(tmp_path / "db", "shared-cpu-1x:1024mb", ramp(300), p95_ms=6000)
    write_step_log(run, slow_step=5)  # the database step: inside the service
    r = recommend([run.path])
    up = _rule(r, "p95_upstream_bound")[0]
    assert not up.triggered
    assert "Step 5 runs in the service" in up.reason and "scale-up applies" in up.reason
    assert r.recommended_preset == "shared-cpu-2x:1024mb"
    assert not any("upstream-bound" in s for s in r.next_steps)


def test_p95_upstream_without_cpu_headroom_still_scales_up(tmp_path: Path) -> None:
    pytest.importorskip("perflib.analysis")
    # CPU at 50 %: under the guide's 70 % (Option 3 not triggered) but not far below it
    run = make_run(
        tmp_path / "busy", "shared-cpu-1x:1024mb", ramp(300), cpu=[50.0] * 240, p95_ms=6000
    )
    write_step_log(run, slow_step=3)
    r = recommend([run.path])
    assert not _rule(r, "cpu_sustained")[0].triggered
    up = _rule(r, "p95_upstream_bound")[0]
    assert not up.triggered and "no headroom" in up.reason
    assert r.recommended_preset == "shared-cpu-2x:1024mb"


def test_p95_without_step_log_says_what_it_rests_on(tmp_path: Path) -> None:
    run = make_run(tmp_path / "k6only", "shared-cpu-1x:1024mb", ramp(300), p95_ms=3001)
    r = recommend([run.path])
    up = _rule(r, "p95_upstream_bound")[0]
    assert not up.triggered and "rests on k6's p95 alone" in up.reason
    fast = make_run(tmp_path / "fast", "shared-cpu-1x:1024mb", ramp(300), p95_ms=3000)
    assert not _rule(recommend([fast.path]), "p95_upstream_bound")  # only when p95 > 3 s


def test_stress_run_p95_is_not_a_scale_up(tmp_path: Path) -> None:
    load = make_run(tmp_path / "load", "shared-cpu-1x:1024mb", ramp(300))
    stress = make_run(
        tmp_path / "stress", "shared-cpu-1x:1024mb", ramp(300), p95_ms=9000, profile="stress"
    )
    r = recommend([load.path, stress.path])
    p95 = {x.reason.split("): ")[1].split()[0]: x for x in _rule(r, "p95")}
    assert not p95["stress"].triggered and "stress run" in p95["stress"].reason
    assert r.recommended_preset == "shared-cpu-1x:512mb"
    # a stress run alone is all the evidence there is: the rule applies
    alone = recommend([stress.path])
    assert _rule(alone, "p95")[0].triggered
    assert alone.recommended_preset == "shared-cpu-2x:1024mb"


# ----------------------------------------------------------------- the guide's Option 1


def _criteria(rec) -> dict[str, str]:  # noqa: ANN001
    return {c["criterion"]: c["status"] for c in rec.guide_option_1["criteria"]}


def test_guide_option_1_safe_per_load_tests_but_24h_unverified(tmp_path: Path) -> None:
    pytest.importorskip("perflib.analysis")
    big = make_run(
        tmp_path / "gb", "shared-cpu-1x:1024mb", ramp(130), requests=_latency_requests(500)
    )
    half = make_run(
        tmp_path / "half", "shared-cpu-1x:512mb", ramp(130), requests=_latency_requests(500)
    )
    r = recommend([big.path, half.path])
    assert r.recommended_preset == "shared-cpu-1x:256mb"  # the data-driven pick is kept
    opt = r.to_dict()["guide_option_1"]
    assert opt["preset"] == "shared-cpu-1x:512mb"
    assert _criteria(r) == {
        "Peak memory <400 MB during load tests": "met",
        "No OOM kills after 24h of production traffic": "unverified",
        "p95 latency unchanged": "met",
    }
    assert opt["verdict"].startswith("safe per the load tests; still unverified: 24 h")
    assert opt["monthly_cost_usd"] == P26["512"]
    assert opt["monthly_savings_usd"] == pytest.approx(P26["1024"] - P26["512"])
    assert any("Option 1 (512 MB): safe per the load tests" in x for x in r.reasons)


def test_guide_option_1_not_safe_and_not_tested(tmp_path: Path) -> None:
    high = make_run(tmp_path / "high", "shared-cpu-1x:1024mb", ramp(400))
    r = recommend([high.path])
    c = _criteria(r)
    assert c["Peak memory <400 MB during load tests"] == "not met"  # 400 is not < 400
    assert c["p95 latency unchanged"] == "not tested"  # no 512 MB run beside a larger one
    assert r.guide_option_1["verdict"] == "not safe"
    low = make_run(tmp_path / "low", "shared-cpu-1x:1024mb", ramp(300))
    r2 = recommend([low.path])
    assert r2.guide_option_1["verdict"].startswith("not enough evidence: p95 latency unchanged")
    oom = make_run(tmp_path / "oom", "shared-cpu-1x:512mb", ramp(300), oom_at=200)
    r3 = recommend([low.path, oom.path], latency_check=False)
    assert _criteria(r3)["No OOM kills after 24h of production traffic"] == "not met"
    assert r3.guide_option_1["verdict"] == "not safe"


def test_guide_option_1_in_human_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "a", "shared-cpu-1x:1024mb", ramp(300))
    assert cli.main(["recommend", str(run.path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "guide: 512 MB?" in out and "shared-cpu-1x:512mb: not enough evidence" in out
    assert "Next steps:" in out and "fly.toml [[vm]]" in out  # not eaten as rich markup
    assert "($6.70/30 d)" in out  # cents, not $6.7


# ----------------------------------------------------------------- pool change vs the pick


def test_bigger_pool_that_no_longer_fits_the_pick_is_flagged(tmp_path: Path) -> None:
    # 1 req/s = 60 req/min → pool 20 (+10 connections, up to +100 MB); peak 150 MB → 256 MB
    busy = make_run(tmp_path / "busy", "shared-cpu-1x:1024mb", ramp(150, start=100), rate=1.0)
    r = recommend([busy.path])
    assert r.recommended_preset == "shared-cpu-1x:256mb" and r.pool.connections == 20
    note = [x for x in r.reasons if "does not include" in x]
    assert note and "(150 + 100) × 1.3 = 325 MB > 256 MB" in note[0]
    assert any("DB_POOL_SIZE=20" in s for s in r.next_steps)
    # 0.5 req/s = 30 req/min → pool 10 = the service's: nothing to flag
    calm = make_run(tmp_path / "calm", "shared-cpu-1x:1024mb", ramp(150, start=100), rate=0.5)
    r2 = recommend([calm.path])
    assert r2.pool.connections == 10
    assert not [x for x in r2.reasons if "does not include" in x]


# ----------------------------------------------------------------- issue 13: one answer


def test_sixty_samples_above_800_are_sustained_in_analyze_and_recommend(tmp_path: Path) -> None:
    """Before issue 13 `recommend` measured 60 one-second samples above 800 MB as 60 s
    (scale up) and `analyze` as 59 s (pass). One span rule now: 60 s in both, and both say
    "sustained"; 59 samples are 59 s and neither says so."""
    from perflib.analysis import analyze_run

    for seconds, sustained in ((60, True), (59, False)):
        run = make_run(tmp_path / f"r{seconds}", "shared-cpu-1x:2048mb", plateau(850, seconds))
        a = analyze_run(run)
        assert a.memory.longest_above_s == pytest.approx(float(seconds))
        verdict = a.verdicts.set_index("id").loc["memory_sustained_800", "verdict"]
        assert (verdict == "alert") is sustained
        ev = evidence_from_analysis(a)
        assert ev.longest_above("memory_used_mb", 800.0) == pytest.approx(float(seconds))
        rec = recommend([run.path])
        (memory_rule,) = _rule(rec, "memory_sustained")
        assert memory_rule.triggered is sustained
        assert f"for {seconds} s" in memory_rule.reason


def test_oom_count_is_the_same_through_every_path(tmp_path: Path) -> None:
    """One kill recorded by the VM (events.jsonl) and seen twice in service.log (kernel and
    init lines, no wall-clock time) is one OOM for analyze, recommend, the samples-file path
    and the count function itself; a second kernel line is a second kill everywhere."""
    from perflib.analysis import analyze_run
    from perflib.fly import oom_count, parse_log_lines
    from perflib.rundir import read_events

    log = (
        "[  12.500000] Out of memory: Killed process 41 (python) total-vm:10kB, anon-rss:9kB\n"
        " INFO Process appears to have been OOM killed!\n"
        "[  13.100000] reboot: Restarting system\n"
    )
    for kills in (1, 2):
        run = make_run(tmp_path / f"k{kills}", "shared-cpu-1x:512mb", ramp(500), oom_at=100)
        run.service_log_path.write_text(log * kills, encoding="utf-8")
        parsed = parse_log_lines(run.service_log_path.read_text().splitlines())
        events = read_events(run.events_path)
        a = analyze_run(run)
        ev = evidence_from_run(run.path)
        counts = {
            "analyze": a.memory.oom_kills,
            "analyze verdict": a.verdicts.set_index("id").loc["oom_kills", "measured"],
            "recommend": ev.oom_count,
            "count(events.jsonl + log)": oom_count(
                [*events.to_dict("records"), *parsed.untimed_events]
            ),
        }
        assert set(counts.values()) == {kills}, counts
        # events.jsonl alone (a samples file exported without the log) holds one record
        alone = evidence_from_samples(run.samples_path, run.events_path)
        assert alone.oom_count == 1


def test_cpu_spans_agree_between_analyze_and_recommend(tmp_path: Path) -> None:
    """One CPU rule (per vCPU, strictly above 70 %, docs/guide.md#cpu-targets): a 2-vCPU run at
    150 % of one vCPU (75 % per vCPU) for 61 s is "consistently above 70 %" for both
    commands; a run held at exactly 70 % per vCPU is not, for either."""
    from perflib.analysis import analyze_run

    for name, level, above in (("hot", 150.0, True), ("flat", 140.0, False)):
        run = make_run(
            tmp_path / name,
            "performance-2x:4096mb",
            ramp(300),
            cpu=plateau(level, 61, base=20),
        )
        a = analyze_run(run)
        ev = evidence_from_analysis(a)
        expect = 61.0 if above else 0.0
        assert a.cpu.cpus == 2 and a.cpu.longest_above_s == pytest.approx(expect)
        assert ev.cpu_longest_above(70.0) == pytest.approx(expect)
        verdict = a.verdicts.set_index("id").loc["cpu_sustained_70", "verdict"]
        assert (verdict == "alert") is above
        (cpu_rule,) = _rule(recommend([run.path]), "cpu_sustained")
        assert cpu_rule.triggered is above
