"""The measured room a Fly-sized guest leaves for the app, per size (``data/guest_memory.csv``).

``perflib calibrate`` writes the table from real guests (see :mod:`perflib.guest.calibrate`);
the process emulation (:mod:`perflib.vm`) reads it: its OOM kill point for a preset is the
table's ``usable_mb`` — the app's RSS (the service's idle RSS + a hog's beside it) at which
the guest kernel OOM-killed the hog — so the emulated overhead is ``memory_mb − usable_mb``. Sizes between
rows are interpolated linearly, sizes beyond the ends extrapolated from the last two rows
(the kernel's share grows with RAM: ``struct page`` is ~1.6 % of it).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from perflib.cost import DATA_DIR

TABLE = DATA_DIR / "guest_memory.csv"
COLUMNS = (
    "measured_on",
    "kernel_version",
    "accelerator",
    "memory_mb",
    "mem_total_mb",
    "idle_used_mb",
    "service_rss_mb",
    "service_rss_at_kill_mb",
    "used_with_service_mb",
    "hog_kill_rss_mb",
    "usable_mb",
    "overhead_mb",
)


@dataclass(frozen=True)
class MemoryTable:
    """Rows of the calibration table, sorted by size."""

    path: Path
    rows: tuple[dict[str, str], ...]

    @property
    def label(self) -> str:
        """How a manifest or report names the table: file, date and kernel."""
        if not self.rows:
            return str(self.path.name)
        r = self.rows[0]
        return f"{self.path.name} (measured {r['measured_on']}, kernel {r['kernel_version']})"

    def points(self) -> list[tuple[float, float]]:
        return [(float(r["memory_mb"]), float(r["overhead_mb"])) for r in self.rows]

    def overhead_mb(self, memory_mb: float) -> float:
        """Guest overhead (kernel + init + what the OOM killer keeps) for a size, in MiB."""
        pts = self.points()
        if not pts:
            raise ValueError(f"{self.path}: no rows")
        if len(pts) == 1:
            return pts[0][1]
        if memory_mb <= pts[0][0]:
            (x0, y0), (x1, y1) = pts[0], pts[1]
        elif memory_mb >= pts[-1][0]:
            (x0, y0), (x1, y1) = pts[-2], pts[-1]
        else:
            i = next(i for i, (x, _) in enumerate(pts) if x >= memory_mb)
            (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        y = y0 + (y1 - y0) * (memory_mb - x0) / (x1 - x0)
        return round(max(0.0, min(y, memory_mb)), 3)

    def usable_mb(self, memory_mb: float) -> float:
        return round(memory_mb - self.overhead_mb(memory_mb), 3)


def load_table(path: Path | None = None) -> MemoryTable | None:
    """The calibration table, or None when there is none (the 40 MB guess applies)."""
    path = path or TABLE
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("memory_mb")]
    except OSError:
        return None
    rows.sort(key=lambda r: float(r["memory_mb"]))
    return MemoryTable(path, tuple(rows)) if rows else None


def write_table(rows: list[dict[str, object]], path: Path | None = None) -> Path:
    path = path or TABLE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path
