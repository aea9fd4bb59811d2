"""What several verbs' arguments share."""

from __future__ import annotations

import os


def time_scale_default() -> str | float:
    """``--time-scale``'s default: ``$PERFLIB_TIME_SCALE`` (argparse converts and checks a
    string default as if typed), so a script or the docs test can shorten every run."""
    return os.environ.get("PERFLIB_TIME_SCALE") or 1.0
