"""``perflib serve``: the local stack in the foreground, its logs followed, until stopped."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from perflib.errors import PerflibError, deferred_stop, interrupt_exit_code, signal_of


def cli_serve(args: Any) -> int:
    """``perflib serve``: run the stack in the foreground until stopped.

    Ctrl-C, SIGTERM and SIGHUP stop the stack (the children run in their own sessions and
    would otherwise outlive us) and exit 130 / 143 / 129; the signals are the CLI's
    (:func:`perflib.errors.stop_signals`). Exit 2: bad or busy port, bad --vm; 1: the stack
    did not start or the service died.
    """
    from perflib.run.stack import port_in_use

    port = int(args.port)
    if not 0 < port < 65536:
        raise PerflibError(f"--port must be 1-65535, got {port}")
    if port_in_use(port):
        raise PerflibError(
            f"port {port} is already in use on 127.0.0.1; stop what listens there "
            f"or choose another with --port"
        )
    from perflib.run.stack import AppSpec

    vm = None
    vm_preset = getattr(args, "vm", None)
    try:
        app = AppSpec.from_args(args)
    except ValueError as exc:
        raise PerflibError(str(exc)) from None
    if getattr(args, "isolation", "process") == "guest":
        from perflib.guest.isolation import GuestVm

        try:
            vm = GuestVm(vm_preset or "shared-cpu-1x:1024mb")
        except ValueError as exc:
            raise PerflibError(f"--vm {vm_preset}: {exc}") from None
    elif vm_preset:
        from perflib.run import vm as vm_module

        try:
            vm = vm_module.VmEmulator(vm_preset)
        except ValueError as exc:
            raise PerflibError(f"--vm {vm_preset}: {exc}") from None
    return _serve(args, port, vm, app)


class LogFollower:
    """Echo the lines appended to a log file, prefixed (``service | …``), as ``tail -f`` does.

    The service writes its log file (which the VM emulator appends to as well); following
    the file shows everything, across restarts, without a second pipe the service could
    block on when the terminal is slow.
    """

    def __init__(self, path: Path, prefix: str, out: TextIO | None = None) -> None:
        self.path, self.prefix, self.out = path, prefix, out or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"follow-{prefix}", daemon=True)

    def start(self) -> LogFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        pos, partial = 0, b""
        while True:
            stopping = self._stop.is_set()  # one last read after stop(): nothing is lost
            with contextlib.suppress(OSError):
                with self.path.open("rb") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                    pos = fh.tell()
                *lines, partial = (partial + chunk).split(b"\n")
                for line in lines:
                    text = line.decode(errors="replace").rstrip("\r")
                    with contextlib.suppress(OSError, ValueError):
                        print(f"{self.prefix} | {text}", file=self.out, flush=True)
            if stopping:
                return
            self._stop.wait(0.2)


def _serve(args: Any, port: int, vm: Any, app: Any = None) -> int:
    from perflib.run.stack import LocalStack, StackError, log_tail

    guest = getattr(vm, "isolation", "process") == "guest"
    kw: dict[str, Any] = {
        "port": port,
        "upstreams": args.upstreams,
        "database_url": getattr(args, "database_url", None),
        "app": app,
    }
    if guest:
        stack: LocalStack = vm.make_stack(**kw, progress=lambda m: print(m, file=sys.stderr))
    else:
        stack = LocalStack(**kw, on_service_start=(vm.attach if vm is not None else None))
    prom = None
    follower = None
    try:
        print("starting the emulators and the service…", file=sys.stderr, flush=True)
        stack.start()
        follower = LogFollower(stack.service_log, "service").start()
        if vm is not None and not guest:
            vm.service_log = stack.service_log
            vm.bind(stack)
        if vm is not None:
            vm.start()
        info = stack.describe()
        print(f"service     {info['base_url']}  (health: {info['base_url']}/health)")
        for name, url in info["emulators"].items():
            print(f"{name:<11} {url}")
        print(f"upstreams   {info['upstreams']}")
        print(f"database    {info['database_url']}")
        print(f"service log {info['service_log']} (also shown here as 'service | …')")
        if vm is not None:
            print(f"vm          {vm.preset.name}")
        if guest:
            g = vm.manifest()["guest"]
            print(f"isolation   Linux guest ({g['accelerator']}, kernel {g['kernel_version']})")
            if g["accelerator"] != "kvm":
                print("            CPU and latency under TCG are not representative")
        if getattr(args, "prometheus", False):
            from perflib.sampling.prometheus import PrometheusError, start_for_stack

            try:
                prom = start_for_stack(info["base_url"], labels={"app": "lead-enrichment"})
            except PrometheusError as exc:
                raise PerflibError(f"--prometheus: {exc}") from None
            print(f"prometheus  {prom.url}  (scraping {info['base_url']}/metrics)")
        print("Ctrl-C stops everything.", flush=True)
        while True:
            svc = stack.service
            if (vm is None or guest) and svc is not None and svc.poll() is not None:
                raise StackError(
                    f"the service exited with code {svc.returncode}; last log lines:\n"
                    f"{log_tail(stack.service_log)}",
                    path=stack.service_log,
                )
            time.sleep(0.5)
    except KeyboardInterrupt as exc:
        with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
            print(f"\nstopping ({signal_of(exc).name})…", file=sys.stderr)
        return interrupt_exit_code(exc)
    finally:
        with deferred_stop():  # a second signal must not cut the clean-up short
            if prom is not None:
                with contextlib.suppress(Exception):
                    prom.stop()
            if vm is not None:
                with contextlib.suppress(Exception):
                    vm.stop()
            stack.stop()
            if follower is not None:
                follower.stop()


def add_app_options(p: argparse.ArgumentParser) -> None:
    """Which app the emulated VM runs, and how (process watcher or a real Linux guest)."""
    p.add_argument(
        "--isolation",
        choices=["process", "guest"],
        default="process",
        help="process emulation (default, fast) or a real Linux guest in QEMU (memory-exact)",
    )
    p.add_argument("--app-cmd", default=None, help="run this shell command instead of the service")
    p.add_argument("--app-port", type=int, default=None, help="port the --app-cmd app listens on")
    p.add_argument("--health-path", default=None, help="the app's health check (default /health)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="start the service and its upstream emulators (Ctrl-C stops)")
    p.add_argument("--port", type=int, default=8081, help="service port (default 8081)")
    p.add_argument(
        "--upstreams",
        choices=["nominal", "degraded"],
        default="nominal",
        help="emulator fault profile (default nominal)",
    )
    p.add_argument(
        "--database-url", default=None, help="service DATABASE_URL (default: a fresh SQLite file)"
    )
    p.add_argument(
        "--vm",
        default=None,
        metavar="PRESET",
        help="run the service under an emulated Fly VM, e.g. shared-cpu-1x:512mb",
    )
    p.add_argument(
        "--prometheus",
        action="store_true",
        help="also start a local Prometheus server scraping the service's /metrics",
    )
    add_app_options(p)
