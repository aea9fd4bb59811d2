# ---
# jupyter:
#   kernelspec:
#     display_name: perflib (.venv)
#     language: python
#     name: perflib
# ---

# %% [markdown]
# # Capacity trends across runs
#
# Every run in the results store over time — the guide's monthly load-test review. A run is flagged as a regression when its p95 grew by more than 10 % over the previous run of the same profile and VM **and** the run comparison (bootstrap CI on Δp95, Mann–Whitney U) finds the shift significant.

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
from perflib.store import Store, flag_regressions

# use_store=False: a throwaway in-memory store holding just these runs (self-contained report)
store = Store() if use_store else Store("sqlite://")
if not use_store:
    store.index_runs(rp.resolve_run_dirs(run_dirs), slo_file=slo_file, recommend=False)
trend = flag_regressions(store.runs_frame())
display(Markdown(f"**{len(trend)} runs** in the store ({store.safe_url})."))
rp.show(
    trend[
        [
            "run_id",
            "profile",
            "preset",
            "started_at",
            "requests",
            "p95_ms",
            "error_rate",
            "memory_peak_mb",
            "worst_verdict",
            "exit_status",
        ]
    ]
)

# %% [markdown]
# ## p95 latency and memory peak over time

# %%
plots.plot_trends(trend)

# %% [markdown]
# ## Regressions

# %%
flagged = trend[trend["regression"]]
compared = int(trend["baseline_run_id"].notna().sum())
display(
    Markdown(
        f"{compared} of {len(trend)} runs had an earlier run of the same profile and VM to compare with."
    )
)
(
    rp.show(
        flagged[
            [
                "run_id",
                "baseline_run_id",
                "ratio",
                "delta_p95_ms",
                "delta_ci_low",
                "delta_ci_high",
                "p_value",
                "evidence",
            ]
        ]
    )
    if len(flagged)
    else Markdown("_No regression: no run is >10 % and significantly slower than its predecessor._")
)
