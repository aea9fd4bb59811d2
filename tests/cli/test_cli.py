"""The `perflib` command: every verb parses and reaches a real handler."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from perflib.cli import HANDLERS, build_parser, main


def test_every_verb_has_an_importable_handler() -> None:
    for verb, spec in HANDLERS.items():
        module, func = spec.split(":")
        handler = getattr(importlib.import_module(module), func, None)
        assert callable(handler), f"{verb}: {spec} is not callable"


def test_parser_knows_every_handled_verb() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(HANDLERS)


def test_design_md_argument_shapes_parse() -> None:
    parser = build_parser()
    run = parser.parse_args(
        ["run", "load", "--vm", "shared-cpu-1x:512mb", "--time-scale", "0.1", "--out", "x"]
    )
    assert (run.profile, run.vm, run.time_scale, run.out) == (
        "load",
        "shared-cpu-1x:512mb",
        0.1,
        "x",
    )
    summ = parser.parse_args(["summarize", "k6.ndjson.gz", "--json"])
    assert summ.json and summ.path == "k6.ndjson.gz"
    rec = parser.parse_args(["recommend", "--samples", "s.csv", "--events", "e.jsonl", "--json"])
    assert rec.samples == "s.csv" and rec.events == "e.jsonl" and rec.run_dirs == []
    serve = parser.parse_args(["serve", "--port", "8081", "--upstreams", "degraded"])
    assert serve.port == 8081 and serve.upstreams == "degraded"


def test_unknown_verb_exits_with_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_summarize_does_not_import_heavy_libraries() -> None:
    # import time stays out of the hot path: the ingest command must not drag in
    # matplotlib, scipy, FastAPI or papermill.
    code = (
        "import sys, perflib.cli, perflib.ingest\n"
        "heavy = [m for m in ('matplotlib', 'scipy', 'fastapi', 'papermill') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_summarize_of_a_plain_file_never_imports_pandas() -> None:
    """`perflib summarize` reads with the C reader and numpy; pandas (≈0.4 s, ≈70 MiB) is the
    analysis stages' import. A lazy import slipping back (it did once, through rundir) would
    cost the cold-summary speed-up that `make bench` measures."""
    k6 = Path(__file__).resolve().parents[2] / "data/runs/02-load-1024mb/k6.ndjson.gz"
    code = (
        "import sys; from perflib.cli import main; "
        f"rc = main(['summarize', {str(k6)!r}, '--json']); "
        "assert rc == 0, rc; assert 'pandas' not in sys.modules, 'pandas imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"http_req_duration"' in done.stdout
