"""Stage tables in perflib.profiles against what k6 itself reads from the scripts."""

from __future__ import annotations

import http.server
import subprocess
import threading
import urllib.parse
from pathlib import Path
from typing import ClassVar

import pytest

from perflib import profiles
from perflib.profiles import (
    PROFILES,
    get_profile,
    k6_inspect,
    parse_k6_duration,
    scaled_seconds,
    stages_from_options,
)
from perflib.tooling import REPO_ROOT, find_k6

pytestmark = pytest.mark.k6

# The guide's load profile, spelled independently of perflib/profiles.py.
GUIDE_LOAD = [("30s", 5), ("1m0s", 10), ("1m30s", 20), ("30s", 0)]


def _scenario(name: str, scale: float) -> dict:
    opts = k6_inspect(PROFILES[name].script, {"TIME_SCALE": str(scale), "LEAD_ID": "x"})
    (scenario,) = opts["scenarios"].values()
    return scenario | {"_thresholds": opts["thresholds"]}


def test_load_script_is_the_guide_profile() -> None:
    sc = _scenario("load", 1)
    assert sc["executor"] == "ramping-vus"
    assert sc["startVUs"] == 0
    got = [(s["duration"], s["target"]) for s in sc["stages"]]
    assert [(parse_k6_duration(d), t) for d, t in got] == [
        (parse_k6_duration(d), t) for d, t in GUIDE_LOAD
    ]
    assert sc["_thresholds"] == {
        "http_req_duration": ["p(95)<2000"],
        "http_req_failed": ["rate<0.10"],
    }
    names = [s["name"] for s in PROFILES["load"].scaled_stages(1)]
    assert names == ["ramp-up", "steady", "peak", "ramp-down"]


def test_smoke_script_thresholds_are_the_guides() -> None:
    sc = _scenario("smoke", 1)
    assert sc["_thresholds"] == {
        "http_req_duration": ["p(95)<3000"],
        "http_req_failed": ["rate<0.05"],
        "checks{name:/health}": ["rate==1"],
    }


@pytest.mark.parametrize("name", sorted(PROFILES))
@pytest.mark.parametrize("scale", [1, 0.05, 0.37])
def test_stage_tables_match_k6_inspect(name: str, scale: float) -> None:
    sc = _scenario(name, scale)
    executor, start, k6_stages = stages_from_options({"scenarios": {"x": sc}})
    prof = PROFILES[name]
    assert executor == prof.executor
    ours = prof.scaled_stages(scale)
    assert [(s.duration_s, s.target) for s in k6_stages] == [
        (s["duration_s"], s["target"]) for s in ours
    ]
    # stages are contiguous from k6 start
    assert [s["start_s"] for s in ours] == [
        sum(x["duration_s"] for x in ours[:i]) for i in range(len(ours))
    ]
    if "gracefulStop" in sc:
        assert parse_k6_duration(sc["gracefulStop"]) == prof.graceful_stop_s(scale)


def test_total_duration_matches_execution_requirements() -> None:
    opts = k6_inspect(
        PROFILES["load"].script, {"TIME_SCALE": "0.05", "LEAD_ID": "x"}, execution_requirements=True
    )
    prof = PROFILES["load"]
    # k6's totalDuration = stages + gracefulRampDown... the longest of the graceful windows
    assert parse_k6_duration(opts["totalDuration"]) == prof.duration_s(0.05) + prof.graceful_stop_s(
        0.05
    )
    assert opts["maxVUs"] == 20


def test_scaling_rounds_like_javascript() -> None:
    # Math.round is half-up; Python's round() is half-even and would give 2 for 2.5.
    assert scaled_seconds(50, 0.05) == 3  # 2.5 -> 3
    assert scaled_seconds(30, 0.05) == 2  # 1.5 -> 2
    assert scaled_seconds(10, 0.01) == 1  # never below 1 s
    with pytest.raises(ValueError, match="positive"):
        scaled_seconds(10, 0)


def test_parse_k6_duration() -> None:
    assert parse_k6_duration("1m30s") == 90
    assert parse_k6_duration("500ms") == 0.5
    assert parse_k6_duration("1h0m0s") == 3600
    with pytest.raises(ValueError):
        parse_k6_duration("90 seconds")


def test_custom_script_and_unknown_profile(tmp_path) -> None:
    script = tmp_path / "custom.js"
    script.write_text(
        "export const options = {stages: [{duration: '5s', target: 2}, {duration: '1m', target: 0}]};\n"
        "export default function () {}\n"
    )
    prof = get_profile(script)
    assert prof.executor == "ramping-vus"
    assert [(s.duration_s, s.target) for s in prof.stages] == [(5, 2), (60, 0)]
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        get_profile("nope")
    with pytest.raises(FileNotFoundError):
        get_profile(tmp_path / "missing.js")


def test_scripts_exist() -> None:
    for prof in PROFILES.values():
        assert prof.script.is_file(), prof.script
    assert profiles.TESTS_DIR.joinpath("k6lib.js").is_file()


# --- what the scripts send: distinct leads, names, LEAD_ID (real k6 over loopback) ----------


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/api/v1/leads/process":
            self.seen.append(urllib.parse.parse_qs(url.query)["id"][0])
        body = b'{"success": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


def _k6_run(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [find_k6(), "run", "--quiet", "--no-color", "--address", "127.0.0.1:0"]
    for k, v in env.items():
        cmd += ["-e", f"{k}={v}"]
    return subprocess.run(
        cmd + [str(script)], capture_output=True, text=True, timeout=120, cwd=script.parent
    )


def test_iterations_draw_distinct_leads_from_the_csv(recorder) -> None:
    url, seen = recorder
    proc = _k6_run(PROFILES["load"].script, {"BASE_URL": url, "TIME_SCALE": "0.02"})
    assert proc.returncode == 0, proc.stdout[-2000:]
    csv_ids = {
        line.split(",")[0]
        for line in (REPO_ROOT / "data" / "leads.csv").read_text().splitlines()[1:]
        if line.strip()
    }
    assert len(seen) >= 10
    assert len(set(seen)) == len(seen)  # no lead twice: not just the duplicate guard
    assert set(seen) <= csv_ids


def test_lead_id_pins_every_iteration(recorder) -> None:
    url, seen = recorder
    proc = _k6_run(
        PROFILES["smoke"].script, {"BASE_URL": url, "TIME_SCALE": "0.05", "LEAD_ID": "abc123"}
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert seen and set(seen) == {"abc123"}


def test_missing_lead_list_is_a_clear_error(tmp_path) -> None:
    proc = _k6_run(
        PROFILES["smoke"].script, {"LEADS_CSV": str(tmp_path / "none.csv"), "TIME_SCALE": "0.05"}
    )
    assert proc.returncode != 0
    assert "cannot read the lead list" in proc.stdout + proc.stderr
