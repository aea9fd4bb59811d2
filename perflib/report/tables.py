"""Tables the report shows, built once and made readable: no index column, no NaN/NaT cells,
events as sentences rather than raw dicts, one row per SLO finding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from perflib.rundir import RunDir

#: Worst first, for ordering findings.
_SEVERITY_ORDER = {"critical": 0, "alert": 1, "warn": 2}


def show(df: pd.DataFrame, precision: int = 1) -> Any:
    """A DataFrame as the report shows it: index hidden, numbers rounded, missing as "–"."""
    if not isinstance(df, pd.DataFrame) or df.empty:
        return df
    clean = df.copy()
    for col in clean.columns:  # NaT / None / NaN → "–" (a Styler's na_rep misses NaT in objects)
        if clean[col].dtype == object or str(clean[col].dtype).startswith("datetime"):
            clean[col] = clean[col].map(_cell)
    return clean.style.hide(axis="index").format(precision=precision, na_rep="–")


def _cell(v: Any) -> Any:
    if v is None or (not isinstance(v, str | Mapping | list) and pd.isna(v)):
        return "–"
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d %H:%M:%S UTC")
    return v


def runs_caption(runs: Sequence[RunDir], what: str = "This section") -> str:
    """One line naming the runs a section uses (the run table itself is shown once, at the
    top of the report)."""
    if not runs:
        return f"_{what} has no runs._"
    names = ", ".join(f"{r.profile or '?'} @ {r.preset or 'no VM'} (`{r.name}`)" for r in runs)
    return f"_{what} uses: {names}._"


def run_overview(analyses: Sequence[Any]) -> pd.DataFrame:
    """THE run table: one row per analysed run — what was run, how it ended, the figures a
    reader scans first."""
    from perflib.analysis import ALL

    rows = []
    for a in analyses:
        mf = a.run.manifest
        allrow = a.summary[a.summary["name"] == ALL]
        r = allrow.iloc[0] if len(allrow) else None
        rows.append(
            {
                "run": a.run.name,
                "profile": a.profile,
                "preset": a.run.preset or "–",
                "started (UTC)": str(mf.get("started_at") or "")[:19].replace("T", " ") or "–",
                "time scale": mf.get("time_scale"),
                "exit": (mf.get("exit") or {}).get("status") or "–",
                "requests": int(r["requests"]) if r is not None else 0,
                "req/s": r["req_per_s"] if r is not None else None,
                "p95 (ms)": r["p95"] if r is not None else None,
                "errors (%)": r["error_rate_pct"] if r is not None else None,
                "memory peak (MB)": a.memory.peak_mb,
                "OOM kills": a.memory.oom_kills,
                "worst SLO verdict": a.worst_verdict,
            }
        )
    return pd.DataFrame(rows)


def slo_findings(analyses: Sequence[Any]) -> pd.DataFrame:
    """Every verdict other than pass / no data, one row per run and measured figure: SLOs
    that judge the same measurement (the scale-up trigger and the load threshold both read
    the p95 of all requests) share a row with their targets side by side."""
    cols = ["run", "SLO", "target", "measured", "unit", "verdict", "evidence"]
    rows: list[dict[str, Any]] = []
    for a in analyses:
        v = a.verdicts
        if not len(v):
            continue
        bad = v[~v["verdict"].isin(["pass", "no data"])]
        label = f"{a.profile or '?'} @ {a.run.preset or 'no VM'}"
        for (_, unit), grp in bad.groupby([bad["measured"].round(6), "unit"], sort=False):
            grp = grp.sort_values("verdict", key=lambda s: s.map(_SEVERITY_ORDER).fillna(9))
            rows.append(
                {
                    "run": label,
                    "SLO": " / ".join(dict.fromkeys(grp["title"])),
                    "target": " / ".join(dict.fromkeys(map(str, grp["target"]))),
                    "measured": float(grp["measured"].iloc[0]),
                    "unit": unit,
                    "verdict": str(grp["verdict"].iloc[0]),
                    "evidence": str(grp["evidence"].iloc[0]) if "evidence" in grp else "",
                }
            )
    out = pd.DataFrame(rows, columns=cols)
    if len(out):
        out = out.sort_values(
            ["verdict", "run"], key=lambda s: s.map(_SEVERITY_ORDER) if s.name == "verdict" else s
        ).reset_index(drop=True)
    return out


def _detail_text(detail: Any) -> str:
    if isinstance(detail, Mapping):
        parts = []
        for k, v in detail.items():
            if v is None or v == "":
                continue
            if isinstance(v, float):
                v = f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
            parts.append(f"{k.replace('_', ' ')} {v}")
        return ", ".join(parts) or "–"
    return "–" if detail is None or (isinstance(detail, float) and pd.isna(detail)) else str(detail)


_EVENT_WORDS = {
    "oom_killed": "OOM kill",
    "restart": "restart",
    "restart_exhausted": "restarts exhausted",
    "throttled": "CPU throttling",
    "service_exit": "service exit",
    "k6_exit": "k6 finished",
    "interrupted": "interrupted",
}


def events_table(analyses: Sequence[Any]) -> pd.DataFrame:
    """What happened to each run's VM, service and k6, as readable rows: when (seconds after
    k6 started and UTC), what, and the details as words (not the raw JSON object)."""
    cols = ["run", "t (s)", "time (UTC)", "event", "details", "source"]
    rows = []
    for a in analyses:
        ev = a.memory.events
        label = f"{a.profile or '?'} @ {a.run.preset or 'no VM'}"
        for e in ev.itertuples(index=False):
            kind = str(getattr(e, "type", ""))
            detail = getattr(e, "detail", None)
            word = _EVENT_WORDS.get(kind, kind.replace("_", " "))
            if kind == "throttled" and isinstance(detail, Mapping) and detail.get("state"):
                word += f" {detail['state']}s"
            t = getattr(e, "time", None)
            rows.append(
                {
                    "run": label,
                    "t (s)": getattr(e, "t_s", None),
                    "time (UTC)": t.strftime("%H:%M:%S") if isinstance(t, pd.Timestamp) else "–",
                    "event": word,
                    "details": _detail_text(detail),
                    "source": str(getattr(e, "source", "") or "–"),
                }
            )
    return pd.DataFrame(rows, columns=cols)
