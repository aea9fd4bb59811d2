"""perflib's public API (what notebooks import) is complete, sorted and resolvable."""

from __future__ import annotations

import perflib


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert perflib.__all__ == sorted(perflib.__all__)
    for name in perflib.__all__:
        assert getattr(perflib, name) is not None, name


def test_unknown_name_raises_attribute_error() -> None:
    try:
        perflib.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")
