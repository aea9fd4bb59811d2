# ---
# jupyter:
#   kernelspec:
#     display_name: perflib (.venv)
#     language: python
#     name: perflib
# ---

# %% [markdown]
# # Performance report
#
# How the lead-enrichment service behaves under the guide's load profiles, how much memory and CPU it needs, which Fly VM size is the cheapest that meets the targets, and what that costs. The detailed sections follow this summary: smoke test, load test, memory and CPU, right-sizing and cost, capacity trends.

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

from perflib import report as rp
from perflib.analysis import analyze_run
from perflib.rundir import caveats

warnings.filterwarnings("ignore", category=FutureWarning)
pd.set_option("display.precision", 1)
pd.set_option("display.max_colwidth", 120)

# %%
runs = rp.load_runs(run_dirs)
analyses = [analyze_run(r, slos=slo_file) for r in runs]
partial = caveats(runs)  # interrupted, killed or short runs: said before any figure
if partial:
    display(
        Markdown(
            "**Partial runs: some figures below do not cover the whole load profile.**\n\n"
            + "\n".join(f"- {c}" for c in partial)
        )
    )
rp.runs_table(runs)

# %% [markdown]
# ## At a glance

# %%
rp.style_verdicts(rp.overview_table(analyses)) if analyses else None

# %% [markdown]
# ## Deploy decision

# %%
smoke = [a for a in analyses if a.profile == "smoke"][-1:]
for a in smoke:
    go, reasons = rp.go_no_go(a)
    display(
        Markdown(
            f"**{'GO' if go else 'NO-GO'}** ({rp.run_label(a.run)})"
            + "".join(f"\n- {r}" for r in reasons)
        )
    )
if not smoke:
    display(Markdown("_No smoke run in this report._"))

# %% [markdown]
# ## VM size and cost

# %%
_, rec = rp.size_runs(runs, region=region, price_set=price_set)
if rec is not None:
    cost = f"${rec.monthly_cost_usd:,.2f}" if rec.monthly_cost_usd is not None else "n/a"
    display(
        Markdown(
            f"**Recommended: `{rec.recommended_preset}`** at {cost} per month "
            f"(confidence {rec.confidence})"
            + (
                f" — **from a partial run** ({', '.join(rec.partial_runs)}): re-run to confirm"
                if rec.partial
                else ""
            )
            + ".\n\n"
            + "\n".join(f"- {r}" for r in rec.reasons)
        )
    )
else:
    display(Markdown(f"_No sizing: {rp.no_sizing_reason(runs)}._"))

# %% [markdown]
# ## SLOs not met
#
# Every verdict other than *pass*, across the runs.

# %%
bad = [a.verdicts.assign(run=rp.run_label(a.run)) for a in analyses]
bad = pd.concat(bad, ignore_index=True) if bad else pd.DataFrame(columns=["verdict"])
bad = bad[~bad["verdict"].isin(["pass", "no data"])]
(
    rp.style_verdicts(bad[["run", "title", "target", "measured", "unit", "verdict", "evidence"]])
    if len(bad)
    else Markdown("_Every applicable SLO passed._")
)
