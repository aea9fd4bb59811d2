"""The run-directory contract: what writers write, readers read back unchanged."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from perflib.errors import RunDirError
from perflib.rundir import (
    SAMPLE_COLUMNS,
    EventLog,
    RunDir,
    SampleWriter,
    caveats,
    iso,
    read_events,
    read_samples,
)
from tests.synthetic_runs import RunFactory


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


# ----------------------------------------------------------------- malformed files (docs/runs.md)


def _events(tmp_path: Path, *lines: bytes) -> Path:
    path = tmp_path / "events.jsonl"
    good = b'{"time": "2026-01-01T00:00:00Z", "type": "restart", "detail": {}}\n'
    path.write_bytes(good + b"".join(lines))
    return path


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"[1,2]\n", "a JSON array, not an event object"),
        (b'{"time": "yesterday", "type": "restart"}\n', "bad time 'yesterday'"),
        (b'{"time": 5, "type": "restart"}\n', "bad time 5"),
        (b'{"time": "2026-01-01T00:00:01Z"}\n', "event without a type"),
        (b'{"time": "2026-01-01T00:00:01Z", "type": "restart"\n', "not JSON"),
        (b"\xff\xfe\x00\x01binary\n", "binary data"),
    ],
)
def test_a_malformed_event_line_names_file_and_line(
    tmp_path: Path, line: bytes, message: str
) -> None:
    path = _events(tmp_path, line, b'{"time": "2026-01-01T00:00:02Z", "type": "restart"}\n')
    with pytest.raises(RunDirError) as exc:
        read_events(path)
    assert exc.value.path == str(path) and exc.value.line == 2
    assert message in str(exc.value) and str(exc.value).endswith(f"({path}:2)")


def test_a_cut_off_last_event_line_is_skipped_and_counted(tmp_path: Path) -> None:
    path = _events(tmp_path, b'{"time": "2026-01-01T00:0')
    df = read_events(path)
    assert list(df["type"]) == ["restart"]
    assert df.attrs["notes"] == ["events.jsonl: line 2 is cut off (no newline): skipped"]


HEADER = "time,memory_used_mb,memory_limit_mb,cpu_pct,cpu_throttled_pct,source\n"


def test_isolated_non_numeric_cells_are_counted_not_dropped_silently(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    path.write_text(
        HEADER
        + "2026-01-01T00:00:00Z,100.0,512,10,,local\n"
        + "2026-01-01T00:00:01Z,abc,512,12,,local\n"
        + "2026-01-01T00:00:02Z,102.0,512,inf,,local\n"
        + "2026-01-01T00:00:03Z,103.0,512,14,0,local\n"
    )
    df = read_samples(path)
    assert len(df) == 4  # the rows stay; only the bad cells become unknown
    assert df["memory_used_mb"].isna().tolist() == [False, True, False, False]
    assert df["cpu_pct"].isna().tolist() == [False, False, True, False]
    assert df["cpu_throttled_pct"].isna().sum() == 3  # empty = unknown, not counted as bad
    assert df.attrs["bad_cells"] == 2
    (note,) = df.attrs["notes"]
    assert "2 non-numeric cell(s)" in note
    assert "memory_used_mb='abc' at line 3" in note and "cpu_pct='inf' at line 4" in note


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("2026-01-01T00:00:00Z,1,2,3,4,local\nnot-a-time,1,2,3,4,local\n", 3, "bad time"),
        ("2026-01-01T00:00:00Z,1,2,3,4,local,extra,more\n", 2, "malformed CSV row"),
    ],
)
def test_a_malformed_samples_row_names_file_and_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    path = tmp_path / "samples.csv"
    path.write_text(HEADER + body)
    with pytest.raises(RunDirError, match=message) as exc:
        read_samples(path)
    assert exc.value.line == line and exc.value.path == str(path)


def test_a_binary_samples_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    path.write_bytes(HEADER.encode() + b"2026-01-01T00:00:00Z,1,2,3,4,local\n\x1f\x8b\x08\x00\xff")
    with pytest.raises(RunDirError, match="binary data") as exc:
        read_samples(path)
    assert exc.value.line == 3


def test_a_cut_off_last_samples_line_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    path.write_text(HEADER + "2026-01-01T00:00:00Z,1,2,3,4,local\n2026-01-01T00:0")
    df = read_samples(path)
    assert len(df) == 1 and df.attrs["bad_cells"] == 0
    assert df.attrs["notes"] == [
        "samples.csv: line 3 is cut off (no newline, a write the run did not finish): skipped"
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('{\n  "profile": "load",\n  "stages": [,]\n}\n', 3, "not valid JSON"),
        ("[1, 2]\n", 1, "not a JSON object"),
        ('{\n  "profile": "load",\n  "time_scale": "fast"\n}\n', 3, "time_scale is str"),
        ('{\n  "stages": [{"start_s": "a", "duration_s": 1}]\n}\n', 2, "stages[0]"),
    ],
)
def test_a_malformed_manifest_names_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(RunDirError) as exc:
        RunDir.open(tmp_path)
    assert message in exc.value.message
    assert (exc.value.path, exc.value.line) == (str(tmp_path / "manifest.json"), line)


# ----------------------------------------------------------------- partial runs


def test_completeness_of_an_interrupted_run_is_its_share_of_the_profile(
    make_run: RunFactory,
) -> None:
    full = make_run("full", duration_s=40.0)
    assert not full.completeness().partial and full.completeness().share == pytest.approx(1.0)
    assert caveats([full.path]) == []
    cut = make_run.partial("cut", duration_s=40.0, share=0.4)
    done = cut.completeness()
    assert done.interrupted and done.partial and done.status == "interrupted"
    assert done.planned_s == 40.0  # the manifest's stage table
    assert done.share == pytest.approx(0.4)  # k6 window 16 s of 40 s
    (line,) = caveats([full, cut])
    assert line.startswith("partial run cut: interrupted; it covered 40% of its load profile")


def test_a_run_killed_hard_is_partial_from_its_samples(make_run: RunFactory) -> None:
    run = make_run.partial("killed", duration_s=40.0, share=0.5, status="running")
    assert "k6_ended_at" not in run.manifest
    done = run.completeness()
    assert done.partial and not done.interrupted
    assert "still says running" in done.why
    # the last sample is 20 s after k6 started (plus the 1 s before k6 started)
    assert done.ran_s == pytest.approx(21.0, abs=1.0)


def test_an_empty_samples_file_reads_as_no_samples_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    path.write_bytes(b"")
    df = read_samples(path)
    assert df.empty and list(df.columns) == list(SAMPLE_COLUMNS)
    assert df.attrs["notes"] == ["samples.csv is empty: no samples"]
