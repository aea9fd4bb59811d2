"""Fly's shared-CPU model, written once: the baseline quota and the burst balance.

A shared vCPU is guaranteed 5 ms of CPU per 80 ms period (6.25 %); above that it spends a
burst balance that accrues at the baseline rate (start 5 s, max 500 s per vCPU), and once
the balance is gone the Machine is throttled to the baseline
(fly.io/docs/machines/cpu-performance, docs/guide.md#fly-shared-cpu). The VM emulation
(:mod:`perflib.run.vm`) enforces it on the service; the analysis
(:mod:`perflib.analysis.cpu`) replays it over a run's CPU samples — the same class, so the
two cannot disagree.
"""

from __future__ import annotations

#: Shared-CPU quota: 5 ms per 80 ms period per vCPU.
CFS_PERIOD_US = 80_000
SHARED_QUOTA_US_PER_CPU = 5_000
#: The guaranteed share of one shared vCPU (0.0625 = 6.25 %).
SHARED_BASELINE_PER_CPU = SHARED_QUOTA_US_PER_CPU / CFS_PERIOD_US
#: Burst balance per vCPU at boot and at most, in CPU-seconds above the baseline.
INITIAL_BALANCE_S = 5.0
MAX_BALANCE_S = 500.0


class BurstBalance:
    """Fly's shared-CPU burst balance, in CPU-seconds above the baseline.

    Accrues ``baseline × dt`` and spends what the VM used; a balance of B lets a 1x VM run
    at 100 % for B / (1 − 0.0625) s, which is the docs' 500 s → ≈ 533 s example.
    """

    def __init__(
        self,
        baseline_cpus: float,
        initial_s: float = INITIAL_BALANCE_S,
        max_s: float = MAX_BALANCE_S,
    ) -> None:
        self.baseline_cpus = baseline_cpus
        self.initial_s = initial_s
        self.max_s = max_s
        self.balance_s = initial_s

    def update(self, used_cpu_s: float, dt_s: float) -> float:
        self.balance_s = min(
            self.max_s, max(0.0, self.balance_s + self.baseline_cpus * dt_s - used_cpu_s)
        )
        return self.balance_s

    @property
    def exhausted(self) -> bool:
        return self.balance_s <= 0.0

    def reset(self) -> None:
        self.balance_s = self.initial_s

    def time_to_exhaust_s(self, load_cpus: float, balance_s: float | None = None) -> float | None:
        """Seconds a steady ``load_cpus`` (CPU-seconds per second) takes to spend
        ``balance_s`` (default: the current balance): balance ÷ (load − baseline); None when
        the load is at or below the baseline (the balance never runs out)."""
        excess = load_cpus - self.baseline_cpus
        if excess <= 0:
            return None
        return (self.balance_s if balance_s is None else balance_s) / excess
