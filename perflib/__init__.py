"""perflib: a performance lab for the lead-enrichment API on Fly.io.

The public API notebooks use. Names are imported lazily (PEP 562) so that a command like
``perflib summarize`` does not pay for matplotlib or scipy at start-up.
"""

import importlib as _importlib
from typing import Any as _Any

__version__ = "0.1.0"

# public name -> defining module, in data-flow order: exactly the names the notebooks use
# (whatever module they import them from) and the docs cite as ``perflib.NAME``
# (tests/test_public_api.py keeps the two in step).
_EXPORTS: dict[str, str] = {
    # run
    "run_profile": "perflib.run.runner",
    # ingest
    "read_points": "perflib.ingest",
    "read_requests": "perflib.ingest",
    "read_metric_meta": "perflib.ingest",
    "summarize": "perflib.ingest",
    # statistics
    "percentile": "perflib.stats",
    # analysis
    "analyze_run": "perflib.analysis",
    "compare_runs": "perflib.analysis",
    "deploy_gate": "perflib.analysis",
    # sizing
    "capacity": "perflib.sizing",
    # charts
    "plot_run": "perflib.plots",
    "plot_latency_over_time": "perflib.plots",
    "plot_latency_distribution": "perflib.plots",
    "plot_throughput": "perflib.plots",
    "plot_memory": "perflib.plots",
    "plot_cpu": "perflib.plots",
    "plot_steps": "perflib.plots",
    "plot_comparison": "perflib.plots",
    "plot_trends": "perflib.plots",
    "plot_preset_comparison": "perflib.plots",
    # report helpers the notebooks call
    "resolve_run_dirs": "perflib.report",
    "record_runs": "perflib.report",
    "load_runs": "perflib.report",
    "run_label": "perflib.report",
    "runs_caption": "perflib.report",
    "run_overview": "perflib.report",
    "slo_findings": "perflib.report",
    "events_table": "perflib.report",
    "show": "perflib.report",
    "checks_table": "perflib.report",
    "size_runs": "perflib.report",
    "no_sizing_reason": "perflib.report",
    "style_verdicts": "perflib.report",
    # run directories
    "caveats": "perflib.rundir",
    # store
    "Store": "perflib.store",
    "runs_frame": "perflib.store",
    "flag_regressions": "perflib.store",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> _Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'perflib' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
