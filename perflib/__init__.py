"""perflib: a performance lab for the lead-enrichment API on Fly.io.

The public API notebooks use. Names are imported lazily (PEP 562) so that a command like
``perflib summarize`` does not pay for matplotlib or scipy at start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> defining module, in data-flow order.
_EXPORTS: dict[str, str] = {
    # run directories
    "RunDir": "perflib.rundir",
    "read_samples": "perflib.rundir",
    "read_events": "perflib.rundir",
    # profiles / vm / runner exports
    "LocalStack": "perflib.stack",
    "PROFILES": "perflib.profiles",
    "get_profile": "perflib.profiles",
    "VmEmulator": "perflib.vm",
    "EmulationSettings": "perflib.vm",
    "run_profile": "perflib.runner",
    "RunResult": "perflib.runner",
    "LocalSampler": "perflib.samplers",
    # samplers exports
    "FlySampler": "perflib.samplers_remote",
    "ProcessSampler": "perflib.samplers_remote",
    "PrometheusSampler": "perflib.samplers_remote",
    "remote_samplers": "perflib.samplers_remote",
    "PrometheusClient": "perflib.prometheus",
    "PrometheusServer": "perflib.prometheus",
    "start_for_stack": "perflib.prometheus",
    "MachinesClient": "perflib.fly",
    "machine_events": "perflib.fly",
    "parse_log_lines": "perflib.fly",
    # k6 ingest exports
    "read_points": "perflib.k6",
    "read_requests": "perflib.k6",
    "read_metric_meta": "perflib.k6",
    "summarize": "perflib.k6",
    "read_summary_export": "perflib.k6",
    "percentile": "perflib.k6",
    "K6InputError": "perflib.k6",
    # analysis exports
    "analyze_run": "perflib.analysis",
    "RunAnalysis": "perflib.analysis",
    "latency_over_time": "perflib.analysis",
    "latency_by_stage": "perflib.analysis",
    "throughput": "perflib.analysis",
    "throughput_summary": "perflib.analysis",
    "error_breakdown": "perflib.analysis",
    "error_rate": "perflib.analysis",
    "saturation": "perflib.analysis",
    "memory_summary": "perflib.analysis",
    "cpu_summary": "perflib.analysis",
    "leak_estimate": "perflib.analysis",
    "spans_above": "perflib.analysis",
    "resource_events": "perflib.analysis",
    "parse_oom_lines": "perflib.analysis",
    "parse_step_log": "perflib.analysis",
    "step_attribution": "perflib.analysis",
    "slo_verdicts": "perflib.analysis",
    "compare_runs": "perflib.analysis",
    "Comparison": "perflib.analysis",
    "load_slos": "perflib.slo",
    "SloFile": "perflib.slo",
    # plots exports
    "plot_latency_over_time": "perflib.plots",
    "plot_latency_distribution": "perflib.plots",
    "plot_throughput": "perflib.plots",
    "plot_memory": "perflib.plots",
    "plot_cpu": "perflib.plots",
    "plot_steps": "perflib.plots",
    "plot_comparison": "perflib.plots",
    "plot_run": "perflib.plots",
    "plot_trends": "perflib.plots",
    # sizing exports
    "load_prices": "perflib.pricing",
    "monthly_cost": "perflib.pricing",
    "cost_breakdown": "perflib.pricing",
    "machine_price": "perflib.pricing",
    "parse_preset": "perflib.pricing",
    "Preset": "perflib.pricing",
    "recommend": "perflib.sizing",
    "Recommendation": "perflib.sizing",
    "compare_presets": "perflib.sizing",
    "PresetComparison": "perflib.sizing",
    "pool_size": "perflib.sizing",
    "capacity": "perflib.sizing",
    "second_opinion": "perflib.sizing",
    "plot_preset_comparison": "perflib.plots_sizing",
    # store / report exports
    "Store": "perflib.store",
    "open_store": "perflib.store",
    "runs_frame": "perflib.store",
    "flag_regressions": "perflib.store",
    "build_report": "perflib.report",
    "execute_notebook": "perflib.report",
    "render_html": "perflib.report",
    "load_runs": "perflib.report",
    "sample_run_dirs": "perflib.report",
    "redact_notebook": "perflib.secrets",
    "secret_values": "perflib.secrets",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'perflib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
