"""What a run recorded, and what it measures (pure: no clock, no I/O).

A runner returns a :class:`RunResult` (raw per-client events plus server counters);
:func:`summarize` turns it into the numbers of one row of the comparison table. Times are
seconds since the start of the run (t = 0 is the first scheduled arrival).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from hubswarm.lab import bounds
from hubswarm.ratelimit import default_burst

__all__ = [
    "ClientRecord",
    "CorruptOutcome",
    "FaultCompletion",
    "FaultEvent",
    "PieceTrack",
    "ReplicaSample",
    "RunFailure",
    "RunMetrics",
    "RunResult",
    "SecurityProbe",
    "jain_index",
    "percentile",
    "summarize",
]


# Clients of a flash crowd are released within a few ms of each other; 0.25 s is generous.
FLASH_JITTER = 0.25


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """One client of a run: when it started and finished, what it received, from whom."""

    index: int
    start: float
    end: float | None  # None: never completed
    bytes_received: int
    bytes_from_server: int
    bytes_from_peers: int = 0
    verified: bool = False
    error: str | None = None
    left_at: float | None = None  # churn: when it left the system
    # Client-server: (t since t = 0, body bytes received) as the client downloaded
    # (lab.progress; at most progress.MAX_SAMPLES). Empty in runs.json written before it.
    progress: tuple[tuple[float, int], ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClientRecord:
        """Inverse of ``asdict``."""
        d = dict(data)
        d["progress"] = tuple((float(t), int(b)) for t, b in d.get("progress", ()))
        return cls(**d)

    @property
    def complete(self) -> bool:
        """Finished with every byte, checked against the expected hash."""
        return self.end is not None and self.verified

    @property
    def duration(self) -> float | None:
        """Completion time (end - start), or None."""
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True, slots=True)
class CorruptOutcome:
    """What came of a ``corrupt_peer`` fault, as the honest peers' event logs tell it."""

    peers: tuple[int, ...]  # the clients that flipped bytes they uploaded
    bad_pieces: int  # pieces the honest peers received with a wrong hash
    bans: int  # bans the honest peers issued
    honest_verified: int  # honest clients that still got the whole file, verified
    honest: int

    def __post_init__(self) -> None:
        if min(self.bad_pieces, self.bans, self.honest_verified) < 0:
            raise ValueError(f"negative count in {self!r}")
        if self.honest_verified > self.honest:
            raise ValueError(f"more honest clients verified than there are: {self!r}")

    @property
    def contained(self) -> bool:
        """Detected, banned, and every honest client still verified its file."""
        return self.bad_pieces > 0 and self.bans > 0 and self.honest_verified == self.honest

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CorruptOutcome:
        """Inverse of ``asdict``."""
        return cls(**{**data, "peers": tuple(data["peers"])})


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """A fault the runner applied: when, what, how many, what it hit and what came of it.

    ``detail`` is for people (the report's Details list); the report's cells read the other
    fields. Results written before those fields existed load with their defaults.
    """

    at: float
    kind: str
    detail: str = ""
    count: int = 1  # as the scenario asked (kill_peers, corrupt_peer)
    applied: bool = True  # False: the fault means nothing to this architecture (no tokens...)
    victims: tuple[int, ...] = ()  # kill_peers: the clients killed
    corrupt: CorruptOutcome | None = None  # corrupt_peer: what the honest peers saw

    def __post_init__(self) -> None:
        if self.count < 1 or len(self.victims) > self.count:
            raise ValueError(f"fault count {self.count} with victims {self.victims}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultEvent:
        """Inverse of ``asdict``."""
        d = dict(data)
        d["victims"] = tuple(d.get("victims", ()))
        if d.get("corrupt") is not None:
            d["corrupt"] = CorruptOutcome.from_json(d["corrupt"])
        return cls(**d)


class FaultCompletion(NamedTuple):
    """How a fault went for the clients still pending when it struck."""

    kind: str
    at: float
    completed: float  # the fraction of those clients that still completed


@dataclass(frozen=True, slots=True)
class ReplicaSample:
    """How many live hosts held each piece at time t (the data-storage row)."""

    t: float
    counts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PieceTrack:
    """One client's pieces in arrival order, for the replay: when (s since t = 0), which,
    and from where (``sources``: one letter a piece, s = the seed or server, p = a peer,
    w = a web seed). Client-server runs hold none: their replay is drawn from the records."""

    client: int
    times: tuple[float, ...]
    pieces: tuple[int, ...]
    sources: str

    def __post_init__(self) -> None:
        if not len(self.times) == len(self.pieces) == len(self.sources):
            raise ValueError(f"track of client {self.client}: lengths differ")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PieceTrack:
        """Inverse of ``asdict``."""
        return cls(
            int(data["client"]),
            tuple(float(t) for t in data["times"]),
            tuple(int(i) for i in data["pieces"]),
            str(data["sources"]),
        )


@dataclass(frozen=True, slots=True)
class SecurityProbe:
    """What an unauthorized client obtained: 0 bytes means access control held."""

    description: str
    bytes_obtained: int
    file_size: int
    outcome: str = ""
    authorized: bool = False  # a control probe with a valid token (must obtain everything)


@dataclass(frozen=True, slots=True)
class RunResult:
    """Everything one architecture's run at one N recorded; what every runner must return."""

    architecture: str
    scenario: str
    n: int
    file_size: int
    server_upload: float
    uploads: tuple[float, ...]
    downloads: tuple[float, ...]
    clients: tuple[ClientRecord, ...]
    server_bytes_sent: int | None = None
    faults: tuple[FaultEvent, ...] = ()
    replicas: tuple[ReplicaSample, ...] = ()
    security: tuple[SecurityProbe, ...] = ()
    emulation: str = "app"
    pieces: int = 1
    scenario_path: str | None = None
    wall_time: float = 0.0
    notes: tuple[str, ...] = ()
    # Fraction of the host's cores busy from t=0 to the end of the run (lab.hostload).
    host_cpu_busy: float | None = None
    # Swarms: when every piece was on some client (the seed's first copy was out).
    first_copy_at: float | None = None
    # The run's network (a point of a latency or loss sweep): the mean round trip between
    # two hosts (s) and the loss rate of a path (scenario.LatencySpec.rtt, Scenario.loss).
    rtt: float = 0.0
    loss: float = 0.0
    # Swarms: who held which piece when, and from where (lab.replay; capped for large N).
    tracks: tuple[PieceTrack, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the raw data (runs.json)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        """Inverse of :meth:`to_json`."""
        d = dict(data)
        d["uploads"] = tuple(d["uploads"])
        d["downloads"] = tuple(d["downloads"])
        d["clients"] = tuple(ClientRecord.from_json(c) for c in d["clients"])
        d["faults"] = tuple(FaultEvent.from_json(f) for f in d.get("faults", ()))
        d["replicas"] = tuple(
            ReplicaSample(r["t"], tuple(r["counts"])) for r in d.get("replicas", ())
        )
        d["security"] = tuple(SecurityProbe(**s) for s in d.get("security", ()))
        d["notes"] = tuple(d.get("notes", ()))
        d["tracks"] = tuple(PieceTrack.from_json(t) for t in d.get("tracks", ()))
        return cls(**d)


@dataclass(frozen=True, slots=True)
class RunFailure:
    """A run that could not be made (for example: the swarm runner is not available yet)."""

    architecture: str
    scenario: str
    n: int
    error: str
    scenario_path: str | None = None


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """The numbers of one run, ready for the table and the plots."""

    architecture: str
    scenario: str
    n: int
    file_size: int
    completed: int
    all_complete_time: float | None  # None if some client never completed
    last_completion: float | None
    completion_times: tuple[float, ...]
    server_bytes_sent: int | None
    server_share: float | None  # bytes from the server / bytes received by all clients
    server_utilization: float | None
    jain: float | None
    stdev: float | None
    p10: float | None
    p50: float | None
    p90: float | None
    max_over_min: float | None
    bound_cs: float
    bound_p2p: float
    efficiency: float | None
    below_bound: bool  # a time below the fluid bound is a measurement bug
    fault_completion: tuple[FaultCompletion, ...]
    min_replicas_end: int | None
    unauthorized_bytes: int | None
    notes: tuple[str, ...] = field(default=())


def burst_slack(run: RunResult) -> float:
    """Seconds a run may beat the fluid bound by without a measurement bug.

    netns: none (htb shapes every byte). app: the token buckets start full, so each host's
    first burst (``default_burst``: 0.1 s of its rate, at least 64 KiB) goes out at once; a
    swarm of 3 on loopback once finished in 0.579 s for a 0.6 s bound.
    """
    if run.emulation != "app":
        return 0.0
    rates = [r for r in (run.server_upload, *run.uploads) if 0 < r < math.inf]
    return max((default_burst(r) / r for r in rates), default=0.0)


def first_copy_time(pieces: int, have: Mapping[int, Sequence[tuple[float, int]]]) -> float | None:
    """When every piece had reached some client: the latest of the pieces' first arrivals.

    ``have[i]`` lists client i's (t, piece index) completions. With u_s = u_i a swarm's bound
    is F / u_s, the time the seed needs to send one copy; the distribution time beyond this
    one is the swarm's own (the last pieces spreading). None if a piece never arrived.
    """
    first: dict[int, float] = {}
    for events in have.values():
        for t, index in events:
            if 0 <= index < pieces and (index not in first or t < first[index]):
                first[index] = t
    return max(first.values()) if pieces > 0 and len(first) == pieces else None


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (q in [0, 100]) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index ``(sum x)^2 / (n sum x^2)``: 1 is perfectly fair, 1/n the worst."""
    if not values:
        raise ValueError("fairness of nothing")
    square_sum = math.fsum(x * x for x in values)
    if square_sum == 0:
        return 1.0
    return math.fsum(values) ** 2 / (len(values) * square_sum)


def summarize(run: RunResult) -> RunMetrics:
    """Compute the table's numbers from a run's raw records."""
    done = [c for c in run.clients if c.complete]
    durations = [c.duration for c in done if c.duration is not None]
    ends = [c.end for c in done if c.end is not None]
    last = max(ends) if ends else None
    everyone = len(done) == run.n and run.n > 0
    t_all = last if everyone else None
    received = sum(c.bytes_received for c in run.clients)
    share = None
    if received > 0:
        from_server = sum(c.bytes_from_server for c in run.clients)
        share = from_server / received
    utilization = None
    if run.server_bytes_sent is not None and last is not None and last > 0:
        utilization = run.server_bytes_sent / (run.server_upload * last)
    throughputs = [run.file_size / d for d in durations if d > 0]
    d_min = min(run.downloads) if run.downloads else math.inf
    bound_cs = bounds.d_cs(max(run.n, 1), run.file_size, run.server_upload, d_min)
    bound_p2p = bounds.d_p2p(max(run.n, 1), run.file_size, run.server_upload, run.uploads, d_min)
    eff = None
    if (
        t_all is not None
        and t_all > 0
        and sum(run.uploads) > 0
        and run.architecture != "client-server"
    ):
        eff = bounds.efficiency(run.n, run.file_size, t_all, run.server_upload, run.uploads)
    # Flash crowd: every client started at ~0 (within the lab's start-up jitter), so T is
    # directly comparable to the bound. With staggered arrivals it is not; do not flag those.
    flash = bool(run.clients) and max(c.start for c in run.clients) < FLASH_JITTER
    own_bound = bound_cs if run.architecture == "client-server" else bound_p2p
    below = bool(flash and t_all is not None and t_all < own_bound * 0.98 - burst_slack(run))
    faults = []
    for f in run.faults:
        pending = [
            c for c in run.clients if not (c.complete and c.end is not None and c.end <= f.at)
        ]
        after = [c for c in pending if c.complete]
        faults.append(FaultCompletion(f.kind, f.at, len(after) / len(pending) if pending else 1.0))
    min_replicas = (
        min(run.replicas[-1].counts) if run.replicas and run.replicas[-1].counts else None
    )
    unauthorized = max((s.bytes_obtained for s in run.security if not s.authorized), default=None)
    return RunMetrics(
        architecture=run.architecture,
        scenario=run.scenario,
        n=run.n,
        file_size=run.file_size,
        completed=len(done),
        all_complete_time=t_all,
        last_completion=last,
        completion_times=tuple(durations),
        server_bytes_sent=run.server_bytes_sent,
        server_share=share,
        server_utilization=utilization,
        jain=jain_index(throughputs) if throughputs else None,
        stdev=statistics.pstdev(durations) if durations else None,
        p10=percentile(durations, 10) if durations else None,
        p50=percentile(durations, 50) if durations else None,
        p90=percentile(durations, 90) if durations else None,
        max_over_min=(max(durations) / min(durations))
        if durations and min(durations) > 0
        else None,
        bound_cs=bound_cs,
        bound_p2p=bound_p2p,
        efficiency=eff,
        below_bound=below,
        fault_completion=tuple(faults),
        min_replicas_end=min_replicas,
        unauthorized_bytes=unauthorized,
        notes=run.notes,
    )
