"""``perflib report-job`` (``make report``): smoke + load at 1 GB and 512 MB, then the report."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from perflib.errors import PerflibError


def cli_report_job(args: argparse.Namespace) -> int:
    """``make report``: local stack, smoke, load at 1 GB and 512 MB, then the report.

    Each run starts its own local stack inside :func:`perflib.run.runner.run_profile` (so each
    service process lives under the VM being emulated); runs land in ``<out>/runs``. A run
    stopped by Ctrl-C, SIGTERM or SIGHUP ends the job with that run's exit code (130, 143,
    129) and no report; a signal during the notebooks stops their workers and kernels too.
    """
    from rich.console import Console

    from perflib.cli.report import _finish
    from perflib.report.build import JOB_PRESETS, REPORTS_DIR, build_report
    from perflib.run import runner
    from perflib.run.vm import EmulationSettings

    console = Console(stderr=True, soft_wrap=True)
    if args.time_scale <= 0:
        raise PerflibError(f"--time-scale must be positive, got {args.time_scale}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = (Path(args.out) if args.out else REPORTS_DIR / stamp).absolute()
    runs_dir = out_dir / "runs"
    plan = [("smoke", JOB_PRESETS[0])] + [("load", p) for p in JOB_PRESETS]
    run_paths: list[Path] = []
    status = 0
    for i, (profile, preset) in enumerate(plan, 1):
        console.rule(f"[{i}/{len(plan)}] {profile} @ {preset} (time scale {args.time_scale})")
        target = runs_dir / f"{i:02d}-{profile}-{preset.split(':')[-1]}"
        res = runner.run_profile(  # RunError (cannot start) reaches the CLI's error line
            profile,
            vm=preset,
            emulation=EmulationSettings(isolation=getattr(args, "isolation", "process")),
            time_scale=args.time_scale,
            upstreams=args.upstreams,
            out=target,
            console=console,
        )
        console.print(f"run directory: {res.run_dir} (exit: {res.status})")
        if res.status == "interrupted":
            console.print(f"[red]{profile} @ {preset} {res.message}[/]; no report", highlight=False)
            return res.exit_code
        if res.status == "error" or not (res.run_dir / "manifest.json").exists():
            console.print(f"[red]{profile} @ {preset} failed:[/] {res.message}", highlight=False)
            status = 1
            continue
        # thresholds_failed / oom_killed are findings the report is there to show
        run_paths.append(res.run_dir)
    if not run_paths:
        raise PerflibError("no run completed; nothing to report", path=runs_dir, exit_code=1)
    console.rule("report")
    # the job's own directory: it holds the runs it just recorded; bad input reaches the CLI's
    # error line; a signal stops the notebook workers and kernels (see _Stoppable)
    result = build_report(run_paths, out_dir, console=console, force=True)
    code = _finish(result, console)
    if result.html:
        console.print(f"[bold green]report:[/] {result.html}")
    return max(code, status)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from perflib.cli._common import time_scale_default

    j = sub.add_parser("report-job", help="the main job: smoke + load at 1 GB and 512 MB + report")
    j.add_argument(
        "--time-scale",
        type=float,
        default=time_scale_default(),
        help="multiply every stage duration (default $PERFLIB_TIME_SCALE, else 1)",
    )
    j.add_argument("--out", default=None)
    j.add_argument("--upstreams", choices=["nominal", "degraded"], default="nominal")
    j.add_argument(
        "--isolation",
        choices=["process", "guest"],
        default="process",
        help="process emulation (default) or real Linux guests (memory-exact, slower)",
    )
