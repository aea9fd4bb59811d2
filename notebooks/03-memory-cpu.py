# ---
# jupyter:
#   kernelspec:
#     display_name: perflib (.venv)
#     language: python
#     name: perflib
# ---

# %% [markdown]
# # Memory and CPU
#
# How much memory and CPU the service uses under load, against the emulated VM's limit and the guide's thresholds (idle < 150 MB, under load < 500 MB, peak < 700 MB, alert above 800 MB sustained; CPU average < 50 %, sustained > 70 % means dedicated CPU). MB are MiB, as Fly's `memory_mb`.

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
runs = [r for r in rp.load_runs(run_dirs) if r.profile != "smoke"]
analyses = [analyze_run(r, slos=slo_file) for r in runs]
Markdown(rp.runs_caption(runs))

# %% [markdown]
# ## Summary
#
# Memory as the VM sees it (`MemTotal − MemAvailable`); in the emulated VM that is the service's processes plus the assumed guest overhead named in the run's manifest (`vm.emulation.guest_overhead_mb`).

# %%
rp.show(
    pd.DataFrame(
        [
            {
                "run": rp.run_label(a.run),
                "idle (MB)": a.memory.idle_mb,
                "under load (MB)": a.memory.load_mb,
                "peak (MB)": a.memory.peak_mb,
                "limit (MB)": a.memory.limit_mb,
                "OOM kills": a.memory.oom_kills,
                "restarts": a.memory.restarts,
                "CPU avg (%)": a.cpu.avg_pct,
                "CPU p95 (%)": a.cpu.p95_pct,
                "throttled (s)": a.cpu.throttled_s,
                "dedicated CPU advised": a.cpu.dedicated_cpu_advised,
            }
            for a in analyses
        ]
    )
)

# %% [markdown]
# ## Memory over time
#
# The black line is the VM limit; OOM kills and restarts are marked.

# %%
for a in analyses:
    display(
        plots.plot_memory(
            a.memory.timeline,
            limit_mb=a.memory.limit_mb,
            events=a.memory.events,
            stages=a.stages,
            title=f"Memory — {rp.run_label(a.run)}",
        )
    )
    if len(a.memory.time_above):
        display(rp.show(a.memory.time_above))

# %% [markdown]
# ## Events
#
# What happened to the VM, the service and k6 (OOM kills, restarts, CPU throttling, exits), in seconds after k6 started.

# %%
events = rp.events_table(analyses)
rp.show(events) if len(events) else Markdown("_No event recorded in these runs._")

# %% [markdown]
# ## Leak estimate
#
# The memory slope by the Theil–Sen estimator (Theil 1950, Sen 1968) with its 95 % confidence interval, over a stage whose load is flat (`hold …`) and at least the SLO file's `leak_min_window_s` long: under a ramp memory follows the load, so the guide's load profile (which ramps throughout) cannot test for a leak and says so. A leak is suspected only when the whole interval lies above the SLO file's threshold; the soak profile (`perflib run soak`) is the real test.

# %%
rp.show(
    pd.DataFrame(
        [
            {
                "run": rp.run_label(a.run),
                "verdict": a.memory.leak_verdict,
                "slope (MB/min)": a.memory.leak.slope_mb_per_min if a.memory.leak else None,
                "evidence": a.memory.leak_note,
            }
            for a in analyses
        ]
    )
)

# %% [markdown]
# ## CPU and throttling
#
# Percent of one vCPU, with the preset's guaranteed share (6.25 % per shared vCPU) and the run's mean under load. The lower panel replays Fly's shared-CPU burst balance over the CPU samples (the model the VM emulation enforces) and shades the stretches the quota throttled the service. A mean above the baseline spends the balance: the table gives how long a fresh Machine's (5 s) and a full (500 s) balance last at the measured load.

# %%
rp.show(
    pd.DataFrame(
        [
            {
                "run": rp.run_label(a.run),
                "finding": a.throttling.statement if a.throttling else None,
            }
            for a in analyses
        ]
    )
)

# %%
for a in analyses:
    display(
        plots.plot_cpu(
            a.cpu.timeline,
            stages=a.stages,
            throttling=a.throttling,
            title=f"CPU — {rp.run_label(a.run)}",
        )
    )
