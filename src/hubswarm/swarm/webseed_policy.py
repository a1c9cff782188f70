"""Pure web-seed policy: which pieces a BEP 19 web seed may serve now (issue 22).

Theory of operation
-------------------
A web seed has every piece, and every byte it sends costs the server's uplink, which in a
hybrid is the same uplink the seed peer spends on the swarm. Peers pick pieces on their
own, so a web seed that serves whatever the picker asks for sends the same pieces to many
peers: the server pays several copies of F while the swarm would have spread one. So the
web seed is used like a scarce peer, to add capacity where the swarm cannot give it:

* ``always``: every missing piece (the web seed is one more source, duplicates and all);
* ``fallback``: BEP 19's reading, the pieces no connected peer has (all of them when no
  peer is connected);
* ``assist`` (the default): the web seed serves only a peer the swarm is not feeding (no
  block from any peer for ``stall`` seconds since the start or the last block): then the
  pieces no peer has in flight to us, rarest first (those no connected peer has while there
  are any; the picker orders the rest by availability); in endgame
  also the pieces in flight from peers, since those peers did not deliver in time. A peer
  fed by the swarm asks nothing of the server's HTTP side, so the server's bytes stay near
  what the swarm alone would send, and a starved peer (no peers, all choking, seed gone,
  pieces nobody has) still completes from the web seed.

The shell (``webseed_worker``) gathers :class:`WebSeedView` from the session and picker,
calls :func:`webseed_allowed`, and asks the picker for blocks among the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hubswarm.swarm.bitfield import Bitfield

MODES = ("assist", "fallback", "always", "off")
DEFAULT_MODE = "assist"

# Seconds without a block from any peer before the web seed steps in (``assist``). A fed
# peer gets a block every few milliseconds (a 16 KiB block at 1 MiB/s: 16 ms); a second of
# silence is a choke round's worth (libtorrent's optimistic unchoke is 30 s, the regular
# round 15 s, ours a few seconds), long enough that a busy swarm never trips it, short
# against a transfer of seconds. Also the grace the swarm gets at the start.
WEBSEED_STALL = 1.0


@dataclass(frozen=True, slots=True)
class WebSeedView:
    """What the policy reads: the session's state at ``now``.

    ``availability``: per piece, how many connected peers have it; ``peer_inflight``: pieces
    with a block requested from a peer and not yet delivered; ``last_peer_block``: when any
    peer last delivered a block (None: never); ``started``: when the download could start
    (the metadata was known); ``peers``: whether any peer is connected.
    """

    now: float
    num_pieces: int
    availability: Sequence[int]
    peer_inflight: frozenset[int]
    last_peer_block: float | None
    started: float
    peers: bool
    endgame: bool

    def __post_init__(self) -> None:
        if len(self.availability) != self.num_pieces:
            raise ValueError("availability has the wrong length")


def starved(view: WebSeedView, stall: float = WEBSEED_STALL) -> bool:
    """True when no peer has delivered a block for ``stall`` seconds (or since the start)."""
    since = (
        view.started if view.last_peer_block is None else max(view.started, view.last_peer_block)
    )
    return view.now - since >= stall


def webseed_allowed(mode: str, view: WebSeedView, stall: float = WEBSEED_STALL) -> Bitfield:
    """The pieces the web seed may serve now under ``mode`` (the picker skips those we have).

    Raises:
        ValueError: an unknown mode.
    """
    n = view.num_pieces
    if mode == "off":
        return Bitfield(n)
    if mode == "always" or (mode == "fallback" and not view.peers):
        return Bitfield.all(n)
    if mode == "fallback":
        return Bitfield.from_indices(n, _unavailable(view.availability))
    if mode != "assist":
        raise ValueError(f"unknown web seed mode {mode!r}; one of {', '.join(MODES)}")
    if not starved(view, stall):
        return Bitfield(n)
    if view.endgame:
        return Bitfield.all(n)
    free = [i for i in range(n) if i not in view.peer_inflight]
    # Rarest first: the pieces no connected peer has, while there are any (the picker ranks
    # the rest by availability, but puts those it counts on nobody last).
    rare = [i for i in free if view.availability[i] <= 0]
    return Bitfield.from_indices(n, rare or free)


def _unavailable(availability: Iterable[int]) -> Iterable[int]:
    return (i for i, a in enumerate(availability) if a <= 0)
