"""Fly.io Machine prices and the monthly cost model.

Prices live in ``data/fly_pricing.csv`` (one row per price set × preset × memory step × region
where a figure was published), ``data/fly_price_sets.csv`` (per-set constants and sources),
``data/fly_regions.csv`` (region multipliers and egress groups) and ``data/fly_egress.csv``.

The machine prices are derived with Fly's own calculator formula (superfly/flyio-price-calc-ex,
see ``/work/shared/reference/fly.md`` §4)::

    per 30 days = region multiplier × (CPU part + RAM $/GB × GB)
    CPU part    = $0.695 per shared vCPU, $21 per performance vCPU

rounded to cents the way JavaScript's ``toFixed(2)`` does (half up on the binary double; this
is why shared-cpu-1x 256 MB is $1.94, not $1.95). Where Fly published a figure that differs
from the formula by a cent (e.g. shared-cpu-2x 4 GB $21.40 vs 21.39), the published figure is
kept and the row says so (``published = true``, ``formula_usd`` beside it).

"Month" means 30 days = 720 h, as Fly bills. MB means MiB, as Fly's ``memory_mb`` does.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from perflib.errors import PerflibError
from perflib.tooling import REPO_ROOT

DATA_DIR = REPO_ROOT / "data"
PRICING_CSV = DATA_DIR / "fly_pricing.csv"
PRICE_SETS_CSV = DATA_DIR / "fly_price_sets.csv"
REGIONS_CSV = DATA_DIR / "fly_regions.csv"
EGRESS_CSV = DATA_DIR / "fly_egress.csv"

HOURS_PER_MONTH = 720.0  #: Fly's "per month" = 30 days (fly.md §4)
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0  # 2,592,000
GIB = 1024**3

#: Presets in the table (fly.md §1: shared 256..2048 MB per vCPU in 256 MB steps,
#: performance 2048..8192 MB per vCPU in 2048 MB steps).
SHARED_CPUS = (1, 2, 4, 8)
PERFORMANCE_CPUS = (1, 2, 4, 8, 16)
#: Every size Fly offers (fly.md §1), priced or not: what a VM emulation may be asked for.
FLY_SHARED_CPUS = (1, 2, 4, 6, 8)
FLY_PERFORMANCE_CPUS = (1, 2, 4, 6, 8, 10, 12, 14, 16)


class PricingError(PerflibError, ValueError):
    """Unknown preset, memory size, region or price set (the message says which and why)."""


class PresetError(PricingError):
    """A string that does not name a Fly Machine size (or a memory size that is not one)."""


# --------------------------------------------------------------------------- presets


@dataclass(frozen=True, order=True)
class Preset:
    """A Fly Machine size: CPU kind, vCPU count and memory (MiB)."""

    cpu_kind: str  # "shared" | "performance"
    cpus: int
    memory_mb: int

    @property
    def size(self) -> str:
        """Fly's size name, e.g. ``shared-cpu-1x`` or ``performance-2x``."""
        prefix = "shared-cpu" if self.cpu_kind == "shared" else "performance"
        return f"{prefix}-{self.cpus}x"

    @property
    def name(self) -> str:
        """Canonical spelling used everywhere in perflib: ``shared-cpu-1x:512mb``."""
        return f"{self.size}:{self.memory_mb}mb"

    @property
    def memory_gb(self) -> float:
        return self.memory_mb / 1024

    @property
    def cpu_capacity(self) -> float:
        """Guaranteed vCPU share (fly.md §4: shared = 1/16 core per vCPU baseline)."""
        return self.cpus * (1.0 if self.cpu_kind == "performance" else 0.0625)

    def __str__(self) -> str:
        return self.name

    def valid_memory_steps(self) -> list[int]:
        return memory_steps(self.cpu_kind, self.cpus)

    @property
    def fly_valid(self) -> bool:
        """Whether Fly sells this memory for this size (off-grid sizes are for experiments)."""
        return self.memory_mb in memory_steps(self.cpu_kind, self.cpus)

    def is_at_least(self, other: Preset) -> bool:
        """At least as much memory and CPU as ``other`` (performance beats shared)."""
        return (
            self.memory_mb >= other.memory_mb
            and self.cpus >= other.cpus
            and _kind_rank(self.cpu_kind) >= _kind_rank(other.cpu_kind)
        )

    def is_larger_than(self, other: Preset) -> bool:
        """At least as big as ``other`` in every dimension and bigger in one."""
        return self.is_at_least(other) and self != other


def _kind_rank(kind: str) -> int:
    return 1 if kind == "performance" else 0


def memory_steps(cpu_kind: str, cpus: int) -> list[int]:
    """Valid memory sizes (MiB) for a CPU kind and count (fly.md §1)."""
    if cpu_kind == "shared":
        return list(range(256 * cpus, 2048 * cpus + 1, 256))
    if cpu_kind == "performance":
        return list(range(2048 * cpus, 8192 * cpus + 1, 2048))
    raise PricingError(f"unknown cpu_kind {cpu_kind!r} (expected 'shared' or 'performance')")


_SIZE_RE = re.compile(r"^(?:(shared)-cpu|(performance))-(\d+)x$")
_MEM_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(mb|m|mib|gb|g|gib)?$")


def parse_memory_mb(text: str | int | float) -> int:
    """``512mb`` / ``1gb`` / ``1024`` → MiB (Fly reads a bare number as MB)."""
    if isinstance(text, int | float):
        return int(text)
    m = _MEM_RE.match(text.strip().lower())
    if not m:
        raise PresetError(f"cannot read memory size {text!r} (expected e.g. 512mb, 1gb, 1024)")
    value = float(m.group(1))
    unit = m.group(2) or "mb"
    mb = value * 1024 if unit.startswith("g") else value
    if mb != int(mb):
        raise PresetError(f"memory size {text!r} is not a whole number of MB")
    return int(mb)


def parse_preset(
    spec: str | Preset, memory_mb: int | None = None, *, strict: bool = True
) -> Preset:
    """Read ``shared-cpu-1x:512mb``, ``shared-cpu-1x@1024MB``, ``performance-2x`` (preset
    memory), ``shared-cpu-1x`` + ``memory_mb``.

    ``strict`` (pricing): the size must be in the price table and the memory on Fly's grid.
    Not strict (the VM emulation): any size Fly offers and any whole number of MB, so an
    experiment can ask for e.g. ``shared-cpu-1x:64mb``; :attr:`Preset.fly_valid` tells.
    """
    if isinstance(spec, Preset):
        return spec
    text = spec.strip().lower()
    size, _, mem = text.replace("@", ":").partition(":")
    m = _SIZE_RE.match(size.strip())
    if not m:
        raise PresetError(
            f"unknown preset {spec!r}: expected shared-cpu-Nx or performance-Nx, "
            "optionally with ':<memory>' (e.g. shared-cpu-1x:512mb)"
        )
    kind = "shared" if m.group(1) else "performance"
    cpus = int(m.group(3))
    if strict:
        valid_cpus = SHARED_CPUS if kind == "shared" else PERFORMANCE_CPUS
    else:
        valid_cpus = FLY_SHARED_CPUS if kind == "shared" else FLY_PERFORMANCE_CPUS
    if cpus not in valid_cpus:
        raise PresetError(f"unknown preset {spec!r}: {kind} CPUs must be one of {valid_cpus}")
    if mem.strip():
        mb = parse_memory_mb(mem)
    elif memory_mb is not None:
        mb = int(memory_mb)
    else:
        mb = (256 if kind == "shared" else 2048) * cpus  # the preset's own memory
    if mb < 1:
        raise PresetError(f"invalid memory for {size}: {mb} MB; it must be a whole MB >= 1")
    steps = memory_steps(kind, cpus)
    if strict and mb not in steps:
        raise PresetError(
            f"invalid memory for {size}: {mb} MB; Fly allows {steps[0]}..{steps[-1]} MB "
            f"in steps of {steps[1] - steps[0] if len(steps) > 1 else steps[0]} MB"
        )
    return Preset(kind, cpus, mb)


def all_presets() -> list[Preset]:
    """Every preset × memory step in the table, in price order within each kind."""
    out = [Preset("shared", n, mb) for n in SHARED_CPUS for mb in memory_steps("shared", n)]
    out += [
        Preset("performance", n, mb)
        for n in PERFORMANCE_CPUS
        for mb in memory_steps("performance", n)
    ]
    return out


# --------------------------------------------------------------------------- price sets


@dataclass(frozen=True)
class PriceSet:
    """Constants of one dated set of Fly prices."""

    name: str
    effective_date: str
    status: str  # confirmed | reported
    ram_usd_per_gb: float  # per 30 days
    shared_cpu_usd: float  # per vCPU per 30 days
    performance_cpu_usd: float
    rootfs_usd_per_gb: float  # stopped machines, per 30 days
    source: str
    note: str = ""


def js_round2(x: float) -> float:
    """Round to cents like JavaScript's ``Number.prototype.toFixed(2)`` (Fly's calculator is
    JS): half up on the exact binary value of the double."""
    return float(Decimal(x).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def formula_price(ps: PriceSet, preset: Preset, multiplier: float = 1.0) -> float:
    """Unrounded $/30 d from Fly's calculator formula."""
    cpu_unit = ps.shared_cpu_usd if preset.cpu_kind == "shared" else ps.performance_cpu_usd
    return multiplier * (cpu_unit * preset.cpus + ps.ram_usd_per_gb * preset.memory_gb)


# Published / quoted figures (fly.md §4). Keyed by price set -> (region, preset) -> $/30 d.
PUBLISHED: dict[str, dict[tuple[str, str], float]] = {
    "2025-08-19": {
        ("iad", "shared-cpu-1x:256mb"): 1.94,
        ("iad", "shared-cpu-1x:512mb"): 3.19,
        ("iad", "shared-cpu-1x:1024mb"): 5.70,
        ("iad", "shared-cpu-1x:2048mb"): 10.70,
        ("iad", "shared-cpu-2x:512mb"): 3.89,
        ("iad", "shared-cpu-2x:1024mb"): 6.39,
        ("iad", "shared-cpu-2x:2048mb"): 11.39,
        ("iad", "shared-cpu-2x:4096mb"): 21.40,
        ("iad", "shared-cpu-4x:1024mb"): 7.78,
        ("iad", "shared-cpu-4x:2048mb"): 12.78,
        ("iad", "shared-cpu-4x:4096mb"): 22.78,
        ("iad", "shared-cpu-4x:8192mb"): 42.79,
        ("iad", "shared-cpu-8x:2048mb"): 15.55,
        ("iad", "shared-cpu-8x:4096mb"): 25.56,
        ("iad", "shared-cpu-8x:8192mb"): 45.57,
        ("iad", "shared-cpu-8x:16384mb"): 85.59,
        ("iad", "performance-1x:2048mb"): 31.00,
        ("iad", "performance-1x:4096mb"): 41.01,
        ("iad", "performance-1x:8192mb"): 61.02,
        ("iad", "performance-2x:4096mb"): 62.00,
        ("iad", "performance-2x:8192mb"): 82.01,
        ("iad", "performance-2x:16384mb"): 122.03,
        ("iad", "performance-4x:8192mb"): 124.00,
        ("iad", "performance-8x:16384mb"): 248.00,
        ("iad", "performance-16x:32768mb"): 496.01,
        ("iad", "performance-16x:131072mb"): 976.25,
        # other regions in the same snapshot
        ("ams", "shared-cpu-1x:256mb"): 2.02,
        ("ams", "shared-cpu-1x:512mb"): 3.32,
        ("ams", "shared-cpu-1x:1024mb"): 5.92,
        ("ams", "shared-cpu-1x:2048mb"): 11.11,
        ("ams", "performance-1x:2048mb"): 32.19,
        ("arn", "shared-cpu-1x:256mb"): 2.02,
        ("arn", "shared-cpu-1x:512mb"): 3.32,
        ("arn", "shared-cpu-1x:1024mb"): 5.92,
        ("arn", "shared-cpu-1x:2048mb"): 11.11,
        ("arn", "performance-1x:2048mb"): 32.19,
        ("bom", "shared-cpu-1x:256mb"): 2.09,
        ("yul", "shared-cpu-1x:256mb"): 2.17,
        ("yyz", "shared-cpu-1x:256mb"): 2.17,
        # fly.io/docs/about/cost-management, 2025-10-23
        ("sjc", "shared-cpu-1x:256mb"): 2.32,
    },
    "2026-10-01": {
        ("iad", "shared-cpu-1x:256mb"): 2.19,
        ("iad", "shared-cpu-2x:512mb"): 4.39,
        ("iad", "shared-cpu-4x:1024mb"): 8.78,
        ("iad", "shared-cpu-8x:2048mb"): 17.55,
        ("iad", "shared-cpu-2x:2048mb"): 13.39,
        ("iad", "performance-1x:2048mb"): 33.00,
        ("iad", "performance-2x:4096mb"): 66.00,
        ("iad", "performance-16x:32768mb"): 528.02,
    },
}

#: Short source of the published rows (full sources: data/fly_price_sets.csv).
_PUBLISHED_SOURCE = {
    ("2025-08-19", "*"): "fly.io/docs/about/pricing (rendered 2025-08-19)",
    ("2025-08-19", "sjc"): "fly.io/docs/about/cost-management (2025-10-23)",
    ("2026-10-01", "*"): "third-party notes 2026-10-06..08 (reported)",
}


@cache
def load_price_sets(path: Path = PRICE_SETS_CSV) -> dict[str, PriceSet]:
    """Every known price set, keyed by name (its effective date)."""
    df = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    out: dict[str, PriceSet] = {}
    for row in df.to_dict("records"):
        out[row["price_set"]] = PriceSet(
            name=row["price_set"],
            effective_date=row["effective_date"],
            status=row["status"],
            ram_usd_per_gb=float(row["ram_usd_per_gb_30d"]),
            shared_cpu_usd=float(row["shared_cpu_usd_per_vcpu_30d"]),
            performance_cpu_usd=float(row["performance_cpu_usd_per_vcpu_30d"]),
            rootfs_usd_per_gb=float(row["rootfs_usd_per_gb_30d"]),
            source=row["source"],
            note=row.get("note", ""),
        )
    return out


def resolve_price_set(price_set: str | None = None) -> PriceSet:
    """A price set by name/date; None = the newest. Unknown names raise PricingError."""
    sets = load_price_sets()
    if price_set is None or str(price_set).strip().lower() in ("", "newest", "latest"):
        return sets[max(sets, key=lambda k: sets[k].effective_date)]
    key = str(price_set).strip()
    if key not in sets:
        raise PricingError(f"unknown price set {key!r}; known: {', '.join(sorted(sets))}")
    return sets[key]


@cache
def _regions(path: Path = REGIONS_CSV) -> pd.DataFrame:
    return pd.read_csv(path, comment="#", dtype={"region": str, "egress_group": str})


@cache
def _egress(path: Path = EGRESS_CSV) -> pd.DataFrame:
    return pd.read_csv(path, comment="#")


def regions() -> pd.DataFrame:
    """Region code, multiplier, egress group (fly.md §4)."""
    return _regions().copy()


@cache
def _multipliers() -> dict[str, float]:
    r = _regions()
    return dict(zip(r["region"], r["multiplier"].astype(float), strict=True))


def region_multiplier(region: str) -> float:
    m = _multipliers()
    key = region.strip().lower()
    if key not in m:
        raise PricingError(f"unknown region {region!r}; known: {', '.join(m)}")
    return m[key]


@cache
def _egress_rates() -> dict[str, tuple[float, float]]:
    """region → (internet, private) $/GB, built once: a lookup must not filter DataFrames."""
    groups = {
        g: (float(i), float(p))
        for g, i, p in zip(
            _egress()["egress_group"],
            _egress()["internet_usd_per_gb"],
            _egress()["private_usd_per_gb"],
            strict=True,
        )
    }
    r = _regions()
    return {reg: groups[g] for reg, g in zip(r["region"], r["egress_group"], strict=True)}


def egress_usd_per_gb(region: str, private: bool = False) -> float:
    """Egress $/GB for the region's group (to the internet unless ``private``)."""
    hit = _egress_rates().get(region.strip().lower())
    if hit is None:
        raise PricingError(f"unknown region {region!r}")
    return hit[1] if private else hit[0]


# --------------------------------------------------------------------------- the table


def generate_price_table() -> pd.DataFrame:
    """The machine price table as written to data/fly_pricing.csv (formula + published)."""
    rows: list[dict[str, Any]] = []
    for ps in sorted(load_price_sets().values(), key=lambda p: p.effective_date):
        published = PUBLISHED.get(ps.name, {})
        keys: list[tuple[str, Preset]] = [("iad", p) for p in all_presets()]
        keys += [(region, parse_preset(name)) for (region, name) in published if region != "iad"]
        for region, preset in keys:
            mult = region_multiplier(region)
            formula = js_round2(formula_price(ps, preset, mult))
            pub = published.get((region, preset.name))
            src = _PUBLISHED_SOURCE.get(
                (ps.name, region), _PUBLISHED_SOURCE.get((ps.name, "*"), ps.source)
            )
            note = ""
            if pub is not None and abs(pub - formula) > 0.004:
                note = f"published {pub:.2f} differs from formula {formula:.2f}; published kept"
            rows.append(
                {
                    "price_set": ps.name,
                    "effective_date": ps.effective_date,
                    "status": ps.status,
                    "region": region,
                    "preset": preset.name,
                    "size": preset.size,
                    "cpu_kind": preset.cpu_kind,
                    "cpus": preset.cpus,
                    "memory_mb": preset.memory_mb,
                    "usd_per_30d": pub if pub is not None else formula,
                    "formula_usd_per_30d": formula,
                    "published": pub is not None,
                    "source": src if pub is not None else f"formula, price set {ps.name}",
                    "note": note,
                }
            )
    return pd.DataFrame(rows)


HEADER = """\
# Fly.io Machine prices per 30 days (USD), one row per price set x region x preset x memory.
# Generated by `python -m perflib.pricing --write`; checked by tests/test_pricing.py.
# usd_per_30d = Fly's published/quoted figure where one exists (published=true), else the
# calculator formula: multiplier x (CPU part + RAM $/GB x GB), rounded like JS toFixed(2).
# formula_usd_per_30d is the formula's figure beside it; `note` flags cent-level differences.
# Price-set constants and sources: data/fly_price_sets.csv. Regions: data/fly_regions.csv.
# Only iad rows are listed for every preset; other regions = multiplier x formula.
"""


def write_price_table(path: Path = PRICING_CSV) -> Path:
    df = generate_price_table()
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(HEADER)
        df.to_csv(fh, index=False, quoting=csv.QUOTE_MINIMAL, float_format="%.2f")
    for f in (_load_all_prices, _price_index, _machine_price):
        f.cache_clear()
    return path


@cache
def _load_all_prices(path: Path = PRICING_CSV) -> pd.DataFrame:
    df = pd.read_csv(path, comment="#", keep_default_na=False, dtype={"price_set": str})
    df["published"] = df["published"].astype(str).str.lower().eq("true")
    return df


def load_prices(price_set: str | None = None) -> pd.DataFrame:
    """The price table of one price set (None = newest), with ``usd_per_hour`` added."""
    ps = resolve_price_set(price_set)
    df = _load_all_prices()
    out = df[df["price_set"] == ps.name].copy().reset_index(drop=True)
    out["usd_per_hour"] = out["usd_per_30d"] / HOURS_PER_MONTH
    return out


@cache
def _price_index() -> dict[tuple[str, str, str], float]:
    """(price set, region, preset) → $/30 d for every row of the table (fast lookups)."""
    t = _load_all_prices()
    return {
        (ps, region, preset): float(usd)
        for ps, region, preset, usd in zip(
            t["price_set"], t["region"], t["preset"], t["usd_per_30d"], strict=True
        )
    }


@cache
def _machine_price(name: str, region: str, ps_name: str) -> float:
    hit = _price_index().get((ps_name, region, name))
    if hit is not None:
        return hit
    ps = load_price_sets()[ps_name]
    return js_round2(formula_price(ps, parse_preset(name), region_multiplier(region)))


def machine_price(preset: str | Preset, region: str = "iad", price_set: str | None = None) -> float:
    """$/30 d for one started Machine: the published figure where one exists, else the
    formula with the region multiplier (what Fly's calculator shows)."""
    p = parse_preset(preset)
    ps = resolve_price_set(price_set)
    region = region.strip().lower()
    region_multiplier(region)  # unknown regions raise here
    return _machine_price(p.name, region, ps.name)


# --------------------------------------------------------------------------- cost model


@dataclass(frozen=True)
class CostBreakdown:
    """Monthly (30-day) cost of a deployment, split by what Fly bills for."""

    preset: str
    instances: int
    region: str
    price_set: str
    machine_usd: float  # one started Machine for 30 days
    compute_usd: float  # all instances x started fraction
    started_fraction: float
    rootfs_gb: float
    rootfs_usd: float  # stopped time only ($0.15/GB per 30 d)
    egress_gb: float
    egress_usd_per_gb: float
    egress_usd: float
    total_usd: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cost_breakdown(
    preset: str | Preset,
    instances: int = 1,
    region: str = "iad",
    *,
    price_set: str | None = None,
    egress_gb: float = 0.0,
    started_fraction: float = 1.0,
    rootfs_gb: float = 1.0,
) -> CostBreakdown:
    """Monthly cost: instances × machine price × started fraction, + rootfs of stopped time
    (fly.md §4: stopped Machines pay only rootfs, $0.15/GB per 30 d), + egress to the internet
    at the region group's rate (inbound is free)."""
    if instances < 1:
        raise PricingError(f"instances must be >= 1, got {instances}")
    if not 0.0 <= started_fraction <= 1.0:
        raise PricingError(f"started_fraction must be in [0, 1], got {started_fraction}")
    if egress_gb < 0 or rootfs_gb < 0:
        raise PricingError("egress_gb and rootfs_gb must be >= 0")
    p = parse_preset(preset)
    ps = resolve_price_set(price_set)
    machine = machine_price(p, region, ps.name)
    compute = machine * instances * started_fraction
    rootfs = ps.rootfs_usd_per_gb * rootfs_gb * instances * (1.0 - started_fraction)
    rate = egress_usd_per_gb(region)
    egress = egress_gb * rate
    total = js_round2(compute + rootfs + egress)
    return CostBreakdown(
        preset=p.name,
        instances=instances,
        region=region.strip().lower(),
        price_set=ps.name,
        machine_usd=machine,
        compute_usd=js_round2(compute),
        started_fraction=started_fraction,
        rootfs_gb=rootfs_gb,
        rootfs_usd=js_round2(rootfs),
        egress_gb=egress_gb,
        egress_usd_per_gb=rate,
        egress_usd=js_round2(egress),
        total_usd=total,
    )


def monthly_cost(
    preset: str | Preset,
    instances: int = 1,
    region: str = "iad",
    *,
    price_set: str | None = None,
    egress_gb: float = 0.0,
    started_fraction: float = 1.0,
    rootfs_gb: float = 1.0,
) -> float:
    """Total $ per 30 days (see :func:`cost_breakdown` for the parts)."""
    return cost_breakdown(
        preset,
        instances,
        region,
        price_set=price_set,
        egress_gb=egress_gb,
        started_fraction=started_fraction,
        rootfs_gb=rootfs_gb,
    ).total_usd


def monthly_egress_gb(
    bytes_sent: float,
    duration_s: float,
    *,
    monthly_requests: float | None = None,
    requests: float | None = None,
) -> float:
    """Scale bytes the service sent during a run (k6 ``data_received``) to a 30-day volume
    in GB (10^9 bytes, as bandwidth is billed): per request × ``monthly_requests`` when given,
    else the run's byte rate sustained for 30 days (an upper bound for a load test)."""
    if bytes_sent < 0 or duration_s <= 0:
        raise PricingError("bytes_sent must be >= 0 and duration_s > 0")
    if monthly_requests is not None:
        if not requests:
            raise PricingError("monthly_requests needs the run's request count")
        return bytes_sent / requests * monthly_requests / 1e9
    return bytes_sent / duration_s * SECONDS_PER_MONTH / 1e9


def cost_per_million_requests(
    monthly_usd: float,
    requests_per_s: float,
    *,
    egress_bytes_per_request: float = 0.0,
    region: str = "iad",
) -> float:
    """$ per million requests when a deployment costing ``monthly_usd`` serves a sustained
    ``requests_per_s`` for 30 days, plus egress per request."""
    if requests_per_s <= 0:
        return math.inf
    per_month = requests_per_s * SECONDS_PER_MONTH
    egress = egress_bytes_per_request / 1e9 * egress_usd_per_gb(region) * 1e6
    return monthly_usd / per_month * 1e6 + egress


def price_rows(
    presets: Iterable[str | Preset], region: str = "iad", price_set: str | None = None
) -> pd.DataFrame:
    """Preset, memory and $/30 d for several presets (for tables and charts)."""
    rows = []
    for spec in presets:
        p = parse_preset(spec)
        rows.append(
            {
                "preset": p.name,
                "memory_mb": p.memory_mb,
                "cpu_kind": p.cpu_kind,
                "cpus": p.cpus,
                "usd_per_30d": machine_price(p, region, price_set),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="regenerate data/fly_pricing.csv")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    if args.write:
        print(write_price_table())
    else:
        print(generate_price_table().to_string())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
