"""``perflib samples``: arguments and printing only."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from perflib.errors import PerflibError

if TYPE_CHECKING:
    from perflib.sampling.remote import PrometheusSampler

EXIT_OK, EXIT_NO_DATA, EXIT_USAGE, EXIT_API = 0, 1, 2, 3


def _parse_iso(text: str, name: str) -> datetime:
    from perflib.fly import parse_time

    ts = parse_time(text) if "T" in text else None
    if ts is None:
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"--{name} {text!r} is not an ISO 8601 time (e.g. 2026-11-20T10:00:00Z)"
            ) from None
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return ts


def _read_logs(spec: str) -> Iterable[str]:
    if spec == "-":
        return sys.stdin.read().splitlines()
    return Path(spec).read_text(encoding="utf-8", errors="replace").splitlines()


def cli_samples(args: argparse.Namespace) -> int:
    """``perflib samples``: fetch a window of samples (and events) from Prometheus.

    Exit codes: 0 written; 1 the window held no samples; 2 bad arguments or missing
    ``FLY_API_TOKEN``; 3 the API failed (auth rejected, unreachable after retries, bad query).
    """
    from rich.console import Console

    from perflib.fly import (
        MACHINES_API,
        TOKEN_ENV,
        FlyError,
        FlyTokenMissing,
        merge_events,
        parse_log_lines,
    )
    from perflib.rundir import SampleWriter, write_events
    from perflib.sampling.fly import FlySampler
    from perflib.sampling.prometheus import PrometheusError
    from perflib.sampling.remote import ProcessSampler

    err = Console(stderr=True, highlight=False, soft_wrap=True)

    def fail(code: int, message: str) -> int:
        """The CLI prints the one error line (``perflib samples: error: …``)."""
        raise PerflibError(message, exit_code=code)

    try:
        start = _parse_iso(args.start, "start")
        end = _parse_iso(args.end, "end")
    except ValueError as exc:
        return fail(EXIT_USAGE, str(exc))
    if end <= start:
        return fail(EXIT_USAGE, f"--end {args.end} is not after --start {args.start}")
    step = getattr(args, "step", None)
    if step is not None and step <= 0:
        return fail(EXIT_USAGE, "--step must be positive (seconds)")
    out = Path(args.out) if args.out else None
    events_path = Path(args.events) if getattr(args, "events", None) else None
    for path, flag in ((out, "--out"), (events_path, "--events")):
        if path is not None and path.exists() and path.stat().st_size > 0:
            return fail(
                EXIT_USAGE,
                f"{flag} {path} already exists and is not empty; "
                "choose another file (nothing was overwritten)",
            )
    logs_spec = getattr(args, "logs", None)
    if logs_spec and events_path is None:
        return fail(EXIT_USAGE, "--logs needs --events FILE to write the events it finds")

    labels = {}
    if getattr(args, "job", None):
        labels["job"] = args.job
    sampler: PrometheusSampler
    try:
        if args.source == "fly":
            if not args.app:
                return fail(EXIT_USAGE, "--source fly needs --app APP (the Fly app name)")
            sampler = FlySampler(
                args.app,
                org=args.org,
                base_url=args.prometheus,
                step=step,
                machines_api=getattr(args, "machines_api", None) or MACHINES_API,
                fly_logs=events_path is not None and not getattr(args, "no_fly_logs", False),
                settle_s=0,
            )
        else:
            if not args.prometheus:
                return fail(EXIT_USAGE, "--source process needs --prometheus URL")
            if args.app:
                labels["app"] = args.app
            sampler = ProcessSampler(
                args.prometheus,
                labels=labels,
                step=step,
                settle_s=0,
                memory_limit_mb=getattr(args, "memory_limit_mb", None),
            )
    except FlyTokenMissing as exc:
        return fail(EXIT_USAGE, str(exc))
    except (FlyError, ValueError) as exc:
        return fail(EXIT_USAGE, str(exc))

    try:
        with err.status(f"querying {sampler.client.base_url} …"):
            result = sampler.fetch(start, end)
    except (PrometheusError, FlyError) as exc:
        hint = f" (check {TOKEN_ENV})" if args.source == "fly" and "credentials" in str(exc) else ""
        return fail(EXIT_API, f"{exc}{hint}")
    finally:
        sampler.close()

    events = list(result.events)
    if logs_spec:
        try:
            parsed = parse_log_lines(_read_logs(logs_spec))
        except OSError as exc:
            return fail(EXIT_USAGE, f"--logs {logs_spec}: {exc.strerror}")
        if parsed.untimed:
            result.warnings.append(
                f"{parsed.untimed} matching log line(s) had no timestamp and were skipped"
            )
        events = merge_events(events + parsed.events)

    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    if out is None:
        with tempfile.TemporaryDirectory() as tmp:
            tmp_csv = Path(tmp) / "samples.csv"
            with SampleWriter(tmp_csv, with_instance=True) as writer:
                for row in result.rows:
                    writer.write(row)
            sys.stdout.write(tmp_csv.read_text(encoding="utf-8"))
    else:
        with SampleWriter(out, with_instance=True) as writer:
            for row in result.rows:
                writer.write(row)
    if events_path is not None:
        write_events(events_path, events)
    err.print(
        f"{len(result.rows)} samples from {len(result.instances)} instance(s), step "
        f"{result.step:g} s, rate window {result.window}"
        + (f"; {len(events)} events → {events_path}" if events_path else "")
        + (f" → {out}" if out else "")
    )
    return EXIT_OK if result.rows else EXIT_NO_DATA


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("samples", help="fetch resource samples of a deployed app from Prometheus")
    p.add_argument("--source", choices=["fly", "process"], required=True)
    p.add_argument(
        "--prometheus",
        default=None,
        metavar="URL",
        help="Prometheus base URL (default for fly: https://api.fly.io/prometheus/<org>)",
    )
    p.add_argument("--app", default=None)
    p.add_argument("--org", default=None)
    p.add_argument("--start", required=True, help="ISO 8601")
    p.add_argument("--end", required=True, help="ISO 8601")
    p.add_argument(
        "--step",
        type=float,
        default=None,
        help="seconds (default: the data's resolution: 15 for fly, the scrape interval for process)",
    )
    p.add_argument(
        "--out", default=None, metavar="FILE", help="samples.csv to write (default stdout)"
    )
    p.add_argument(
        "--events",
        default=None,
        metavar="FILE",
        help="also write Fly machine events (OOM, restarts) to this events.jsonl",
    )
    p.add_argument("--job", default=None, help="source process: only series with this job label")
    p.add_argument(
        "--memory-limit-mb",
        type=float,
        default=None,
        help="source process: the VM memory limit to record (MiB)",
    )
    p.add_argument(
        "--logs",
        default=None,
        metavar="FILE",
        help="parse `fly logs` output from FILE ('-' = stdin) into OOM/restart events",
    )
    p.add_argument(
        "--no-fly-logs",
        action="store_true",
        help="do not run `fly logs --no-tail` even when flyctl is installed",
    )
    p.add_argument(
        "--machines-api",
        default=None,
        metavar="URL",
        help="Fly Machines API base URL (default https://api.machines.dev/v1)",
    )
