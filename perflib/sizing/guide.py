"""The guide's sizing numbers (docs/guide.md) and the thresholds the rules read from the SLO file."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from perflib.analysis.slo import SloError, SloFile, default_slos
from perflib.analysis.steps import UPSTREAM_STEPS as _UPSTREAM_STEPS
from perflib.errors import PerflibError

# ----------------------------------------------------------------- the guide's numbers
BUFFER = 1.3  #: Optimization Checklist: "Add 30% buffer for safety margin"


SMALL_PRESET_MB = 512  #: the size that rule governs (and anything smaller)


HA_INSTANCES = 2  #: Option 2: "fly scale count 2" — "Costs: 2x the resources"


POOL_MB_PER_CONNECTION = (5.0, 10.0)  #: "Each connection uses ~5-10 MB"


DEFAULT_CURRENT = "shared-cpu-1x:1024mb"  #: the guide's "Current Configuration"


GUIDE_VM_MB = 1024  #: the VM the guide's thresholds were written for


SERVICE_POOL_DEFAULT = 10  #: service/settings.py db_pool_size


#: Service steps that wait on an upstream: perflib.analysis.steps.UPSTREAM_STEPS (one home)
UPSTREAM_STEPS = _UPSTREAM_STEPS


#: "CPU far below 70 %" (perflib's choice, not the guide's): p95 of cpu_pct per vCPU under
#: this fraction of the guide's Option 3 threshold (the SLO file's ``cpu_sustained``).
CPU_HEADROOM_FRACTION = 0.5


GUIDE_OPTION_1_MB = 512  #: Scaling Options, Option 1: "Reduce to 512 MB"


GUIDE_PRODUCTION_H = 24.0  #: Option 1: "No OOM kills after 24h of production traffic"


G = "Guide"  # citation prefix


MIB = 1024 * 1024


class SizingError(PerflibError, ValueError):
    """Bad input to the recommender (missing/empty samples, unknown preset...)."""


@dataclass(frozen=True)
class Limits:
    """The guide's thresholds the rules apply, read from the SLO file (``data/slo.toml``) so
    that analysis and sizing judge a run by the same numbers: a span above a level is
    "sustained" at ``settings.sustained_s``, a gap over ``settings.max_gap_s`` breaks it."""

    memory_mb: float  #: memory_sustained threshold — "Memory consistently >800 MB"
    cpu_pct: float  #: cpu_sustained threshold — Option 3: "CPU consistently >70%"
    p95_ms: float  #: scale_up_p95 — "When to scale up: p95 latency >3s"
    safe_512_peak_mb: float  #: memory_512_safe — Option 1: "Peak memory <400 MB"
    sustained_s: float
    cpu_full_pct: float  #: settings.cpu_full_pct — CPU "at 100 %" from this level
    max_gap_s: float

    @classmethod
    def from_slos(cls, slos: SloFile | None = None) -> Limits:
        """The limits of ``slos`` (default: the shipped file); an SLO the file lacks takes
        the shipped file's value."""
        f = slos or default_slos()
        base = default_slos()

        def target(slo_id: str) -> float:
            src = f if any(x.id == slo_id for x in f.slo) else base
            return float(src.resolved_target(src.get(slo_id)))

        def threshold(kind: Literal["memory_sustained", "cpu_sustained"]) -> float:
            try:
                return f.sustained_threshold(kind)
            except SloError:
                return base.sustained_threshold(kind)

        return cls(
            memory_mb=threshold("memory_sustained"),
            cpu_pct=threshold("cpu_sustained"),
            p95_ms=target("scale_up_p95"),
            safe_512_peak_mb=target("memory_512_safe"),
            sustained_s=f.settings.sustained_s,
            cpu_full_pct=f.settings.cpu_full_pct,
            max_gap_s=f.settings.max_gap_s,
        )

    @property
    def cpu_headroom_pct(self) -> float:
        return self.cpu_pct * CPU_HEADROOM_FRACTION


def _r(x: float | None, nd: int = 1) -> float | None:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return None
    return round(float(x), nd)
