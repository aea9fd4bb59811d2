# ---
# jupyter:
#   kernelspec:
#     display_name: perflib (.venv)
#     language: python
#     name: perflib
# ---

# %% [markdown]
# # Load test: latency, throughput, errors
#
# The guide's load profile (ramp to 5, 10 and 20 virtual users) against the service. Percentiles are computed per time bucket from the raw k6 samples (never averaged across buckets), with k6's own interpolation; stages are shaded and the number of virtual users is drawn on the right axis.

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
from perflib.analysis import analyze_run

warnings.filterwarnings("ignore", category=FutureWarning)
pd.set_option("display.precision", 1)
pd.set_option("display.max_colwidth", 120)

# %%
if live:
    run_dirs = rp.record_runs(
        [("load", p) for p in presets], base_url=base_url, time_scale=time_scale, out_dir=runs_dir
    )
runs = rp.load_runs(run_dirs, profile=["load", "stress"])
analyses = [analyze_run(r, slos=slo_file) for r in runs]
if not analyses:
    display(Markdown("**No load or stress run among the run directories.**"))
Markdown(rp.runs_caption(runs))

# %% [markdown]
# ## Latency percentiles over time
#
# One panel per endpoint (never a percentile pooled over `/health` and enrichment, which moves with the mix of requests): where p95 leaves p50 behind is where queueing starts.

# %%
for a in analyses:
    display(
        plots.plot_latency_over_time(
            a.latency_over_time,
            vus=a.vus,
            stages=a.stages,
            title=f"Latency percentiles per endpoint — {rp.run_label(a.run)}",
        )
    )

# %% [markdown]
# ## Latency by stage
#
# Percentiles per load stage and endpoint, with the request count each rests on.

# %%
for a in analyses:
    display(Markdown(f"### {rp.run_label(a.run)}"))
    display(rp.show(a.latency_by_stage))

# %% [markdown]
# ## Throughput and errors

# %%
for a in analyses:
    if len(a.throughput):
        display(
            plots.plot_throughput(
                a.throughput,
                vus=a.vus,
                stages=a.stages,
                title=f"Throughput and errors — {rp.run_label(a.run)}",
            )
        )
    display(rp.show(a.errors.head(10)) if len(a.errors) else Markdown("_No failed requests._"))

# %% [markdown]
# ## Saturation
#
# k6 drops — never queues — iterations it has no free virtual user for, so a saturated run's percentiles miss exactly the slowest moments (coordinated omission). Such a run is flagged here and should not be used to size the VM.

# %%
rp.show(
    pd.DataFrame(
        [
            {
                "run": rp.run_label(a.run),
                "saturated": a.saturation.saturated,
                "dropped iterations": a.saturation.dropped_iterations,
                "evidence": a.saturation.evidence,
            }
            for a in analyses
        ]
    )
)

# %% [markdown]
# ## Step attribution
#
# The service logs `Step N: … (ms)` for each of its six steps; this shows which step makes the slowest requests slow (the guide's *Slow Requests* checklist, automated).

# %%
for a in analyses:
    display(Markdown(f"### {rp.run_label(a.run)}\n\n{a.step_attribution.advice}"))
    if len(a.step_attribution.per_step):
        display(plots.plot_steps(a.step_attribution, title=f"Steps — {rp.run_label(a.run)}"))
