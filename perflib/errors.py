"""perflib's one error hierarchy and the signals that stop a command.

Domain modules raise :class:`PerflibError` (or a subclass) for anything a user can fix: a bad
file, a bad value, a target that does not answer. The CLI layer (:mod:`perflib.cli`) is the
one place that turns it into the line ``perflib <verb>: error: <what> (<file>)`` and the
exit code; domain modules never print errors themselves. When a file is to blame the error
carries its ``path`` (and ``line``): ``perflib <verb>: error: <what> (<file>[:<line>])``.

SIGTERM and SIGHUP (CI time-outs, ``docker stop``, systemd, a closed terminal) stop a
command exactly as Ctrl-C does: :func:`stop_signals` makes each raise :class:`Interrupted`,
a :class:`KeyboardInterrupt`, so every ``except KeyboardInterrupt`` clean-up path runs. The
exit code is the shell's convention, 128 + the signal number: 130 (INT), 143 (TERM),
129 (HUP).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

#: signals that stop a command cleanly (children stopped, manifest written)
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class PerflibError(Exception):
    """A user-facing error: bad input or an unusable target, not a bug.

    ``str()`` is the message with its ``(file[:line])``; ``exit_code`` is what the CLI
    returns (2, bad input, unless a subclass or the raiser says otherwise).
    """

    exit_code: int = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        exit_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def where(self) -> str | None:
        """``file`` or ``file:line``, or None when no file is to blame."""
        if self.path is None:
            return None
        return f"{self.path}:{self.line}" if self.line is not None else self.path

    def __str__(self) -> str:
        return f"{self.message} ({self.where})" if self.where else self.message


class RunDirError(PerflibError, ValueError):
    """A run directory's file is missing or malformed (manifest, samples.csv, events.jsonl).

    A ValueError too, so callers that caught the readers' ValueError keep working.
    """


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP; ``signum`` says which (exit code 128 + signum)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def signal_of(exc: BaseException) -> signal.Signals:
    """The signal behind a KeyboardInterrupt (a plain one is SIGINT)."""
    return signal.Signals(getattr(exc, "signum", signal.SIGINT))


def interrupt_exit_code(exc: BaseException) -> int:
    """128 + the signal number, as a shell reports a command a signal stopped."""
    return 128 + int(signal_of(exc))


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted`.

    SIGINT is installed too, not inherited: a shell without job control starts background
    commands with SIGINT ignored, and such a run must still stop on SIGINT.
    """
    previous = {}
    try:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, _raise_interrupted)
    except ValueError:  # not the main thread (e.g. called from a worker): leave signals be
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def deferred_stop() -> Iterator[list[int]]:
    """Within the block, stop signals are noted (in the yielded list), not raised.

    For clean-up that must finish (stop children, write the manifest): a second Ctrl-C or a
    SIGTERM arriving mid-clean-up would otherwise leave children running and the manifest
    unwritten. The caller decides what a noted signal means once the clean-up is done.
    """
    noted: list[int] = []
    previous = {}
    try:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, lambda signum, _f: noted.append(signum))
    except ValueError:  # not the main thread: signals are not ours to handle
        pass
    try:
        yield noted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
