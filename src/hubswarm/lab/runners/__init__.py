"""One runner per architecture, each behind the :class:`ArchitectureRunner` protocol.

A runner gets a :class:`~hubswarm.lab.scenario.RunPlan` (a scenario at one N, every client's
capacities drawn), a :class:`~hubswarm.lab.netem.Network` (hosts: 0 is the server or first
seed, 1..N the clients, then ``extra_hosts`` more) and a scratch folder, and returns a
:class:`~hubswarm.lab.metrics.RunResult`. Another architecture plugs in by adding a class
with ``name``, ``extra_hosts`` and ``run`` to :data:`RUNNERS`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from hubswarm.errors import LabError
from hubswarm.lab.metrics import RunResult
from hubswarm.lab.netem import Network
from hubswarm.lab.runners.client_server import ClientServerRunner
from hubswarm.lab.runners.hybrid import HybridRunner
from hubswarm.lab.runners.libtorrent import LibtorrentRunner
from hubswarm.lab.runners.swarm import SwarmRunner
from hubswarm.lab.scenario import RunPlan

__all__ = [
    "RUNNERS",
    "ArchitectureRunner",
    "ClientServerRunner",
    "HybridRunner",
    "LibtorrentRunner",
    "SwarmRunner",
    "make_runner",
    "unavailable",
]


class ArchitectureRunner(Protocol):
    """One architecture (client-server, hybrid, p2p) as the lab drives it."""

    name: str
    # Hosts beyond 0..N the architecture needs (an unshaped host for Internet services).
    extra_hosts: int

    async def run(self, plan: RunPlan, network: Network, workdir: Path) -> RunResult:
        """Distribute one file from host 0 to hosts 1..N per ``plan``; record everything.

        Must return a RunResult with one ClientRecord per client (index 1..N, times in
        seconds since the run's t=0), ``server_bytes_sent`` (bytes host 0 uploaded), the
        faults applied, replica samples per piece, and must kill every process it started.
        """
        ...


# Architecture name (as scenarios spell it) -> the runner's constructor.
RUNNERS: dict[str, Callable[..., ArchitectureRunner]] = {
    ClientServerRunner.name: ClientServerRunner,
    SwarmRunner.name: SwarmRunner,
    HybridRunner.name: HybridRunner,
    LibtorrentRunner.name: LibtorrentRunner,
}


def unavailable(name: str, mode: str) -> str | None:
    """Why architecture ``name`` cannot run in emulation ``mode`` on this machine (the
    reference client without its bindings, or outside netns), or None when it can."""
    check = getattr(RUNNERS.get(name), "unavailable", None)
    reason: str | None = check(mode) if check is not None else None
    return reason


def make_runner(name: str, *, python: str = sys.executable) -> ArchitectureRunner:
    """The runner of an architecture name. Raises LabError for unknown names."""
    try:
        factory = RUNNERS[name]
    except KeyError:
        raise LabError(f"unknown architecture {name!r}") from None
    return factory(python=python)
