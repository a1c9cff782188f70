"""Virtual-time runs: the real hub and peers on the modelled network (emulation ``sim``).

Theory of operation
-------------------
A sim run is one call of :func:`run_sim`: it starts a :class:`~hubswarm.vtime.VirtualTimeLoop`
of its own and, on it, builds a :class:`~hubswarm.lab.simnet.SimNetwork` with one host per
machine of the plan (host 0 the server, 1..N the clients, each with its drawn upload and
download), then runs **the real code** there, one module per architecture:

- :mod:`.cs` (client-server): the hub is ``hubswarm.hub.app`` served through
  :class:`~hubswarm.httpnet.NetworkSite`, each client is ``hubswarm.hub.client.download``
  (the code of ``hubswarm get``) dialling through :class:`~hubswarm.httpnet.NetworkConnector`;
- :mod:`.p2p`: a super-seeding ``share`` on host 0, a DHT bootstrap node on an unshaped host
  N + 1 (as the netns runner has it), and N ``fetch`` peers that find each other by DHT;
- :mod:`.hybrid`: host 0 runs the hub as tracker and BEP 19 web seed beside a seed peer; the
  peers announce to it and fetch from the web seed and from each other.

The swarms' peers share :mod:`.swarm` (arrivals, churn, kill_peers, corrupt_peer, the event
logs that give replica counts and the first copy's time); :mod:`.common` holds the world
(network, t = 0, faults) every run has. Nothing opens a socket; thread jobs (hashing, file
I/O) run inline and take no virtual time.

So a run takes as much wall time as its CPU work, whatever the scenario's rates, and it is a
function of the plan and its seed: the same plan gives the same times, bit for bit.

Times in the result are seconds of virtual time since the run's t = 0, as the netns runs'
are seconds of wall time. The report says which emulation each run had.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from hubswarm import vtime
from hubswarm.errors import LabError
from hubswarm.lab.metrics import RunResult
from hubswarm.lab.scenario import RunPlan
from hubswarm.lab.sim.common import SIM_NOTE, host_ip, link_specs

__all__ = ["SIM_NOTE", "host_ip", "link_specs", "run_sim"]


def _architectures() -> dict[str, Callable[[RunPlan, Path], Coroutine[Any, Any, RunResult]]]:
    # Imported here: the swarm (and aiohttp) only for the runs that need them.
    from hubswarm.lab.sim.cs import run_client_server
    from hubswarm.lab.sim.hybrid import run_hybrid
    from hubswarm.lab.sim.p2p import run_p2p

    return {"client-server": run_client_server, "p2p": run_p2p, "hybrid": run_hybrid}


def run_sim(plan: RunPlan, architecture: str, workdir: Path) -> RunResult:
    """One run of ``architecture`` in virtual time, on a loop of its own (blocking: call it
    in a worker thread or process). Raises LabError for an architecture sim cannot run."""
    try:
        make = _architectures()[architecture]
    except KeyError:
        if architecture == "libtorrent":  # scenario.REFERENCE_ARCHITECTURES
            raise LabError(
                "emulation 'sim' cannot run architecture 'libtorrent': libtorrent opens its "
                "own sockets (run it in netns)"
            ) from None
        raise LabError(f"emulation 'sim' cannot run architecture {architecture!r} yet") from None
    # The simulator's own cost, for the report: wall time is not the run's time here.
    started = time.perf_counter()
    result = vtime.run(make(plan, workdir))
    return replace(result, wall_time=time.perf_counter() - started)
