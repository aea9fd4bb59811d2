"""A report's sizing section on runs it can and cannot size (no k6, no notebooks)."""

from __future__ import annotations

import shutil
from pathlib import Path

from perflib import sizing
from perflib.report import build as rp
from perflib.rundir import RunDir

SAMPLE = rp.REPO_ROOT / "data" / "runs" / "02-load-1024mb"


def _copy(tmp_path: Path, name: str, keep_samples: bool) -> RunDir:
    dest = tmp_path / name
    shutil.copytree(SAMPLE, dest)
    if not keep_samples:  # a --base-url run without --fly-app/--prometheus: header only
        header = (dest / "samples.csv").read_text().splitlines()[0]
        (dest / "samples.csv").write_text(header + "\n")
    return RunDir.open(dest)


def test_load_runs_without_memory_samples_are_not_sized_and_the_reason_says_so(
    tmp_path: Path,
) -> None:
    bare = _copy(tmp_path, "bare", keep_samples=False)
    assert rp.size_runs([bare]) == (None, None)
    assert "no memory samples" in rp.no_sizing_reason([bare])
    assert "--fly-app or --prometheus" in rp.no_sizing_reason([bare])


def test_a_sampled_load_run_is_sized_as_recommend_sizes_it(tmp_path: Path) -> None:
    full = _copy(tmp_path, "full", keep_samples=True)
    bare = _copy(tmp_path, "bare", keep_samples=False)
    _, rec = rp.size_runs([full, bare])  # the bare run is left out, not fatal
    direct = sizing.recommend([full])
    assert rec is not None and rec.recommended_preset == direct.recommended_preset
    assert rec.monthly_cost_usd == direct.monthly_cost_usd


def test_no_load_run_is_its_own_reason() -> None:
    smoke = RunDir.open(rp.REPO_ROOT / "data" / "runs" / "01-smoke-1024mb")
    assert rp.size_runs([smoke]) == (None, None)
    assert rp.no_sizing_reason([smoke]) == "no load run among the run directories"
