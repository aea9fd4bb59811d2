"""The results store: round trips on SQLite and the real PostgreSQL, idempotent indexing,
versioned migrations, regression flagging and the ``perflib store`` verbs."""

from __future__ import annotations

import argparse
import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from perflib import store as st
from perflib.cli import main as cli_main
from perflib.cli.store import cli_store
from perflib.cost import monthly_cost
from perflib.rundir import RunDir
from tests.synthetic_runs import make_run

PG_BASE = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture
def runs(tmp_path: Path) -> list[RunDir]:
    t0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    return [
        make_run(tmp_path / "runs", "a-load-1gb", started_at=t0, seed=1),
        make_run(tmp_path / "runs", "b-load-512", preset="shared-cpu-1x:512mb",
                 started_at=t0 + timedelta(days=1), memory_peak_mb=450.0, oom=True, seed=2),
    ]  # fmt: skip


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A private schema in the shared test database, dropped afterwards."""
    schema = f"perflib_store_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _k6_summary(run: RunDir) -> dict:
    return json.loads(run.summary_path.read_text())["metrics"]


def _check_round_trip(url: str, runs: list[RunDir]) -> None:
    with st.Store(url) as store:
        assert store.revision() == st.Store.head_revision()
        results = store.index_runs([r.path for r in runs])
        assert [r.created for r in results] == [True, True]
        df = store.runs_frame()
        assert list(df["path"]) == [str(r.path.resolve()) for r in runs]  # oldest first
        assert str(df["started_at"].dt.tz) == "UTC"
        for run, row in zip(runs, df.to_dict("records"), strict=True):
            k6 = _k6_summary(run)  # k6-summary.json: independent of the NDJSON recomputation
            assert row["p95_ms"] == pytest.approx(k6["http_req_duration"]["p(95)"], rel=1e-9)
            assert row["p50_ms"] == pytest.approx(k6["http_req_duration"]["med"], rel=1e-9)
            assert row["requests"] == k6["http_reqs"]["count"]
            assert row["error_rate"] == pytest.approx(k6["http_req_failed"]["value"])
            samples = pd.read_csv(run.samples_path)
            assert row["memory_peak_mb"] == pytest.approx(samples["memory_used_mb"].max())
            assert row["cpu_mean_pct"] == pytest.approx(samples["cpu_pct"].mean())
            assert row["preset"] == run.preset
            assert row["started_at"] == pd.Timestamp(run.manifest["started_at"])
        assert list(df["oom_kills"]) == [0, 1]
        assert list(df["exit_status"]) == ["ok", "oom_killed"]
        m = store.metrics_frame([results[0].run_id])
        p95 = m[(m.metric == "http_req_duration") & (m.stat == "p(95)")]["value"]
        assert p95.item() == pytest.approx(df.loc[0, "p95_ms"])
        # per-endpoint sub-metrics come from the raw NDJSON, checked against numpy
        health = m[(m.metric == "http_req_duration{name:/health}") & (m.stat == "p(95)")]
        pts = _points(runs[0], "/health")
        assert health["value"].item() == pytest.approx(np.percentile(pts, 95, method="linear"))
        stored = store.get_run(results[1].run_id)
        assert stored is not None and stored["manifest"]["vm"]["preset"] == "shared-cpu-1x:512mb"
        # the recommendation: its preset's cost must be the price table's figure
        rec = stored["recommendation"]
        assert rec["recommended_preset"] == stored["recommended_preset"] is not None
        assert stored["monthly_cost_usd"] == pytest.approx(
            monthly_cost(rec["recommended_preset"], 1, rec["region"], price_set=rec["price_set"])
        )
        # SLO verdicts: one row per SLO that applies; the health p95 is the measured p95
        slo = store.slo_frame([results[0].run_id]).set_index("name")
        assert {"pass", "warn", "alert", "critical", "no data"} >= set(slo["verdict"])
        health_p95 = slo.loc["health_p95"]
        assert health_p95["observed"] == pytest.approx(np.percentile(pts, 95, method="linear"))
        assert health_p95["threshold"] == 50.0
        assert health_p95["passed"] == (health_p95["observed"] < 50.0)
        assert df.loc[0, "slo_passed"] == bool(slo["passed"].dropna().all())


def _points(run: RunDir, name: str) -> np.ndarray:
    import gzip

    vals = []
    with gzip.open(run.path / "k6.ndjson.gz", "rt") as fh:
        for line in fh:
            d = json.loads(line)
            if (
                d["type"] == "Point"
                and d["metric"] == "http_req_duration"
                and d["data"]["tags"].get("name") == name
            ):
                vals.append(d["data"]["value"])
    return np.asarray(vals)


def test_round_trip_sqlite(tmp_path: Path, runs: list[RunDir]) -> None:
    _check_round_trip(f"sqlite:///{tmp_path / 'store.db'}", runs)


@pytest.mark.postgres
def test_round_trip_postgres(pg_url: str, runs: list[RunDir]) -> None:
    _check_round_trip(pg_url, runs)


@pytest.mark.postgres
def test_indexing_is_idempotent_on_postgres(
    pg_url: str, runs: list[RunDir], tmp_path: Path
) -> None:
    _check_idempotent(pg_url, runs, tmp_path)


def test_indexing_is_idempotent_on_sqlite(runs: list[RunDir], tmp_path: Path) -> None:
    _check_idempotent(f"sqlite:///{tmp_path / 'idem.db'}", runs, tmp_path)


def _check_idempotent(url: str, runs: list[RunDir], tmp_path: Path) -> None:
    with st.Store(url) as store:
        # recommend=False: the recommendation is checked in the round trip; it costs seconds
        first = store.index_run(runs[0].path, recommend=False)
        n_metrics = len(store.metrics_frame())
        again = store.index_run(runs[0].path, recommend=False)
        assert (first.created, again.created) == (True, False)
        assert again.run_id == first.run_id
        assert len(store.runs_frame()) == 1
        assert len(store.metrics_frame()) == n_metrics == first.metrics
        # a moved copy is the same run: the row follows it instead of duplicating
        moved = tmp_path / "elsewhere" / "copy"
        shutil.copytree(runs[0].path, moved)
        store.index_run(moved, recommend=False)
        df = store.runs_frame()
        assert len(df) == 1 and df.loc[0, "path"] == str(moved.resolve())
        # a changed run (re-recorded summary) updates in place
        mf = json.loads((moved / "manifest.json").read_text())
        mf["exit"]["status"] = "thresholds_failed"
        (moved / "manifest.json").write_text(json.dumps(mf))
        store.index_run(moved, recommend=False)
        assert store.runs_frame()["exit_status"].tolist() == ["thresholds_failed"]


def test_migrations_are_versioned_and_upgrade_in_place(tmp_path: Path, runs: list[RunDir]) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = st.Store(url, upgrade=False)
    assert old.revision() is None
    old.upgrade("0001")
    assert old.revision() == "0001"
    cols = {c["name"] for c in sa.inspect(old.engine).get_columns("perflib_runs")}
    assert "recommended_preset" not in cols and "p95_ms" in cols
    assert not sa.inspect(old.engine).has_table("perflib_slo_verdicts")
    old.close()
    with st.Store(url) as store:  # opening upgrades to head
        assert store.revision() == st.Store.head_revision() == "0002"
        assert sa.inspect(store.engine).has_table("perflib_slo_verdicts")
        store.index_run(runs[0].path, recommend=False)
        assert len(store.runs_frame()) == 1


def test_default_url_comes_from_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PERFLIB_DATABASE_URL", raising=False)
    assert st.StoreSettings().resolved_url() == f"sqlite:///{st.DEFAULT_DB_PATH}"
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("PERFLIB_DATABASE_URL", url)
    with st.open_store() as store:
        assert store.url == url
    assert (tmp_path / "env.db").exists()


def test_flag_regressions_needs_a_practical_slowdown(tmp_path: Path) -> None:
    t0 = datetime(2026, 9, 1, tzinfo=UTC)
    dirs = [
        make_run(tmp_path, "r1", started_at=t0, seed=11),
        make_run(tmp_path, "r2", started_at=t0 + timedelta(days=30), seed=12),
        make_run(tmp_path, "r3", started_at=t0 + timedelta(days=60), latency_scale=2.0, seed=13),
        make_run(tmp_path, "other", preset="shared-cpu-1x:512mb", started_at=t0 + timedelta(days=61), latency_scale=3.0, seed=14),
    ]  # fmt: skip
    with st.Store("sqlite://") as store:
        store.index_runs([d.path for d in dirs], recommend=False)
        flagged = st.flag_regressions(store.runs_frame())
    by_path = {
        Path(p).name: row
        for p, row in zip(flagged["path"], flagged.to_dict("records"), strict=True)
    }
    assert by_path["r1"]["baseline_run_id"] is None and not by_path["r1"]["regression"]
    assert not by_path["r2"]["regression"]
    assert by_path["r3"]["regression"]
    assert by_path["r3"]["ratio"] == pytest.approx(
        by_path["r3"]["p95_ms"] / by_path["r2"]["p95_ms"]
    )
    # the 512 MB run has no earlier 512 MB run to compare with: never flagged against 1 GB runs
    assert by_path["other"]["baseline_run_id"] is None and not by_path["other"]["regression"]


def _ns(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**{"run_dirs": [], "database_url": None, **kw})


def test_cli_store_verbs(
    tmp_path: Path,
    runs: list[RunDir],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # rich wraps the table to the terminal width
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli_store(_ns(action="upgrade", database_url=url)) == 0
    assert "revision 0002" in capsys.readouterr().out
    paths = [str(r.path) for r in runs]
    assert cli_store(_ns(action="index", run_dirs=paths, database_url=url)) == 0
    assert capsys.readouterr().out.count("indexed ") == 2
    assert cli_store(_ns(action="index", run_dirs=paths[:1], database_url=url)) == 0
    assert "updated " in capsys.readouterr().out
    assert cli_store(_ns(action="list", database_url=url)) == 0
    out = capsys.readouterr().out
    assert "2 runs" in out and "s-1x:512mb" in out and "oom_killed" in out


def test_cli_store_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    assert cli_main(["store", "index", str(tmp_path), "--database-url", url]) == 2
    assert capsys.readouterr().err.strip() == (
        f"perflib store: error: not a run directory (no manifest.json) ({tmp_path})"
    )
    assert cli_main(["store", "index", "--database-url", url]) == 2
    assert cli_main(["store", "list", "--database-url", "not a url"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("perflib store: error: ")
    assert (
        lines[1].startswith("perflib store: error: ")
        and "not a SQLAlchemy database URL" in lines[1]
    )


@pytest.mark.postgres
def test_password_in_url_is_never_printed(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # the server trusts local connections, so a planted password is accepted and ignored
    url = pg_url.replace("postgres@", "postgres:planted-pw-93@")
    assert cli_store(_ns(action="upgrade", database_url=url)) == 0
    assert cli_store(_ns(action="list", database_url=url)) == 0
    captured = capsys.readouterr()
    assert "planted-pw-93" not in captured.out + captured.err
    assert "***" in captured.out
