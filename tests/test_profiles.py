"""Stage tables in perflib.profiles against what k6 itself reads from the scripts."""

from __future__ import annotations

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
