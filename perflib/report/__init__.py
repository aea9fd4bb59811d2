"""Reports: notebooks executed with papermill and rendered to HTML, and the helpers the notebooks call (``build``); secrets kept out of them (``secrets``)."""

from __future__ import annotations

from perflib.report.build import (
    NOTEBOOKS,
    NotebookResult,
    ReportInputError,
    ReportResult,
    build_report,
    checks_table,
    execute_notebook,
    go_no_go,
    load_runs,
    no_sizing_reason,
    overview_table,
    record_runs,
    render_html,
    resolve_run_dirs,
    run_label,
    runs_table,
    sample_run_dirs,
    size_runs,
    style_verdicts,
)
from perflib.report.tables import (
    events_table,
    run_overview,
    runs_caption,
    show,
    slo_findings,
)

__all__ = [
    "NOTEBOOKS",
    "NotebookResult",
    "ReportInputError",
    "ReportResult",
    "build_report",
    "checks_table",
    "events_table",
    "execute_notebook",
    "go_no_go",
    "load_runs",
    "no_sizing_reason",
    "overview_table",
    "record_runs",
    "render_html",
    "resolve_run_dirs",
    "run_label",
    "run_overview",
    "runs_caption",
    "runs_table",
    "sample_run_dirs",
    "show",
    "size_runs",
    "slo_findings",
    "style_verdicts",
]
