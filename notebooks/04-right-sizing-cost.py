# ---
# jupyter:
#   kernelspec:
#     display_name: perflib (.venv)
#     language: python
#     name: perflib
# ---

# %% [markdown]
# # Right-sizing and cost: 512 MB or 1 GB?
#
# The same load profile at the `shared-cpu-1x:1024mb` and `shared-cpu-1x:512mb` emulated VMs. The guide's rule: 512 MB is safe when the load-test peak stays below 400 MB, with a 30 % buffer over the measured peak; an OOM kill rules a size out. Costs come from the dated Fly price table in `data/`.

# %% tags=["parameters"]
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

# %%
# %matplotlib inline
import warnings

import pandas as pd
from IPython.display import Markdown, display

from perflib import plots
from perflib import report as rp

warnings.filterwarnings("ignore", category=FutureWarning)
pd.set_option("display.precision", 1)
pd.set_option("display.max_colwidth", 120)

# %%
from perflib.plots.sizing import plot_preset_comparison

load_runs = rp.load_runs(run_dirs, profile="load")
comparison, rec = rp.size_runs(load_runs, region=region, price_set=price_set)
if rec is None:
    display(Markdown(f"**No sizing** — {rp.no_sizing_reason(load_runs)}."))
Markdown(rp.runs_caption(load_runs))

# %% [markdown]
# ## Side by side
#
# Memory as the VM sees it: in the emulated VM, the service's processes plus the assumed guest overhead named in each run's manifest (`vm.emulation.guest_overhead_mb`); the decision at the top of the report states the figure.

# %%
if comparison is not None:
    display(rp.show(comparison.table))

# %% [markdown]
# ## The guide's rules, one by one
#
# The cheapest size every rule allows, and each rule with the figures it follows from. The decision at the top of the report is the cheapest *tested* preset that passes; a size the rules allow but nobody ran is only worth testing.

# %%
if rec is not None:
    d = rec.monthly_savings_usd
    saving = (
        ""
        if not d
        else f", saving ${d:,.2f} per month against {rec.current_preset}"
        if d > 0
        else f", ${-d:,.2f} per month more than {rec.current_preset}"
    )
    cost = f"${rec.monthly_cost_usd:,.2f}" if rec.monthly_cost_usd is not None else "n/a"
    partial = f" — FROM A PARTIAL RUN ({', '.join(rec.partial_runs)})" if rec.partial else ""
    tested = "" if rec.recommended_tested else " — not tested: worth testing next"
    lines = [
        f"### Cheapest size the rules allow: `{rec.recommended_preset}` — {cost} per month"
        f"{saving}{tested}{partial}",
        *[f"**Warning:** {w}" for w in rec.warnings],  # partial-run caveats first
        f"Confidence: **{rec.confidence}** (price set {rec.price_set}, region {rec.region})",
        "",
    ]
    lines += [f"- {r}" for r in rec.reasons]
    display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Cost and headroom per preset

# %%
if comparison is not None:
    display(plot_preset_comparison(comparison))

# %% [markdown]
# ## Latency at the smaller size
#
# Δp95 against the largest preset, judged by equivalence testing (two one-sided tests, Schuirmann 1987): *unchanged* only when the 90 % bootstrap interval lies inside ±10 % of the baseline p95 (the SLO file's `equivalence_margin_pct`), *slower*/*faster* when it lies wholly beyond, otherwise *inconclusive* with how many more requests would decide. The Mann–Whitney p is kept as a second opinion.

# %%
if comparison is not None:
    for label, res in comparison.latency.items():
        if res.get("available") and res.get("object") is not None:
            display(Markdown("\n".join(f"- {v}" for v in res["verdicts"])))
            display(plots.plot_comparison(res["object"], title=f"{comparison.baseline} vs {label}"))
        else:
            display(Markdown(f"_{label}: {res.get('reason', 'no comparison')}_"))

# %% [markdown]
# ## Capacity
#
# From a stress run (open model, rising arrival rate): the highest hold stage whose requests met every SLO with no dropped iterations, and what a million requests cost at that rate. Requests are assigned to the stage they started in.

# %%
from perflib import sizing

stress = rp.load_runs(run_dirs, profile="stress")
for r in stress:
    cap = sizing.capacity(
        r,
        region=region,
        price_set=price_set,
        recommended=rec.recommended_preset if rec is not None else None,
    )
    per_m = f"${cap.cost_per_million_usd:,.3f}" if cap.cost_per_million_usd is not None else "n/a"
    display(
        Markdown(
            f"**{rp.run_label(r)}**: {cap.max_sustained_rps:g} req/s within every SLO"
            f" ({cap.max_sustained_stage or 'no stage'}); first breach: "
            f"{cap.first_breach_stage or 'none'} ({cap.first_breach_reason or '-'}); {per_m} per million requests"
        )
    )
    display(rp.show(cap.stages))
if not stress:
    display(Markdown("_No stress run among the run directories._"))

# %% [markdown]
# ## Connection pool
#
# The guide: under 10 requests/min use 5 connections, 10–50 use 10, above 50 use 20.

# %%
rp.show(pd.DataFrame([vars(rec.pool)])) if rec is not None and rec.pool is not None else None

# %% [markdown]
# ## What to monitor next

# %%
if rec is not None:
    display(Markdown("\n".join(f"- {s}" for s in rec.next_steps) or "_Nothing further._"))
