"""The run directory: the one on-disk record every other part reads or writes.

A run directory holds ``manifest.json``, ``k6.ndjson.gz`` (or ``k6-<i>.ndjson.gz`` per
segment), ``k6-summary.json``, ``samples.csv``, ``events.jsonl`` and ``service.log``.
The shapes of ``samples.csv`` and ``events.jsonl`` are fixed by docs/contracts.md; this module is
the only place that spells them, so writers (runner, samplers) and readers (analysis,
sizing, store, notebooks) cannot drift apart.
"""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported where used: `perflib summarize` never needs it
    import pandas as pd

from perflib.errors import RunDirError

MANIFEST = "manifest.json"
SUMMARY = "k6-summary.json"
SAMPLES = "samples.csv"
EVENTS = "events.jsonl"
SERVICE_LOG = "service.log"

#: Column order of samples.csv (docs/contracts.md). Memory in MiB, CPU in percent of one vCPU.
SAMPLE_COLUMNS: tuple[str, ...] = (
    "time",
    "memory_used_mb",
    "memory_limit_mb",
    "cpu_pct",
    "cpu_throttled_pct",
    "source",
)
NUMERIC_SAMPLE_COLUMNS: tuple[str, ...] = SAMPLE_COLUMNS[1:5]
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

    import pandas as pd

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

    import pandas as pd

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


def _text_lines(raw: bytes, path: Path) -> None:
    """Refuse a binary file: the first NUL byte or invalid UTF-8 names its line."""
    bad = raw.find(b"\x00")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.start if bad < 0 else min(bad, exc.start)
    if bad >= 0:
        raise RunDirError(
            "binary data, not a text file", path=path, line=raw.count(b"\n", 0, bad) + 1
        )


def _cut_last_line(raw: bytes, path: Path, notes: list[str]) -> bytes:
    """A killed run may leave its last write cut off (no newline): drop it and say so."""
    if not raw or raw.endswith(b"\n"):
        return raw
    cut = raw.rfind(b"\n") + 1
    line = raw.count(b"\n") + 1
    notes.append(
        f"{path.name}: line {line} is cut off (no newline, a write the run did not finish): skipped"
    )
    return raw[:cut]


def read_samples(path: Path) -> pd.DataFrame:
    """samples.csv as a frame: ``time`` tz-aware UTC, numeric columns float (NaN = unknown).

    Policy (docs/analysis.md, "Malformed run-directory files"): a binary file, a missing
    column, a row with more or fewer fields than the header or a bad ``time`` raise
    :class:`RunDirError` naming the file and line; an isolated non-numeric or non-finite
    number cell is read as unknown (NaN) and *counted*; a cut-off last line is skipped and
    counted; an empty file reads as no samples (noted). ``df.attrs["bad_cells"]`` holds that count
    and ``df.attrs["notes"]`` one line per kind, for the caller to report.
    """
    import numpy as np
    import pandas as pd

    path = Path(path)
    raw = path.read_bytes()
    _text_lines(raw, path)
    notes: list[str] = []
    raw = _cut_last_line(raw, path, notes)
    if not raw.strip():  # a sampler that never wrote: no samples, said, not an error
        notes.append(f"{path.name} is empty: no samples")
        raw = ",".join(SAMPLE_COLUMNS).encode() + b"\n"
    text = raw.decode("utf-8")
    reader = csv.reader(io.StringIO(text))
    width = len(next(reader))
    for row in reader:  # pandas would shift a long first row into the index, pad a short one
        if row and len(row) != width:
            raise RunDirError(
                f"malformed CSV row: {len(row)} fields, the header has {width}",
                path=path,
                line=reader.line_num,
            )
    df = pd.read_csv(
        io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False, index_col=False
    )
    missing = [c for c in SAMPLE_COLUMNS if c not in df.columns]
    if missing:
        raise RunDirError(f"not a samples.csv, missing columns {missing}", path=path, line=1)
    df.index = pd.RangeIndex(2, len(df) + 2)  # the file's line numbers (one row per line)
    df = df.fillna("")
    df = df[(df != "").any(axis=1)]  # blank lines
    times = pd.to_datetime(df["time"], utc=True, format="ISO8601", errors="coerce")
    if times.isna().any():
        line = int(times.index[times.isna()][0])
        raise RunDirError(
            f"bad time {df['time'][line]!r} (ISO 8601 expected)", path=path, line=line
        )
    df["time"] = times
    bad_cells: list[tuple[int, str, str]] = []
    for col in NUMERIC_SAMPLE_COLUMNS:
        text = df[col].str.strip()
        num = pd.to_numeric(text, errors="coerce").astype("float64")
        bad = (text != "") & ~np.isfinite(num)
        bad_cells += [(int(i), col, str(df[col][i])) for i in df.index[bad]]
        df[col] = num.where(~bad)
    df["source"] = df["source"].astype("string")
    if bad_cells:
        shown = ", ".join(f"{c}={v!r} at line {i}" for i, c, v in sorted(bad_cells)[:3])
        more = f" and {len(bad_cells) - 3} more" if len(bad_cells) > 3 else ""
        notes.append(
            f"{path.name}: {len(bad_cells)} non-numeric cell(s) read as unknown: {shown}{more}"
        )
    df = df.sort_values("time", kind="stable").reset_index(drop=True)
    df.attrs["bad_cells"] = len(bad_cells)
    df.attrs["notes"] = notes
    return df


def _event_time(value: Any) -> pd.Timestamp | None:
    """An events.jsonl ``time``: text only (a number is not a time we wrote)."""
    return utc_timestamp(value) if isinstance(value, str) else None


def read_events(path: Path) -> pd.DataFrame:
    """events.jsonl as a frame (time, type, detail).

    Policy (docs/analysis.md, "Malformed run-directory files"): every line must be a JSON
    object with an ISO 8601 ``time`` and a ``type``; anything else raises
    :class:`RunDirError` naming the file and line. Only a cut-off last line (no newline: the write of a killed run) is skipped,
    and counted in ``df.attrs["notes"]``.
    """
    import pandas as pd

    path = Path(path)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    if path.exists():
        raw = path.read_bytes()
        ends_complete = raw.endswith(b"\n")
        lines = raw.split(b"\n")
        for no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                if no == len(lines) and not ends_complete:
                    notes.append(f"{path.name}: line {no} is cut off: skipped")
                    continue
                raise RunDirError("binary data, not a JSON line", path=path, line=no) from exc
            except json.JSONDecodeError as exc:
                if no == len(lines) and not ends_complete:
                    notes.append(f"{path.name}: line {no} is cut off (no newline): skipped")
                    continue
                raise RunDirError(f"not JSON ({exc.msg})", path=path, line=no) from exc
            if not isinstance(obj, dict):
                kind = type(obj).__name__.replace("dict", "object").replace("list", "array")
                raise RunDirError(f"a JSON {kind}, not an event object", path=path, line=no)
            ts = _event_time(obj.get("time"))
            if ts is None:
                raise RunDirError(
                    f"bad time {obj.get('time')!r} (ISO 8601 expected)", path=path, line=no
                )
            if not isinstance(obj.get("type"), str) or not obj["type"]:
                raise RunDirError("event without a type", path=path, line=no)
            rows.append({"time": ts, "type": obj["type"], "detail": obj.get("detail", {})})
    df = pd.DataFrame(rows, columns=["time", "type", "detail"])
    df["time"] = pd.to_datetime(df["time"], utc=True)
    df.attrs["notes"] = notes
    return df


def write_events(path: Path, events: Iterable[Mapping[str, Any]]) -> None:
    """Write a whole events.jsonl (used by converters such as the Fly machine-event reader)."""
    with path.open("w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(dict(event), default=str) + "\n")


class RunDirNotFound(RunDirError, FileNotFoundError):
    """The path is not a run directory (no manifest.json)."""


#: Manifest keys readers rely on, with the JSON types they must have when present.
_MANIFEST_TYPES: dict[str, tuple[type, ...]] = {
    "profile": (str,),
    "stages": (list,),
    "time_scale": (int, float),
    "vm": (dict,),
    "exit": (dict,),
    "versions": (dict,),
    "started_at": (str,),
    "ended_at": (str,),
    "k6_started_at": (str,),
    "k6_ended_at": (str,),
    "k6_outputs": (list,),
}


def _key_line(text: str, key: str) -> int | None:
    """The line of the first ``"key":`` in a JSON text (to point at a bad value)."""
    at = text.find(f'"{key}"')
    return None if at < 0 else text.count("\n", 0, at) + 1


def read_manifest(path: Path) -> dict[str, Any]:
    """manifest.json, checked: a JSON object whose known keys have the right types and whose
    stages have numeric ``start_s``/``duration_s``. Anything else raises RunDirError naming
    the file and line."""
    raw = path.read_bytes()
    _text_lines(raw, path)
    text = raw.decode("utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunDirError(f"not valid JSON ({exc.msg})", path=path, line=exc.lineno) from exc
    if not isinstance(doc, dict):
        raise RunDirError("not a JSON object", path=path, line=1)
    for key, types in _MANIFEST_TYPES.items():
        value = doc.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            want = " or ".join(t.__name__.replace("dict", "object") for t in types)
            raise RunDirError(
                f"{key} is {type(value).__name__}, not {want}", path=path, line=_key_line(text, key)
            )
    for i, st in enumerate(doc.get("stages") or []):
        ok = isinstance(st, dict) and all(
            isinstance(st.get(k, 0), int | float)
            and not isinstance(st.get(k), bool)
            and math.isfinite(st.get(k, 0))
            for k in ("start_s", "duration_s")
        )
        if not ok:
            raise RunDirError(
                f"stages[{i}] needs numeric start_s and duration_s",
                path=path,
                line=_key_line(text, "stages"),
            )
    return doc


@dataclass
class RunDir:
    """A run directory on disk and its manifest."""

    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        p = Path(path)
        mf = p / MANIFEST
        if not mf.is_file():
            raise RunDirNotFound(f"not a run directory (no {MANIFEST})", path=p)
        return cls(p, read_manifest(mf))

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

    def completeness(self, ran_s: float | None = None) -> Completeness:
        """How much of its load profile this run covered (see :class:`Completeness`)."""
        return completeness(self, ran_s=ran_s)


def validate_run(path: str | Path) -> RunDir:
    """Open a run and read its manifest.json, samples.csv and events.jsonl with the strict
    readers: a malformed file raises RunDirError (file and line) before any work starts."""
    run = RunDir.open(path)
    if run.samples_path.exists():
        run.samples()
    run.events()
    return run


# --------------------------------------------------------------------------- partial runs

#: A run whose k6 window covers less than this share of its planned stages is partial.
COMPLETE_SHARE = 0.95


def planned_duration_s(manifest: Mapping[str, Any]) -> float | None:
    """The load profile's length: the end of its last stage (the manifest's scaled stages)."""
    ends = [
        float(st.get("start_s", 0.0)) + float(st.get("duration_s", 0.0))
        for st in manifest.get("stages") or []
    ]
    return max(ends) if ends else None


@dataclass(frozen=True)
class Completeness:
    """Whether a run ran its whole profile: interrupted, killed, or stopped short.

    ``share`` is the k6 window (``k6_started_at`` → ``k6_ended_at``; for a run killed before
    it wrote ``k6_ended_at``, → its last sample) over the planned stages' length, capped at 1.
    """

    run: str
    status: str | None
    interrupted: bool
    planned_s: float | None
    ran_s: float | None
    share: float | None
    partial: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "interrupted": self.interrupted,
            "partial": self.partial,
            "status": self.status,
            "profile_share": None if self.share is None else round(self.share, 3),
            "ran_s": None if self.ran_s is None else round(self.ran_s, 1),
            "planned_s": self.planned_s,
            "why": self.why,
        }

    @property
    def caveat(self) -> str | None:
        """One line for the top of any output that uses this run, or None when complete."""
        if not self.partial:
            return None
        covered = (
            f"; it covered {self.share:.0%} of its load profile ({self.ran_s:.0f} s of "
            f"{self.planned_s:.0f} s)"
            if self.share is not None and self.ran_s is not None and self.planned_s
            else "; how much of its load profile ran is unknown"
        )
        return (
            f"partial run {self.run}: {self.why}{covered} — its figures describe only the "
            "part that ran"
        )


def completeness(run: RunDir | str | Path, *, ran_s: float | None = None) -> Completeness:
    """:class:`Completeness` of a run; ``ran_s`` overrides the measured k6 window."""
    run = run if isinstance(run, RunDir) else RunDir.open(run)
    m = run.manifest
    status = (m.get("exit") or {}).get("status")
    events = run.events()
    interrupted = status == "interrupted" or bool((events["type"] == "interrupted").any())
    planned = planned_duration_s(m)
    start = _event_time(m.get("k6_started_at")) or _event_time(m.get("started_at"))
    if ran_s is None and start is not None:
        end = _event_time(m.get("k6_ended_at"))
        if end is None and run.samples_path.exists():
            times = run.samples()["time"]
            end = times.max() if len(times) else None
        if end is not None:
            ran_s = max((end - start).total_seconds(), 0.0)
    share = min(ran_s / planned, 1.0) if ran_s is not None and planned else None
    short = share is not None and share < COMPLETE_SHARE
    if interrupted:
        why = "interrupted"
    elif status == "running":
        why = "never finished (its manifest still says running: the run was killed)"
    elif short:
        why = f"k6 stopped early (status {status})"
    else:
        why = ""
    partial = interrupted or status == "running" or short
    return Completeness(run.name, status, interrupted, planned, ran_s, share, partial, why)


def caveats(runs: Iterable[RunDir | str | Path | Completeness]) -> list[str]:
    """The caveat lines for a set of runs: one per partial run, [] when all are complete.

    The report's first cell, ``recommend`` and ``compare`` print these at the top so nothing
    from a partial run reads as if it were complete.
    """
    out = []
    for r in runs:
        c = r if isinstance(r, Completeness) else completeness(r)
        if c.caveat:
            out.append(c.caveat)
    return out
