"""encode_fields (the connection's send path) writes exactly what encode(Packet(...)) does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hubswarm.proto.utp_packet import (
    EXT_SACK,
    Extension,
    Packet,
    PacketType,
    decode,
    encode,
    encode_fields,
)

from .test_utp_packet import u16, u32

# BEP 29: a SACK bitmask is a multiple of 4 bytes; libtorrent sends up to 32.
sacks = st.sampled_from([0, 4, 8, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


@given(
    kind=st.sampled_from(list(PacketType)),
    connection_id=u16,
    timestamp=u32,
    difference=u32,
    wnd_size=u32,
    seq_nr=u16,
    ack_nr=u16,
    sack=sacks,
    payload=st.binary(max_size=1400),
)
def test_encode_fields_matches_encode_of_the_packet(
    kind: PacketType,
    connection_id: int,
    timestamp: int,
    difference: int,
    wnd_size: int,
    seq_nr: int,
    ack_nr: int,
    sack: bytes,
    payload: bytes,
) -> None:
    extensions = (Extension(EXT_SACK, sack),) if sack else ()
    packet = Packet(
        kind, connection_id, timestamp, difference, wnd_size, seq_nr, ack_nr, extensions, payload
    )
    fields = (kind, connection_id, timestamp, difference, wnd_size, seq_nr, ack_nr)
    datagram = encode_fields(*fields, sack, payload)
    assert datagram == encode(packet)
    assert decode(datagram) == packet
