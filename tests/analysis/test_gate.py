"""The deploy gate (perflib.analysis.gate): a red smoke gate says when it is red only because the
guide's p95 threshold sits below the upstream floor, with the floor measured from service.log."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from perflib.analysis import analyze_run, deploy_gate
from perflib.analysis.slo import load_slos
from perflib.rundir import RunDir

SMOKE = Path(__file__).resolve().parents[2] / "data" / "runs" / "01-smoke-1024mb"
STEP = re.compile(r"Step (\d+): .*\((\d+(?:\.\d+)?) ms\) lead=(\w+)")


def test_recorded_smoke_run_is_red_only_because_of_the_threshold() -> None:
    gate = deploy_gate(analyze_run(SMOKE))
    assert not gate.go and gate.threshold_only and gate.below_floor
    # the floor, independently: upstream steps (1, 2, 3, 6) summed per lead in service.log,
    # every other k6 request at 0 ms, p95 as numpy's default (type 7, k6's definition)
    per: dict[str, float] = {}
    for line in (SMOKE / "service.log").read_text().splitlines():
        m = STEP.search(line)
        if m and int(m.group(1)) in (1, 2, 3, 6):
            per[m.group(3)] = per.get(m.group(3), 0.0) + float(m.group(2))
    n = json.loads((SMOKE / "k6-summary.json").read_text())["metrics"]["http_reqs"]["count"]
    values = list(per.values()) + [0.0] * (int(n) - len(per))
    assert gate.floor is not None
    assert gate.floor.floor_ms == pytest.approx(np.percentile(values, 95))
    assert gate.floor.floor_ms >= gate.threshold_ms == 3000.0
    assert gate.headline.startswith("NO-GO (01-smoke-1024mb) only because the guide's smoke")
    assert f"{gate.floor.floor_ms:,.0f} ms" in gate.headline
    assert "'nominal' upstream emulators" in gate.headline
    # the database note stays a note, not a blocker
    assert any("Database step" in n for n in gate.notes)


def _gate(tmp_path: Path, verdicts: list[tuple[str, str]], step_ms: float, status: str = "ok"):  # noqa: ANN202
    """A copied smoke run with chosen verdicts and one upstream step of ``step_ms`` per
    enrichment request (4 requests, 4 others at 0 ms)."""
    run_path = tmp_path / "smoke"
    shutil.copytree(SMOKE, run_path)
    run = RunDir.open(run_path)
    run.manifest["exit"] = {**(run.manifest.get("exit") or {}), "status": status}
    run.save_manifest()
    slos = load_slos()
    titles = {s.id: s.title for s in slos.slo}
    frame = pd.DataFrame(
        [{"id": i, "title": titles[i], "verdict": v, "measured": 3400.0, "unit": "ms"}
         for i, v in verdicts],
        columns=["id", "title", "verdict", "measured", "unit"],
    )  # fmt: skip
    steps = pd.DataFrame(
        {
            "step": [2, 5] * 4,
            "ms": [step_ms, 10.0] * 4,
            "request": pd.array([f"r{i // 2}" for i in range(8)], dtype="string"),
        }
    )
    a = SimpleNamespace(
        run=run, profile="smoke", slos=slos, verdicts=frame, requests=[1] * 8, steps=steps
    )
    checks = pd.DataFrame(columns=["check", "passes", "fails", "pass_rate_pct"])
    return deploy_gate(a, checks=checks)


def test_floor_above_threshold_with_only_the_p95_failing(tmp_path: Path) -> None:
    g = _gate(tmp_path, [("smoke_p95", "alert")], 3500.0, status="thresholds_failed")
    assert g.below_floor
    assert g.floor.floor_ms == pytest.approx(np.percentile([3500.0] * 4 + [0.0] * 4, 95))
    assert g.floor.own_p95_ms == pytest.approx(10.0)


def test_floor_below_threshold_is_a_plain_no_go(tmp_path: Path) -> None:
    g = _gate(tmp_path, [("smoke_p95", "alert")], 2000.0)
    assert not g.go and g.threshold_only and not g.below_floor
    assert g.headline.startswith("NO-GO (smoke): Smoke: p95")


def test_another_blocker_means_not_only_the_threshold(tmp_path: Path) -> None:
    g = _gate(tmp_path, [("smoke_p95", "alert"), ("smoke_errors", "alert")], 3500.0)
    assert not g.threshold_only and not g.below_floor
    assert "Smoke: error rate" in g.headline


def test_green_gate(tmp_path: Path) -> None:
    g = _gate(tmp_path, [("db_p95", "alert")], 3500.0)
    assert g.go and g.headline.startswith("GO (smoke)")
