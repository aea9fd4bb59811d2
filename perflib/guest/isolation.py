"""``--isolation guest``: the local stack with the app inside a Linux guest.

:class:`GuestStack` is a :class:`~perflib.stack.LocalStack` whose "service process" is a
QEMU guest running the app (the upstream emulators stay on the host, reachable from the
guest only through ``guestfwd`` of their loopback ports). :class:`GuestVm` plays the
process emulation's role for the runner (manifest, state, progress): the guest kernel
enforces the memory, its agent restarts the app on failure, :class:`GuestMonitor` turns
what the guest reports into samples and events. Under TCG the guest's CPU is 14-24x
slower than the host's: CPU and latency figures are flagged as not representative.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from perflib.fly.presets import Preset, parse_preset
from perflib.guest.boot import (
    APP_PORT,
    GUEST_HOST,
    Guest,
    GuestSpec,
    app_script,
    code_root,
    default_shares,
    minimal_roots,
)
from perflib.guest.control import GuestMonitor
from perflib.run.stack import (
    BASE_URL_ENV,
    SERVICE_ENV_VARS,
    LocalStack,
    StackError,
    _http_ok,
    log_tail,
)
from perflib.run.vm import EmulationSettings, VmState
from perflib.rundir import EventLog, SampleWriter
from perflib.sampling.local import Sampler

#: What the manifest and the analysis say about a TCG guest's CPU and latency figures.
TCG_NOTE = (
    "not representative: the guest ran under TCG (software CPU emulation, 14-24x slower "
    "than the host); CPU and latency figures are not the VM's, memory figures are"
)
_LOOPBACK = re.compile(r"(?<=[/@])(?:127\.0\.0\.1|localhost):(\d+)")
#: Guest boots take ~10 s to the agent and ~60 s to a healthy Python service under TCG.
GUEST_READY_TIMEOUT_S = 600.0


def representative(accelerator: str | None) -> dict[str, Any]:
    """Which figures of a guest run stand for the VM's (memory always; CPU only under KVM)."""
    fast = accelerator == "kvm"
    return {"memory": True, "cpu": fast, "latency": fast, "note": None if fast else TCG_NOTE}


def to_guest_env(env: dict[str, str], workdir: Path | None) -> tuple[dict[str, str], list[int]]:
    """Host loopback URLs → ``GUEST_HOST`` (forwarded ports listed); SQLite → the guest disk."""
    out: dict[str, str] = {}
    ports: set[int] = set()
    for key, value in env.items():
        for m in _LOOPBACK.finditer(value):
            ports.add(int(m.group(1)))
        value = _LOOPBACK.sub(lambda m: f"{GUEST_HOST}:{m.group(1)}", value)
        if workdir is not None and value.startswith("sqlite") and str(workdir) in value:
            value = value.replace(str(workdir), "/var/tmp")
        out[key] = value
    return out, sorted(ports)


class GuestStack(LocalStack):
    """The local stack with the app booted in a guest (``service`` is the QEMU process)."""

    def __init__(
        self,
        preset: Preset,
        *,
        sample_interval: float = 1.0,
        max_restarts: int = 10,
        accel: str = "auto",
        progress: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("ready_timeout", GUEST_READY_TIMEOUT_S)
        port = kwargs.pop("port", None)
        super().__init__(**kwargs)
        self.port = port  # the host end of the hostfwd; the app's own port is inside
        self.preset = preset
        self.sample_interval = sample_interval
        self.max_restarts = max_restarts
        self.accel = accel
        self.say = progress or (lambda _m: None)
        self.guest: Guest | None = None

    def guest_environment(self) -> tuple[dict[str, str], list[int]]:
        """Only the service's configuration crosses into the guest, rewritten for it."""
        keep = set(SERVICE_ENV_VARS) | set(BASE_URL_ENV.values()) | set(self.service_env)
        keep |= {"PYTHONUNBUFFERED", "LOG_LEVEL"}
        env = {k: v for k, v in self.service_environment().items() if k in keep}
        env["PORT"] = str(self.app.port or APP_PORT)
        return to_guest_env(env, self.workdir)

    def _spawn_service(self) -> subprocess.Popen:
        if self.guest is not None:
            self.stop_service()
        assert self.workdir is not None and self.port is not None
        env, forwards = self.guest_environment()
        app_port = self.app.port or APP_PORT
        shares = default_shares()
        cwd: Path | None = code_root()
        if self.app.cmd is not None:  # another app: its working directory is shared too
            cwd = Path.cwd()
            shares = minimal_roots([*shares, cwd]) if cwd != Path("/") else shares
        spec = GuestSpec(
            memory_mb=self.preset.memory_mb,
            cpus=self.preset.cpus,
            shares=shares,
            app_script=app_script(self.app.argv(self.python, "0.0.0.0", app_port), env, cwd),
            app_port=app_port,
            host_port=self.port,
            forwards=tuple(forwards),
            sample_interval=self.sample_interval,
            max_restarts=self.max_restarts,
            accel=self.accel,
        )
        self.guest = Guest(spec, self.workdir / "guest", progress=self.say)
        self.say(f"booting a {self.preset.memory_mb} MB Linux guest (about a minute under TCG)")
        self.guest.start()
        assert self.guest.proc is not None
        self.service = self.guest.proc
        if self.on_service_start is not None:
            self.on_service_start(self.guest.proc)
        return self.guest.proc

    def _wait_ready(self, what: str, url: str, proc: subprocess.Popen, log: Path) -> None:
        """As LocalStack's, but a guest whose agent gave up restarting the app fails at
        once (QEMU itself keeps running), quoting the app's output from inside."""
        if self.guest is None or what != "service":
            return super()._wait_ready(what, url, proc, log)
        deadline = time.monotonic() + self.ready_timeout
        agent_log, app_log = self.guest.ctl / "agent.log", self.guest.ctl / "service.log"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    f"the guest stopped (QEMU exit {proc.returncode}); console:\n"
                    f"{self.guest.console_tail()}"
                )
            if _http_ok(url):
                return None
            with contextlib.suppress(OSError):
                if " exhausted " in agent_log.read_text() + " ":
                    raise StackError(
                        f"the app exited {self.max_restarts + 1} times inside the guest before "
                        f"answering {url}; last lines of its output:\n{log_tail(app_log)}"
                    )
            time.sleep(0.5)
        raise StackError(
            f"the app did not answer 200 on {url} within {self.ready_timeout:g} s of the guest's "
            f"start; last lines of its output:\n{log_tail(app_log)}"
        )

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        env, _ = self.guest_environment()
        info["database_url"] = f"{env.get('DATABASE_URL')} (inside the guest)"
        return info

    def stop_service(self, timeout: float = 10) -> int | None:
        if self.guest is None:
            return None
        return self.guest.stop(timeout)


class GuestVm:
    """The runner's VM object for a guest run: what the guest did, and the manifest."""

    isolation = "guest"

    def __init__(
        self,
        preset: str | Preset,
        settings: EmulationSettings | None = None,
        *,
        events: EventLog | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.preset = parse_preset(preset, strict=False)
        # the guest kernel enforces memory; no host-side pinning, quota or watcher
        self.settings = replace(settings or EmulationSettings(), cpu_pin=False, cpu_quota=False)
        self.events = events
        self.run_dir = run_dir
        self.cores: tuple[int, ...] = ()
        self.throttled = False
        self.stack: GuestStack | None = None
        self.monitor: GuestMonitor | None = None
        self.healthy_after_s: float | None = None
        self.qemu_rss_mb: float | None = None

    def make_stack(self, **kwargs: Any) -> GuestStack:
        kwargs["on_service_start"] = self.attach
        self.stack = GuestStack(self.preset, max_restarts=self.settings.max_restarts, **kwargs)
        return self.stack

    def attach(self, _proc: subprocess.Popen) -> None:
        """The guest was launched: follow its reports from now on."""
        assert self.stack is not None and self.stack.guest is not None
        if self.monitor is not None:
            self.monitor.stop()
        self.monitor = GuestMonitor(
            self.stack.guest,
            events=self.events,
            run_dir=self.run_dir or self.stack.workdir,  # serve: the stack's own files
            memory_limit_mb=self.preset.memory_mb,
        )
        self.monitor.start()

    def start(self) -> None:
        """The app answered its health check (the stack waited for it)."""
        guest = self.guest
        if guest is not None and guest.started_at is not None:
            import time

            self.healthy_after_s = round(time.time() - guest.started_at, 1)
            self.qemu_rss_mb = guest.qemu_rss_mb()

    def stop(self) -> None:
        if self.guest is not None:
            rss = self.guest.qemu_rss_mb()
            if rss is not None:
                self.qemu_rss_mb = max(rss, self.qemu_rss_mb or 0.0)
        if self.monitor is not None:
            self.monitor.stop()

    @property
    def guest(self) -> Guest | None:
        return self.stack.guest if self.stack is not None else None

    @property
    def state(self) -> VmState:
        m = self.monitor.state if self.monitor is not None else None
        if m is None:
            return VmState()
        return VmState(
            oom_kills=m.oom_kills,
            restarts=m.restarts,
            peak_memory_mb=round(m.peak_memory_mb, 3),
            restart_exhausted=m.restart_exhausted,
        )

    def memory_mb(self) -> float | None:
        last = self.monitor.state.last if self.monitor is not None else None
        return None if last is None else last.used_mb

    def throttled_seconds(self) -> float:
        return 0.0

    def sampler(self, interval: float) -> GuestSampler:
        return GuestSampler(self, interval)

    def manifest(self) -> dict[str, Any]:
        """The manifest's ``vm`` object: isolation, accelerator, kernel, guest MemTotal."""
        guest = self.guest
        accel = guest.accelerator if guest else None
        mon = self.monitor.state if self.monitor else None
        result = {k: v for k, v in self.state.__dict__.items() if k != "events"}
        return {
            "preset": self.preset.name,
            "size": self.preset.size,
            "cpu_kind": self.preset.cpu_kind,
            "cpus": self.preset.cpus,
            "memory_mb": self.preset.memory_mb,
            "fly_valid": self.preset.fly_valid,
            "isolation": "guest",
            "emulation": {
                "memory": True,
                "memory_by": "guest kernel",
                "cpu_pin": False,
                "cpu_quota": False,
                "quota_method": None,
                "guest_overhead_mb": 0.0,  # the guest's own kernel and init are real
                "max_restarts": self.settings.max_restarts,
            },
            "guest": {
                "accelerator": accel,
                "kernel_version": (mon.kernel_version if mon else None)
                or (guest.kernel_version if guest else None),
                "mem_total_mb": round(mon.mem_total_mb, 3) if mon and mon.mem_total_mb else None,
                "vcpus": mon.vcpus if mon else None,
                "boot_to_agent_s": round(guest.ready_after_s, 1)
                if guest and guest.ready_after_s
                else None,
                "boot_to_healthy_s": self.healthy_after_s,
                "qemu_rss_mb": round(self.qemu_rss_mb, 1) if self.qemu_rss_mb else None,
                "shares": [str(p) for p in guest.spec.shares] if guest else [],
                "forwards": list(guest.spec.forwards) if guest else [],
            },
            "representative": representative(accel),
            "result": result | {"throttled_s": 0.0},
        }


class GuestSampler(Sampler):
    """Samples from inside the guest (the monitor writes them once it has the sink)."""

    source: ClassVar[str] = "guest"

    def __init__(self, vm: GuestVm, interval: float = 1.0) -> None:
        self.vm = vm
        self.interval = interval
        self.errors: list[str] = []

    def start(self, sink: SampleWriter, events: EventLog) -> None:
        if self.vm.monitor is not None:
            self.vm.monitor.poll()  # boot-time samples stay in guest-samples.csv only
            self.vm.monitor.attach_sink(sink)

    def stop(self) -> None:
        if self.vm.monitor is not None:
            self.vm.monitor.poll()
