"""How the report writes numbers: sizes in MiB, times in seconds, fractions in percent."""

from __future__ import annotations

__all__ = ["mib", "pct", "secs"]


def mib(n: float) -> str:
    """Bytes as ``1.5 MiB``."""
    return f"{n / 2**20:.1f} MiB"


def secs(t: float | None) -> str:
    """Seconds as ``2.10 s``; ``-`` for none."""
    return "-" if t is None else f"{t:.2f} s"


def pct(x: float | None) -> str:
    """A fraction as ``95%``; ``-`` for none."""
    return "-" if x is None else f"{100 * x:.0f}%"
