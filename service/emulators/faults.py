"""Seeded fault engine: latency, errors, hangs, rate limits and credit quotas per route.

Why: the lab must show how the service behaves when its upstreams are slow, flaky or
throttling, reproducibly and offline. Each emulator owns one :class:`FaultEngine` built from
an :class:`UpstreamConfig` (a named profile, then partial updates through
``PUT /_emulator/config``). Per request the engine makes one cheap decision
(:meth:`FaultEngine.decide`): a few float operations, no allocation beyond the result.

Latency model. Upstream latencies are right-skewed, so each route draws from a lognormal
fitted to two published quantiles (p50, p95) and clipped to [min, max]:
``mu = ln(p50)`` and ``sigma = ln(p95 / p50) / z_0.95`` with ``z_0.95 = Φ⁻¹(0.95) ≈ 1.6449``,
because a lognormal's p-quantile is ``exp(mu + sigma · z_p)`` (NIST/SEMATECH e-Handbook of
Statistical Methods §1.3.6.6.9, "Lognormal Distribution"; Wikipedia "Log-normal
distribution", quantile function).

Figures and where each comes from: ``docs/emulators.md#sources`` (C2S, Diretrix and Work
latencies from the original service's public docs; error rates, hangs, quotas, buckets and the
end-to-end budget are our choices); the same page has the table and the reasons behind the
nominal rate limits.
"""

from __future__ import annotations

import math
import os
import random
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Z95 = NormalDist().inv_cdf(0.95)  # 1.6448536269514722
PROFILES = ("nominal", "degraded")
UPSTREAMS = ("c2s", "diretrix", "work")

LATENCY_SCALE_ENV = "EMULATOR_LATENCY_SCALE"

# Override values accepted in the X-Emulator-Scenario header (besides the lead scenarios).
FAULT_OVERRIDES = ("ok", "error", "hang", "rate_limited", "quota_exhausted", "slow")


def env_latency_scale() -> float:
    """``EMULATOR_LATENCY_SCALE`` (default 1.0); a clear error for a bad value."""
    raw = os.environ.get(LATENCY_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{LATENCY_SCALE_ENV} must be a number >= 0, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{LATENCY_SCALE_ENV} must be a number >= 0, got {raw!r}")
    return value


# --- configuration models -------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LatencyConfig(_Model):
    """Latency distribution in milliseconds (before ``latency_scale``)."""

    dist: Literal["lognormal", "fixed"] = "lognormal"
    p50: float = Field(400.0, gt=0)
    p95: float = Field(1500.0, gt=0)
    min: float = Field(0.0, ge=0)
    max: float = Field(60_000.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LatencyConfig:
        if self.p95 < self.p50:
            raise ValueError(f"p95 ({self.p95}) must be >= p50 ({self.p50})")
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self

    @property
    def mu(self) -> float:
        return math.log(self.p50)

    @property
    def sigma(self) -> float:
        """Lognormal shape fitted to (p50, p95): ln(p95/p50) / 1.6449."""
        return math.log(self.p95 / self.p50) / Z95


class RateLimitConfig(_Model):
    """Token bucket per credential: ``rate_per_s`` refill, ``burst`` capacity."""

    rate_per_s: float = Field(gt=0)
    burst: float = Field(1.0, ge=1)
    status: int = Field(429, ge=400, le=599)
    retry_after_s: float | None = Field(
        None, ge=0, description="fixed Retry-After; None = time until the next token"
    )
    body: dict[str, Any] = Field(default_factory=lambda: {"error": "Too Many Requests"})


class QuotaConfig(_Model):
    """Work API credits per token; each billable lookup spends one."""

    credits: int | None = Field(10_000, ge=0, description="None = unlimited")
    http_status: int = Field(200, ge=100, le=599)


class RouteConfig(_Model):
    """Per-route overrides; ``None`` inherits the upstream-wide value."""

    latency_ms: LatencyConfig | None = None
    error_rate: float | None = Field(None, ge=0, le=1)
    error_statuses: dict[int, float] | None = None
    hang_rate: float | None = Field(None, ge=0, le=1)
    hang_ms: float | None = Field(None, ge=0)
    rate_limit: RateLimitConfig | None = None

    @field_validator("error_statuses")
    @classmethod
    def _statuses(cls, value: dict[int, float] | None) -> dict[int, float] | None:
        return None if value is None else _check_statuses(value)


def _check_statuses(value: dict[int, float]) -> dict[int, float]:
    if not value:
        raise ValueError("error_statuses must not be empty")
    for status, weight in value.items():
        if not 400 <= status <= 599:
            raise ValueError(f"error status {status} is not a 4xx/5xx code")
        if weight < 0:
            raise ValueError(f"weight of {status} must be >= 0")
    if sum(value.values()) <= 0:
        raise ValueError("error_statuses weights must sum to > 0")
    return value


class UpstreamConfig(_Model):
    """Everything one emulator's fault engine needs; PUT merges partial updates into it."""

    upstream: Literal["c2s", "diretrix", "work"]
    profile: str = "nominal"
    latency_scale: float = Field(1.0, ge=0, description="multiplies every latency draw")
    latency_ms: LatencyConfig = Field(default_factory=LatencyConfig)
    error_rate: float = Field(0.0, ge=0, le=1)
    error_statuses: dict[int, float] = Field(
        default_factory=lambda: {500: 0.5, 502: 0.25, 503: 0.25}
    )
    hang_rate: float = Field(0.0, ge=0, le=1)
    hang_ms: float = Field(35_000.0, ge=0, description="not scaled: must outlast client timeouts")
    rate_limit: RateLimitConfig | None = None
    quota: QuotaConfig | None = None  # Work API only
    not_found_mode: Literal["empty", "404", "400"] = "empty"  # Diretrix only
    routes: dict[str, RouteConfig] = Field(default_factory=dict)

    @field_validator("error_statuses")
    @classmethod
    def _statuses(cls, value: dict[int, float]) -> dict[int, float]:
        return _check_statuses(value)


# --- profiles -------------------------------------------------------------------------------
C2S_GET = "GET /integration/leads/{id}"
C2S_LIST = "GET /integration/leads"
C2S_MESSAGE = "POST /integration/leads/{id}/create_message"
DIRETRIX_PHONE = "GET /Consultas/Pessoa/Telefone/{phone}"
DIRETRIX_EMAIL = "GET /Consultas/Pessoa/Email/{email}"
DIRETRIX_CPF = "GET /Consultas/Pessoa/{cpf}"
WORK_API = "GET /api"

ROUTES: dict[str, tuple[str, ...]] = {
    "c2s": (C2S_GET, C2S_LIST, C2S_MESSAGE),
    "diretrix": (DIRETRIX_PHONE, DIRETRIX_EMAIL, DIRETRIX_CPF),
    "work": (WORK_API,),
}

# Sources (docs/emulators.md#sources): C2S GET p50≈300-500/p95≈1.5 s [our estimate], message
# send ~1-2 s, lead creation 500-1500 ms with a 3.9 s case [original's docs]; Diretrix 500-800 ms
# typical, up to 2 s, 2-5 s for phone+email [original's docs]; Work 400-700 ms measured, 1-2 s,
# 3-10 s per CPF, >30 s tails [original's docs]; error/hang/rate/quota figures and the degraded
# shape [ours, docs/emulators.md#our-choices].
_PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    # nominal = the upstreams behaving as measured (our budget, docs/emulators.md#our-choices: the
    # <5 s p95 target is met only when Work behaves like the 400-700 ms measurements): Work p50 550/p95 900, Diretrix
    # "500-800 ms typical", C2S message "~1-2 s". The slow tails (Work 3-10 s, >30 s hangs,
    # Diretrix 2-5 s) belong to `degraded`. Chained, nominal gives an enrichment p95 of about
    # 4.4 s (docs/emulators.md shows the simulation); degraded 8-15 s as the budget expects.
    "nominal": {
        "c2s": {
            "latency_ms": {"p50": 400, "p95": 1000, "min": 30, "max": 8000},
            "error_rate": 0.01,
            # Far above a 20-VU run's ~20 C2S calls/s; the real C2S limit is unpublished.
            "rate_limit": {"rate_per_s": 50, "burst": 100, "retry_after_s": 60},
            "routes": {
                C2S_MESSAGE: {"latency_ms": {"p50": 1000, "p95": 1800, "min": 100, "max": 8000}}
            },
        },
        "diretrix": {
            "latency_ms": {"p50": 650, "p95": 1500, "min": 50, "max": 10000},
            "error_rate": 0.02,
            "not_found_mode": "empty",
            "rate_limit": None,  # none known (docs/emulators.md#diretrix); enable through PUT or `degraded`
        },
        "work": {
            "latency_ms": {"p50": 550, "p95": 900, "min": 100, "max": 40000},
            "error_rate": 0.01,
            "hang_rate": 0.0,
            # A 0.5/s bucket would mirror a client-side courtesy spacing, not a server
            # limit; nominal keeps headroom for ~10 enrichments/s (see docs/emulators.md).
            "rate_limit": {"rate_per_s": 20, "burst": 40},
            "quota": {"credits": 1_000_000, "http_status": 200},
        },
    },
    "degraded": {
        "c2s": {
            "latency_ms": {"p50": 500, "p95": 1500, "min": 50, "max": 10000},
            "error_rate": 0.03,
            "rate_limit": {"rate_per_s": 2, "burst": 5, "retry_after_s": 60},
            "routes": {
                C2S_MESSAGE: {"latency_ms": {"p50": 1200, "p95": 2500, "min": 200, "max": 10000}}
            },
        },
        "diretrix": {
            "latency_ms": {"p50": 1000, "p95": 2500, "min": 100, "max": 15000},
            "error_rate": 0.05,
            "not_found_mode": "empty",
            "rate_limit": {"rate_per_s": 5, "burst": 10},
        },
        "work": {
            "latency_ms": {"p50": 4000, "p95": 8000, "min": 500, "max": 40000},
            "error_rate": 0.05,
            "hang_rate": 0.02,
            "hang_ms": 35000,
            "rate_limit": {"rate_per_s": 0.5, "burst": 1},
            "quota": {"credits": 10_000, "http_status": 200},
        },
    },
}


def profile_config(upstream: str, profile: str = "nominal", **overrides: Any) -> UpstreamConfig:
    """The named profile's config for one upstream, with top-level ``overrides`` applied."""
    if upstream not in UPSTREAMS:
        raise ValueError(f"unknown upstream {upstream!r}; expected one of {', '.join(UPSTREAMS)}")
    if profile not in _PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    data = {"upstream": upstream, "profile": profile, **_PROFILES[profile][upstream], **overrides}
    return UpstreamConfig.model_validate(data)


# Tables that a patch replaces whole: merging weights or bodies key by key would surprise.
REPLACED_WHOLE = frozenset({"error_statuses", "body"})


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``patch`` into ``base``; ``None`` replaces (e.g. disables a limit)."""
    out = dict(base)
    for key, value in patch.items():
        if (
            key not in REPLACED_WHOLE
            and isinstance(value, Mapping)
            and isinstance(out.get(key), Mapping)
        ):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merge_config(config: UpstreamConfig, patch: Mapping[str, Any]) -> UpstreamConfig:
    """Validated copy of ``config`` with a partial update (raises pydantic.ValidationError)."""
    if "upstream" in patch and patch["upstream"] != config.upstream:
        raise ValueError(f"cannot change upstream {config.upstream!r} to {patch['upstream']!r}")
    unknown = set(patch.get("routes") or {}) - set(ROUTES[config.upstream])
    if unknown:
        raise ValueError(
            f"unknown route(s) {sorted(unknown)}; {config.upstream} routes are "
            f"{list(ROUTES[config.upstream])}"
        )
    merged = deep_merge(config.model_dump(mode="json"), patch)
    merged["routes"] = {k: v for k, v in (merged.get("routes") or {}).items() if v is not None}
    return UpstreamConfig.model_validate(merged)


# --- runtime --------------------------------------------------------------------------------
@dataclass(slots=True)
class Decision:
    """What to do with one request: ``kind`` in ok|error|hang|rate_limited|quota_exhausted."""

    kind: str
    delay_s: float = 0.0
    status: int = 200
    retry_after_s: float = 0.0


@dataclass(slots=True)
class _Route:
    """A route's effective settings, resolved once per config change."""

    latency: LatencyConfig
    mu: float
    sigma: float
    error_rate: float
    statuses: tuple[int, ...]
    cum_weights: tuple[float, ...]
    hang_rate: float
    hang_s: float
    rate_limit: RateLimitConfig | None
    bucket_scope: str  # "" = upstream-wide bucket, else the route's own


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


# Latency histogram bucket upper bounds (ms) for /_emulator/stats.
HIST_BOUNDS_MS: tuple[float, ...] = (
    10, 25, 50, 100, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500,
    10000, 15000, 20000, 30000, 40000, math.inf,
)  # fmt: skip


@dataclass(slots=True)
class RouteStats:
    calls: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    rate_limited: int = 0
    errors: int = 0
    hangs: int = 0
    quota_exhausted: int = 0
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0
    latency_hist: list[int] = field(default_factory=lambda: [0] * len(HIST_BOUNDS_MS))

    def as_dict(self) -> dict[str, Any]:
        n = sum(self.latency_hist)
        return {
            "calls": self.calls,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "rate_limited": self.rate_limited,
            "errors": self.errors,
            "hangs": self.hangs,
            "quota_exhausted": self.quota_exhausted,
            "latency_ms": {
                "count": n,
                "mean": round(self.latency_sum_ms / n, 3) if n else None,
                "max": round(self.latency_max_ms, 3) if n else None,
                "p50_le": _hist_quantile(self.latency_hist, 0.50),
                "p95_le": _hist_quantile(self.latency_hist, 0.95),
                "buckets": {
                    ("+Inf" if math.isinf(b) else f"{b:g}"): c
                    for b, c in zip(HIST_BOUNDS_MS, self.latency_hist, strict=True)
                },
            },
        }


def _hist_quantile(hist: list[int], q: float) -> float | None:
    """Upper bound of the bucket holding the q-quantile (Prometheus-style, no interpolation)."""
    n = sum(hist)
    if not n:
        return None
    rank, seen = q * n, 0
    for bound, count in zip(HIST_BOUNDS_MS, hist, strict=True):
        seen += count
        if seen >= rank:
            return None if math.isinf(bound) else bound
    return None  # pragma: no cover


class FaultEngine:
    """Per-upstream fault decisions plus the counters behind ``/_emulator/stats``."""

    def __init__(self, config: UpstreamConfig, seed: int = 42) -> None:
        self.seed = seed
        self._initial = config
        self.config = config
        self.reset(keep_config=False)

    # -- configuration ---------------------------------------------------------------------
    def reset(self, keep_config: bool = True) -> None:
        """Fresh RNG, buckets, quotas and stats; the starting config unless ``keep_config``."""
        if not keep_config:
            self.config = self._initial
        # crc32, not hash(): str hashes are salted per process and would break determinism.
        self.rng = random.Random(self.seed * 1_000_003 + zlib.crc32(self.config.upstream.encode()))
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._credits_used: dict[str, int] = {}
        self.stats: dict[str, RouteStats] = {}
        self.started_at = time.time()
        self._resolve()

    def update(self, patch: Mapping[str, Any]) -> UpstreamConfig:
        self.config = merge_config(self.config, patch)
        self._resolve()
        return self.config

    def _resolve(self) -> None:
        cfg = self.config
        self._routes: dict[str, _Route] = {}
        for name in ROUTES[cfg.upstream]:
            rc = cfg.routes.get(name) or RouteConfig()
            latency = rc.latency_ms or cfg.latency_ms
            statuses = rc.error_statuses or cfg.error_statuses
            total = sum(statuses.values())
            cum, acc = [], 0.0
            for weight in statuses.values():
                acc += weight / total
                cum.append(acc)
            self._routes[name] = _Route(
                latency=latency,
                mu=latency.mu,
                sigma=latency.sigma,
                error_rate=cfg.error_rate if rc.error_rate is None else rc.error_rate,
                statuses=tuple(statuses),
                cum_weights=tuple(cum),
                hang_rate=cfg.hang_rate if rc.hang_rate is None else rc.hang_rate,
                hang_s=(cfg.hang_ms if rc.hang_ms is None else rc.hang_ms) / 1000.0,
                rate_limit=rc.rate_limit or cfg.rate_limit,
                bucket_scope=name if rc.rate_limit else "",
            )

    # -- sampling --------------------------------------------------------------------------
    def sample_latency_ms(self, route: str, *, scaled: bool = True) -> float:
        """One latency draw for ``route`` in ms (clipped, then × latency_scale if ``scaled``)."""
        r = self._routes[route]
        lat = r.latency
        value = lat.p50 if lat.dist == "fixed" else self.rng.lognormvariate(r.mu, r.sigma)
        value = min(max(value, lat.min), lat.max)
        return value * self.config.latency_scale if scaled else value

    def _take_token(self, route: _Route, route_name: str, credential: str) -> float:
        """0.0 if a token was taken, else seconds until the next one (token bucket)."""
        limit = route.rate_limit
        if limit is None:
            return 0.0
        key = (route.bucket_scope, credential)
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(limit.burst, now)
        else:
            bucket.tokens = min(
                limit.burst, bucket.tokens + (now - bucket.stamp) * limit.rate_per_s
            )
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / limit.rate_per_s

    def decide(self, route: str, credential: str, override: str | None = None) -> Decision:
        """Rate limit, then hang, then error, then latency; ``override`` forces one outcome."""
        r = self._routes[route]
        wait = 1.0 if override == "rate_limited" else self._take_token(r, route, credential)
        if wait > 0.0:
            limit = r.rate_limit
            status = limit.status if limit else 429
            retry = limit.retry_after_s if limit and limit.retry_after_s is not None else wait
            return Decision("rate_limited", 0.0, status, retry)
        if override == "ok":
            return Decision("ok", self.sample_latency_ms(route) / 1000.0)
        if override == "slow":
            return Decision("ok", r.latency.max * self.config.latency_scale / 1000.0)
        rng = self.rng
        if override == "hang" or (r.hang_rate and rng.random() < r.hang_rate):
            return Decision("hang", r.hang_s, 504)
        if override == "error" or (r.error_rate and rng.random() < r.error_rate):
            u = rng.random()
            status = r.statuses[-1]
            for s, c in zip(r.statuses, r.cum_weights, strict=True):
                if u <= c:
                    status = s
                    break
            return Decision("error", self.sample_latency_ms(route) / 1000.0, status)
        return Decision("ok", self.sample_latency_ms(route) / 1000.0)

    # -- quota (Work API) ------------------------------------------------------------------
    def spend_credit(self, credential: str) -> bool:
        """Spend one credit; False when the token's quota is exhausted."""
        quota = self.config.quota
        if quota is None or quota.credits is None:
            return True
        used = self._credits_used.get(credential, 0)
        if used >= quota.credits:
            return False
        self._credits_used[credential] = used + 1
        return True

    def credits_remaining(self, credential: str) -> int | None:
        quota = self.config.quota
        if quota is None or quota.credits is None:
            return None
        return max(0, quota.credits - self._credits_used.get(credential, 0))

    # -- stats -----------------------------------------------------------------------------
    def record(self, route: str, status: int, kind: str, delay_s: float) -> None:
        st = self.stats.get(route)
        if st is None:
            st = self.stats[route] = RouteStats()
        st.calls += 1
        st.statuses[status] = st.statuses.get(status, 0) + 1
        if kind == "rate_limited":
            st.rate_limited += 1
        elif kind == "hang":
            st.hangs += 1
        elif kind == "quota_exhausted":
            st.quota_exhausted += 1
        if status >= 500 or kind == "error":
            st.errors += 1
        ms = delay_s * 1000.0
        st.latency_sum_ms += ms
        st.latency_max_ms = max(st.latency_max_ms, ms)
        for i, bound in enumerate(HIST_BOUNDS_MS):
            if ms <= bound:
                st.latency_hist[i] += 1
                break

    def stats_dict(self) -> dict[str, Any]:
        routes = {name: st.as_dict() for name, st in sorted(self.stats.items())}
        return {
            "upstream": self.config.upstream,
            "profile": self.config.profile,
            "seed": self.seed,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "totals": {
                "calls": sum(s.calls for s in self.stats.values()),
                "rate_limited": sum(s.rate_limited for s in self.stats.values()),
                "errors": sum(s.errors for s in self.stats.values()),
                "hangs": sum(s.hangs for s in self.stats.values()),
            },
            "routes": routes,
        }
