"""The ``perflib`` command: argument parsing only; every verb's work lives in its module.

Handlers are imported lazily so ``perflib summarize`` does not pay for matplotlib,
FastAPI or papermill imports it never uses.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from perflib.errors import PerflibError, interrupt_exit_code, signal_of, stop_signals

# verb -> "module:function"; each function takes the parsed Namespace and returns an exit code.
HANDLERS: dict[str, str] = {
    "serve": "perflib.stack:cli_serve",
    "run": "perflib.runner:cli_run",
    "summarize": "perflib.k6:cli_summarize",
    "analyze": "perflib.analysis:cli_analyze",
    "recommend": "perflib.sizing:cli_recommend",
    "compare": "perflib.sizing:cli_compare",
    "report": "perflib.report:cli_report",
    "report-job": "perflib.report:cli_report_job",
    "samples": "perflib.samplers_remote:cli_samples",
    "store": "perflib.store:cli_store",
    "calibrate": "perflib.guest.calibrate:cli_calibrate",
}


def _add_app(p: argparse.ArgumentParser) -> None:
    """Which app the emulated VM runs, and how (process watcher or a real Linux guest)."""
    p.add_argument(
        "--isolation",
        choices=["process", "guest"],
        default="process",
        help="process emulation (default, fast) or a real Linux guest in QEMU (memory-exact)",
    )
    p.add_argument("--app-cmd", default=None, help="run this shell command instead of the service")
    p.add_argument("--app-port", type=int, default=None, help="port the --app-cmd app listens on")
    p.add_argument("--health-path", default=None, help="the app's health check (default /health)")


def _time_scale_default() -> str | float:
    """``--time-scale``'s default: ``$PERFLIB_TIME_SCALE`` (argparse converts and checks a
    string default as if typed), so a script or the docs test can shorten every run."""
    return os.environ.get("PERFLIB_TIME_SCALE") or 1.0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="start the service and its upstream emulators (Ctrl-C stops)")
    p.add_argument("--port", type=int, default=8081, help="service port (default 8081)")
    p.add_argument(
        "--upstreams",
        choices=["nominal", "degraded"],
        default="nominal",
        help="emulator fault profile (default nominal)",
    )
    p.add_argument(
        "--database-url", default=None, help="service DATABASE_URL (default: a fresh SQLite file)"
    )
    p.add_argument(
        "--vm",
        default=None,
        metavar="PRESET",
        help="run the service under an emulated Fly VM, e.g. shared-cpu-1x:512mb",
    )
    p.add_argument(
        "--prometheus",
        action="store_true",
        help="also start a local Prometheus server scraping the service's /metrics",
    )
    _add_app(p)


def _add_run(sub: argparse._SubParsersAction) -> None:
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
        default=_time_scale_default(),
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
    _add_app(p)


def _add_summarize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summarize", help="k6's summary statistics from raw k6 output")
    p.add_argument("path", help="k6 NDJSON file (.gz too) or a run directory")
    p.add_argument("--json", action="store_true", help="print JSON (shape in docs/contracts.md)")
    p.add_argument("--no-cache", action="store_true", help="ignore and do not write the cache")


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="SLO verdicts and key figures of a run directory")
    p.add_argument("run_dir")
    p.add_argument("--slo", default=None, help="SLO file (default data/slo.toml)")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--fail-on",
        choices=["critical", "alert", "warn"],
        default="critical",
        help="exit 1 when any verdict is at least this severe (default critical)",
    )


def _add_recommend(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recommend", help="right-size the Fly VM from runs or samples")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR")
    p.add_argument("--samples", default=None, metavar="FILE.csv")
    p.add_argument("--events", default=None, metavar="FILE.jsonl")
    p.add_argument(
        "--current",
        default=None,
        metavar="PRESET",
        help="preset the app runs on now (default: from the runs, else shared-cpu-1x:1024mb)",
    )
    p.add_argument("--region", default="iad")
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--price-set", default=None, help="price set date or name (default newest)")
    p.add_argument("--ha", action="store_true", help="require high availability (>= 2 instances)")
    p.add_argument(
        "--monthly-requests",
        type=float,
        default=None,
        metavar="N",
        help="production requests per 30 days, to add egress to the costs",
    )
    p.add_argument("--json", action="store_true")


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare runs of one profile at different presets")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--region", default="iad")
    p.add_argument("--price-set", default=None)
    p.add_argument("--json", action="store_true")


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="execute the notebooks on runs and render an HTML report")
    p.add_argument(
        "run_dirs",
        nargs="*",
        metavar="RUN_DIR",
        help="run directories (default: the recorded sample runs in data/)",
    )
    p.add_argument("--out", default=None, help="report directory (default reports/<timestamp>)")
    p.add_argument(
        "--force", action="store_true", help="write into --out even when it is not empty"
    )
    p.add_argument("--price-set", default=None)
    p.add_argument("--slo", default=None)
    p.add_argument("--timeout", type=int, default=600, help="per-cell execution timeout (s)")
    p.add_argument("--show-code", action="store_true", help="keep code cells in the HTML")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="notebooks executed at once, each in its own kernel (default 2)",
    )

    j = sub.add_parser("report-job", help="the main job: smoke + load at 1 GB and 512 MB + report")
    j.add_argument(
        "--time-scale",
        type=float,
        default=_time_scale_default(),
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


def _add_samples(sub: argparse._SubParsersAction) -> None:
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


def _add_store(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="index run directories in the results store")
    p.add_argument("action", choices=["index", "list", "upgrade"])
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR")
    p.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL (default PERFLIB_DATABASE_URL or a SQLite file)",
    )


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="boot Linux guests of each size and measure the room the app gets (data/ table)",
    )
    p.add_argument(
        "--sizes",
        default="256,512,1024,2048",
        help="guest sizes in MB, comma-separated (default 256,512,1024,2048)",
    )
    p.add_argument("--out", default=None, help="table path (default data/guest_memory.csv)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perflib",
        description="Performance lab for the lead-enrichment API: load runs, analysis, sizing.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_serve,
        _add_run,
        _add_summarize,
        _add_analyze,
        _add_recommend,
        _add_compare,
        _add_report,
        _add_samples,
        _add_store,
        _add_calibrate,
    ):
        add(sub)
    return parser


def _resolve(spec: str) -> Callable[[argparse.Namespace], int]:
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def error_line(verb: str, exc: PerflibError) -> str:
    """``perflib <verb>: error: <what> (<file>)``: the one error style of every verb.

    Only the first line of the message goes on the error line; further lines (a log tail, a
    list of problems) follow it, indented, so the first line stays greppable.
    """
    first, _, rest = exc.message.partition("\n")
    line = f"perflib {verb}: error: {first}"
    if exc.where is not None and exc.where not in first:
        line += f" ({exc.where})"
    if rest.strip():
        line += "\n" + "\n".join("  " + r for r in rest.splitlines())
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run the verb, and turn errors and stop signals into one line and an exit code.

    SIGTERM and SIGHUP stop every verb as Ctrl-C does (see :mod:`perflib.errors`): exit code
    130 (INT), 143 (TERM) or 129 (HUP).
    """
    args = build_parser().parse_args(argv)
    verb = args.command
    try:
        with stop_signals():
            return int(_resolve(HANDLERS[verb])(args) or 0)
    except PerflibError as exc:
        print(error_line(verb, exc), file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
            print(f"perflib {verb}: interrupted ({signal_of(exc).name})", file=sys.stderr)
        return interrupt_exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
