"""``perflib run``: one command from a load profile to a complete, self-describing run directory.

Without ``--base-url`` it starts the local stack with the service under an emulated Fly VM
(:mod:`perflib.run.vm`), waits for ``/health``, runs k6 (one process, or N processes each on
its own execution segment), samples resources for the whole run, stops everything and
writes ``manifest.json`` last, so a manifest that says ``ok`` describes complete data.
With ``--base-url`` it drives that URL and samples whatever the samplers can reach.

Live figures (VUs, requests, errors) come from k6's REST API (``--address``), not from
re-reading the NDJSON it is still writing.

Exit codes (also in ``docs/runs.md``): see the ``EXIT_*`` constants.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

import perflib
from perflib.errors import Interrupted, PerflibError, deferred_stop, interrupt_exit_code, signal_of
from perflib.fly.presets import Preset, parse_preset
from perflib.ingest.scan import K6_TREND_STATS_ARG
from perflib.profiles import Profile, check_time_scale, get_profile
from perflib.run.vm import EmulationSettings, VmEmulator
from perflib.rundir import EventLog, RunDir, SampleWriter, iso, utcnow
from perflib.sampling.local import LocalSampler, Sampler
from perflib.tooling import REPO_ROOT, ToolNotFoundError, find_k6, git_commit, k6_version

EXIT_OK = 0
EXIT_ERROR = 1  # k6 or the lab failed in another way (see manifest exit.message)
EXIT_USAGE = 2  # bad arguments: unknown profile, bad preset, bad time scale
EXIT_K6_NOT_FOUND = 3
EXIT_UNREACHABLE = 4  # the target never answered /health (or the local stack did not start)
EXIT_OOM = 5  # the run finished, but the emulated VM OOM-killed the service
EXIT_THRESHOLDS = 99  # k6's own code: thresholds failed; a result, not a crash
EXIT_INTERRUPTED = 130  # Ctrl-C: k6 stopped gracefully, partial data kept
EXIT_TERMINATED = 143  # SIGTERM (CI time-out, docker stop, systemd): as Ctrl-C
EXIT_HANGUP = 129  # SIGHUP (terminal closed): as Ctrl-C
#: --base-url: how long a target that does not answer /health is given (a Fly app that
#: scaled to zero answers within a few seconds; a wrong URL should not cost a minute)
REMOTE_HEALTH_TIMEOUT = 5.0

K6_THRESHOLDS_FAILED = 99
TREND_STATS = K6_TREND_STATS_ARG  # k6 --summary-trend-stats; the manifest records it


@dataclass
class RunResult:
    run_dir: Path
    exit_code: int
    status: str
    message: str
    k6_exit_codes: list[int | None] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK


class RunError(PerflibError):
    """A run that could not start; carries the exit code that says why."""

    def __init__(self, message: str, exit_code: int, path: str | Path | None = None) -> None:
        super().__init__(message, path=path, exit_code=exit_code)


# --- helpers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base_url: str, timeout: float = 30.0, path: str = "/health") -> str | None:
    """None once ``base_url + path`` answers 2xx, else the last error seen at the deadline."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            left = max(0.5, min(5.0, deadline - time.monotonic()))  # a black hole: no 5 s waits
            with urllib.request.urlopen(base_url.rstrip("/") + path, timeout=left) as resp:
                if 200 <= resp.status < 300:
                    return None
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)  # "Connection refused", not "[Errno 111] …"
            last = getattr(reason, "strerror", None) or str(reason)
        if time.monotonic() >= deadline:
            return last
        time.sleep(0.25)


def execution_segments(n: int) -> tuple[list[str], str]:
    """k6 ``--execution-segment`` values for N equal parts and the shared sequence."""
    if n < 1:
        raise ValueError("segments must be >= 1")
    cuts = [Fraction(i, n) for i in range(n + 1)]

    def fmt(f: Fraction) -> str:
        return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"

    segs = [f"{fmt(a)}:{fmt(b)}" for a, b in zip(cuts, cuts[1:], strict=False)]
    return segs, ",".join(fmt(c) for c in cuts)


def _k6_metrics(port: int) -> dict[str, dict[str, Any]] | None:
    """k6's live metrics from its REST API, ``{name: sample}``; None when not answering."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/metrics", timeout=0.5) as r:
            data = json.loads(r.read())
    except (OSError, ValueError):
        return None
    out: dict[str, dict[str, Any]] = {}
    for item in data.get("data", []):
        out[item.get("id", "")] = (item.get("attributes") or {}).get("sample") or {}
    return out


@dataclass
class _K6Proc:
    index: int
    proc: subprocess.Popen
    port: int
    output: str
    summary: str
    log: Path
    log_fh: Any
    live: dict[str, float] = field(default_factory=dict)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def samplers_for(args: argparse.Namespace) -> list[Sampler]:
    """Samplers for a remote target named on the command line (``--prometheus``, ``--fly-app``).

    Extension point: each entry of :data:`SAMPLER_FACTORIES` gets the parsed arguments and
    returns zero or more samplers, so a new source is a new class plus one factory.
    """
    samplers: list[Sampler] = []
    for factory in SAMPLER_FACTORIES:
        samplers.extend(factory(args))
    return samplers


def _remote_factory(args: argparse.Namespace) -> list[Sampler]:
    """``--fly-app`` / ``--prometheus`` → perflib.sampling.fly."""
    if not (getattr(args, "fly_app", None) or getattr(args, "prometheus", None)):
        return []
    from perflib.fly import FlyError
    from perflib.sampling.fly import remote_samplers

    try:
        return remote_samplers(
            fly_app=getattr(args, "fly_app", None),
            fly_org=getattr(args, "fly_org", None),
            prometheus_url=getattr(args, "prometheus", None),
            interval=getattr(args, "sample_interval", 1.0),
        )
    except (FlyError, ValueError) as exc:  # e.g. FLY_API_TOKEN missing: exit 2, no traceback
        raise RunError(str(exc), EXIT_USAGE) from None


SAMPLER_FACTORIES: list[Callable[[argparse.Namespace], list[Sampler]]] = [_remote_factory]


class _Progress:
    """The live line: elapsed/total, VUs, requests, errors, memory."""

    def __init__(self, console: Console, profile: Profile, total_s: float, enabled: bool) -> None:
        self.console = console
        self.profile = profile
        self.total_s = total_s
        self.enabled = enabled
        self.live: Live | None = None
        self.t0 = time.monotonic()
        self._last_plain = 0.0

    def __enter__(self) -> _Progress:
        if self.enabled and self.console.is_terminal:
            self.live = Live(Text(""), console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, procs: Sequence[_K6Proc], vm: VmEmulator | None) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.t0
        vus = sum(p.live.get("vus", 0) for p in procs)
        reqs = sum(p.live.get("reqs", 0) for p in procs)
        errs = sum(p.live.get("errors", 0) for p in procs)
        dropped = sum(p.live.get("dropped", 0) for p in procs)
        pct = 100.0 * errs / reqs if reqs else 0.0
        line = (
            f"{self.profile.name}  {elapsed:5.0f}/{self.total_s:.0f} s  VUs {vus:.0f}  "
            f"requests {reqs:.0f}  errors {errs:.0f} ({pct:.1f}%)"
        )
        if dropped:
            line += f"  dropped {dropped:.0f}"
        if vm is not None:
            mem = vm.memory_mb()
            if mem is not None:
                line += f"  memory {mem:.0f}/{vm.preset.memory_mb} MB"
            if vm.throttled:
                line += "  [throttled]"
            if vm.state.oom_kills:
                line += f"  OOM kills {vm.state.oom_kills}"
        if self.live is not None:
            self.live.update(Text(line))
        elif time.monotonic() - self._last_plain >= 10:
            self._last_plain = time.monotonic()
            self.console.print(line, highlight=False)


# --- the run -------------------------------------------------------------------------------


def run_profile(
    profile: str | Path | Profile,
    *,
    base_url: str | None = None,
    vm: str | Preset | None = "shared-cpu-1x:1024mb",
    emulation: EmulationSettings | None = None,
    time_scale: float = 1.0,
    out: str | Path | None = None,
    segments: int = 1,
    lead_id: str | None = None,
    upstreams: str = "nominal",
    sample_interval: float = 1.0,
    samplers: Sequence[Sampler] = (),
    k6_env: Mapping[str, str] | None = None,
    service_env: Mapping[str, str] | None = None,
    emulator_env: Mapping[str, str] | None = None,
    progress: bool = True,
    health_timeout: float | None = None,
    console: Console | None = None,
) -> RunResult:
    """Run one load profile and record it; never raises for a failed *run* (see exit_code).

    Raises :class:`RunError` (with ``exit_code``) only for bad arguments found before
    anything started. ``k6_env`` adds k6 ``-e`` variables; ``service_env`` and
    ``emulator_env`` go to the local service and the upstream emulators. A
    KeyboardInterrupt (Ctrl-C, or SIGTERM/SIGHUP under :func:`perflib.errors.stop_signals`)
    stops everything and returns an ``interrupted`` result with exit code 128 + signal.
    ``health_timeout`` defaults to 60 s for the local stack, :data:`REMOTE_HEALTH_TIMEOUT`
    for ``base_url``.
    """
    if health_timeout is None:
        health_timeout = 60.0 if base_url is None else REMOTE_HEALTH_TIMEOUT
    console = console or Console(stderr=True)
    try:
        prof = profile if isinstance(profile, Profile) else get_profile(profile)
        check_time_scale(time_scale)
        preset = None if vm is None else parse_preset(vm, strict=False)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        raise RunError(str(exc), EXIT_USAGE) from exc
    if segments < 1:
        raise RunError(f"--segments must be >= 1, got {segments}", EXIT_USAGE)
    if sample_interval <= 0:
        raise RunError("--sample-interval must be positive", EXIT_USAGE)
    settings = emulation or EmulationSettings()
    # absolute from here on: k6 runs with its cwd in the script's directory, and every other
    # child gets these paths too; a path relative to the user's cwd would point elsewhere
    run_path = (
        Path(out) if out else Path("runs") / (utcnow().strftime("%Y%m%dT%H%M%SZ") + f"-{prof.name}")
    ).absolute()
    if (run_path / "manifest.json").exists():
        raise RunError(f"{run_path} already holds a run; choose another --out", EXIT_USAGE)
    local = base_url is None
    seg_values, seg_sequence = execution_segments(segments)
    if segments == 1:
        outputs, summaries = ["k6.ndjson.gz"], ["k6-summary.json"]
    else:
        outputs = [f"k6-{i}.ndjson.gz" for i in range(segments)]
        summaries = [f"k6-summary-{i}.json" for i in range(segments)]
    manifest: dict[str, Any] = {
        "schema": 1,
        "profile": prof.name,
        "script": _relative(prof.script),
        "executor": prof.executor,
        "stages": prof.scaled_stages(time_scale),
        "start_load": prof.start,  # VUs / rate before the first stage (stage labels)
        "time_scale": time_scale,
        "target": {
            "kind": "local" if local else "url",
            "base_url": base_url,
            "app": vars(settings.app).copy() if local and settings.app is not None else None,
        },
        "upstreams": upstreams if local else None,
        "vm": _vm_manifest(preset, None),
        "isolation": settings.isolation if local else None,
        "versions": {
            "k6": None,
            "perflib": perflib.__version__,
            "python": sys.version.split()[0],
            "git_commit": git_commit(),
        },
        "started_at": iso(utcnow()),
        "ended_at": None,
        "k6_started_at": None,
        "k6_ended_at": None,
        "exit": {"status": "running", "k6": None, "service": None, "message": ""},
        "segments": segments,
        "execution_segments": seg_values if segments > 1 else None,
        "k6_outputs": outputs,
        "k6_summaries": summaries,
        "summary_trend_stats": TREND_STATS.split(","),
        "lead_id": lead_id,
        "sample_interval_s": sample_interval,
        "samplers": [],
    }
    run = RunDir.create(run_path, manifest)
    manifest = run.manifest  # one dict: later edits must reach save_manifest()
    events = EventLog(run.events_path)
    sink = SampleWriter(run.samples_path, with_instance=bool(samplers))  # remote: per instance
    run.service_log_path.touch()
    state: dict[str, Any] = {
        "interrupted": False,
        "message": "",
        "exit": None,
        "k6_codes": [],
        "service_code": None,
    }
    active: list[Sampler] = []
    try:
        _execute(
            prof,
            run,
            manifest,
            preset,
            settings,
            base_url,
            local,
            upstreams,
            service_env,
            emulator_env,
            sample_interval,
            samplers,
            active,
            time_scale,
            lead_id,
            k6_env,
            seg_values,
            seg_sequence,
            outputs,
            summaries,
            events,
            sink,
            state,
            console,
            progress,
            health_timeout,
        )
    except KeyboardInterrupt as exc:
        _interrupted(state, events, exc, "setup")
    # a second Ctrl-C / SIGTERM during the clean-up is noted, not raised: the children must
    # be stopped and the manifest written whatever arrives now
    with deferred_stop() as noted:
        emulator, stack, workdir = state.get("emulator"), state.get("stack"), state.get("workdir")
        _teardown(active, emulator, stack, state, manifest, events)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        if noted and not state["interrupted"]:
            _interrupted(state, events, Interrupted(noted[0]), "teardown")
        return _finish(run, state, events, sink, console, emulator=state.get("emulator"))


def _interrupted(state: dict[str, Any], events: EventLog, exc: BaseException, during: str) -> None:
    """Record a stop by Ctrl-C, SIGTERM or SIGHUP (which one, and in which phase)."""
    if state["interrupted"]:
        return
    sig = signal_of(exc)
    state.update(interrupted=True, signal=sig.name, during=during)
    events.record("interrupted", {"during": during, "signal": sig.name})


def _execute(
    prof: Profile,
    run: RunDir,
    manifest: dict[str, Any],
    preset: Preset | None,
    settings: EmulationSettings,
    base_url: str | None,
    local: bool,
    upstreams: str,
    service_env: Mapping[str, str] | None,
    emulator_env: Mapping[str, str] | None,
    sample_interval: float,
    samplers: Sequence[Sampler],
    active: list[Sampler],
    time_scale: float,
    lead_id: str | None,
    k6_env: Mapping[str, str] | None,
    seg_values: list[str],
    seg_sequence: str,
    outputs: list[str],
    summaries: list[str],
    events: EventLog,
    sink: SampleWriter,
    state: dict[str, Any],
    console: Console,
    progress: bool,
    health_timeout: float,
) -> None:
    """Start target, samplers and k6; failures are recorded in ``state`` (teardown is the caller's)."""
    try:
        k6_bin = find_k6()
    except ToolNotFoundError as exc:
        state.update(exit=EXIT_K6_NOT_FOUND, status="error", message=str(exc))
        return
    if shutil.which(k6_bin) is None:
        state.update(
            exit=EXIT_K6_NOT_FOUND,
            status="error",
            message=f"k6 not found: {k6_bin!r} is not an executable",
        )
        return
    manifest["versions"]["k6"] = k6_version()
    emulator: VmEmulator | None = None
    if local:
        from perflib.run.stack import LocalStack  # the service helper's module

        guest = settings.isolation == "guest"
        vm_preset = preset or parse_preset("shared-cpu-1x:1024mb")
        if guest:
            from perflib.guest.isolation import GuestVm

            emulator = GuestVm(vm_preset, settings, events=events, run_dir=run.path)  # type: ignore[assignment]
        else:
            emulator = VmEmulator(
                vm_preset, settings, events=events, service_log=run.service_log_path
            )
        state["emulator"] = emulator
        manifest["vm"] = emulator.manifest()
        workdir = Path(tempfile.mkdtemp(prefix="perflib-stack-"))
        state["workdir"] = workdir
        stack_kw: dict[str, Any] = {
            "upstreams": upstreams,
            "workdir": workdir,
            "service_log": run.service_log_path,
            "service_env": dict(service_env or {}),
            "emulator_env": dict(emulator_env or {}),
            "app": settings.app,
        }
        if guest:
            stack = emulator.make_stack(  # type: ignore[attr-defined]
                **stack_kw, sample_interval=sample_interval, progress=console.print
            )
        else:
            stack = LocalStack(**stack_kw, on_service_start=emulator.attach)
            emulator.bind(stack)
        state["stack"] = stack
        console.print(f"starting the local stack ({emulator.preset.name}) …", highlight=False)
        try:
            stack.start()
        except Exception as exc:
            state.update(
                exit=EXIT_UNREACHABLE,
                status="error",
                message=f"local stack did not start: {type(exc).__name__}: {exc}",
            )
            return
        base_url = stack.base_url
        manifest["target"]["base_url"] = base_url
        emulator.start()
        if guest:
            active.append(emulator.sampler(sample_interval))  # type: ignore[attr-defined]
        else:
            active.append(LocalSampler(emulator, interval=sample_interval))  # the VM's metric
    assert base_url is not None
    if not local:
        console.print(f"checking {base_url}/health …", highlight=False)
    health_path = settings.app.health_path if settings.app is not None else "/health"
    problem = wait_healthy(base_url, timeout=health_timeout, path=health_path)
    if problem is not None:
        state.update(
            exit=EXIT_UNREACHABLE,
            status="error",
            message=(
                f"target {base_url} not reachable: GET {health_path} → {problem} "
                f"(gave it {health_timeout:g} s)"
            ),
        )
        return
    active.extend(samplers)
    manifest["samplers"] = [s.source for s in active]
    for s in active:
        s.start(sink, events)
    run.save_manifest()
    _run_k6(
        k6_bin,
        prof,
        run,
        base_url,
        time_scale,
        lead_id,
        k6_env,
        seg_values,
        seg_sequence,
        outputs,
        summaries,
        emulator,
        events,
        state,
        console,
        progress,
    )


def _vm_manifest(preset: Preset | None, emulator: VmEmulator | None) -> dict[str, Any] | None:
    if emulator is not None:
        return emulator.manifest()
    if preset is None:
        return None
    return {
        "preset": preset.name,
        "size": preset.size,
        "cpu_kind": preset.cpu_kind,
        "cpus": preset.cpus,
        "memory_mb": preset.memory_mb,
        "fly_valid": preset.fly_valid,
        "emulation": {
            "memory": False,
            "cpu_pin": False,
            "cpu_quota": False,
            "quota_method": None,
            "guest_overhead_mb": 0.0,
        },
        "declared": True,
    }


def _run_k6(
    k6_bin: str,
    prof: Profile,
    run: RunDir,
    base_url: str,
    time_scale: float,
    lead_id: str | None,
    k6_env: Mapping[str, str] | None,
    seg_values: list[str],
    seg_sequence: str,
    outputs: list[str],
    summaries: list[str],
    emulator: VmEmulator | None,
    events: EventLog,
    state: dict[str, Any],
    console: Console,
    progress: bool,
) -> None:
    env_vars = {"BASE_URL": base_url, "TIME_SCALE": repr(float(time_scale))}
    if lead_id:
        env_vars["LEAD_ID"] = lead_id
    env_vars.update(k6_env or {})
    proc_env = os.environ | {"K6_NO_USAGE_REPORT": "true", "K6_WEB_DASHBOARD": "false"}
    procs: list[_K6Proc] = []
    other_cores: set[int] | None = None
    if emulator is not None and emulator.settings.cpu_pin:
        other_cores = set(os.sched_getaffinity(0)) - set(emulator.cores) or None
    run.manifest["k6_started_at"] = iso(utcnow())
    for i, out_name in enumerate(outputs):
        port = free_port()
        cmd = [
            k6_bin,
            "run",
            "--quiet",
            "--no-color",
            "--out",
            f"json={run.path / out_name}",
            f"--summary-export={run.path / summaries[i]}",
            "--summary-trend-stats",
            TREND_STATS,
            "--address",
            f"127.0.0.1:{port}",
        ]
        if len(outputs) > 1:
            cmd += [
                "--execution-segment",
                seg_values[i],
                "--execution-segment-sequence",
                seg_sequence,
            ]
        for key, value in env_vars.items():
            cmd += ["-e", f"{key}={value}"]
        cmd.append(str(prof.script.absolute()))
        log = run.path / ("k6.log" if len(outputs) == 1 else f"k6-{i}.log")
        fh = log.open("w", encoding="utf-8")
        # own session: Ctrl-C reaches us, and we stop k6 gracefully ourselves
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=proc_env,
                cwd=str(prof.script.absolute().parent),
                start_new_session=True,
            )
        except OSError as exc:  # not executable, wrong architecture, …
            fh.close()
            for p in procs:
                p.proc.kill()
                p.proc.wait()
                p.log_fh.close()
            state.update(
                exit=EXIT_K6_NOT_FOUND,
                status="error",
                message=f"k6 could not be started ({k6_bin}): {exc}",
            )
            return
        if other_cores:  # keep the load generator off the emulated vCPU
            with contextlib.suppress(OSError):
                os.sched_setaffinity(proc.pid, other_cores)
        procs.append(_K6Proc(i, proc, port, out_name, summaries[i], log, fh))
    state["k6_procs"] = procs  # teardown kills any a second signal left running
    run.save_manifest()
    total = prof.duration_s(time_scale)
    try:
        with _Progress(console, prof, total, progress) as bar:
            while any(p.proc.poll() is None for p in procs):
                for p in procs:
                    if p.proc.poll() is None:
                        m = _k6_metrics(p.port)
                        if m is not None:
                            p.live = {
                                "vus": float((m.get("vus") or {}).get("value", 0)),
                                "reqs": float((m.get("http_reqs") or {}).get("count", 0)),
                                "errors": float((m.get("http_req_failed") or {}).get("passes", 0)),
                                "dropped": float(
                                    (m.get("dropped_iterations") or {}).get("count", 0)
                                ),
                            }
                bar.update(procs, emulator)
                time.sleep(0.5)
            bar.update(procs, emulator)
    except KeyboardInterrupt as exc:
        _interrupted(state, events, exc, "k6")
        with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
            console.print(
                f"interrupted ({state['signal']}): stopping k6 gracefully (Ctrl-C again to kill) …"
            )
        for p in procs:
            with contextlib.suppress(OSError):
                p.proc.send_signal(signal.SIGINT)
        try:
            for p in procs:
                p.proc.wait(timeout=60)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            for p in procs:
                with contextlib.suppress(OSError):
                    p.proc.kill()
    finally:
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.proc.wait(timeout=30)
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()
            p.log_fh.close()
            code = p.proc.returncode
            state["k6_codes"].append(code)
            requests = p.live.get("reqs")
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                summary = json.loads((run.path / p.summary).read_text(encoding="utf-8"))
                requests = summary["metrics"]["http_reqs"]["count"]
            events.record(
                "k6_exit",
                {
                    "segment": p.index,
                    "exit_code": code,
                    "output": p.output,
                    "summary": p.summary,
                    "requests": requests,
                },
            )
        run.manifest["k6_ended_at"] = iso(utcnow())


def _teardown(
    active: Sequence[Sampler],
    emulator: VmEmulator | None,
    stack: Any,
    state: dict[str, Any],
    manifest: dict[str, Any],
    events: EventLog,
) -> None:
    for p in state.get("k6_procs", []):
        if p.proc.poll() is None:
            with contextlib.suppress(OSError):
                p.proc.kill()
            p.proc.wait()
    for s in active:
        with contextlib.suppress(Exception):
            s.stop()
        if getattr(s, "errors", None):
            manifest.setdefault("sampler_errors", {})[s.source] = list(s.errors)[:20]
    if emulator is not None:
        emulator.stop()  # before the stack stops the service: no restart of a planned stop
        manifest["vm"] = emulator.manifest()
    if stack is not None:
        code = None
        try:
            code = stack.stop_service()
        except Exception as exc:
            events.record("service_exit", {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            with contextlib.suppress(Exception):
                stack.stop()
        state["service_code"] = code
        events.record("service_exit", {"exit_code": code, "planned": True})


def _interrupt_code(state: dict[str, Any]) -> int:
    """128 + the recorded signal (130, 143, 129)."""
    return interrupt_exit_code(Interrupted(signal.Signals[state["signal"]]))


def _ran(run: RunDir, state: dict[str, Any]) -> str:
    """'interrupted by SIGTERM during k6 after 12.0 of 30 s of load' — what the data covers."""
    text = f"interrupted by {state['signal']} during {state['during']}"
    m = run.manifest
    if m.get("k6_started_at") and m.get("k6_ended_at"):
        from datetime import datetime

        ran = (
            datetime.fromisoformat(m["k6_ended_at"].replace("Z", "+00:00"))
            - datetime.fromisoformat(m["k6_started_at"].replace("Z", "+00:00"))
        ).total_seconds()
        planned = sum(st["duration_s"] for st in m.get("stages") or [])
        text += f" after {ran:.1f} of {planned:g} s of load"
    return text


def _finish(
    run: RunDir,
    state: dict[str, Any],
    events: EventLog,
    sink: SampleWriter,
    console: Console,
    emulator: VmEmulator | None = None,
) -> RunResult:
    codes: list[int | None] = state["k6_codes"]
    oom = emulator is not None and emulator.state.oom_kills > 0
    if state.get("exit") is not None:
        exit_code, status = state["exit"], state.get("status", "error")
        message = state["message"]
        if state["interrupted"]:
            exit_code, status = _interrupt_code(state), "interrupted"
    elif state["interrupted"]:
        exit_code, status, message = _interrupt_code(state), "interrupted", _ran(run, state)
    elif oom:
        exit_code, status = EXIT_OOM, "oom_killed"
        assert emulator is not None
        message = (
            f"the service was OOM-killed {emulator.state.oom_kills}× at "
            f"{emulator.preset.memory_mb} MB; {emulator.state.restarts} restart(s), "
            f"{emulator.state.healthy_restarts} healthy, "
            f"{emulator.state.downtime_s:.1f} s down"
        )
    elif codes and all(c == 0 for c in codes):
        exit_code, status, message = EXIT_OK, "ok", "ok"
    elif codes and all(c in (0, K6_THRESHOLDS_FAILED) for c in codes):
        exit_code, status, message = EXIT_THRESHOLDS, "thresholds_failed", "k6 thresholds failed"
    else:
        exit_code, status = EXIT_ERROR, "error"
        message = f"k6 exited with {codes}; see k6.log"
    k6_code: int | None
    if not codes:
        k6_code = None
    elif len(codes) == 1:
        k6_code = codes[0]
    else:
        k6_code = next((c for c in codes if c not in (0, None)), codes[0])
    run.manifest["exit"] = {
        "status": status,
        "k6": k6_code,
        "k6_segments": codes,
        "service": state.get("service_code"),
        "message": message,
        "code": exit_code,
    }
    if state["interrupted"]:  # which signal, in which phase
        run.manifest["exit"] |= {"signal": state["signal"], "during": state["during"]}
    run.manifest["ended_at"] = iso(utcnow())
    with contextlib.suppress(Exception):
        sink.close()
    with contextlib.suppress(Exception):
        events.close()
    run.save_manifest()
    if status != "error":  # errors are the caller's to report (the CLI: one error line)
        style = (
            "green" if exit_code == EXIT_OK else "yellow" if exit_code == EXIT_THRESHOLDS else "red"
        )
        with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
            console.print(f"[{style}]{status}[/{style}]: {message}", highlight=False)
    return RunResult(run.path, exit_code, status, message, codes, run.manifest)
