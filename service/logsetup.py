"""Logging to stderr with secrets redacted (defence in depth: code never logs them anyway)."""

from __future__ import annotations

import logging
import sys

from service.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactSecrets(logging.Filter):
    """Replace any configured secret value in a formatted record with ``***``."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if any(s in msg for s in self.secrets):
            for s in self.secrets:
                msg = msg.replace(s, "***")
            record.msg, record.args = msg, None
        if record.exc_info and record.exc_text is None and self.secrets:
            text = logging.Formatter().formatException(record.exc_info)
            for s in self.secrets:
                text = text.replace(s, "***")
            record.exc_text, record.exc_info = text, None
        return True


def configure_logging(settings: Settings) -> None:
    """Root handler on stderr at LOG_LEVEL; httpx's request lines (with URLs) stay quiet."""
    level = (
        logging.DEBUG if settings.log_level in ("debug", "trace") else settings.log_level.upper()
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_service_handler", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._service_handler = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactSecrets(settings.secrets()))
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL at INFO, and the Work token lives in the query string.
    for name in ("httpx", "httpcore", "hpack"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
