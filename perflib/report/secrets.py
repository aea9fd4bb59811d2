"""Keeping secrets out of executed notebooks, HTML reports and logs.

papermill writes every parameter twice into the output notebook — as source in the
``injected-parameters`` cell and in ``metadata.papermill.parameters`` — and a kernel may
print anything. So the rules are: secrets reach notebooks only through the environment
(``FLY_API_TOKEN`` …), secret-named parameters are refused before execution, and every
executed notebook, HTML file and log line is redacted and scanned for the secret values
afterwards (defence in depth: a value that still leaks is an error, not a warning).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from perflib.errors import PerflibError

REDACTED = "***"

#: Parameter or environment-variable names that hold secrets (case-insensitive, anywhere).
SECRET_NAME = re.compile(
    r"token|secret|passw(or)?d|passwd|\bpwd\b|_pwd|pwd_|api_?key|access_?key|private_?key"
    r"|(^|_)key($|_)|credential|(^|_)auth($|_|orization)|(^|_)pass($|_)",
    re.IGNORECASE,
)
#: Environment variables that always count as secret, whatever the pattern says.
ALWAYS_SECRET_ENV = ("FLY_API_TOKEN", "FLY_ACCESS_TOKEN", "PERFLIB_DATABASE_URL", "DATABASE_URL")
#: Values shorter than this are not treated as secrets: replacing "1" everywhere would
#: mangle reports while protecting nothing.
MIN_SECRET_LEN = 6

#: Secrets recognisable by shape even when we were not told the value.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # user:password@ in URLs (SQLAlchemy, HTTP basic)
    (
        re.compile(r"(?P<pre>[a-z][a-z0-9+.\-]*://[^:/@\s\"']+:)[^@/\s\"']+(?=@)", re.I),
        r"\g<pre>***",
    ),
    # Fly tokens: "FlyV1 fm2_…" macaroons and bare fo1_/fm1_/fm2_ tokens
    (re.compile(r"FlyV1\s+[A-Za-z0-9_+/=,\-]+"), "FlyV1 ***"),
    (re.compile(r"\b(fo1|fm1|fm2)_[A-Za-z0-9_+/=\-]{10,}"), REDACTED),
    # Authorization headers
    (
        re.compile(
            r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(bearer|basic)\s+)[A-Za-z0-9._~+/=\-]+"
        ),
        r"\1***",
    ),
)


_URL = re.compile(r"[a-z][a-z0-9+.\-]*://", re.I)
_URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.\-]*://[^:/@\s]+:(?P<password>[^@/\s]+)@", re.I)


class SecretParameterError(PerflibError, ValueError):
    """A parameter whose name says it holds a secret was passed to a notebook."""


def is_secret_name(name: str) -> bool:
    return name.upper() in ALWAYS_SECRET_ENV or bool(SECRET_NAME.search(name))


def secret_values(env: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> list[str]:
    """The secret values currently in the environment (plus ``extra``), longest first.

    Longest first so a secret that contains another is replaced whole.
    """
    env = os.environ if env is None else env
    values: set[str] = set()
    for k, v in env.items():
        if not (is_secret_name(k) and v):
            continue
        if k.upper().endswith(("_URL", "_DSN", "_URI")) and _URL.match(v):
            # a connection URL: its password is the secret; host and database may be shown
            url = _URL_CREDENTIALS.match(v)
            if url:
                values.add(url.group("password"))
        else:
            values.add(v)
    values |= set(extra)
    return sorted((v for v in values if len(v) >= MIN_SECRET_LEN), key=len, reverse=True)


def check_parameters(parameters: Mapping[str, Any]) -> None:
    """Refuse secret-named notebook parameters: papermill would write their values to disk."""
    bad = sorted(k for k in parameters if is_secret_name(k))
    if bad:
        raise SecretParameterError(
            f"secret-named notebook parameter(s) {', '.join(bad)}: papermill writes parameters "
            "into the executed notebook; pass secrets through the environment instead "
            "(e.g. FLY_API_TOKEN) and read them with os.environ in the notebook"
        )


def redact_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with every secret-named parameter's value replaced by ``***``."""
    return {k: (REDACTED if is_secret_name(k) else v) for k, v in parameters.items()}


def redact_text(text: str, values: Iterable[str] = ()) -> str:
    """``text`` with the given secret values and secret-shaped strings replaced by ``***``."""
    for value in values:
        if value:
            text = text.replace(value, REDACTED)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def _redact_injected_source(source: str) -> str:
    """Blank secret-named assignments in papermill's injected-parameters cell."""
    out = []
    for line in source.splitlines(keepends=True):
        m = re.match(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if m and is_secret_name(m.group(2)):
            end = "\n" if line.endswith("\n") else ""
            line = f'{m.group(1)}{m.group(2)} = "{REDACTED}"{end}'
        out.append(line)
    return "".join(out)


def redact_notebook(nb: dict[str, Any], values: Iterable[str] = ()) -> dict[str, Any]:
    """Redact an executed notebook (nbformat dict): parameters, sources, outputs, metadata.

    Works on the JSON text so nothing is missed (tracebacks, HTML outputs, widget state),
    escaping each value the way JSON would store it.
    """
    pm = nb.get("metadata", {}).get("papermill", {})
    if isinstance(pm.get("parameters"), dict):
        pm["parameters"] = redact_parameters(pm["parameters"])
    for cell in nb.get("cells", []):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            cell["source"] = _redact_injected_source(src)
    text = json.dumps(nb)
    for value in values:
        if value:
            text = text.replace(json.dumps(value)[1:-1], REDACTED)
    text = redact_text(text)
    return json.loads(text)


def redact_file(path: Path, values: Iterable[str] = ()) -> None:
    """Redact a notebook (``.ipynb``) or text file (HTML, logs) in place."""
    values = list(values)
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        new = (
            json.dumps(redact_notebook(json.loads(raw), values), indent=1, ensure_ascii=False)
            + "\n"
        )
    else:
        new = redact_text(raw, values)
    if new != raw:
        path.write_text(new, encoding="utf-8")


def find_leaks(paths: Iterable[Path], values: Iterable[str]) -> list[str]:
    """``path`` names in which a secret value still appears (raw or JSON-escaped)."""
    values = [v for v in values if v]
    leaks = []
    for path in paths:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if any(v in text or json.dumps(v)[1:-1] in text for v in values):
            leaks.append(str(path))
    return leaks


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secret values from every record it sees."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        super().__init__()
        self.values = list(values)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        red = redact_text(msg, self.values)
        if red != msg:
            record.msg, record.args = red, None
        return True
