# ---
# jupyter:
#   kernelspec:
#     display_name: perflib (.venv)
#     language: python
#     name: perflib
# ---

# %% [markdown]
# # Smoke test: go / no-go
#
# One virtual user exercises every endpoint for a short while. If the smoke run is clean (k6 checks pass, no SLO at *alert* or *critical*, the run exited normally) the build is fit to deploy and to load-test; otherwise the reasons are listed below.

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
from perflib.analysis import analyze_run, deploy_gate

warnings.filterwarnings("ignore", category=FutureWarning)
pd.set_option("display.precision", 1)
pd.set_option("display.max_colwidth", 120)

# %%
if live:
    run_dirs = rp.record_runs(
        [("smoke", presets[0])], base_url=base_url, time_scale=time_scale, out_dir=runs_dir
    )
runs = rp.load_runs(run_dirs, profile="smoke")
analyses = [analyze_run(r, slos=slo_file) for r in runs[-1:]]  # the latest smoke run
if not analyses:
    display(Markdown("**No smoke run among the run directories** — nothing to judge."))
Markdown(rp.runs_caption(runs))

# %% [markdown]
# ## Deploy gate

# %%
for a in analyses:
    gate = deploy_gate(a)
    lines = [f"**{'GO' if gate.go else 'NO-GO'}** ({rp.run_label(a.run)})"]
    if gate.below_floor and gate.floor is not None:
        lines.append(
            f"- red only because the guide's threshold (p95 < {gate.threshold_ms:,.0f} ms) is "
            f"below the upstream floor: p95 {gate.floor.floor_ms:,.0f} ms with the service's "
            "own work at 0 ms (the report's deploy gate says how it is measured)"
        )
    lines += [f"- {r}" for r in gate.blocking + gate.notes]
    display(Markdown("\n".join(lines)))

# %% [markdown]
# ## k6 checks
#
# Each `check()` in `tests/smoke-test.js`, with how often it held.

# %%
for a in analyses:
    display(rp.show(rp.checks_table(a.run)))

# %% [markdown]
# ## SLO verdicts
#
# Every target of the performance guide (`data/slo.toml`) that applies to a smoke run, with the measured value and the evidence behind it.

# %%
for a in analyses:
    display(
        rp.style_verdicts(
            a.verdicts[["title", "target", "measured", "unit", "verdict", "evidence"]]
        )
    )

# %% [markdown]
# ## Latency per endpoint

# %%
for a in analyses:
    display(rp.show(a.summary))
    display(plots.plot_latency_distribution(a.requests, title=f"Latency — {rp.run_label(a.run)}"))
