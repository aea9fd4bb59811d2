"""Fly.io: the token and the Machines API, with Machine events in the ``events.jsonl`` shape.

``fly status`` does not report memory, and OOM kills show up in three places, each
partial: Machine events (``exit_event.oom_killed``, the Machines API, last few events per
Machine), log lines (:mod:`perflib.fly.events`) and the ``fly_instance_exit_oom`` metric.
This module reads the first; :func:`perflib.fly.events.merge_events` folds the duplicates
the three sources produce for one OOM into a single event.

Shapes: fly-go ``machine_types.go`` (Machine, MachineEvent); docs/fly.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from perflib.errors import PerflibError
from perflib.fly.events import LogParse, parse_log_lines, parse_time
from perflib.rundir import iso
from perflib.sampling.prometheus import HeaderAuth, PrometheusError, send_with_retries

TOKEN_ENV = "FLY_API_TOKEN"
MACHINES_API = "https://api.machines.dev/v1"
PROMETHEUS_API = "https://api.fly.io/prometheus"
DEFAULT_ORG = "personal"  # the slug of every Fly user's personal organisation


class FlyError(PerflibError, RuntimeError):
    """A Fly API or flyctl call failed; the message says which and why (never the token)."""

    exit_code = 1


class FlyTokenMissing(FlyError):
    """``FLY_API_TOKEN`` is not set."""

    def __init__(self) -> None:
        super().__init__(
            f"{TOKEN_ENV} is not set: create a read-only token with `fly tokens create readonly`"
            f" (or use `fly auth token`) and `export {TOKEN_ENV}=...`"
        )


class FlyToken:
    """The Fly API token, read from the environment only and never shown.

    Tokens from ``fly tokens create`` are printed as ``FlyV1 fm2_…`` and must be sent with
    that scheme; plain tokens (``fly auth token``) are sent as ``Bearer``
    (fly.io/docs/machines/api: ``Authorization: Bearer …`` or ``Authorization: FlyV1 …``).
    """

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value:
            raise FlyTokenMissing()
        self._header = value if value.startswith("FlyV1 ") else f"Bearer {value}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FlyToken:
        value = (env if env is not None else os.environ).get(TOKEN_ENV, "")
        if not value.strip():
            raise FlyTokenMissing()
        return cls(value)

    def auth(self) -> HeaderAuth:
        return HeaderAuth(self._header)

    def __repr__(self) -> str:
        return "FlyToken(<redacted>)"

    __str__ = __repr__


def prometheus_url(org: str | None) -> str:
    """Fly's managed Prometheus for an organisation (``$FLY_ORG``, else ``personal``)."""
    return f"{PROMETHEUS_API}/{org or os.environ.get('FLY_ORG') or DEFAULT_ORG}"


# --- machines ----------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    status: str  # passing | warning | critical
    output: str = ""
    updated_at: str | None = None


@dataclass
class Machine:
    """The parts of a fly-go ``Machine`` the lab uses; ``raw`` keeps the rest."""

    id: str
    name: str
    state: str
    region: str
    cpu_kind: str | None
    cpus: int | None
    memory_mb: int | None
    instance_id: str | None = None
    process_group: str | None = None
    checks: list[Check] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def preset(self) -> str | None:
        """``shared-cpu-1x:512mb`` style (docs/contracts.md's PRESET), from ``config.guest``."""
        if not (self.cpu_kind and self.cpus and self.memory_mb):
            return None
        family = "shared-cpu" if self.cpu_kind == "shared" else self.cpu_kind
        return f"{family}-{self.cpus}x:{self.memory_mb}mb"

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> Machine:
        if not isinstance(obj, Mapping) or not obj.get("id"):
            raise FlyError(f"not a Machine object (no id): {str(obj)[:120]}")
        config = obj.get("config") or {}
        guest = config.get("guest") or {}
        checks = [
            Check(
                str(c.get("name", "")),
                str(c.get("status", "")),
                str(c.get("output", "")),
                c.get("updated_at"),
            )
            for c in obj.get("checks") or []
        ]
        return cls(
            id=str(obj["id"]),
            name=str(obj.get("name", "")),
            state=str(obj.get("state", "")),
            region=str(obj.get("region", "")),
            cpu_kind=guest.get("cpu_kind"),
            cpus=_int_or_none(guest.get("cpus")),
            memory_mb=_int_or_none(guest.get("memory_mb")),
            instance_id=obj.get("instance_id"),
            process_group=(config.get("metadata") or {}).get("fly_process_group"),
            checks=checks,
            events=list(obj.get("events") or []),
            raw=dict(obj),
        )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def parse_machines(payload: Any) -> list[Machine]:
    """The JSON array of ``GET /v1/apps/{app}/machines`` (== ``fly machine list --json``)."""
    if not isinstance(payload, list):
        raise FlyError("machine list: expected a JSON array of Machine objects")
    return [Machine.from_api(m) for m in payload]


class MachinesClient:
    """Read-only Machines API client (``GET /apps/{app}/machines[/{id}]``), with retries.

    The API allows about 1 request/s per action with bursts of 3 (fly.io/docs/machines/api/working-with-machines-api), so 429s are
    expected and retried with ``Retry-After``.
    """

    def __init__(
        self,
        app: str,
        token: FlyToken,
        *,
        base_url: str = MACHINES_API,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not app:
            raise FlyError("a Fly app name is required (--app / --fly-app)")
        self.app, self.base_url = app, base_url.rstrip("/")
        self.retries, self.backoff = retries, backoff
        self._auth = token.auth()
        self._http = httpx.Client(
            timeout=timeout, auth=self._auth, transport=transport, headers={"User-Agent": "perflib"}
        )

    def __repr__(self) -> str:
        return f"MachinesClient({self.app!r}, {self.base_url!r}, token=<redacted>)"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MachinesClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        url = f"{self.base_url}/apps/{self.app}{path}"
        try:
            response = send_with_retries(
                self._http,
                "GET",
                url,
                params=params,
                retries=self.retries,
                backoff=self.backoff,
                what="Fly Machines API",
                redact=self._auth.redact,
            )
        except PrometheusError as exc:
            raise FlyError(str(exc)) from None
        if response.status_code in (401, 403):
            raise FlyError(
                f"Fly Machines API {url}: HTTP {response.status_code}, "
                f"{TOKEN_ENV} rejected (expired, or no access to app {self.app!r})"
            )
        if response.status_code == 404:
            raise FlyError(
                f"Fly Machines API {url}: HTTP 404, no app {self.app!r} (or no access to it)"
            )
        if response.status_code >= 400:
            raise FlyError(
                f"Fly Machines API {url}: HTTP {response.status_code}: "
                f"{self._auth.redact(response.text[:300])}"
            )
        try:
            return response.json()
        except ValueError:
            raise FlyError(f"Fly Machines API {url}: answer is not JSON") from None

    def list_machines(self, include_deleted: bool = False) -> list[Machine]:
        params = {"include_deleted": "true"} if include_deleted else None
        return parse_machines(self._get("/machines", params))

    def get_machine(self, machine_id: str) -> Machine:
        return Machine.from_api(self._get(f"/machines/{machine_id}"))


# --- machine events ----------------------------------------------------------------------------


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    ts = event.get("timestamp")
    if isinstance(ts, (int, float)):
        return datetime.fromtimestamp(
            ts / 1000, UTC
        )  # milliseconds (docs/guide.md#fly-oom-evidence)
    if isinstance(ts, str):
        return parse_time(ts)
    return None


def _exit_event(event: Mapping[str, Any]) -> Mapping[str, Any]:
    request = event.get("request") or {}
    return request.get("exit_event") or (request.get("MonitorEvent") or {}).get("exit_event") or {}


def machine_events(
    machines: Iterable[Machine], start: datetime | None = None, end: datetime | None = None
) -> list[dict[str, Any]]:
    """Machine events → ``events.jsonl`` rows, oldest first, inside [start, end] if given.

    ``exit`` with ``oom_killed`` → ``oom_killed``; other exits → ``service_exit``; a
    ``start`` after an earlier exit or stop of the same Machine → ``restart``; anything
    else (launch, first start, update, stop, …) → ``machine_<type>``.
    """
    out: list[dict[str, Any]] = []
    for machine in machines:
        ordered = sorted(
            machine.events, key=lambda e: _event_time(e) or datetime.min.replace(tzinfo=UTC)
        )
        seen_stop = False
        for event in ordered:
            when = _event_time(event)
            if when is None:
                continue
            fly_type = str(event.get("type", ""))
            detail: dict[str, Any] = {
                "instance": machine.id,
                "machine_name": machine.name,
                "region": machine.region,
                "fly_type": fly_type,
                "status": event.get("status"),
                "fly_source": event.get("source"),
                "source": "machines_api",
            }
            if fly_type == "exit":
                exit_event = _exit_event(event)
                exited_at = parse_time(str(exit_event.get("exited_at") or ""))
                when = exited_at or when
                detail.update(
                    {
                        k: exit_event.get(k)
                        for k in (
                            "exit_code",
                            "guest_exit_code",
                            "guest_signal",
                            "signal",
                            "oom_killed",
                            "requested_stop",
                            "restarting",
                        )
                        if k in exit_event
                    }
                )
                restart_count = (event.get("request") or {}).get("restart_count")
                if restart_count is not None:
                    detail["restart_count"] = restart_count
                kind = "oom_killed" if exit_event.get("oom_killed") else "service_exit"
                seen_stop = True
            elif fly_type in ("start", "restart"):
                kind = "restart" if (seen_stop or fly_type == "restart") else "machine_start"
            else:
                kind = f"machine_{fly_type or 'event'}"
                if fly_type in ("stop", "suspend"):
                    seen_stop = True
            if (start is not None and when < start) or (end is not None and when > end):
                continue
            out.append({"time": iso(when), "type": kind, "detail": detail})
    out.sort(key=lambda e: e["time"])
    return out


def machine_summary(machines: Iterable[Machine]) -> list[dict[str, Any]]:
    """One row per Machine: id, state, region, preset, checks passing/total (for a table)."""
    rows = []
    for m in machines:
        passing = sum(1 for c in m.checks if c.status == "passing")
        rows.append(
            {
                "id": m.id,
                "name": m.name,
                "state": m.state,
                "region": m.region,
                "preset": m.preset,
                "memory_mb": m.memory_mb,
                "checks": f"{passing}/{len(m.checks)}",
                "failing_checks": [c.name for c in m.checks if c.status != "passing"],
            }
        )
    return rows


# --- flyctl ---------------------------------------------------------------------------------


def find_flyctl() -> str | None:
    return shutil.which("flyctl") or shutil.which("fly")


def read_flyctl_logs(
    app: str, *, machine: str | None = None, timeout: float = 60.0, flyctl: str | None = None
) -> LogParse:
    """``fly logs -a APP --no-tail --json`` (the recent buffered lines) parsed into events.

    flyctl reads ``FLY_API_TOKEN`` from the environment itself; we pass nothing on its
    command line, so the token is not visible in the process list.
    """
    binary = flyctl or find_flyctl()
    if binary is None:
        raise FlyError("flyctl is not installed (https://fly.io/docs/flyctl/install/)")
    cmd = [binary, "logs", "-a", app, "--no-tail", "--json"]
    if machine:
        cmd += ["--machine", machine]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FlyError(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise FlyError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
        )
    return parse_log_lines(proc.stdout.splitlines())
