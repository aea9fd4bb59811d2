"""Partial runs and malformed run-directory files, through every command that reads them.

Synthetic run directories (tests/synthetic_runs.py) with known truth: a run stopped at 40 %
of its profile, a line planted in events.jsonl / samples.csv / manifest.json at a known line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perflib import sizing
from perflib.analysis import analyze_run
from perflib.cli import main
from perflib.sizing import evidence as sizing_evidence
from tests.synthetic_runs import RunFactory

# ----------------------------------------------------------------- partial runs


def test_analyze_flags_an_interrupted_run_and_its_share(
    make_run: RunFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run.partial("cut", share=0.4, duration_s=40.0)
    main(["analyze", str(run.path), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["interrupted"] is True and doc["partial"] is True
    assert doc["profile_share"] == pytest.approx(0.4, abs=0.01)
    assert doc["completeness"]["planned_s"] == 40.0
    assert doc["warnings"][0].startswith("partial run cut: interrupted; it covered 40%")
    main(["analyze", str(run.path)])
    out = capsys.readouterr().out
    assert "PARTIAL RUN" in out.splitlines()[0]  # the first line says so
    assert "profile ran: 40%" in out


def test_analyze_of_a_complete_run_says_complete(
    make_run: RunFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run("full")
    main(["analyze", str(run.path), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["interrupted"] is False and doc["partial"] is False
    assert doc["profile_share"] == pytest.approx(1.0)
    assert not any("partial" in w for w in doc["warnings"])


def test_analyze_of_a_run_killed_hard_uses_the_requests_it_has(make_run: RunFactory) -> None:
    run = make_run.partial("killed", share=0.5, duration_s=40.0, status="running")
    a = analyze_run(run.path)
    assert a.completeness is not None and a.completeness.partial
    assert not a.completeness.interrupted
    # no k6_ended_at: the window is the requests' extent, at most half the 40-s profile
    assert 0.3 < a.completeness.share <= 0.5


def test_recommend_never_presents_a_partial_run_as_complete(
    make_run: RunFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    full = make_run("full", preset="shared-cpu-1x:1024mb")
    cut = make_run.partial("cut", share=0.4, preset="shared-cpu-1x:512mb", seed=2)
    rec = sizing.recommend([full.path, cut.path])
    assert rec.partial and rec.partial_runs == ["cut"] and rec.confidence == "low"
    assert "FROM A PARTIAL RUN (cut)" in rec.headline
    assert rec.warnings[0].startswith("partial run cut:")
    assert rec.reasons[0].startswith("Partial evidence: cut did not run the whole load profile")
    assert main(["recommend", str(full.path), str(cut.path), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["partial"] is True and doc["partial_runs"] == ["cut"]
    assert "FROM A PARTIAL RUN" in doc["headline"]
    assert captured.err.startswith("warning: partial run cut:")
    assert main(["recommend", str(full.path), str(cut.path)]) == 0
    out = capsys.readouterr().out
    assert out.lstrip().startswith("warning: partial run cut:")  # at the top
    assert "FROM A PARTIAL RUN" in out
    # the same runs complete: no caveat anywhere
    rec2 = sizing.recommend([full.path])
    assert not rec2.partial and "PARTIAL" not in rec2.headline and rec2.warnings == []


def test_compare_warns_about_partial_runs_first(
    make_run: RunFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    full = make_run("full", preset="shared-cpu-1x:1024mb")
    cut = make_run.partial("cut", share=0.4, preset="shared-cpu-1x:512mb", seed=2)
    comp = sizing.compare_presets([full.path, cut.path])
    assert comp.warnings[0].startswith("partial run cut:")
    assert main(["compare", str(full.path), str(cut.path)]) == 0
    out = capsys.readouterr().out
    assert out.lstrip().startswith("warning: partial run cut:")
    flat = " ".join(out.split())  # the terminal wraps the decision's sentence
    assert "cheapest tested preset that passes" in flat
    assert "From a partial run (cut): re-run to confirm" in flat


def _edit_manifest(run_path: Path, **changes: object) -> None:
    mf = run_path / "manifest.json"
    doc = json.loads(mf.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = doc
        for key in parents:
            node = node[key]
        node[last] = value
    mf.write_text(json.dumps(doc, indent=2))


def test_compare_warns_when_the_setups_differ(make_run: RunFactory) -> None:
    a = make_run("a", preset="shared-cpu-1x:1024mb")
    b = make_run("b", preset="shared-cpu-1x:512mb", seed=2)
    assert sizing.setup_differences(sizing_evidence._as_evidence([a.path, b.path])) == []
    _edit_manifest(b.path, time_scale=1.0, upstreams="degraded", versions__k6="v0.55.0")
    warnings = sizing.compare_presets([a.path, b.path]).warnings
    joined = "\n".join(warnings)
    assert "differ in time scale (a: 0.1, b: 1.0)" in joined
    assert "differ in upstream profile (a: nominal, b: degraded)" in joined
    assert "differ in k6 version (a: v1.1.0, b: v0.55.0)" in joined
    assert "stages" not in joined  # same stage table
    c = make_run("c", preset="shared-cpu-1x:512mb", duration_s=80.0, seed=3)
    assert any(
        "load-profile stages" in w for w in sizing.compare_presets([a.path, c.path]).warnings
    )


def test_compare_refuses_runs_of_different_profiles(
    make_run: RunFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run("a", preset="shared-cpu-1x:1024mb")
    b = make_run("b", profile="smoke", preset="shared-cpu-1x:512mb", seed=2)
    assert main(["compare", str(a.path), str(b.path)]) == 2
    assert "different profiles" in capsys.readouterr().err


# ----------------------------------------------------------------- malformed files, every verb


def _plant(run_path: Path, which: str) -> tuple[str, int]:
    """Plant one malformed line; returns (file name, its line number)."""
    if which == "events":
        path = run_path / "events.jsonl"
        n = path.read_text().count("\n") + 1
        with path.open("a") as fh:
            fh.write("[1,2]\n")
        return "events.jsonl", n
    if which == "events-binary":
        path = run_path / "events.jsonl"
        n = path.read_text().count("\n") + 1
        with path.open("ab") as fh:
            fh.write(b"\x00\xff\xfe garbage\n")
        return "events.jsonl", n
    if which == "samples":
        path = run_path / "samples.csv"
        lines = path.read_text().splitlines(keepends=True)
        lines[5] = "12:00 yesterday,1,2,3,4,local\n"
        path.write_text("".join(lines))
        return "samples.csv", 6
    if which == "samples-binary":
        path = run_path / "samples.csv"
        path.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03")
        return "samples.csv", 1
    path = run_path / "manifest.json"
    text = path.read_text().splitlines(keepends=True)
    text[3] = text[3].rstrip("\n") + " oops\n"
    path.write_text("".join(text))
    return "manifest.json", 4


VERBS = {
    "analyze": lambda p, q, tmp: ["analyze", str(p)],
    "recommend": lambda p, q, tmp: ["recommend", str(p)],
    "compare": lambda p, q, tmp: ["compare", str(q), str(p)],
    "report": lambda p, q, tmp: ["report", str(q), str(p), "--out", str(tmp / "report")],
    "store index": lambda p, q, tmp: [
        "store",
        "index",
        str(q),
        str(p),
        "--database-url",
        f"sqlite:///{tmp / 's.db'}",
    ],  # fmt: skip
}


@pytest.mark.parametrize(
    "which", ["events", "events-binary", "samples", "samples-binary", "manifest"]
)
@pytest.mark.parametrize("verb", list(VERBS))
def test_a_malformed_file_gives_one_line_naming_it_and_exit_2(
    make_run: RunFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str], verb: str, which: str
) -> None:
    good = make_run("good", preset="shared-cpu-1x:1024mb")
    bad = make_run("bad", preset="shared-cpu-1x:512mb", seed=2)
    name, line = _plant(bad.path, which)
    assert main(VERBS[verb](bad.path, good.path, tmp_path)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith(f"perflib {verb.split()[0]}: error: ")
    assert err.rstrip().endswith(f"({bad.path / name}:{line})")
    assert not (tmp_path / "report").exists()


def test_summarize_of_a_run_with_a_malformed_manifest(
    make_run: RunFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run("bad")
    name, line = _plant(run.path, "manifest")
    assert main(["summarize", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip().endswith(f"({run.path / name}:{line})")


def test_skipped_cells_are_counted_in_analyze_and_recommend(
    make_run: RunFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run("cells")
    lines = run.samples_path.read_text().splitlines(keepends=True)
    cells = lines[4].split(",")
    cells[3] = "n/a"  # cpu_pct of line 5
    lines[4] = ",".join(cells)
    run.samples_path.write_text("".join(lines))
    main(["analyze", str(run.path), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["skipped_cells"] == 1
    assert any(
        "1 non-numeric cell(s) read as unknown: cpu_pct='n/a' at line 5" in w
        for w in doc["warnings"]
    )
    assert main(["recommend", str(run.path), "--json"]) == 0
    captured = capsys.readouterr()
    rec = json.loads(captured.out)
    assert any("cpu_pct='n/a' at line 5" in w for w in rec["warnings"])
    assert "cpu_pct='n/a' at line 5" in captured.err


def test_analyze_leaves_impossible_durations_out_as_summarize_does(make_run: RunFactory) -> None:
    """The same values are excluded by both: analyze's p95/p99 of all requests equal
    summarize's http_req_duration statistics, and numpy's on the plausible durations."""
    import gzip

    import numpy as np

    from perflib import ingest as k6

    run = make_run("nan", requests=300)
    path = run.path / "k6.ndjson.gz"
    lines, planted, kept = [], ["NaN", "-5.0", "1e300", "Infinity"], []
    for line in gzip.decompress(path.read_bytes()).decode().splitlines():
        obj = json.loads(line)
        if obj.get("metric") == "http_req_duration" and obj["type"] == "Point":
            if planted:
                old = json.dumps(obj["data"]["value"])
                line = line.replace(f'"value":{old},', f'"value":{planted.pop(0)},', 1)
            else:
                kept.append(obj["data"]["value"])
        lines.append(line)
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    a = analyze_run(run.path)
    assert any("4 impossible timing value(s)" in w for w in a.warnings)
    row = a.summary[a.summary["name"] == "(all)"].iloc[0]
    s = k6.summarize(path, cache=False)["metrics"]["http_req_duration"]
    assert s["count"] == len(kept) == 296
    assert row["p95"] == pytest.approx(s["p(95)"], rel=1e-12)
    assert row["p99"] == pytest.approx(np.percentile(kept, 99), rel=1e-12)
    assert row["max"] == pytest.approx(max(kept)) and row["mean"] == pytest.approx(np.mean(kept))
