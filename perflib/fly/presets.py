"""Fly Machine presets: a size's CPU kind, vCPU count and memory, parsed and listed.

Sizes are Fly's (docs/fly.md: shared 256..2048 MB per vCPU in 256 MB steps, performance
2048..8192 MB per vCPU in 2048 MB steps). MB means MiB, as Fly's ``memory_mb`` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from perflib.errors import PerflibError
from perflib.fly.burst import SHARED_BASELINE_PER_CPU


class PricingError(PerflibError, ValueError):
    """Unknown preset, memory size, region or price set (the message says which and why)."""


class PresetError(PricingError):
    """A string that does not name a Fly Machine size (or a memory size that is not one)."""


#: Presets in the table (docs/guide.md#fly-sizes-and-prices: shared 256..2048 MB per vCPU in 256 MB steps,
#: performance 2048..8192 MB per vCPU in 2048 MB steps).
SHARED_CPUS = (1, 2, 4, 8)
PERFORMANCE_CPUS = (1, 2, 4, 8, 16)
#: Every size Fly offers (docs/guide.md#fly-sizes-and-prices), priced or not: what a VM emulation may be asked for.
FLY_SHARED_CPUS = (1, 2, 4, 6, 8)
FLY_PERFORMANCE_CPUS = (1, 2, 4, 6, 8, 10, 12, 14, 16)


@dataclass(frozen=True, order=True)
class Preset:
    """A Fly Machine size: CPU kind, vCPU count and memory (MiB)."""

    cpu_kind: str  # "shared" | "performance"
    cpus: int
    memory_mb: int

    @property
    def size(self) -> str:
        """Fly's size name, e.g. ``shared-cpu-1x`` or ``performance-2x``."""
        prefix = "shared-cpu" if self.cpu_kind == "shared" else "performance"
        return f"{prefix}-{self.cpus}x"

    @property
    def name(self) -> str:
        """Canonical spelling used everywhere in perflib: ``shared-cpu-1x:512mb``."""
        return f"{self.size}:{self.memory_mb}mb"

    @property
    def memory_gb(self) -> float:
        return self.memory_mb / 1024

    @property
    def cpu_capacity(self) -> float:
        """Guaranteed vCPU share (docs/guide.md#fly-shared-cpu: shared = 1/16 core per vCPU baseline)."""
        return self.cpus * (1.0 if self.cpu_kind == "performance" else SHARED_BASELINE_PER_CPU)

    def __str__(self) -> str:
        return self.name

    def valid_memory_steps(self) -> list[int]:
        return memory_steps(self.cpu_kind, self.cpus)

    @property
    def fly_valid(self) -> bool:
        """Whether Fly sells this memory for this size (off-grid sizes are for experiments)."""
        return self.memory_mb in memory_steps(self.cpu_kind, self.cpus)

    def is_at_least(self, other: Preset) -> bool:
        """At least as much memory and CPU as ``other`` (performance beats shared)."""
        return (
            self.memory_mb >= other.memory_mb
            and self.cpus >= other.cpus
            and _kind_rank(self.cpu_kind) >= _kind_rank(other.cpu_kind)
        )

    def is_larger_than(self, other: Preset) -> bool:
        """At least as big as ``other`` in every dimension and bigger in one."""
        return self.is_at_least(other) and self != other


def _kind_rank(kind: str) -> int:
    return 1 if kind == "performance" else 0


def memory_steps(cpu_kind: str, cpus: int) -> list[int]:
    """Valid memory sizes (MiB) for a CPU kind and count (docs/guide.md#fly-sizes-and-prices)."""
    if cpu_kind == "shared":
        return list(range(256 * cpus, 2048 * cpus + 1, 256))
    if cpu_kind == "performance":
        return list(range(2048 * cpus, 8192 * cpus + 1, 2048))
    raise PricingError(f"unknown cpu_kind {cpu_kind!r} (expected 'shared' or 'performance')")


_SIZE_RE = re.compile(r"^(?:(shared)-cpu|(performance))-(\d+)x$")
_MEM_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(mb|m|mib|gb|g|gib)?$")


def parse_memory_mb(text: str | int | float) -> int:
    """``512mb`` / ``1gb`` / ``1024`` → MiB (Fly reads a bare number as MB)."""
    if isinstance(text, int | float):
        return int(text)
    m = _MEM_RE.match(text.strip().lower())
    if not m:
        raise PresetError(f"cannot read memory size {text!r} (expected e.g. 512mb, 1gb, 1024)")
    value = float(m.group(1))
    unit = m.group(2) or "mb"
    mb = value * 1024 if unit.startswith("g") else value
    if mb != int(mb):
        raise PresetError(f"memory size {text!r} is not a whole number of MB")
    return int(mb)


def parse_preset(
    spec: str | Preset, memory_mb: int | None = None, *, strict: bool = True
) -> Preset:
    """Read ``shared-cpu-1x:512mb``, ``shared-cpu-1x@1024MB``, ``performance-2x`` (preset
    memory), ``shared-cpu-1x`` + ``memory_mb``.

    ``strict`` (pricing): the size must be in the price table and the memory on Fly's grid.
    Not strict (the VM emulation): any size Fly offers and any whole number of MB, so an
    experiment can ask for e.g. ``shared-cpu-1x:64mb``; :attr:`Preset.fly_valid` tells.
    """
    if isinstance(spec, Preset):
        return spec
    text = spec.strip().lower()
    size, _, mem = text.replace("@", ":").partition(":")
    m = _SIZE_RE.match(size.strip())
    if not m:
        raise PresetError(
            f"unknown preset {spec!r}: expected shared-cpu-Nx or performance-Nx, "
            "optionally with ':<memory>' (e.g. shared-cpu-1x:512mb)"
        )
    kind = "shared" if m.group(1) else "performance"
    cpus = int(m.group(3))
    if strict:
        valid_cpus = SHARED_CPUS if kind == "shared" else PERFORMANCE_CPUS
    else:
        valid_cpus = FLY_SHARED_CPUS if kind == "shared" else FLY_PERFORMANCE_CPUS
    if cpus not in valid_cpus:
        raise PresetError(f"unknown preset {spec!r}: {kind} CPUs must be one of {valid_cpus}")
    if mem.strip():
        mb = parse_memory_mb(mem)
    elif memory_mb is not None:
        mb = int(memory_mb)
    else:
        mb = (256 if kind == "shared" else 2048) * cpus  # the preset's own memory
    if mb < 1:
        raise PresetError(f"invalid memory for {size}: {mb} MB; it must be a whole MB >= 1")
    steps = memory_steps(kind, cpus)
    if strict and mb not in steps:
        raise PresetError(
            f"invalid memory for {size}: {mb} MB; Fly allows {steps[0]}..{steps[-1]} MB "
            f"in steps of {steps[1] - steps[0] if len(steps) > 1 else steps[0]} MB"
        )
    return Preset(kind, cpus, mb)


def all_presets() -> list[Preset]:
    """Every preset × memory step in the table, in price order within each kind."""
    out = [Preset("shared", n, mb) for n in SHARED_CPUS for mb in memory_steps("shared", n)]
    out += [
        Preset("performance", n, mb)
        for n in PERFORMANCE_CPUS
        for mb in memory_steps("performance", n)
    ]
    return out
