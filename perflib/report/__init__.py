"""Reports: notebooks executed with papermill and rendered to HTML (build); secrets kept out of them (secrets)."""

from __future__ import annotations

from perflib.report.build import (
    NOTEBOOKS,
    NotebookResult,
    ReportInputError,
    ReportResult,
    build_report,
    cli_report,
    cli_report_job,
    execute_notebook,
    load_runs,
    render_html,
    resolve_run_dirs,
    run_label,
    runs_table,
    sample_run_dirs,
)

__all__ = [
    "NOTEBOOKS",
    "NotebookResult",
    "ReportInputError",
    "ReportResult",
    "build_report",
    "cli_report",
    "cli_report_job",
    "execute_notebook",
    "load_runs",
    "render_html",
    "resolve_run_dirs",
    "run_label",
    "runs_table",
    "sample_run_dirs",
]
