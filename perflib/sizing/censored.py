"""Censored peaks: an OOM-killed run's peak is a lower bound on the memory need, never the peak.

The kernel killed the service when it reached the VM's limit, so the memory it would have
used is unknown above that level. Sizing therefore never multiplies a killed run's peak by the
guide's 30 % buffer (512 MB × 1.3 = 666 MB → 768 MB would size from a number the run never
measured). Instead the need is the smaller of

* the **next tested size without kills**: a larger preset whose run completed without an OOM
  kill and whose own (uncensored) peak × 1.3 fits it — the evidence that size holds; and
* the **VPA OOM bump** before the guide's buffer: the Kubernetes VPA recommender records an
  OOM as a sample of max(used + 100 MiB, used × 1.2), ``used`` being the memory at the kill
  (``pkg/recommender/model/container.go``, ``RecordOOM``; flags ``--oom-min-bump-up-bytes``,
  ``--oom-bump-up-ratio``, <https://github.com/kubernetes/autoscaler/tree/master/vertical-pod-autoscaler>)
  — then × 1.3 as the guide asks (docs/guide.md#memory-buffer).

An OOM at 512 MB therefore needs at least max(612, 614.4) × 1.3 = 798.7 MB → 1024 MB, or the
next tested clean size when that is smaller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from perflib.sizing.evidence import RunEvidence
from perflib.sizing.guide import BUFFER
from perflib.sizing.second_opinion import vpa_oom_bump_mb

#: How the memory need was sized (``Recommendation.memory_basis``).
BASIS_PEAK = "measured peak"
BASIS_NEXT_CLEAN = "next tested size without kills"
BASIS_VPA = "VPA OOM bump"


@dataclass(frozen=True)
class CensoredNeed:
    """The memory need implied by OOM-killed runs, and which rule gave it."""

    killed_at_mb: float  # the memory at the kill (the run's limit, else the peak it reached)
    runs: tuple[str, ...]  # the OOM-killed runs
    vpa_need_mb: float  # VPA bump × the guide's buffer
    next_clean: str | None  # the smallest larger preset tested without kills (peak × 1.3 fits)
    next_clean_mb: float | None
    need_mb: float  # min(vpa_need_mb, next_clean_mb)
    basis: str  # BASIS_NEXT_CLEAN or BASIS_VPA

    @property
    def reason(self) -> str:
        bump = vpa_oom_bump_mb(self.killed_at_mb)
        head = (
            f"Censored peak: {', '.join(self.runs)} was OOM-killed at {self.killed_at_mb:.0f} MB, "
            f"so its peak is a lower bound on the need (the kill cut it off), not the peak"
        )
        vpa = (
            f"the Kubernetes VPA recommender's OOM bump max({self.killed_at_mb:.0f} + 100, "
            f"{self.killed_at_mb:.0f} × 1.2) = {bump:.0f} MB, × {BUFFER} (guide's buffer) = "
            f"{self.vpa_need_mb:.0f} MB"
        )
        if self.basis == BASIS_NEXT_CLEAN:
            return (
                f"{head}; sized from the next tested size without kills, {self.next_clean} "
                f"({self.next_clean_mb:.0f} MB, below {vpa})"
            )
        tail = (
            f" (the next tested size without kills, {self.next_clean}, is larger)"
            if self.next_clean
            else " (no larger size was tested without kills)"
        )
        return f"{head}; sized with {vpa}{tail}"


def censored_need(runs: Sequence[RunEvidence]) -> CensoredNeed | None:
    """The need implied by the OOM-killed ``runs`` (None when no run was killed)."""
    killed = [r for r in runs if r.oom_count]
    if not killed:
        return None
    at = max(max(r.memory_limit_mb or 0.0, r.peak_mb) for r in killed)
    vpa_need = vpa_oom_bump_mb(at) * BUFFER
    clean = [
        r
        for r in runs
        if not r.oom_count
        and r.memory_limit_mb is not None
        and r.memory_limit_mb > at
        and r.peak_mb * BUFFER <= r.memory_limit_mb
    ]
    nxt = min(clean, key=lambda r: r.memory_limit_mb or 0.0) if clean else None
    nxt_mb = nxt.memory_limit_mb if nxt is not None else None
    by_clean = nxt_mb is not None and nxt_mb < vpa_need
    return CensoredNeed(
        killed_at_mb=at,
        runs=tuple(r.label for r in killed),
        vpa_need_mb=vpa_need,
        next_clean=(nxt.preset.name if nxt.preset else nxt.label) if nxt is not None else None,
        next_clean_mb=nxt_mb,
        need_mb=nxt_mb if by_clean and nxt_mb is not None else vpa_need,
        basis=BASIS_NEXT_CLEAN if by_clean else BASIS_VPA,
    )
