"""Runs of one profile at several presets, side by side (the report's centrepiece)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from perflib.cost import (
    monthly_cost,
    resolve_price_set,
)
from perflib.fly.presets import Preset
from perflib.rundir import jsonable
from perflib.sizing.evidence import (
    RunEvidence,
    _as_evidence,
)
from perflib.sizing.guide import (
    BUFFER,
    SizingError,
    _r,
)
from perflib.sizing.recommend import (
    Recommendation,
    recommend,
)
from perflib.sizing.rules import (
    _side,
    compare_latency,
)

# ----------------------------------------------------------------- preset comparison


@dataclass
class PresetComparison:
    """Runs of one profile at several presets, side by side (the report's centrepiece)."""

    table: pd.DataFrame  # one row per run
    baseline: str  # label of the run the others are compared with (largest memory)
    latency: dict[str, Any]  # label -> compare_runs result (or why it is missing)
    recommendation: Recommendation
    price_set: str
    region: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        rows = json.loads(self.table.to_json(orient="records"))
        return {
            "profile": self.table["profile"].iloc[0] if len(self.table) else None,
            "baseline": self.baseline,
            "price_set": self.price_set,
            "region": self.region,
            "runs": rows,
            "latency_comparison": jsonable(
                {
                    k: {kk: vv for kk, vv in v.items() if kk != "object"}
                    for k, v in self.latency.items()
                }
            ),
            "recommendation": self.recommendation.to_dict(),
            "warnings": self.warnings,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)


def _preset(r: RunEvidence) -> Preset:
    """The run's VM preset (:func:`compare_presets` refuses runs without one first)."""
    if r.preset is None:
        raise SizingError(f"{r.label}: no VM preset in its manifest")
    return r.preset


def compare_presets(
    runs: Iterable[Any],
    *,
    region: str = "iad",
    price_set: str | None = None,
    current: str | None = None,
    latency: bool = True,
) -> PresetComparison:
    """Compare runs of the same profile at two or more presets: memory peak/p95 against each
    limit (headroom), OOM kills, error rate, p95 latency (+ the analysis module's Δp95 CI),
    monthly cost of each and the saving against the largest."""
    ev = _as_evidence(runs)
    if len(ev) < 2:
        raise SizingError("compare needs at least two runs (e.g. one at 1024mb, one at 512mb)")
    missing = [r.label for r in ev if r.preset is None]
    if missing:
        raise SizingError(f"runs without a VM preset in their manifest: {', '.join(missing)}")
    profiles = {r.profile for r in ev}
    if len(profiles) > 1:
        raise SizingError(
            f"runs of different profiles cannot be compared: {sorted(map(str, profiles))}"
        )
    warnings: list[str] = []
    if len({r.preset for r in ev}) < 2:
        warnings.append("all runs use the same preset: this compares repeats, not sizes")
    warnings += setup_differences(ev)
    ps = resolve_price_set(price_set)
    ordered = sorted(
        ev, key=lambda r: (_preset(r).memory_mb, _preset(r).cpus, r.label), reverse=True
    )
    base = ordered[0]
    base_cost = monthly_cost(_preset(base), 1, region, price_set=ps.name)
    rows = []
    for r in ordered:
        lim = float(_preset(r).memory_mb)
        cost = monthly_cost(_preset(r), 1, region, price_set=ps.name)
        rows.append(
            {
                "run": r.label,
                "profile": r.profile,
                "preset": _preset(r).name,
                "memory_limit_mb": lim,
                "peak_memory_mb": _r(r.peak_mb),
                "p95_memory_mb": _r(r.p95_memory_mb),
                "headroom_mb": _r(lim - r.peak_mb),
                "headroom_pct": _r((lim - r.peak_mb) / lim * 100),
                "peak_over_limit_pct": _r(r.peak_mb / lim * 100),
                "required_mb": _r(r.peak_mb * BUFFER),
                "fits_with_buffer": bool(r.peak_mb * BUFFER <= lim),
                "oom_kills": r.oom_count,
                "restarts": r.restarts,
                "p95_latency_ms": _r(r.p95_ms),
                "error_rate": _r(r.error_rate, 5) if r.error_rate is not None else None,
                "req_rate": _r(r.req_rate, 3),
                "exit_status": r.exit_status,
                "monthly_cost_usd": cost,
                "saving_vs_baseline_usd": round(base_cost - cost, 2),
                "saving_vs_baseline_pct": _r((base_cost - cost) / base_cost * 100),
            }
        )
    table = pd.DataFrame(rows)
    lat: dict[str, Any] = {}
    for r in ordered[1:]:
        if latency and base.run is not None and r.run is not None:
            lat[r.label] = compare_latency(_side(base), _side(r))
        else:
            lat[r.label] = {"available": False, "reason": "no run directories"}
    rec = recommend(
        ev,
        region=region,
        price_set=ps.name,
        current=current or _preset(base).name,
        latency_check=latency,
        latency=lat,
    )
    warnings = rec.warnings + warnings  # partial-run caveats first
    return PresetComparison(table, base.label, lat, rec, ps.name, region, warnings)


#: Manifest settings that must match for two runs' figures to be comparable.
_SETUP_KEYS: tuple[tuple[str, str], ...] = (
    ("time scale", "time_scale"),
    ("upstream profile", "upstreams"),
    ("k6 version", "versions.k6"),
    ("load-profile stages", "stages"),
)


def _manifest_value(run: RunEvidence, dotted: str) -> Any:
    value: Any = run.run.manifest if run.run is not None else {}
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    if dotted == "stages" and value:  # the shape, not incidental keys
        return tuple((s.get("start_s"), s.get("duration_s"), s.get("target")) for s in value)
    return value


def setup_differences(runs: Sequence[RunEvidence]) -> list[str]:
    """One warning per manifest setting that differs between runs (time scale, upstream
    profile, k6 version, stages): a difference in latency or memory may come from it, not
    from the preset."""
    out = []
    for what, key in _SETUP_KEYS:
        values = {r.label: _manifest_value(r, key) for r in runs if r.run is not None}
        if len({json.dumps(v, default=str, sort_keys=True) for v in values.values()}) > 1:
            shown = (
                "differ"
                if key == "stages"
                else ", ".join(
                    f"{label}: {v if v is not None else 'unknown'}" for label, v in values.items()
                )
            )
            out.append(
                f"the runs differ in {what} ({shown}): differences in the figures may come "
                "from that, not from the preset"
            )
    return out
