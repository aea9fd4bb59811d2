"""The ``perflib`` command: one module per verb (arguments and printing), one error line.

Each verb module imports the domain code it drives only when its handler runs, so
``perflib summarize`` does not pay for matplotlib, FastAPI or papermill imports it never uses.
Domain modules never print errors or parse argv: a :class:`~perflib.errors.PerflibError`
reaches :func:`main`, which prints ``perflib <verb>: error: <what> (<file>)`` and exits with
its code.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Callable, Sequence

from perflib.errors import PerflibError, interrupt_exit_code, signal_of, stop_signals

#: The verbs in workflow order: (verb, module under perflib/cli/). Each module holds the verb's
#: arguments (``add_parser``) and its printing (``cli_<module>``); the work is in the domain
#: packages, imported by the handler when it runs, so building the parser stays cheap.
VERBS: tuple[tuple[str, str], ...] = (
    ("serve", "serve"),
    ("run", "run"),
    ("summarize", "summarize"),
    ("analyze", "analyze"),
    ("recommend", "recommend"),
    ("compare", "compare"),
    ("report", "report"),
    ("report-job", "report_job"),
    ("samples", "samples"),
    ("store", "store"),
    ("calibrate", "calibrate"),
)
#: verb -> "module:function"; each function takes the parsed Namespace and returns an exit code.
HANDLERS: dict[str, str] = {verb: f"perflib.cli.{mod}:cli_{mod}" for verb, mod in VERBS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perflib",
        description="Performance lab for the lead-enrichment API: load runs, analysis, sizing.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for _verb, module in VERBS:
        importlib.import_module(f"perflib.cli.{module}").add_parser(sub)
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
