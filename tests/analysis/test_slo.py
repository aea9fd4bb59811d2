"""Tests of the SLO file (perflib.analysis.slo) and of each verdict just above / below its levels."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perflib import analysis as an
from perflib.analysis.slo import (
    DEFAULT_SLO_PATH,
    SloError,
    judge,
    load_slos,
    parse_slos,
    percentile_of,
)
from tests.analysis.test_analysis import T0, _analysis_stub, make_requests, make_samples, manifest


def test_shipped_file_is_valid_and_holds_every_guide_target() -> None:
    slos = load_slos()
    assert slos.version == 1
    raw = tomllib.loads(DEFAULT_SLO_PATH.read_text(encoding="utf-8"))
    assert len(slos.slo) == len(raw["slo"])
    t = {s.id: s for s in slos.slo}
    # the guide's numbers (docs/guide.md#latency-targets, #error-rate-targets, #memory-targets)
    assert (t["health_p95"].target, t["db_p95"].target, t["enrichment_p95"].target) == (
        50.0,
        100.0,
        5000.0,
    )
    assert (t["error_rate"].target, t["error_rate"].alert, t["error_rate"].critical) == (
        1.0,
        5.0,
        10.0,
    )
    assert (t["memory_idle"].target, t["memory_load"].target, t["memory_peak"].target) == (
        150.0,
        500.0,
        700.0,
    )
    assert t["memory_sustained_800"].threshold == 800.0
    assert t["cpu_average"].target == 50.0 and t["cpu_sustained_70"].threshold == 70.0
    assert t["smoke_p95"].target == 3000.0 and t["load_p95"].target == 2000.0
    assert t["smoke_errors"].target == 5.0 and t["load_errors"].target == 10.0
    assert slos.settings.sustained_s == 60.0
    assert all(s.source for s in slos.slo)


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"version": 2}, "unsupported SLO file version"),
        ({"slo": [{"id": "a", "kind": "latency"}]}, "target"),
        ({"slo": [{"id": "a", "kind": "latency", "target": 1, "stat": "p999x"}]}, "stat"),
        ({"slo": [{"id": "a", "kind": "memory", "stat": "max", "target": 1}]}, "idle"),
        ({"slo": [{"id": "a", "kind": "memory_sustained", "target": 1}]}, "threshold"),
        ({"slo": [{"id": "a", "kind": "nope", "target": 1}]}, "kind"),
        ({"slo": [{"id": "a", "kind": "latency", "target": 1, "typo": 1}]}, "typo"),
        ({"slo": [{"id": "a", "kind": "error_rate", "target": 5, "alert": 1}]}, "ordered"),
        ({"slo": [{"id": "a", "kind": "latency", "target": 1, "endpoint": "(("}]}, "regular"),
        (
            {
                "slo": [
                    {"id": "a", "kind": "oom", "target": 0},
                    {"id": "a", "kind": "oom", "target": 0},
                ]
            },
            "duplicate",
        ),
        ({"settings": {"bucket": "soon"}}, "bucket"),
    ],
)
def test_invalid_files_name_the_problem(patch: dict, needle: str) -> None:
    data = {"version": 1, **patch}
    with pytest.raises(SloError) as exc:
        parse_slos(data, origin="x.toml")
    assert "x.toml" in str(exc.value) and needle in str(exc.value)


def test_unreadable_and_non_toml_files(tmp_path: Path) -> None:
    with pytest.raises(SloError, match="cannot read"):
        load_slos(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("version = = 1\n", encoding="utf-8")
    with pytest.raises(SloError, match="not valid TOML"):
        load_slos(bad)


def test_percentile_of() -> None:
    assert percentile_of("p95") == 95.0 and percentile_of("p(99.9)") == 99.9
    assert percentile_of("med") == 50.0 and percentile_of("avg") is None
    assert percentile_of("p101") is None


def test_judge_levels_and_directions() -> None:
    slos = parse_slos(
        {
            "version": 1,
            "slo": [
                {"id": "err", "kind": "error_rate", "target": 1, "alert": 5, "critical": 10},
                {"id": "tp", "kind": "throughput", "op": ">=", "target": 10},
                {"id": "oom", "kind": "oom", "op": "<=", "target": 0, "on_miss": "critical"},
            ],
        }
    )
    err, tp, oom = slos.slo
    assert [judge(v, err, 1) for v in (0.99, 1.0, 4.99, 5.0, 5.01, 10.0, 10.01)] == [
        "pass",
        "warn",
        "warn",
        "warn",
        "alert",
        "alert",
        "critical",
    ]
    assert judge(None, err, 1) == "no data" and judge(float("nan"), err, 1) == "no data"
    assert [judge(v, tp, 10) for v in (9.99, 10.0)] == ["alert", "pass"]
    assert [judge(v, oom, 0) for v in (0, 1)] == ["pass", "critical"]


# ----------------------------------------------------------------------------- verdicts on runs


def _verdict(a: an.RunAnalysis, slo_id: str) -> tuple[float, str]:
    v = an.slo_verdicts(a).set_index("id")
    return float(v.loc[slo_id, "measured"]), str(v.loc[slo_id, "verdict"])


def _latency_run(health_ms: float, enrich_ms: float) -> an.RunAnalysis:
    req = make_requests(200, seed=1)
    req["duration_ms"] = np.where(req["name"] == "/health", health_ms, enrich_ms)
    return _analysis_stub(req)


@pytest.mark.parametrize(
    ("health", "enrich", "health_v", "enrich_v"),
    [
        (49.9, 4999.0, "pass", "pass"),
        (50.0, 5000.0, "alert", "alert"),
        (50.1, 5001.0, "alert", "alert"),
    ],
)
def test_latency_verdicts_around_targets(
    health: float, enrich: float, health_v: str, enrich_v: str
) -> None:
    a = _latency_run(health, enrich)
    assert _verdict(a, "health_p95") == (pytest.approx(health), health_v)
    assert _verdict(a, "enrichment_p95") == (pytest.approx(enrich), enrich_v)


@pytest.mark.parametrize(
    ("failed", "verdict"),
    [
        (0, "pass"),
        (9, "pass"),
        (10, "warn"),
        (50, "warn"),
        (51, "alert"),
        (100, "alert"),
        (101, "critical"),
    ],
)
def test_error_rate_verdicts(failed: int, verdict: str) -> None:
    req = make_requests(1000, seed=2)
    mask = np.zeros(1000, dtype=bool)
    mask[:failed] = True
    req["failed"] = pd.array(mask, dtype="boolean")
    measured, v = _verdict(_analysis_stub(req), "error_rate")
    assert measured == pytest.approx(failed / 10) and v == verdict


def _resource_run(
    memory: np.ndarray,
    cpu: np.ndarray | None = None,
    idle_s: int = 20,
    leak_min_window_s: float = 30.0,
) -> an.RunAnalysis:
    a = _analysis_stub(make_requests(50))
    s = make_samples(memory, cpu=cpu)
    m = manifest(T0 + pd.Timedelta(seconds=idle_s))
    m["k6_ended_at"] = None
    a.memory = an.memory_summary(s, m, leak_min_window_s=leak_min_window_s)
    a.cpu = an.cpu_summary(s, m)
    return a


@pytest.mark.parametrize(
    ("idle", "load", "peak", "expect"),
    [
        (149.0, 499.0, 699.0, ("pass", "pass", "pass")),
        (150.0, 500.0, 700.0, ("alert", "alert", "alert")),
        (151.0, 501.0, 701.0, ("alert", "alert", "alert")),
    ],
)
def test_memory_verdicts(idle: float, load: float, peak: float, expect: tuple) -> None:
    mem = np.concatenate([np.full(20, idle), np.full(50, load), [peak], np.full(50, load)])
    a = _resource_run(mem)
    got = tuple(_verdict(a, k)[1] for k in ("memory_idle", "memory_load", "memory_peak"))
    assert got == expect
    assert _verdict(a, "memory_idle")[0] == idle and _verdict(a, "memory_peak")[0] == peak


@pytest.mark.parametrize(("above", "verdict"), [(59, "pass"), (60, "alert")])
def test_sustained_800_verdict(above: int, verdict: str) -> None:
    # a sample stands for its second: 60 samples above 800 MB at 1 s = 60 s = sustained
    mem = np.concatenate([np.full(20, 100.0), np.full(above, 820.0), np.full(20, 400.0)])
    measured, v = _verdict(_resource_run(mem), "memory_sustained_800")
    assert measured == pytest.approx(float(above)) and v == verdict


@pytest.mark.parametrize(("avg", "verdict"), [(49.9, "pass"), (50.1, "alert")])
def test_cpu_average_verdict(avg: float, verdict: str) -> None:
    cpu = np.concatenate([np.full(20, 1.0), np.full(100, avg)])
    assert _verdict(_resource_run(np.full(120, 100.0), cpu), "cpu_average") == (
        pytest.approx(avg),
        verdict,
    )


@pytest.mark.parametrize(("seconds", "verdict"), [(59, "pass"), (60, "alert")])
def test_cpu_sustained_70_verdict(seconds: int, verdict: str) -> None:
    cpu = np.concatenate([np.full(20, 1.0), np.full(seconds, 71.0), np.full(20, 30.0)])
    measured, v = _verdict(_resource_run(np.full(len(cpu), 100.0), cpu), "cpu_sustained_70")
    assert measured == pytest.approx(seconds) and v == verdict


def test_step_saturation_leak_and_profile_verdicts() -> None:
    a = _latency_run(10.0, 100.0)
    log = "".join(
        f"Step 5: Storing 1 person(s) in database ({ms} ms) req={i}\n"
        for i, ms in enumerate([90, 95, 99, 99, 99])
    )
    a.steps = an.parse_step_log(log)
    assert _verdict(a, "db_p95") == (pytest.approx(99.0), "pass")
    a.steps = an.parse_step_log(log.replace("(99 ms)", "(101 ms)"))
    assert _verdict(a, "db_p95") == (pytest.approx(101.0), "alert")

    a.saturation = an.Saturation(True, 3)
    assert _verdict(a, "saturation") == (3.0, "alert")

    rising = _resource_run(np.concatenate([np.full(30, 100.0), 200 + np.arange(90) * 0.1]))
    measured, v = _verdict(rising, "memory_leak")  # 6 MB/min during "steady"
    assert measured == pytest.approx(6.0, rel=0.01) and v == "alert"
    short = _resource_run(
        np.concatenate([np.full(30, 100.0), 200 + np.arange(90) * 0.1]), leak_min_window_s=120.0
    )
    assert _verdict(short, "memory_leak")[1] == "no data"

    assert "load_p95" not in set(an.slo_verdicts(a)["id"])  # no profile: profile SLOs skipped
    a.run.manifest["profile"] = "load"
    ids = set(an.slo_verdicts(a)["id"])
    assert "load_p95" in ids and "smoke_p95" not in ids and "throughput_health" not in ids
    a.run.manifest["profile"] = "smoke"
    ids = set(an.slo_verdicts(a)["id"])
    assert "smoke_health" in ids and "load_p95" not in ids


def test_latency_slo_with_endpoint_and_stage_selectors() -> None:
    req = make_requests(3000, seed=4)
    a = _analysis_stub(req)
    a.stages = an.stage_table(manifest())
    slos = parse_slos(
        {
            "version": 1,
            "slo": [
                {
                    "id": "steady_enrich",
                    "kind": "latency",
                    "endpoint": "leads",
                    "stages": ["steady"],
                    "stat": "p99",
                    "target": 1e9,
                },
                {
                    "id": "peak_health",
                    "kind": "error_rate",
                    "endpoint": "^/health$",
                    "stages": ["peak"],
                    "target": 1,
                },
            ],
        }
    )
    v = an.slo_verdicts(a, slos).set_index("id")
    secs = (req["time"] - T0).dt.total_seconds()
    mask = (req["name"] == "/api/v1/leads/process") & (secs >= 30) & (secs < 90)
    assert v.loc["steady_enrich", "measured"] == pytest.approx(
        np.percentile(req.loc[mask, "duration_ms"], 99)
    )
    assert f"over {int(mask.sum()):,} requests" in v.loc["steady_enrich", "evidence"]
    assert v.loc["peak_health", "verdict"] == "no data"  # no stage named "peak"
