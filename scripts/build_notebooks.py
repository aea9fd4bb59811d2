"""Generate the report notebooks in notebooks/ (run after editing; commit the .ipynb files).

Notebooks hold narrative, parameters and charts; every computation is a perflib call, so
reviewing a change to a notebook means reviewing this file. The generated files carry no
outputs and no execution counts (tests/test_notebooks.py enforces it), and are bound to the
project's kernel ``perflib`` (installed by ``make setup``).

    .venv/bin/python scripts/build_notebooks.py          # write notebooks/*.ipynb
    .venv/bin/python scripts/build_notebooks.py --check  # exit 1 if they are out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "notebooks"

PARAMETERS = """\
# Parameters: papermill -p NAME VALUE overrides them. Defaults: the recorded sample runs,
# offline, in seconds. Secrets (FLY_API_TOKEN, database passwords) are never parameters:
# they come from the environment.
run_dirs = []  # run directories to report on; an empty list means the sample runs in data/runs
base_url = None  # live mode: the deployed app to drive; None drives the local stack
presets = ["shared-cpu-1x:1024mb", "shared-cpu-1x:512mb"]  # VM presets to compare
time_scale = 0.2  # live mode: multiplies every stage duration of the k6 profiles
live = False  # True: record fresh runs with k6 first (minutes), then report on them
runs_dir = None  # live mode: where new run directories go; None means runs/ in the repo
slo_file = None  # SLO file; None means data/slo.toml, the targets of the guide
price_set = None  # Fly price set; None means the newest dated set in data/
region = "iad"  # Fly region the costs are for
use_store = False  # True: trends come from the results store (PERFLIB_DATABASE_URL)
"""

SETUP = """\
%matplotlib inline
import warnings

import pandas as pd
from IPython.display import Markdown, display

from perflib import plots
from perflib import report as rp
from perflib.analysis import ALL, analyze_run

warnings.filterwarnings("ignore", category=FutureWarning)
pd.set_option("display.precision", 1)
pd.set_option("display.max_colwidth", 120)
"""


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip())


def code(text: str, *tags: str) -> nbformat.NotebookNode:
    cell = new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def notebook(title: str, intro: str, *cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "perflib",
        "display_name": "perflib (.venv)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [md(f"# {title}\n\n{intro}"), code(PARAMETERS, "parameters"), code(SETUP), *cells]
    return nb


# ---------------------------------------------------------------------------- notebooks

SMOKE = notebook(
    "Smoke test: go / no-go",
    "One virtual user exercises every endpoint for a short while. If the smoke run is clean "
    "(k6 checks pass, no SLO at *alert* or *critical*, the run exited normally) the build is "
    "fit to deploy and to load-test; otherwise the reasons are listed below.",
    code("""
if live:
    run_dirs = rp.record_runs(
        [("smoke", presets[0])], base_url=base_url, time_scale=time_scale, out_dir=runs_dir
    )
runs = rp.load_runs(run_dirs, profile="smoke")
analyses = [analyze_run(r, slos=slo_file) for r in runs[-1:]]  # the latest smoke run
if not analyses:
    display(Markdown("**No smoke run among the run directories** — nothing to judge."))
rp.runs_table(runs)
"""),
    md("## Decision"),
    code("""
for a in analyses:
    go, reasons = rp.go_no_go(a)
    lines = [f"### {'✅ GO' if go else '⛔ NO-GO'} — {rp.run_label(a.run)}"]
    lines += [f"- {r}" for r in reasons] or ["- every check passed and the guide's smoke expectations are met"]
    display(Markdown("\\n".join(lines)))
"""),
    md("## k6 checks\n\nEach `check()` in `tests/smoke-test.js`, with how often it held."),
    code("""
for a in analyses:
    display(rp.checks_table(a.run))
"""),
    md(
        "## SLO verdicts\n\nEvery target of the performance guide (`data/slo.toml`) that "
        "applies to a smoke run, with the measured value and the evidence behind it."
    ),
    code("""
for a in analyses:
    display(rp.style_verdicts(a.verdicts[["title", "target", "measured", "unit", "verdict", "evidence"]]))
"""),
    md("## Latency per endpoint"),
    code("""
for a in analyses:
    display(a.summary)
    display(plots.plot_latency_distribution(a.requests, title=f"Latency — {rp.run_label(a.run)}"))
"""),
)

LOAD = notebook(
    "Load test: latency, throughput, errors",
    "The guide's load profile (ramp to 5, 10 and 20 virtual users) against the service. "
    "Percentiles are computed per time bucket from the raw k6 samples (never averaged "
    "across buckets), with k6's own interpolation; stages are shaded and the number of "
    "virtual users is drawn on the right axis.",
    code("""
if live:
    run_dirs = rp.record_runs(
        [("load", p) for p in presets], base_url=base_url, time_scale=time_scale, out_dir=runs_dir
    )
runs = rp.load_runs(run_dirs, profile=["load", "stress"])
analyses = [analyze_run(r, slos=slo_file) for r in runs]
if not analyses:
    display(Markdown("**No load or stress run among the run directories.**"))
rp.runs_table(runs)
"""),
    md("## Overview"),
    code("""
rp.style_verdicts(rp.overview_table(analyses)) if analyses else None
"""),
    md(
        "## Latency percentiles over time\n\nOne chart per run for all endpoints, then one per "
        "endpoint: where p95 leaves p50 behind is where queueing starts."
    ),
    code("""
for a in analyses:
    display(Markdown(f"### {rp.run_label(a.run)}"))
    names = [ALL] + sorted(set(a.latency_over_time["name"].astype(str)) - {ALL})
    for name in names:
        display(plots.plot_latency_over_time(
            a.latency_over_time, vus=a.vus, stages=a.stages, endpoint=name,
            title=f"{rp.run_label(a.run)} — {'all endpoints' if name == ALL else name}",
        ))
"""),
    md(
        "## Latency by stage\n\nPercentiles per load stage and endpoint, with the request count each rests on."
    ),
    code("""
for a in analyses:
    display(Markdown(f"### {rp.run_label(a.run)}"))
    display(a.latency_by_stage)
"""),
    md("## Throughput and errors"),
    code("""
from matplotlib.figure import Figure

for a in analyses:
    tp = a.throughput[a.throughput["name"] == ALL]
    if len(tp):
        fig = Figure(figsize=(10, 3.5), layout="constrained")
        ax = fig.subplots()
        ax.step(tp["t_s"], tp["req_per_s"], where="post", label="requests/s")
        ax.set(title=f"Throughput and errors — {rp.run_label(a.run)}",
               xlabel="time since k6 start (s)", ylabel="requests per second")
        ax2 = ax.twinx()
        ax2.step(tp["t_s"], tp["error_rate_pct"], where="post", color="#d93025", lw=1, label="errors")
        ax2.set_ylabel("errors (% of requests)")
        ax2.set_ylim(bottom=0)
        fig.legend(loc="outside right upper", fontsize=8)
        display(fig)
    display(a.errors.head(10) if len(a.errors) else Markdown("_No failed requests._"))
"""),
    md(
        "## Saturation\n\nk6 drops — never queues — iterations it has no free virtual user "
        "for, so a saturated run's percentiles miss exactly the slowest moments (coordinated "
        "omission). Such a run is flagged here and should not be used to size the VM."
    ),
    code("""
pd.DataFrame([{"run": rp.run_label(a.run), "saturated": a.saturation.saturated,
               "dropped iterations": a.saturation.dropped_iterations,
               "evidence": a.saturation.evidence} for a in analyses])
"""),
    md(
        "## Step attribution\n\nThe service logs `Step N: … (ms)` for each of its six steps; "
        "this shows which step makes the slowest requests slow (the guide's *Slow Requests* "
        "checklist, automated)."
    ),
    code("""
for a in analyses:
    display(Markdown(f"### {rp.run_label(a.run)}\\n\\n{a.step_attribution.advice}"))
    if len(a.step_attribution.per_step):
        display(plots.plot_steps(a.step_attribution, title=f"Steps — {rp.run_label(a.run)}"))
"""),
)

MEMORY = notebook(
    "Memory and CPU",
    "How much memory and CPU the service uses under load, against the emulated VM's limit "
    "and the guide's thresholds (idle < 150 MB, under load < 500 MB, peak < 700 MB, alert "
    "above 800 MB sustained; CPU average < 50 %, sustained > 70 % means dedicated CPU). "
    "MB are MiB, as Fly's `memory_mb`.",
    code("""
runs = [r for r in rp.load_runs(run_dirs) if r.profile != "smoke"]
analyses = [analyze_run(r, slos=slo_file) for r in runs]
rp.runs_table(runs)
"""),
    md("## Summary"),
    code("""
pd.DataFrame([{
    "run": rp.run_label(a.run), "idle (MB)": a.memory.idle_mb, "under load (MB)": a.memory.load_mb,
    "peak (MB)": a.memory.peak_mb, "limit (MB)": a.memory.limit_mb,
    "OOM kills": a.memory.oom_kills, "restarts": a.memory.restarts,
    "CPU avg (%)": a.cpu.avg_pct, "CPU p95 (%)": a.cpu.p95_pct,
    "throttled (s)": a.cpu.throttled_s, "dedicated CPU advised": a.cpu.dedicated_cpu_advised,
} for a in analyses])
"""),
    md("## Memory over time\n\nThe black line is the VM limit; OOM kills and restarts are marked."),
    code("""
for a in analyses:
    display(plots.plot_memory(a.memory.timeline, limit_mb=a.memory.limit_mb, events=a.memory.events,
                              stages=a.stages, title=f"Memory — {rp.run_label(a.run)}"))
    if len(a.memory.time_above):
        display(a.memory.time_above)
"""),
    md("## OOM kills and restarts"),
    code("""
events = [a.memory.events.assign(run=rp.run_label(a.run)) for a in analyses if len(a.memory.events)]
pd.concat(events, ignore_index=True) if events else Markdown("_No OOM kill or restart in these runs._")
"""),
    md(
        "## Leak estimate\n\nThe memory slope during steady load by the Theil–Sen estimator "
        "(Theil 1950, Sen 1968) with its 95 % confidence interval; a leak is suspected only "
        "when the whole interval lies above the SLO file's threshold. Short runs give wide "
        "intervals: a soak run is the real test."
    ),
    code("""
pd.DataFrame([{"run": rp.run_label(a.run),
               "slope (MB/min)": a.memory.leak.slope_mb_per_min if a.memory.leak else None,
               "suspected": a.memory.leak.suspected if a.memory.leak else None,
               "evidence": a.memory.leak.evidence if a.memory.leak else "too few steady samples"}
              for a in analyses])
"""),
    md(
        "## CPU and throttling\n\nPercent of one vCPU; the lower panel is the share of time the shared-CPU quota throttled the service."
    ),
    code("""
for a in analyses:
    display(plots.plot_cpu(a.cpu.timeline, stages=a.stages, title=f"CPU — {rp.run_label(a.run)}"))
"""),
)

SIZING = notebook(
    "Right-sizing and cost: 512 MB or 1 GB?",
    "The same load profile at the `shared-cpu-1x:1024mb` and `shared-cpu-1x:512mb` emulated "
    "VMs. The guide's rule: 512 MB is safe when the load-test peak stays below 400 MB, with a "
    "30 % buffer over the measured peak; an OOM kill rules a size out. Costs come from the "
    "dated Fly price table in `data/`.",
    code("""
import matplotlib.pyplot as plt

from perflib.plots.sizing import plot_preset_comparison

load_runs = rp.load_runs(run_dirs, profile="load")
comparison, rec = rp.size_runs(load_runs, region=region, price_set=price_set)
if rec is None:
    display(Markdown("**No load run among the run directories** — nothing to size from."))
rp.runs_table(load_runs)
"""),
    md("## Side by side"),
    code("""
comparison.table if comparison is not None else None
"""),
    md("## Recommendation"),
    code("""
if rec is not None:
    d = rec.monthly_savings_usd
    saving = ("" if not d else f", saving ${d:,.2f} per month against {rec.current_preset}" if d > 0
              else f", ${-d:,.2f} per month more than {rec.current_preset}")
    cost = f"${rec.monthly_cost_usd:,.2f}" if rec.monthly_cost_usd is not None else "n/a"
    lines = [f"### Recommended: `{rec.recommended_preset}` — {cost} per month{saving}",
             f"Confidence: **{rec.confidence}** (price set {rec.price_set}, region {rec.region})", ""]
    lines += [f"- {r}" for r in rec.reasons]
    display(Markdown("\\n".join(lines)))
"""),
    md("## Cost and headroom per preset"),
    code("""
if comparison is not None:
    fig = plot_preset_comparison(comparison)
    display(fig)
    plt.close(fig)  # drawn with pyplot: closed so the inline backend does not show it twice
"""),
    md(
        "## Latency at the smaller size\n\nΔp95 against the largest preset with a bootstrap "
        "confidence interval and a Mann–Whitney test; a change is reported only when the "
        "interval excludes zero *and* the shift exceeds the 10 % practical threshold."
    ),
    code("""
if comparison is not None:
    for label, res in comparison.latency.items():
        if res.get("available") and res.get("object") is not None:
            display(Markdown("\\n".join(f"- {v}" for v in res["verdicts"])))
            display(plots.plot_comparison(res["object"], title=f"{comparison.baseline} vs {label}"))
        else:
            display(Markdown(f"_{label}: {res.get('reason', 'no comparison')}_"))
"""),
    md(
        "## Capacity\n\nFrom a stress run (open model, rising arrival rate): the highest "
        "hold stage whose requests met every SLO with no dropped iterations, and what a "
        "million requests cost at that rate. Requests are assigned to the stage they "
        "started in."
    ),
    code("""
from perflib import sizing

stress = rp.load_runs(run_dirs, profile="stress")
for r in stress:
    cap = sizing.capacity(r, region=region, price_set=price_set,
                          recommended=rec.recommended_preset if rec is not None else None)
    per_m = f"${cap.cost_per_million_usd:,.3f}" if cap.cost_per_million_usd is not None else "n/a"
    display(Markdown(
        f"**{rp.run_label(r)}**: {cap.max_sustained_rps:g} req/s within every SLO"
        f" ({cap.max_sustained_stage or 'no stage'}); first breach: "
        f"{cap.first_breach_stage or 'none'} ({cap.first_breach_reason or '-'}); {per_m} per million requests"))
    display(cap.stages)
if not stress:
    display(Markdown("_No stress run among the run directories._"))
"""),
    md(
        "## Connection pool\n\nThe guide: under 10 requests/min use 5 connections, 10–50 use 10, above 50 use 20."
    ),
    code("""
pd.DataFrame([vars(rec.pool)]) if rec is not None and rec.pool is not None else None
"""),
    md("## What to monitor next"),
    code("""
if rec is not None:
    display(Markdown("\\n".join(f"- {s}" for s in rec.next_steps) or "_Nothing further._"))
"""),
)

TRENDS = notebook(
    "Capacity trends across runs",
    "Every run in the results store over time — the guide's monthly load-test review. A run "
    "is flagged as a regression when its p95 grew by more than 10 % over the previous run "
    "of the same profile and VM **and** the run comparison (bootstrap CI on Δp95, "
    "Mann–Whitney U) finds the shift significant.",
    code("""
from perflib.store import Store, flag_regressions

# use_store=False: a throwaway in-memory store holding just these runs (self-contained report)
store = Store() if use_store else Store("sqlite://")
if not use_store:
    store.index_runs(rp.resolve_run_dirs(run_dirs), slo_file=slo_file, recommend=False)
trend = flag_regressions(store.runs_frame())
display(Markdown(f"**{len(trend)} runs** in the store ({store.safe_url})."))
trend[["run_id", "profile", "preset", "started_at", "requests", "p95_ms", "error_rate",
       "memory_peak_mb", "worst_verdict", "exit_status"]]
"""),
    md("## p95 latency and memory peak over time"),
    code("""
from matplotlib.figure import Figure

fig = Figure(figsize=(10, 6), layout="constrained")
ax1, ax2 = fig.subplots(2, 1, sharex=True)
for (profile, preset), g in trend.groupby(["profile", "preset"], dropna=False):
    label = f"{profile} @ {preset}"
    ax1.plot(g["started_at"], g["p95_ms"], marker="o", label=label)
    ax2.plot(g["started_at"], g["memory_peak_mb"], marker="o", label=label)
    bad = g[g["regression"]]
    ax1.scatter(bad["started_at"], bad["p95_ms"], s=160, facecolors="none", edgecolors="#d93025", lw=2)
ax1.set_ylabel("p95 latency (ms)")
ax2.set_ylabel("memory peak (MB)")
ax2.set_xlabel("run start (UTC)")
ax1.set_title("Runs over time (circled: regression)")
ax1.legend(fontsize=8)
fig
"""),
    md("## Regressions"),
    code("""
flagged = trend[trend["regression"]]
compared = int(trend["baseline_run_id"].notna().sum())
display(Markdown(f"{compared} of {len(trend)} runs had an earlier run of the same profile and VM to compare with."))
(flagged[["run_id", "baseline_run_id", "ratio", "delta_p95_ms", "delta_ci_low", "delta_ci_high",
          "p_value", "evidence"]]
 if len(flagged) else Markdown("_No regression: no run is >10 % and significantly slower than its predecessor._"))
"""),
)

REPORT = notebook(
    "Performance report",
    "How the lead-enrichment service behaves under the guide's load profiles, how much "
    "memory and CPU it needs, which Fly VM size is the cheapest that meets the targets, and "
    "what that costs. The detailed sections follow this summary: smoke test, load test, "
    "memory and CPU, right-sizing and cost, capacity trends.",
    code("""
runs = rp.load_runs(run_dirs)
analyses = [analyze_run(r, slos=slo_file) for r in runs]
rp.runs_table(runs)
"""),
    md("## At a glance"),
    code("""
rp.style_verdicts(rp.overview_table(analyses)) if analyses else None
"""),
    md("## Deploy decision"),
    code("""
smoke = [a for a in analyses if a.profile == "smoke"][-1:]
for a in smoke:
    go, reasons = rp.go_no_go(a)
    display(Markdown(f"**{'✅ GO' if go else '⛔ NO-GO'}** ({rp.run_label(a.run)})"
                     + "".join(f"\\n- {r}" for r in reasons)))
if not smoke:
    display(Markdown("_No smoke run in this report._"))
"""),
    md("## VM size and cost"),
    code("""
_, rec = rp.size_runs(runs, region=region, price_set=price_set)
if rec is not None:
    cost = f"${rec.monthly_cost_usd:,.2f}" if rec.monthly_cost_usd is not None else "n/a"
    display(Markdown(f"**Recommended: `{rec.recommended_preset}`** at {cost} per month "
                     f"(confidence {rec.confidence}).\\n\\n" + "\\n".join(f"- {r}" for r in rec.reasons)))
else:
    display(Markdown("_No load run in this report: no sizing._"))
"""),
    md("## SLOs not met\n\nEvery verdict other than *pass*, across the runs."),
    code("""
bad = [a.verdicts.assign(run=rp.run_label(a.run)) for a in analyses]
bad = pd.concat(bad, ignore_index=True) if bad else pd.DataFrame(columns=["verdict"])
bad = bad[~bad["verdict"].isin(["pass", "no data"])]
(rp.style_verdicts(bad[["run", "title", "target", "measured", "unit", "verdict", "evidence"]])
 if len(bad) else Markdown("_Every applicable SLO passed._"))
"""),
)

NOTEBOOKS = {
    "00-report": REPORT,
    "01-smoke-test": SMOKE,
    "02-load-test": LOAD,
    "03-memory-cpu": MEMORY,
    "04-right-sizing-cost": SIZING,
    "05-capacity-trends": TRENDS,
}


def render(nb: nbformat.NotebookNode) -> str:
    # stable cell ids so regenerating an unchanged notebook is a no-op in git
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if notebooks/ is out of date")
    args = ap.parse_args(argv)
    stale = []
    for name, nb in NOTEBOOKS.items():
        path = OUT / f"{name}.ipynb"
        text = render(nb)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path.relative_to(ROOT))
    if stale:
        print(f"out of date: {', '.join(stale)} (run scripts/build_notebooks.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
