"""The log redaction filter: a secret that reaches a log call never reaches the output."""

from __future__ import annotations

import io
import logging

from service.logsetup import FORMAT, RedactSecrets


def _logger(stream: io.StringIO) -> logging.Logger:
    log = logging.getLogger(f"test-redact-{id(stream)}")
    log.propagate = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactSecrets(["s3cr3t-token", "pw-123456", "ab"]))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    return log


def test_messages_arguments_and_tracebacks_are_redacted() -> None:
    out = io.StringIO()
    log = _logger(out)
    log.info("calling /api?token=%s&modulo=cpf", "s3cr3t-token")
    log.warning("login with pw-123456 failed")
    try:
        raise RuntimeError("bad url http://x/api?token=s3cr3t-token")
    except RuntimeError:
        log.exception("upstream error")
    text = out.getvalue()
    assert "s3cr3t-token" not in text and "pw-123456" not in text
    assert "calling /api?token=***&modulo=cpf" in text
    assert "RuntimeError: bad url http://x/api?token=***" in text
    # values shorter than 4 characters are not treated as secrets (they would mangle text)
    log.info("about tabs")
    assert "about tabs" in out.getvalue()
