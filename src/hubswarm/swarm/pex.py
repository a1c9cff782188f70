"""Pure peer exchange (BEP 11): what to tell each peer of our other peers, and when.

Theory of operation
-------------------
Each PEX peer has a :class:`PexPeer` record: the addresses our messages told it so far
(``told``) and when the last one went. :meth:`PexPeer.message` diffs our current peers
against ``told``: the ``added`` ones it does not know yet (never itself), the ``dropped``
ones it knows that are gone, at most ``PEX_MAX_SEND`` of each, at most once per
``PEX_INTERVAL``. A peer's first message waits until there is somebody to tell of: in a
flash crowd the first peers to connect then learn of the later ones within a round trip
of their arrival. Incoming messages closer together than ``PEX_MIN_GAP`` are ignored.

No clock and no I/O: the caller passes ``now``, sends the message and then calls
:meth:`PexPeer.sent`.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass

from hubswarm.proto.wire_events import PeerExchange

Address = tuple[str, int]

# BEP 11: at most one ut_pex message a minute to a peer, at most 50 added and 50 dropped
# peers in one.
PEX_INTERVAL = 60.0
PEX_MAX_SEND = 50
# BEP 11 flag 0x10: the peer accepts incoming connections (we dialled it, so it does).
PEX_REACHABLE = 0x10
# A peer's ut_pex messages closer together than this are ignored: it breaks BEP 11's rate
# of one a minute, and each message could make us hold up to PEX_MAX_PEERS new addresses.
PEX_MIN_GAP = 10.0


@dataclass(slots=True)
class PexPeer:
    """What our ut_pex messages told one peer, and when messages went and came."""

    told: set[Address] | None = None  # None: no message sent yet
    sent_at: float = 0.0
    received_at: float | None = None
    interval: float = PEX_INTERVAL
    max_send: int = PEX_MAX_SEND
    min_gap: float = PEX_MIN_GAP

    def message(
        self, current: Mapping[Address, int], itself: Container[Address], now: float
    ) -> PeerExchange | None:
        """The message due now (our peers with their BEP 11 flags), or None."""
        if self.told is not None and now - self.sent_at < self.interval:
            return None
        told = self.told or set()
        added = [a for a in current if a not in told and a not in itself][: self.max_send]
        dropped = [a for a in told if a not in current][: self.max_send]
        if not added and not dropped:
            return None
        return PeerExchange(tuple(added), tuple(current[a] for a in added), tuple(dropped))

    def sent(self, message: PeerExchange, now: float) -> None:
        """``message`` went to the peer: remember what it knows now."""
        told = self.told or set()
        self.told = (told | set(message.added)) - set(message.dropped)
        self.sent_at = now

    def accept(self, now: float) -> bool:
        """A message came from the peer: True to use it, False when it came too soon."""
        if self.received_at is not None and now - self.received_at < self.min_gap:
            return False
        self.received_at = now
        return True
