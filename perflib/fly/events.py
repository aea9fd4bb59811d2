"""Log lines → events, and the one way perflib counts OOM kills and restarts.

Every path that needs an OOM count — ``perflib analyze`` (events.jsonl + service.log),
``perflib recommend`` (the same run, through the analysis), the Fly samplers (Machine
events + ``fly logs`` + ``fly_instance_exit_oom``) — parses log text with
:func:`parse_log_lines` and counts with :func:`event_count`, so the same evidence gives the
same number everywhere.

Why counting needs care: one OOM kill shows up in several places — the lab's (or the Machines
API's) event, the guest kernel's ``Out of memory: Killed process`` line, init's ``Process
appears to have been OOM killed!`` line, the metric's step — and counting rows would count
it three or four times. Each place is a *stream* (source × reason): a stream sees a given kill
at most once, so events of different streams close in time (:data:`MERGE_WINDOWS_S`) on the
same instance are one happening, and events of one stream are always distinct ones.

Shapes: flyctl ``logs/entry.go`` and ``internal/render/logs.go`` (``fly logs`` text and
``--json``); the kernel's ``oom_kill_process`` message; docs/fly.md.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from perflib.rundir import iso

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: Where an event came from, best first: the most precise source wins when merging.
SOURCE_RANK = {"machines_api": 0, "logs": 1, "prometheus": 2}
#: Event types that several sources report for one happening; merged within this window.
MERGE_WINDOWS_S = {"oom_killed": 90.0, "restart": 90.0, "service_exit": 30.0}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# flyctl render.LogEntry: "<RFC3339 time> <provider>[<instance>] <region> [<level>] <message>"
_TEXT_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\S+)\s+(?:(?P<provider>[\w-]+)\[(?P<instance>[0-9a-f]+)\]|"
    r"(?P<bare>[0-9a-f]{8,}))\s+(?P<region>[a-z]{3,4})\s+\[(?P<level>\w+)\]\s?(?P<message>.*)$"
)
# any other line that starts with a timestamp (Python logging, ISO with a space or a comma)
_TS_PREFIX = re.compile(
    r"^\s*\[?(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\]?"
)
_KERNEL_OOM = re.compile(
    r"Out of memory: Killed process (?P<pid>\d+)(?: \((?P<comm>[^)]*)\))?"
    r"(?:.*?total-vm:(?P<total_vm>\d+)kB)?(?:.*?anon-rss:(?P<anon_rss>\d+)kB)?",
    re.IGNORECASE,
)
_INIT_OOM = re.compile(r"Process appears to have been OOM killed", re.IGNORECASE)
_EXIT_SIGNAL = re.compile(r"Main child exited with signal \(with signal '(?P<signal>\w+)'")
_EXIT_CODE = re.compile(r"Main child exited normally with code: (?P<code>\d+)")
_REBOOT = re.compile(r"reboot: Restarting system", re.IGNORECASE)
_RUNNER_RESTART = re.compile(r"machine restart", re.IGNORECASE)


def parse_time(text: str) -> datetime | None:
    """RFC 3339 / ISO 8601 (nanoseconds allowed, a space or a comma tolerated, no zone = UTC)
    → aware UTC datetime; None if unparseable."""
    text = text.strip().replace(",", ".")
    m = re.match(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$", text)
    if not m:
        return None
    frac = (m.group(3) or "")[:7]  # Python keeps microseconds; Go prints nanoseconds
    tz = m.group(4) or "Z"
    try:
        ts = datetime.fromisoformat(
            f"{m.group(1)}T{m.group(2)}{frac}" + ("+00:00" if tz == "Z" else tz)
        )
    except ValueError:
        return None
    return ts.astimezone(UTC)


@dataclass
class LogParse:
    """Events found in log lines, and how many lines were read / had no usable time.

    ``events`` are placed on the timeline; ``untimed_events`` matched but carry no time (the
    lab's service.log writes the kernel's uptime stamp, not a wall-clock time): they still
    count (:func:`event_count`) but cannot be merged by time or plotted."""

    events: list[dict[str, Any]]
    lines: int = 0
    untimed: int = 0
    untimed_events: list[dict[str, Any]] = field(default_factory=list)


def split_log_line(line: str) -> tuple[str, datetime | None, str | None, str | None]:
    """``(message, time, instance, region)`` of a ``fly logs`` text or ``--json`` line, or of
    any line with a leading timestamp; the whole line and no time otherwise."""
    line = _ANSI.sub("", line).strip()
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            return (
                str(obj.get("message", "")),
                parse_time(str(obj.get("timestamp", ""))),
                obj.get("instance") or None,
                obj.get("region") or None,
            )
    m = _TEXT_LINE.match(line)
    if m:
        instance = m.group("instance") or m.group("bare")
        return m.group("message"), parse_time(m.group("time")), instance, m.group("region")
    m = _TS_PREFIX.match(line)
    if m:
        return line, parse_time(m.group("ts")), None, None
    return line, None, None, None


def parse_log_lines(lines: Iterable[str], *, source: str = "logs") -> LogParse:
    """Log lines → events: ``fly logs`` text or ``--json`` objects, the lab's service.log.

    OOM: the kernel's ``Out of memory: Killed process PID (comm) … anon-rss:NkB`` (reason
    ``kernel_oom_killer``) and init's ``Process appears to have been OOM killed!``
    (``init_reported_oom``), both ``oom_killed``; ``Main child exited …`` → ``service_exit``;
    ``reboot: Restarting system`` (``kernel_reboot``) and the runner's ``machine restart``
    (``runner_restart``) → ``restart``. ``detail.source`` is ``source``; ``detail.line_no``
    the 1-based line number. Lines without a timestamp go to ``untimed_events``.
    """
    result = LogParse([])
    for no, raw in enumerate(lines, start=1):
        line = _ANSI.sub("", raw).strip()
        if not line:
            continue
        result.lines += 1
        message, when, instance, region = split_log_line(raw)
        kind, detail = classify_log_message(message)
        if kind is None:
            continue
        detail.update(
            {
                "instance": instance,
                "region": region,
                "source": source,
                "message": message[:300],
                "line_no": no,
            }
        )
        if when is None:
            result.untimed += 1
            result.untimed_events.append({"time": None, "type": kind, "detail": detail})
            continue
        result.events.append({"time": iso(when), "type": kind, "detail": detail})
    result.events.sort(key=lambda e: e["time"])
    return result


def classify_log_message(message: str) -> tuple[str | None, dict[str, Any]]:
    """One log message (without its timestamp) → (event type, detail), or (None, {}): the
    one classifier of OOM, exit and restart lines (:func:`parse_log_lines` uses it)."""
    m = _KERNEL_OOM.search(message)
    if m:
        detail: dict[str, Any] = {
            "pid": int(m.group("pid")),
            "process": m.group("comm"),
            "reason": "kernel_oom_killer",
        }
        if m.group("anon_rss"):
            detail["anon_rss_mb"] = round(int(m.group("anon_rss")) / 1024, 3)  # kB → MiB
        if m.group("total_vm"):
            detail["total_vm_mb"] = round(int(m.group("total_vm")) / 1024, 3)
        return "oom_killed", detail
    if _INIT_OOM.search(message):
        return "oom_killed", {"reason": "init_reported_oom"}
    m = _EXIT_SIGNAL.search(message)
    if m:
        return "service_exit", {"signal": m.group("signal"), "reason": "main_child_exit"}
    m = _EXIT_CODE.search(message)
    if m:
        return "service_exit", {"exit_code": int(m.group("code")), "reason": "main_child_exit"}
    if _REBOOT.search(message):
        return "restart", {"reason": "kernel_reboot"}
    if _RUNNER_RESTART.search(message):
        return "restart", {"reason": "runner_restart"}
    return None, {}


# --- merging and counting -----------------------------------------------------------------------


def _stream(event: Mapping[str, Any]) -> tuple[str, str]:
    """The place an event was seen: (source, reason). One stream sees a happening once."""
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        detail = {}
    return str(detail.get("source") or event.get("source") or ""), str(detail.get("reason") or "")


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):  # pandas Timestamps are datetimes
        return None if value != value else value.astimezone(UTC)  # NaT != NaT
    return parse_time(str(value))


def merge_events(
    events: Iterable[Mapping[str, Any]], windows: Mapping[str, float] = MERGE_WINDOWS_S
) -> list[dict[str, Any]]:
    """Fold the events that report one happening into one event (module docstring).

    Two events are the same happening when they have the same type, lie within that type's
    window, are on the same instance (an event without an instance matches any) and come from
    different streams. The kept event is the one from the best source (:data:`SOURCE_RANK`);
    ``detail.sources`` lists every source that saw it, and missing detail keys are filled
    from the others. Events without a time are left out (see :func:`event_count`).
    """
    ordered = sorted(
        (dict(e) for e in events if _time(e.get("time")) is not None),
        key=lambda e: (
            _time(e["time"]),
            SOURCE_RANK.get((e.get("detail") or {}).get("source", ""), 9),
        ),
    )
    kept: list[dict[str, Any]] = []
    streams: dict[int, set[tuple[str, str]]] = {}
    for event in ordered:
        window = windows.get(event["type"])
        detail = (
            dict(event.get("detail") or {})
            if isinstance(event.get("detail"), Mapping)
            else {"message": event.get("detail")}
        )
        event["detail"] = detail
        stream = _stream(event)
        match = None
        if window is not None:
            t = _time(event["time"])
            for other in reversed(kept):
                if other["type"] != event["type"] or stream in streams[id(other)]:
                    continue
                ot = _time(other["time"])
                if t is None or ot is None or t - ot > timedelta(seconds=window):
                    continue
                a, b = other["detail"].get("instance"), detail.get("instance")
                if a and b and a != b:
                    continue
                match = other
                break
        if match is None:
            if window is not None:
                detail.setdefault("sources", [detail.get("source")] if detail.get("source") else [])
            kept.append(event)
            streams[id(event)] = {stream}
            continue
        streams[id(match)].add(stream)
        _fold(match, event, detail)
    kept.sort(key=lambda e: _time(e["time"]))  # type: ignore[arg-type,return-value]
    return kept


def _fold(match: dict[str, Any], event: dict[str, Any], detail: dict[str, Any]) -> None:
    """Merge ``event`` (its ``detail``) into the kept ``match``."""
    md = match["detail"]
    src = detail.get("source")
    md.setdefault("sources", [md.get("source")] if md.get("source") else [])
    for seen in [*(detail.get("sources") or []), *([src] if src else [])]:
        if seen not in md["sources"]:
            md["sources"].append(seen)
    better = SOURCE_RANK.get(src or "", 9) < SOURCE_RANK.get(md.get("source", ""), 9)
    for key, value in detail.items():
        if key == "sources":
            continue
        if key not in md or md[key] is None or (better and key == "source"):
            md[key] = value
    if better:
        match["time"] = event["time"]


def _records(events: Iterable[Mapping[str, Any]] | pd.DataFrame) -> list[dict[str, Any]]:
    if hasattr(events, "to_dict") and hasattr(events, "columns"):
        return list(events.to_dict("records"))
    return [dict(e) for e in events]


def event_count(events: Iterable[Mapping[str, Any]] | pd.DataFrame, kind: str) -> int:
    """How many distinct ``kind`` events (``oom_killed``, ``restart``…) the evidence shows.

    The evidence is any mix of event records (``events.jsonl`` rows, :func:`parse_log_lines`
    events, a frame with ``time``/``type``/``detail`` and optionally ``source`` columns). The
    count is the larger of (a) the timed events after :func:`merge_events` and (b) the number
    of events in the busiest single stream, timed or not — a stream sees each happening once,
    so (b) is a lower bound that still holds when log lines carry no time to merge on.
    """
    recs = [r for r in _records(events) if r.get("type") == kind]
    if not recs:
        return 0
    for r in recs:  # a frame's `source` column names the stream when the detail does not
        if not isinstance(r.get("detail"), Mapping):
            r["detail"] = {"message": r.get("detail")}
        if r.get("source") and not r["detail"].get("source"):
            r["detail"] = {**r["detail"], "source": r["source"]}
    merged = len(merge_events(recs))
    busiest = max(Counter(_stream(r) for r in recs).values())
    return max(merged, busiest)


def oom_count(events: Iterable[Mapping[str, Any]] | pd.DataFrame) -> int:
    """Distinct OOM kills in the evidence (:func:`event_count` of ``oom_killed``)."""
    return event_count(events, "oom_killed")
