"""The service's per-step timings (``Step N: ... (123 ms)`` lines in service.log) and which step
the slowest requests wait on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from perflib.analysis.latency import (
    _stats,
)
from perflib.fly.events import split_log_line
from perflib.stats import (
    percentile,
)

#: The guide's "Slow Requests" troubleshooting, per service step.
STEP_ADVICE: dict[int, str] = {
    0: "in-process dedup guard: look for lock contention in the service",
    1: "C2S fetch slow: check C2S status",
    2: "Diretrix slow: contact Diretrix support",
    3: "Work API slow: check rate limits",
    4: "message formatting (no I/O): profile the service's CPU time",
    5: "database slow: check Neon metrics / the connection pool size",
    6: "C2S message send slow: check C2S status",
}


#: Service steps that wait on an upstream (service.pipeline: 1 C2S fetch, 2 Diretrix, 3 Work
#: API, 6 C2S send); a bigger VM does not make them faster.
UPSTREAM_STEPS = (1, 2, 3, 6)


# --------------------------------------------------------------------------- service steps

_STEP = re.compile(
    r"Step\s+(?P<step>\d+)\s*:\s*(?P<what>.*?)\s*\(\s*(?P<ms>\d+(?:\.\d+)?)\s*ms\s*\)",
    re.IGNORECASE,
)


_REQ_ID = re.compile(
    r"\b(?:request_id|req_id|rid|request|req|lead_id|lead)\s*[=:]\s*[\"']?(?P<id>[\w.:-]+)",
    re.IGNORECASE,
)


_PAREN_LEAD = re.compile(r"\(lead\s+(?P<id>[\w.:-]+)\)", re.IGNORECASE)


# a bracketed id standing alone (not Fly's "app[<machine id>]", which names the VM)
_BRACKET_ID = re.compile(
    r"(?<![\w\]])\[(?:req(?:uest)?[ =:-]?)?(?P<id>[0-9a-f]{6,}|[\w-]{8,})\]", re.IGNORECASE
)


def parse_step_log(source: str | Path) -> pd.DataFrame:
    """The service's ``Step N: <what> (<ms> ms)`` lines (a path or the log text).

    Lines may carry a timestamp / level / logger prefix; the request they belong to is taken
    from a ``request_id=``/``req=``/``lead_id=``/``lead=`` field or a ``[<hex id>]`` tag when
    present (NA otherwise). Columns: ``time`` (NaT without a leading ISO timestamp),
    ``step`` (int), ``what``, ``ms``, ``request``, ``line_no``. Malformed lines are skipped.
    """
    if isinstance(source, Path) or (
        isinstance(source, str)
        and "\n" not in source
        and len(source) < 4096
        and Path(source).is_file()
    ):
        text = Path(source).read_text(encoding="utf-8", errors="replace")
    else:
        text = str(source)
    rows = []
    for no, raw in enumerate(text.splitlines(), start=1):
        if "tep" not in raw and "TEP" not in raw:  # cheap pre-filter for big logs
            continue
        line, when, _, _ = split_log_line(raw)
        m = _STEP.search(line)
        if not m:
            continue
        rest = line[: m.start()] + " " + line[m.end() :]
        rid = (
            _REQ_ID.search(rest)
            or _PAREN_LEAD.search(rest)
            or _REQ_ID.search(m.group("what"))
            or _BRACKET_ID.search(rest)
        )
        what = m.group("what").strip().rstrip(".:")
        rows.append(
            (
                when,
                int(m.group("step")),
                what,
                float(m.group("ms")),
                rid.group("id") if rid else None,
                no,
            )
        )
    df = pd.DataFrame(rows, columns=["time", "step", "what", "ms", "request", "line_no"])
    df["time"] = pd.to_datetime(df["time"], utc=True)
    df["step"] = df["step"].astype("int64")
    df["request"] = df["request"].astype("string")
    return df


@dataclass
class StepAttribution:
    """Which service step makes enrichment slow (the guide's "Slow Requests", automated)."""

    per_step: pd.DataFrame  # step, what, count, p50, p95, p99, mean, max, share_*_pct, advice
    dominant_step: int | None
    dominant_share_pct: float | None
    tail_threshold_ms: float | None  # p95 of the per-request total
    tail_requests: int
    requests: int
    method: str

    @property
    def advice(self) -> str:
        if self.dominant_step is None:
            return "no Step timings in service.log"
        return (
            f"Step {self.dominant_step} dominates the slowest requests "
            f"({self.dominant_share_pct:.0f} % of their excess time): "
            f"{STEP_ADVICE.get(self.dominant_step, 'see the service log')}"
        )


def step_attribution(steps: pd.DataFrame, *, tail_pct: float = 95.0) -> StepAttribution:
    """Per-step latency distributions and the step that makes the slowest requests slow.

    With request ids in the log, a request's total is the sum of its steps and the *tail* is
    the requests whose total is at or above the ``tail_pct`` percentile of totals. Per step:

    * ``share_tail_pct`` — its summed time in the tail over the tail's summed total (what the
      slow requests spend their time on);
    * ``excess_tail_pct`` — its share of the tail's *excess*: Σ over tail requests of
      (step time − that step's median over all requests), negatives counted as 0. This is
      what made them slow rather than what is always big, so the dominant step is the one
      with the largest excess (a step that is always 300 ms does not dominate a tail caused
      by a 20 ms step jumping to 300 ms).

    Without ids the tail cannot be formed; the excess is approximated per step by
    p95 − p50 (and ``share_tail_pct`` by the share of per-step p95s), said in ``method``.
    """
    cols = [
        "step",
        "what",
        "count",
        "p50",
        "p95",
        "p99",
        "mean",
        "max",
        "share_all_pct",
        "share_tail_pct",
        "excess_tail_pct",
        "advice",
    ]
    if len(steps) == 0:
        return StepAttribution(pd.DataFrame(columns=cols), None, None, None, 0, 0, "no data")
    rows = []
    for step, grp in steps.groupby("step", sort=True):
        stats = _stats(grp["ms"].to_numpy(), (50, 95, 99))
        rows.append(
            {
                "step": int(step),
                "what": grp["what"].mode().iloc[0],
                **stats,
                "advice": STEP_ADVICE.get(int(step), ""),
            }
        )
    per = pd.DataFrame(rows)
    with_id = steps[steps["request"].notna()]
    # ids that repeat a step many times name something else (a VM, a worker), not a request
    per_request = with_id.groupby(["request", "step"]).size().max() if len(with_id) else 0
    if len(with_id) >= 0.5 * len(steps) and per_request <= 3:
        wide = with_id.pivot_table(
            index="request", columns="step", values="ms", aggfunc="sum", fill_value=0.0
        )
        total = wide.sum(axis=1)
        thr = percentile(total, tail_pct)
        tail = wide[total >= thr]
        excess = (tail - wide.median()).sum().clip(lower=0.0)
        per["share_tail_pct"] = per["step"].map(100.0 * tail.sum() / tail.to_numpy().sum())
        per["share_all_pct"] = per["step"].map(100.0 * wide.sum() / wide.to_numpy().sum())
        per["excess_tail_pct"] = per["step"].map(
            100.0 * excess / excess.sum() if excess.sum() > 0 else excess * 0.0
        )
        method = (
            f"per request (ids in the log): each step's share of the excess over its "
            f"median in the {len(tail)} requests with total >= p{tail_pct:g} "
            f"({thr:.0f} ms)"
        )
        n_req, n_tail = len(wide), len(tail)
    else:
        thr = None
        spread = (per["p95"] - per["p50"]).clip(lower=0.0)
        per["share_tail_pct"] = 100.0 * per["p95"] / per["p95"].sum()
        weight = per["mean"] * per["count"]
        per["share_all_pct"] = 100.0 * weight / weight.sum()
        per["excess_tail_pct"] = 100.0 * spread / spread.sum() if spread.sum() > 0 else 0.0
        method = (
            "approximate (no request ids in the log): each step's p95 - p50 over the sum of them"
        )
        n_req, n_tail = int(per["count"].max()), 0
    for c in ("share_tail_pct", "share_all_pct", "excess_tail_pct"):
        per[c] = per[c].astype("float64")
    top = per.loc[per["excess_tail_pct"].idxmax()]
    return StepAttribution(
        per[cols], int(top["step"]), float(top["excess_tail_pct"]), thr, n_tail, n_req, method
    )
