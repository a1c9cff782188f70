"""Who sent what, and who held what, in a swarm run (pure: the runner feeds it readings).

The swarm's peers do not log which peer sent them which bytes; what the lab can read is the
seed's total upload (host 0's wire counter in netns, the TCP bytes its peers acknowledged in
app mode, read with ``ss``), each peer's ``piece`` events, and the honest peers' reports of
corrupt data. These functions turn those readings into the run's records.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from hubswarm.lab.events import Event
from hubswarm.lab.metrics import ClientRecord, CorruptOutcome, FaultEvent, ReplicaSample
from hubswarm.lab.scenario import Scenario

__all__ = [
    "AckedBytes",
    "attribute_server_bytes",
    "corrupt_clients",
    "corrupt_detail",
    "corrupt_event",
    "corrupt_outcome",
    "parse_ss",
    "replica_samples",
    "replica_timeline",
]

# Replica counts are sampled at this many equal steps over a swarm run.
REPLICA_STEPS = 10
_SS_ACKED = re.compile(r"bytes_acked:(\d+)")


def parse_ss(text: str, pid: int) -> dict[str, int]:
    """``ss -tinpH`` output -> {"local peer": bytes_acked} for the TCP sockets of ``pid``.

    A socket's line ends with its two addresses and ``users:(...)``; what comes before them
    (``State Recv-Q Send-Q``) depends on the options. Keying on fixed columns took Send-Q
    for an address, so one connection's samples counted as many (26 MB for a 2 MB upload).
    """
    out: dict[str, int] = {}
    current: str | None = None
    for line in text.splitlines():
        if line[:1] not in (" ", "\t"):
            fields = line.split()
            users = next((i for i, f in enumerate(fields) if f.startswith("users:")), 0)
            owned = f"pid={pid}," in line and users >= 2
            current = f"{fields[users - 2]} {fields[users - 1]}" if owned else None
        elif current is not None:
            acked = _SS_ACKED.search(line)
            if acked:
                out[current] = int(acked.group(1))
    return out


class AckedBytes:
    """The bytes a process's peers acknowledged, summed over its TCP connections.

    ``ss`` forgets a socket once it closes: each connection keeps the largest count seen.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._acked: dict[str, int] = {}

    def add(self, ss_output: str) -> int:
        """Take one ``ss -tinpH`` reading; return the total so far."""
        for key, value in parse_ss(ss_output, self.pid).items():
            self._acked[key] = max(self._acked.get(key, 0), value)
        return sum(self._acked.values())


def attribute_server_bytes(
    records: Mapping[int, ClientRecord], server_bytes: int
) -> dict[int, ClientRecord]:
    """Split the seed's upload over the clients in proportion to what each received.

    Which peer sent which bytes is not logged; the split is an attribution, not a reading.
    """
    received = sum(r.bytes_received for r in records.values())
    if received <= 0:
        return dict(records)
    share = min(1.0, server_bytes / received)
    return {
        i: dataclasses.replace(
            r,
            bytes_from_server=round(r.bytes_received * share),
            bytes_from_peers=r.bytes_received - round(r.bytes_received * share),
        )
        for i, r in records.items()
    }


def replica_timeline(
    pieces: int,
    have: Mapping[int, Sequence[tuple[float, int]]],
    gone_at: Mapping[int, float | None],
    seed_gone_at: float | None,
    times: Sequence[float],
) -> tuple[ReplicaSample, ...]:
    """Live copies of each piece at each time: the seed (until it dies) + peers that hold it
    and are still in the swarm. ``have[i]`` lists (t, piece_index) completions of peer i."""
    samples = []
    for t in times:
        counts = [1 if seed_gone_at is None or t < seed_gone_at else 0] * pieces
        for peer, events in have.items():
            gone = gone_at.get(peer)
            if gone is not None and t >= gone:
                continue
            # A piece logged twice (re-fetched after a bad hash) is still one copy.
            held = {index for at, index in events if at <= t and 0 <= index < pieces}
            for index in held:
                counts[index] += 1
        samples.append(ReplicaSample(t, tuple(counts)))
    return tuple(samples)


def replica_samples(
    pieces: int,
    have: Mapping[int, Sequence[tuple[float, int]]],
    gone_at: Mapping[int, float | None],
    ends: Sequence[float],
) -> tuple[ReplicaSample, ...]:
    """:func:`replica_timeline` at :data:`REPLICA_STEPS` equal steps up to the last of
    ``ends`` (the clients' completions), with a seed that lives to the end of the run."""
    horizon = max([*ends, 0.1])
    times = [horizon * k / REPLICA_STEPS for k in range(REPLICA_STEPS + 1)]
    return replica_timeline(pieces, have, gone_at, None, times)


def corrupt_clients(scenario: Scenario, n: int) -> set[int]:
    """The clients that serve corrupt data (the last ``count`` of them, per corrupt_peer)."""
    count = sum(f.count for f in scenario.faults if f.kind == "corrupt_peer")
    return set(range(max(1, n - count + 1), n + 1)) if count else set()


def corrupt_outcome(
    corrupt: set[int],
    records: Mapping[int, ClientRecord],
    logs: Mapping[int, Sequence[Event]],
) -> CorruptOutcome:
    """What the honest peers saw of the corrupt ones: bad pieces, bans, verified downloads."""
    honest = [i for i in records if i not in corrupt]
    events = [e.get("event") for i in honest for e in logs.get(i, ())]
    return CorruptOutcome(
        peers=tuple(sorted(corrupt)),
        bad_pieces=events.count("bad_piece"),
        bans=events.count("banned"),
        honest_verified=sum(records[i].verified for i in honest),
        honest=len(honest),
    )


def corrupt_detail(outcome: CorruptOutcome) -> str:
    """The corrupt_peer fault's outcome in words (the report's Details)."""
    return (
        f"peers {list(outcome.peers)} flip bytes they upload: {outcome.bad_pieces} bad "
        f"pieces detected, {outcome.bans} bans by honest peers, "
        f"{outcome.honest_verified}/{outcome.honest} honest clients verified"
    )


def corrupt_event(
    scenario: Scenario,
    corrupt: set[int],
    records: Mapping[int, ClientRecord],
    logs: Mapping[int, Sequence[Event]],
) -> FaultEvent:
    """The record of a run's corrupt_peer faults (one, at the first one's time), with what
    the honest peers' logs say came of them."""
    faults = [f for f in scenario.faults if f.kind == "corrupt_peer"]
    outcome = corrupt_outcome(corrupt, records, logs)
    return FaultEvent(
        min(f.at for f in faults),
        "corrupt_peer",
        corrupt_detail(outcome),
        count=sum(f.count for f in faults),
        corrupt=outcome,
    )
