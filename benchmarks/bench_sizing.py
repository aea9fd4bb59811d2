"""Sizing benchmark: price lookups and ``recommend()`` on the recorded runs in data/runs/.

Baselines are measured in the same run, so ratios mean the same on any machine:

* ``machine_price`` over every preset against the lookup it replaced (filtering the whole
  price DataFrame per call, ~1.5 ms each: ~0.6 s of the colleague's 2.3 s per ``recommend``
  before the indexed lookup);
* a warm ``recommend()`` (price tables, k6 caches and modules loaded) against the first call
  in a fresh process, which pays the imports of the analysis stack (scipy, DuckDB).

Targets: indexed lookup ≥ 50× faster than the DataFrame filter; warm ≤ 0.5 × cold.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = [str(REPO / "data" / "runs" / n) for n in ("02-load-1024mb", "03-load-512mb")]

_TIMED_CALL = """
import json, sys, time
t0 = time.perf_counter()
from perflib.sizing import recommend
t1 = time.perf_counter()
recommend(sys.argv[1:])
t2 = time.perf_counter()
recommend(sys.argv[1:])
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "cold": t2 - t1, "warm": t3 - t2}))
"""


def _dataframe_lookup(table, ps: str, region: str, name: str) -> float:  # noqa: ANN001
    """The replaced lookup: a boolean filter over the whole table per call."""
    hit = table[
        (table["price_set"] == ps) & (table["region"] == region) & (table["preset"] == name)
    ]
    return float(hit["usd_per_30d"].iloc[0])


def run() -> list[dict]:
    from perflib.cost import _load_all_prices, machine_price, resolve_price_set
    from perflib.fly.presets import all_presets

    ps = resolve_price_set(None).name
    presets = all_presets()
    table = _load_all_prices()
    machine_price(presets[0], "iad", ps)  # load the tables outside the timing

    t = time.perf_counter()
    slow = [_dataframe_lookup(table, ps, "iad", p.name) for p in presets]
    base = (time.perf_counter() - t) / len(presets)
    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        fast = [machine_price(p, "iad", ps) for p in presets]
    fast_s = (time.perf_counter() - t) / (reps * len(presets))
    if fast != slow:
        raise AssertionError("indexed and DataFrame lookups disagree")

    runs = [
        subprocess.run(
            [sys.executable, "-c", _TIMED_CALL, *RUNS],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(3)
    ]
    import json

    parsed = [json.loads(r.strip().splitlines()[-1]) for r in runs]
    cold = statistics.median(p["cold"] for p in parsed)
    warm = statistics.median(p["warm"] for p in parsed)
    return [
        {
            "name": "machine_price per lookup (vs DataFrame filter)",
            "value": fast_s * 1e6,
            "unit": "µs",
            "target": "ratio ≤ 0.02",
            "baseline": base * 1e6,
            "ratio": fast_s / base,
        },
        {
            "name": "recommend(02-load-1024mb, 03-load-512mb) warm (vs first call)",
            "value": warm,
            "unit": "s",
            "target": "ratio ≤ 0.5",
            "baseline": cold,
            "ratio": warm / cold,
        },
    ]
