"""Service-level objectives: the versioned SLO file and the verdict rules.

The targets live in ``data/slo.toml`` (every number of the performance guide) so that users
change a target by editing a file, not code. This module only loads and validates that file;
the measuring is :func:`perflib.analysis.slo_verdicts`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from perflib.errors import PerflibError
from perflib.tooling import REPO_ROOT

#: The SLO file shipped with the lab.
DEFAULT_SLO_PATH = REPO_ROOT / "data" / "slo.toml"
#: Versions of the file format this code reads.
SUPPORTED_VERSIONS = (1,)

Verdict = Literal["pass", "warn", "alert", "critical", "no data"]
#: Verdicts in increasing severity (``no data`` is not a failure: nothing was measured).
SEVERITY: dict[str, int] = {"no data": 0, "pass": 0, "warn": 1, "alert": 2, "critical": 3}

Kind = Literal[
    "latency",  # percentile of http_req_duration (endpoint regex, optional stages)
    "step_latency",  # percentile of a service "Step N" timing from service.log
    "error_rate",  # % of requests with http_req_failed = 1
    "throughput",  # requests per second over the k6 window
    "memory",  # idle / load / peak MB
    "memory_sustained",  # longest span (s) above `threshold` MB
    "oom",  # number of OOM kills
    "cpu",  # avg / p95 % of one vCPU under load
    "cpu_sustained",  # longest span (s) above `threshold` %
    "saturation",  # dropped_iterations
    "leak",  # low end of the 95 % CI of the memory slope (MB/min)
]
Op = Literal["<", "<=", ">", ">="]

_STATS: dict[str, set[str]] = {
    "memory": {"idle", "load", "peak"},
    "cpu": {"avg", "p95"},
}


class SloError(PerflibError, ValueError):
    """The SLO file is missing, unreadable or invalid (the message names file and key)."""


class Settings(BaseModel):
    """Analysis knobs the SLO verdicts depend on (kept in the same file so they travel together)."""

    model_config = ConfigDict(extra="forbid")

    sustained_s: float = Field(60.0, gt=0)
    max_gap_s: float = Field(5.0, gt=0)
    bucket: str = "10s"
    cpu_full_pct: float = Field(98.0, gt=0)
    memory_thresholds_mb: list[float] = Field(default_factory=lambda: [500.0, 700.0, 800.0])
    leak_min_mb_per_min: float = 1.0
    leak_min_window_s: float = Field(300.0, ge=0)
    equivalence_margin_pct: float = Field(10.0, gt=0)
    equivalence_alpha: float = Field(0.05, gt=0, lt=0.5)
    throttled_min_s: float = Field(1.0, ge=0)

    @field_validator("bucket")
    @classmethod
    def _bucket_is_offset(cls, v: str) -> str:
        import pandas as pd

        try:
            if pd.Timedelta(v) <= pd.Timedelta(0):
                raise ValueError
        except ValueError as exc:
            raise ValueError(f"bucket {v!r} is not a positive duration like '10s'") from exc
        return v


class Slo(BaseModel):
    """One objective: what to measure (kind + selectors) and the levels that judge it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    title: str = ""
    kind: Kind
    unit: str = ""
    source: str = ""
    # selectors
    endpoint: str | None = None  # regex searched in k6's `name` tag; None = every request
    stages: list[str] | None = None  # only requests ending inside these stages
    step: int | None = None  # step_latency: the service's Step N
    stat: str | None = None  # p95 / p99.9 / avg / idle / load / peak …
    threshold: float | None = None  # *_sustained: the level the span is measured above
    profiles: list[str] | None = None  # only runs of these profiles (else the SLO is skipped)
    enabled: bool = True
    # levels
    op: Op = "<"
    target: float | None = None
    alert: float | None = None
    critical: float | None = None
    on_miss: Literal["warn", "alert", "critical"] | None = None

    @field_validator("endpoint")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        import re

        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(
                    f"endpoint {v!r} is not a valid regular expression: {exc}"
                ) from exc
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Slo:
        for name in ("target", "alert", "critical", "threshold"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number")
        if self.kind in ("latency", "step_latency"):
            stat = self.stat or "p95"
            if percentile_of(stat) is None and stat not in ("avg", "max"):
                raise ValueError(f"stat {stat!r}: use p<N> (e.g. p95, p99.9), avg or max")
        if self.kind == "step_latency" and self.step is None:
            raise ValueError("kind 'step_latency' needs `step` (the service's Step N)")
        if self.kind in _STATS and (self.stat or "") not in _STATS[self.kind]:
            raise ValueError(f"kind {self.kind!r} needs stat in {sorted(_STATS[self.kind])}")
        if self.kind in ("memory_sustained", "cpu_sustained") and self.threshold is None:
            raise ValueError(f"kind {self.kind!r} needs `threshold`")
        if self.target is None and self.kind not in ("memory_sustained", "cpu_sustained", "leak"):
            raise ValueError("`target` is required")
        # alert/critical must lie beyond the target in the failing direction.
        upward = self.op in ("<", "<=")
        levels = [v for v in (self.target, self.alert, self.critical) if v is not None]
        ordered = sorted(levels) if upward else sorted(levels, reverse=True)
        if levels != ordered:
            raise ValueError(
                "levels must be ordered target, alert, critical in the failing direction "
                f"(op {self.op!r})"
            )
        return self


class SloFile(BaseModel):
    """The whole SLO file."""

    model_config = ConfigDict(extra="forbid")

    version: int
    settings: Settings = Field(default_factory=Settings)
    slo: list[Slo] = Field(default_factory=list)
    path: str | None = None  # where it was loaded from (filled by load_slos)

    @field_validator("version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"unsupported SLO file version {v} (this perflib reads {SUPPORTED_VERSIONS})"
            )
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> SloFile:
        seen: set[str] = set()
        for s in self.slo:
            if s.id in seen:
                raise ValueError(f"duplicate SLO id {s.id!r}")
            seen.add(s.id)
        return self

    def get(self, slo_id: str) -> Slo:
        for s in self.slo:
            if s.id == slo_id:
                return s
        raise KeyError(slo_id)

    def resolved_target(self, slo: Slo) -> float:
        """The target, defaulting the duration/leak kinds to the file's settings."""
        if slo.target is not None:
            return slo.target
        if slo.kind == "leak":
            return self.settings.leak_min_mb_per_min
        return self.settings.sustained_s

    def sustained_threshold(self, kind: Literal["memory_sustained", "cpu_sustained"]) -> float:
        """The lowest ``threshold`` of the enabled SLOs of ``kind`` — the level sizing's
        "consistently above" rules and the memory summary measure spans above (800 MB and
        70 % in data/slo.toml). Raises SloError when the file has no such SLO."""
        levels = [s.threshold for s in self.slo if s.kind == kind and s.enabled and s.threshold]
        if not levels:
            raise SloError(
                f"{self.path}: no enabled SLO of kind {kind!r} (its threshold is needed)"
            )
        return float(min(levels))


def percentile_of(stat: str) -> float | None:
    """``"p95"`` → 95.0, ``"p(99.9)"`` → 99.9, ``"med"`` → 50; None when not a percentile."""
    s = stat.strip().lower()
    if s in ("med", "median", "p50"):
        return 50.0
    if s.startswith("p"):
        body = s[1:].strip("()")
        try:
            value = float(body)
        except ValueError:
            return None
        return value if 0 <= value <= 100 else None
    return None


def parse_slos(data: Mapping[str, Any], *, origin: str = "<memory>") -> SloFile:
    """Validate an already-parsed SLO mapping; errors name the origin and the offending key."""
    try:
        slos = SloFile.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if err["loc"][:1] == ("slo",) and len(err["loc"]) > 1:
                idx = err["loc"][1]
                with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
                    loc = f"slo[{idx}] (id={data['slo'][idx].get('id')!r}) " + ".".join(
                        str(p) for p in err["loc"][2:]
                    )
            problems.append(f"  {loc}: {err['msg']}")
        raise SloError(f"{origin}: invalid SLO file\n" + "\n".join(problems)) from None
    slos.path = origin
    return slos


def load_slos(path: str | Path | None = None) -> SloFile:
    """Load and validate an SLO file (default ``data/slo.toml``)."""
    p = Path(path) if path is not None else DEFAULT_SLO_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SloError(f"{p}: cannot read SLO file ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SloError(f"{p}: not valid TOML ({exc})") from None
    return parse_slos(data, origin=str(p))


@functools.cache
def default_slos() -> SloFile:
    """The shipped SLO file (``data/slo.toml``), loaded once: the defaults of every knob that
    a function takes as ``None`` (gap limit, sustained span, thresholds)."""
    return load_slos(None)


def judge(measured: float | None, slo: Slo, target: float) -> str:
    """The verdict of one measured value against an SLO's levels.

    Rules (docs/analysis.md): ``critical`` when measured is beyond ``critical``, ``alert``
    beyond ``alert`` (both strictly, "Alert: >5%"), ``pass`` when ``measured op target``
    holds, otherwise ``on_miss`` (default ``warn`` when an alert level exists, else ``alert``).
    """
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return "no data"
    upward = slo.op in ("<", "<=")

    def beyond(level: float | None) -> bool:
        return level is not None and (measured > level if upward else measured < level)

    if beyond(slo.critical):
        return "critical"
    if beyond(slo.alert):
        return "alert"
    ok = {
        "<": measured < target,
        "<=": measured <= target,
        ">": measured > target,
        ">=": measured >= target,
    }[slo.op]
    if ok:
        return "pass"
    if slo.on_miss is not None:
        return slo.on_miss
    return "warn" if slo.alert is not None else "alert"


def worst(verdicts: list[str]) -> str:
    """The most severe verdict of a list (``pass`` for an empty one)."""
    return max(verdicts, key=lambda v: SEVERITY.get(v, 0), default="pass")
