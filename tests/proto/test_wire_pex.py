"""ut_pex (BEP 11) in the sans-IO wire core: bytes out, events in, bad input."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import LocalProtocolError, RemoteProtocolError
from hubswarm.limits import PEX_MAX_PEERS
from hubswarm.proto import bencode
from hubswarm.proto.wire import UT_PEX, PeerConnection
from hubswarm.proto.wire_events import Extended, ExtendedHandshake, PeerExchange
from tests.proto.test_wire import make_pair, transfer

OUR_PEX_ID = 3  # b's id for ut_pex (BEP 10: chosen by the receiver)


def pex_pair() -> tuple[PeerConnection, PeerConnection]:
    """a may send ut_pex to b: b advertised it, with id OUR_PEX_ID."""
    a, b = make_pair()
    transfer(b, a, ExtendedHandshake(m={UT_PEX: OUR_PEX_ID}))
    return a, b


def frame(payload: bytes) -> bytes:
    return struct.pack(">IBB", 2 + len(payload), 20, OUR_PEX_ID) + payload


def test_send_is_byte_exact() -> None:
    a, _ = pex_pair()
    event = PeerExchange(
        added=(("10.0.0.1", 6881), ("::1", 51413), ("10.0.0.2", 80)),
        added_flags=(0x10, 0x02, 0x00),
        dropped=(("10.9.9.9", 1),),
    )
    body = (
        b"d5:added12:\x0a\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50"
        b"7:added.f2:\x10\x00"
        b"6:added618:" + bytes(15) + b"\x01\xc8\xd5" + b"8:added6.f1:\x02"
        b"7:dropped6:\x0a\x09\x09\x09\x00\x01e"
    )
    assert a.send(event) == frame(body)


def test_round_trip_back_to_back() -> None:
    a, b = pex_pair()
    event = PeerExchange(added=(("1.2.3.4", 5),), added_flags=(0x10,), dropped=(("::2", 7),))
    assert transfer(a, b, event) == [event]


def test_flags_default_to_zero_when_omitted() -> None:
    a, b = pex_pair()
    got = transfer(a, b, PeerExchange(added=(("1.2.3.4", 5), ("5.6.7.8", 9))))
    assert got == [PeerExchange((("1.2.3.4", 5), ("5.6.7.8", 9)), (0, 0), ())]


def test_lenient_fields_are_skipped_not_fatal() -> None:
    _, b = pex_pair()
    body = bencode.encode(
        {
            # a port-0 entry, a whole one, then 3 stray bytes
            b"added": bytes([1, 1, 1, 1, 0, 0, 2, 2, 2, 2, 0, 9, 3, 3, 3]),
            b"added.f": b"\x10",  # flags for the first entry only (the port-0 one)
            b"dropped": 17,  # wrong type: ignored
            b"x-unknown": b"kept out",
        }
    )
    assert b.receive_data(frame(body)) == [PeerExchange((("2.2.2.2", 9),), (0,), ())]
    assert b.state.name == "OPEN"


def test_oversized_lists_are_cut_at_the_limit() -> None:
    _, b = pex_pair()
    many = b"".join(bytes([10, 0, i // 256, i % 256, 0, 1]) for i in range(PEX_MAX_PEERS + 50))
    [event] = b.receive_data(frame(bencode.encode({b"added": many, b"dropped": many})))
    assert isinstance(event, PeerExchange)
    assert len(event.added) == PEX_MAX_PEERS
    assert len(event.dropped) == PEX_MAX_PEERS


@pytest.mark.parametrize("body", [b"not bencode", b"li1ee", b"i3e"])
def test_a_message_that_is_not_a_dictionary_is_a_violation(body: bytes) -> None:
    _, b = pex_pair()
    with pytest.raises(RemoteProtocolError):
        b.receive_data(frame(body))


def test_without_our_pex_id_it_stays_an_opaque_extended_message() -> None:
    a, b = make_pair()
    transfer(b, a, ExtendedHandshake(m={"ut_holepunch": OUR_PEX_ID}))
    body = bencode.encode({b"added": b""})
    assert b.receive_data(frame(body)) == [Extended(OUR_PEX_ID, body)]


def test_sending_needs_the_peers_pex_id() -> None:
    a, b = make_pair()
    transfer(b, a, ExtendedHandshake(m={"ut_metadata": 1}))
    with pytest.raises(LocalProtocolError, match="ut_pex"):
        a.send(PeerExchange(added=(("1.2.3.4", 5),)))
    a2, _ = make_pair(ext=False)
    with pytest.raises(LocalProtocolError, match="BEP 10"):
        a2.send(PeerExchange())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"added": (("1.2.3.4", 5),), "added_flags": (1, 2)},
        {"added": (("1.2.3.4", 5),), "added_flags": (256,)},
        {"added": (("1.2.3.4", 0),)},
        {"dropped": (("1.2.3.4", 65536),)},
        {"added": (("example.org", 5),)},
    ],
)
def test_bad_events_are_our_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        PeerExchange(**kwargs)  # type: ignore[arg-type]


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(str)
peer = st.tuples(st.one_of(ipv4, ipv6), st.integers(1, 65535))


@given(st.lists(st.tuples(peer, st.integers(0, 255)), max_size=60), st.lists(peer, max_size=60))
def test_any_exchange_round_trips_v4_first(
    added: list[tuple[tuple[str, int], int]], dropped: list[tuple[str, int]]
) -> None:
    a, b = pex_pair()
    event = PeerExchange(tuple(p for p, _ in added), tuple(f for _, f in added), tuple(dropped))
    [got] = transfer(a, b, event)
    assert isinstance(got, PeerExchange)

    def v4_first(items: list[tuple[tuple[str, int], int]]) -> list[tuple[tuple[str, int], int]]:
        return [x for x in items if ":" not in x[0][0]] + [x for x in items if ":" in x[0][0]]

    def canon(p: tuple[str, int]) -> tuple[str, int]:
        return (str(ipaddress.ip_address(p[0])), p[1])

    want = [(canon(p), f) for p, f in v4_first(added)]
    assert list(zip(got.added, got.added_flags, strict=True)) == want
    want_dropped = [canon(p) for p, _ in v4_first([(p, 0) for p in dropped])]
    assert list(got.dropped) == want_dropped


@given(st.binary(max_size=300))
def test_garbage_payload_is_an_event_or_a_violation(body: bytes) -> None:
    _, b = pex_pair()
    try:
        events = b.receive_data(frame(body))
    except RemoteProtocolError:
        return
    assert len(events) == 1
    assert isinstance(events[0], PeerExchange)
