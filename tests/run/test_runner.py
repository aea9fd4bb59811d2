"""`perflib run` end to end: real k6 against the real local stack, at tiny time scales."""

from __future__ import annotations

import argparse
import gzip
import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from perflib.cli import main as cli_main
from perflib.profiles import PROFILES
from perflib.run import runner
from perflib.run.runner import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_K6_NOT_FOUND,
    EXIT_OK,
    EXIT_OOM,
    EXIT_THRESHOLDS,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    RunError,
    execution_segments,
    free_port,
    run_profile,
    samplers_for,
)
from perflib.run.stack import LocalStack
from perflib.run.vm import EmulationSettings
from perflib.rundir import RunDir, read_events, read_samples

pytestmark = [pytest.mark.k6, pytest.mark.slow]
FAST_UPSTREAMS = {"EMULATOR_LATENCY_SCALE": "0.05"}
HTTP_REQS_PREFIX = b'{"metric":"http_reqs","type":"Point"'


def count_points(path: Path, metric: str = "http_reqs") -> int:
    """http_reqs Points in a k6 NDJSON(.gz), counted with gzip + json (not perflib.ingest)."""
    n = 0
    with gzip.open(path, "rb") as fh:
        for line in fh:
            obj = json.loads(line)
            if obj.get("type") == "Point" and obj.get("metric") == metric:
                n += int(obj["data"]["value"])
    return n


def point_names(path: Path) -> set[str]:
    with gzip.open(path, "rb") as fh:
        return {
            json.loads(line)["data"]["tags"]["name"]
            for line in fh
            if line.startswith(HTTP_REQS_PREFIX)
        }


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(datetime.fromisoformat(text.replace("Z", "+00:00")))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One local stack for the URL-mode tests (the local-mode tests start their own)."""
    s = LocalStack(workdir=tmp_path_factory.mktemp("stack"), emulator_env=FAST_UPSTREAMS)
    s.start()
    yield s
    s.stop()


def test_local_load_run_is_complete_and_consistent(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = run_profile(
        "load",
        time_scale=0.03,
        out=out,
        emulator_env=FAST_UPSTREAMS,
        progress=False,
        sample_interval=0.5,
    )
    assert res.run_dir == out
    run = RunDir.open(out)
    m = run.manifest
    # k6's verdict decides ok vs thresholds_failed; either way the data must be complete
    assert res.exit_code in (EXIT_OK, EXIT_THRESHOLDS), m["exit"]
    assert m["exit"]["status"] == ("ok" if m["exit"]["k6"] == 0 else "thresholds_failed")
    for name in (
        "manifest.json",
        "k6.ndjson.gz",
        "k6-summary.json",
        "samples.csv",
        "events.jsonl",
        "service.log",
    ):
        assert (out / name).is_file(), name
    assert m["schema"] == 1 and m["profile"] == "load" and m["script"] == "tests/load-test.js"
    assert m["stages"] == PROFILES["load"].scaled_stages(0.03)
    assert [s["name"] for s in m["stages"]] == ["ramp-up", "steady", "peak", "ramp-down"]
    assert m["start_load"] == 0  # with the targets: ramp 0→5 VUs, ramp 5→10 VUs, …
    assert m["target"]["kind"] == "local" and m["target"]["base_url"].startswith(
        "http://127.0.0.1:"
    )
    assert m["vm"]["preset"] == "shared-cpu-1x:1024mb" and m["vm"]["memory_mb"] == 1024
    assert m["vm"]["emulation"]["memory"] and m["vm"]["emulation"]["cpu_pin"]
    assert m["vm"]["emulation"]["quota_method"] in ("cgroup", "signals")
    assert m["versions"]["k6"] == "v1.1.0" and m["versions"]["perflib"]
    assert m["k6_outputs"] == ["k6.ndjson.gz"] and m["segments"] == 1
    assert m["exit"]["service"] is not None  # the stack stopped the service and said how
    # request counts: k6's own summary = the Points in the raw stream
    summary = run.k6_summary()
    assert summary is not None
    n = count_points(out / "k6.ndjson.gz")
    assert n > 0 and summary["metrics"]["http_reqs"]["count"] == n
    assert "p(99)" in summary["metrics"]["http_req_duration"]  # --summary-trend-stats
    assert point_names(out / "k6.ndjson.gz") == {"/health", "/api/v1/leads/process"}
    # the samples cover the whole k6 window
    samples = read_samples(out / "samples.csv")
    assert samples["time"].min() <= _ts(m["k6_started_at"])
    assert samples["time"].max() >= _ts(m["k6_ended_at"])
    assert (samples["memory_limit_mb"] == 1024).all() and (samples["source"] == "local").all()
    assert samples["memory_used_mb"].dropna().gt(40).all()  # app + 40 MB guest overhead
    events = read_events(out / "events.jsonl")
    k6_exit = events[events["type"] == "k6_exit"].iloc[0]["detail"]
    assert k6_exit["exit_code"] == m["exit"]["k6"]
    assert k6_exit["requests"] == n
    assert "Step 1" in (out / "service.log").read_text()  # the service's own log is kept
    assert (
        _ts(m["started_at"])
        <= _ts(m["k6_started_at"])
        <= _ts(m["k6_ended_at"])
        <= _ts(m["ended_at"])
    )


def test_oom_killed_service_is_recorded_restarted_and_the_run_finishes(tmp_path: Path) -> None:
    out = tmp_path / "oom"
    res = run_profile(
        "smoke",
        vm="shared-cpu-1x:64mb",
        time_scale=0.05,
        out=out,
        emulation=EmulationSettings(max_restarts=2),
        emulator_env=FAST_UPSTREAMS,
        progress=False,
        sample_interval=0.5,
    )
    assert res.exit_code == EXIT_OOM
    m = RunDir.open(out).manifest
    assert m["exit"]["status"] == "oom_killed" and "OOM-killed" in m["exit"]["message"]
    assert m["exit"]["k6"] is not None  # k6 ran to its end
    assert m["vm"]["result"]["oom_kills"] >= 1 and m["vm"]["result"]["restarts"] >= 1
    events = read_events(out / "events.jsonl")
    types = list(events["type"])
    assert "oom_killed" in types and "restart" in types
    assert types.index("oom_killed") < types.index("restart")
    kill = events[events["type"] == "oom_killed"].iloc[0]["detail"]
    assert kill["memory_mb"] > 64 and kill["limit_mb"] == 64
    log = (out / "service.log").read_text()
    assert f"Out of memory: Killed process {kill['pid']} (" in log
    assert (out / "k6-summary.json").is_file() and count_points(out / "k6.ndjson.gz") >= 0


def test_segments_split_the_load_and_add_up(tmp_path: Path, stack: LocalStack) -> None:
    out = tmp_path / "seg"
    res = run_profile(
        "load", base_url=stack.base_url, time_scale=0.03, out=out, segments=2, progress=False
    )
    assert res.exit_code in (EXIT_OK, EXIT_THRESHOLDS)
    m = RunDir.open(out).manifest
    assert m["k6_outputs"] == ["k6-0.ndjson.gz", "k6-1.ndjson.gz"]
    assert m["execution_segments"] == ["0:1/2", "1/2:1"] and m["target"]["kind"] == "url"
    total = 0
    for i in range(2):
        n = count_points(out / f"k6-{i}.ndjson.gz")
        summary = json.loads((out / f"k6-summary-{i}.json").read_text())
        assert summary["metrics"]["http_reqs"]["count"] == n > 0
        # each process ran half of the VUs (20 at peak)
        assert summary["metrics"]["vus_max"]["max"] == 10
        total += n
    assert RunDir.open(out).k6_outputs == [out / "k6-0.ndjson.gz", out / "k6-1.ndjson.gz"]
    events = read_events(out / "events.jsonl")
    assert sorted(d["segment"] for d in events[events["type"] == "k6_exit"]["detail"]) == [0, 1]
    assert total > 0


def test_threshold_failure_is_a_result_with_everything_kept(tmp_path: Path, stack) -> None:
    script = tmp_path / "strict.js"
    script.write_text(
        "import http from 'k6/http';\n"
        "export const options = {vus: 1, duration: '2s',\n"
        "  thresholds: {http_req_duration: ['p(95)<0.0001']}};\n"
        "export default function () { http.get(`${__ENV.BASE_URL}/health`); }\n"
    )
    res = run_profile(script, base_url=stack.base_url, out=tmp_path / "strict", progress=False)
    assert res.exit_code == EXIT_THRESHOLDS == 99
    m = RunDir.open(tmp_path / "strict").manifest
    assert (m["exit"]["status"], m["exit"]["k6"]) == ("thresholds_failed", 99)
    assert m["stages"] == [{"name": "steady", "start_s": 0.0, "duration_s": 2.0, "target": 1.0}]
    n = count_points(tmp_path / "strict" / "k6.ndjson.gz")
    summary = json.loads((tmp_path / "strict" / "k6-summary.json").read_text())
    assert summary["metrics"]["http_reqs"]["count"] == n > 0


def test_unreachable_target(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    res = run_profile("smoke", base_url=url, out=tmp_path / "u", health_timeout=0.5, progress=False)
    assert res.exit_code == EXIT_UNREACHABLE
    m = RunDir.open(tmp_path / "u").manifest
    assert m["exit"]["status"] == "error" and url in m["exit"]["message"]
    assert m["exit"]["k6"] is None and not (tmp_path / "u" / "k6.ndjson.gz").exists()


def test_k6_not_found_via_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("K6_BINARY", str(tmp_path / "no-such-k6"))
    code = cli_main(
        ["run", "smoke", "--base-url", "http://127.0.0.1:9", "--out", str(tmp_path / "r")]
    )
    assert code == EXIT_K6_NOT_FOUND
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "r")
    m = RunDir.open(tmp_path / "r").manifest
    assert m["exit"]["status"] == "error" and "k6 not found" in m["exit"]["message"]


def test_bad_arguments_are_usage_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(RunError) as err:
        run_profile("nope", out=tmp_path / "x")
    assert err.value.exit_code == EXIT_USAGE and "unknown profile" in str(err.value)
    assert cli_main(["run", "load", "--vm", "shared-cpu-3x", "--out", str(tmp_path / "y")]) == 2
    assert "1, 2, 4, 6, 8" in capsys.readouterr().err
    assert cli_main(["run", "load", "--time-scale", "0", "--out", str(tmp_path / "z")]) == 2
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "manifest.json").write_text("{}")
    with pytest.raises(RunError, match="already holds a run"):
        run_profile("load", out=tmp_path / "taken")


def test_ctrl_c_stops_k6_gracefully_and_keeps_data(tmp_path: Path, stack) -> None:
    out = tmp_path / "int"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perflib",
            "run",
            "smoke",
            "--base-url",
            stack.base_url,
            "--time-scale",
            "0.5",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    # interrupt once k6 is running (the manifest records its start) and has sent requests
    while time.monotonic() < deadline:
        mf = out / "manifest.json"
        if mf.exists() and json.loads(mf.read_text()).get("k6_started_at"):
            break
        time.sleep(0.1)
    time.sleep(2.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert stdout.strip().splitlines()[-1] == str(out)
    m = RunDir.open(out).manifest
    assert m["exit"]["status"] == "interrupted" and m["ended_at"]
    assert m["exit"]["k6"] is not None  # k6 exited by itself after the graceful stop
    n = count_points(out / "k6.ndjson.gz")  # a complete gzip stream: k6 closed it
    assert n > 0
    summary = json.loads((out / "k6-summary.json").read_text())
    assert summary["metrics"]["http_reqs"]["count"] == n
    assert "interrupted" in set(read_events(out / "events.jsonl")["type"])


def test_execution_segments() -> None:
    assert execution_segments(1) == (["0:1"], "0,1")
    assert execution_segments(3) == (["0:1/3", "1/3:2/3", "2/3:1"], "0,1/3,2/3,1")
    with pytest.raises(ValueError):
        execution_segments(0)


def test_sampler_factories_are_the_extension_point(monkeypatch) -> None:
    args = argparse.Namespace(prometheus=None, fly_app=None, fly_org=None)
    assert samplers_for(args) == []

    class Dummy(runner.Sampler):
        source = "dummy"

        def start(self, sink, events) -> None: ...

        def stop(self) -> None: ...

    monkeypatch.setattr(
        runner, "SAMPLER_FACTORIES", [*runner.SAMPLER_FACTORIES, lambda a: [Dummy()]]
    )
    (only,) = samplers_for(args)
    assert only.source == "dummy"


def test_exit_codes_are_distinct() -> None:
    codes = [
        EXIT_OK,
        EXIT_ERROR,
        EXIT_USAGE,
        EXIT_K6_NOT_FOUND,
        EXIT_UNREACHABLE,
        EXIT_OOM,
        EXIT_THRESHOLDS,
        EXIT_INTERRUPTED,
    ]
    assert len(set(codes)) == len(codes)


def test_k6_that_cannot_start(tmp_path: Path, monkeypatch, stack) -> None:
    fake = tmp_path / "k6"
    fake.write_bytes(b"\x00not an executable\x00")
    fake.chmod(0o755)
    monkeypatch.setenv("K6_BINARY", str(fake))
    runner.k6_version.cache_clear()
    try:
        res = run_profile("smoke", base_url=stack.base_url, out=tmp_path / "r", progress=False)
    finally:
        runner.k6_version.cache_clear()
    assert res.exit_code == EXIT_K6_NOT_FOUND
    assert "could not be started" in RunDir.open(tmp_path / "r").manifest["exit"]["message"]
