"""Fly.io Machine prices and the monthly cost model.

Prices live in ``data/fly_pricing.csv`` (one row per price set × preset × memory step × region
where a figure was published), ``data/fly_price_sets.csv`` (per-set constants and sources),
``data/fly_regions.csv`` (region multipliers and egress groups) and ``data/fly_egress.csv``.

The machine prices are derived with Fly's own calculator formula (superfly/flyio-price-calc-ex,
see docs/guide.md#fly-sizes-and-prices)::

    per 30 days = region multiplier × (CPU part + RAM $/GB × GB)
    CPU part    = $0.695 per shared vCPU, $21 per performance vCPU

rounded to cents the way JavaScript's ``toFixed(2)`` does (half up on the binary double; this
is why shared-cpu-1x 256 MB is $1.94, not $1.95). Where Fly published a figure that differs
from the formula by a cent (e.g. shared-cpu-2x 4 GB $21.40 vs 21.39), the published figure is
kept and the row says so (``published = true``, ``formula_usd`` beside it).

"Month" means 30 days = 720 h, as Fly bills. MB means MiB, as Fly's ``memory_mb`` does.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from perflib.fly.presets import (  # re-exported: the cost model prices these
    Preset,
    PricingError,
    all_presets,
    parse_preset,
)
from perflib.tooling import REPO_ROOT

DATA_DIR = REPO_ROOT / "data"
PRICING_CSV = DATA_DIR / "fly_pricing.csv"
PRICE_SETS_CSV = DATA_DIR / "fly_price_sets.csv"
REGIONS_CSV = DATA_DIR / "fly_regions.csv"
EGRESS_CSV = DATA_DIR / "fly_egress.csv"
PUBLISHED_CSV = DATA_DIR / "fly_published_prices.csv"

HOURS_PER_MONTH = 720.0  #: Fly's "per month" = 30 days (docs/guide.md#fly-sizes-and-prices)
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0  # 2,592,000
GIB = 1024**3

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


@cache
def published_prices(
    path: Path = PUBLISHED_CSV,
) -> dict[str, dict[tuple[str, str], tuple[float, str]]]:
    """Published / quoted figures (``data/fly_published_prices.csv``): price set →
    (region, preset) → ($ per 30 d, source), in file order."""
    out: dict[str, dict[tuple[str, str], tuple[float, str]]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        rows = csv.DictReader(line for line in fh if not line.startswith("#"))
        for row in rows:
            key = (row["region"], row["preset"])
            out.setdefault(row["price_set"], {})[key] = (float(row["usd_per_30d"]), row["source"])
    return out


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


def confirmed_price_set() -> PriceSet | None:
    """The newest price set Fly's own pages confirm (``status = confirmed``): the figure
    shown beside a cost from a set only third parties report."""
    sets = [ps for ps in load_price_sets().values() if ps.status == "confirmed"]
    return max(sets, key=lambda ps: ps.effective_date) if sets else None


@cache
def _regions(path: Path = REGIONS_CSV) -> pd.DataFrame:
    return pd.read_csv(path, comment="#", dtype={"region": str, "egress_group": str})


@cache
def _egress(path: Path = EGRESS_CSV) -> pd.DataFrame:
    return pd.read_csv(path, comment="#")


def regions() -> pd.DataFrame:
    """Region code, multiplier, egress group (docs/guide.md#fly-sizes-and-prices)."""
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
        published = published_prices().get(ps.name, {})
        keys: list[tuple[str, Preset]] = [("iad", p) for p in all_presets()]
        keys += [(region, parse_preset(name)) for (region, name) in published if region != "iad"]
        for region, preset in keys:
            mult = region_multiplier(region)
            formula = js_round2(formula_price(ps, preset, mult))
            pub, src = published.get((region, preset.name), (None, ps.source))
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
# Generated by `python scripts/write_price_table.py --write`; checked by tests/test_pricing.py.
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
    (docs/guide.md#fly-sizes-and-prices: stopped Machines pay only rootfs, $0.15/GB per 30 d), + egress to the internet
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
