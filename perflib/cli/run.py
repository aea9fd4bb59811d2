"""``perflib run``: arguments, the VM emulation settings, the run directory printed last."""

from __future__ import annotations

import argparse

from rich.console import Console

from perflib.cli.serve import add_app_options


def cli_run(args: argparse.Namespace) -> int:
    """``perflib run``: prints the run directory last on stdout; returns the exit code.

    A run that failed still prints its directory (stdout), then raises :class:`RunError`
    naming the manifest, so the CLI prints the one error line and exits with the run's code.
    """
    from perflib.fly.presets import PresetError, parse_preset
    from perflib.run.runner import EXIT_USAGE, RunError, run_profile, samplers_for
    from perflib.run.stack import AppSpec
    from perflib.run.vm import EmulationSettings

    console = Console(stderr=True, soft_wrap=True)
    try:
        app = AppSpec.from_args(args)
    except ValueError as exc:
        raise RunError(str(exc), EXIT_USAGE) from None
    settings = EmulationSettings(
        memory=not args.no_memory_limit,
        cpu_pin=not args.no_cpu_pin,
        cpu_quota=not args.no_cpu_quota,
        memory_metric=getattr(args, "memory_metric", "rss"),
        quota_method=getattr(args, "quota_method", "auto"),
        isolation=getattr(args, "isolation", "process"),
        app=app,
    )
    if args.guest_overhead_mb is not None:
        if args.guest_overhead_mb < 0:
            raise RunError("--guest-overhead-mb must be >= 0", EXIT_USAGE)
        settings.guest_overhead_mb = args.guest_overhead_mb
    try:
        if args.vm:
            preset = parse_preset(args.vm, strict=False)
            if not preset.fly_valid:
                console.print(
                    f"[yellow]warning[/yellow]: {preset.name} is not a size Fly "
                    "offers; emulating it anyway",
                    highlight=False,
                )
    except PresetError as exc:
        raise RunError(f"--vm {args.vm}: {exc}", EXIT_USAGE) from None
    result = run_profile(
        args.profile,
        base_url=args.base_url,
        vm=args.vm,
        emulation=settings,
        time_scale=args.time_scale,
        out=args.out,
        segments=args.segments,
        lead_id=args.lead_id,
        upstreams=args.upstreams,
        sample_interval=args.sample_interval,
        samplers=samplers_for(args),
        console=console,
    )
    print(result.run_dir, flush=True)
    if result.status == "error":
        raise RunError(result.message, result.exit_code, result.run_dir / "manifest.json")
    return result.exit_code


def add_parser(sub: argparse._SubParsersAction) -> None:
    from perflib.cli._common import time_scale_default

    p = sub.add_parser("run", help="run a k6 load profile and record a run directory")
    p.add_argument("profile", help="smoke | load | stress | soak, or a path to a k6 script")
    p.add_argument(
        "--base-url", default=None, help="drive this URL instead of starting the local stack"
    )
    p.add_argument(
        "--vm",
        default="shared-cpu-1x:1024mb",
        metavar="PRESET",
        help="emulated Fly VM for the local service (default shared-cpu-1x:1024mb)",
    )
    p.add_argument("--no-memory-limit", action="store_true", help="do not emulate the memory limit")
    p.add_argument("--no-cpu-pin", action="store_true", help="do not pin the service to one core")
    p.add_argument(
        "--no-cpu-quota", action="store_true", help="do not emulate the shared-CPU quota"
    )
    p.add_argument(
        "--guest-overhead-mb",
        type=float,
        default=None,
        help="guest-OS memory the VM uses besides the service (MiB)",
    )
    p.add_argument(
        "--memory-metric",
        choices=["rss", "pss"],
        default="rss",
        help="service memory as RSS (default) or PSS (shares split between processes)",
    )
    p.add_argument(
        "--quota-method",
        choices=["auto", "cgroup", "signals"],
        default="auto",
        help="shared-CPU throttling: a cgroup where writable (auto), or SIGSTOP/SIGCONT",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=time_scale_default(),
        help="multiply every stage duration (e.g. 0.1 for a short run; "
        "default $PERFLIB_TIME_SCALE, else 1)",
    )
    p.add_argument("--upstreams", choices=["nominal", "degraded"], default="nominal")
    p.add_argument("--lead-id", default=None, help="use one lead id for every iteration")
    p.add_argument(
        "--segments",
        type=int,
        default=1,
        help="split the load across N k6 processes (execution segments)",
    )
    p.add_argument("--sample-interval", type=float, default=1.0, help="seconds between samples")
    p.add_argument("--out", default=None, help="run directory (default runs/<timestamp>-<profile>)")
    p.add_argument("--fly-app", default=None, help="sample this Fly app during the run")
    p.add_argument("--fly-org", default=None, help="Fly organisation slug for its Prometheus API")
    p.add_argument(
        "--prometheus",
        default=None,
        metavar="URL",
        help="sample the target through this Prometheus (source 'process')",
    )
    add_app_options(p)
