"""Local emulation of a Fly Machine preset for the service process.

What a Fly Machine imposes on an app, and how this module reproduces it on a laptop:

- **Memory.** A Fly Machine is a microVM with ``memory_mb`` of RAM and no swap by default;
  when the guest runs out, the guest kernel's OOM killer SIGKILLs the largest process, Fly's
  init notices the main child died, and the Machine restarts under the ``on-failure`` policy
  (max 10 retries) — see docs/guide.md#fly-oom-evidence. Here a watcher polls the memory of the
  service's process tree (RSS or PSS) plus a guest-OS overhead, kills the largest process
  with SIGKILL when the sum exceeds the preset, writes the kernel-style line Fly shows into
  ``service.log``, records ``oom_killed`` and ``restart`` events and restarts the service.
- **CPU.** One shared vCPU is 5 ms of CPU per 80 ms period (6.25 %), with a burst balance
  (start 5 s, max 500 s) that lets it run at 100 % until spent (docs/guide.md#fly-shared-cpu). The service is
  pinned to ``cpus`` cores; the balance is tracked here from the tree's CPU times, and only
  when it is exhausted is the process throttled to the baseline quota — with a cgroup
  (``cpu.cfs_quota_us`` in v1, ``cpu.max`` in v2, like Fly) when one can be created, else by
  SIGSTOP/SIGCONT duty-cycling. Throttled time is recorded.

Each dimension can be switched off; :meth:`VmEmulator.manifest` states what was active.
Fidelity limits are listed in ``docs/runs.md``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import psutil

from perflib.fly.burst import (
    CFS_PERIOD_US,
    INITIAL_BALANCE_S,
    MAX_BALANCE_S,
    SHARED_QUOTA_US_PER_CPU,
    BurstBalance,
)
from perflib.fly.presets import Preset, PresetError, parse_preset
from perflib.rundir import EventLog, utcnow

MIB = 1024 * 1024

#: Guest-OS memory a Fly Machine uses besides the app, in MiB. Why ~40 MB: the guest
#: kernel's own text/data/slab and the ``struct page`` array (~1.6 % of RAM) take roughly
#: 20-30 MB on a 256-1024 MB microVM, and Fly's init (a Rust binary, plus hallpass for SSH)
#: a further ~10 MB RSS. fly.md notes ``fly_instance_memory_mem_total`` sits somewhat below
#: ``memory_mb`` without an exact figure, so this is an estimate: override it with
#: ``--guest-overhead-mb`` once measured on a real Machine (``mem_total - mem_available``
#: of an idle Machine minus the app's RSS).
GUEST_OVERHEAD_MB = 40.0

# The shared-CPU quota and burst balance (CFS_PERIOD_US, SHARED_QUOTA_US_PER_CPU,
# INITIAL_BALANCE_S, MAX_BALANCE_S, BurstBalance) live in perflib.fly.burst: the analysis
# replays the same model over a run's samples.


def guest_overhead_for(memory_mb: float) -> tuple[float, str]:
    """(overhead MiB, source) for a size: the calibration table measured on real Linux guests
    (``perflib calibrate``, :mod:`perflib.guest.calibration`), else the 40 MB guess above."""
    from perflib.guest.calibration import load_table

    table = load_table()
    if table is None:
        return GUEST_OVERHEAD_MB, "guess (no calibration table)"
    return table.overhead_mb(memory_mb), table.label


#: Fly's default restart policy (fly-go MachineRestart: on-failure, max_retries 10).
MAX_RESTARTS = 10


@dataclass
class EmulationSettings:
    """Which parts of the VM to emulate and how."""

    memory: bool = True
    cpu_pin: bool = True
    cpu_quota: bool = True
    #: None = the calibrated table's figure for the preset (data/guest_memory.csv)
    guest_overhead_mb: float | None = None
    memory_metric: Literal["rss", "pss"] = "rss"
    #: seconds between memory/CPU checks of the watcher (the OOM reaction time)
    poll_interval: float = 0.1
    quota_method: Literal["auto", "cgroup", "signals"] = "auto"
    max_restarts: int = MAX_RESTARTS
    initial_balance_s: float = INITIAL_BALANCE_S
    max_balance_s: float = MAX_BALANCE_S
    #: leave throttling once this much balance has accrued again (hysteresis)
    resume_balance_s: float = 0.2
    #: cores to pin to; None = the last ``cpus`` cores this process may use
    cpu_cores: tuple[int, ...] | None = None
    #: ``process`` (this watcher) or ``guest`` (a real Linux guest, perflib.guest)
    isolation: Literal["process", "guest"] = "process"
    #: the app the VM runs (a perflib.run.stack.AppSpec); None = this project's service
    app: Any = None


class CpuThrottle(Protocol):
    method: str

    def add(self, pid: int) -> None: ...
    def set_throttled(self, on: bool) -> None: ...
    def throttled_seconds(self) -> float: ...
    def close(self) -> None: ...


def _cgroup_mounts() -> list[tuple[str, Path]]:
    """(version, mountpoint) of writable cgroup hierarchies with the cpu controller."""
    found: list[tuple[str, Path]] = []
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        mnt, fstype, opts = Path(parts[1]), parts[2], parts[3].split(",")
        if "rw" not in opts:
            continue
        if fstype == "cgroup" and "cpu" in opts:
            found.append(("v1", mnt))
        elif fstype == "cgroup2":
            with contextlib.suppress(OSError):
                if "cpu" in (mnt / "cgroup.controllers").read_text().split():
                    found.append(("v2", mnt))
    return found


def _remove_stale_groups(mnt: Path) -> None:
    """Remove empty groups left by a lab process that was killed before its cleanup."""
    for group in mnt.glob("perflib-vm-*"):
        try:
            owner = int(group.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if psutil.pid_exists(owner):
            continue
        with contextlib.suppress(OSError):
            if not (group / "cgroup.procs").read_text().split():
                group.rmdir()


class CgroupThrottle:
    """Throttling with the kernel's CFS bandwidth control, as Fly does (cpu.cfs_quota_us)."""

    method = "cgroup"

    def __init__(self, quota_us: int, period_us: int = CFS_PERIOD_US) -> None:
        self.quota_us, self.period_us = quota_us, period_us
        last_error: Exception | None = None
        for version, mnt in _cgroup_mounts():
            _remove_stale_groups(mnt)
            path = mnt / f"perflib-vm-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                path.mkdir()
            except OSError as exc:
                last_error = exc
                continue
            self.version, self.path, self.root = version, path, mnt
            try:
                if version == "v1":
                    (path / "cpu.cfs_period_us").write_text(str(period_us))
                    (path / "cpu.cfs_quota_us").write_text("-1")
                else:
                    (path / "cpu.max").write_text(f"max {period_us}")
            except OSError as exc:
                last_error = exc
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            return
        raise OSError(f"no writable cgroup with the cpu controller ({last_error})")

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def set_throttled(self, on: bool) -> None:
        if self.version == "v1":
            (self.path / "cpu.cfs_quota_us").write_text(str(self.quota_us) if on else "-1")
        else:
            (self.path / "cpu.max").write_text(f"{self.quota_us if on else 'max'} {self.period_us}")

    def throttled_seconds(self) -> float:
        """The kernel's own count of time the group spent throttled."""
        try:
            stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        except OSError:
            return 0.0
        if self.version == "v1":
            return int(stat.get("throttled_time", 0)) / 1e9
        return int(stat.get("throttled_usec", 0)) / 1e6

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.set_throttled(False)
        try:
            pids = (self.path / "cgroup.procs").read_text().split()
        except OSError:
            pids = []
        for pid in pids:  # survivors go back to the hierarchy's root before rmdir
            with contextlib.suppress(OSError):
                (self.root / "cgroup.procs").write_text(pid)
        for _ in range(20):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.05)


class SignalThrottle:
    """Fallback without cgroups: SIGSTOP/SIGCONT duty cycle (run quota, stop the rest)."""

    method = "signals"

    def __init__(
        self, quota_us: int, pids: Callable[[], list[int]], period_us: int = CFS_PERIOD_US
    ) -> None:
        self.quota_s, self.period_s = quota_us / 1e6, period_us / 1e6
        self._pids = pids
        self._on = threading.Event()
        self._quit = threading.Event()
        self._stopped_s = 0.0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="vm-signal-throttle", daemon=True)
        self._thread.start()

    def add(self, pid: int) -> None:  # the pid provider already sees new processes
        del pid

    def set_throttled(self, on: bool) -> None:
        if on:
            self._on.set()
        else:
            self._on.clear()

    def _signal(self, sig: int) -> None:
        for pid in self._pids():
            with contextlib.suppress(OSError):
                os.kill(pid, sig)

    def _loop(self) -> None:
        while not self._quit.is_set():
            if not self._on.wait(0.2):
                continue
            self._signal(signal.SIGCONT)
            time.sleep(self.quota_s)
            if not self._on.is_set():
                continue
            t0 = time.monotonic()
            self._signal(signal.SIGSTOP)
            time.sleep(self.period_s - self.quota_s)
            self._signal(signal.SIGCONT)
            with self._lock:
                self._stopped_s += time.monotonic() - t0

    def throttled_seconds(self) -> float:
        with self._lock:
            return self._stopped_s

    def close(self) -> None:
        self._on.clear()
        self._quit.set()
        self._thread.join(timeout=2)
        self._signal(signal.SIGCONT)


def cgroup_quota_available() -> bool:
    """Whether a child cgroup with the cpu controller can be created here."""
    try:
        CgroupThrottle(SHARED_QUOTA_US_PER_CPU).close()
        return True
    except OSError:
        return False


def _proc_status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _kb(status: dict[str, str], key: str) -> int:
    value = status.get(key, "0 kB").split()
    return int(value[0]) if value and value[0].isdigit() else 0


def oom_kill_line(pid: int, uptime_s: float) -> str:
    """The guest kernel's OOM line for ``pid``, in the shape ``fly logs`` shows (docs/guide.md#fly-oom-evidence)."""
    st = _proc_status(pid)
    comm = st.get("Name", "python")
    uid = (st.get("Uid", "0").split() or ["0"])[0]
    return (
        f"[{uptime_s:12.6f}] Out of memory: Killed process {pid} ({comm}) "
        f"total-vm:{_kb(st, 'VmSize')}kB, anon-rss:{_kb(st, 'RssAnon')}kB, "
        f"file-rss:{_kb(st, 'RssFile')}kB, shmem-rss:{_kb(st, 'RssShmem')}kB, "
        f"UID:{uid} pgtables:{_kb(st, 'VmPTE')}kB oom_score_adj:0"
    )


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants, parents first.

    Reads ``/proc/<pid>/task/<tid>/children`` (CONFIG_PROC_CHILDREN), ~30× cheaper than
    psutil's ``children(recursive=True)``, which scans every process on the machine: this
    runs 10 times a second next to the service, so its cost is the emulation's overhead.
    """
    if not Path(f"/proc/{pid}/task/{pid}/children").exists():
        try:
            return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    out = [pid]
    i = 0
    while i < len(out):
        current = out[i]
        i += 1
        try:
            tids = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{current}/task/{tid}/children", "rb") as fh:
                    out.extend(int(x) for x in fh.read().split())
            except OSError:
                continue
    return out


@dataclass
class VmState:
    """Counters of what the emulation did (for the manifest and tests)."""

    oom_kills: int = 0
    restarts: int = 0  # attempts, as Fly counts them against max_retries
    healthy_restarts: int = 0
    downtime_s: float = 0.0
    throttle_episodes: int = 0
    peak_memory_mb: float = 0.0
    restart_exhausted: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)


class VmEmulator:
    """Applies a :class:`Preset` to the service process(es) it is attached to.

    ``attach(proc)`` is the ``LocalStack(on_service_start=...)`` hook: it pins the new
    process and puts it under the CPU quota. ``restart`` is called after an OOM kill or a
    failed exit; it must start a new service and call ``attach`` (``LocalStack.start_service``
    does, through the hook) — use :meth:`bind` for a LocalStack.
    """

    def __init__(
        self,
        preset: str | Preset,
        settings: EmulationSettings | None = None,
        *,
        events: EventLog | None = None,
        service_log: Path | None = None,
        restart: Callable[[], object] | None = None,
    ) -> None:
        self.preset = parse_preset(preset, strict=False)
        self.settings = settings or EmulationSettings()
        self.overhead_source = "--guest-overhead-mb"
        if self.settings.guest_overhead_mb is None:  # a copy: settings may serve other sizes
            overhead, self.overhead_source = guest_overhead_for(self.preset.memory_mb)
            self.settings = replace(self.settings, guest_overhead_mb=overhead)
        self.events = events
        self.service_log = service_log
        self.restart = restart
        self.state = VmState()
        self.balance = BurstBalance(
            self.preset.cpu_capacity,
            self.settings.initial_balance_s * self.preset.cpus,
            self.settings.max_balance_s * self.preset.cpus,
        )
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._boot = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu_seen: dict[int, float] = {}
        self._ps: dict[int, psutil.Process] = {}
        self._throttled = False
        self._throttle_since: float | None = None
        self._throttled_base = 0.0
        self._memory_mb: float | None = None
        self._handled_exit: set[int] = set()
        self._pending_restart: tuple[float, str, int] | None = None
        self._restarting: threading.Thread | None = None
        self._down_since: float | None = None
        self.cores = self._choose_cores()
        self.throttle: CpuThrottle | None = None
        self.quota_method: str | None = None
        if self.quota_active:
            self.throttle = self._make_throttle()
            self.quota_method = self.throttle.method

    # --- configuration -------------------------------------------------------------
    @property
    def quota_active(self) -> bool:
        return self.settings.cpu_quota and self.preset.cpu_kind == "shared"

    def _choose_cores(self) -> tuple[int, ...]:
        if self.settings.cpu_cores:
            return tuple(self.settings.cpu_cores)
        available = sorted(os.sched_getaffinity(0))
        return tuple(available[-self.preset.cpus :])

    def _make_throttle(self) -> CpuThrottle:
        quota = SHARED_QUOTA_US_PER_CPU * self.preset.cpus
        method = self.settings.quota_method
        if method in ("auto", "cgroup"):
            try:
                return CgroupThrottle(quota)
            except OSError:
                if method == "cgroup":
                    raise
        return SignalThrottle(quota, self.pids)

    def bind(self, stack: Any) -> VmEmulator:
        """Use a LocalStack's ``start_service`` for restarts (its hook calls ``attach``)."""

        def _restart() -> object:
            with contextlib.suppress(Exception):
                stack.stop_service(timeout=1)
            return stack.start_service()

        self.restart = _restart
        return self

    def manifest(self) -> dict[str, Any]:
        """The manifest's ``vm`` object: preset and what was emulated."""
        return {
            "preset": self.preset.name,
            "size": self.preset.size,
            "cpu_kind": self.preset.cpu_kind,
            "cpus": self.preset.cpus,
            "memory_mb": self.preset.memory_mb,
            "fly_valid": self.preset.fly_valid,
            "isolation": "process",
            "emulation": {
                "memory": self.settings.memory,
                "cpu_pin": self.settings.cpu_pin,
                "cpu_quota": self.quota_active,
                "quota_method": self.quota_method,
                "guest_overhead_mb": self.settings.guest_overhead_mb,
                "guest_overhead_source": self.overhead_source,
                "memory_metric": self.settings.memory_metric,
                "poll_interval_s": self.settings.poll_interval,
                "cores": list(self.cores) if self.settings.cpu_pin else None,
                "baseline_cpus": self.preset.cpu_capacity if self.quota_active else None,
                "initial_balance_s": self.balance.initial_s if self.quota_active else None,
                "max_balance_s": self.balance.max_s if self.quota_active else None,
                "max_restarts": self.settings.max_restarts,
            },
            "result": {k: v for k, v in asdict(self.state).items() if k != "events"}
            | {"throttled_s": round(self.throttled_seconds(), 6)},
        }

    # --- process handling ----------------------------------------------------------
    @property
    def process(self) -> subprocess.Popen | None:
        return self._proc

    def attach(self, proc: subprocess.Popen) -> None:
        """Put a freshly started service under the VM (the ``on_service_start`` hook)."""
        with self._lock:
            self._proc = proc
            self._boot = time.monotonic()
            if self.settings.cpu_pin:
                self._pin(proc.pid)
            if self.throttle is not None:
                with contextlib.suppress(OSError):
                    self.throttle.add(proc.pid)

    def _pin(self, pid: int) -> None:
        cores = set(self.cores)
        tids = [pid]
        with contextlib.suppress(OSError):
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        for tid in tids:  # sched_setaffinity applies per thread; children inherit it
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cores)

    def _tree(self) -> list[psutil.Process]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return []
        tree: list[psutil.Process] = []
        cache: dict[int, psutil.Process] = {}
        for pid in tree_pids(proc.pid):
            p = self._ps.get(pid)
            if p is None:
                try:
                    p = psutil.Process(pid)
                except psutil.Error:
                    continue
            cache[pid] = p
            tree.append(p)
        self._ps = cache
        return tree

    def pids(self) -> list[int]:
        return [p.pid for p in self._tree()]

    def _measure(self, tree: list[psutil.Process]) -> tuple[float, float, dict[int, int]]:
        """(app memory MiB, CPU-seconds used since the last call, rss per pid)."""
        mem = 0
        used = 0.0
        rss: dict[int, int] = {}
        seen: dict[int, float] = {}
        for p in tree:
            try:
                with p.oneshot():
                    if self.settings.memory_metric == "pss":
                        value = p.memory_full_info().pss
                    else:
                        value = p.memory_info().rss
                    t = p.cpu_times()
            except psutil.Error:
                continue
            rss[p.pid] = value
            mem += value
            total = t.user + t.system
            seen[p.pid] = total
            used += max(0.0, total - self._cpu_seen.get(p.pid, 0.0))
        self._cpu_seen = seen
        return mem / MIB, used, rss

    def memory_mb(self) -> float | None:
        """Memory as the VM sees it at the last check (app + guest overhead), MiB."""
        return self._memory_mb

    def throttled_seconds(self) -> float:
        """Cumulative time the service was throttled by the quota."""
        if self.throttle is None:
            return self._throttled_base
        return self._throttled_base + self.throttle.throttled_seconds()

    @property
    def throttled(self) -> bool:
        return self._throttled

    def _record(self, type_: str, detail: dict[str, Any]) -> None:
        event = {"time": utcnow(), "type": type_, "detail": detail}
        self.state.events.append(event)
        if self.events is not None:
            self.events.record(type_, detail, time=event["time"])

    def _log(self, lines: list[str]) -> None:
        if self.service_log is None:
            return
        with self.service_log.open("a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))

    # --- the watcher ----------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="vm-emulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the service is left running) and release the CPU quota."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.wait_restarts(timeout=60)
        if self._down_since is not None:  # never came back: down until the end
            self.state.downtime_s += time.monotonic() - self._down_since
            self._down_since = None
        if self._throttled:
            self._set_throttled(False)
        if self.throttle is not None:
            total = self.throttled_seconds()
            self.throttle.close()
            self.throttle = None
            self._throttled_base = total

    def __enter__(self) -> VmEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.settings.poll_interval):
            now = time.monotonic()
            try:
                self.check(now - last)
            except Exception as exc:  # the watcher must survive a vanished process
                self._record("vm_error", {"error": f"{type(exc).__name__}: {exc}"})
            last = now

    def check(self, dt: float) -> None:
        """One watcher step: exit handling, memory limit, burst balance and throttling."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            code = proc.poll()
            if code is not None:
                restarting = self._restarting is not None and self._restarting.is_alive()
                if restarting:
                    return
                if self._pending_restart is not None:  # the last restart attempt failed
                    t_down, reason, exit_code = self._pending_restart
                    self._restart_after(t_down, reason=reason, exit_code=exit_code)
                elif proc.pid not in self._handled_exit:
                    self._handled_exit.add(proc.pid)
                    self._on_exit(proc, code, oom=False)
                return
            tree = self._tree()
            app_mb, used, rss = self._measure(tree)
            vm_mb = app_mb + self.settings.guest_overhead_mb
            self._memory_mb = vm_mb
            self.state.peak_memory_mb = max(self.state.peak_memory_mb, vm_mb)
            if self.quota_active:
                self.balance.update(used, dt)
                if not self._throttled and self.balance.exhausted:
                    self._set_throttled(True)
                elif self._throttled and self.balance.balance_s >= self.settings.resume_balance_s:
                    self._set_throttled(False)
            if self.settings.memory and vm_mb > self.preset.memory_mb and rss:
                self._oom_kill(proc, vm_mb, rss)

    def _set_throttled(self, on: bool) -> None:
        assert self.throttle is not None
        self.throttle.set_throttled(on)
        self._throttled = on
        now = time.monotonic()
        if on:
            self._throttle_since = now
            self.state.throttle_episodes += 1
            self._record(
                "throttled",
                {
                    "state": "start",
                    "balance_s": 0.0,
                    "quota": f"{SHARED_QUOTA_US_PER_CPU * self.preset.cpus}us/{CFS_PERIOD_US}us",
                    "method": self.quota_method,
                },
            )
        else:
            since = self._throttle_since or now
            self._record(
                "throttled",
                {
                    "state": "end",
                    "duration_s": round(now - since, 3),
                    "balance_s": round(self.balance.balance_s, 3),
                    "throttled_total_s": round(self.throttled_seconds(), 3),
                },
            )
            self._throttle_since = None

    def _oom_kill(self, proc: subprocess.Popen, vm_mb: float, rss: dict[int, int]) -> None:
        """Kill as the guest kernel would: SIGKILL the largest process, then reboot."""
        victim = max(rss, key=rss.__getitem__)
        uptime = time.monotonic() - self._boot
        line = oom_kill_line(victim, uptime)
        t_kill = time.monotonic()
        with contextlib.suppress(OSError):
            os.kill(victim, signal.SIGKILL)
        self.state.oom_kills += 1
        detail = {
            "pid": victim,
            "main_pid": proc.pid,
            "memory_mb": round(vm_mb, 3),
            "limit_mb": self.preset.memory_mb,
            "app_rss_mb": round(sum(rss.values()) / MIB, 3),
            "guest_overhead_mb": self.settings.guest_overhead_mb,
            "victim_rss_mb": round(rss[victim] / MIB, 3),
            "message": line.split("] ", 1)[1],
        }
        self._record("oom_killed", detail)
        lines = [line]
        if victim != proc.pid:
            self._log(lines)  # a worker died; the main process (and the VM) lives on
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        self._handled_exit.add(proc.pid)
        for p in self._tree_of(rss, exclude=victim):  # the VM reboots: nothing survives
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        lines += [
            " INFO Main child exited with signal (with signal 'SIGKILL', core dumped? false)",
            " INFO Process appears to have been OOM killed!",
            " INFO Starting clean up.",
            f"[{time.monotonic() - self._boot:12.6f}] reboot: Restarting system",
        ]
        self._log(lines)
        self._restart_after(t_kill, reason="oom_killed", exit_code=137)

    @staticmethod
    def _tree_of(rss: dict[int, int], exclude: int) -> list[int]:
        return [pid for pid in rss if pid != exclude]

    def _on_exit(self, proc: subprocess.Popen, code: int, *, oom: bool) -> None:
        """The service exited by itself: restart under ``on-failure`` unless it exited 0."""
        del oom
        exit_code = 128 - code if code < 0 else code
        self._record("service_exit", {"pid": proc.pid, "exit_code": exit_code})
        if exit_code != 0:
            self._restart_after(time.monotonic(), reason="exit", exit_code=exit_code)

    def _restart_after(self, t_down: float, *, reason: str, exit_code: int) -> None:
        """Restart under ``on-failure`` in a thread, so the watcher keeps enforcing the
        memory limit while the new service boots (a boot that outgrows the VM dies too)."""
        if self._down_since is None:
            self._down_since = t_down
        if self._stop.is_set() or self.restart is None:
            return
        if self._restarting is not None and self._restarting.is_alive():
            return
        if self.state.restarts >= self.settings.max_restarts:
            if not self.state.restart_exhausted:
                self.state.restart_exhausted = True
                self._pending_restart = None
                self._record("restart_exhausted", {"max_restarts": self.settings.max_restarts})
            return
        if self._throttled:
            self._set_throttled(False)
        self.balance.reset()  # a rebooted Machine starts again from the initial balance
        self._cpu_seen = {}
        self._ps = {}
        self.state.restarts += 1
        self._pending_restart = None
        self._restarting = threading.Thread(
            target=self._do_restart,
            args=(t_down, reason, exit_code, self.state.restarts),
            name="vm-restart",
            daemon=True,
        )
        self._restarting.start()

    def _do_restart(self, t_down: float, reason: str, exit_code: int, count: int) -> None:
        assert self.restart is not None
        try:
            self.restart()
        except Exception as exc:
            with self._lock:
                self._pending_restart = (t_down, reason, exit_code)
                self._record(
                    "restart",
                    {
                        "restart_count": count,
                        "reason": reason,
                        "ok": False,
                        "error": f"{type(exc).__name__}: {exc}",
                    },
                )
            return
        with self._lock:
            downtime = time.monotonic() - t_down
            self.state.downtime_s += downtime
            self.state.healthy_restarts += 1
            self._down_since = None
            new = self._proc
            self._record(
                "restart",
                {
                    "restart_count": count,
                    "reason": reason,
                    "exit_code": exit_code,
                    "ok": True,
                    "downtime_s": round(downtime, 3),
                    "pid": new.pid if new is not None else None,
                    "policy": "on-failure",
                    "max_retries": self.settings.max_restarts,
                },
            )

    def wait_restarts(self, timeout: float = 60) -> None:
        """Block until a restart in progress has finished (tests, orderly shutdown)."""
        thread = self._restarting
        if thread is not None:
            thread.join(timeout)


def describe(preset: Preset) -> str:
    """A one-line description for progress output."""
    quota = (
        f"{preset.cpu_capacity * 100:.2f}% baseline" if preset.cpu_kind == "shared" else "dedicated"
    )
    return f"{preset.name} ({preset.cpus} vCPU {preset.cpu_kind}, {quota})"


__all__ = [
    "Preset",
    "PresetError",
    "EmulationSettings",
    "VmEmulator",
    "BurstBalance",
    "parse_preset",
    "cgroup_quota_available",
    "oom_kill_line",
    "GUEST_OVERHEAD_MB",
    "describe",
    "tree_pids",
]
