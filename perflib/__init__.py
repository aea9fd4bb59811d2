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
    # analysis exports
    # plots exports
    # sizing exports
    # store / report exports
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
