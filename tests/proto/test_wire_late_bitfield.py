"""aria2 1.36 re-sends its bitfield mid-connection: refused by default, accepted on opt-in."""

from __future__ import annotations

import pytest

from hubswarm.errors import RemoteProtocolError
from hubswarm.proto import wire
from hubswarm.proto.wire_events import Bitfield, Have, HaveNone

INFO_HASH = bytes(range(20))


def _pair(tolerate: bool) -> tuple[wire.PeerConnection, wire.PeerConnection]:
    a = wire.PeerConnection(wire.Role.INITIATOR, info_hash=INFO_HASH, peer_id=b"A" * 20)
    b = wire.PeerConnection(
        wire.Role.RESPONDER,
        info_hash=INFO_HASH,
        peer_id=b"B" * 20,
        tolerate_late_bitfield=tolerate,
        num_pieces=10,
    )
    a.set_num_pieces(10)
    b.receive_data(a.handshake())
    a.receive_data(b.handshake())
    return a, b


def test_late_bitfield_is_a_violation_by_default() -> None:
    a, b = _pair(tolerate=False)
    data = a.send(HaveNone()) + a.send(Have(3))
    a._local_may_send_bitfield = True  # the sender core refuses it too; aria2 is not ours
    data += a.send(Bitfield(b"\xff\xc0"))
    with pytest.raises(RemoteProtocolError):
        b.receive_data(data)


def test_late_bitfield_is_accepted_when_tolerated() -> None:
    a, b = _pair(tolerate=True)
    a._local_may_send_bitfield = True  # the sender core refuses it too; aria2 is not ours
    first = a.send(HaveNone()) + a.send(Have(3))
    a._local_may_send_bitfield = True
    late = a.send(Bitfield(b"\xff\xc0"))
    events = b.receive_data(first + late + late)
    assert events == [HaveNone(), Have(3), Bitfield(b"\xff\xc0"), Bitfield(b"\xff\xc0")]
