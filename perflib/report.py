"""Reports: the notebooks executed with papermill and rendered into one HTML file.

``perflib report [RUN_DIR...]`` executes every notebook in ``notebooks/`` on the given runs
(default: the recorded sample runs in ``data/runs``) into ``reports/<UTC timestamp>/``, in
the project's named kernel ``perflib`` with a per-cell timeout, then renders one
``report.html`` with code hidden and charts embedded as data URIs, so the file can be mailed
or archived on its own. Executed notebooks are redacted and scanned for secrets
(:mod:`perflib.secrets`) before anything else reads them.

``perflib report-job`` is ``make report``: local stack → smoke → load at 1 GB and 512 MB
emulated VMs → report on those runs.

Exit codes: 0 ok; 1 a notebook failed (the partial notebook is kept; the error names the
cell) or a run failed; 2 bad input (no such run directory, unknown kernel, secret parameter).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perflib import secrets
from perflib.rundir import RunDir
from perflib.tooling import REPO_ROOT

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
SAMPLE_RUNS_DIR = REPO_ROOT / "data" / "runs"
REPORTS_DIR = REPO_ROOT / "reports"
KERNEL_NAME = "perflib"
#: Report order: the summary first, then the detail notebooks.
NOTEBOOKS: tuple[str, ...] = (
    "00-report",
    "01-smoke-test",
    "02-load-test",
    "03-memory-cpu",
    "04-right-sizing-cost",
    "05-capacity-trends",
)
#: Presets ``make report`` compares (DESIGN.md: the 512 MB vs 1 GB question).
JOB_PRESETS: tuple[str, ...] = ("shared-cpu-1x:1024mb", "shared-cpu-1x:512mb")

log = logging.getLogger(__name__)


class ReportInputError(ValueError):
    """Bad input to a report: message says which argument and why (exit code 2)."""


# ------------------------------------------------------------------ helpers for notebooks


def sample_run_dirs() -> list[Path]:
    """The recorded sample runs shipped in ``data/runs`` (oldest first by name)."""
    if not SAMPLE_RUNS_DIR.is_dir():
        return []
    return sorted(p for p in SAMPLE_RUNS_DIR.iterdir() if (p / "manifest.json").is_file())


def resolve_run_dirs(run_dirs: Iterable[str | Path] | None = None) -> list[Path]:
    """Run directories as absolute paths; none given → the sample runs.

    Raises ReportInputError naming every path that is not a run directory, so a typo is
    reported before minutes of notebook execution, not halfway through.
    """
    given = [Path(p).expanduser() for p in (run_dirs or [])]
    paths = given or sample_run_dirs()
    if not paths:
        raise ReportInputError(
            f"no run directories given and no sample runs in {SAMPLE_RUNS_DIR} "
            "(record them with scripts/record_sample_runs.py)"
        )
    bad = [str(p) for p in paths if not (p / "manifest.json").is_file()]
    if bad:
        raise ReportInputError(f"not a run directory (no manifest.json): {', '.join(bad)}")
    return [p.resolve() for p in paths]


def load_runs(
    run_dirs: Iterable[str | Path] | None = None,
    *,
    profile: str | Sequence[str] | None = None,
) -> list[RunDir]:
    """Open run directories (default: the sample runs), optionally only some profiles.

    Sorted by ``started_at`` so every notebook lists runs in the same order.
    """
    runs = [RunDir.open(p) for p in resolve_run_dirs(run_dirs)]
    if profile is not None:
        wanted = {profile} if isinstance(profile, str) else set(profile)
        runs = [r for r in runs if r.profile in wanted]
    return sorted(runs, key=lambda r: (str(r.manifest.get("started_at") or ""), r.name))


def run_label(run: RunDir) -> str:
    """Short label for tables and legends: ``load @ shared-cpu-1x:512mb``."""
    return f"{run.profile or '?'} @ {run.preset or 'no VM'}"


def runs_table(runs: Sequence[RunDir]) -> Any:
    """One row per run: what a reader needs to know which runs a report is about."""
    import pandas as pd

    rows = []
    for r in runs:
        mf = r.manifest
        rows.append(
            {
                "run": r.name,
                "profile": r.profile,
                "preset": r.preset,
                "target": (mf.get("target") or {}).get("kind"),
                "started (UTC)": str(mf.get("started_at", ""))[:19].replace("T", " "),
                "time scale": mf.get("time_scale"),
                "exit": (mf.get("exit") or {}).get("status"),
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ execution


@dataclass
class NotebookResult:
    name: str
    output: Path
    ok: bool
    error: str | None = None
    cell_index: int | None = None


@dataclass
class ReportResult:
    out_dir: Path
    html: Path | None
    notebooks: list[NotebookResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(n.ok for n in self.notebooks)


def default_parameters(
    run_dirs: Sequence[Path],
    *,
    slo_file: str | None = None,
    price_set: str | None = None,
    use_store: bool = False,
) -> dict[str, Any]:
    """The parameters every notebook takes (each ignores what it does not need)."""
    return {
        "run_dirs": [str(p) for p in run_dirs],
        "slo_file": slo_file,
        "price_set": price_set,
        "use_store": use_store,
    }


def _check_kernel(kernel_name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel as exc:
        raise ReportInputError(
            f"Jupyter kernel {kernel_name!r} is not installed: run `make setup` "
            f"(it runs `python -m ipykernel install --sys-prefix --name {kernel_name}`)"
        ) from exc


def execute_notebook(
    source: Path,
    output: Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    timeout: int = 600,
    kernel_name: str = KERNEL_NAME,
    cwd: Path | None = None,
    secret_values: Sequence[str] | None = None,
) -> NotebookResult:
    """Execute one notebook with papermill; redact it; never raise for a failing cell.

    Secret-named parameters are refused (SecretParameterError) before anything is written.
    A failing cell leaves the partially executed notebook at ``output`` (papermill saves it
    before raising) and a result naming the cell.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    params = dict(parameters or {})
    secrets.check_parameters(params)
    values = list(secrets.secret_values() if secret_values is None else secret_values)
    output.parent.mkdir(parents=True, exist_ok=True)
    result = NotebookResult(name=source.stem, output=output, ok=True)
    try:
        with _redacted_logs(values):
            pm.execute_notebook(
                str(source),
                str(output),
                parameters=params,
                kernel_name=kernel_name,
                cwd=str(cwd or source.parent),
                progress_bar=False,
                log_output=False,  # cell output goes to the notebook only, never to our logs
                request_save_on_cell_execute=True,
                start_timeout=120,
                execution_timeout=timeout,
            )
    except PapermillExecutionError as exc:
        result.ok = False
        result.cell_index = exc.cell_index
        result.error = secrets.redact_text(
            f"cell {exc.cell_index} (0-based; execution count {exc.exec_count}) raised "
            f"{exc.ename}: {exc.evalue}",
            values,
        )
    except Exception as exc:  # noqa: BLE001 - kernel died, timeout: keep going, say what
        result.ok = False
        result.error = secrets.redact_text(f"{type(exc).__name__}: {exc}", values)
    if output.exists():
        secrets.redact_file(output, values)
    return result


#: Loggers that see kernel messages (papermill/nbclient log message content at DEBUG).
_KERNEL_LOGGERS = ("papermill", "nbclient", "jupyter_client", "traitlets")


@contextmanager
def _redacted_logs(values: Sequence[str]) -> Iterator[None]:
    """While a notebook runs: kernel-message loggers at INFO at most, every record redacted.

    papermill's client logs each kernel message's content at DEBUG — with the secrets a
    cell printed — so a DEBUG-level root logger would copy them into our logs.
    """
    filt = secrets.RedactingFilter(values)
    saved: list[tuple[logging.Logger, int]] = []
    handlers = list(logging.getLogger().handlers)
    for name in _KERNEL_LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level))
        if lg.getEffectiveLevel() < logging.INFO:
            lg.setLevel(logging.INFO)
        lg.addFilter(filt)
    for h in handlers:
        h.addFilter(filt)
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)
            lg.removeFilter(filt)
        for h in handlers:
            h.removeFilter(filt)


def render_html(
    notebooks: Sequence[Path],
    html_path: Path,
    *,
    title: str = "perflib report",
    show_code: bool = False,
) -> Path:
    """Concatenate executed notebooks into one HTML file (images inline as data URIs)."""
    import nbformat
    from nbconvert import HTMLExporter

    merged = nbformat.v4.new_notebook()
    merged.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": "perflib",
        "language": "python",
    }
    merged.metadata["language_info"] = {"name": "python"}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            tags = cell.get("metadata", {}).get("tags", [])
            if "parameters" in tags or "injected-parameters" in tags:
                continue  # parameters are shown in the report's own table, not as code
            merged.cells.append(cell)
    exporter = HTMLExporter(
        exclude_input=not show_code,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    body, _ = exporter.from_notebook_node(merged, resources={"metadata": {"name": title}})
    html_path.write_text(body, encoding="utf-8")
    return html_path


def build_report(
    run_dirs: Sequence[str | Path] | None = None,
    out_dir: Path | None = None,
    *,
    slo_file: str | None = None,
    price_set: str | None = None,
    timeout: int = 600,
    show_code: bool = False,
    notebooks: Sequence[str] = NOTEBOOKS,
    kernel_name: str = KERNEL_NAME,
    index: bool = True,
    extra_parameters: Mapping[str, Any] | None = None,
    console: Any = None,
) -> ReportResult:
    """Execute ``notebooks`` on the runs into ``out_dir`` and render ``report.html``.

    The runs are indexed in the configured results store first (so the trends notebook sees
    them); a store that cannot be opened is reported and skipped, not fatal.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    paths = resolve_run_dirs(run_dirs)
    if slo_file is not None and not Path(slo_file).is_file():
        raise ReportInputError(f"--slo: no such SLO file: {slo_file}")
    sources = [NOTEBOOK_DIR / f"{name}.ipynb" for name in notebooks]
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise ReportInputError(f"notebook(s) not found: {', '.join(missing)}")
    params = default_parameters(paths, slo_file=slo_file, price_set=price_set)
    params.update(extra_parameters or {})
    secrets.check_parameters(params)
    _check_kernel(kernel_name)
    out_dir = out_dir or REPORTS_DIR / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    values = secrets.secret_values()
    result = ReportResult(out_dir=out_dir, html=None)

    if index:
        params["use_store"] = _index_runs(paths, console, values)
    (out_dir / "parameters.json").write_text(
        json.dumps(secrets.redact_parameters(params), indent=2) + "\n", encoding="utf-8"
    )
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} notebooks"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("report", total=len(sources) + 1)
        for src in sources:
            progress.update(task, description=f"executing {src.name}")
            res = execute_notebook(
                src, out_dir / src.name, params, timeout=timeout, kernel_name=kernel_name,
                cwd=NOTEBOOK_DIR, secret_values=values,
            )  # fmt: skip
            result.notebooks.append(res)
            if not res.ok:
                progress.console.print(
                    f"[red]✗ {src.name}[/]: {res.error}; partially executed notebook kept at "
                    f"{res.output}"
                )
            else:
                progress.console.print(f"[green]✓[/] {src.name}")
            progress.advance(task)
        progress.update(task, description="rendering report.html")
        executed = [n.output for n in result.notebooks if n.output.exists()]
        if executed:
            result.html = render_html(executed, out_dir / "report.html", show_code=show_code)
            secrets.redact_file(result.html, values)
        progress.advance(task)
    leaks = secrets.find_leaks([*out_dir.glob("*.ipynb"), *out_dir.glob("*.html")], values)
    if leaks:  # cannot happen after redaction unless redaction is broken: fail loudly
        raise RuntimeError(f"secret values remain in {', '.join(leaks)} after redaction")
    return result


def _index_runs(paths: Sequence[Path], console: Any, values: Sequence[str]) -> bool:
    """Index the report's runs in the configured store; True when the store is usable."""
    try:
        from perflib.store import Store

        with Store() as store:
            for p in paths:
                store.index_run(p)
        return True
    except Exception as exc:  # noqa: BLE001 - the report still works from the run dirs
        console.print(
            "[yellow]warning:[/] runs not indexed in the results store: "
            + secrets.redact_text(f"{type(exc).__name__}: {exc}", values)
        )
        return False


# ---------------------------------------------------------------------------------- CLI


def cli_report(args: argparse.Namespace) -> int:
    """``perflib report [RUN_DIR...] [--out DIR]``."""
    from rich.console import Console

    console = Console(stderr=True)
    try:
        result = build_report(
            args.run_dirs or None,
            Path(args.out) if args.out else None,
            slo_file=getattr(args, "slo", None),
            price_set=getattr(args, "price_set", None),
            timeout=getattr(args, "timeout", 600),
            show_code=getattr(args, "show_code", False),
            console=console,
        )
    except (ReportInputError, secrets.SecretParameterError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    return _finish(result, console)


def _finish(result: ReportResult, console: Any) -> int:
    failed = [n for n in result.notebooks if not n.ok]
    for n in failed:
        console.print(f"[red]notebook {n.name} failed[/]: {n.error} (see {n.output})")
    if result.html:
        print(result.html)  # stdout: the one thing scripts need
    console.print(f"report directory: {result.out_dir}")
    return 1 if failed else 0


def cli_report_job(args: argparse.Namespace) -> int:
    """``make report``: local stack, smoke, load at 1 GB and 512 MB, then the report.

    Each run starts its own local stack inside :func:`perflib.runner.run_profile` (so each
    service process lives under the VM being emulated); runs land in ``<out>/runs``.
    """
    from rich.console import Console

    from perflib import runner

    console = Console(stderr=True)
    if args.time_scale <= 0:
        console.print(f"[red]error:[/] --time-scale must be positive, got {args.time_scale}")
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(args.out) if args.out else REPORTS_DIR / stamp
    runs_dir = out_dir / "runs"
    plan = [("smoke", JOB_PRESETS[0])] + [("load", p) for p in JOB_PRESETS]
    run_paths: list[Path] = []
    status = 0
    for i, (profile, preset) in enumerate(plan, 1):
        console.rule(f"[{i}/{len(plan)}] {profile} @ {preset} (time scale {args.time_scale})")
        target = runs_dir / f"{i:02d}-{profile}-{preset.split(':')[-1]}"
        try:
            run = runner.run_profile(
                profile,
                vm=preset,
                time_scale=args.time_scale,
                upstreams=args.upstreams,
                out=target,
            )
        except Exception as exc:  # noqa: BLE001 - report on the runs that did complete
            console.print(f"[red]{profile} @ {preset} failed:[/] {type(exc).__name__}: {exc}")
            status = 1
            continue
        path = Path(getattr(run, "path", run))
        exit_status = (RunDir.open(path).manifest.get("exit") or {}).get("status")
        console.print(f"run directory: {path} (exit: {exit_status})")
        run_paths.append(path)
    if not run_paths:
        console.print("[red]error:[/] no run completed; nothing to report")
        return 1
    console.rule("report")
    try:
        result = build_report(run_paths, out_dir, console=console)
    except (ReportInputError, secrets.SecretParameterError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    code = _finish(result, console)
    if result.html:
        console.print(f"[bold green]report:[/] {result.html}")
    return max(code, status)


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - dev convenience
    from perflib.cli import main as cli_main

    return cli_main(["report", *(argv or sys.argv[1:])])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


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
