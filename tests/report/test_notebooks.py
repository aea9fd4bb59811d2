"""The notebooks: edited as jupytext py:percent pairs (notebooks/NAME.py, linted by ruff),
committed as stripped .ipynb in sync with their pair, and executed with papermill (in the project's kernel) on non-default parameters — other run directories,
an edited SLO file, an older price set and a results store given by PERFLIB_DATABASE_URL.
Their defaults are executed by tests/test_report.py (the report) and by nbval in make test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from perflib import report as rp
from perflib.cost import load_price_sets
from perflib.tooling import REPO_ROOT

NOTEBOOK_FILES = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_every_report_notebook_exists() -> None:
    assert [p.stem for p in NOTEBOOK_FILES] == sorted(rp.NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_committed_notebook_is_stripped_and_parameterised(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "perflib"
    assert "papermill" not in nb.metadata  # never an executed copy
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [], f"{path.name}: committed with outputs"
        assert cell.execution_count is None, f"{path.name}: committed with execution counts"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    # every parameter papermill can see, with the documented defaults
    params = {name: p["default"] for name, p in _inspect(path).items()}
    assert params["run_dirs"] == "[]" and params["live"] == "False"
    assert {"base_url", "presets", "time_scale", "slo_file", "price_set"} <= set(params)
    assert not any(rp.secrets.is_secret_name(n) for n in params)


def _inspect(path: Path) -> dict:
    import papermill as pm

    return pm.inspect_notebook(str(path))


def test_notebooks_are_paired_with_py_percent_sources() -> None:
    """jupytext pairs every notebook in notebooks/ with its py:percent source."""
    import jupytext.config

    config = jupytext.config.load_jupytext_config(str(REPO_ROOT / "notebooks"))
    for path in NOTEBOOK_FILES:
        assert config.default_formats(str(path)) == "ipynb,py:percent", path.name
    assert sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("*.py")) == sorted(rp.NOTEBOOKS)


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_committed_notebook_matches_its_py_pair(path: Path) -> None:
    """The .py is the source; the .ipynb papermill and nbval run must say the same, cell by
    cell (type, code or text, tags), on the same kernel."""
    import jupytext

    source = jupytext.read(path.with_suffix(".py"), fmt="py:percent")
    committed = nbformat.read(path, as_version=4)
    hint = f"{path.name} is out of sync with {path.stem}.py: run .venv/bin/jupytext --sync notebooks/*.py"
    assert _cells(source) == _cells(committed), hint
    assert source.metadata["kernelspec"] == committed.metadata["kernelspec"], hint


def test_pair_check_sees_an_edit(tmp_path: Path) -> None:
    """The comparison above fails when the .py changes and the .ipynb does not."""
    import jupytext

    path = NOTEBOOK_FILES[0]
    edited = path.with_suffix(".py").read_text().replace("rp.load_runs(", "rp.load_runs (", 1)
    assert edited != path.with_suffix(".py").read_text()
    source = jupytext.reads(edited, fmt="py:percent")
    assert _cells(source) != _cells(nbformat.read(path, as_version=4))


@pytest.fixture(scope="module")
def non_default(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """All notebooks executed once on non-default parameters (two at a time)."""
    tmp = tmp_path_factory.mktemp("nondefault")
    samples = rp.sample_run_dirs()
    assert len(samples) >= 3, "record the sample runs: scripts/record_sample_runs.py"
    runs = []
    for src in samples:  # copies, so paths differ from the defaults
        if _profile(src) in ("smoke", "load"):
            runs.append(tmp / "runs" / src.name)
            shutil.copytree(src, runs[-1], ignore=shutil.ignore_patterns("*.k6cache"))
    slo = tmp / "strict-slo.toml"
    text = (REPO_ROOT / "data" / "slo.toml").read_text()
    # the health p95 target tightened to 0.001 ms: no real run can pass it
    text = text.replace('id = "health_p95"', 'id = "health_p95_strict"', 1)
    slo.write_text(text.replace("target = 50.0", "target = 0.001", 1))
    sets = load_price_sets()
    oldest = min(sets, key=lambda k: sets[k].effective_date)  # not the default (newest)
    db = tmp / "store.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("PERFLIB_DATABASE_URL", f"sqlite:///{db}")
    try:
        result = rp.build_report(
            runs, tmp / "out", slo_file=str(slo), price_set=str(oldest), index=True, jobs=2
        )
    finally:
        mp.undo()
    return {"result": result, "runs": runs, "slo": slo, "price_set": str(oldest), "db": db}


def _profile(path: Path) -> str | None:
    return json.loads((path / "manifest.json").read_text()).get("profile")


def _outputs_text(path: Path) -> str:
    nb = json.loads(path.read_text())
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            parts.append(json.dumps(out.get("data", {}).get("text/plain", "")))
            parts.append(json.dumps(out.get("data", {}).get("text/html", "")))
            parts.append(json.dumps(out.get("data", {}).get("text/markdown", "")))
            parts.append(json.dumps(out.get("text", "")))
    return "\n".join(parts)


@pytest.mark.parametrize("name", rp.NOTEBOOKS)
def test_notebook_runs_on_non_default_parameters(non_default: dict, name: str) -> None:
    res = {n.name: n for n in non_default["result"].notebooks}[name]
    assert res.ok, res.error
    nb = json.loads(res.output.read_text())
    injected = nb["metadata"]["papermill"]["parameters"]
    assert injected["run_dirs"] == [str(p.resolve()) for p in non_default["runs"]]
    assert injected["price_set"] == non_default["price_set"]
    assert injected["use_store"] is True
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])


def test_parameters_change_what_the_notebooks_say(non_default: dict) -> None:
    out = non_default["result"].out_dir
    smoke = _outputs_text(out / "01-smoke-test.ipynb")
    assert "health_p95_strict" in smoke or "0.001" in smoke  # the edited SLO file was used
    assert "NO-GO" in smoke  # ... and it fails the smoke test
    sizing = _outputs_text(out / "04-right-sizing-cost.ipynb")
    assert non_default["price_set"] in sizing
    trends = _outputs_text(out / "05-capacity-trends.ipynb")
    assert f"{len(non_default['runs'])} runs" in trends and str(non_default["db"]) in trends
    load = _outputs_text(out / "02-load-test.ipynb")
    assert "stress" not in load  # only the runs given, not the sample stress run


@pytest.mark.k6
def test_smoke_notebook_live_mode_records_a_fresh_run(tmp_path: Path) -> None:
    """live=True: the notebook records a real smoke run (k6 against the local stack under the
    emulated VM) into runs_dir and judges that run, not the sample one."""
    out = tmp_path / "live.ipynb"
    res = rp.execute_notebook(
        REPO_ROOT / "notebooks" / "01-smoke-test.ipynb",
        out,
        {"live": True, "time_scale": 0.1, "runs_dir": str(tmp_path / "runs")},
        timeout=300,
    )
    assert res.ok, res.error
    recorded = list((tmp_path / "runs").iterdir())
    assert len(recorded) == 1 and (recorded[0] / "k6.ndjson.gz").exists()
    manifest = json.loads((recorded[0] / "manifest.json").read_text())
    assert manifest["profile"] == "smoke" and manifest["time_scale"] == 0.1
    text = _outputs_text(out)
    assert recorded[0].name in text  # the runs table lists the fresh run
    assert "GO" in text
