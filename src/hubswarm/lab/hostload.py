"""How busy the host's CPUs were during a run.

A lab time measures the emulated network only while the host has CPU to spare: 33 Python
peers on 2 cores do not (measured: N=32, F=1 MiB at 256 KiB/s kept both cores 100% busy for
the whole run, and the swarm took 3x its bound whatever the link rates). Each run records the
fraction of all cores that were busy between its t=0 and its end, read from ``/proc/stat``;
the report marks runs at or above :data:`CPU_BOUND` so nobody reads a host limit as an
architecture's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hubswarm.errors import LabError

__all__ = ["CPU_BOUND", "CpuSample", "busy_fraction", "parse_proc_stat", "sample"]

# At or above this fraction of all cores busy, the run is reported as CPU-bound.
CPU_BOUND = 0.9
# /proc/stat "cpu" line: user nice system idle iowait irq softirq steal (guest, guest_nice
# are already counted in user and nice).
_IDLE_FIELDS = (3, 4)
_COUNTED = 8


@dataclass(frozen=True, slots=True)
class CpuSample:
    """Cumulative CPU time of all cores, in clock ticks."""

    busy: int
    total: int


def parse_proc_stat(text: str) -> CpuSample:
    """The aggregate ``cpu`` line of ``/proc/stat``.

    Raises:
        LabError: no ``cpu`` line, or it has fewer than 8 numeric fields.
    """
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            try:
                values = [int(v) for v in fields[1 : 1 + _COUNTED]]
            except ValueError as exc:
                raise LabError(f"/proc/stat: bad cpu line {line!r}") from exc
            if len(values) < _COUNTED or any(v < 0 for v in values):
                raise LabError(f"/proc/stat: bad cpu line {line!r}")
            total = sum(values)
            idle = sum(values[i] for i in _IDLE_FIELDS)
            return CpuSample(busy=total - idle, total=total)
    raise LabError("/proc/stat has no aggregate cpu line")


def sample(path: Path = Path("/proc/stat")) -> CpuSample | None:
    """Read the host's CPU counters now; None where there is no /proc (not Linux)."""
    try:
        return parse_proc_stat(path.read_text(encoding="ascii", errors="replace"))
    except (OSError, LabError):
        return None


def busy_fraction(before: CpuSample | None, after: CpuSample | None) -> float | None:
    """Fraction (0..1) of all cores busy between two samples; None if unknown."""
    if before is None or after is None:
        return None
    total = after.total - before.total
    if total <= 0:
        return None
    return min(1.0, max(0.0, (after.busy - before.busy) / total))
