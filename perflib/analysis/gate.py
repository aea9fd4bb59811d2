"""The deploy gate: a smoke run's GO / NO-GO, and whether a red gate only says that the guide's
threshold sits below the upstream floor.

The guide runs a smoke test after every deployment and expects "all requests complete in
< 3 s (p95)" (docs/guide.md#k6-profiles-and-thresholds). Each enrichment request waits on
three upstream APIs (Steps 1, 2, 3 and 6 of service.log); their summed time per request is a
floor no VM size can lower. :func:`upstream_floor` measures it: the p95 of all requests the
service would show if its own work took 0 ms (each enrichment request's upstream steps from
service.log, every other k6 request as 0 ms). When that floor is at or above the threshold and
the latency threshold is the only thing that failed, the gate says so instead of a bare NO-GO.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perflib.analysis.steps import UPSTREAM_STEPS
from perflib.stats import percentile

#: The SLO whose target is the smoke test's latency threshold, and its percentile.
SMOKE_P95_ID = "smoke_p95"
FLOOR_PERCENTILE = 95.0


@dataclass(frozen=True)
class UpstreamFloor:
    """The p95 that upstream waits alone impose on a run's requests."""

    floor_ms: float  # p95 of all requests with the service's own work at 0 ms
    own_p95_ms: float  # p95 per enrichment request of the service's own steps
    enrichment_requests: int  # requests with Step timings (ids) in service.log
    other_requests: int  # k6 requests without upstream work, counted as 0 ms
    steps: tuple[int, ...]
    upstreams: str | None  # the run's manifest "upstreams" (the lab's emulator profile)

    @property
    def where(self) -> str:
        if self.upstreams in ("nominal", "degraded"):
            return (
                f"here the lab's '{self.upstreams}' upstream emulators, so the floor is their "
                "configured latency"
            )
        return "the real upstream APIs"


def upstream_floor(analysis: Any) -> UpstreamFloor | None:
    """The floor from the run's Step timings (None without per-request ids in service.log)."""
    steps = getattr(analysis, "steps", None)
    if steps is None or len(steps) == 0 or steps["request"].isna().all():
        return None
    per = steps[steps["request"].notna()]
    wide = per.pivot_table(index="request", columns="step", values="ms", aggfunc="sum")
    wide = wide.fillna(0.0)
    up_cols = [c for c in wide.columns if int(c) in UPSTREAM_STEPS]
    own_cols = [c for c in wide.columns if int(c) not in UPSTREAM_STEPS]
    upstream = wide[up_cols].sum(axis=1).to_numpy(dtype="float64")
    own = wide[own_cols].sum(axis=1).to_numpy(dtype="float64")
    n_k6 = len(getattr(analysis, "requests", []))
    others = max(n_k6 - len(upstream), 0)
    floor = percentile(np.concatenate([upstream, np.zeros(others)]), FLOOR_PERCENTILE)
    manifest = analysis.run.manifest if getattr(analysis, "run", None) is not None else {}
    return UpstreamFloor(
        floor_ms=float(floor),
        own_p95_ms=float(percentile(own, FLOOR_PERCENTILE)) if own.size else 0.0,
        enrichment_requests=len(upstream),
        other_requests=others,
        steps=tuple(sorted(int(c) for c in up_cols)),
        upstreams=manifest.get("upstreams") or None,
    )


def checks_table(run: Any) -> pd.DataFrame:
    """k6 ``checks`` per check name: passes, fails and pass rate (the smoke test's asserts)."""
    cols = ["check", "passes", "fails", "pass_rate_pct"]
    if not run.k6_outputs:
        return pd.DataFrame(columns=cols)
    from perflib import ingest as k6

    pts = k6.read_points(run.path, metrics=["checks"])
    if pts.empty:
        return pd.DataFrame(columns=cols)
    g = pts.groupby(pts["check"].astype("string"), observed=True)["value"]
    out = pd.DataFrame({"passes": g.sum(), "total": g.count()})
    out["fails"] = out["total"] - out["passes"]
    out["pass_rate_pct"] = 100.0 * out["passes"] / out["total"]
    out = out.reset_index(names="check")
    out[["passes", "fails"]] = out[["passes", "fails"]].astype("int64")
    return out[cols]


@dataclass
class DeployGate:
    """A smoke run's deploy decision with what blocks it and what only is noted."""

    run: str
    blocking: list[str]
    notes: list[str]
    threshold_ms: float | None  # the smoke p95 target (SLO file)
    measured_ms: float | None  # the smoke p95 measured
    floor: UpstreamFloor | None
    threshold_only: bool  # the p95 threshold is the only thing that failed
    checks: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    @property
    def go(self) -> bool:
        return not self.blocking

    @property
    def below_floor(self) -> bool:
        """Red only because the guide's threshold is below the measured upstream floor."""
        return (
            self.threshold_only
            and self.floor is not None
            and self.threshold_ms is not None
            and self.floor.floor_ms >= self.threshold_ms
        )

    @property
    def headline(self) -> str:
        if self.go:
            return f"GO ({self.run}): every smoke expectation of the guide is met"
        if not self.below_floor:
            return f"NO-GO ({self.run}): " + "; ".join(self.blocking)
        f = self.floor
        assert f is not None and self.threshold_ms is not None  # below_floor says so
        steps = ", ".join(map(str, f.steps))
        return (
            f"NO-GO ({self.run}) only because the guide's smoke threshold (p95 < "
            f"{self.threshold_ms:,.0f} ms) is below the upstream floor: with the service's own "
            f"work at 0 ms the p95 of all requests would still be {f.floor_ms:,.0f} ms (measured "
            f"{self.measured_ms:,.0f} ms). The floor is the upstream Steps {steps} summed per "
            f"request in service.log ({f.enrichment_requests} enrichment requests, "
            f"{f.other_requests} others at 0 ms) — {f.where}; the service's own steps take "
            f"p95 {f.own_p95_ms:,.0f} ms. No VM size passes this gate; the threshold, or the "
            "upstreams, must change."
        )


def deploy_gate(analysis: Any, checks: pd.DataFrame | None = None) -> DeployGate:
    """GO / NO-GO from a smoke run (:class:`~perflib.analysis.RunAnalysis`).

    Blocking: the run did not exit cleanly, a k6 check failed, no request was recorded, a
    verdict is *critical*, or an SLO scoped to this run's profile (the guide's smoke
    expectations: p95 < 3 s, errors < 5 %, /health always succeeds) is at *alert*. Other
    alerts (e.g. the database step p95) are notes: a smoke run of a few requests is no basis
    to judge them. ``checks``: the run's k6 checks (default: read with :func:`checks_table`).
    """
    run = analysis.run
    blocking: list[str] = []
    notes: list[str] = []
    latency_only = True  # every blocker is the p95 threshold (or k6 failing on it)
    exit_ = (run.manifest.get("exit") or {}).get("status")
    k6_threshold = exit_ == "thresholds_failed"
    if exit_ not in ("ok", None):
        blocking.append(f"run exit status is {exit_!r}")
        latency_only &= k6_threshold
    checks = checks_table(run) if checks is None else checks
    for row in checks[checks["fails"] > 0].itertuples():
        blocking.append(f"check {row.check!r} failed {row.fails} of {row.passes + row.fails} times")
        latency_only = False
    gate_ids = {s.id for s in analysis.slos.slo if s.profiles and analysis.profile in s.profiles}
    v = analysis.verdicts
    measured = None
    p95_blocks = False
    if len(v):
        for row in v[v["verdict"].isin(["alert", "critical"])].itertuples():
            text = f"{row.title}: {row.verdict} (measured {row.measured:.4g} {row.unit})"
            if row.verdict == "critical" or row.id in gate_ids:
                blocking.append(text)
                latency_only &= row.id == SMOKE_P95_ID
                p95_blocks |= row.id == SMOKE_P95_ID
            else:
                notes.append(f"note (not blocking): {text}")
        hit = v[v["id"] == SMOKE_P95_ID]
        if len(hit):
            measured = float(hit["measured"].iloc[0])
    if len(analysis.requests) == 0:
        blocking.append("no requests recorded")
        latency_only = False
    try:
        slo = analysis.slos.get(SMOKE_P95_ID)
        threshold = float(analysis.slos.resolved_target(slo))
    except KeyError:
        threshold = None
    return DeployGate(
        run=run.name,
        blocking=blocking,
        notes=notes,
        threshold_ms=threshold,
        measured_ms=measured,
        floor=upstream_floor(analysis),
        threshold_only=latency_only and p95_blocks,
        checks=checks,
    )
