"""``perflib report``: every notebook executed with papermill on its defaults (the sample
runs) into one HTML report with the charts embedded and the code hidden; exit codes for a
failing notebook (1, the partial notebook kept, the cell named) and bad input (2)."""

from __future__ import annotations

import argparse
import base64
import json
import re
from pathlib import Path

import nbformat
import pytest

from perflib.cli import main as cli_main
from perflib.cli.report import cli_report
from perflib.report import build as rp
from tests.synthetic_runs import make_partial_run, make_run

PLANTED = "fly-planted-report-4Hq81"


@pytest.fixture(scope="module")
def defaults_report(tmp_path_factory: pytest.TempPathFactory) -> rp.ReportResult:
    """The report on the notebooks' own defaults (no parameter passed, no store indexing),
    with a planted FLY_API_TOKEN in the environment the kernels inherit."""
    assert rp.sample_run_dirs(), "record the sample runs: scripts/record_sample_runs.py"
    mp = pytest.MonkeyPatch()
    mp.setenv("FLY_API_TOKEN", PLANTED)
    try:
        return rp.build_report(out_dir=tmp_path_factory.mktemp("report") / "r", index=False, jobs=2)
    finally:
        mp.undo()


def test_every_notebook_runs_on_its_defaults(defaults_report: rp.ReportResult) -> None:
    assert [n.name for n in defaults_report.notebooks] == list(rp.NOTEBOOKS)
    for n in defaults_report.notebooks:
        assert n.ok, f"{n.name}: {n.error}"
        nb = json.loads(n.output.read_text())
        assert nb["metadata"]["papermill"]["parameters"] == {}  # nothing injected: defaults
        assert nb["metadata"]["papermill"]["exception"] is None
        assert all(c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")


def test_html_report_embeds_the_charts_and_hides_code(defaults_report: rp.ReportResult) -> None:
    html = defaults_report.html
    assert html is not None and html.name == "report.html"
    text = html.read_text()
    images = re.findall(r'<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=\s]+)"', text)
    executed_pngs = sum(
        1
        for n in defaults_report.notebooks
        for c in json.loads(n.output.read_text())["cells"]
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    )
    # every chart of every notebook is in the one file, as a data URI (nothing to fetch)
    assert executed_pngs >= 10 and len(images) == executed_pngs
    assert base64.b64decode("".join(images[0].split()))[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Performance report" in text and "Smoke test" in text and "Capacity trends" in text
    assert "from perflib import report as rp" not in text  # code hidden by default
    assert not re.search(r'<img[^>]+src="http', text)  # no chart needs fetching


def test_planted_token_does_not_leak_into_the_report(defaults_report: rp.ReportResult) -> None:
    files = list(defaults_report.out_dir.iterdir())
    assert rp.secrets.find_leaks(files, [PLANTED]) == []


def test_show_code_keeps_the_code(defaults_report: rp.ReportResult, tmp_path: Path) -> None:
    out = rp.render_html(
        [defaults_report.notebooks[1].output], tmp_path / "code.html", show_code=True
    )
    assert "deploy_gate" in out.read_text()


def _args(**kw: object) -> argparse.Namespace:
    base = {"run_dirs": [], "out": None, "price_set": None, "slo": None, "timeout": 120,
            "show_code": False, "jobs": 1}  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    run = rp.sample_run_dirs()[0]
    assert cli_main(["report", str(run), "--slo", str(tmp_path / "x.toml")]) == 2
    assert "no such SLO file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written for bad input
    assert cli_main(["report-job", "--time-scale", "0", "--out", str(tmp_path / "j")]) == 2
    assert capsys.readouterr().err.strip() == (
        "perflib report-job: error: --time-scale must be positive, got 0.0"
    )
    assert not (tmp_path / "j").exists()


def test_secret_parameter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(rp.secrets.SecretParameterError):
        rp.build_report(
            out_dir=tmp_path / "o", index=False, extra_parameters={"fly_api_token": PLANTED}
        )
    assert not (tmp_path / "o").exists()


def test_failing_notebook_exits_1_and_keeps_the_partial_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("run_dirs = []")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Broken"),
        params,
        nbformat.v4.new_code_cell("print('first part ran')"),
        nbformat.v4.new_code_cell("1 / 0"),
        nbformat.v4.new_code_cell("print('never')"),
    ]
    nb.metadata["kernelspec"] = {"name": "perflib", "display_name": "perflib", "language": "python"}
    nbformat.write(nb, nbdir / "broken.ipynb")
    monkeypatch.setattr(rp, "NOTEBOOK_DIR", nbdir)
    monkeypatch.setattr(rp, "NOTEBOOKS", ("broken",))
    monkeypatch.setenv("PERFLIB_DATABASE_URL", f"sqlite:///{tmp_path / 's.db'}")
    out = tmp_path / "out"
    smoke = [p for p in rp.sample_run_dirs() if "smoke" in p.name]
    assert cli_report(_args(out=str(out), run_dirs=[str(smoke[0])])) == 1
    err = capsys.readouterr().err
    # cells: 0 markdown, 1 parameters, 2 injected parameters, 3 print, 4 the division
    assert "broken" in err and "cell 4" in err and "ZeroDivisionError" in err
    partial = json.loads((out / "broken.ipynb").read_text())
    ran = [c for c in partial["cells"] if c["cell_type"] == "code" and c.get("outputs")]
    assert any("first part ran" in "".join(o.get("text", "")) for c in ran for o in c["outputs"])
    assert (out / "report.html").exists()  # the report still renders what ran


def _smoke_analysis(tmp_path: Path, verdicts: list[tuple[str, str]]):
    """A real smoke run (copied, exit ok) with the given (slo id, verdict) pairs."""
    import shutil
    from types import SimpleNamespace

    import pandas as pd

    from perflib.analysis.slo import load_slos
    from perflib.rundir import RunDir

    src = Path(__file__).resolve().parents[2] / "data" / "runs" / "01-smoke-1024mb"
    run_path = tmp_path / "smoke"
    shutil.copytree(src, run_path)
    run = RunDir.open(run_path)
    run.manifest["exit"] = {**(run.manifest.get("exit") or {}), "status": "ok"}
    run.save_manifest()
    slos = load_slos()
    titles = {s.id: s.title for s in slos.slo}
    frame = pd.DataFrame(
        [
            {"id": i, "title": titles[i], "verdict": v, "measured": 1.0, "unit": "ms"}
            for i, v in verdicts
        ],
        columns=["id", "title", "verdict", "measured", "unit"],
    )
    return SimpleNamespace(run=run, profile="smoke", slos=slos, verdicts=frame, requests=[1])


def test_go_no_go_blocks_on_the_smoke_expectations_not_on_every_alert(tmp_path: Path) -> None:
    from perflib.report import go_no_go

    # a benchmark target at alert (the DB step) is a note, not a deploy blocker
    go, reasons = go_no_go(_smoke_analysis(tmp_path / "a", [("db_p95", "alert")]))
    assert go and reasons and reasons[0].startswith("note (not blocking)")
    # the guide's smoke expectation (p95 < 3 s) at alert blocks
    go, reasons = go_no_go(_smoke_analysis(tmp_path / "b", [("smoke_p95", "alert")]))
    assert not go and not reasons[0].startswith("note")
    # anything critical blocks
    go, _ = go_no_go(_smoke_analysis(tmp_path / "c", [("memory_peak", "critical")]))
    assert not go
    go, reasons = go_no_go(_smoke_analysis(tmp_path / "d", []))
    assert go and reasons == []


def test_non_empty_out_dir_is_refused_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "report.html").write_text("an earlier report")
    run = rp.sample_run_dirs()[0]
    assert cli_main(["report", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"perflib report: error: report directory is not empty (pass --force to write into it) ({out})\n"
    )
    assert [p.name for p in out.iterdir()] == ["report.html"]  # nothing written
    rp.check_out_dir(out, force=True)  # --force lets it through
    rp.check_out_dir(tmp_path / "new")  # a new or empty directory is fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(rp.ReportInputError, match="not a directory"):
        rp.check_out_dir(tmp_path / "file", force=True)


def test_every_run_is_validated_before_any_notebook_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = make_run(tmp_path, "good")
    bad = make_run(tmp_path, "bad", seed=2)
    with bad.events_path.open("a") as fh:
        fh.write("[1, 2]\n")
    lines = bad.events_path.read_text().count("\n")
    out = tmp_path / "o"
    assert cli_main(["report", str(good.path), str(bad.path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("perflib report: error: a JSON array, not an event object")
    assert f"events.jsonl:{lines})" in err
    assert not out.exists()  # refused before anything was executed or written


def test_report_says_at_the_top_when_a_run_is_partial(tmp_path: Path) -> None:
    """00-report's first output, before any figure, names the partial run and its share;
    the sizing notebook's recommendation headline says it comes from a partial run."""
    full = make_run(tmp_path, "full", preset="shared-cpu-1x:1024mb")
    cut = make_partial_run(tmp_path, "cut", share=0.4, preset="shared-cpu-1x:512mb", seed=2)
    result = rp.build_report(
        [full.path, cut.path],
        tmp_path / "out",
        notebooks=["00-report", "04-right-sizing-cost"],
        index=False,
        jobs=2,
    )
    assert all(n.ok for n in result.notebooks), [n.error for n in result.notebooks]
    sizing_nb = next(n for n in result.notebooks if n.name.startswith("04"))
    assert "FROM A PARTIAL RUN (cut)" in sizing_nb.output.read_text()  # its headline too
    nb = nbformat.read(next(n for n in result.notebooks if n.name.startswith("00")).output, 4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    first = "".join(outputs[0].get("data", {}).get("text/markdown", ""))
    assert first.startswith("**Partial runs: some figures below do not cover the whole")
    assert "partial run cut: interrupted; it covered 40% of its load profile" in first
    text = json.dumps(nb)
    assert "From a partial run (cut): re-run to confirm" in text  # the decision's sentence
    assert "partial run full" not in text


def test_report_opens_with_the_decision_once_and_readable(
    defaults_report: rp.ReportResult,
) -> None:
    """The answer first (issue 14): the decision table and its sentence before the deploy gate
    and the run table; the untested rule pick only as "worth testing next"; the run table and
    the rule-by-rule reasons once; no index column, NaN/NaT or raw event dicts."""
    text = defaults_report.html.read_text()
    body = re.sub(r"<img[^>]*>", "", text)
    order = [
        body.index("Decision: which VM size"),
        body.index("The cheapest tested preset that passes is shared-cpu-1x:512mb"),
        body.index("Deploy gate (smoke test)"),
        body.index("only because the guide's smoke threshold"),
        body.index(">Runs<"),
    ]
    assert order == sorted(order)
    assert "Worth testing next: shared-cpu-1x:256mb" in body
    assert "perflib run load --vm shared-cpu-1x:256mb" in body
    assert "Recommended: <code>shared-cpu-1x:256mb" not in body
    assert body.count("Cheapest preset satisfying every rule") == 1  # the reasons, once
    assert body.count("worst SLO verdict") == 1  # the run table, once
    assert "assumed guest overhead of 40 MB" in body
    assert not re.search(r">\s*(NaN|NaT|None)\s*<", body)
    assert 'class="row_heading' not in body and 'class="blank level0' not in body
    assert "{&#39;" not in body  # no raw Python dicts (events, details)
