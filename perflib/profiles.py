"""The k6 load profiles: which script runs, and the stage table it follows.

The stage tables here are the source of truth the analysis uses to split a run by stage
(ramp-up, steady, peak, ramp-down). The k6 scripts in ``tests/`` carry the same tables;
``tests/test_profiles.py`` checks the two agree by reading the scripts with ``k6 inspect``,
so neither side can drift. Durations scale exactly as ``tests/k6lib.js`` ``dur()`` does:
``max(1, round_half_up(seconds * time_scale))`` whole seconds.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perflib.tooling import REPO_ROOT, find_k6

TESTS_DIR = REPO_ROOT / "tests"


@dataclass(frozen=True)
class Stage:
    """One stage of a profile at time scale 1: ``target`` is VUs (closed) or iterations/s (open)."""

    name: str
    duration_s: float
    target: float


@dataclass(frozen=True)
class Profile:
    name: str
    script: Path
    executor: str
    stages: tuple[Stage, ...]
    description: str
    #: default SLO thresholds the script declares (documentation; k6 enforces them)
    thresholds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: VUs at the start (ramping-vus ``startVUs``) or the start rate (arrival-rate).
    start: float = 0.0

    def scaled_stages(self, time_scale: float = 1.0) -> list[dict[str, Any]]:
        """The manifest's ``stages``: name, start_s (from k6 start), duration_s, target."""
        return scale_stages(self.stages, time_scale)

    def stage_loads(self, time_scale: float = 1.0) -> list[StageLoad]:
        """The stages with the load each one applies (:func:`stage_loads`)."""
        return stage_loads(self.scaled_stages(time_scale), self.executor, self.start)

    def duration_s(self, time_scale: float = 1.0) -> float:
        """Scheduled length of the stages (without k6's graceful stop)."""
        return sum(s["duration_s"] for s in self.scaled_stages(time_scale))

    def graceful_stop_s(self, time_scale: float = 1.0) -> int:
        return scaled_seconds(30, time_scale)


def scaled_seconds(seconds: float, time_scale: float) -> int:
    """The whole seconds k6lib.js ``dur()`` gives: JavaScript ``Math.round`` is half-up."""
    check_time_scale(time_scale)
    return max(1, math.floor(seconds * time_scale + 0.5))


def check_time_scale(time_scale: float) -> None:
    if not (isinstance(time_scale, int | float) and math.isfinite(time_scale) and time_scale > 0):
        raise ValueError(f"time scale must be a positive number, got {time_scale!r}")


def scale_stages(stages: Sequence[Stage], time_scale: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    start = 0
    for st in stages:
        d = scaled_seconds(st.duration_s, time_scale)
        out.append(
            {"name": st.name, "start_s": float(start), "duration_s": float(d), "target": st.target}
        )
        start += d
    return out


_SLO_LOAD = {"http_req_duration": ("p(95)<2000",), "http_req_failed": ("rate<0.10",)}
_STRESS_RATES = (2, 5, 10, 20, 40)

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        script=TESTS_DIR / "smoke-test.js",
        executor="ramping-vus",
        start=1,
        stages=(Stage("smoke", 30, 1),),
        description="1 VU for 30 s; p95 < 3 s, errors < 5 %, /health always succeeds",
        thresholds={
            "http_req_duration": ("p(95)<3000",),
            "http_req_failed": ("rate<0.05",),
            "checks{name:/health}": ("rate==1",),
        },
    ),
    "load": Profile(
        name="load",
        script=TESTS_DIR / "load-test.js",
        executor="ramping-vus",
        stages=(
            Stage("ramp-up", 30, 5),
            Stage("steady", 60, 10),
            Stage("peak", 90, 20),
            Stage("ramp-down", 30, 0),
        ),
        description="the guide's load test: 0→5 VUs 30 s, 10 VUs 1 min, 20 VUs 1.5 min, 20→0 30 s",
        thresholds=_SLO_LOAD,
    ),
    "stress": Profile(
        name="stress",
        script=TESTS_DIR / "stress-test.js",
        executor="ramping-arrival-rate",
        start=1,
        stages=tuple(
            st
            for rate in _STRESS_RATES
            for st in (Stage(f"ramp-{rate}/s", 10, rate), Stage(f"hold-{rate}/s", 50, rate))
        ),
        description="open model: arrival rate stepped 2→5→10→20→40 it/s (10 s ramp, 50 s hold)",
        thresholds=_SLO_LOAD,
    ),
    "soak": Profile(
        name="soak",
        script=TESTS_DIR / "soak-test.js",
        executor="constant-vus",
        stages=(Stage("steady", 1800, 10),),
        description="10 VUs for 30 min (SOAK_VUS), for leaks and drift",
        thresholds=_SLO_LOAD,
    ),
}


# --------------------------------------------------------------------------- stage loads

#: Executors whose ``target`` is an arrival rate (iterations/s), not a number of VUs.
ARRIVAL_RATE_EXECUTORS = ("ramping-arrival-rate", "constant-arrival-rate")


@dataclass(frozen=True)
class StageLoad:
    """One stage of a run and the load it applies: k6 moves linearly from ``start`` to
    ``target`` over the stage (ramping executors), so a stage is *flat* only when the two
    are equal. ``label`` is how every table and chart names the stage."""

    name: str  # the script's own name ("steady"): what SLO files and capacity select by
    start_s: float
    end_s: float
    start: float
    target: float
    unit: str  # "VUs" or "it/s"

    @property
    def flat(self) -> bool:
        return self.start == self.target

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def label(self) -> str:
        return describe_load(self.start, self.target, self.unit)


def describe_load(start: float, target: float, unit: str) -> str:
    """``hold 20 VUs`` for a flat stage, ``ramp 5→10 VUs`` for a changing one."""
    if unit == "VUs" and target == 1:
        unit = "VU"
    if start == target:
        return f"hold {target:g} {unit}"
    return f"ramp {start:g}→{target:g} {unit}"


def load_unit(executor: str | None) -> str:
    return "it/s" if (executor or "") in ARRIVAL_RATE_EXECUTORS else "VUs"


def stage_loads(
    stages: Sequence[Mapping[str, Any]], executor: str | None, start: float | None = None
) -> list[StageLoad]:
    """The load of each stage of a manifest's (or a profile's scaled) stage table.

    A stage starts where the previous one ended (its ``target``); the first starts at
    ``start`` — the profile's ``startVUs``/``startRate``, else 0 (k6's default
    ``startVUs``). The constant executors never ramp: their stage holds its target.
    """
    unit = load_unit(executor)
    constant = (executor or "").startswith("constant")
    start = 0.0 if start is None else start
    out: list[StageLoad] = []
    prev = float(start)
    for st in stages:
        s0 = float(st.get("start_s", 0.0))
        target = float(st.get("target") or 0.0)
        if constant:
            prev = target
        out.append(
            StageLoad(
                name=str(st.get("name", f"stage-{len(out) + 1}")),
                start_s=s0,
                end_s=s0 + float(st.get("duration_s", 0.0)),
                start=prev,
                target=target,
                unit=unit,
            )
        )
        prev = target
    return out


def unique_labels(loads: Sequence[StageLoad]) -> list[str]:
    """Each stage's label, with ``(2)``, ``(3)`` … on repeats so a label names one stage."""
    seen: dict[str, int] = {}
    out = []
    for ld in loads:
        seen[ld.label] = seen.get(ld.label, 0) + 1
        out.append(ld.label if seen[ld.label] == 1 else f"{ld.label} ({seen[ld.label]})")
    return out


def manifest_stage_loads(manifest: Mapping[str, Any] | None) -> list[StageLoad]:
    """:func:`stage_loads` of a run's manifest: its ``stages`` and ``executor``, the start
    load from the named profile (a custom script: the executor's default)."""
    m = manifest or {}
    prof = PROFILES.get(str(m.get("profile")))
    executor = m.get("executor") or (prof.executor if prof is not None else None)
    start = m.get("start_load")
    if start is None and prof is not None and prof.executor == executor:
        start = prof.start
    return stage_loads(m.get("stages") or [], executor, start)


def get_profile(name_or_path: str | Path) -> Profile:
    """A named profile, or a custom script whose stage table is read with ``k6 inspect``."""
    key = str(name_or_path)
    if key in PROFILES:
        return PROFILES[key]
    path = Path(key)
    if path.suffix == ".js" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"k6 script not found: {path}")
        options = k6_inspect(path)
        executor, start, stages = stages_from_options(options)
        return Profile(
            name=path.stem,
            script=path.resolve(),
            executor=executor,
            start=start,
            stages=tuple(stages),
            description=f"custom script {path}",
        )
    raise ValueError(
        f"unknown profile {key!r}: choose one of {', '.join(PROFILES)} "
        "or give the path of a k6 script"
    )


def k6_inspect(
    script: Path, env: Mapping[str, str] | None = None, *, execution_requirements: bool = False
) -> dict[str, Any]:
    """The options k6 itself derives from a script (``k6 inspect``), as a dict."""
    cmd = [find_k6(), "inspect"]
    if execution_requirements:
        cmd.append("--execution-requirements")
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    cmd.append(str(script))
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, cwd=str(Path(script).resolve().parent)
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"k6 inspect {script} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
        )
    return json.loads(proc.stdout)


_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_k6_duration(text: str) -> float:
    """Seconds in a k6/Go duration string (``1m30s``, ``500ms``, ``2h``)."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    pos, total = 0, 0.0
    for m in _DUR_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a k6 duration: {text!r}")
    return total


def stages_from_options(options: Mapping[str, Any]) -> tuple[str, float, list[Stage]]:
    """(executor, start, stages) of the single scenario in ``k6 inspect`` options.

    Stages get positional names (``stage-1``…); they are already scaled when the script
    was inspected with a TIME_SCALE.
    """
    scenarios = options.get("scenarios") or {}
    if options.get("stages"):
        scenarios = {"default": {"executor": "ramping-vus", "stages": options["stages"]}}
    if not scenarios and options.get("duration"):
        scenarios = {
            "default": {
                "executor": "constant-vus",
                "duration": options["duration"],
                "vus": options.get("vus") or 1,
            }
        }
    if len(scenarios) != 1:
        raise ValueError(f"expected one scenario, found {len(scenarios)}: {sorted(scenarios)}")
    sc = next(iter(scenarios.values()))
    executor = sc.get("executor", "")
    if "stages" in sc:
        stages = [
            Stage(f"stage-{i + 1}", parse_k6_duration(s["duration"]), float(s["target"]))
            for i, s in enumerate(sc["stages"])
        ]
        start = float(sc.get("startVUs", sc.get("startRate", 0)) or 0)
    elif "duration" in sc:
        target = float(sc.get("vus") or sc.get("rate") or 0)
        stages = [Stage("steady", parse_k6_duration(sc["duration"]), target)]
        start = target
    else:
        raise ValueError(f"scenario with executor {executor!r} has no stages or duration")
    return executor, start, stages
