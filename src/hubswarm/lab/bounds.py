"""Kurose-Ross lower bounds on the time to distribute one file to N clients (pure).

Units: sizes in bytes, rates in bytes/s, results in seconds. A download rate of ``math.inf``
means "not limited". Both fluid bounds are reachable in the fluid limit, so a measured time
below them is a measurement bug, never a win (Kurose & Ross, "Computer Networking", 2.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["d_cs", "d_p2p", "efficiency", "piece_estimate"]


def _check(n: int, file_size: float, u_s: float, d_min: float) -> None:
    if n < 1:
        raise ValueError(f"need at least one client, got {n}")
    if file_size < 0:
        raise ValueError(f"file size must be >= 0, got {file_size}")
    if u_s <= 0:
        raise ValueError(f"server upload must be > 0, got {u_s}")
    if d_min <= 0:
        raise ValueError(f"minimum download rate must be > 0, got {d_min}")


def d_cs(n: int, file_size: float, u_s: float, d_min: float = math.inf) -> float:
    """Client-server bound ``max(N F / u_s, F / d_min)``: the server sends N copies."""
    _check(n, file_size, u_s, d_min)
    return max(n * file_size / u_s, file_size / d_min)


def d_p2p(
    n: int, file_size: float, u_s: float, uploads: Sequence[float], d_min: float = math.inf
) -> float:
    """Peer-to-peer bound ``max(F / u_s, F / d_min, N F / (u_s + sum u_i))``.

    The server must send at least one copy, the slowest peer must receive one, and the
    N copies need the total upload capacity of server plus peers.
    """
    _check(n, file_size, u_s, d_min)
    if any(u < 0 for u in uploads):
        raise ValueError("peer upload rates must be >= 0")
    return max(file_size / u_s, file_size / d_min, n * file_size / (u_s + math.fsum(uploads)))


def piece_estimate(n: int, file_size: float, u: float, pieces: int) -> float:
    """Best piece-granular schedule with equal capacities u: ``(F/u)(1 + floor(log2 N)/M)``.

    With M pieces the pipeline needs about log2 N extra piece-times to fill the tree
    (Kurose-Ross exercise; Mundinger et al. 2008 show it optimal for equal upload capacity).
    """
    if n < 1 or pieces < 1 or u <= 0:
        raise ValueError("need n >= 1, pieces >= 1 and u > 0")
    return (file_size / u) * (1 + math.floor(math.log2(n)) / pieces)


def efficiency(
    n: int, file_size: float, t_measured: float, u_s: float, uploads: Sequence[float]
) -> float:
    """Share of the peers' upload capacity a swarm used: ``(N F / T - u_s) / sum u_i``.

    1.0 means the peers uploaded at full capacity the whole time (with the server saturated);
    values near or below 0 mean the server did (almost) all the work.
    """
    total = math.fsum(uploads)
    if t_measured <= 0 or total <= 0:
        raise ValueError("need a positive measured time and positive peer upload capacity")
    return (n * file_size / t_measured - u_s) / total
