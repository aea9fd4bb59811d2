"""perflib.ingest against real k6 v1.1.0 runs: summaries equal k6's own, robust ingest, frames.

The k6 runs (a mixed script and two execution segments) start together once per session
against a threaded HTTP server in this process, on a free port; everything else reads their
outputs. Independent computations: k6's ``--summary-export``/``handleSummary`` files, the
``json`` module over the raw lines, numpy percentiles, pandas timestamp parsing.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from perflib import ingest as k6
from perflib.cli import main as cli_main
from perflib.ingest import cache as k6_cache
from perflib.ingest import fast as k6_fast
from perflib.ingest import scan as k6_scan
from perflib.ingest import summary as k6_summary
from perflib.rundir import RunDir
from perflib.tooling import ToolNotFoundError, find_k6
from tests.synthetic_runs import RunFactory

SCRIPTS = Path(__file__).resolve().parents[1] / "k6_scripts"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "k6"
TREND_STATS = "avg,min,med,max,p(90),p(95),p(99),count"
#: Counter rates: k6 divides by its run clock, we by the first→last sample span (docs/ingest.md).
#: The span misses the first request's latency (ms) at the start; the last sample may trail
#: k6's clock stop by a few ms. Bounds in seconds, generous for a loaded CI machine.
SPAN_SHORTER_BY_AT_MOST_S = 0.25
SPAN_LONGER_BY_AT_MOST_S = 0.05


def assert_counter_rate(got: float, expected: float, count: float, label: object) -> None:
    """Compare the durations the two rates imply: count / rate."""
    if count == 0:
        assert got == expected == 0, label
        return
    ours_s, k6_s = count / got, count / expected
    assert k6_s - SPAN_SHORTER_BY_AT_MOST_S <= ours_s <= k6_s + SPAN_LONGER_BY_AT_MOST_S, (
        label,
        ours_s,
        k6_s,
    )


# --------------------------------------------------------------------------- harness


class _Handler(BaseHTTPRequestHandler):
    """200/404/500 and a slow path, chosen by the URL path."""

    protocol_version = "HTTP/1.1"

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path
        code = 404 if path.startswith("/404") else 500 if path.startswith("/500") else 200
        if path.startswith("/slow"):
            time.sleep(0.03)
        body = json.dumps({"path": path, "status": code}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _reply
    do_POST = _reply

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="session")
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _refused_url() -> str:
    """A loopback URL nobody listens on (a port just released by the OS)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/refused"


def _k6_cmd(script: str, outdir: Path, stem: str, base_url: str, *extra: str) -> list[str]:
    return [
        find_k6(), "run", "--quiet", "--no-color",
        "--summary-trend-stats", TREND_STATS,
        "--summary-export", str(outdir / f"{stem}-export.json"),
        "-e", f"BASE_URL={base_url}", "-e", f"REFUSED_URL={_refused_url()}",
        *extra, str(SCRIPTS / script),
    ]  # fmt: skip


def run_k6_set(outdir: Path, base_url: str) -> dict[str, Path]:
    """Run the mixed script and two execution segments concurrently; return their files."""
    env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
    jobs = {
        # TZ makes k6 write local times with a +05:30 offset: ingest must normalise to UTC.
        "mixed": (
            _k6_cmd("mixed.js", outdir, "mixed", base_url,
                    "--out", f"json={outdir / 'mixed.ndjson'}",
                    "--out", f"json={outdir / 'mixed.ndjson.gz'}",
                    "-e", f"SUMMARY_JSON={outdir / 'mixed-handle.json'}"),
            {**env, "TZ": "Asia/Kolkata"},
        ),
        "seg0": (
            _k6_cmd("segment.js", outdir, "seg0", base_url,
                    "--execution-segment", "0:1/2",
                    "--execution-segment-sequence", "0,1/2,1",
                    "--out", f"json={outdir / 'k6-0.ndjson.gz'}"),
            env,
        ),
        "seg1": (
            _k6_cmd("segment.js", outdir, "seg1", base_url,
                    "--execution-segment", "1/2:1",
                    "--execution-segment-sequence", "0,1/2,1",
                    "--out", f"json={outdir / 'k6-1.ndjson'}"),
            env,
        ),
    }  # fmt: skip
    procs = {
        name: subprocess.Popen(cmd, env=e, cwd=outdir, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        for name, (cmd, e) in jobs.items()
    }  # fmt: skip
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"k6 {name} failed ({proc.returncode}):\n{out[-3000:]}"
    return {
        "mixed": outdir / "mixed.ndjson",
        "mixed_gz": outdir / "mixed.ndjson.gz",
        "mixed_export": outdir / "mixed-export.json",
        "mixed_handle": outdir / "mixed-handle.json",
        "seg0": outdir / "k6-0.ndjson.gz",
        "seg1": outdir / "k6-1.ndjson",
        "seg0_export": outdir / "seg0-export.json",
        "seg1_export": outdir / "seg1-export.json",
    }


@pytest.fixture(scope="session")
def k6_runs(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> dict[str, Path]:
    try:
        find_k6()
    except ToolNotFoundError as exc:  # pragma: no cover - k6 ships with the venv
        pytest.skip(str(exc))
    return run_k6_set(tmp_path_factory.mktemp("k6runs"), http_server)


@pytest.fixture()
def mixed_copy(k6_runs: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the plain output (tests that mutate it or its cache)."""
    dest = tmp_path / "mixed.ndjson"
    shutil.copyfile(k6_runs["mixed"], dest)
    return dest


# --------------------------------------------------------------------------- helpers


def raw_points(path: Path) -> list[dict[str, Any]]:
    """Point lines decoded by the json module (the independent reading)."""
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                obj = json.loads(line)
                if obj.get("type") == "Point":
                    out.append(obj)
    return out


def assert_matches_k6(mine: dict[str, dict[str, Any]], ref: dict[str, dict[str, Any]]) -> int:
    """Every statistic k6 reported for a metric we also report is equal (rates: tolerance)."""
    compared = 0
    for name, stats in ref.items():
        assert name in mine, f"{name} in k6's summary but not in ours"
        for key, expected in stats.items():
            if key not in mine[name]:
                continue
            got = mine[name][key]
            if key == "rate" and "count" in stats:  # counter rate: run clock vs sample span
                assert_counter_rate(got, expected, stats["count"], name)
            else:
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (name, key)
            compared += 1
    return compared


# --------------------------------------------------------------------------- summary = k6


@pytest.mark.k6
@pytest.mark.parametrize("path", ["direct", "duckdb", "parquet"])
@pytest.mark.parametrize("which", ["mixed", "mixed_gz"])
def test_summarize_equals_k6_summary_export(
    k6_runs: dict[str, Path], which: str, path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every summary path: straight from NDJSON (cold: the fast C reader for a plain file,
    DuckDB's readers with ``PERFLIB_K6_FAST=0`` and for gzip) and from the Parquet cache."""
    src = tmp_path / k6_runs[which].name
    shutil.copyfile(k6_runs[which], src)
    if path == "duckdb":
        monkeypatch.setenv("PERFLIB_K6_FAST", "0")
    if path == "parquet":
        k6.read_points(src)  # builds the Parquet cache that summarize then aggregates
        assert (k6.cache_dir(src) / "points.parquet").exists()
    summary = k6.summarize(src)
    ref = k6.read_summary_export(k6_runs["mixed_export"])
    compared = assert_matches_k6(summary["metrics"], ref)
    assert compared > 100
    # Sub-metrics exist only because thresholds declared them: custom tags, name, group.
    for name in (
        "http_req_duration{name:slow}",
        "http_req_duration{scenario:api}",
        "http_reqs{status:404}",
        "http_req_failed{scenario:browse}",
        "think_time{kind:x}",
        "items_processed{kind:x}",
        "queue_depth{kind:x}",
        "checks{check:is 200}",
        "group_duration{group:::outer::inner}",
        "http_req_duration{expected_response:true}",
    ):
        assert name in ref and name in summary["metrics"], name
    # Failures really happened (404, 500, refused) and custom metrics are there.
    assert ref["http_req_failed"]["passes"] > 0
    assert {"think_time", "ok_rate", "items_processed", "queue_depth"} <= set(ref)
    assert summary["lines"]["skipped"] == 0 and summary["warnings"] == []
    assert set(summary) == {"metrics", "lines", "warnings", "excluded"}
    assert summary["excluded"] == {}  # no impossible values in real k6 output


#: k6's --summary-trend-stats with a percentile outside the default set, in k6's syntax.
WIDE_STATS = "avg,min,med,max,p(90),p(99.9),count"


@pytest.fixture(scope="session")
def k6_wide_run(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> dict[str, Path]:
    """mixed.js once more, with ``--summary-trend-stats`` including ``p(99.9)``."""
    try:
        find_k6()
    except ToolNotFoundError as exc:  # pragma: no cover - k6 ships with the venv
        pytest.skip(str(exc))
    out = tmp_path_factory.mktemp("k6wide")
    cmd = [
        find_k6(), "run", "--quiet", "--no-color",
        "--summary-trend-stats", WIDE_STATS,
        "--summary-export", str(out / "export.json"),
        "--out", f"json={out / 'k6.ndjson'}",
        "-e", f"BASE_URL={http_server}", "-e", f"REFUSED_URL={_refused_url()}",
        "-e", "DURATION=1s", "-e", f"SUMMARY_JSON={out / 'handle.json'}",
        str(SCRIPTS / "mixed.js"),
    ]  # fmt: skip
    env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
    proc = subprocess.run(cmd, env=env, cwd=out, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {
        "ndjson": out / "k6.ndjson",
        "export": out / "export.json",
        "handle": out / "handle.json",
    }


@pytest.mark.k6
@pytest.mark.parametrize("path", ["direct", "duckdb", "parquet"])
def test_summarize_with_k6_trend_stats_equals_k6(
    k6_wide_run: dict[str, Path], path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``p(99.9)`` and the rest of a --summary-trend-stats list, by every summary path, equal
    k6's own export, with k6's keys and nothing else."""
    src = tmp_path / "k6.ndjson"
    shutil.copyfile(k6_wide_run["ndjson"], src)
    if path == "duckdb":
        monkeypatch.setenv("PERFLIB_K6_FAST", "0")
    if path == "parquet":
        k6.read_points(src)
    summary = k6.summarize(src, trend_stats=WIDE_STATS)["metrics"]
    ref = k6.read_summary_export(k6_wide_run["export"])
    assert assert_matches_k6(summary, ref) > 100
    wanted = WIDE_STATS.split(",")
    for name in ("http_req_duration", "think_time", "http_req_duration{name:slow}"):
        assert set(ref[name]) == set(wanted), name  # k6 computed exactly these
        assert list(summary[name]) == wanted, name  # ours: the same keys, in the asked order
        assert summary[name]["p(99.9)"] == pytest.approx(ref[name]["p(99.9)"], rel=1e-9)
    # the default set is not what was asked: p(95) absent, as in k6's export
    assert "p(95)" not in summary["http_req_duration"]


@pytest.mark.k6
def test_fast_and_duckdb_readers_agree_on_any_trend_stats(
    k6_wide_run: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = ["p(0)", "p(12.5)", "p(99.99)", "p(100)", "count"]
    a = tmp_path / "a.ndjson"
    shutil.copyfile(k6_wide_run["ndjson"], a)
    fast = k6.summarize(a, trend_stats=stats, cache=False)["metrics"]
    monkeypatch.setenv("PERFLIB_K6_FAST", "0")
    slow = k6.summarize(a, trend_stats=stats, cache=False)["metrics"]
    assert set(fast) == set(slow)
    durations = [p["data"]["value"] for p in raw_points(a) if p["metric"] == "http_req_duration"]
    for name in fast:
        assert fast[name] == pytest.approx(slow[name], rel=1e-9), name
    got = fast["http_req_duration"]
    assert list(got) == stats
    assert got["p(0)"] == min(durations) and got["p(100)"] == max(durations)
    assert got["p(12.5)"] == pytest.approx(float(np.percentile(durations, 12.5)), rel=1e-12)


@pytest.mark.k6
def test_cli_summarize_honours_the_run_trend_stats(
    k6_wide_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from perflib.ingest.trendstats import run_trend_stats

    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(k6_wide_run["ndjson"], run / "k6.ndjson")
    # k6's export alone: its trend keys are the stats k6 computed (Go map order, reordered)
    shutil.copyfile(k6_wide_run["export"], run / "k6-summary.json")
    assert run_trend_stats(run) == tuple(WIDE_STATS.split(","))
    assert cli_main(["summarize", str(run), "--json", "--no-cache"]) == 0
    got = json.loads(capsys.readouterr().out)["metrics"]
    ref = k6.read_summary_export(k6_wide_run["export"])
    assert list(got["http_req_duration"]) == WIDE_STATS.split(",")
    assert assert_matches_k6(got, ref) > 100
    # handleSummary data names them in options.summaryTrendStats; a manifest list wins
    shutil.copyfile(k6_wide_run["handle"], run / "k6-summary.json")
    assert run_trend_stats(run / "k6.ndjson") == tuple(WIDE_STATS.split(","))
    (run / "manifest.json").write_text(json.dumps({"summary_trend_stats": ["med", "p(99.9)"]}))
    assert run_trend_stats(run) == ("med", "p(99.9)")
    # --stats wins over the run; the table prints what was asked
    assert cli_main(["summarize", str(run / "k6.ndjson"), "--stats", "avg, p(99.9)"]) == 0
    table = capsys.readouterr().out
    line = next(ln for ln in table.splitlines() if ln.startswith("http_req_duration "))
    assert "p(99.9)=" in line and "avg=" in line and "p(95)" not in line and "med=" not in line
    # k6's own validation, in k6's words, exit 2
    for bad, words in (("avg,p(101)", "between 0 and 100"), ("avg,p99", "unknown format")):
        assert cli_main(["summarize", str(run), "--stats", bad]) == 2
        assert words in capsys.readouterr().err


def test_parse_trend_stats_follows_k6() -> None:
    from perflib.ingest.trendstats import parse_trend_stats, trend_percentiles

    stats = parse_trend_stats("avg,min,med,max,p(90),p(99.9),count")
    assert stats == ("avg", "min", "med", "max", "p(90)", "p(99.9)", "count")
    assert trend_percentiles(stats) == (50.0, 90.0, 99.9)
    assert parse_trend_stats(["p(99.90)", "p(0)", "p(100)"]) == ("p(99.90)", "p(0)", "p(100)")
    for bad in ("p(101)", "p(-1)", "p(x)", "p(nan)", "p99", "mean", ""):
        with pytest.raises(k6.K6InputError):
            parse_trend_stats(bad)


@pytest.mark.k6
def test_handle_summary_shape_normalises_like_legacy_export(k6_runs: dict[str, Path]) -> None:
    legacy = k6.read_summary_export(k6_runs["mixed_export"])
    handle = k6.read_summary_export(k6_runs["mixed_handle"])
    assert set(legacy) == set(handle)
    for name, stats in legacy.items():
        assert stats == pytest.approx(handle[name]), name
    assert set(legacy["http_req_failed"]) == {"rate", "passes", "fails"}
    raw = json.loads(k6_runs["mixed_export"].read_text())
    assert "value" in raw["metrics"]["http_req_failed"]  # the legacy spelling we renamed


@pytest.mark.k6
def test_counter_rate_tolerance_against_k6_run_duration(k6_runs: dict[str, Path]) -> None:
    handle = json.loads(k6_runs["mixed_handle"].read_text())
    run_s = handle["state"]["testRunDurationMs"] / 1000
    summary = k6.summarize(k6_runs["mixed"], cache=False)
    count = summary["metrics"]["http_reqs"]["count"]
    span_s = count / summary["metrics"]["http_reqs"]["rate"]
    assert count == handle["metrics"]["http_reqs"]["values"]["count"]
    # First→last sample sits inside k6's run clock (the last sample may trail its stop by
    # a few ms) and misses little of it.
    assert run_s - SPAN_SHORTER_BY_AT_MOST_S <= span_s <= run_s + SPAN_LONGER_BY_AT_MOST_S


@pytest.mark.k6
def test_name_splits_match_bruteforce(k6_runs: dict[str, Path]) -> None:
    summary = k6.summarize(k6_runs["mixed"], cache=False)["metrics"]
    by_name: dict[str, list[float]] = defaultdict(list)
    failed: dict[str, list[float]] = defaultdict(list)
    for p in raw_points(k6_runs["mixed"]):
        tags = p["data"]["tags"] or {}
        if p["metric"] == "http_req_duration":
            by_name[tags["name"]].append(p["data"]["value"])
        if p["metric"] == "http_req_failed":
            failed[tags["name"]].append(p["data"]["value"])
    assert {"slow", "item"} <= set(by_name) and len(by_name) >= 5
    for name, values in by_name.items():
        stats = summary[f"http_req_duration{{name:{name}}}"]
        assert stats["count"] == len(values)
        assert stats["avg"] == pytest.approx(float(np.mean(values)), rel=1e-9)
        for key, p in (("med", 50), ("p(90)", 90), ("p(95)", 95), ("p(99)", 99)):
            assert stats[key] == pytest.approx(np.percentile(values, p), rel=1e-9), (name, key)
        rate = summary[f"http_req_failed{{name:{name}}}"]
        assert rate["passes"] == sum(1 for v in failed[name] if v)
        assert rate["passes"] + rate["fails"] == len(failed[name])
        assert summary[f"http_reqs{{name:{name}}}"]["count"] == len(values)


@pytest.mark.k6
def test_execution_segments_merge_to_the_sum(k6_runs: dict[str, Path]) -> None:
    parts = [k6.read_summary_export(k6_runs[f"seg{i}_export"]) for i in (0, 1)]
    merged = k6.summarize([k6_runs["seg0"], k6_runs["seg1"]], cache=False)["metrics"]
    for metric in ("http_reqs", "iterations", "items_processed"):
        assert merged[metric]["count"] == sum(p[metric]["count"] for p in parts), metric
    assert merged["iterations"]["count"] == 24  # the script's shared-iterations total
    assert merged["http_req_duration"]["count"] == sum(
        p["http_req_duration"]["count"] for p in parts
    )
    # Each segment alone still equals its own k6 summary.
    for i, part in enumerate(parts):
        alone = k6.summarize(k6_runs[f"seg{i}"], cache=False)["metrics"]
        assert_matches_k6(alone, part)


@pytest.mark.k6
def test_run_directory_source(k6_runs: dict[str, Path], tmp_path: Path) -> None:
    for i in (0, 1):
        shutil.copyfile(k6_runs[f"seg{i}"], tmp_path / k6_runs[f"seg{i}"].name)
    RunDir.create(tmp_path, {"schema": 1, "k6_outputs": ["k6-0.ndjson.gz", "k6-1.ndjson"]})
    from_dir = k6.summarize(tmp_path)
    from_files = k6.summarize([k6_runs["seg0"], k6_runs["seg1"]], cache=False)
    assert from_dir["metrics"].keys() == from_files["metrics"].keys()
    for name, stats in from_dir["metrics"].items():
        assert stats == pytest.approx(from_files["metrics"][name], rel=1e-12), name
    assert from_dir["lines"]["parsed"] == sum(
        1 for f in ("seg0", "seg1") for _ in raw_points(k6_runs[f])
    ) + sum(len(k6.read_metric_meta(k6_runs[f], cache=False)) for f in ("seg0", "seg1"))


# --------------------------------------------------------------------------- frames


@pytest.mark.k6
def test_read_points_types_and_nanosecond_utc_times(k6_runs: dict[str, Path]) -> None:
    df = k6.read_points(k6_runs["mixed_gz"], cache=False)
    raw = raw_points(k6_runs["mixed"])
    assert len(df) == len(raw)
    assert str(df["time"].dtype) == "datetime64[ns, UTC]"
    assert isinstance(df["metric"].dtype, pd.CategoricalDtype)
    assert df["value"].dtype == "float64"
    for tag in k6.KNOWN_TAGS:
        assert isinstance(df[tag].dtype, pd.CategoricalDtype), tag
    assert "kind" in df.columns  # a custom tag a sub-metric uses
    assert "flow" in df.columns  # a scenario's custom tag, sampled from the first lines
    assert set(df.loc[df["scenario"] == "browse", "flow"].unique()) == {"browse"}
    assert df.loc[df["status"] == "0", "error"].notna().all()  # k6's error tag on refusals
    # k6 wrote +05:30 local times (TZ=Asia/Kolkata): ns kept, offset applied.
    # (UTC "Z" only if the machine has no tz database for Go to read.)
    assert raw[0]["data"]["time"].endswith(("+05:30", "Z"))
    expected = pd.to_datetime([p["data"]["time"] for p in raw], format="ISO8601", utc=True)
    got = df.sort_values("time", kind="stable")["time"].to_numpy()
    assert (np.sort(expected.to_numpy()) == got).all()
    assert (expected.asi8 % 1000 != 0).any()  # sub-µs digits exist and survived
    assert abs(df["time"].max() - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(hours=1)
    # Filter pushdown.
    only = k6.read_points(k6_runs["mixed"], metrics=["http_reqs"], cache=False)
    assert set(only["metric"].unique()) == {"http_reqs"}
    assert len(only) == sum(1 for p in raw if p["metric"] == "http_reqs")


@pytest.mark.k6
def test_read_requests_start_time_from_timings(k6_runs: dict[str, Path]) -> None:
    req = k6.read_requests(k6_runs["mixed"], cache=False)
    raw = raw_points(k6_runs["mixed"])
    phases = {
        "http_req_blocked",
        "http_req_connecting",
        "http_req_tls_handshaking",
        "http_req_sending",
        "http_req_waiting",
        "http_req_receiving",
    }
    # Independent pivot: the 9 samples of a request share its end time and tags.
    groups: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for p in raw:
        if p["metric"].startswith("http_req"):
            key = (p["data"]["time"], json.dumps(p["data"]["tags"], sort_keys=True))
            groups[key][p["metric"]] = p["data"]["value"]
    assert len(req) == len(groups) == sum(1 for p in raw if p["metric"] == "http_reqs")
    expected_start = sorted(
        pd.Timestamp(t).tz_convert("UTC") - pd.Timedelta(sum(v[m] for m in phases) * 1e6, "ns")
        for (t, _), v in groups.items()
    )
    got = sorted(req["start_time"])
    assert all(
        abs(a - b) <= pd.Timedelta(1, "ns") for a, b in zip(got, expected_start, strict=True)
    )
    assert (req["start_time"] <= req["time"]).all()
    assert (
        req["time"] - req["start_time"]
        >= pd.to_timedelta(req["duration_ms"], "ms") - pd.Timedelta(1, "us")
    ).all()
    assert req["failed"].dtype == "boolean"
    for tag in ("name", "method", "status", "scenario", "group", "error_code"):
        assert isinstance(req[tag].dtype, pd.CategoricalDtype), tag
    assert int(req["failed"].sum()) == sum(
        1 for p in raw if p["metric"] == "http_req_failed" and p["data"]["value"]
    )
    refused = req[req["status"] == "0"]
    assert len(refused) > 0 and set(refused["error_code"]) == {"1212"}


@pytest.mark.k6
def test_read_metric_meta(k6_runs: dict[str, Path]) -> None:
    meta = k6.read_metric_meta(k6_runs["mixed"], cache=False)
    assert meta["think_time"]["type"] == "trend" and meta["think_time"]["contains"] == "time"
    assert meta["ok_rate"]["type"] == "rate"
    assert meta["items_processed"]["type"] == "counter"
    assert meta["queue_depth"]["type"] == "gauge"
    assert meta["http_req_duration"]["thresholds"] == []
    names = {s["name"] for s in meta["http_req_duration"]["submetrics"]}
    assert names == {
        "http_req_duration{name:slow}",
        "http_req_duration{scenario:api}",
        "http_req_duration{expected_response:true}",
    }
    assert meta["think_time"]["thresholds"] == []
    sub = meta["think_time"]["submetrics"][0]
    assert sub["tags"] == {"kind": "x"}


# --------------------------------------------------------------------------- robustness


@pytest.mark.k6
def test_truncated_plain_file(mixed_copy: Path) -> None:
    data = mixed_copy.read_bytes()
    cut = data.rfind(b"\n", 0, len(data) // 2) + 40  # 40 bytes into a line
    mixed_copy.write_bytes(data[:cut])
    complete = data[:cut].count(b"\n")
    summary = k6.summarize(mixed_copy)
    assert summary["lines"] == {"parsed": complete, "skipped": 1}
    assert any("unterminated" in w for w in summary["warnings"])
    reqs = sum(
        1
        for line in data[:cut].split(b"\n")[:complete]
        if line.startswith(b'{"metric":"http_reqs","type":"Point"')
    )
    assert summary["metrics"]["http_reqs"]["count"] == reqs


@pytest.mark.k6
def test_truncated_gzip_stream(k6_runs: dict[str, Path], tmp_path: Path) -> None:
    raw = k6_runs["mixed_gz"].read_bytes()
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    # Independent: what zlib recovers from the cut stream.
    text = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut.read_bytes())
    lines = text.split(b"\n")
    complete, partial = lines[:-1], lines[-1]
    summary = k6.summarize(cut)
    assert summary["lines"]["parsed"] == len(complete)
    assert summary["lines"]["skipped"] == (1 if partial else 0)
    assert any("gzip stream truncated" in w for w in summary["warnings"])
    # The Parquet path (read_points) recovers exactly the same samples.
    points = sum(1 for line in complete if line.startswith(b'{"metric":'))
    assert len(k6.read_points(cut, cache=False)) == points


@pytest.mark.k6
def test_blank_lines_null_tags_and_junk_are_counted(mixed_copy: Path) -> None:
    lines = mixed_copy.read_bytes().split(b"\n")[:-1]
    n = len(lines)
    null_tags = (
        b'{"metric":"vus","type":"Point","data":{"time":"2026-01-01T00:00:00Z",'
        b'"value":3,"tags":null}}'
    )
    with_metadata = (
        b'{"metric":"iterations","type":"Point","data":{"time":'
        b'"2026-01-01T00:00:00.5+02:00","value":1,"tags":{},"metadata":{"vu":"1"}}}'
    )
    injected = [
        b"",  # blank
        b"   ",  # whitespace only
        null_tags,  # valid: parsed
        with_metadata,  # valid: parsed, metadata ignored
        b"not json at all",
        b'{"hello": "world"}',  # JSON, not k6
        b'{"metric":"vus","type":"Point","data":{"time":"yesterday","value":1,"tags":{}}}',
        b'{"metric":"vus","type":"Point","data":{"time":"2026-01-01T00:00:00Z","value":"x"}}',
        b'{"metric":"my_new_metric","type":"Point","data":{"time":"2026-01-01T00:00:00Z",'
        b'"value":7,"tags":{}}}',  # unknown metric: parsed, summarised as a trend
    ]
    mixed_copy.write_bytes(b"\n".join(lines[:10] + injected + lines[10:]) + b"\n\n")
    summary = k6.summarize(mixed_copy)
    # 3 blank (2 injected + the final empty line), 2 not k6 JSON, 2 bad Points.
    assert summary["lines"] == {"parsed": n + 3, "skipped": 7}
    text = " ".join(summary["warnings"])
    assert "3 blank" in text and "2 line(s) that are not valid JSON" in text
    assert "2 Point line(s)" in text and "my_new_metric" in text
    assert summary["metrics"]["my_new_metric"]["count"] == 1


def test_not_k6_output_is_a_clear_error(tmp_path: Path) -> None:
    csv = tmp_path / "results.csv"
    csv.write_text("metric_name,timestamp,metric_value\nhttp_reqs,1,1\n")
    with pytest.raises(k6.K6InputError, match="not k6 --out json output"):
        k6.summarize(csv)
    with pytest.raises(k6.K6InputError, match="not k6 --out json output"):
        k6.read_points(csv)
    with pytest.raises(k6.K6InputError, match="not k6 --out json output"):
        k6.read_metric_meta(csv)
    with pytest.raises(k6.K6InputError, match="no such file"):
        k6.summarize(tmp_path / "missing.ndjson")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(k6.K6InputError, match="no k6 output"):
        k6.summarize(empty_dir)
    assert not list(tmp_path.glob("*.k6cache/*.parquet"))  # nothing half-written is kept


def test_empty_file_warns_instead_of_failing(tmp_path: Path) -> None:
    empty = tmp_path / "k6.ndjson"
    empty.write_bytes(b"")
    summary = k6.summarize(empty)
    assert summary["metrics"] == {} and summary["lines"] == {"parsed": 0, "skipped": 0}
    assert any("no k6 samples" in w for w in summary["warnings"])


def test_prescan_finds_metric_lines_across_chunk_boundaries(tmp_path: Path) -> None:
    metric = json.dumps(
        {
            "type": "Metric",
            "data": {
                "name": "m",
                "type": "trend",
                "contains": "time",
                "thresholds": [],
                "submetrics": None,
            },
            "metric": "m",
        },
        separators=(",", ":"),
    ).encode()
    point = b'{"metric":"m","type":"Point","data":{"time":"2026-01-01T00:00:00Z","value":1}}'
    body = b"\n".join([metric, point, point, metric, point, metric]) + b"\n"
    path = tmp_path / "x.ndjson"
    path.write_bytes(body)
    for size in (1, 7, 16, 17, 50, 1 << 20):
        scan = k6_scan._prescan(path, gz=False, chunk_size=size)
        assert scan.metric_lines == [metric] * 3, size
        assert scan.lines == 6 and scan.ends_with_newline


def test_rfc3339_offsets_and_fraction_lengths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # DuckDB's session zone follows $TZ: not used
    times = [
        "2026-11-26T18:01:19.885586062Z",
        "2026-11-26T18:01:19.8855+02:00",
        "2026-11-26T18:01:19Z",
        "2026-11-26T18:01:19.1-03:30",
        "2026-03-29T01:59:59.999999999+00:00",
        "2026-11-26T23:59:59.999999999+05:45",  # µs rounding of TIMESTAMPTZ crosses a second
        "2026-11-26T00:00:00.0000005-00:30",
        "2026-12-31T23:59:59.123456789+14:00",
        "2026-11-26T18:01:19.25",  # no offset: UTC
    ]
    lines = [
        json.dumps({"metric": "m", "type": "Point", "data": {"time": t, "value": i, "tags": {}}})
        for i, t in enumerate(times)
    ]
    path = tmp_path / "t.ndjson"
    path.write_text("\n".join(lines) + "\n")
    df = k6.read_points(path, cache=False).sort_values("value")
    expected = [
        pd.Timestamp(t).tz_convert("UTC") if pd.Timestamp(t).tz else pd.Timestamp(t, tz="UTC")
        for t in times
    ]
    assert list(df["time"]) == expected


# --------------------------------------------------------------------------- cache


@pytest.mark.k6
def test_parquet_cache_is_reused_and_invalidated(mixed_copy: Path) -> None:
    first = k6.ingest(mixed_copy)
    assert not first.files[0].from_cache
    cache = k6.cache_dir(mixed_copy)
    assert (cache / "points.parquet").exists() and (cache / "meta.json").exists()
    second = k6.ingest(mixed_copy)
    assert second.files[0].from_cache
    cached, fresh = k6.summarize(second), k6.summarize(mixed_copy, cache=False)
    assert cached["lines"] == fresh["lines"] and cached["metrics"].keys() == fresh["metrics"].keys()
    for name, stats in cached["metrics"].items():
        assert stats == pytest.approx(fresh["metrics"][name], rel=1e-12), name
    # Appending changes size and mtime: the cache is rebuilt, the new sample counted.
    before = k6.summarize(mixed_copy)["metrics"]["iterations"]["count"]
    with mixed_copy.open("a") as fh:
        fh.write(
            '{"metric":"iterations","type":"Point","data":{"time":'
            '"2030-01-01T00:00:00Z","value":1,"tags":{}}}\n'
        )
    third = k6.ingest(mixed_copy)
    assert not third.files[0].from_cache
    assert k6.summarize(third)["metrics"]["iterations"]["count"] == before + 1


@pytest.mark.k6
def test_summary_cache_reused_and_keyed_on_the_source(mixed_copy: Path) -> None:
    first = k6.summarize(mixed_copy)
    cached = k6.cache_dir(mixed_copy) / "summary.json"
    assert cached.exists()
    assert not (k6.cache_dir(mixed_copy) / "points.parquet").exists()  # cold path: narrow
    assert k6.summarize(mixed_copy) == first
    # A stale entry is ignored: same file, other content → recomputed.
    doc = json.loads(cached.read_text())
    doc["summary"]["metrics"]["http_reqs"]["count"] = -1
    cached.write_text(json.dumps(doc))
    assert k6.summarize(mixed_copy)["metrics"]["http_reqs"]["count"] == -1  # trusted when fresh
    os.utime(mixed_copy, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert (
        k6.summarize(mixed_copy)["metrics"]["http_reqs"]["count"]
        == first["metrics"]["http_reqs"]["count"]
    )


@pytest.mark.k6
def test_run_dir_object_source(k6_runs: dict[str, Path], tmp_path: Path) -> None:
    shutil.copyfile(k6_runs["seg1"], tmp_path / "k6.ndjson")
    run = RunDir.create(tmp_path, {"schema": 1})
    assert (
        k6.summarize(run, cache=False)["metrics"]["iterations"]["count"]
        == k6.summarize(k6_runs["seg1"], cache=False)["metrics"]["iterations"]["count"]
    )


@pytest.mark.k6
def test_no_cache_leaves_nothing_behind(mixed_copy: Path) -> None:
    k6.summarize(mixed_copy, cache=False)
    k6.read_points(mixed_copy, cache=False)
    assert not k6.cache_dir(mixed_copy).exists()


# --------------------------------------------------------------------------- CLI


@pytest.mark.k6
def test_cli_summarize_json_and_table(mixed_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["summarize", str(mixed_copy), "--json", "--no-cache"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (
        out["metrics"]["http_reqs"]["count"]
        == k6.summarize(mixed_copy, cache=False)["metrics"]["http_reqs"]["count"]
    )
    assert cli_main(["summarize", str(mixed_copy)]) == 0
    table = capsys.readouterr().out
    assert "http_req_duration{name:slow}" in table and "p(95)=" in table


@pytest.mark.k6
def test_cli_exit_codes_and_warnings(
    mixed_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["summarize", str(tmp_path / "nope.ndjson")]) == 2
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\nworld\n")
    assert cli_main(["summarize", str(junk)]) == 2
    assert "not k6" in capsys.readouterr().err
    with mixed_copy.open("ab") as fh:
        fh.write(b'{"metric":"vus","type":"Po')
    assert cli_main(["summarize", str(mixed_copy), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["lines"]["skipped"] == 1
    assert "warning:" in captured.err and "unterminated" in captured.err


# --------------------------------------------------------------------------- summary files


def test_read_summary_export_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(k6.K6InputError, match="no such file"):
        k6.read_summary_export(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(k6.K6InputError, match="invalid JSON"):
        k6.read_summary_export(bad)
    bad.write_text('{"root_group": {}}')
    with pytest.raises(k6.K6InputError, match="no 'metrics'"):
        k6.read_summary_export(bad)


# --------------------------------------------------------------------------- recorded fixtures


def _fixture_pairs() -> list[tuple[Path, Path]]:
    return [
        (p, p.with_name(p.name.replace(".ndjson.gz", "-export.json")))
        for p in sorted(FIXTURES.glob("*.ndjson.gz"))
    ]


@pytest.mark.parametrize("ndjson,export", _fixture_pairs(), ids=lambda p: p.name)
def test_recorded_fixture_equals_its_k6_summary(ndjson: Path, export: Path, tmp_path: Path) -> None:
    """Recorded real k6 v1.1.0 outputs (tests/k6_scripts/record_fixtures.py): no k6 needed."""
    src = tmp_path / ndjson.name
    shutil.copyfile(ndjson, src)
    summary = k6.summarize(src)
    assert assert_matches_k6(summary["metrics"], k6.read_summary_export(export)) > 50
    assert summary["lines"]["skipped"] == 0


def test_fixtures_are_recorded() -> None:
    assert len(_fixture_pairs()) >= 1


# --------------------------------------------------------------------------- re-serialised input


def _data_first(obj: dict[str, Any]) -> dict[str, Any]:
    """Keys in another order: ``data`` first, ``tags`` before ``time``, integral values as int."""
    data = dict(obj["data"])
    if obj["type"] == "Point":
        value = data["value"]
        data = {
            "tags": data.get("tags"),
            "value": int(value) if float(value).is_integer() else value,
            "time": data["time"],
        }
    return {"data": data, "type": obj["type"], "metric": obj["metric"]}


#: Valid JSON Lines of the same objects, none in k6's exact bytes.
RESERIALISERS = {
    "json.dumps": lambda o: json.dumps(o),
    "sort_keys": lambda o: json.dumps(o, sort_keys=True),
    "sort_keys_compact": lambda o: json.dumps(o, sort_keys=True, separators=(",", ":")),
    "data_first_compact": lambda o: json.dumps(_data_first(o), separators=(",", ":")),
    "whitespace": lambda o: " \t" + json.dumps(_data_first(o), separators=(" , ", " : ")) + "  ",
    # "Metric" spelt with an escape: invisible to any byte search, DuckDB's count catches it.
    "escaped_type": lambda o: json.dumps(_data_first(o)).replace('"Metric"', '"\\u004detric"'),
}


def _reserialise(src: Path, dest: Path, dump: Any) -> int:
    lines = gzip.decompress(src.read_bytes()).decode().splitlines()
    dest.write_text("".join(dump(json.loads(line)) + "\n" for line in lines), encoding="utf-8")
    return len(lines)


@pytest.mark.parametrize("variant", sorted(RESERIALISERS))
def test_reserialised_k6_output_reads_the_same(
    variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Key order and spacing carry no meaning: summary, frames and metadata are unchanged."""
    src = FIXTURES / "mixed.ndjson.gz"
    orig = tmp_path / "orig.ndjson.gz"
    shutil.copyfile(src, orig)
    copy = tmp_path / "copy.ndjson"
    n = _reserialise(src, copy, RESERIALISERS[variant])
    assert not copy.read_bytes().startswith(b'{"type":"Metric"')  # off k6's byte fast path
    assert k6_fast._fast_summary([copy]) is None  # not k6's exact bytes: the C reader hands over
    monkeypatch.setenv("PERFLIB_K6_FAST", "0")  # so the original is read by DuckDB too

    theirs, mine = k6.summarize(orig, cache=False), k6.summarize(copy, cache=False)
    assert mine == theirs
    assert mine["lines"] == {"parsed": n, "skipped": 0} and mine["warnings"] == []
    assert assert_matches_k6(
        mine["metrics"], k6.read_summary_export(FIXTURES / "mixed-export.json")
    )
    # Percentiles are real percentiles (the bug gave p(90) = p(95) = p(99) = min).
    values = [p["data"]["value"] for p in raw_points(copy) if p["metric"] == "http_req_duration"]
    assert mine["metrics"]["http_req_duration"]["p(95)"] == pytest.approx(
        np.percentile(values, 95), rel=1e-12
    )
    assert k6.read_metric_meta(copy, cache=False) == k6.read_metric_meta(orig, cache=False)
    # The cached path (Parquet, all tags) too: frames equal the original's, custom tags included.
    points = k6.read_points(copy)
    pd.testing.assert_frame_equal(points, k6.read_points(orig))
    assert "kind" in points.columns  # a custom tag, sampled from the head of the file
    pd.testing.assert_frame_equal(k6.read_requests(copy), k6.read_requests(orig))
    assert k6.summarize(copy) == theirs  # from the Parquet cache


def test_escaped_metric_lines_take_the_general_path(tmp_path: Path) -> None:
    """The byte scan cannot see ``"\\u004detric"``; DuckDB's Metric rows overrule it."""
    copy = tmp_path / "escaped.ndjson"
    _reserialise(FIXTURES / "mixed.ndjson.gz", copy, RESERIALISERS["escaped_type"])
    scan = k6_scan._prescan(copy, gz=False)
    assert scan.metric_lines == [] and scan.escapes
    meta = k6.read_metric_meta(copy, cache=False)
    assert meta["http_req_duration"]["type"] == "trend" and meta["checks"]["type"] == "rate"
    summary = k6.summarize(copy, cache=False)
    assert summary["warnings"] == []
    assert "http_req_duration{name:slow}" in summary["metrics"]  # a declared sub-metric's tag
    # Cut mid-gzip (k6 killed): DuckDB refuses the stream, the sanitised copy is read instead.
    gz = gzip.compress(copy.read_bytes())
    cut = tmp_path / "escaped-cut.ndjson.gz"
    cut.write_bytes(gz[: len(gz) * 2 // 3])
    assert k6.read_metric_meta(cut, cache=False) == meta  # every metric is declared early


def test_point_mentioning_metric_is_not_a_declaration(tmp_path: Path) -> None:
    """A tag value "Metric" or a cut, re-spaced Metric line: counted exactly, never misread."""
    point = {"metric": "m", "type": "Point", "data": {"time": "2026-01-01T00:00:00Z", "value": 2}}
    decl = {
        "type": "Metric",
        "data": {"name": "m", "type": "gauge", "contains": "default", "thresholds": []},
        "metric": "m",
    }
    tagged = {
        **point,
        "data": {"time": "2026-01-01T00:00:01Z", "value": 5, "tags": {"kind": "Metric"}},
    }
    lines = [json.dumps(decl), json.dumps(point), json.dumps(tagged), json.dumps(decl)[:30]]
    path = tmp_path / "k6.ndjson"
    path.write_text("\n".join(lines), encoding="utf-8")  # the last line is cut, unterminated
    summary = k6.summarize(path, cache=False)
    assert summary["lines"] == {"parsed": 3, "skipped": 1}
    assert summary["metrics"]["m"] == {"value": 5.0, "min": 2.0, "max": 5.0}  # a gauge
    assert any("unterminated" in w for w in summary["warnings"])


def test_undeclared_metrics_get_real_percentiles(tmp_path: Path) -> None:
    """No Metric line at all: every metric is summarised as a trend, with its percentiles."""
    rng = np.random.default_rng(7)
    values = rng.lognormal(3, 1, 501)
    path = tmp_path / "points-only.ndjson"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "type": "Point",
                    "metric": "t",
                    "data": {"value": v, "time": "2026-01-01T00:00:00Z"},
                }
            )
            + "\n"
            for v in values
        ),
        encoding="utf-8",
    )
    stats = k6.summarize(path, cache=False)["metrics"]["t"]
    for key, p in (("med", 50), ("p(90)", 90), ("p(95)", 95), ("p(99)", 99)):
        assert stats[key] == pytest.approx(np.percentile(values, p), rel=1e-12), key
    assert stats["p(99)"] > stats["p(90)"] > stats["min"]
    assert k6.read_metric_meta(path, cache=False) == {}


def test_prescan_finds_reserialised_metric_lines_across_chunk_boundaries(tmp_path: Path) -> None:
    decl = {"data": {"name": "m", "type": "trend"}, "metric": "m", "type": "Metric"}
    metric = json.dumps(decl).encode()
    point = (
        b'{"data": {"value": 1, "time": "2026-01-01T00:00:00Z"}, "type": "Point", "metric": "m"}'
    )
    path = tmp_path / "x.ndjson"
    path.write_bytes(b"\n".join([point, metric, point, metric, metric]))  # no final newline
    for size in (1, 7, 16, 17, 50, 1 << 20):
        scan = k6_scan._prescan(path, gz=False, chunk_size=size)
        assert scan.metric_lines == [metric] * 3, size
        assert scan.lines == 5 and not scan.ends_with_newline and not scan.escapes


def test_cold_summary_of_a_plain_file_is_one_duckdb_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """k6's own plain file takes the single-pass path (no table, no Metric-line byte scan),
    and it gives what the general path gives for the same bytes gzipped."""
    monkeypatch.setenv("PERFLIB_K6_FAST", "0")  # DuckDB's readers, not the C one
    src = FIXTURES / "mixed.ndjson.gz"
    gz = tmp_path / "k6.ndjson.gz"
    shutil.copyfile(src, gz)
    general = k6.summarize(gz, cache=False)
    plain = tmp_path / "k6.ndjson"
    plain.write_bytes(gzip.decompress(src.read_bytes()))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the general path was taken")

    for module in (k6_summary, k6_cache):
        monkeypatch.setattr(module, "_parse_into", refuse)
        monkeypatch.setattr(module, "_prescan", refuse)
    assert k6.summarize(plain, cache=False) == general
    assert assert_matches_k6(
        general["metrics"], k6.read_summary_export(FIXTURES / "mixed-export.json")
    )


def test_sub_metric_declared_late_falls_back_to_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sub-metric filters are taken from the first MiB; a declaration further on (here all of
    them, after 1.5 MiB of blank lines) must not be missed: same summary as the general path."""
    body = gzip.decompress((FIXTURES / "mixed.ndjson.gz").read_bytes())
    blank = 3 * (1 << 19)
    plain = tmp_path / "late.ndjson"
    plain.write_bytes(b"\n" * blank + body)
    gz = tmp_path / "late.ndjson.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    general = k6.summarize(gz, cache=False)
    calls: list[Path] = []
    parse_into = k6_cache._parse_into

    def spy(path: Path, *args: Any, **kwargs: Any) -> Any:
        calls.append(path)
        return parse_into(path, *args, **kwargs)

    monkeypatch.setattr(k6_summary, "_parse_into", spy)
    mine = k6.summarize(plain, cache=False)
    assert calls == [plain]  # the single pass handed over
    assert mine["metrics"] == general["metrics"] and mine["lines"] == general["lines"]
    assert mine["warnings"] == [w.replace(".gz:", ":") for w in general["warnings"]]
    assert mine["lines"] == {"parsed": body.count(b"\n"), "skipped": blank}
    assert "http_req_duration{expected_response:true}" in mine["metrics"]
    assert assert_matches_k6(
        mine["metrics"], k6.read_summary_export(FIXTURES / "mixed-export.json")
    )


def test_plain_file_duckdb_refuses_is_sanitised_and_counted(tmp_path: Path) -> None:
    """A 40 MiB line (longer than DuckDB will skip, over several read chunks) makes it refuse
    the file: the single pass hands over to the sanitising general path, which counts that
    line once (it used to count it once per 8 MiB chunk)."""
    body = gzip.decompress((FIXTURES / "mixed.ndjson.gz").read_bytes())
    path = tmp_path / "k6.ndjson"
    path.write_bytes(body + b'{"x":"' + b"x" * (40 << 20) + b'"}\n' + b'{"metric":"\xff"}\n')
    summary = k6.summarize(path, cache=False)
    assert summary["lines"] == {"parsed": body.count(b"\n"), "skipped": 2}
    assert any("skipped 1 line(s) longer than" in w for w in summary["warnings"])
    export = k6.read_summary_export(FIXTURES / "mixed-export.json")
    assert assert_matches_k6(summary["metrics"], export)


def test_undeclared_http_metric_is_still_split_per_endpoint(tmp_path: Path) -> None:
    """The single pass splits per endpoint only the HTTP metrics declared in the first MiB;
    an undeclared one hands the file over, so its ``{name:…}`` splits are still there and
    equal numpy's percentiles of the raw values, and the gzipped (general path) summary."""
    rng = np.random.default_rng(11)
    names = rng.choice(["/a", "/b", "/c"], 900)
    values = rng.lognormal(3, 1, 900)
    lines = [
        json.dumps(
            {
                "type": "Point",
                "metric": "http_req_duration",
                "data": {"value": v, "time": "2026-01-01T00:00:00Z", "tags": {"name": str(n)}},
            }
        )
        for n, v in zip(names, values, strict=True)
    ]
    plain = tmp_path / "http.ndjson"
    plain.write_text("\n".join(lines) + "\n", encoding="utf-8")
    gz = tmp_path / "http.ndjson.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    mine = k6.summarize(plain, cache=False)
    assert mine["metrics"] == k6.summarize(gz, cache=False)["metrics"]
    assert mine["lines"] == {"parsed": 900, "skipped": 0}
    for name in ("/a", "/b", "/c"):
        got = mine["metrics"][f"http_req_duration{{name:{name}}}"]
        sel = values[names == name]
        assert got["count"] == sel.size
        assert got["p(95)"] == pytest.approx(np.percentile(sel, 95), rel=1e-12)


# --------------------------------------------------------------------------- impossible values


def _with_values(src: Path, dest: Path, planted: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Copy k6 NDJSON (k6's byte shape), replacing the first values of the ``planted`` metrics
    by the given JSON spellings; returns each metric's values as they are now (NaN for the
    spellings Python cannot hold exactly is fine: they are excluded)."""
    out, todo, kept = [], {m: list(v) for m, v in planted.items()}, defaultdict(list)
    with gzip.open(src, "rt", encoding="utf-8") as fh:
        for line in fh:
            obj = json.loads(line)
            metric = obj.get("metric")
            if obj["type"] == "Point" and todo.get(metric):
                spelling = todo[metric].pop(0)
                old = json.dumps(obj["data"]["value"])
                line = line.replace(f'"value":{old},', f'"value":{spelling},', 1)
                kept[metric].append(float(spelling.replace("Infinity", "inf")))
            elif obj["type"] == "Point":
                kept[metric].append(obj["data"]["value"])
            out.append(line)
    dest.write_text("".join(out), encoding="utf-8")
    return {m: np.asarray(v, dtype="float64") for m, v in kept.items()}


@pytest.mark.parametrize("reader", ["fast", "duckdb", "gzip", "parquet"])
def test_impossible_values_are_excluded_and_counted_by_every_reader(
    make_run: RunFactory,
    tmp_path: Path,
    reader: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """NaN, ±Infinity, a negative duration, a duration of 1e300 ms and of 8e8 ms (> a week),
    a negative byte count: excluded from the statistics, counted per kind, warned about —
    the same through the C reader (which hands such a file to DuckDB), DuckDB's single pass,
    the gzip path and the Parquet cache. The statistics equal numpy's on the plausible values."""

    run = make_run("run", requests=200)
    src = tmp_path / "bad.ndjson"
    values = _with_values(
        run.path / "k6.ndjson.gz",
        src,
        {
            "http_req_duration": ["NaN", "Infinity", "-Infinity", "-5.0", "1e300", "8e8"],
            "http_req_waiting": ["NaN"],
            "vus": ["-2.0"],  # a gauge of contains "default": negative is possible, kept
        },
    )
    if reader == "gzip":
        gz = tmp_path / "bad.ndjson.gz"
        gz.write_bytes(gzip.compress(src.read_bytes()))
        src = gz
    if reader == "duckdb":
        monkeypatch.setenv("PERFLIB_K6_FAST", "0")
    if reader == "fast" and k6.fast_reader() is not None:
        assert (
            k6_fast._fast_summary([src]) is None
        )  # the C reader hands it over, never averages NaN
    if reader == "parquet":
        k6.read_points(src)
    summary = k6.summarize(src, cache=reader == "parquet")
    assert summary["excluded"] == {
        "http_req_duration": {"NaN": 1, "infinite": 2, "negative": 1, "absurd": 2},
        "http_req_waiting": {"NaN": 1},
    }
    dur = values["http_req_duration"]
    ok = dur[np.isfinite(dur) & (dur >= 0) & (dur <= k6.MAX_TIME_MS)]
    assert ok.size == dur.size - 6
    got = summary["metrics"]["http_req_duration"]
    assert got["count"] == ok.size
    assert got["avg"] == pytest.approx(ok.mean(), rel=1e-12)
    assert got["max"] == pytest.approx(ok.max()) and got["min"] == pytest.approx(ok.min())
    assert got["p(99)"] == pytest.approx(np.percentile(ok, 99), rel=1e-12)
    assert summary["metrics"]["vus"]["min"] == -2.0  # not a duration: kept
    assert summary["lines"]["skipped"] == 0  # the lines are parsed; only values are excluded
    (w,) = [w for w in summary["warnings"] if w.startswith("http_req_duration:")]
    assert w == (
        "http_req_duration: 6 impossible value(s) excluded from its statistics (1 NaN, "
        "2 infinite, 1 negative, 2 absurd; plausible: 0 to 6.048e+08 ms)"
    )
    # the CLI: warnings on stderr, no "nan"/"inf" or 300-digit numbers on stdout
    assert cli_main(["summarize", str(src), "--no-cache"]) == 0
    out, err = capsys.readouterr()
    assert "warning: http_req_duration: 6 impossible value(s)" in err
    assert "nan" not in out and "inf" not in out.replace("info", "")
    assert max(len(digits) for digits in re.findall(r"\d+", out)) < 20  # no 300-digit numbers
    assert "7 impossible value(s) excluded" in out
