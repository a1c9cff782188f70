"""The handshake bytes (proto/wire_handshake.py): reserved bits, parsing whole and in part."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import RemoteProtocolError
from hubswarm.proto.wire_handshake import (
    HANDSHAKE_LENGTH,
    PSTR_PREFIX,
    make_reserved,
    parse_handshake,
)

ids = st.binary(min_size=20, max_size=20)


@given(st.booleans(), st.booleans(), st.booleans(), ids, ids)
def test_parse_reads_what_was_written(
    ext: bool, fast: bool, dht: bool, info_hash: bytes, peer_id: bytes
) -> None:
    reserved = make_reserved(extension_protocol=ext, fast=fast, dht=dht)
    raw = b"junk" + PSTR_PREFIX + reserved + info_hash + peer_id + b"next message"
    hs = parse_handshake(memoryview(raw), 4, len(raw))
    assert hs is not None
    assert (hs.info_hash, hs.peer_id, hs.reserved) == (info_hash, peer_id, reserved)
    assert (hs.extension_protocol, hs.fast, hs.dht) == (ext, fast, dht)
    for end in range(4, 4 + HANDSHAKE_LENGTH):  # every strict prefix: wait for more
        assert parse_handshake(memoryview(raw), 4, end) is None


@given(st.integers(0, len(PSTR_PREFIX) - 1), st.integers(1, 255), st.integers(0, 80))
def test_a_wrong_prefix_byte_is_refused_as_soon_as_it_arrives(
    where: int, flip: int, extra: int
) -> None:
    raw = bytearray(PSTR_PREFIX + bytes(48))
    raw[where] ^= flip
    end = min(len(raw), where + 1 + extra)
    with pytest.raises(RemoteProtocolError, match="not a BitTorrent handshake"):
        parse_handshake(memoryview(bytes(raw)), 0, end)
