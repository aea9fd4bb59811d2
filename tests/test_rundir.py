"""The run-directory contract: what writers write, readers read back unchanged."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from perflib.rundir import (
    SAMPLE_COLUMNS,
    EventLog,
    RunDir,
    SampleWriter,
    iso,
    read_events,
    read_samples,
)


def test_samples_round_trip_with_design_columns(tmp_path: Path) -> None:
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    with SampleWriter(tmp_path / "samples.csv") as writer:
        for i in range(3):
            writer.write(
                {
                    "time": t0 + timedelta(seconds=i),
                    "memory_used_mb": 100.0 + i,
                    "memory_limit_mb": 512.0,
                    "cpu_pct": 12.5 * i,
                    "cpu_throttled_pct": None,
                    "source": "local",
                }
            )
    header = next(csv.reader((tmp_path / "samples.csv").open()))
    assert tuple(header) == SAMPLE_COLUMNS
    df = read_samples(tmp_path / "samples.csv")
    assert list(df["memory_used_mb"]) == [100.0, 101.0, 102.0]
    assert df["cpu_throttled_pct"].isna().all()
    assert df["time"].iloc[0] == pd.Timestamp(t0)
    assert str(df["time"].dt.tz) == "UTC"


def test_sample_writer_appends_without_second_header(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    row = {
        "time": iso(datetime.now(UTC)),
        "memory_used_mb": 1.0,
        "memory_limit_mb": 2.0,
        "cpu_pct": 0.0,
        "cpu_throttled_pct": 0.0,
        "source": "local",
    }
    for _ in range(2):
        with SampleWriter(path) as writer:
            writer.write(row)
    assert path.read_text().count("memory_used_mb") == 1
    assert len(read_samples(path)) == 2


def test_read_samples_rejects_a_file_of_another_shape(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    path.write_text("time,rss\n2026-01-01T00:00:00Z,1\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_samples(path)


def test_events_keep_order_and_skip_a_truncated_last_line(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.record("oom_killed", {"pid": 42})
    log.record("restart", {"downtime_s": 1.5})
    log.close()
    with (tmp_path / "events.jsonl").open("a") as fh:
        fh.write('{"time": "2026-01-01T00:00:0')  # killed mid-write
    df = read_events(tmp_path / "events.jsonl")
    assert list(df["type"]) == ["oom_killed", "restart"]
    assert df["detail"].iloc[0] == {"pid": 42}


def test_missing_events_file_reads_as_empty(tmp_path: Path) -> None:
    df = read_events(tmp_path / "nope.jsonl")
    assert df.empty and list(df.columns) == ["time", "type", "detail"]


def test_rundir_manifest_round_trip_and_k6_outputs(tmp_path: Path) -> None:
    run = RunDir.create(
        tmp_path / "run",
        {
            "profile": "load",
            "vm": {"preset": "shared-cpu-1x:512mb"},
            "k6_outputs": ["k6-0.ndjson.gz", "k6-1.ndjson.gz"],
        },
    )
    for name in ("k6-0.ndjson.gz", "k6-1.ndjson.gz"):
        (run.path / name).write_bytes(b"")
    again = RunDir.open(tmp_path / "run")
    assert again.profile == "load"
    assert again.preset == "shared-cpu-1x:512mb"
    assert [p.name for p in again.k6_outputs] == ["k6-0.ndjson.gz", "k6-1.ndjson.gz"]
    assert json.loads((run.path / "manifest.json").read_text())["profile"] == "load"


def test_opening_a_directory_without_manifest_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        RunDir.open(tmp_path)
