"""Shared pytest hooks and the synthetic run-directory fixture."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.synthetic_runs import RunFactory


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    """How many documented commands the docs test ran and which ones it did not, and why:
    printed whatever ``-s``/``-q`` say, so CI logs show it (tests/test_docs_commands.py)."""
    docs = sys.modules.get("tests.test_docs_commands")
    if docs is None:
        return
    ran, marked = docs.EXECUTED, docs.counts()["marked"]
    tr = terminalreporter
    tr.section("documented commands")
    tr.write_line(
        f"docs commands: {len(ran)} ran, {len(marked)} marked not run "
        f"(of {len(docs.COMMANDS)} in README.md and docs/*.md)"
    )
    for c in marked:
        tr.write_line(f"  not run: {c.where}: {c.reason}")


@pytest.fixture
def make_run(tmp_path: Path) -> RunFactory:
    """The synthetic run-directory factory, rooted in this test's tmp_path."""
    return RunFactory(tmp_path)
