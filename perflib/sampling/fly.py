"""The Fly source: Fly's managed Prometheus plus the Machines API's events and ``fly logs``,
merged into one ``events.jsonl`` (:func:`perflib.fly.merge_events`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import httpx

from perflib.fly import (
    MACHINES_API,
    FlyError,
    FlyToken,
    Machine,
    MachinesClient,
    find_flyctl,
    machine_events,
    merge_events,
    parse_time,
    prometheus_url,
    read_flyctl_logs,
)
from perflib.rundir import EventLog, SampleWriter, iso
from perflib.sampling.local import Sampler
from perflib.sampling.prometheus import (
    from_unix,
)
from perflib.sampling.remote import (
    FLY_QUERIES,
    FLY_RESOLUTION_S,
    THROTTLE_EVENT_PCT,
    FetchResult,
    ProcessSampler,
    PrometheusSampler,
    Query,
)


class FlySampler(PrometheusSampler):
    """Source ``fly``: Fly's managed Prometheus, per Machine (``instance`` = Machine ID),
    plus Machine events (OOM kills, exits, restarts) from the Machines API."""

    source: ClassVar[str] = "fly"
    queries: ClassVar[Mapping[str, Query]] = FLY_QUERIES
    default_resolution: ClassVar[float] = FLY_RESOLUTION_S

    def __init__(
        self,
        app: str,
        *,
        org: str | None = None,
        base_url: str | None = None,
        token: FlyToken | None = None,
        machines_api: str | None = MACHINES_API,
        fly_logs: bool = False,
        settle_s: float | None = 30.0,
        transport: httpx.BaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        if not app:
            raise FlyError("a Fly app name is required (--app / --fly-app)")
        self.app = app
        self.token = token or FlyToken.from_env()
        super().__init__(
            base_url or prometheus_url(org),
            labels={"app": app},
            auth=self.token.auth(),
            what="Fly Prometheus",
            settle_s=settle_s,
            transport=transport,
            **kwargs,
        )
        self.machines_api = machines_api
        self.fly_logs = fly_logs
        self._transport = transport
        self.machines: dict[str, Machine] = {}

    def load_machines(self) -> list[Machine]:
        """Read the app's Machines (preset, state, checks, events); kept for memory limits."""
        if not self.machines_api:
            return []
        with MachinesClient(
            self.app,
            self.token,
            base_url=self.machines_api,
            retries=self.client.retries,
            backoff=self.client.backoff,
            transport=self._transport,
        ) as mc:
            machines = mc.list_machines()
        self.machines.update({m.id: m for m in machines})
        return machines

    def memory_limit(
        self, instance: str, t: float, values: Mapping[str, Mapping[str, Mapping[float, float]]]
    ) -> float | None:
        """The Machine's ``memory_mb`` when known (what Fly sells and the local emulation
        enforces), else the guest's MemTotal, which is somewhat below ``memory_mb``."""
        machine = self.machines.get(instance)
        if machine is not None and machine.memory_mb:
            return float(machine.memory_mb)
        if self.memory_limit_mb is not None:
            return self.memory_limit_mb
        return values.get("memory_total", {}).get(instance, {}).get(t)

    def fetch(self, start: datetime, end: datetime) -> FetchResult:
        warnings: list[str] = []
        if self.machines_api:
            try:
                self.load_machines()
            except FlyError as exc:
                warnings.append(f"fly: machine list unavailable: {exc}")
        result = super().fetch(start, end)
        events = list(result.events)
        if self.machines:
            events += machine_events(self.machines.values(), start, end)
        if self.fly_logs and find_flyctl():
            try:
                parsed = read_flyctl_logs(self.app)
                events += [
                    e for e in parsed.events if start <= (parse_time(e["time"]) or start) <= end
                ]
            except FlyError as exc:
                warnings.append(f"fly: logs unavailable: {exc}")
        result.events = merge_events(events)
        result.warnings = warnings + result.warnings
        return result

    def start(self, sink: SampleWriter, events: EventLog) -> None:
        super().start(sink, events)
        if self.machines_api:
            try:
                self.load_machines()
            except FlyError as exc:
                self._error(f"machine list: {exc}")

    def _metric_events(
        self, values: Mapping[str, Mapping[str, Mapping[float, float]]], warnings: list[str]
    ) -> list[dict[str, Any]]:
        """``fly_instance_exit_oom`` stepping to 1 → ``oom_killed``; sustained throttling →
        one ``throttled`` event per stretch, with the lowest burst balance seen."""
        events: list[dict[str, Any]] = []
        for instance, points in sorted(values.get("exit_oom", {}).items()):
            prev: float | None = None
            for t in sorted(points):
                v = points[t]
                if v >= 0.5 and prev is not None and prev < 0.5:
                    events.append(
                        {
                            "time": iso(from_unix(t)),
                            "type": "oom_killed",
                            "detail": {
                                "instance": instance,
                                "source": "prometheus",
                                "metric": "fly_instance_exit_oom",
                            },
                        }
                    )
                elif v >= 0.5 and prev is None:
                    warnings.append(
                        f"fly: instance {instance}: fly_instance_exit_oom was "
                        "already 1 when the window began (an OOM kill before it)"
                    )
                prev = v
        balance = values.get("cpu_balance", {})
        for instance, points in sorted(values.get("throttled", {}).items()):
            stretch: list[float] = []
            for when in [*sorted(points), None]:  # None closes the last stretch
                if (
                    when is not None
                    and points[when] > THROTTLE_EVENT_PCT
                    and (not stretch or when - stretch[-1] <= self.step * 1.5)
                ):
                    stretch.append(when)
                    continue
                if stretch:
                    pct = [points[x] for x in stretch]
                    seen = balance.get(instance, {})
                    bal = [b for x in stretch if (b := seen.get(x)) is not None]
                    events.append(
                        {
                            "time": iso(from_unix(stretch[0])),
                            "type": "throttled",
                            "detail": {
                                "instance": instance,
                                "source": "prometheus",
                                "until": iso(from_unix(stretch[-1])),
                                "max_throttled_pct": round(max(pct), 3),
                                "mean_throttled_pct": round(sum(pct) / len(pct), 3),
                                "min_cpu_balance_s": round(min(bal), 3) if bal else None,
                            },
                        }
                    )
                    stretch = []
                if t is not None and points[t] > THROTTLE_EVENT_PCT:
                    stretch = [t]
        return events


# --- factories for the runner and the CLI ------------------------------------------------------


def remote_samplers(
    *, fly_app: str | None, fly_org: str | None, prometheus_url: str | None, interval: float
) -> list[Sampler]:
    """The samplers ``perflib run`` adds for ``--fly-app`` / ``--prometheus``.

    Raises :class:`perflib.fly.FlyTokenMissing` (before any load starts) when ``--fly-app``
    is given without ``FLY_API_TOKEN``; the caller should exit 2 with its message.
    """
    out: list[Sampler] = []
    if fly_app:
        out.append(FlySampler(fly_app, org=fly_org, interval=interval, fly_logs=True))
    if prometheus_url:
        out.append(ProcessSampler(prometheus_url, interval=interval, settle_s=None))
    return out
