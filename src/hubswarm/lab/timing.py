"""The lab's timing preset: a swarm peer's intervals in seconds, for runs that last seconds.

Every peer the lab starts (``hubswarm share`` and ``fetch`` with ``--fast-intervals``) runs
with :func:`lab_timing` applied to its :class:`~hubswarm.swarm.session.SessionConfig`. The
defaults are the Internet's (choke rounds of 10 s, announces every few minutes); a lab run
of a few MiB is over before the first of them. docs/lab.md has the runs behind the numbers.
"""

from __future__ import annotations

import dataclasses

from hubswarm.swarm.session import SessionConfig

__all__ = ["lab_timing"]


def lab_timing(config: SessionConfig) -> SessionConfig:
    """``config`` with the lab's intervals, queue depths and seed slots."""
    return dataclasses.replace(
        config,
        # Re-evaluate choking every second and rotate the optimistic unchoke every 3 s.
        choke_interval=1.0,
        optimistic_interval=3.0,
        # Re-announce every second, so that a flash crowd meets within a second or two.
        announce_interval=1.0,
        snub_timeout=10.0,
        request_timeout=10.0,
        # DHT re-lookups ramp 0.25, 0.5, ... 8 s: a flash crowd still meets within a second
        # (latecomers find the early ones; the early ones are dialled), while 33 peers each
        # looking up every second spent a third of their CPU on KRPC on 2 cores.
        dht_interval=8.0,
        # Re-dial a lost peer after 0.5 s, backing off to 5 s.
        reconnect_min=0.5,
        reconnect_max=5.0,
        # A seed serves one peer at a time, in turn (a new turn each choke round): the
        # swarm, not the seed, makes the copies.
        seed_unchoke_slots=1,
        # Shallow request queues: the lab's links add no delay and its files are a few MiB.
        # A deep queue asks one busy peer for pieces an idle one also holds; they wait behind
        # its other uploads while the idle one has nothing asked of it. 2 requests (one
        # 32 KiB piece) or 0.1 s at the measured rate.
        initial_queue_depth=2,
        request_queue_time=0.1,
    )
