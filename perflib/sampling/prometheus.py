"""Prometheus: a query client for any Prometheus-compatible API, and a local server.

The client speaks the HTTP API documented at
https://prometheus.io/docs/prometheus/latest/querying/api/ (``/api/v1/query``,
``/api/v1/query_range``, ``/api/v1/targets``), which Fly's managed VictoriaMetrics also
serves at ``https://api.fly.io/prometheus/<org>``. It retries what is worth retrying
(429 and 5xx answers, time-outs, refused connections) with exponential back-off and
``Retry-After``, and splits long ranges because Prometheus refuses a ``query_range``
that would return more than 11,000 points per series.

:class:`PrometheusServer` runs the real ``prometheus`` binary (Debian package
``prometheus``; ``scripts/install_prometheus.sh``) scraping a ``/metrics`` endpoint, so the
``process`` sampler is exercised against real PromQL locally, exactly as a deployed app's
own Prometheus would be queried.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from perflib.errors import PerflibError

log = logging.getLogger(__name__)

#: Prometheus refuses a range query returning more points than this per series
#: ("exceeded maximum resolution of 11,000 points per timeseries", promql/engine.go).
MAX_POINTS = 11_000
#: Answers worth retrying: rate limiting and transient server-side failures.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Never wait longer than this for one ``Retry-After``, whatever the server asks.
MAX_RETRY_AFTER_S = 120.0

INSTALL_HINT = (
    "run scripts/install_prometheus.sh (Debian/Ubuntu: apt-get install prometheus) "
    "or set PROMETHEUS_BINARY=/path/to/prometheus"
)


class PrometheusError(PerflibError, RuntimeError):
    """Base class: a Prometheus API could not give us an answer."""

    exit_code = 1


class PrometheusAuthError(PrometheusError):
    """The API rejected our credentials (HTTP 401/403)."""


class PrometheusQueryError(PrometheusError):
    """The API rejected the query itself (bad PromQL, bad parameters): retrying is useless."""


class PrometheusUnavailable(PrometheusError):
    """Transient failures went on after every retry (429, 5xx, time-outs, refused)."""


class PrometheusBinaryNotFound(PrometheusError):
    """No ``prometheus`` binary to start a local server with."""


class HeaderAuth(httpx.Auth):
    """Adds one ``Authorization`` header to every request without ever showing it.

    Why a class and not a default header: the value stays out of ``repr``s, rich
    tracebacks of locals and ``httpx.Client.headers``; :meth:`redact` scrubs it from any
    text we are about to show (server error bodies could echo it).
    """

    def __init__(self, value: str) -> None:
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._value
        yield request

    def redact(self, text: str) -> str:
        secret = self._value.split(" ", 1)[-1]
        # the whole credential, then each part of a multi-part one (FlyV1 a,b)
        for piece in [secret, *re.split(r"[\s,]+", secret)]:
            if len(piece) >= 8:
                text = text.replace(piece, "<redacted>")
        return text

    def __repr__(self) -> str:
        return "HeaderAuth(<redacted>)"

    __str__ = __repr__


@dataclass(frozen=True)
class Series:
    """One series of a query answer: its labels and its points (UTC seconds, float values)."""

    labels: dict[str, str]
    times: np.ndarray
    values: np.ndarray

    def label(self, name: str, default: str = "") -> str:
        return self.labels.get(name, default)


def to_unix(ts: datetime) -> float:
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: pass timezone-aware (UTC) times")
    return ts.timestamp()


def from_unix(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.3f}"


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): the server's ``Retry-After`` when
    given (bounded by :data:`MAX_RETRY_AFTER_S`), else ``base·2^attempt`` capped, with up to
    10 % jitter so concurrent clients do not retry in lock-step."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_S)
    delay = min(cap, base * (2**attempt))
    return delay * (1 + random.uniform(0, 0.1))


def send_with_retries(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    retries: int = 5,
    backoff: float = 0.5,
    max_delay: float = 30.0,
    what: str = "Prometheus",
    redact: Callable[[str], str] = lambda s: s,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """One HTTP request, retried on 429/5xx/time-outs/connection errors; other answers are
    returned for the caller to judge. Raises :class:`PrometheusUnavailable` when the
    retries run out; its message names the URL and the last failure, never credentials."""
    last = ""
    for attempt in range(retries + 1):
        try:
            response = client.request(method, url, params=params)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            last = f"{type(exc).__name__}: {redact(str(exc)) or 'no detail'}"
            delay = backoff_delay(attempt, backoff, max_delay)
        else:
            if response.status_code not in RETRY_STATUSES:
                return response
            last = f"HTTP {response.status_code}"
            delay = backoff_delay(attempt, backoff, max_delay, _retry_after(response))
        if attempt == retries:
            break
        log.warning(
            "%s %s: %s; retrying in %.1f s (attempt %d of %d)",
            what,
            url,
            last,
            delay,
            attempt + 2,
            retries + 1,
        )
        sleep(delay)
    raise PrometheusUnavailable(f"{what} {url}: {last} after {retries + 1} attempts")


class PrometheusClient:
    """Queries one Prometheus-compatible HTTP API (Prometheus, VictoriaMetrics, Fly)."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: HeaderAuth | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_points: int = MAX_POINTS,
        what: str = "Prometheus",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus URL must start with http:// or https://: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.retries, self.backoff, self.max_points, self.what = retries, backoff, max_points, what
        self._auth = auth
        self._http = httpx.Client(
            timeout=timeout, auth=auth, transport=transport, headers={"User-Agent": "perflib"}
        )
        self.requests_sent = 0

    def __repr__(self) -> str:
        return f"PrometheusClient({self.base_url!r}, auth={'<redacted>' if self._auth else None})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _redact(self, text: str) -> str:
        return self._auth.redact(text) if self._auth else text

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` and return the ``data`` member of a ``"status": "success"`` answer."""
        url = f"{self.base_url}{path}"
        self.requests_sent += 1
        response = send_with_retries(
            self._http,
            "GET",
            url,
            params=params,
            retries=self.retries,
            backoff=self.backoff,
            what=self.what,
            redact=self._redact,
        )
        if response.status_code in (401, 403):
            raise PrometheusAuthError(
                f"{self.what} {url}: HTTP {response.status_code}, credentials rejected"
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400 or not isinstance(body, dict):
            detail = ""
            if isinstance(body, dict):
                detail = f"{body.get('errorType', 'error')}: {body.get('error', '')}"
            else:
                detail = response.text[:300]
            raise PrometheusQueryError(
                f"{self.what} {url}: HTTP {response.status_code}: {self._redact(detail)}"
            )
        if body.get("status") != "success":
            raise PrometheusQueryError(
                f"{self.what} {url}: {self._redact(str(body.get('errorType')))}: "
                f"{self._redact(str(body.get('error')))}"
            )
        for warning in body.get("warnings") or []:
            log.warning("%s: %s", self.what, self._redact(str(warning)))
        return body.get("data")

    @staticmethod
    def _parse(data: Any) -> list[Series]:
        kind = data.get("resultType") if isinstance(data, dict) else None
        out: list[Series] = []
        for item in data.get("result", []) if kind in ("matrix", "vector") else []:
            points = item.get("values") or ([item["value"]] if "value" in item else [])
            times = np.array([float(p[0]) for p in points], dtype="float64")
            values = np.array([float(p[1]) for p in points], dtype="float64")
            out.append(Series(dict(item.get("metric") or {}), times, values))
        if kind not in ("matrix", "vector", None):
            raise PrometheusQueryError(f"unexpected resultType {kind!r} (want matrix or vector)")
        return out

    def query(self, promql: str, at: datetime | None = None) -> list[Series]:
        """Instant query (``/api/v1/query``); range vectors come back with their raw points."""
        params = {"query": promql}
        if at is not None:
            params["time"] = _fmt_num(round(to_unix(at), 3))
        return self._parse(self.get("/api/v1/query", params))

    def chunks(self, start: float, end: float, step: float) -> list[tuple[float, float]]:
        """Split [start, end] into ranges of at most ``max_points`` points on the same grid."""
        if step <= 0:
            raise ValueError("step must be positive")
        if end < start:
            raise ValueError("end is before start")
        out = []
        span = (self.max_points - 1) * step
        t = start
        while t <= end + 1e-9:
            out.append((t, min(t + span, end)))
            t = t + span + step
        return out

    def query_range(self, promql: str, start: datetime, end: datetime, step: float) -> list[Series]:
        """``/api/v1/query_range`` over [start, end] with ``step`` seconds; long windows are
        fetched in several requests and merged per label set (no point twice)."""
        merged: dict[tuple[tuple[str, str], ...], list[Series]] = {}
        for a, b in self.chunks(to_unix(start), to_unix(end), step):
            data = self.get(
                "/api/v1/query_range",
                {
                    "query": promql,
                    "start": _fmt_num(round(a, 3)),
                    "end": _fmt_num(round(b, 3)),
                    "step": _fmt_num(step),
                },
            )
            for s in self._parse(data):
                merged.setdefault(tuple(sorted(s.labels.items())), []).append(s)
        out = []
        for parts in merged.values():
            times = np.concatenate([p.times for p in parts])
            values = np.concatenate([p.values for p in parts])
            times, idx = np.unique(times, return_index=True)
            out.append(Series(parts[0].labels, times, values[idx]))
        return out

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets (``/api/v1/targets``), for their scrape interval."""
        data = self.get("/api/v1/targets", {"state": "active"})
        return list((data or {}).get("activeTargets") or [])

    def scrape_interval(self, labels: Mapping[str, str] | None = None) -> float | None:
        """The shortest scrape interval among active targets matching ``labels`` (seconds)."""
        best: float | None = None
        for target in self.targets():
            tl = target.get("labels") or {}
            if labels and any(tl.get(k) != v for k, v in labels.items()):
                continue
            seconds = parse_duration(str(target.get("scrapeInterval") or ""))
            if seconds and (best is None or seconds < best):
                best = seconds
        return best


def parse_duration(text: str) -> float | None:
    """A Prometheus duration (``1s``, ``15s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    total, num, i = 0.0, "", 0
    text = text.strip()
    if not text:
        return None
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            num += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        if unit not in units or not num:
            return None
        total += float(num) * units[unit]
        num = ""
        i += len(unit)
    return None if num else total


def promql_duration(seconds: float) -> str:
    """Seconds as a PromQL range duration (whole seconds, at least 1 s)."""
    return f"{max(1, math.ceil(seconds))}s"


# --- the local server -------------------------------------------------------------------------


def find_prometheus() -> str:
    """The ``prometheus`` binary: ``$PROMETHEUS_BINARY``, else on PATH, else /usr/bin."""
    env = os.environ.get("PROMETHEUS_BINARY")
    if env:
        if os.path.isfile(env) and os.access(env, os.X_OK):
            return env
        raise PrometheusBinaryNotFound(f"PROMETHEUS_BINARY={env} is not an executable file")
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None
    )
    if not found:
        raise PrometheusBinaryNotFound(f"no prometheus binary found: {INSTALL_HINT}")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrometheusServer:
    """A real Prometheus on 127.0.0.1 scraping ``targets`` (``/metrics`` URLs) every
    ``scrape_interval`` seconds, with its TSDB in a temporary directory removed on stop.

    Use as a context manager, or ``start()`` / ``stop()``. ``labels`` are attached to every
    target (e.g. ``{"app": "lead-enrichment"}``) so queries can filter like Fly's ``app``.
    """

    targets: Sequence[str]
    scrape_interval: float = 1.0
    job: str = "service"
    labels: Mapping[str, str] = field(default_factory=dict)
    binary: str | None = None
    port: int | None = None
    workdir: Path | None = None
    ready_timeout: float = 30.0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _own_workdir: bool = field(default=False, init=False)

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("PrometheusServer not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "prometheus.log"

    def config(self) -> dict[str, Any]:
        """The Prometheus configuration (JSON is valid YAML, so no YAML library needed)."""
        groups: dict[tuple[str, str], list[str]] = {}
        for target in self.targets:
            parts = urlsplit(target)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"scrape target must be an http(s) URL: {target!r}")
            groups.setdefault((parts.scheme, parts.path or "/metrics"), []).append(parts.netloc)
        interval = (
            promql_duration(self.scrape_interval)
            if self.scrape_interval >= 1
            else (f"{max(1, round(self.scrape_interval * 1000))}ms")
        )
        scrape_configs = []
        for i, ((scheme, path), netlocs) in enumerate(groups.items()):
            scrape_configs.append(
                {
                    "job_name": self.job if i == 0 else f"{self.job}-{i + 1}",
                    "scheme": scheme,
                    "metrics_path": path,
                    "scrape_interval": interval,
                    "scrape_timeout": interval,
                    "static_configs": [{"targets": netlocs, "labels": dict(self.labels)}],
                }
            )
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": scrape_configs,
        }

    def start(self) -> PrometheusServer:
        if self.process is not None:
            return self
        binary = self.binary or find_prometheus()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="perflib-prometheus-"))
            self._own_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(json.dumps(self.config(), indent=2) + "\n", encoding="utf-8")
        fixed_port = self.port is not None
        for _attempt in range(3):  # a free port can be taken between bind(0) and exec
            if not fixed_port:
                self.port = free_port()
            self._spawn(binary, cfg)
            try:
                self._wait_ready()
                return self
            except PrometheusError as exc:
                text = self._log_tail()
                self._kill()
                if fixed_port or "address already in use" not in text:
                    self._cleanup()
                    raise PrometheusError(f"{exc}\n{text}") from None
        self._cleanup()
        raise PrometheusError("prometheus could not bind a free port after 3 attempts")

    def _spawn(self, binary: str, cfg: Path) -> None:
        assert self.workdir is not None
        tsdb = self.workdir / "data"
        with self.log_path.open("ab") as logf:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={cfg}",
                    f"--storage.tsdb.path={tsdb}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1d",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches us; we stop it in order
            )

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise PrometheusError(f"prometheus exited with code {self.process.returncode}")
                try:
                    if http.get(f"{self.url}/-/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise PrometheusError(f"prometheus not ready after {self.ready_timeout:.0f} s")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _kill(self, timeout: float = 10.0) -> int | None:
        proc, self.process = self.process, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def _cleanup(self) -> None:
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self._own_workdir = False

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its temporary TSDB. Idempotent."""
        code = self._kill(timeout)
        self._cleanup()
        return code

    def client(self, **kwargs: Any) -> PrometheusClient:
        return PrometheusClient(self.url, what="local Prometheus", **kwargs)

    def wait_for_points(self, promql: str, points: int = 2, timeout: float = 30.0) -> None:
        """Block until ``promql`` (an instant vector) has ``points`` samples in the TSDB for
        every series, i.e. until rates over it can be computed."""
        deadline = time.monotonic() + timeout
        window = promql_duration(max(60.0, points * self.scrape_interval * 4))
        with self.client(retries=0) as c:
            while time.monotonic() < deadline:
                try:
                    result = c.query(f"count_over_time({promql}[{window}])")
                except PrometheusError:
                    result = []
                if result and all(float(s.values[-1]) >= points for s in result):
                    return
                time.sleep(self.scrape_interval / 2)
        raise PrometheusError(f"no {points} samples of {promql} after {timeout:.0f} s")

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_for_stack(
    base_url: str, *, scrape_interval: float = 1.0, labels: Mapping[str, str] | None = None
) -> PrometheusServer:
    """Start a Prometheus scraping ``base_url``'s ``/metrics`` (for ``perflib serve
    --prometheus``); the caller stops it (or uses it as a context manager)."""
    server = PrometheusServer(
        [base_url.rstrip("/") + "/metrics"],
        scrape_interval=scrape_interval,
        labels=dict(labels or {}),
    )
    return server.start()


def series_by_label(series: Iterable[Series], label: str = "instance") -> dict[str, Series]:
    """Index series by one label (the last wins if a label value repeats)."""
    return {s.label(label): s for s in series}
