"""Boot a QEMU guest with exactly a preset's RAM and vCPUs, the app inside it.

The guest is a Debian kernel booted directly (``setup.GuestImage``) on ``-M q35``; the
host's interpreter, virtualenv and code are shared read-only over virtio-9p under writable
overlays on a throwaway ext4 disk image; a second, writable 9p share (``ctl``) is the
control channel to the agent (``initramfs/agent.sh``). The network is QEMU's user mode
with ``restrict=on``: the app is reachable on the host's loopback through one ``hostfwd``,
and the guest reaches only the host loopback ports listed in ``forwards``, each at
``GUEST_HOST:port`` through a ``guestfwd``. KVM is used only after a boot probe proves it
(on nested hosts it can start and then stop with an internal error); otherwise TCG.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from perflib.errors import PerflibError
from perflib.guest.setup import GuestImage, cache_dir, ensure_image

#: Address at which the guest reaches a forwarded host loopback port (same port number).
GUEST_HOST = "10.0.2.100"
APP_PORT = 8081
#: ``tb-size=128`` keeps QEMU's own RSS near 0.5 GB instead of 1.7 GB under TCG.
TCG_ACCEL = "tcg,tb-size=128"
KVM_PROBE_TIMEOUT_S = 20.0
READY_MARKER = "perflib-agent: ready"


class GuestError(PerflibError, RuntimeError):
    """The guest did not boot, or stopped answering; the message quotes its console."""

    exit_code = 1  # as a stack that did not start


@dataclass
class GuestSpec:
    """What to boot: size, what to share, what to run, what to forward."""

    memory_mb: int
    cpus: int = 1
    #: host directories shared read-only, mounted at the same path in the guest
    shares: tuple[Path, ...] = ()
    #: body of the shell script the agent supervises (the app); None = no app
    app_script: str | None = None
    app_port: int = APP_PORT
    host_port: int | None = None
    #: host loopback ports the guest may reach at GUEST_HOST:port
    forwards: tuple[int, ...] = ()
    sample_interval: float = 1.0
    max_restarts: int = 10
    accel: str = "auto"
    disk_mb: int = 4096
    extra_env: dict[str, str] = field(default_factory=dict)


def code_root() -> Path:
    """The directory holding the service's package (the app's working directory)."""
    import service  # noqa: PLC0415 - only to locate the code

    return Path(service.__file__).resolve().parent.parent


def default_shares() -> tuple[Path, ...]:
    """The narrowest tree the service needs: interpreter + its libraries (/usr), venv, code."""
    code = code_root()
    interp = Path(sys.executable).resolve().parent.parent
    paths = [Path("/usr"), Path(sys.base_prefix), interp, Path(sys.prefix), code]
    return minimal_roots(paths)


def minimal_roots(paths: Iterable[Path]) -> tuple[Path, ...]:
    """Drop paths inside another path of the list (one share covers them)."""
    uniq = sorted({p.resolve() for p in paths}, key=lambda p: len(p.parts))
    out: list[Path] = []
    for p in uniq:
        if not any(p == q or q in p.parents for q in out):
            out.append(p)
    return tuple(out)


def app_script(argv: list[str] | str, env: Mapping[str, str], cwd: Path | None = None) -> str:
    """The agent's app.sh: a clean environment, the working directory, then exec the app."""
    lines = ["#!/bin/sh", "# written by perflib: the app the guest agent supervises"]
    exports = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root"} | dict(env)
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(exports.items())]
    if cwd is not None:
        lines.append(f"cd {shlex.quote(str(cwd))}")
    cmd = argv if isinstance(argv, str) else shlex.join(argv)
    lines.append(f"exec {cmd}")
    return "\n".join(lines) + "\n"


def _boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return "unknown"


def kvm_usable(image: GuestImage, workdir: Path, log: Callable[[str], None]) -> bool:
    """Whether a guest boots under KVM here: a real boot probe, cached per host boot."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    cache = cache_dir() / "kvm-probe.json"
    key = f"{_boot_id()}/{image.kernel_version}"
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(cache.read_text())
        if known.get("key") == key:
            return bool(known["usable"])
    log(f"probing KVM (a guest must be ready within {KVM_PROBE_TIMEOUT_S:.0f} s)")
    probe = Guest(GuestSpec(memory_mb=256, accel="kvm"), workdir / "kvm-probe", image=image)
    usable = False
    try:
        probe.start()
        probe.wait_ready(KVM_PROBE_TIMEOUT_S)
        usable = True
    except GuestError:
        usable = False
    finally:
        probe.stop()
    with contextlib.suppress(OSError):
        cache.write_text(json.dumps({"key": key, "usable": usable}))
    log(
        f"KVM {'works' if usable else 'does not boot a guest here'}: using {'kvm' if usable else 'tcg'}"
    )
    return usable


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started QEMU dies (even by
    SIGKILL, when no clean-up runs), so no guest outlives its run. Linux prctl
    PR_SET_PDEATHSIG; it follows the starting *thread*, so start guests from the main one."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes  # noqa: PLC0415 - only in the forked child

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class Guest:
    """One QEMU guest: ``start()``, ``wait_ready()``, ``run()`` commands, ``stop()``."""

    def __init__(
        self,
        spec: GuestSpec,
        workdir: Path,
        *,
        image: GuestImage | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.workdir = Path(workdir)
        self.image = image
        self.say = progress or (lambda _m: None)
        self.ctl = self.workdir / "ctl"
        self.console = self.workdir / "console.log"
        self.disk = self.workdir / "disk.img"
        self.proc: subprocess.Popen | None = None
        self.accelerator: str | None = None
        self.started_at: float | None = None  # time.time() at QEMU's start
        self.ready_after_s: float | None = None
        self._cmd_seq = 0

    @property
    def kernel_version(self) -> str | None:
        return self.image.kernel_version if self.image else None

    @property
    def base_url(self) -> str:
        assert self.spec.host_port is not None
        return f"http://127.0.0.1:{self.spec.host_port}"

    # --- start ---------------------------------------------------------------------------
    def _prepare(self) -> None:
        if self.image is None:
            self.image = ensure_image(self.say)  # GuestSetupError: cannot set up here
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.ctl.exists():
            shutil.rmtree(self.ctl)
        (self.ctl / "cmd").mkdir(parents=True)
        (self.ctl / "interval").write_text(f"{self.spec.sample_interval:g}\n")
        (self.ctl / "max_restarts").write_text(f"{self.spec.max_restarts}\n")
        if self.spec.app_script is not None:
            (self.ctl / "app.sh").write_text(self.spec.app_script)
        with self.disk.open("wb") as fh:  # sparse: only what the guest writes takes space
            fh.truncate(self.spec.disk_mb * 1024 * 1024)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-E", "nodiscard", str(self.disk)],
            check=True,
            capture_output=True,
        )
        self.console.write_bytes(b"")
        if self.spec.app_script is not None and self.spec.host_port is None:
            from perflib.run.stack import free_port  # noqa: PLC0415

            self.spec.host_port = free_port()

    def command(self, accel: str) -> list[str]:
        """QEMU's argv for this guest under ``accel`` (``tcg`` or ``kvm``)."""
        assert self.image is not None
        spec = self.spec
        mounts, args = [], []
        for i, path in enumerate(spec.shares):
            tag = f"s{i}"
            mounts.append(f"{tag}:{path}")
            args += [
                "-fsdev",
                f"local,id={tag},path={path},security_model=none,readonly=on,multidevs=remap",
                "-device",
                f"virtio-9p-pci,fsdev={tag},mount_tag={tag}",
            ]
        args += [
            "-fsdev",
            f"local,id=ctl,path={self.ctl},security_model=none,multidevs=remap",
            "-device",
            "virtio-9p-pci,fsdev=ctl,mount_tag=ctl",
        ]
        net = "user,id=n0,restrict=on"
        if spec.host_port is not None:
            net += f",hostfwd=tcp:127.0.0.1:{spec.host_port}-:{spec.app_port}"
        nc = shutil.which("busybox") or "busybox"
        for port in spec.forwards:  # one netcat per connection, to the host's loopback only
            net += f",guestfwd=tcp:{GUEST_HOST}:{port}-cmd:{nc} nc 127.0.0.1 {port}"
        append = "console=ttyS0 panic=-1 reboot=t tsc=reliable"
        if mounts:
            append += " pl_mounts=" + ",".join(mounts)
        return [
            self.image.qemu,
            "-name",
            "perflib-guest,debug-threads=on",
            "-M",
            "q35",
            "-accel",
            TCG_ACCEL if accel == "tcg" else "kvm",
            "-cpu",
            os.environ.get("PERFLIB_GUEST_CPU") or ("max" if accel == "tcg" else "host"),
            "-smp",
            str(spec.cpus),
            "-m",
            f"{spec.memory_mb}M",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{self.console}",
            "-kernel",
            str(self.image.vmlinux),
            "-initrd",
            str(self.image.initramfs),
            "-append",
            append,
            "-drive",
            f"file={self.disk},format=raw,if=virtio,cache=unsafe",
            "-netdev",
            net,
            "-device",
            "virtio-net-pci,netdev=n0",
            *args,
        ]

    def start(self) -> None:
        """Launch QEMU (returns at once; ``wait_ready`` waits for the agent)."""
        self._prepare()
        assert self.image is not None
        if self.spec.accel == "auto":
            kvm = kvm_usable(self.image, self.workdir, self.say)
            self.accelerator = "kvm" if kvm else "tcg"
        else:
            self.accelerator = self.spec.accel
        cmd = self.command(self.accelerator)
        (self.workdir / "qemu.cmd").write_text(shlex.join(cmd) + "\n")
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=(self.workdir / "qemu.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches us; stop() ends it
            preexec_fn=_die_with_parent,
        )

    # --- waiting -------------------------------------------------------------------------
    def console_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.console.read_text(errors="replace").splitlines()
            return "\n".join(text[-lines:])
        return ""

    def _check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            qemu = ""
            with contextlib.suppress(OSError):
                qemu = (self.workdir / "qemu.log").read_text(errors="replace")[-800:]
            raise GuestError(
                f"QEMU exited ({qemu.strip() or 'no output'}); console:\n{self.console_tail()}"
            )

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait for the agent's ready line; seconds since QEMU started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError):
                if READY_MARKER in self.console.read_text(errors="replace"):
                    assert self.started_at is not None
                    self.ready_after_s = time.time() - self.started_at
                    return self.ready_after_s
            time.sleep(0.25)
        raise GuestError(
            f"the guest agent was not ready after {timeout:.0f} s; console:\n{self.console_tail()}"
        )

    # --- control channel -----------------------------------------------------------------
    def submit(self, script: str) -> Path:
        """Drop a command for the agent; the returned stem gets ``.out`` and ``.rc``."""
        self._cmd_seq += 1
        stem = self.ctl / "cmd" / f"c{self._cmd_seq:05d}"
        tmp = stem.with_suffix(".tmp")
        tmp.write_text(script)
        tmp.rename(stem.with_suffix(".sh"))
        return stem

    def result(self, stem: Path) -> tuple[int, str] | None:
        """(exit code, output) of a submitted command, or None while it runs."""
        rc = stem.with_suffix(".rc")
        if not rc.exists():
            return None
        out = stem.with_suffix(".out")
        return int(rc.read_text().strip() or -1), out.read_text(
            errors="replace"
        ) if out.exists() else ""

    def run(self, script: str, timeout: float = 60.0) -> tuple[int, str]:
        """Run a shell script in the guest and wait for it."""
        stem = self.submit(script)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            res = self.result(stem)
            if res is not None:
                return res
            time.sleep(0.2)
        raise GuestError(f"guest command did not finish in {timeout:.0f} s: {script[:80]!r}")

    # --- host-side figures ---------------------------------------------------------------
    def qemu_rss_mb(self) -> float | None:
        if self.proc is None:
            return None
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.proc.pid).memory_info().rss / (1024 * 1024)
        return None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop QEMU (the disk image is throwaway); its exit code. Keeps the logs."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        with contextlib.suppress(OSError):
            self.disk.unlink()
        return proc.returncode
