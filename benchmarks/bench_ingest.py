"""Ingest benchmark: ``perflib summarize`` vs the naive ``pandas.read_json(lines=True)``.

Both sides run as separate processes on the same ~80 MB k6 NDJSON, side by side in the same
run, so the ratios mean the same on any machine: wall time (start-up and imports included)
and peak RSS (``os.wait4``'s rusage of that child only). The file is synthesised under /tmp by
replaying the lines of a recorded real k6 v1.1.0 run (tests/fixtures/k6/mixed.ndjson.gz) with
shifted timestamps: real line shapes, tags and value distributions.

Targets (issue 4): cold-cache summarize ≥ 10× faster than the baseline, peak memory ratio < 1.
Also measured, for information: the same cold run with DuckDB's reader (``PERFLIB_K6_FAST=0``,
what files that are not in k6's exact byte shape get) and a cold run on the gzipped file.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "k6" / "mixed.ndjson.gz"
TARGET_BYTES = int(float(os.environ.get("PERFLIB_BENCH_INGEST_MB", "80")) * 1024 * 1024)
REPEAT = int(os.environ.get("PERFLIB_BENCH_REPEAT", "3"))  # runs per side (median kept)
WORKDIR = Path(tempfile.gettempdir()) / "perflib-bench-ingest"

#: What an analyst writes without perflib: load everything, then dig the values out.
PANDAS_BASELINE = """
import json, sys
import numpy as np
import pandas as pd

df = pd.read_json(sys.argv[1], lines=True)
points = df[df["type"] == "Point"]
data = points.loc[points["metric"] == "http_req_duration", "data"]
values = np.array([d["value"] for d in data], dtype="float64")
print(json.dumps({"count": int(values.size), "avg": float(values.mean()),
                  "p(95)": float(np.percentile(values, 95)),
                  "p(99)": float(np.percentile(values, 99))}))
"""


def _ns(ts: str) -> int:
    """RFC3339Nano with offset → ns since epoch (exact: no float round trip)."""
    head, frac, tz = ts[:19], "", ts[19:]
    if tz.startswith("."):
        end = next((i for i, c in enumerate(tz) if c in "Z+-" and i > 0), len(tz))
        frac, tz = tz[1:end], tz[end:]
    dt = datetime.fromisoformat(head + (tz.replace("Z", "+00:00") or "+00:00"))
    return int(dt.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9])


def generate(dest: Path, target_bytes: int = TARGET_BYTES) -> Path:
    """Replay the recorded run's lines, shifted in time, until the file reaches the target."""
    items: list[tuple[bytes, int | None, bytes]] = []
    with gzip.open(FIXTURE, "rb") as fh:
        for line in fh.read().splitlines():
            if not line.startswith(b'{"metric":'):
                items.append((line, None, b""))  # Metric line: written once, in place
                continue
            i = line.index(b'"time":"') + 8
            j = line.index(b'"', i)
            items.append((line[:i], _ns(line[i:j].decode()), line[j:]))
    times = [t for _, t, _ in items if t is not None]
    span = max(times) - min(times) + 1_000_000
    seconds: dict[int, str] = {}

    def fmt(t: int) -> bytes:
        s, ns = divmod(t, 1_000_000_000)
        base = seconds.get(s)
        if base is None:
            base = seconds[s] = datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        frac = f"{ns:09d}".rstrip("0")
        return f"{base}.{frac}Z".encode() if frac else f"{base}Z".encode()

    tmp = dest.with_suffix(".tmp")
    written = copy = 0
    with tmp.open("wb") as out:
        while written < target_bytes:
            shift = copy * span
            buf = [
                a + b"\n" if t is None else a + fmt(t + shift) + b + b"\n"
                for a, t, b in items
                if t is not None or copy == 0
            ]
            data = b"".join(buf)
            out.write(data)
            written += len(data)
            copy += 1
    tmp.replace(dest)
    return dest


def _measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str, float]:
    """Wall seconds, peak RSS (MiB) of that child alone, its stdout and its CPU seconds."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.PIPE, cwd=REPO, env={**os.environ, **(env or {})}
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err[-2000:]}")
        out.seek(0)
        cpu = usage.ru_utime + usage.ru_stime
        return wall, usage.ru_maxrss / 1024, out.read().decode(), cpu


def _median(samples: list[tuple[float, float, str, float]]) -> tuple[float, float, float]:
    return (
        statistics.median(s[0] for s in samples),
        statistics.median(s[1] for s in samples),
        statistics.median(s[3] for s in samples),
    )


def run() -> list[dict[str, Any]]:
    from perflib.ingest import cache_dir

    WORKDIR.mkdir(exist_ok=True)
    src = WORKDIR / "k6-80mb.ndjson"
    if not src.exists() or abs(src.stat().st_size - TARGET_BYTES) > TARGET_BYTES * 0.05:
        generate(src)
    size_mb = src.stat().st_size / 1048576
    gz = WORKDIR / "k6-80mb.ndjson.gz"
    if not gz.exists() or gz.stat().st_mtime < src.stat().st_mtime:
        with src.open("rb") as fin, gzip.open(gz, "wb", compresslevel=6) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    perflib = [sys.executable, "-m", "perflib", "summarize", str(src)]
    no_cache = [sys.executable, "-m", "perflib", "summarize", "--no-cache"]
    baseline = [sys.executable, "-c", PANDAS_BASELINE, str(src)]

    # Both sides are measured the same way: REPEAT times each, in alternating order (a noisy
    # neighbour or a warming page cache then hits both), and each side's median is kept.
    cold, warm, pandas, duck, cold_gz = [], [], [], [], []
    load = [os.getloadavg()[0]]
    for i in range(REPEAT):
        for side in ("pandas", "perflib") if i % 2 else ("perflib", "pandas"):
            if side == "pandas":
                pandas.append(_measure(baseline))
                continue
            shutil.rmtree(cache_dir(src), ignore_errors=True)  # cold: no cache beside the file
            cold.append(_measure(perflib))
            warm.append(_measure(perflib))  # reads the summary cache the cold run wrote
            duck.append(_measure([*no_cache, str(src)], {"PERFLIB_K6_FAST": "0"}))
            cold_gz.append(_measure([*no_cache, str(gz)]))
        load.append(os.getloadavg()[0])
    ref = json.loads(pandas[0][2])
    for cmd, env in (
        ([*perflib, "--json"], None),
        ([*no_cache, "--json", str(src)], {"PERFLIB_K6_FAST": "0"}),
        ([*no_cache, "--json", str(gz)], None),
    ):
        check = json.loads(_measure(cmd, env)[2])["metrics"]["http_req_duration"]
        for key in ("count", "p(95)", "p(99)"):
            if abs(check[key] - ref[key]) > 1e-9 * max(1.0, abs(ref[key])):
                raise AssertionError(f"{cmd} {key}={check[key]} but pandas says {ref[key]}")

    (t_cold, m_cold, c_cold), (t_warm, m_warm, _) = _median(cold), _median(warm)
    t_pd, m_pd, c_pd = _median(pandas)
    (t_duck, m_duck, c_duck), (t_gz, m_gz, _) = _median(duck), _median(cold_gz)
    label = f"summarize {size_mb:.0f} MB k6 NDJSON"
    return [
        {"name": f"{label}, cold cache: wall", "value": t_cold, "unit": "s",
         "target": "ratio <= 0.1 (>= 10x faster)", "baseline": t_pd, "ratio": t_cold / t_pd},
        {"name": f"{label}, warm cache: wall", "value": t_warm, "unit": "s",
         "target": "ratio <= 0.1", "baseline": t_pd, "ratio": t_warm / t_pd},
        {"name": f"{label}, cold: speed-up vs pandas.read_json", "value": t_pd / t_cold,
         "unit": "x", "target": ">= 10", "baseline": 1.0, "ratio": t_pd / t_cold},
        {"name": f"{label}, warm: speed-up vs pandas.read_json", "value": t_pd / t_warm,
         "unit": "x", "target": ">= 10", "baseline": 1.0, "ratio": t_pd / t_warm},
        {"name": f"{label}, cold cache: CPU time (user+sys)", "value": c_cold, "unit": "s",
         "target": "ratio <= 0.1", "baseline": c_pd, "ratio": c_cold / c_pd},
        {"name": f"{label}, cold cache: peak RSS", "value": m_cold, "unit": "MiB",
         "target": "ratio < 1", "baseline": m_pd, "ratio": m_cold / m_pd},
        {"name": f"{label}, warm cache: peak RSS", "value": m_warm, "unit": "MiB",
         "target": "ratio < 1", "baseline": m_pd, "ratio": m_warm / m_pd},
        {"name": f"{label}, cold, DuckDB reader (PERFLIB_K6_FAST=0): speed-up vs pandas",
         "value": t_pd / t_duck, "unit": "x", "target": "info: files off k6's exact shape",
         "baseline": 1.0, "ratio": t_pd / t_duck},
        {"name": f"{label}, cold, DuckDB reader: CPU time", "value": c_duck, "unit": "s",
         "target": "info", "baseline": c_pd, "ratio": c_duck / c_pd},
        {"name": f"{label}, cold, DuckDB reader: peak RSS", "value": m_duck, "unit": "MiB",
         "target": "info", "baseline": m_pd, "ratio": m_duck / m_pd},
        {"name": f"{label} gzipped, cold: speed-up vs pandas on the plain file",
         "value": t_pd / t_gz, "unit": "x", "target": "info", "baseline": 1.0,
         "ratio": t_pd / t_gz},
        {"name": f"{label} gzipped, cold: peak RSS", "value": m_gz, "unit": "MiB",
         "target": "info", "baseline": m_pd, "ratio": m_gz / m_pd},
        {"name": "load average (1 min) during the runs, max (2 vCPU machine)",
         "value": max(load), "unit": "", "target": "info: ratios need an idle 2nd core",
         "baseline": None, "ratio": None},
    ]  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    for row in run():
        print(json.dumps(row))
