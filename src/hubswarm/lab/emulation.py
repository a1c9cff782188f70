"""Which emulated network a run gets, and opening it for a plan's capacities.

An emulation is a name and an opener: given every host's (upload, download) in bytes/s, an
``async with`` that yields a :class:`~hubswarm.lab.netem.Network` and tears it down however
the run ends. ``netns`` and ``app`` live in :mod:`hubswarm.lab.netem`; another emulation
plugs in by adding its opener to :data:`EMULATIONS` (and its name to the scenario's list).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from hubswarm.errors import LabError
from hubswarm.lab import netem
from hubswarm.lab.netem import AppNetwork, NetnsNetwork, Network
from hubswarm.lab.scenario import RunPlan

__all__ = ["EMULATIONS", "NetworkOpener", "capacities", "open_network", "resolve_emulation"]

NetworkOpener = Callable[[Sequence[tuple[float, float]]], AbstractAsyncContextManager[Network]]


@contextlib.asynccontextmanager
async def _netns(capacities: Sequence[tuple[float, float]]) -> AsyncIterator[Network]:
    net = NetnsNetwork(capacities)
    # ip and tc run as blocking subprocesses: off the event loop.
    await asyncio.to_thread(net.__enter__)
    try:
        yield net
    finally:
        await asyncio.to_thread(net.close)


@contextlib.asynccontextmanager
async def _app(capacities: Sequence[tuple[float, float]]) -> AsyncIterator[Network]:
    async with AppNetwork(capacities) as app:
        yield app


EMULATIONS: dict[str, NetworkOpener] = {"netns": _netns, "app": _app}


def resolve_emulation(
    requested: str, *, no_netns: bool = False, sim: bool = False, needs_sim: bool = False
) -> str:
    """The emulation a scenario gets: ``sim`` when asked for (or forced with ``sim``, or
    ``auto`` with delay, loss or queues, which only the sim models); else ``auto`` ->
    ``netns`` when root and ip netns work, else ``app``. Raises LabError."""
    if sim or requested == "sim" or (requested == "auto" and needs_sim):
        return "sim"
    if no_netns or requested == "app":
        return "app"
    if requested in EMULATIONS and requested != "netns":
        return requested
    available = netem.netns_available()
    if requested == "netns" and not available:
        raise LabError("emulation 'netns' needs root and ip netns (or use --no-netns)")
    return "netns" if available else "app"


def capacities(plan: RunPlan, extra_hosts: int = 0) -> list[tuple[float, float]]:
    """Hosts 0 (server: upload u_s, download unshaped) and 1..N with the plan's capacities,
    then ``extra_hosts`` unshaped hosts (services that are neither server nor client)."""
    out = [(plan.scenario.server_upload, math.inf)]
    out += list(zip(plan.uploads, plan.downloads, strict=True))
    out += [(math.inf, math.inf)] * extra_hosts
    return out


@contextlib.asynccontextmanager
async def open_network(plan: RunPlan, mode: str, *, extra_hosts: int = 0) -> AsyncIterator[Network]:
    """The ``mode`` network for ``plan`` (see :func:`capacities`), closed on the way out."""
    try:
        opener = EMULATIONS[mode]
    except KeyError:
        raise LabError(f"unknown emulation {mode!r}") from None
    async with opener(capacities(plan, extra_hosts)) as network:
        yield network
