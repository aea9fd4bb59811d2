"""The decision: one row per *tested* preset answering the guide's questions, and one sentence.

For each preset a run was made at: usable memory against the measured peak (and whether an
OOM kill censored that peak), OOM kills, the p95 change against the largest tested size with
the comparison's verdict, the shared-CPU risk (mean CPU under load against the preset's
guaranteed share, 6.25 % of a vCPU for shared CPUs, docs/guide.md#fly-shared-cpu), the monthly
cost and the saving against the current preset. The headline is the cheapest tested preset
that passes; a size only the rules suggest is never the headline but "worth testing next",
with the command that tests it. ``perflib compare``, ``perflib recommend`` and the report's
first section all print this object (:attr:`Recommendation.decision`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from perflib.analysis import ALL
from perflib.cost import PriceSet, confirmed_price_set, monthly_cost
from perflib.fly.presets import Preset
from perflib.sizing.censored import BASIS_NEXT_CLEAN, BASIS_VPA
from perflib.sizing.evidence import RunEvidence
from perflib.sizing.guide import BUFFER, _r

#: Latency changes that fail a preset: only a shown slowdown ("p95 latency unchanged" is the
#: guide's criterion; "inconclusive" is said in the sentence, not counted as a failure).
FAILING_CHANGES = frozenset({"slower"})


@dataclass
class TestedPreset:
    """One tested preset's answers (figures over the runs made at it)."""

    preset: str
    memory_mb: int
    runs: list[str]
    usable_mb: float  # memory ÷ the guide's buffer: the largest peak the preset allows
    peak_mb: float | None  # max over the runs at this preset (stress runs only if alone)
    peak_censored: bool  # an OOM kill cut the peak off: a lower bound on the need
    oom_kills: int
    latency_change: str  # baseline | unchanged | faster | slower | inconclusive | not compared
    latency_verdict: str  # the comparison's verdict sentence (or why there is none)
    cpu_mean_pct: float | None  # mean CPU under load, % of one vCPU (per vCPU)
    cpu_baseline_pct: float  # the guaranteed share per vCPU (6.25 shared, 100 performance)
    throttled_s: float | None  # time the CPU quota throttled in the runs (None: unknown)
    exhaust_full_s: float | None  # seconds the measured load takes to spend a full balance
    monthly_cost_usd: float
    saving_usd: float  # against the current preset (negative: extra cost)
    confirmed_cost_usd: float | None  # at the confirmed price set, when the set in use is not
    confirmed_saving_usd: float | None
    failed: list[str] = field(default_factory=list)  # why it does not pass
    open: list[str] = field(default_factory=list)  # what the runs did not settle

    @property
    def passes(self) -> bool:
        return not self.failed

    @property
    def cpu_above_baseline(self) -> bool | None:
        if self.cpu_mean_pct is None:
            return None
        return self.cpu_mean_pct > self.cpu_baseline_pct

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(passes=self.passes, cpu_above_baseline=self.cpu_above_baseline)
        for k in ("usable_mb", "peak_mb", "cpu_mean_pct", "throttled_s", "exhaust_full_s"):
            d[k] = _r(d[k])
        return d


@dataclass
class NextTest:
    """A size the evidence suggests but nobody ran: tested before it is recommended."""

    preset: str
    monthly_cost_usd: float
    saving_usd: float
    why: str

    @property
    def command(self) -> str:
        return f"perflib run load --vm {self.preset}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "command": self.command}


@dataclass
class Decision:
    """Tested presets side by side, the cheapest that passes, and what to test next."""

    current: str
    current_monthly_cost_usd: float
    region: str
    price_set: str
    price_status: str  # confirmed | reported
    confirmed_price_set: str | None  # shown beside a reported set's figures
    latency_baseline: str | None  # the preset the p95 changes are measured against
    tested: list[TestedPreset]
    worth_testing: list[NextTest]
    memory_note: str  # what the memory figures include (guest overhead) and the sizing basis
    partial_runs: list[str] = field(default_factory=list)

    @property
    def pick(self) -> TestedPreset | None:
        """The cheapest tested preset that passes."""
        ok = [t for t in self.tested if t.passes]
        return min(ok, key=lambda t: (t.monthly_cost_usd, t.memory_mb)) if ok else None

    @property
    def price_label(self) -> str:
        if self.price_status == "confirmed":
            return f"price set {self.price_set}, confirmed by Fly's pricing page"
        return f"price set {self.price_set}, {self.price_status} by third parties only"

    @property
    def sentence(self) -> str:
        """The one-sentence answer, with the figures it follows from."""
        pick = self.pick
        if not self.tested:
            return (
                "No run names its VM preset, so no tested size can be decided on: run the "
                "load profile at the sizes to compare (`perflib run load --vm PRESET`)."
            )
        if pick is None:
            why = "; ".join(f"{t.preset}: {', '.join(t.failed)}" for t in self.tested)
            out = f"No tested preset passes ({why})."
        elif pick.preset == self.current or pick.saving_usd == 0:
            out = (
                f"The cheapest tested preset that passes is {pick.preset}, the current size "
                f"(${pick.monthly_cost_usd:.2f}/30 d, {self.price_label}): no saving."
            )
        else:
            verb = "saving" if pick.saving_usd > 0 else "costing"
            conf = ""
            if pick.confirmed_cost_usd is not None and pick.confirmed_saving_usd is not None:
                conf = (
                    f"; at the confirmed {self.confirmed_price_set} prices "
                    f"${pick.confirmed_cost_usd:.2f}/30 d, saving ${pick.confirmed_saving_usd:.2f}"
                )
            out = (
                f"The cheapest tested preset that passes is {pick.preset}: "
                f"${pick.monthly_cost_usd:.2f}/30 d, {verb} ${abs(pick.saving_usd):.2f}/30 d "
                f"against {self.current} ({self.price_label}{conf})."
            )
        if pick is not None and pick.open:
            out = out[:-1] + f"; not settled by these runs: {'; '.join(pick.open)}."
        if self.partial_runs:
            out += f" From a partial run ({', '.join(self.partial_runs)}): re-run to confirm."
        return out

    def table(self) -> pd.DataFrame:
        """One readable row per tested preset (strings, no NaN), for terminal and report."""
        base = self.latency_baseline.split(":")[-1] if self.latency_baseline else "largest"
        rows = []
        for t in self.tested:
            peak = "–" if t.peak_mb is None else f"{t.peak_mb:,.0f}"
            if t.peak_censored:
                peak = f"≥ {peak} (OOM-censored)"
            cpu = "–"
            if t.cpu_mean_pct is not None:
                cmp = ">" if t.cpu_above_baseline else "≤"
                cpu = f"{t.cpu_mean_pct:.1f} % {cmp} {t.cpu_baseline_pct:g} %"
                if t.throttled_s:
                    cpu += f", throttled {t.throttled_s:.0f} s"
            cost = f"${t.monthly_cost_usd:.2f}"
            saving = (
                "–"
                if not t.saving_usd
                else (f"${t.saving_usd:.2f}" if t.saving_usd > 0 else f"−${-t.saving_usd:.2f}")
            )
            if t.confirmed_cost_usd is not None:
                cost += f" (confirmed: ${t.confirmed_cost_usd:.2f})"
            rows.append(
                {
                    "preset": t.preset + (" (current)" if t.preset == self.current else ""),
                    "usable MB (÷ 1.3)": f"{t.usable_mb:,.0f} of {t.memory_mb:,}",
                    "peak MB": peak,
                    "OOM kills": str(t.oom_kills),
                    f"p95 vs {base}": t.latency_change,
                    "CPU mean vs baseline": cpu,
                    "$/30 d": cost,
                    "saving/30 d": saving,
                    "verdict": "passes" if t.passes else "fails: " + ", ".join(t.failed),
                }
            )
        return pd.DataFrame(rows)

    @property
    def cpu_note(self) -> str | None:
        """The shared-CPU risk in words, when a tested shared preset runs above its share."""
        above = [t for t in self.tested if t.cpu_above_baseline]
        if not above:
            return None
        worst = max(above, key=lambda t: t.cpu_mean_pct or 0.0)
        throttled = [t for t in self.tested if t.throttled_s]
        seen = (
            "; the runs were throttled at "
            + ", ".join(f"{t.preset} ({t.throttled_s:.0f} s)" for t in throttled)
            if throttled
            else ""
        )
        spend = (
            f" (a full balance lasts ~{worst.exhaust_full_s / 60:,.0f} min at this load)"
            if worst.exhaust_full_s
            else ""
        )
        return (
            f"Shared-CPU risk: under the test's load the service averages up to "
            f"{worst.cpu_mean_pct:.1f} % of a vCPU, above the {worst.cpu_baseline_pct:g} % a "
            "shared vCPU is guaranteed (docs/guide.md#fly-shared-cpu): it runs on its burst "
            f"balance{spend} and is throttled once the balance is spent, whatever the memory "
            "size" + seen + "."
        )

    def next_lines(self) -> list[str]:
        """ "Worth testing next" as lines with the command that tests each size."""
        return [
            f"{n.preset} (${n.monthly_cost_usd:.2f}/30 d, saving ${n.saving_usd:.2f}): {n.why} "
            f"— test it: `{n.command}`, then `perflib compare` the new run with the others"
            for n in self.worth_testing
        ]

    def to_dict(self) -> dict[str, Any]:
        pick = self.pick
        return {
            "sentence": self.sentence,
            "current": self.current,
            "price_set": self.price_set,
            "price_status": self.price_status,
            "confirmed_price_set": self.confirmed_price_set,
            "latency_baseline": self.latency_baseline,
            "cheapest_tested_passing": pick.preset if pick else None,
            "tested": [t.to_dict() for t in self.tested],
            "worth_testing": [n.to_dict() for n in self.worth_testing],
            "memory_note": self.memory_note,
            "cpu_note": self.cpu_note,
        }


def _latency_row(digest: Mapping[str, Any] | None) -> tuple[str, str, Any]:
    """``(change, verdict, more_to_decide)`` of a comparison digest's all-requests row."""
    if digest is None:
        return "not compared", "no run of the same profile at a larger size", None
    if not digest.get("available", True):
        return "not compared", str(digest.get("reason", "not available")), None
    rows = digest.get("latency") or []
    row = next((r for r in rows if r.get("name") == ALL), rows[0] if rows else None)
    if row is None:
        return "not compared", "no latency rows", None
    return str(row.get("change", "?")), str(row.get("verdict", "")), row.get("more_to_decide")


def _cpu(
    runs: Sequence[RunEvidence], preset: Preset
) -> tuple[float | None, float | None, float | None]:
    """Mean CPU under load per vCPU (the highest over the runs), the throttled seconds and the
    seconds the measured load takes to spend a full burst balance — from the analysis'
    shared-CPU finding (``RunAnalysis.throttling``) when it has one, else its CPU summary."""
    means: list[float] = []
    throttled: list[float] = []
    exhaust: list[float] = []
    for r in runs:
        a = r.analysis
        t = getattr(a, "throttling", None) if a is not None else None
        if t is not None and t.mean_load_pct is not None:
            means.append(t.mean_load_pct / preset.cpus)
            if t.throttled_s is not None:
                throttled.append(t.throttled_s)
            if getattr(t, "time_to_exhaust_full_s", None) is not None:
                exhaust.append(t.time_to_exhaust_full_s)
        elif a is not None and a.cpu.avg_pct is not None:
            means.append(a.cpu.avg_pct / preset.cpus)
            if a.cpu.throttled_s is not None:
                throttled.append(a.cpu.throttled_s)
        else:
            cpu = pd.to_numeric(r.samples["cpu_pct"], errors="coerce").dropna()
            if len(cpu):
                means.append(float(cpu.mean()) / preset.cpus)
    return (
        max(means) if means else None,
        sum(throttled) if throttled else None,
        min(exhaust) if exhaust else None,
    )


def memory_note(runs: Sequence[RunEvidence], basis: str) -> str:
    """What the memory figures are: the VM's view, with the emulation's guest overhead per
    size (manifest ``vm.emulation.guest_overhead_mb`` and ``guest_overhead_source``: the
    calibration table ``data/guest_memory.csv``, or the 40 MB guess) when the runs were
    emulated."""
    by_size: dict[tuple[float, float], str] = {}
    for r in runs:
        emu = ((r.run.manifest.get("vm") or {}).get("emulation") or {}) if r.run else {}
        if emu.get("guest_overhead_mb") is None:
            continue
        size = float(r.preset.memory_mb) if r.preset else 0.0
        src = str(emu.get("guest_overhead_source") or "assumed")
        by_size[(size, float(emu["guest_overhead_mb"]))] = src
    what = "Memory is as the VM sees it (MemTotal − MemAvailable)"
    if by_size:
        overheads = {o for (_, o) in by_size}
        sizes = (
            f"{next(iter(overheads)):g} MB"
            if len(overheads) == 1
            else ", ".join(f"{o:g} MB at {m:g} MB" for (m, o) in sorted(by_size))
        )
        sources = sorted(set(by_size.values()))
        if all("guest_memory" in src for src in sources):
            what += (
                "; in the emulated VM that is the service's processes plus the guest overhead "
                f"measured on a Linux guest: {sizes} ({'; '.join(sources)})"
            )
        else:
            what += (
                "; in the emulated VM that is the service's processes plus an assumed guest "
                f"overhead of {sizes} (manifest vm.emulation.guest_overhead_mb), not a "
                "measurement of Fly's guest"
            )
    if basis == BASIS_NEXT_CLEAN:
        need = (
            "The memory need is the next tested size without kills: an OOM kill cut the "
            "smaller run's peak off, so that peak is only a lower bound"
        )
    elif basis == BASIS_VPA:
        need = (
            "An OOM kill cut the peak off (a lower bound), so the memory need is VPA's OOM "
            f"bump of the memory at the kill × {BUFFER} (guide's buffer)"
        )
    else:
        need = f"The memory need is the measured peak × {BUFFER} (guide's buffer)"
    return f"{what}. {need}."


def build_decision(
    runs: Sequence[RunEvidence],
    *,
    current: Preset,
    region: str,
    price_set: PriceSet,
    instances: int,
    why_not: Callable[[Preset], list[str]],
    rules_pick: Preset | None,
    latency: Mapping[str, Mapping[str, Any]],
    basis: str,
) -> Decision:
    """The decision over the runs made at a preset. ``why_not(p)`` is the recommender's rule
    check (empty when every rule allows ``p``), so a preset passes here exactly when the rules
    allow it and its own runs showed no OOM kill, no slowdown and a peak that fits."""
    by_preset: dict[Preset, list[RunEvidence]] = {}
    for r in runs:
        if r.preset is not None:
            by_preset.setdefault(r.preset, []).append(r)
    conf = confirmed_price_set()
    conf_name = conf.name if conf is not None and conf.name != price_set.name else None
    cur_cost = monthly_cost(current, instances, region, price_set=price_set.name)
    conf_cur = monthly_cost(current, instances, region, price_set=conf_name) if conf_name else None
    profiles = {r.profile for r in runs if r.label in latency}
    bases = [r for r in runs if r.profile in profiles and r.label not in latency and r.preset]
    base = max(bases, key=lambda r: (r.preset.memory_mb, r.preset.cpus)) if bases else None  # type: ignore[union-attr]
    baseline = base.preset.name if base is not None and base.preset is not None else None
    tested = []
    for p in sorted(by_preset, key=lambda x: (x.memory_mb, x.cpus), reverse=True):
        group = by_preset[p]
        sizing = [r for r in group if (r.profile or "") != "stress"] or group
        peaks = [r.peak_mb for r in sizing if not math.isnan(r.peak_mb)]
        kills = sum(r.oom_count for r in group)
        digest = next((latency[r.label] for r in group if r.label in latency), None)
        if digest is None and p.name == baseline:
            change, verdict, more = "baseline", "the size the others are compared with", None
        else:
            change, verdict, more = _latency_row(digest)
        mean, throttled, exhaust = _cpu(
            [r for r in sizing if (r.profile or "") == "load"] or sizing, p
        )
        cost = monthly_cost(p, instances, region, price_set=price_set.name)
        c_cost = monthly_cost(p, instances, region, price_set=conf_name) if conf_name else None
        usable = p.memory_mb / BUFFER
        peak = max(peaks) if peaks else None
        failed: list[str] = []
        if kills:
            failed.append(f"{kills} OOM kill(s)")
        elif peak is not None and peak > usable:
            failed.append(f"peak {peak:.0f} MB > usable {usable:.0f} MB")
        if change in FAILING_CHANGES:
            failed.append(f"p95 {change}")
        failed += [w for w in why_not(p) if not (kills and "OOM" in w)]
        open_: list[str] = []
        if change == "inconclusive":
            open_.append(
                "p95 change inconclusive"
                + (f" (~{int(more):,} more requests per side would decide)" if more else "")
            )
        elif change == "not compared" and p.name != current.name:
            open_.append(f"p95 not compared ({verdict})")
        tested.append(
            TestedPreset(
                preset=p.name,
                memory_mb=p.memory_mb,
                runs=[r.label for r in group],
                usable_mb=usable,
                peak_mb=peak,
                peak_censored=bool(kills),
                oom_kills=kills,
                latency_change=change,
                latency_verdict=verdict,
                cpu_mean_pct=mean,
                cpu_baseline_pct=100.0 * p.cpu_capacity / p.cpus,
                throttled_s=throttled,
                exhaust_full_s=exhaust,
                monthly_cost_usd=cost,
                saving_usd=round(cur_cost - cost, 2),
                confirmed_cost_usd=c_cost,
                confirmed_saving_usd=(
                    round(conf_cur - c_cost, 2)
                    if conf_cur is not None and c_cost is not None
                    else None
                ),  # fmt: skip
                failed=failed,
                open=open_,
            )
        )
    decision = Decision(
        current=current.name,
        current_monthly_cost_usd=cur_cost,
        region=region,
        price_set=price_set.name,
        price_status=price_set.status,
        confirmed_price_set=conf_name,
        latency_baseline=baseline,
        tested=tested,
        worth_testing=[],
        memory_note=memory_note(runs, basis),
        partial_runs=[r.label for r in runs if r.partial],
    )
    pick = decision.pick
    if rules_pick is not None and rules_pick not in by_preset:
        r_cost = monthly_cost(rules_pick, instances, region, price_set=price_set.name)
        if pick is None or r_cost < pick.monthly_cost_usd:
            decision.worth_testing.append(
                NextTest(
                    preset=rules_pick.name,
                    monthly_cost_usd=r_cost,
                    saving_usd=round(cur_cost - r_cost, 2),
                    why="the cheapest size the guide's rules allow from these runs, never run",
                )
            )
    return decision
