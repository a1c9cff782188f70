"""How busy the host's CPUs were during a run.

A lab time measures the emulated network only while the host has CPU to spare: 33 Python
peers on 2 cores do not (measured: N=32, F=1 MiB at 256 KiB/s kept both cores 100% busy for
the whole run, and the swarm took 3x its bound whatever the link rates). Each run records the
fraction of all cores that were busy between its t=0 and its end, read from ``/proc/stat``;
the report marks runs at or above :data:`CPU_BOUND` so nobody reads a host limit as an
architecture's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hubswarm.errors import LabError

__all__ = [
    "CPU_BOUND",
    "CpuSample",
    "busy_fraction",
    "parse_pid_stat",
    "parse_proc_stat",
    "process_cpu",
    "sample",
    "ticks_to_seconds",
]

# At or above this fraction of all cores busy, the run is reported as CPU-bound.
CPU_BOUND = 0.9
# /proc/stat "cpu" line: user nice system idle iowait irq softirq steal (guest, guest_nice
# are already counted in user and nice).
_IDLE_FIELDS = (3, 4)
# system, irq, softirq: the kernel's share (TCP, veth, bridge and htb work lands in softirq).
_KERNEL_FIELDS = (2, 5, 6)
_COUNTED = 8
# USER_HZ: the unit of every /proc CPU counter (100 on Linux).
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# /proc/PID/stat: after the ")" closing the command name, utime and stime are the 12th and
# 13th fields (fields 14 and 15 of proc(5), counted from the PID).
_UTIME_AFTER_COMM = 11


@dataclass(frozen=True, slots=True)
class CpuSample:
    """Cumulative CPU time of all cores, in clock ticks (``kernel``: system, irq, softirq)."""

    busy: int
    total: int
    kernel: int = 0


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
            kernel = sum(values[i] for i in _KERNEL_FIELDS)
            return CpuSample(busy=total - idle, total=total, kernel=kernel)
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


def parse_pid_stat(text: str) -> tuple[int, int]:
    """(utime, stime), in clock ticks, from the text of a ``/proc/PID/stat``.

    The command name (in parentheses) may hold spaces and parentheses: fields are counted
    after its last ``)``.

    Raises:
        LabError: no ``)``, too few fields, or a time that is not a count.
    """
    _, paren, rest = text.rpartition(")")
    fields = rest.split()
    if not paren or len(fields) < _UTIME_AFTER_COMM + 2:
        raise LabError(f"/proc/PID/stat: bad line {text[:80]!r}")
    try:
        utime, stime = (int(v) for v in fields[_UTIME_AFTER_COMM : _UTIME_AFTER_COMM + 2])
    except ValueError as exc:
        raise LabError(f"/proc/PID/stat: bad times in {text[:80]!r}") from exc
    if utime < 0 or stime < 0:
        raise LabError(f"/proc/PID/stat: bad times in {text[:80]!r}")
    return utime, stime


def process_cpu(pid: int, proc: Path = Path("/proc")) -> tuple[float, float] | None:
    """CPU-seconds (user, system) process ``pid`` has used so far; None if it is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
        utime, stime = parse_pid_stat(text)
    except (OSError, LabError):
        return None
    return utime / _CLOCK_TICKS, stime / _CLOCK_TICKS


def ticks_to_seconds(ticks: int) -> float:
    """Clock ticks (``/proc`` counters) as seconds."""
    return ticks / _CLOCK_TICKS
