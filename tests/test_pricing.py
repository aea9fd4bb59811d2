"""Fly price table and cost model, checked against Fly's published figures.

Every expected number below is copied from Fly's own publications (the pricing page
https://fly.io/docs/about/pricing/ as rendered 2025-08-19, https://fly.io/docs/about/cost-management/
of 2025-10-23, the calculator https://github.com/superfly/flyio-price-calc-ex) or from the
reported 2026-10-01 quotes (data/fly_price_sets.csv names them), not from data/fly_pricing.csv.
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from perflib import cost as pricing
from perflib.cost import (
    cost_breakdown,
    cost_per_million_requests,
    load_prices,
    machine_price,
    monthly_cost,
    monthly_egress_gb,
    resolve_price_set,
)
from perflib.fly.presets import PricingError, memory_steps, parse_preset

# Fly's pricing page, started Machine prices in iad/ewr (rendered 2025-08-19)
PUBLISHED_2025 = {
    "shared-cpu-1x:256mb": 1.94,
    "shared-cpu-1x:512mb": 3.19,
    "shared-cpu-1x:1gb": 5.70,
    "shared-cpu-1x:2gb": 10.70,
    "shared-cpu-2x:512mb": 3.89,
    "shared-cpu-2x:1gb": 6.39,
    "shared-cpu-2x:2gb": 11.39,
    "shared-cpu-2x:4gb": 21.40,
    "shared-cpu-4x:1gb": 7.78,
    "shared-cpu-4x:2gb": 12.78,
    "shared-cpu-4x:4gb": 22.78,
    "shared-cpu-4x:8gb": 42.79,
    "shared-cpu-8x:2gb": 15.55,
    "shared-cpu-8x:4gb": 25.56,
    "shared-cpu-8x:8gb": 45.57,
    "shared-cpu-8x:16gb": 85.59,
    "performance-1x:2gb": 31.00,
    "performance-1x:4gb": 41.01,
    "performance-1x:8gb": 61.02,
    "performance-2x:4gb": 62.00,
    "performance-2x:8gb": 82.01,
    "performance-2x:16gb": 122.03,
    "performance-4x:8gb": 124.00,
    "performance-8x:16gb": 248.00,
    "performance-16x:32gb": 496.01,
    "performance-16x:128gb": 976.25,
}
# The price change reported for 2026-10-01: quoted iad prices (third-party notes)
QUOTED_2026 = {
    "shared-cpu-1x:256mb": 2.19,
    "shared-cpu-2x:512mb": 4.39,
    "shared-cpu-4x:1gb": 8.78,
    "shared-cpu-8x:2gb": 17.55,
    "shared-cpu-2x:2gb": 13.39,
    "performance-1x:2gb": 33.00,
    "performance-2x:4gb": 66.00,
    "performance-16x:32gb": 528.02,
}
# region multipliers from Fly's calculator (github.com/superfly/flyio-price-calc-ex)
MULTIPLIERS = {
    "iad": 1.0,
    "arn": 1.0385,
    "yyz": 1.1154,
    "ams": 1.0385,
    "bom": 1.0769,
    "yul": 1.1154,
    "sjc": 1.1923,
    "fra": 1.1538,
    "lax": 1.1995,
    "ord": 1.25,
    "gru": 1.6154,
    "eze": 1.8582,
}


@pytest.mark.parametrize(("preset", "usd"), sorted(PUBLISHED_2025.items()))
def test_published_2025_prices(preset: str, usd: float) -> None:
    assert machine_price(preset, "iad", "2025-08-19") == pytest.approx(usd, abs=1e-9)


@pytest.mark.parametrize(("preset", "usd"), sorted(QUOTED_2026.items()))
def test_quoted_2026_prices(preset: str, usd: float) -> None:
    assert machine_price(preset, "iad", "2026-10-01") == pytest.approx(usd, abs=1e-9)


def test_regional_published_figures() -> None:
    # fly.io/docs/about/cost-management: sjc 256 MB = $2.32; 3 × shared-1x 1 GB in sjc = $20.37
    assert machine_price("shared-cpu-1x:256mb", "sjc", "2025-08-19") == 2.32
    assert monthly_cost("shared-cpu-1x:1gb", 3, "sjc", price_set="2025-08-19") == 20.37
    # ams/arn: 256 MB $2.02, 512 MB $3.32, 1 GB $5.92, 2 GB $11.11, performance-1x $32.19
    for region in ("ams", "arn"):
        assert machine_price("shared-cpu-1x:256mb", region, "2025-08-19") == 2.02
        assert machine_price("shared-cpu-1x:512mb", region, "2025-08-19") == 3.32
        assert machine_price("shared-cpu-1x:1gb", region, "2025-08-19") == 5.92
        assert machine_price("shared-cpu-1x:2gb", region, "2025-08-19") == 11.11
        assert machine_price("performance-1x", region, "2025-08-19") == 32.19
    assert machine_price("shared-cpu-1x", "bom", "2025-08-19") == 2.09
    assert machine_price("shared-cpu-1x", "yyz", "2025-08-19") == 2.17


def test_per_second_rate_times_30_days() -> None:
    # fly.io/docs/about/pricing: $0.00000075/s; "per month" = 30 days = 2,592,000 s -> $1.94
    assert round(0.00000075 * 2_592_000, 2) == machine_price("shared-cpu-1x", "iad", "2025-08-19")
    assert pricing.SECONDS_PER_MONTH == 2_592_000


def test_additional_ram_staff_example() -> None:
    # community thread 20263: 1024 MB on shared-1x = 768 MB extra × $5/GB = $3.75/mo
    extra = machine_price("shared-cpu-1x:1024mb", price_set="2025-08-19") - machine_price(
        "shared-cpu-1x:256mb", price_set="2025-08-19"
    )
    assert extra == pytest.approx(0.75 * 5, abs=0.011)


def _exact_formula(cpu_kind: str, cpus: int, memory_mb: int, ram: str, mult: str) -> Decimal:
    cpu = Decimal("0.695") if cpu_kind == "shared" else Decimal("21")
    return Decimal(mult) * (cpu * cpus + Decimal(ram) * Decimal(memory_mb) / 1024)


@pytest.mark.parametrize("price_set", ["2025-08-19", "2026-10-01"])
def test_every_formula_row_within_a_cent_of_exact_arithmetic(price_set: str) -> None:
    ram = {"2025-08-19": "5", "2026-10-01": "6"}[price_set]
    df = load_prices(price_set)
    for row in df.itertuples():
        mult = str(MULTIPLIERS[row.region])
        exact = _exact_formula(row.cpu_kind, row.cpus, row.memory_mb, ram, mult)
        # binary-float rounding (Fly's calculator is JavaScript) may differ by one cent;
        # published figures differ by up to $0.25 (performance-16x 128 GB: 976.25 vs 976.00)
        tol = Decimal("0.26") if row.published else Decimal("0.0051")
        assert abs(Decimal(str(row.usd_per_30d)) - exact) <= tol, row


def test_every_preset_and_memory_step_is_in_the_table() -> None:
    for ps in ("2025-08-19", "2026-10-01"):
        df = load_prices(ps)
        iad = df[df["region"] == "iad"]
        for cpus in (1, 2, 4, 8):
            got = sorted(iad[(iad.cpu_kind == "shared") & (iad.cpus == cpus)].memory_mb)
            assert got == list(range(256 * cpus, 2048 * cpus + 1, 256))
        for cpus in (1, 2, 4, 8, 16):
            got = sorted(iad[(iad.cpu_kind == "performance") & (iad.cpus == cpus)].memory_mb)
            assert got == list(range(2048 * cpus, 8192 * cpus + 1, 2048))
        assert (df["price_set"] == ps).all() and (df["effective_date"] == ps).all()
        assert df["source"].str.len().gt(0).all()


def test_file_matches_generator_and_records_dates_and_sources() -> None:
    on_disk = pd.read_csv(
        pricing.PRICING_CSV, comment="#", keep_default_na=False, dtype={"price_set": str}
    )
    gen = pricing.generate_price_table()
    assert len(on_disk) == len(gen)
    assert on_disk["usd_per_30d"].round(2).tolist() == gen["usd_per_30d"].round(2).tolist()
    head = pricing.PRICING_CSV.read_text(encoding="utf-8").splitlines()[0]
    assert head.startswith("#")
    sets = pd.read_csv(pricing.PRICE_SETS_CSV, comment="#")
    assert set(sets["price_set"]) == {"2025-08-19", "2026-10-01"}
    assert sets.set_index("price_set").loc["2026-10-01", "status"] == "reported"


def test_published_rows_keep_the_published_figure_where_formula_differs() -> None:
    df = load_prices("2025-08-19")
    row = df[(df.region == "iad") & (df.preset == "shared-cpu-2x:4096mb")].iloc[0]
    assert row.usd_per_30d == 21.40 and row.formula_usd_per_30d == 21.39
    assert bool(row.published) and "published kept" in row.note


def test_default_price_set_is_newest_and_user_can_choose() -> None:
    assert resolve_price_set().name == "2026-10-01"
    assert resolve_price_set("2025-08-19").ram_usd_per_gb == 5
    assert machine_price("shared-cpu-1x:512mb") == machine_price(
        "shared-cpu-1x:512mb", price_set="2026-10-01"
    )
    with pytest.raises(PricingError, match="unknown price set '2024-01-01'"):
        resolve_price_set("2024-01-01")


def test_regions_multiply_the_formula() -> None:
    # a row no one published: fra shared-cpu-1x 1 GB, 2025 set: 1.1538 × 5.695 = 6.5709
    assert machine_price("shared-cpu-1x:1024mb", "fra", "2025-08-19") == 6.57
    for region, mult in MULTIPLIERS.items():
        assert pricing.region_multiplier(region) == mult
    with pytest.raises(PricingError, match="unknown region 'xyz'"):
        machine_price("shared-cpu-1x", "xyz")


def test_rootfs_of_stopped_machines() -> None:
    # fly.io/docs/about/pricing: stopped Machines pay rootfs, $0.15/GB per 30 days: 1 GB x 10 d = $0.05
    b = cost_breakdown(
        "shared-cpu-1x:256mb", started_fraction=20 / 30, rootfs_gb=1.0, price_set="2025-08-19"
    )
    assert b.rootfs_usd == 0.05
    assert b.compute_usd == pytest.approx(1.94 * 20 / 30, abs=0.005)
    assert b.total_usd == pytest.approx(b.compute_usd + b.rootfs_usd, abs=0.011)


def test_egress_by_region_group() -> None:
    # fly.io/docs/about/pricing (bandwidth): NA/EU $0.02/GB, APAC/SA $0.04, Africa/India $0.12
    assert cost_breakdown("shared-cpu-1x", egress_gb=100).egress_usd == 2.00
    assert cost_breakdown("shared-cpu-1x", region="syd", egress_gb=100).egress_usd == 4.00
    assert cost_breakdown("shared-cpu-1x", region="bom", egress_gb=100).egress_usd == 12.00
    assert pricing.egress_usd_per_gb("gru", private=True) == 0.015


def test_monthly_egress_from_measured_bytes() -> None:
    # 1 MB/s sustained for 30 days = 2.592 TB
    assert monthly_egress_gb(60e6, 60) == pytest.approx(2592.0)
    # 2 kB per request × 1 M requests/month = 2 GB
    assert monthly_egress_gb(2000 * 500, 100, requests=500, monthly_requests=1e6) == 2.0


def test_cost_per_million_requests() -> None:
    # $6.70/30 d at 1 req/s = 2.592 M requests → $2.585 per million
    assert cost_per_million_requests(6.70, 1.0) == pytest.approx(6.70 / 2.592)
    # + 1 kB per request at $0.02/GB = $0.02 per million
    assert cost_per_million_requests(6.70, 1.0, egress_bytes_per_request=1000) == pytest.approx(
        6.70 / 2.592 + 0.02
    )


def test_instances_multiply_and_bad_inputs_are_refused() -> None:
    assert monthly_cost("shared-cpu-1x:1gb", 2, price_set="2025-08-19") == 11.40
    with pytest.raises(PricingError, match="instances must be >= 1"):
        monthly_cost("shared-cpu-1x", 0)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("shared-cpu-1x:512mb", ("shared", 1, 512)),
        ("shared-cpu-1x@1024MB", ("shared", 1, 1024)),
        ("shared-cpu-2x", ("shared", 2, 512)),
        ("performance-2x", ("performance", 2, 4096)),
        ("performance-1x:4gb", ("performance", 1, 4096)),
        ("SHARED-CPU-8X:16GB", ("shared", 8, 16384)),
    ],
)
def test_parse_preset(spec: str, expected: tuple[str, int, int]) -> None:
    p = parse_preset(spec)
    assert (p.cpu_kind, p.cpus, p.memory_mb) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("shared-cpu-3x", "shared CPUs must be one of"),
        ("shared-cpu-1x:300mb", "invalid memory for shared-cpu-1x: 300 MB"),
        ("performance-1x:1gb", "invalid memory for performance-1x: 1024 MB"),
        ("shared-cpu-1x:4gb", "256..2048 MB"),
        ("tiny", "unknown preset 'tiny'"),
        ("shared-cpu-1x:lots", "cannot read memory size"),
    ],
)
def test_bad_presets(spec: str, message: str) -> None:
    with pytest.raises(PricingError, match=message):
        parse_preset(spec)


def test_memory_steps_match_fly_limits() -> None:
    assert memory_steps("shared", 1)[:3] == [256, 512, 768]
    assert memory_steps("shared", 1)[-1] == 2048
    assert memory_steps("performance", 2) == [4096, 6144, 8192, 10240, 12288, 14336, 16384]
