"""The one factory for synthetic run directories (not collected by pytest): :func:`write_run_dir`
writes one through the contract's own writers; :func:`make_run` builds a complete one on it.

They follow the run-directory contract (perflib.rundir + docs/contracts.md#run-directory) with k6's own NDJSON
line shapes, generated from a seeded RNG so expected figures can be computed independently
(numpy) in the tests. The recorded sample runs in data/runs are real; these exist so tests
can make runs with chosen properties (a slower run for regression flagging, a planted
secret, a broken manifest).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from perflib.rundir import EventLog, RunDir, SampleWriter, iso

ENDPOINTS = ("/health", "/api/v1/leads/process")

Event = tuple[str, dict, datetime]
"""An events.jsonl entry to plant: (event, data, time)."""


def write_run_dir(
    path: Path,
    manifest: dict,
    *,
    samples: Iterable[dict] = (),
    events: Iterable[Event] = (),
    k6_lines: Iterable[dict] | None = None,
    summary: dict | None = None,
    service_log: str | None = None,
) -> RunDir:
    """THE writer of synthetic run directories: every builder in the tests goes through it, so
    they all write through the contract's own writers (RunDir, SampleWriter, EventLog).

    ``k6_lines`` are k6 NDJSON objects, written as k6 spells them (compact, keys in k6's order)
    to ``k6.ndjson.gz``; ``summary`` is k6's summary export; ``samples`` rows and ``events``
    go to samples.csv and events.jsonl (both files always exist, as in a real run).
    """
    run = RunDir.create(path, manifest)
    if k6_lines is not None:
        with gzip.open(run.path / "k6.ndjson.gz", "wt", encoding="utf-8") as fh:
            for line in k6_lines:
                order = (
                    ("type", "data", "metric")
                    if line["type"] == "Metric"
                    else ("metric", "type", "data")
                )
                fh.write(json.dumps({k: line[k] for k in order}, separators=(",", ":")) + "\n")
    if summary is not None:
        run.summary_path.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    with SampleWriter(run.samples_path) as w:
        for row in samples:
            w.write(row)
    log = EventLog(run.events_path)
    for event, data, time in events:
        log.record(event, data, time=time)
    log.close()
    if service_log is not None:
        run.service_log_path.write_text(service_log, encoding="utf-8")
    return run


def make_run(
    root: Path,
    name: str,
    *,
    profile: str = "load",
    preset: str = "shared-cpu-1x:1024mb",
    started_at: datetime | None = None,
    latency_scale: float = 1.0,
    requests: int = 400,
    duration_s: float = 40.0,
    error_rate: float = 0.01,
    memory_peak_mb: float = 300.0,
    oom: bool = False,
    seed: int = 1,
) -> RunDir:
    """Write a complete run directory; returns it. Latencies are log-normal per endpoint."""
    rng = np.random.default_rng(seed)
    start = started_at or datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    end = start + timedelta(seconds=duration_s + 2)
    memory_mb = int(preset.rsplit(":", 1)[1].removesuffix("mb")) if ":" in preset else 1024
    stages = [
        {"name": "ramp-up", "start_s": 0.0, "duration_s": duration_s / 4, "target": 5},
        {"name": "steady", "start_s": duration_s / 4, "duration_s": duration_s / 2, "target": 5},
        {
            "name": "ramp-down",
            "start_s": 3 * duration_s / 4,
            "duration_s": duration_s / 4,
            "target": 0,
        },
    ]
    manifest = {
        "schema": 1,
        "profile": profile,
        "script": f"tests/{profile}-test.js",
        "stages": stages,
        "time_scale": 0.1,
        "target": {"kind": "local", "base_url": "http://127.0.0.1:1"},
        "upstreams": "nominal",
        "vm": {
            "preset": preset,
            "cpu_kind": "shared",
            "cpus": 1,
            "memory_mb": memory_mb,
            "emulation": {
                "memory": True,
                "cpu_pin": True,
                "cpu_quota": False,
                "quota_method": None,
                "guest_overhead_mb": 40.0,
            },
        },
        "versions": {"k6": "v1.1.0", "perflib": "0.1.0", "python": "3.11", "git_commit": "abc123"},
        "started_at": iso(start),
        "ended_at": iso(end),
        "k6_started_at": iso(start + timedelta(seconds=1)),
        "k6_ended_at": iso(end - timedelta(seconds=1)),
        "exit": {"status": "oom_killed" if oom else "ok", "k6": 0, "service": None, "message": ""},
        "segments": 1,
        "k6_outputs": ["k6.ndjson.gz"],
        "lead_id": None,
    }
    k6_start = start + timedelta(seconds=1)
    offsets = np.sort(rng.uniform(0, duration_s, requests))
    names = rng.choice(ENDPOINTS, size=requests, p=[0.3, 0.7])
    base = np.where(names == "/health", 5.0, 400.0) * latency_scale
    durations = base * rng.lognormal(0.0, 0.35, requests)
    failed = rng.random(requests) < error_rate
    lines: list[dict] = []

    def meta(metric: str, mtype: str, contains: str) -> None:
        lines.append(
            {
                "type": "Metric",
                "metric": metric,
                "data": {
                    "name": metric,
                    "type": mtype,
                    "contains": contains,
                    "thresholds": [],
                    "submetrics": None,
                },
            }
        )

    meta("http_reqs", "counter", "default")
    meta("http_req_duration", "trend", "time")
    for part in ("blocked", "connecting", "tls_handshaking", "sending", "waiting", "receiving"):
        meta(f"http_req_{part}", "trend", "time")
    meta("http_req_failed", "rate", "default")
    meta("checks", "rate", "default")
    meta("vus", "gauge", "default")
    meta("iterations", "counter", "default")
    for off, ep, dur, bad in zip(offsets, names, durations, failed, strict=True):
        t = iso(k6_start + timedelta(seconds=float(off)))
        status = "500" if bad else "200"
        tags = {
            "name": str(ep),
            "method": "GET" if ep == "/health" else "POST",
            "status": status,
            "scenario": "default",
            "group": "",
            "proto": "HTTP/1.1",
            "expected_response": "false" if bad else "true",
            "url": f"http://127.0.0.1:1{ep}",
        }
        d = float(dur)  # k6: duration = sending + waiting + receiving
        for metric, value in (
            ("http_reqs", 1.0),
            ("http_req_duration", d),
            ("http_req_blocked", 0.01),
            ("http_req_connecting", 0.0),
            ("http_req_tls_handshaking", 0.0),
            ("http_req_sending", d * 0.02),
            ("http_req_waiting", d * 0.95),
            ("http_req_receiving", d * 0.03),
            ("http_req_failed", 1.0 if bad else 0.0),
        ):
            lines.append(
                {
                    "type": "Point",
                    "metric": metric,
                    "data": {"time": t, "value": value, "tags": tags},
                }
            )
        lines.append(
            {
                "type": "Point",
                "metric": "checks",
                "data": {
                    "time": t,
                    "value": 0.0 if bad else 1.0,
                    "tags": {"check": "status is 200", "scenario": "default", "group": ""},
                },
            }
        )
        lines.append(
            {
                "type": "Point",
                "metric": "iterations",
                "data": {"time": t, "value": 1.0, "tags": {"scenario": "default", "group": ""}},
            }
        )
    for s in range(int(duration_s)):
        lines.append(
            {
                "type": "Point",
                "metric": "vus",
                "data": {
                    "time": iso(k6_start + timedelta(seconds=s)),
                    "value": float(min(5, s + 1)),
                    "tags": {},
                },
            }
        )

    def trend(values: np.ndarray) -> dict[str, float]:
        return {
            "avg": float(values.mean()),
            "min": float(values.min()),
            "med": float(np.percentile(values, 50)),
            "max": float(values.max()),
            "p(90)": float(np.percentile(values, 90)),
            "p(95)": float(np.percentile(values, 95)),
            "p(99)": float(np.percentile(values, 99)),
        }

    k6_secs = duration_s
    summary = {
        "metrics": {
            "http_req_duration": trend(durations),
            "http_req_waiting": trend(durations * 0.95),
            "http_reqs": {"count": requests, "rate": requests / k6_secs},
            "iterations": {"count": requests, "rate": requests / k6_secs},
            "http_req_failed": {
                "passes": int(failed.sum()),
                "fails": int((~failed).sum()),
                "value": float(failed.mean()),
            },
            "checks": {
                "passes": int((~failed).sum()),
                "fails": int(failed.sum()),
                "value": float((~failed).mean()),
            },
            "vus": {"value": 5, "min": 1, "max": 5},
        }
    }
    n = int(duration_s) + 2
    mem = np.linspace(120.0, memory_peak_mb, n) + rng.normal(0, 2, n)
    mem[-1] = memory_peak_mb
    samples = [
        {
            "time": start + timedelta(seconds=i),
            "memory_used_mb": float(mem[i]),
            "memory_limit_mb": float(memory_mb),
            "cpu_pct": float(rng.uniform(10, 60)),
            "cpu_throttled_pct": 0.0,
            "source": "local",
        }
        for i in range(n)
    ]
    events: list[Event] = []
    if oom:
        half = start + timedelta(seconds=duration_s / 2)
        events += [
            ("oom_killed", {"rss_mb": memory_mb}, half),
            ("restart", {}, half + timedelta(seconds=1)),
        ]
    events.append(("k6_exit", {"code": 0}, end - timedelta(seconds=1)))
    return write_run_dir(
        root / name,
        manifest,
        samples=samples,
        events=events,
        k6_lines=lines,
        summary=summary,
        service_log="INFO Step 1: fetch lead (12 ms)\n",
    )


def make_partial_run(
    root: Path,
    name: str,
    *,
    share: float,
    status: str = "interrupted",
    **kwargs: object,
) -> RunDir:
    """A run stopped after ``share`` of its profile: :func:`make_run`'s run cut at
    ``k6 start + share × duration``. ``status="interrupted"`` is a Ctrl-C (the manifest's
    final status, an ``interrupted`` event); ``"running"`` is a run killed hard, whose manifest
    never got its end (no ``k6_ended_at``/``ended_at``)."""
    run = make_run(root, name, **kwargs)  # type: ignore[arg-type]
    m = run.manifest
    k6_start = datetime.fromisoformat(m["k6_started_at"].replace("Z", "+00:00"))
    planned = max(s["start_s"] + s["duration_s"] for s in m["stages"])
    cut = k6_start + timedelta(seconds=share * planned)
    # k6 points, samples and events after the cut never happened
    with gzip.open(run.path / "k6.ndjson.gz", "rt", encoding="utf-8") as fh:
        lines = [json.loads(x) for x in fh]
    kept = [
        x
        for x in lines
        if x["type"] == "Metric"
        or datetime.fromisoformat(x["data"]["time"].replace("Z", "+00:00")) <= cut
    ]
    with gzip.open(run.path / "k6.ndjson.gz", "wt", encoding="utf-8") as fh:
        for x in kept:
            fh.write(json.dumps(x, separators=(",", ":")) + "\n")
    head, *rows = run.samples_path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = [
        r for r in rows if datetime.fromisoformat(r.split(",")[0].replace("Z", "+00:00")) <= cut
    ]
    run.samples_path.write_text(head + "".join(rows), encoding="utf-8")
    run.events_path.write_text("", encoding="utf-8")
    log = EventLog(run.events_path)
    if status == "interrupted":
        log.record("interrupted", {"during": "k6"}, time=cut)
        m["k6_ended_at"] = iso(cut)
        m["ended_at"] = iso(cut + timedelta(seconds=1))
        m["exit"] = {"status": "interrupted", "k6": 0, "service": None, "message": "Ctrl-C"}
    else:
        del m["k6_ended_at"], m["ended_at"]
        m["exit"] = {"status": status, "k6": None, "service": None, "message": ""}
    log.close()
    run.save_manifest()
    return run


class RunFactory:
    """Synthetic run directories under one root (the ``make_run`` fixture in tests/conftest.py
    roots it in the test's tmp_path): ``make_run(name, **kw)`` a complete run,
    ``make_run.partial(name, share=…, **kw)`` a run stopped part-way,
    ``make_run.write(name, manifest, …)`` a run of chosen files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, name: str = "run", **kwargs: Any) -> RunDir:
        return make_run(self.root, name, **kwargs)

    def partial(self, name: str = "run", **kwargs: Any) -> RunDir:
        return make_partial_run(self.root, name, **kwargs)

    def write(self, name: str, manifest: dict, **kwargs: Any) -> RunDir:
        return write_run_dir(self.root / name, manifest, **kwargs)
