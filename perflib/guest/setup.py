"""Installs what a guest needs and builds its kernel and initramfs (stdlib only).

Runs as ``scripts/setup_guest.sh`` / ``make guest-setup`` and on first use of
``--isolation guest``. Steps: Debian packages (``qemu-system-x86``, ``busybox-static``,
``cpio``); the kernel package that ``linux-image-amd64`` depends on (resolved through the
meta-package because its version moves with Debian's security updates); from it
``vmlinuz`` → the uncompressed ELF ``vmlinux`` (QEMU's direct boot under TCG needs its PVH
note) and the modules the initramfs loads; then the initramfs (busybox + modules + init).

Exit codes (``main``): 0 ready, 3 cannot install (not root, apt failed, no package),
4 the kernel or initramfs cannot be built.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from perflib.errors import PerflibError  # stdlib-only, like this module

PACKAGES = {"qemu-system-x86": "qemu-system-x86_64", "busybox-static": "busybox", "cpio": "cpio"}
KERNEL_META = "linux-image-amd64"
#: insmod order matters: each module after those it needs (measured, see docs/guest.md).
MODULES = [
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "9pnet",
    "netfs",
    "fscache",
    "9pnet_virtio",
    "9p",
    "failover",
    "net_failover",
    "virtio_net",
    "overlay",
    "virtio_blk",
    "crc16",
    "mbcache",
    "jbd2",
    "crc32c_generic",
    "ext4",
]
EXIT_CANNOT_INSTALL = 3
EXIT_CANNOT_BUILD = 4
#: Bump when the initramfs contents change so cached images are rebuilt.
LAYOUT_VERSION = 3


class GuestSetupError(PerflibError, RuntimeError):
    """The guest cannot be set up here; ``exit_code`` is the documented one."""

    def __init__(self, message: str, exit_code: int = EXIT_CANNOT_INSTALL) -> None:
        super().__init__(message, exit_code=exit_code)


def cache_dir() -> Path:
    """Where the kernel and initramfs live: ``$PERFLIB_GUEST_DIR`` or ~/.cache/perflib/guest."""
    env = os.environ.get("PERFLIB_GUEST_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "perflib" / "guest"


@dataclass(frozen=True)
class GuestImage:
    """A built guest: kernel, initramfs and the kernel's version."""

    vmlinux: Path
    initramfs: Path
    kernel_version: str
    qemu: str

    @classmethod
    def load(cls, root: Path | None = None) -> GuestImage | None:
        root = root or cache_dir()
        try:
            info = json.loads((root / "image.json").read_text())
        except (OSError, ValueError):
            return None
        img = cls(
            Path(info["vmlinux"]), Path(info["initramfs"]), info["kernel_version"], info["qemu"]
        )
        ok = info.get("layout") == LAYOUT_VERSION and img.vmlinux.exists()
        ok = ok and img.initramfs.exists() and shutil.which(img.qemu) is not None
        return img if ok else None


Progress = Callable[[str], None]


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def _apt(args: list[str], progress: Progress, tries: int = 30) -> subprocess.CompletedProcess:
    """apt-get with retries while another process holds the dpkg lock."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for i in range(tries):
        res = _run(["apt-get", *args], env=env)
        if res.returncode == 0 or "lock" not in (res.stderr + res.stdout).lower():
            return res
        if i == 0:
            progress("apt is locked by another process: waiting")
        time.sleep(5)
    return res


def install_packages(progress: Progress) -> None:
    """Install the Debian packages whose commands are missing (root needed only then)."""
    missing = [pkg for pkg, cmd in PACKAGES.items() if shutil.which(cmd) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise GuestSetupError(f"guest set-up: no apt-get to install {', '.join(missing)}")
    if os.geteuid() != 0:
        raise GuestSetupError(
            f"guest set-up needs root to install {', '.join(missing)} (run `sudo make guest-setup`)"
        )
    progress(f"installing {', '.join(missing)} from Debian")
    res = _apt(["install", "-y", "--no-install-recommends", *missing], progress)
    if res.returncode != 0:
        progress("apt-get update (package lists)")
        _apt(["update"], progress)
        res = _apt(["install", "-y", "--no-install-recommends", *missing], progress)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        raise GuestSetupError(f"guest set-up: apt-get install {' '.join(missing)} failed: {last}")


def _download(pkg: str, dest: Path, progress: Progress) -> Path:
    res = subprocess.run(
        ["apt-get", "download", pkg], cwd=dest, capture_output=True, text=True, check=False
    )
    if res.returncode != 0 and "Unable to locate" in res.stderr and os.geteuid() == 0:
        progress("apt-get update (package lists)")
        _apt(["update"], progress)
        res = subprocess.run(
            ["apt-get", "download", pkg], cwd=dest, capture_output=True, text=True, check=False
        )
    debs = sorted(dest.glob(f"{pkg}_*.deb"))
    if res.returncode != 0 or not debs:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        raise GuestSetupError(f"guest set-up: cannot download Debian package {pkg}: {last}")
    return debs[-1]


def resolve_kernel(work: Path, progress: Progress) -> Path:
    """Download ``linux-image-amd64`` and the kernel package it depends on; that .deb."""
    progress(f"resolving the kernel through {KERNEL_META}")
    meta = _download(KERNEL_META, work, progress)
    depends = _run(["dpkg-deb", "-f", str(meta), "Depends"]).stdout
    names = [d.split()[0] for d in depends.replace("|", ",").split(",") if d.strip()]
    kernel = next((n for n in names if n.startswith("linux-image-")), None)
    if kernel is None:
        raise GuestSetupError(f"guest set-up: {KERNEL_META} names no kernel ({depends!r})")
    progress(f"downloading {kernel} (~70 MB)")
    return _download(kernel, work, progress)


def extract_kernel(deb: Path, out: Path) -> tuple[Path, dict[str, Path], str]:
    """vmlinuz and the initramfs modules from the kernel .deb, in one streaming pass."""
    wanted = set(MODULES)
    mods: dict[str, Path] = {}
    vmlinuz: Path | None = None
    version = ""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as p:
        assert p.stdout is not None
        with tarfile.open(fileobj=p.stdout, mode="r|") as tar:
            for member in tar:
                name = Path(member.name).name
                if member.isfile() and name.startswith("vmlinuz-"):
                    version = name.removeprefix("vmlinuz-")
                    vmlinuz = out / name
                    vmlinuz.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
                    continue
                base = name.split(".ko")[0]
                if member.isfile() and ".ko" in name and base in wanted and base not in mods:
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    if name.endswith(".xz"):
                        data = lzma.decompress(data)
                    elif name.endswith(".zst"):
                        data = _unzstd(data)
                    mods[base] = out / f"{base}.ko"
                    mods[base].write_bytes(data)
    if vmlinuz is None:
        raise GuestSetupError(f"guest set-up: no vmlinuz in {deb.name}", EXIT_CANNOT_BUILD)
    return vmlinuz, mods, version


def _unzstd(data: bytes) -> bytes:
    res = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True)
    return res.stdout


def extract_vmlinux(vmlinuz: Path, out: Path) -> Path:
    """The uncompressed ELF inside a bzImage (what scripts/extract-vmlinux does)."""
    blob = vmlinuz.read_bytes()
    for magic, decomp in (
        (b"\xfd7zXZ\x00", lambda b: lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(b)),
        (b"\x1f\x8b\x08", lambda b: gzip.GzipFile(fileobj=io.BytesIO(b)).read()),
    ):
        start = blob.find(magic)
        while start != -1:
            try:
                elf = decomp(blob[start:])
            except (lzma.LZMAError, OSError, EOFError):
                elf = b""
            if elf[:4] == b"\x7fELF":
                out.write_bytes(elf)
                return out
            start = blob.find(magic, start + 1)
    raise GuestSetupError(f"guest set-up: no ELF payload found in {vmlinuz}", EXIT_CANNOT_BUILD)


def build_initramfs(mods: dict[str, Path], out: Path) -> Path:
    """busybox + modules (in load order) + the init script, as a gzip'd newc cpio."""
    missing = [m for m in MODULES if m not in mods]
    busybox = shutil.which("busybox")
    if busybox is None:
        raise GuestSetupError("guest set-up: busybox not installed", EXIT_CANNOT_BUILD)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in ("bin", "dev", "proc", "sys", "lib/modules", "newroot", "mnt"):
            (root / d).mkdir(parents=True)
        shutil.copy2(busybox, root / "bin/busybox")
        (root / "bin/sh").symlink_to("busybox")
        order = [m for m in MODULES if m in mods]  # built-in ones are simply absent
        for m in order:
            shutil.copy2(mods[m], root / "lib/modules" / f"{m}.ko")
        (root / "lib/modules/order").write_text("\n".join(order) + "\n")
        init = Path(__file__).with_name("initramfs") / "init"
        shutil.copy2(init, root / "init")
        (root / "init").chmod(0o755)
        shutil.copy2(init.with_name("agent.sh"), root / "bin/agent.sh")
        (root / "bin/agent.sh").chmod(0o755)
        files = subprocess.run(
            ["find", "."], cwd=root, capture_output=True, text=True, check=True
        ).stdout
        cpio = subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet"],
            cwd=root,
            input=files.encode(),
            capture_output=True,
            check=True,
        ).stdout
    out.write_bytes(gzip.compress(cpio, compresslevel=6))
    if missing:
        (out.parent / "modules-builtin.txt").write_text("\n".join(missing) + "\n")
    return out


def ensure_image(progress: Progress | None = None, root: Path | None = None) -> GuestImage:
    """The guest image, building it first if needed (idempotent; ~40 s the first time)."""
    say: Progress = progress or (lambda _m: None)
    root = root or cache_dir()
    img = GuestImage.load(root)
    if img is not None:
        return img
    install_packages(say)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        work = Path(tmp)
        deb = resolve_kernel(work, say)
        say(f"extracting the kernel and {len(MODULES)} modules from {deb.name}")
        vmlinuz, mods, version = extract_kernel(deb, work)
        vmlinux = extract_vmlinux(vmlinuz, root / f"vmlinux-{version}")
        say(f"building the initramfs (busybox + {len(mods)} modules)")
        initramfs = build_initramfs(mods, root / f"initramfs-{version}.cpio.gz")
    qemu = shutil.which("qemu-system-x86_64") or "qemu-system-x86_64"
    info = {
        "vmlinux": str(vmlinux),
        "initramfs": str(initramfs),
        "kernel_version": version,
        "qemu": qemu,
        "layout": LAYOUT_VERSION,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (root / "image.json").write_text(json.dumps(info, indent=2) + "\n")
    say(f"guest ready: kernel {version} in {root}")
    return GuestImage(vmlinux, initramfs, version, qemu)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--rebuild" in args:
        (cache_dir() / "image.json").unlink(missing_ok=True)

    def say(msg: str) -> None:
        print(f"guest-setup: {msg}", file=sys.stderr, flush=True)

    try:
        img = ensure_image(say)
    except GuestSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"error: guest set-up failed: {exc}", file=sys.stderr)
        return EXIT_CANNOT_BUILD
    print(json.dumps({"kernel_version": img.kernel_version, "vmlinux": str(img.vmlinux)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
