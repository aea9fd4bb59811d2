"""Schemathesis against the service's OpenAPI, every check on, a bounded example count.

The service runs as its own process next to the emulators (``LocalStack``); schemathesis
(the CLI, so the schema is read from the running service) generates valid and invalid
requests from ``/openapi.json`` — the id's documented pattern lets it reach the pipeline
instead of only the validator — and checks every answer against the documented statuses and
schemas, that invalid input is rejected, that nothing answers 5xx. A fixed seed keeps the
run reproducible; the example count keeps it to seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from perflib.run.stack import LocalStack

MAX_EXAMPLES = 40


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        workdir=tmp_path_factory.mktemp("schemathesis"),
        emulator_env={"EMULATOR_LATENCY_SCALE": "0.01"},
    ) as s:
        yield s


def test_schemathesis_every_check(stack: LocalStack, tmp_path: Path) -> None:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[test]'")
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        [
            exe,
            "run",
            f"{stack.base_url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "20261207",
            "--workers",
            "1",
            "--request-timeout",
            "40",
            "--report",
            "junit",
            "--report-junit-path",
            str(junit),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, NO_COLOR="1", SCHEMATHESIS_HOOKS=""),
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "No issues found" in out, out[-3000:]
    generated = re.search(r"(\d+) generated", out)
    assert generated is not None and int(generated.group(1)) >= 20, out[-3000:]
    assert junit.exists()
    # valid ids reached the pipeline (one lead_runs row each), not only the validator
    db = stack.database_url.split("///", 1)[1]
    with sqlite3.connect(db) as conn:
        [(runs,)] = conn.execute("SELECT count(*) FROM lead_runs").fetchall()
    assert runs >= 5
