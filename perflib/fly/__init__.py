"""Fly.io: presets, the Machines API and flyctl, and log lines → events (the OOM count).

``machines``: the token, the Machines API client, Machine events, ``fly logs`` via flyctl.
``events``: log lines → events, merging duplicates, and the one OOM / restart count.
"""

from typing import Any

from perflib.fly.events import (
    MERGE_WINDOWS_S,
    SOURCE_RANK,
    LogParse,
    classify_log_message,
    event_count,
    merge_events,
    oom_count,
    parse_log_lines,
    parse_time,
)

# The Machines API client needs httpx: loaded on first use (PEP 562), so that analysis,
# which only parses logs, does not pay for it.
_MACHINES = {
    "DEFAULT_ORG",
    "MACHINES_API",
    "PROMETHEUS_API",
    "TOKEN_ENV",
    "Check",
    "FlyError",
    "FlyToken",
    "FlyTokenMissing",
    "Machine",
    "MachinesClient",
    "find_flyctl",
    "machine_events",
    "machine_summary",
    "parse_machines",
    "prometheus_url",
    "read_flyctl_logs",
}


def __getattr__(name: str) -> Any:
    if name in _MACHINES:
        from perflib.fly import machines

        return getattr(machines, name)
    raise AttributeError(f"module 'perflib.fly' has no attribute {name!r}")


__all__ = [
    "DEFAULT_ORG",
    "MACHINES_API",
    "MERGE_WINDOWS_S",
    "PROMETHEUS_API",
    "SOURCE_RANK",
    "TOKEN_ENV",
    "Check",
    "FlyError",
    "FlyToken",
    "FlyTokenMissing",
    "LogParse",
    "classify_log_message",
    "Machine",
    "MachinesClient",
    "event_count",
    "find_flyctl",
    "machine_events",
    "machine_summary",
    "merge_events",
    "oom_count",
    "parse_log_lines",
    "parse_machines",
    "parse_time",
    "prometheus_url",
    "read_flyctl_logs",
]
