"""perflib's public API is exactly what the notebooks use and the docs cite, sorted and resolvable.

Modelled on httpx's tests/test_exported_members.py: every public name is in ``__all__`` and
every name in ``__all__`` is public, used and importable.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import perflib

ROOT = Path(__file__).resolve().parent.parent
SUBMODULES = {m.name for m in pkgutil.iter_modules(perflib.__path__)}


def _notebook_names() -> set[str]:
    """Every perflib name the notebooks' sources use, whichever module they take it from."""
    names: set[str] = set()
    for path in sorted((ROOT / "notebooks").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules: set[str] = set()  # local names bound to a perflib module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("perflib"):
                for alias in node.names:
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ModuleNotFoundError:
                        names.add(alias.name)
                    else:
                        modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                modules |= {a.asname or a.name for a in node.names if a.name.startswith("perflib")}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
            ):
                names.add(node.attr)
    return names


def _doc_names() -> set[str]:
    """``perflib.NAME`` and ``from perflib import NAME`` in README.md and docs/*.md."""
    names: set[str] = set()
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        names |= set(re.findall(r"(?<![\w./])perflib\.([A-Za-z_]\w*)\b(?!\.py)", text))
        for imported in re.findall(r"from perflib import ([\w, ]+)", text):
            names |= {n.strip() for n in imported.split(",")}
    return names - SUBMODULES - {"db"}  # perflib.db is the store's file name


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert perflib.__all__ == sorted(perflib.__all__)
    for name in perflib.__all__:
        assert getattr(perflib, name) is not None, name


def test_all_is_exactly_what_notebooks_and_docs_use() -> None:
    used = (_notebook_names() | _doc_names()) - SUBMODULES
    exported = set(perflib.__all__) - {"__version__"}
    assert used - exported == set(), "used by notebooks/docs but not exported"
    assert exported - used == set(), "exported but used by no notebook or doc"


def test_public_members_are_exported_and_vice_versa() -> None:
    # httpx: the module's public members are __all__, nothing more, nothing less
    public = {n for n in vars(perflib) if not n.startswith("_")} - SUBMODULES
    assert public <= set(perflib.__all__)
    assert set(dir(perflib)) == set(perflib.__all__)


def test_unknown_name_raises_attribute_error() -> None:
    try:
        perflib.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")
