"""perflib's one exception hierarchy.

Domain code raises a :class:`PerflibError` (or a subclass) that says what is wrong and, when
a file is to blame, carries its ``path`` and ``line``; it never prints. The CLI turns any of
them into one line, ``perflib <verb>: error: <what> (<file>[:<line>])``, and exit code 2.
"""

from __future__ import annotations

from pathlib import Path


class PerflibError(Exception):
    """A user-facing error: bad input, not a bug. ``str()`` is the one line to print."""

    def __init__(
        self, message: str, *, path: str | Path | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line

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
