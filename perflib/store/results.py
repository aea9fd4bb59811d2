"""The results store: every run indexed in one SQL database, for trends across runs.

A run directory is the source of truth; the store is an index of it (manifest fields,
k6 summary statistics, resource figures, SLO verdicts, the right-sizing recommendation) so the
monthly review can query months of runs without re-reading raw k6 output. Indexing is
idempotent: a run's key comes from its manifest (``started_at`` + profile + preset), so
re-indexing the same directory — or a copy of it elsewhere — updates the row, never
duplicates it.

Any SQLAlchemy URL works (``PERFLIB_DATABASE_URL``); the default is a SQLite file
``perflib.db`` in the repository root (gitignored). The schema is versioned with Alembic
(``perflib/store/migrations``); :meth:`Store.upgrade` applies pending migrations and runs on
every open, so an old database is upgraded in place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from pydantic_settings import BaseSettings, SettingsConfigDict

from perflib import ingest as k6
from perflib.analysis import RunAnalysis, analyze_run
from perflib.errors import PerflibError
from perflib.fly.events import event_count, oom_count
from perflib.rundir import RunDir, jsonable, utc_timestamp
from perflib.sizing import SizingError, evidence_from_analysis, recommend
from perflib.stats import percentile
from perflib.tooling import REPO_ROOT

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_DB_PATH = REPO_ROOT / "perflib.db"

#: The headline figures copied onto the run row: (column, k6 metric, k6 stat).
HEADLINE_METRICS: tuple[tuple[str, str, str], ...] = (
    ("requests", "http_reqs", "count"),
    ("rps", "http_reqs", "rate"),
    ("error_rate", "http_req_failed", "rate"),
    ("checks_rate", "checks", "rate"),
    ("dropped_iterations", "dropped_iterations", "count"),
    ("p50_ms", "http_req_duration", "med"),
    ("p90_ms", "http_req_duration", "p(90)"),
    ("p95_ms", "http_req_duration", "p(95)"),
    ("p99_ms", "http_req_duration", "p(99)"),
    ("max_ms", "http_req_duration", "max"),
)


class StoreSettings(BaseSettings):
    """Where the store lives: ``PERFLIB_DATABASE_URL`` or the default SQLite file."""

    model_config = SettingsConfigDict(env_prefix="PERFLIB_", extra="ignore")

    database_url: str | None = None

    def resolved_url(self) -> str:
        return self.database_url or f"sqlite:///{DEFAULT_DB_PATH}"


class StoreError(PerflibError, RuntimeError):
    """The store cannot be opened or a run cannot be indexed (message says which and why)."""

    exit_code = 1


metadata = sa.MetaData()

runs_table = sa.Table(
    "perflib_runs",
    metadata,
    sa.Column("run_id", sa.String(200), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("profile", sa.String(100)),
    sa.Column("script", sa.Text),
    sa.Column("preset", sa.String(100)),
    sa.Column("cpu_kind", sa.String(50)),
    sa.Column("cpus", sa.Integer),
    sa.Column("memory_mb", sa.Integer),
    sa.Column("target_kind", sa.String(20)),
    sa.Column("base_url", sa.Text),
    sa.Column("upstreams", sa.String(50)),
    sa.Column("time_scale", sa.Float),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("duration_s", sa.Float),
    sa.Column("exit_status", sa.String(50)),
    sa.Column("exit_message", sa.Text),
    sa.Column("git_commit", sa.String(100)),
    sa.Column("k6_version", sa.String(50)),
    sa.Column("perflib_version", sa.String(50)),
    *(sa.Column(col, sa.Float) for col, _, _ in HEADLINE_METRICS),
    sa.Column("memory_peak_mb", sa.Float),
    sa.Column("memory_mean_mb", sa.Float),
    sa.Column("memory_limit_mb", sa.Float),
    sa.Column("cpu_mean_pct", sa.Float),
    sa.Column("cpu_p95_pct", sa.Float),
    sa.Column("oom_kills", sa.Integer),
    sa.Column("restarts", sa.Integer),
    sa.Column("manifest", sa.JSON),
    sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
    # revision 0002
    sa.Column("slo_passed", sa.Boolean),
    sa.Column("worst_verdict", sa.String(20)),
    sa.Column("recommended_preset", sa.String(100)),
    sa.Column("monthly_cost_usd", sa.Float),
    sa.Column("recommendation", sa.JSON),
)

metrics_table = sa.Table(
    "perflib_run_metrics",
    metadata,
    sa.Column("run_id", sa.String(200), primary_key=True),
    sa.Column("metric", sa.String(300), primary_key=True),
    sa.Column("stat", sa.String(50), primary_key=True),
    sa.Column("value", sa.Float),
)

slo_table = sa.Table(
    "perflib_slo_verdicts",
    metadata,
    sa.Column("run_id", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(300), primary_key=True),
    sa.Column("verdict", sa.String(20)),
    sa.Column("passed", sa.Boolean),
    sa.Column("observed", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("unit", sa.String(30)),
    sa.Column("detail", sa.Text),
)


# --------------------------------------------------------------------------- run -> rows


def _parse_ts(value: Any) -> datetime | None:
    ts = utc_timestamp(value)
    return None if ts is None else ts.to_pydatetime()


def run_key(run: RunDir) -> str:
    """The run's identity in the store: stable across re-indexing and moving the directory.

    ``run_id`` from the manifest when the runner wrote one; else ``started_at`` plus profile
    and preset (two runs cannot start in the same microsecond with the same profile and VM);
    else, for a manifest without a start time, the resolved directory path.
    """
    mf = run.manifest
    if mf.get("run_id"):
        return str(mf["run_id"])
    started = mf.get("started_at")
    if started:
        ts = _parse_ts(started)
        stamp = ts.strftime("%Y%m%dT%H%M%S.%fZ") if ts else str(started)
        return f"{stamp}-{mf.get('profile') or 'run'}-{run.preset or 'novm'}"
    return str(run.path.resolve())


def _finite(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _summary_metrics(run: RunDir) -> dict[str, dict[str, float]]:
    """``{metric: {stat: value}}`` in k6's names: :func:`perflib.ingest.summarize` of the raw
    NDJSON (docs/contracts.md shape), else k6's own ``k6-summary.json``."""
    if run.k6_outputs:
        return dict(k6.summarize(run.path)["metrics"])
    if run.summary_path.exists():
        return dict(k6.read_summary_export(run.summary_path))
    return {}


def _analyze(run: RunDir, slo_file: str | Path | None) -> tuple[RunAnalysis | None, list[str]]:
    """The run's analysis — the one every indexed figure below comes from — or why not."""
    try:
        return analyze_run(run, slos=slo_file), []
    except (OSError, ValueError, KeyError) as exc:  # a damaged run still gets its manifest
        return None, [f"not analysed ({type(exc).__name__}: {exc}): no SLO verdicts, no sizing"]


def _resource_figures(run: RunDir, a: RunAnalysis | None) -> dict[str, Any]:
    """Memory / CPU / OOM figures of the run, from its analysis (the OOM and restart counts
    are :func:`perflib.fly.oom_count`'s, as ``perflib analyze`` prints them)."""
    out: dict[str, Any] = {}
    s = a.samples if a is not None else (run.samples() if run.samples_path.exists() else None)
    if s is not None and len(s):
        mem, cpu = s["memory_used_mb"].dropna(), s["cpu_pct"].dropna()
        limit = s["memory_limit_mb"].dropna()
        out["memory_peak_mb"] = _finite(mem.max()) if len(mem) else None
        out["memory_mean_mb"] = _finite(mem.mean()) if len(mem) else None
        out["memory_limit_mb"] = _finite(limit.max()) if len(limit) else None
        out["cpu_mean_pct"] = _finite(cpu.mean()) if len(cpu) else None
        out["cpu_p95_pct"] = _finite(percentile(cpu, 95)) if len(cpu) else None
    events = a.memory.events if a is not None else run.events()
    out["oom_kills"] = oom_count(events)
    out["restarts"] = event_count(events, "restart")
    return out


def _slo_rows(a: RunAnalysis | None) -> tuple[list[dict[str, Any]], str | None, list[str]]:
    """The analysis' SLO verdicts as store rows + the worst one."""
    if a is None:
        return [], None, []
    rows = []
    for v in a.verdicts.to_dict("records"):
        verdict = str(v.get("verdict"))
        rows.append(
            {
                "name": str(v["id"]),
                "verdict": verdict,
                "passed": None if verdict == "no data" else verdict == "pass",
                "observed": _finite(v.get("measured")),
                "threshold": _finite(v.get("target_value")),
                "unit": None if v.get("unit") is None else str(v["unit"]),
                "detail": f"{v.get('target', '')}; {v.get('evidence', '')}".strip("; "),
            }
        )
    return rows, a.worst_verdict, list(a.warnings)


def _recommendation(a: RunAnalysis | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The recommender's answer for the analysed run, or why there is none."""
    if a is None:
        return None, []
    if not a.run.samples_path.exists():
        return None, ["no samples.csv; no recommendation"]
    try:
        rec = recommend([evidence_from_analysis(a)])
    except SizingError as exc:  # e.g. a smoke run too short to size from
        return None, [f"no recommendation: {exc}"]
    return jsonable(rec.to_dict()), []


@dataclass
class IndexedRun:
    """What :meth:`Store.index_run` recorded for one run (and what it had to leave out)."""

    run_id: str
    path: Path
    created: bool
    metrics: int
    slo_verdicts: int
    recommended_preset: str | None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------- store


class Store:
    """A results store at one SQLAlchemy URL; opening it upgrades the schema to head."""

    def __init__(self, url: str | None = None, *, upgrade: bool = True) -> None:
        self.url = url or StoreSettings().resolved_url()
        try:
            parsed = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError as exc:
            raise StoreError(f"not a SQLAlchemy database URL: {_safe_url(self.url)}") from exc
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
            # one shared connection, or each checkout would see a fresh empty database
            kwargs["poolclass"] = sa.pool.StaticPool
            kwargs["connect_args"] = {"check_same_thread": False}
        self.engine = sa.create_engine(parsed, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        if upgrade:
            self.upgrade()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    @property
    def safe_url(self) -> str:
        """The URL with any password masked: the only form that may be printed or logged."""
        return _safe_url(self.url)

    # -- schema ---------------------------------------------------------------------------

    def _alembic_config(self, connection: sa.Connection) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = connection
        return cfg

    def upgrade(self, revision: str = "head") -> str | None:
        """Apply pending migrations; returns the revision the database is at afterwards."""
        from alembic import command

        try:
            with self.engine.begin() as conn:
                command.upgrade(self._alembic_config(conn), revision)
        except sa.exc.OperationalError as exc:
            raise StoreError(
                f"cannot open the results store at {self.safe_url}: {exc.orig}"
            ) from exc
        return self.revision()

    def revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        from alembic.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @staticmethod
    def head_revision() -> str:
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        head = ScriptDirectory.from_config(cfg).get_current_head()
        assert head is not None
        return head

    # -- writing --------------------------------------------------------------------------

    def index_run(
        self,
        run_dir: str | Path | RunDir,
        *,
        slo_file: str | Path | None = None,
        recommend: bool = True,
    ) -> IndexedRun:
        """Index (or re-index) one run directory; one transaction, so a failure leaves no half."""
        run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
        mf = run.manifest
        rid = run_key(run)
        metrics = _summary_metrics(run)
        analysis, notes = _analyze(run, slo_file)
        verdicts, worst, slo_notes = _slo_rows(analysis)
        rec, rec_notes = _recommendation(analysis) if recommend else (None, [])
        notes += slo_notes + rec_notes
        vm = mf.get("vm") or {}
        target = mf.get("target") or {}
        versions = mf.get("versions") or {}
        exit_ = mf.get("exit") or {}
        started, ended = _parse_ts(mf.get("started_at")), _parse_ts(mf.get("ended_at"))
        row: dict[str, Any] = {
            "run_id": rid,
            "path": str(run.path.resolve()),
            "profile": mf.get("profile"),
            "script": mf.get("script"),
            "preset": vm.get("preset"),
            "cpu_kind": vm.get("cpu_kind"),
            "cpus": vm.get("cpus"),
            "memory_mb": vm.get("memory_mb"),
            "target_kind": target.get("kind"),
            "base_url": target.get("base_url"),
            "upstreams": mf.get("upstreams"),
            "time_scale": _finite(mf.get("time_scale")),
            "started_at": started,
            "ended_at": ended,
            "duration_s": (ended - started).total_seconds() if started and ended else None,
            "exit_status": exit_.get("status"),
            "exit_message": exit_.get("message"),
            "git_commit": versions.get("git_commit"),
            "k6_version": versions.get("k6"),
            "perflib_version": versions.get("perflib"),
            "manifest": jsonable(mf),
            "indexed_at": datetime.now(UTC),
            "slo_passed": (
                all(v["passed"] for v in verdicts if v["passed"] is not None) if verdicts else None
            ),
            "worst_verdict": worst,
            "recommended_preset": (rec or {}).get("recommended_preset"),
            "monthly_cost_usd": _finite((rec or {}).get("monthly_cost_usd")),
            "recommendation": rec,
        }
        for col, metric, stat in HEADLINE_METRICS:
            row[col] = _finite((metrics.get(metric) or {}).get(stat))
        row.update(_resource_figures(run, analysis))
        metric_rows = [
            {"run_id": rid, "metric": name, "stat": stat, "value": _finite(value)}
            for name, stats in metrics.items()
            for stat, value in (stats or {}).items()
            if not isinstance(value, bool | str | dict | list)
        ]
        with self.engine.begin() as conn:
            existed = (
                conn.execute(
                    sa.select(runs_table.c.run_id).where(runs_table.c.run_id == rid)
                ).first()
                is not None
            )
            conn.execute(_upsert(conn, runs_table, row, ["run_id"]))
            conn.execute(metrics_table.delete().where(metrics_table.c.run_id == rid))
            conn.execute(slo_table.delete().where(slo_table.c.run_id == rid))
            if metric_rows:
                conn.execute(metrics_table.insert(), metric_rows)
            if verdicts:
                # SLO ids are unique in a valid SLO file; first one wins if a file repeats one
                unique = {v["name"]: {"run_id": rid, **v} for v in reversed(verdicts)}
                conn.execute(slo_table.insert(), list(unique.values()))
        return IndexedRun(
            run_id=rid,
            path=run.path,
            created=not existed,
            metrics=len(metric_rows),
            slo_verdicts=len(verdicts),
            recommended_preset=row["recommended_preset"],
            notes=notes,
        )

    def index_runs(self, run_dirs: Iterable[str | Path], **kwargs: Any) -> list[IndexedRun]:
        return [self.index_run(p, **kwargs) for p in run_dirs]

    def delete_run(self, run_id: str) -> bool:
        with self.engine.begin() as conn:
            conn.execute(metrics_table.delete().where(metrics_table.c.run_id == run_id))
            conn.execute(slo_table.delete().where(slo_table.c.run_id == run_id))
            res = conn.execute(runs_table.delete().where(runs_table.c.run_id == run_id))
        return bool(res.rowcount)

    # -- reading --------------------------------------------------------------------------

    def runs_frame(
        self,
        *,
        profile: str | None = None,
        preset: str | None = None,
        since: datetime | str | None = None,
    ) -> pd.DataFrame:
        """One row per run, oldest first: manifest fields and headline figures.

        ``started_at``/``ended_at``/``indexed_at`` are tz-aware UTC; numbers are float.
        """
        q = sa.select(*(c for c in runs_table.c if c.name not in ("manifest", "recommendation")))
        if profile is not None:
            q = q.where(runs_table.c.profile == profile)
        if preset is not None:
            q = q.where(runs_table.c.preset == preset)
        if since is not None:
            q = q.where(runs_table.c.started_at >= _parse_ts(since))
        q = q.order_by(runs_table.c.started_at, runs_table.c.run_id)
        with self.engine.connect() as conn:
            df = pd.DataFrame(
                conn.execute(q).mappings().all(), columns=[c.name for c in q.selected_columns]
            )
        for col in ("started_at", "ended_at", "indexed_at"):
            df[col] = pd.to_datetime(df[col], utc=True)
        floats = [col for col, _, _ in HEADLINE_METRICS] + [
            "time_scale", "duration_s", "memory_peak_mb", "memory_mean_mb", "memory_limit_mb",
            "cpu_mean_pct", "cpu_p95_pct", "monthly_cost_usd",
        ]  # fmt: skip
        for col in floats:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        return df.reset_index(drop=True)

    def metrics_frame(self, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Long frame ``run_id, metric, stat, value`` of every stored k6 statistic."""
        q = sa.select(metrics_table)
        if run_ids is not None:
            q = q.where(metrics_table.c.run_id.in_(list(run_ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(metrics_table.c.run_id, metrics_table.c.metric)).all()
        return pd.DataFrame(rows, columns=["run_id", "metric", "stat", "value"])

    def slo_frame(self, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
        q = sa.select(slo_table)
        if run_ids is not None:
            q = q.where(slo_table.c.run_id.in_(list(run_ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(slo_table.c.run_id, slo_table.c.name)).all()
        return pd.DataFrame(rows, columns=[c.name for c in slo_table.c])

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(runs_table).where(runs_table.c.run_id == run_id))
                .mappings()
                .first()
            )
        return dict(row) if row else None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # foreign keys for ON DELETE CASCADE; a busy timeout so concurrent indexers wait, not fail
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _upsert(conn: sa.Connection, table: sa.Table, row: Mapping[str, Any], keys: list[str]) -> Any:
    """INSERT … ON CONFLICT DO UPDATE in the connection's dialect (SQLite and PostgreSQL)."""
    name = conn.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # any other backend: delete + insert inside the caller's transaction
        conn.execute(table.delete().where(*(table.c[k] == row[k] for k in keys)))
        return table.insert().values(**row)
    stmt = insert(table).values(**row)
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={k: stmt.excluded[k] for k in row if k not in keys}
    )


def _safe_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"


def open_store(url: str | None = None) -> Store:
    """The configured store (``PERFLIB_DATABASE_URL`` or the default SQLite file), upgraded."""
    return Store(url)


def runs_frame(url: str | None = None, **filters: Any) -> pd.DataFrame:
    """Every run in the store at ``url`` (default: the configured one), oldest first."""
    with Store(url) as store:
        return store.runs_frame(**filters)


# ------------------------------------------------------------------------- regressions


def flag_regressions(
    runs: pd.DataFrame,
    *,
    metric: str = "p95_ms",
    factor: float = 1.1,
    alpha: float = 0.05,
    compare: bool = True,
) -> pd.DataFrame:
    """Compare each run with the previous run of the same profile and preset.

    A run is flagged when its ``metric`` grew by more than ``factor`` (asv's default
    practical threshold, 10 %) *and* — when both run directories are still on disk and
    ``compare`` is true — :func:`perflib.analysis.compare_runs` finds the shift significant
    (bootstrap CI on Δp95 excluding 0 / Mann–Whitney p < ``alpha``). Treating the run as the
    unit and requiring both a practical and a statistical difference follows asv's
    ``compare`` (docs/analysis.md). Without raw data only the factor rule applies.

    Returns ``runs`` with ``baseline_run_id``, ``ratio``, ``p_value``, ``delta_p95_ms``,
    ``delta_ci_low``, ``delta_ci_high``, ``regression`` (bool) and ``evidence`` columns.
    """
    out = runs.sort_values("started_at", kind="stable").reset_index(drop=True).copy()
    for col in ("baseline_run_id", "evidence"):
        out[col] = pd.Series([None] * len(out), dtype="object")
    for col in ("ratio", "p_value", "delta_p95_ms", "delta_ci_low", "delta_ci_high"):
        out[col] = float("nan")
    out["regression"] = False
    if out.empty:
        return out
    keys = [out["profile"].fillna(""), out["preset"].fillna("")]
    for _, group in out.groupby(keys, sort=False):
        idx = list(group.index)
        for prev, cur in zip(idx, idx[1:], strict=False):
            base, new = out.at[prev, metric], out.at[cur, metric]
            out.at[cur, "baseline_run_id"] = out.at[prev, "run_id"]
            ratio = new / base if base and pd.notna(base) and pd.notna(new) else float("nan")
            out.at[cur, "ratio"] = ratio
            practical = bool(pd.notna(ratio) and ratio > factor)
            evidence = (
                f"{metric} ×{ratio:.2f} vs {out.at[prev, 'run_id']}"
                if pd.notna(ratio)
                else "no data"
            )
            significant: bool | None = None
            a, b = Path(str(out.at[prev, "path"])), Path(str(out.at[cur, "path"]))
            if (
                compare
                and practical
                and (a / "manifest.json").exists()
                and (b / "manifest.json").exists()
            ):
                try:
                    from perflib import analysis

                    cmp = analysis.compare_runs(RunDir.open(a), RunDir.open(b), factor=factor)
                    stats = _comparison_stats(cmp)
                except Exception as exc:  # noqa: BLE001 - fall back to the factor rule, say so
                    evidence += f"; comparison failed ({type(exc).__name__}: {exc})"
                else:
                    out.at[cur, "p_value"] = stats.get("p_value", float("nan"))
                    for k in ("delta_p95_ms", "delta_ci_low", "delta_ci_high"):
                        out.at[cur, k] = stats.get(k, float("nan"))
                    significant = stats.get("significant")
                    if stats.get("verdict"):
                        evidence += f"; {stats['verdict']}"
            flagged = practical if significant is None else practical and significant
            out.at[cur, "regression"] = flagged
            out.at[cur, "evidence"] = evidence
    return out


def _comparison_stats(cmp: Any) -> dict[str, Any]:
    """Δp95, its CI, the Mann–Whitney p and the verdict of a ``Comparison`` (all endpoints).

    ``compare_runs`` already requires CI-excludes-0 *and* the practical factor for "slower".
    """
    from perflib.analysis import ALL

    lat = cmp.latency
    row = lat[lat["name"] == ALL]
    if row.empty:
        return {}
    r = row.iloc[0]
    return {
        "delta_p95_ms": _finite(r["delta_ms"]),
        "delta_ci_low": _finite(r["ci_low"]),
        "delta_ci_high": _finite(r["ci_high"]),
        "p_value": _finite(r["mannwhitney_p"]),
        "significant": r["change"] == "slower",
        "verdict": str(r["verdict"]),
    }
