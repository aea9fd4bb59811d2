"""Reports: the notebooks executed with papermill and rendered into one HTML file.

``perflib report [RUN_DIR...]`` executes every notebook in ``notebooks/`` on the given runs
(default: the recorded sample runs in ``data/runs``) into ``reports/<UTC timestamp>/``, in
the project's named kernel ``perflib`` with a per-cell timeout, then renders one
``report.html`` with code hidden and charts embedded as data URIs, so the file can be mailed
or archived on its own. Executed notebooks are redacted and scanned for secrets
(:mod:`perflib.report.secrets`) before anything else reads them.

``perflib report-job`` is ``make report``: local stack → smoke → load at 1 GB and 512 MB
emulated VMs → report on those runs.

Exit codes: 0 ok; 1 a notebook failed (the partial notebook is kept; the error names the
cell) or a run failed; 2 bad input (no such run directory, unknown kernel, secret parameter).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perflib.analysis.gate import checks_table, deploy_gate
from perflib.errors import PerflibError, deferred_stop
from perflib.report import secrets
from perflib.rundir import RunDir, validate_run
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
#: Presets ``make report`` compares (the guide's 512 MB vs 1 GB question, docs/guide.md).
JOB_PRESETS: tuple[str, ...] = ("shared-cpu-1x:1024mb", "shared-cpu-1x:512mb")

log = logging.getLogger(__name__)


class ReportInputError(PerflibError, ValueError):
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
    if isinstance(run_dirs, str | Path):  # one directory, e.g. papermill -p run_dirs DIR
        run_dirs = [run_dirs]
    given = [_locate(Path(p).expanduser()) for p in (run_dirs or [])]
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


def validate_runs(paths: Iterable[str | Path]) -> None:
    """Every run read with the strict readers (:func:`perflib.rundir.validate_run`), so a
    malformed file stops the report with its name and line before minutes of execution."""
    for p in paths:
        validate_run(p)


def check_out_dir(out_dir: Path, *, force: bool = False) -> None:
    """Refuse a report directory that is a file, or that holds files (unless ``force``):
    a report written over another one would mix their notebooks."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportInputError("--out is a file, not a directory", path=out_dir)
    if not force and out_dir.is_dir() and any(out_dir.iterdir()):
        raise ReportInputError(
            "report directory is not empty (pass --force to write into it)", path=out_dir
        )


def _locate(path: Path) -> Path:
    """A relative path as given (cwd) when it exists, else relative to the repository root —
    notebooks run with cwd ``notebooks/`` while people type paths from the repo root."""
    if path.is_absolute() or path.exists() or not (REPO_ROOT / path).exists():
        return path
    return REPO_ROOT / path


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


def vm_model(manifest: dict[str, Any]) -> str:
    """How a run's VM was reproduced: a Linux guest (and whether its CPU/latency figures
    stand for the VM's), or the process emulation with the memory table it used."""
    vm = manifest.get("vm") or {}
    if vm.get("isolation") == "guest":
        g = vm.get("guest") or {}
        total = g.get("mem_total_mb")
        text = f"Linux guest ({g.get('accelerator') or '?'}"
        text += f", MemTotal {total:.0f} MB)" if total else ")"
        if not (vm.get("representative") or {}).get("latency", True):
            text += "; CPU and latency not representative (TCG)"
        return text
    emu = vm.get("emulation") or {}
    if not emu or vm.get("declared"):
        return ""
    source = emu.get("guest_overhead_source") or "40 MB guess"
    return f"process emulation, {emu.get('guest_overhead_mb', 0):g} MB overhead ({source})"


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
                "VM model": vm_model(mf),
            }
        )
    return pd.DataFrame(rows)


VERDICT_COLOURS = {
    "pass": "background-color: #e6f4ea",
    "warn": "background-color: #fef7e0",
    "alert": "background-color: #fce8e6",
    "critical": "background-color: #f4c7c3; font-weight: bold",
    "no data": "color: #80868b",
}


def style_verdicts(df: Any, column: str = "verdict") -> Any:
    """A pandas Styler colouring each row by its verdict (rendered in notebooks and HTML)."""
    if column not in getattr(df, "columns", []) or len(df) == 0:
        return df
    return (
        df.style.apply(lambda row: [VERDICT_COLOURS.get(str(row[column]), "")] * len(row), axis=1)
        .hide(axis="index")
        .format(precision=1, na_rep="–")
    )


def go_no_go(analysis: Any) -> tuple[bool, list[str]]:
    """Deploy decision from a smoke run, with the reasons behind it
    (:func:`perflib.analysis.gate.deploy_gate`, which also says when a red gate is only the
    guide's threshold below the upstream floor)."""
    gate = deploy_gate(analysis)
    return gate.go, gate.blocking + gate.notes


def overview_table(analyses: Sequence[Any]) -> Any:
    """One row per analysed run: the figures a reader scans first."""
    import pandas as pd

    from perflib.analysis import ALL

    rows = []
    for a in analyses:
        allrow = a.summary[a.summary["name"] == ALL]
        r = allrow.iloc[0] if len(allrow) else {}
        rows.append(
            {
                "run": a.run.name,
                "profile": a.profile,
                "preset": a.run.preset,
                "requests": int(r["requests"]) if len(allrow) else 0,
                "req/s": r["req_per_s"] if len(allrow) else None,
                "p95 (ms)": r["p95"] if len(allrow) else None,
                "errors (%)": r["error_rate_pct"] if len(allrow) else None,
                "memory peak (MB)": a.memory.peak_mb,
                "OOM kills": a.memory.oom_kills,
                "saturated": a.saturation.saturated,
                "verdict": a.worst_verdict,
            }
        )
    return pd.DataFrame(rows)


def size_runs(
    runs: Sequence[RunDir], *, region: str = "iad", price_set: str | None = None
) -> tuple[Any, Any]:
    """``(comparison, recommendation)`` for the load runs of a report, the same in every
    notebook: a preset comparison when the runs cover two or more presets, else just the
    recommendation; ``(None, None)`` without a load run that has memory samples (see
    :func:`no_sizing_reason` for what to say then)."""
    from perflib import sizing

    load = [r for r in runs if r.profile == "load" and _has_memory_samples(r)]
    if len({r.preset for r in load}) >= 2:
        comparison = sizing.compare_presets(load, region=region, price_set=price_set)
        return comparison, comparison.recommendation
    if load:
        return None, sizing.recommend(load, region=region, price_set=price_set)
    return None, None


def _has_memory_samples(run: RunDir) -> bool:
    """Whether sizing can use the run (the sizing module's own check decides)."""
    from perflib import sizing

    try:
        sizing.evidence_from_run(run)
    except sizing.SizingError:
        return False
    return True


def no_sizing_reason(runs: Sequence[RunDir]) -> str:
    """Why :func:`size_runs` gave no sizing, in words a report can print."""
    if not any(r.profile == "load" for r in runs):
        return "no load run among the run directories"
    return (
        "the load runs have no memory samples (a run against --base-url samples the app "
        "only with --fly-app or --prometheus)"
    )


def record_runs(
    plan: Sequence[tuple[str, str | None]],
    *,
    base_url: str | None = None,
    time_scale: float = 1.0,
    out_dir: str | Path | None = None,
) -> list[str]:
    """Live mode for notebooks: record ``(profile, preset)`` runs with the runner, return paths.

    With ``base_url`` the deployed app is driven and the preset only labels the run; without
    it each run starts the local stack under the emulated preset.
    """
    from perflib.run import runner

    root = Path(out_dir) if out_dir else REPO_ROOT / "runs"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    paths = []
    for i, (profile, preset) in enumerate(plan, 1):
        tag = (preset or "url").split(":")[-1]
        res = runner.run_profile(
            profile,
            base_url=base_url,
            vm=None if base_url else preset,
            time_scale=time_scale,
            out=root / f"{stamp}-{i:02d}-{profile}-{tag}",
            progress=False,
        )
        paths.append(str(res.run_dir))
    return paths


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
                kernel_manager_class=_ipc_kernel_manager(),
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


def _ipc_kernel_manager() -> type:
    from jupyter_client.manager import AsyncKernelManager

    class _IpcKernelManager(AsyncKernelManager):  # type: ignore[misc]
        """Kernels talk over Unix sockets, not loopback TCP: no port to race for with the
        other test runs on this machine, and no "running over TCP without encryption"
        warning from ipykernel on every report."""

        def __init__(self, **kwargs: Any) -> None:
            import tempfile
            import uuid

            kwargs.setdefault("transport", "ipc")
            # absolute and unique: the kernel runs in another cwd, and kernels run in parallel
            kwargs.setdefault("ip", f"{tempfile.gettempdir()}/perflib-kernel-{uuid.uuid4().hex}")
            super().__init__(**kwargs)

    return _IpcKernelManager


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
            cell["id"] = f"{path.stem}-{cell.get('id') or len(merged.cells)}"[:64]
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
    notebooks: Sequence[str] | None = None,
    kernel_name: str = KERNEL_NAME,
    index: bool = True,
    extra_parameters: Mapping[str, Any] | None = None,
    jobs: int | None = None,
    console: Any = None,
    force: bool = False,
) -> ReportResult:
    """Execute ``notebooks`` on the runs into ``out_dir`` and render ``report.html``.

    The runs are indexed in the configured results store first (so the trends notebook sees
    them); a store that cannot be opened is reported and skipped, not fatal. Only parameters
    that differ from the notebooks' defaults are passed, so ``build_report()`` with no
    arguments executes every notebook exactly on its defaults. ``jobs`` notebooks run at once,
    each in its own process and kernel (default: 2, or 1 on a single core).

    Before anything is executed or written: every run directory is read with the strict
    readers (:func:`validate_runs`), and a non-empty ``out_dir`` is refused unless ``force``.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    paths = resolve_run_dirs(run_dirs)
    validate_runs(paths)
    if out_dir is not None:
        check_out_dir(out_dir, force=force)
    if slo_file is not None and not Path(slo_file).is_file():
        raise ReportInputError(f"--slo: no such SLO file: {slo_file}")
    sources = [NOTEBOOK_DIR / f"{name}.ipynb" for name in (notebooks or NOTEBOOKS)]
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise ReportInputError(f"notebook(s) not found: {', '.join(missing)}")
    params: dict[str, Any] = {}
    if run_dirs:
        params["run_dirs"] = [str(p) for p in paths]
    if slo_file is not None:
        params["slo_file"] = str(Path(slo_file).resolve())
    if price_set is not None:
        params["price_set"] = price_set
    params.update(extra_parameters or {})
    jobs = max(1, jobs if jobs is not None else min(2, os.cpu_count() or 1))
    secrets.check_parameters(params)
    _check_kernel(kernel_name)
    out_dir = out_dir or REPORTS_DIR / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    values = secrets.secret_values()
    result = ReportResult(out_dir=out_dir, html=None)

    if index and _index_runs(paths, console, values):
        params["use_store"] = True
    (out_dir / "parameters.json").write_text(
        json.dumps(secrets.redact_parameters(params), indent=2) + "\n", encoding="utf-8"
    )
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("report", total=len(sources) + 1)
        progress.update(task, description=f"executing {len(sources)} notebooks ({jobs} at a time)")
        done: dict[str, NotebookResult] = {}
        with _executor(jobs) as pool:
            futures = {
                pool.submit(
                    execute_notebook, src, out_dir / src.name, params, timeout=timeout,
                    kernel_name=kernel_name, cwd=NOTEBOOK_DIR, secret_values=values,
                ): src
                for src in sources
            }  # fmt: skip
            for fut in as_completed(futures):
                src = futures[fut]
                res = fut.result()
                done[src.name] = res
                if not res.ok:
                    progress.console.print(
                        f"[red]✗ {src.name}[/]: {res.error}; partially executed notebook kept "
                        f"at {res.output}"
                    )
                else:
                    progress.console.print(f"[green]✓[/] {src.name}")
                progress.advance(task)
        result.notebooks = [done[src.name] for src in sources]  # report order, not finish order
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


class _Stoppable:
    """An executor that, left by Ctrl-C/SIGTERM/SIGHUP, stops its workers and their kernels
    instead of waiting for every running notebook to finish."""

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.shutdown(wait=False, cancel_futures=True)  # type: ignore[attr-defined]
            _stop_descendants()
        return super().__exit__(exc_type, exc, tb)  # type: ignore[misc]


class _ThreadPool(_Stoppable, ThreadPoolExecutor):
    pass


class _ProcessPool(_Stoppable, ProcessPoolExecutor):
    pass


def _executor(jobs: int) -> Executor:
    """Worker processes (spawned: no inherited kernel/zmq state) when running in parallel."""
    if jobs <= 1:
        return _ThreadPool(max_workers=1)
    import multiprocessing

    return _ProcessPool(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))


def _stop_descendants(timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, every process below this one (found through the process tree)."""
    import psutil

    with deferred_stop():
        procs = psutil.Process().children(recursive=True)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _gone, alive = psutil.wait_procs(procs, timeout=timeout)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=5)


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


__all__ = [
    "NOTEBOOKS",
    "NotebookResult",
    "ReportInputError",
    "ReportResult",
    "build_report",
    "checks_table",
    "execute_notebook",
    "go_no_go",
    "load_runs",
    "no_sizing_reason",
    "overview_table",
    "record_runs",
    "render_html",
    "resolve_run_dirs",
    "run_label",
    "runs_table",
    "vm_model",
    "sample_run_dirs",
    "size_runs",
    "style_verdicts",
]
