"""k6's own summary files (``--summary-export`` and ``handleSummary`` JSON) as one shape."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from perflib.ingest.scan import (
    K6InputError,
)


def read_summary_export(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """k6's own summary as ``{metric: {k6 stat keys}}``, from either file shape it writes.

    Legacy ``--summary-export`` (flat values, rate under ``value``) and ``handleSummary``'s
    ``data`` (``metrics.X.values``) both become ``{"rate", "passes", "fails"}`` etc.; the
    legacy file's inverted thresholds (``true`` = failed) are dropped here, not misread.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise K6InputError(f"{p}: no such file") from exc
    except ValueError as exc:
        raise K6InputError(f"{p}: not a k6 summary (invalid JSON: {exc})") from exc
    metrics = doc.get("metrics") if isinstance(doc, dict) else None
    if isinstance(metrics, list):
        raise K6InputError(f"{p}: the new machine-readable summary (v1.5+) is not supported")
    if not isinstance(metrics, dict):
        raise K6InputError(f"{p}: not a k6 summary (no 'metrics' object)")
    out: dict[str, dict[str, Any]] = {}
    for name, m in metrics.items():
        if not isinstance(m, dict):
            continue
        if isinstance(m.get("values"), dict):  # handleSummary shape
            values = dict(m["values"])
        else:  # legacy flat shape
            values = {k: v for k, v in m.items() if k != "thresholds"}
            if "passes" in values and "fails" in values and "value" in values:
                values["rate"] = values.pop("value")
        out[name] = values
    return out
