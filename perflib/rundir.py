"""The run directory: the one on-disk record every other part reads or writes.

A run directory holds ``manifest.json``, ``k6.ndjson.gz`` (or ``k6-<i>.ndjson.gz`` per
segment), ``k6-summary.json``, ``samples.csv``, ``events.jsonl`` and ``service.log``.
The shapes of ``samples.csv`` and ``events.jsonl`` are fixed by DESIGN.md; this module is
the only place that spells them, so writers (runner, samplers) and readers (analysis,
sizing, store, notebooks) cannot drift apart.
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

MANIFEST = "manifest.json"
SUMMARY = "k6-summary.json"
SAMPLES = "samples.csv"
EVENTS = "events.jsonl"
SERVICE_LOG = "service.log"

#: Column order of samples.csv (DESIGN.md). Memory in MiB, CPU in percent of one vCPU.
SAMPLE_COLUMNS: tuple[str, ...] = (
    "time",
    "memory_used_mb",
    "memory_limit_mb",
    "cpu_pct",
    "cpu_throttled_pct",
    "source",
)
#: Optional column appended by samplers that see several instances (Fly, Prometheus).
INSTANCE_COLUMN = "instance"

#: Event types the lab writes; others are allowed (the file is open-ended).
EVENT_TYPES = ("oom_killed", "restart", "throttled", "k6_exit", "service_exit", "interrupted")


def utcnow() -> datetime:
    return datetime.now(UTC)


def jsonable(obj: Any) -> Any:
    """A JSON-safe copy of ``obj``: the one JSON form perflib writes and stores.

    Objects with ``to_dict`` and dataclasses become mappings, frames their ``to_json``
    records, numpy scalars Python ones, NaN/±inf ``None`` (JSON has no NaN), datetimes ISO
    text; anything else unknown its ``str``.
    """
    import dataclasses
    import math

    if isinstance(obj, pd.DataFrame | pd.Series):
        return json.loads(obj.to_json(default_handler=str))
    if hasattr(obj, "to_dict") and not isinstance(obj, Mapping):
        return jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool | str) or obj is None:
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, datetime):  # before .item(): a pandas Timestamp has both
        return obj.isoformat()
    if hasattr(obj, "item"):
        return jsonable(obj.item())
    return str(obj)


def utc_timestamp(value: Any) -> pd.Timestamp | None:
    """A time we wrote or were given (ISO text, datetime, Timestamp) as a UTC Timestamp; naive
    means UTC; empty, NaN, NaT or unparseable gives None. The one reader of such times."""
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    if ts is pd.NaT:
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def iso(ts: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a ``Z``: the one timestamp format we write."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class SampleWriter:
    """Appends rows to samples.csv, flushing each row so a killed run keeps what it had.

    Thread-safe: several samplers may share one writer.
    """

    def __init__(self, path: Path, *, with_instance: bool = False) -> None:
        self.path = path
        self.columns = SAMPLE_COLUMNS + ((INSTANCE_COLUMN,) if with_instance else ())
        new = not path.exists() or path.stat().st_size == 0
        self._fh = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=self.columns, extrasaction="ignore")
        self._lock = threading.Lock()
        if new:
            self._writer.writeheader()
            self._fh.flush()

    def write(self, row: Mapping[str, Any]) -> None:
        out = dict(row)
        if isinstance(out.get("time"), datetime):
            out["time"] = iso(out["time"])
        for key in ("memory_used_mb", "memory_limit_mb", "cpu_pct", "cpu_throttled_pct"):
            value = out.get(key)
            if isinstance(value, float):
                out[key] = f"{value:.3f}"
            elif value is None:
                out[key] = ""
        with self._lock:
            self._writer.writerow(out)
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventLog:
    """Appends events to events.jsonl (one JSON object per line, flushed at once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def record(
        self,
        type_: str,
        detail: Mapping[str, Any] | str | None = None,
        *,
        time: datetime | None = None,
    ) -> dict[str, Any]:
        event = {"time": iso(time or utcnow()), "type": type_, "detail": detail or {}}
        with self._lock:
            self._fh.write(json.dumps(event, default=str) + "\n")
            self._fh.flush()
        return event

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def read_samples(path: Path) -> pd.DataFrame:
    """samples.csv as a frame: ``time`` tz-aware UTC, numeric columns float (NaN = unknown)."""
    df = pd.read_csv(path, dtype={"source": "string"})
    missing = [c for c in SAMPLE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a samples.csv, missing columns {missing}")
    df["time"] = pd.to_datetime(df["time"], utc=True, format="ISO8601")
    for col in ("memory_used_mb", "memory_limit_mb", "cpu_pct", "cpu_throttled_pct"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def read_events(path: Path) -> pd.DataFrame:
    """events.jsonl as a frame (time, type, detail); a truncated last line is skipped."""
    rows: list[dict[str, Any]] = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    df = pd.DataFrame(rows, columns=["time", "type", "detail"])
    df["time"] = pd.to_datetime(df["time"], utc=True, format="ISO8601")
    return df


def write_events(path: Path, events: Iterable[Mapping[str, Any]]) -> None:
    """Write a whole events.jsonl (used by converters such as the Fly machine-event reader)."""
    with path.open("w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(dict(event), default=str) + "\n")


@dataclass
class RunDir:
    """A run directory on disk and its manifest."""

    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        p = Path(path)
        mf = p / MANIFEST
        if not mf.exists():
            raise FileNotFoundError(f"{p}: not a run directory (no {MANIFEST})")
        return cls(p, json.loads(mf.read_text(encoding="utf-8")))

    @classmethod
    def create(cls, path: str | Path, manifest: Mapping[str, Any]) -> RunDir:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        run = cls(p, dict(manifest))
        run.save_manifest()
        return run

    def save_manifest(self) -> None:
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(self.path / MANIFEST)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def k6_outputs(self) -> list[Path]:
        """Every k6 NDJSON output of the run (one per execution segment), in segment order."""
        listed = self.manifest.get("k6_outputs")
        if listed:
            return [self.path / name for name in listed if (self.path / name).exists()]
        found = sorted(self.path.glob("k6*.ndjson.gz")) + sorted(self.path.glob("k6*.ndjson"))
        return found

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def samples_path(self) -> Path:
        return self.path / SAMPLES

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS

    @property
    def service_log_path(self) -> Path:
        return self.path / SERVICE_LOG

    def samples(self) -> pd.DataFrame:
        return read_samples(self.samples_path)

    def events(self) -> pd.DataFrame:
        return read_events(self.events_path)

    def k6_summary(self) -> dict[str, Any] | None:
        if not self.summary_path.exists():
            return None
        return json.loads(self.summary_path.read_text(encoding="utf-8"))

    @property
    def preset(self) -> str | None:
        return (self.manifest.get("vm") or {}).get("preset")

    @property
    def profile(self) -> str | None:
        return self.manifest.get("profile")
