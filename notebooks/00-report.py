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
# The answer first: which Fly VM size the runs support, at what cost. Then the deploy gate (smoke test), the runs, and the targets they missed. The detailed sections follow: smoke test, load test, memory and CPU, right-sizing and cost, capacity trends.

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
from perflib.analysis import analyze_run, deploy_gate
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

# %% [markdown]
# ## Decision: which VM size
#
# One row per preset a load run was made at: the memory the guide's 30 % buffer leaves usable against the measured peak (a peak cut off by an OOM kill is only a lower bound), OOM kills, the p95 change against the largest tested size, mean CPU against the 6.25 % of a vCPU a shared CPU is guaranteed, and the monthly cost. The headline is the cheapest *tested* preset that passes; sizes nobody ran are only worth testing.

# %%
_, rec = rp.size_runs(runs, region=region, price_set=price_set)
decision = rec.decision if rec is not None else None
if decision is not None and decision.tested:
    display(rp.show(decision.table()))
    lines = [f"**{decision.sentence}**"]
    lines += [f"- Worth testing next: {n}" for n in decision.next_lines()]
    lines += [f"- {note}" for note in (decision.cpu_note, decision.memory_note) if note]
    display(Markdown("\n".join(lines)))
else:
    why = rp.no_sizing_reason(runs) if rec is None else "no load run with a VM preset"
    display(Markdown(f"_No sizing decision: {why}._"))

# %% [markdown]
# ## Deploy gate (smoke test)
#
# The guide runs a smoke test after every deployment: p95 of all requests under 3 s, errors under 5 %, `/health` always answering.

# %%
smoke = [a for a in analyses if a.profile == "smoke"][-1:]
for a in smoke:
    gate = deploy_gate(a)
    lines = [f"**{gate.headline}**"]
    if not gate.below_floor:
        lines += [f"- {b}" for b in gate.blocking]
    lines += [f"- {n}" for n in gate.notes]
    display(Markdown("\n".join(lines)))
if not smoke:
    display(Markdown("_No smoke run in this report._"))

# %% [markdown]
# ## Runs

# %%
rp.show(rp.run_overview(analyses)) if analyses else None

# %% [markdown]
# ## Targets missed
#
# Every SLO verdict other than *pass*, one row per run and measured figure (SLOs that judge the same figure share a row).

# %%
bad = rp.slo_findings(analyses)
rp.style_verdicts(bad) if len(bad) else Markdown("_Every applicable SLO passed._")
