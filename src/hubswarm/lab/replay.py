"""Who held which piece when, and from where: the data of a run's replay (pure).

A swarm's peers log every verified piece (``--events``: ``{"event": "piece", "index": i,
"source": "peer" | "webseed", "peers": [addresses]}``); :func:`tracks_from_logs` keeps, per
client, (t, piece, source) with the source one letter: ``s`` the seed (host 0), ``p`` another
peer, ``w`` a web seed. A client-server client downloads the file front to back over HTTP, so
:func:`cs_tracks` draws its pieces from its bytes received over time (sampled as it
downloaded, :mod:`hubswarm.lab.progress`), or, in runs.json written before those samples,
from its start to its end at a constant rate. :func:`frame` is what a
replay shows at time t: which cells of the peers × pieces grid are filled, and with what.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from hubswarm.lab.events import Event
from hubswarm.lab.metrics import PieceTrack, RunResult

__all__ = [
    "MAX_CELLS",
    "SOURCES",
    "Frame",
    "cs_tracks",
    "frame",
    "keep_clients",
    "recorded",
    "replay_tracks",
    "tracks_from_logs",
    "with_tracks",
]

# At most this many (client, piece) cells a run: at N = 1,000 and 100 pieces a run keeps
# every fifth client (evenly spread), so runs.json and the inlined replay stay ~300 kB.
MAX_CELLS = 20_000
# The letters of PieceTrack.sources and what each means on the page and in the PNG.
SOURCES = {"s": "seed / server", "p": "another peer", "w": "web seed"}


def keep_clients(clients: Sequence[int], pieces: int, cap: int = MAX_CELLS) -> list[int]:
    """``clients`` (sorted), or an evenly spread subset of them with at most ``cap`` cells."""
    ordered = sorted(clients)
    keep = max(1, cap // max(pieces, 1))
    if len(ordered) <= keep:
        return ordered
    if keep == 1:
        return ordered[:1]
    step = (len(ordered) - 1) / (keep - 1)
    return sorted({ordered[round(k * step)] for k in range(keep)})


def _source(event: Event, seed: Collection[str]) -> str:
    if event.get("source") == "webseed":
        return "w"
    peers = event.get("peers")
    if seed and isinstance(peers, list) and peers and all(p in seed for p in peers):
        return "s"
    return "p"


def tracks_from_logs(
    logs: Mapping[int, Iterable[Event]],
    t0_wall: float,
    pieces: int,
    *,
    seed: Collection[str] = (),
    cap: int = MAX_CELLS,
) -> tuple[PieceTrack, ...]:
    """Each client's ``piece`` events as a track (times since t = 0, ms resolution);
    ``seed``: the seed's addresses (empty when every host shares one, as in app mode)."""
    tracks = []
    for client in keep_clients(list(logs), pieces, cap):
        seen: set[int] = set()
        times: list[float] = []
        indices: list[int] = []
        sources: list[str] = []
        for e in logs[client]:
            t, index = e.get("t"), e.get("index")
            if e.get("event") != "piece" or not isinstance(t, float | int):
                continue
            if not isinstance(index, int) or not 0 <= index < pieces or index in seen:
                continue
            seen.add(index)
            times.append(round(float(t) - t0_wall, 3))
            indices.append(index)
            sources.append(_source(e, seed))
        tracks.append(PieceTrack(client, tuple(times), tuple(indices), "".join(sources)))
    return tuple(tracks)


def with_tracks(
    result: RunResult,
    logs: Mapping[int, Iterable[Event]],
    t0_wall: float,
    *,
    seed: Collection[str] = (),
) -> RunResult:
    """``result`` with the tracks of its clients' logs (:func:`tracks_from_logs`)."""
    tracks = tracks_from_logs(logs, t0_wall, result.pieces, seed=seed)
    return replace(result, tracks=tracks)


def _stop(run: RunResult, start: float, end: float | None, left_at: float | None) -> float:
    """When an incomplete client stopped receiving: it left, or the server died, or the run
    ended (its last completion)."""
    if end is not None:
        return end
    if left_at is not None:
        return left_at
    kills = [f.at for f in run.faults if f.kind == "kill_hub" and f.at >= start]
    ends = [c.end for c in run.clients if c.end is not None]
    return min(kills) if kills else max([*ends, start])


def _crossings(samples: Sequence[tuple[float, int]], marks: Sequence[int]) -> list[float]:
    """When the (t, bytes) curve first reached each of ``marks`` (ascending), linear between
    samples; marks it never reached are left out."""
    times: list[float] = []
    i = 0
    for mark in marks:
        while i < len(samples) and samples[i][1] < mark:
            i += 1
        if i == len(samples):
            break
        t, got = samples[i]
        if i > 0 and got > samples[i - 1][1]:
            t0, got0 = samples[i - 1]
            t = t0 + (t - t0) * (mark - got0) / (got - got0)
        times.append(round(t, 3))
    return times


def cs_tracks(run: RunResult, cap: int = MAX_CELLS) -> tuple[PieceTrack, ...]:
    """Client-server: each client's pieces front to back, each when the client's recorded
    bytes (``ClientRecord.progress``) reached its end; a client without a recording (runs.json
    written before it, an agent killed before it reported) from its start to its end (or to
    where it stopped) at a constant rate."""
    pieces = max(run.pieces, 1)
    by_index = {c.index: c for c in run.clients}
    tracks = []
    for index in keep_clients(list(by_index), pieces, cap):
        c = by_index[index]
        got = pieces if c.complete else min(pieces, pieces * c.bytes_received // run.file_size)
        if c.progress:
            # A piece's last byte, front to back (pieces of F / M: the runs.json has no size).
            marks = [max(1, run.file_size * (k + 1) // pieces) for k in range(got)]
            times = tuple(_crossings(c.progress, marks))
        else:
            stop = _stop(run, c.start, c.end, c.left_at)
            span = max(stop - c.start, 0.0)
            times = tuple(round(c.start + span * (k + 1) / pieces, 3) for k in range(got))
        tracks.append(PieceTrack(index, times, tuple(range(len(times))), "s" * len(times)))
    return tuple(tracks)


def recorded(run: RunResult) -> bool:
    """Whether the replay draws ``run`` from what it recorded: a swarm's pieces, or every
    client-server client's bytes over time (not a constant rate between start and end)."""
    if run.tracks:
        return True
    return run.architecture == "client-server" and all(c.progress for c in run.clients)


def replay_tracks(run: RunResult) -> tuple[PieceTrack, ...]:
    """The tracks a replay draws: the run's own, or for client-server its records'."""
    if run.tracks:
        return run.tracks
    return cs_tracks(run) if run.architecture == "client-server" else ()


@dataclass(frozen=True, slots=True)
class Frame:
    """The grid at time t: ``cells[row][piece]`` is a source letter or ``.`` (not held)."""

    t: float
    cells: tuple[str, ...]
    complete: int  # rows holding every piece


def frame(tracks: Sequence[PieceTrack], pieces: int, t: float) -> Frame:
    """What the replay shows at time ``t`` (the same rule as the page's script)."""
    rows = []
    complete = 0
    for track in tracks:
        row = ["."] * pieces
        held = 0
        for at, index, source in zip(track.times, track.pieces, track.sources, strict=True):
            if at <= t and 0 <= index < pieces:
                row[index] = source
                held += 1
        complete += held == pieces
        rows.append("".join(row))
    return Frame(t, tuple(rows), complete)
