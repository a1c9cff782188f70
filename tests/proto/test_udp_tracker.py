"""UDP tracker codec (BEP 15): byte-exact encodings, round trips and garbage."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import TrackerError
from hubswarm.limits import TRACKER_MAX_NUMWANT
from hubswarm.proto.tracker import ScrapeFile
from hubswarm.proto.udp_tracker import (
    MAX_SCRAPE_HASHES,
    PROTOCOL_ID,
    Action,
    AnnounceRequest,
    AnnounceResponse,
    ConnectRequest,
    ConnectResponse,
    ErrorResponse,
    ScrapeRequest,
    ScrapeResponse,
    UdpEvent,
    parse_request,
    parse_response,
    peek_header,
)

_RESPONSES = (ConnectResponse, AnnounceResponse, ScrapeResponse, ErrorResponse)
IH = bytes(range(0x80, 0x94))
PID = b"-HS0001-" + bytes(range(0xF4, 0x100))

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
counter = st.integers(0, 2**63 - 1)
hash20 = st.binary(min_size=20, max_size=20)
port = st.integers(1, 65535)
v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(str)


# --- byte-exact forms (BEP 15's tables) --------------------------------------------------------


def test_connect_request_is_the_bep_15_layout() -> None:
    data = ConnectRequest(0x01020304).encode()
    assert data == bytes.fromhex("00000417271019800000000001020304")
    assert PROTOCOL_ID == 0x41727101980


def test_announce_request_is_98_bytes_in_bep_15_order() -> None:
    req = AnnounceRequest(
        connection_id=0x1122334455667788, transaction_id=7, info_hash=IH, peer_id=PID,
        downloaded=1, left=2, uploaded=3, event=UdpEvent.STARTED, ip=0, key=0xDEADBEEF,
        num_want=-1, port=6881,
    )  # fmt: skip
    data = req.encode()
    assert len(data) == 98
    assert data[:16] == bytes.fromhex("11223344556677880000000100000007")
    assert data[16:36] == IH
    assert data[36:56] == PID
    assert struct.unpack(">QQQIIIiH", data[56:]) == (1, 2, 3, 2, 0, 0xDEADBEEF, -1, 6881)


def test_event_codes_follow_bep_15() -> None:
    assert [e.value for e in UdpEvent] == [0, 1, 2, 3]
    assert UdpEvent.from_name("completed") == 1
    assert UdpEvent.from_name("started") == 2
    assert UdpEvent.from_name("stopped") == 3
    assert UdpEvent.from_name(None) == 0
    assert UdpEvent.STOPPED.text == "stopped"
    assert UdpEvent.NONE.text is None


def test_announce_reply_ipv4_and_ipv6_peers() -> None:
    r4 = AnnounceResponse(5, 1800, 2, 3, (("10.0.0.1", 6881),))
    assert r4.encode() == bytes.fromhex("0000000100000005000007080000000200000003") + bytes(
        [10, 0, 0, 1, 0x1A, 0xE1]
    )
    r6 = AnnounceResponse(5, 60, 0, 1, (("2001:db8::1", 1), ("10.0.0.1", 2)), ipv6=True)
    data = r6.encode()
    assert len(data) == 20 + 2 * 18
    back = parse_response(data, action=Action.ANNOUNCE, transaction_id=5, ipv6=True)
    assert back == r6
    # An IPv6 peer cannot be sent to a client that asked over IPv4.
    with pytest.raises(TrackerError):
        AnnounceResponse(5, 60, 0, 1, (("2001:db8::1", 1),))


def test_num_want_maps_to_the_http_trackers_numwant() -> None:
    base = {"connection_id": 1, "transaction_id": 1, "info_hash": IH, "peer_id": PID}
    assert AnnounceRequest(**base, num_want=-1).numwant is None
    assert AnnounceRequest(**base, num_want=10).numwant == 10
    assert AnnounceRequest(**base, num_want=2**31 - 1).numwant == TRACKER_MAX_NUMWANT
    assert AnnounceRequest(**base, ip=0x0A000001).ip_text == "10.0.0.1"
    assert AnnounceRequest(**base).ip_text is None


def test_error_reply_is_cut_to_the_limit() -> None:
    data = ErrorResponse(9, "x" * 1000).encode(limit=50)
    assert len(data) == 58
    back = parse_response(data, action=Action.ANNOUNCE, transaction_id=9)
    assert back == ErrorResponse(9, "x" * 50)


# --- the checks a client relies on --------------------------------------------------------------


def test_wrong_transaction_id_is_refused() -> None:
    data = ConnectResponse(1, 2).encode()
    with pytest.raises(TrackerError, match="transaction"):
        parse_response(data, action=Action.CONNECT, transaction_id=2)


def test_wrong_action_is_refused() -> None:
    data = ConnectResponse(1, 2).encode()
    with pytest.raises(TrackerError, match="action"):
        parse_response(data, action=Action.ANNOUNCE, transaction_id=1)


@pytest.mark.parametrize(
    ("data", "action"),
    [
        (b"", Action.CONNECT),
        (b"\0\0\0\0\0\0\0\1", Action.CONNECT),  # header only
        (ConnectResponse(1, 2).encode()[:15], Action.CONNECT),
        (AnnounceResponse(1, 1, 0, 0).encode()[:19], Action.ANNOUNCE),
        (AnnounceResponse(1, 1, 0, 0).encode() + b"\1\2\3", Action.ANNOUNCE),  # partial peer
        (ScrapeResponse(1, ()).encode() + b"\0" * 11, Action.SCRAPE),  # partial entry
    ],
)
def test_short_and_ragged_replies_are_refused(data: bytes, action: Action) -> None:
    with pytest.raises(TrackerError):
        parse_response(data, action=action, transaction_id=1)


def test_more_scrape_entries_than_asked_are_refused() -> None:
    three = ScrapeResponse(1, (ScrapeFile(1, 2, 3),) * 3).encode()
    assert parse_response(three, action=Action.SCRAPE, transaction_id=1, hashes=3)
    with pytest.raises(TrackerError, match="entries"):
        parse_response(three, action=Action.SCRAPE, transaction_id=1, hashes=2)


def _announce(tail: bytes) -> bytes:
    return struct.pack(">QII", 1, 1, 1) + IH + PID + tail


@pytest.mark.parametrize(
    "data",
    [
        b"\0" * 15,
        struct.pack(">QII", PROTOCOL_ID + 1, 0, 1),  # connect without the magic
        struct.pack(">QII", 1, 4, 1),  # unknown action
        struct.pack(">QII", 1, 1, 1) + b"\0" * 81,  # announce 1 byte short
        struct.pack(">QII", 1, 2, 1),  # scrape of nothing
        struct.pack(">QII", 1, 2, 1) + b"\0" * 30,  # half an info_hash
        struct.pack(">QII", 1, 2, 1) + b"\0" * 20 * (MAX_SCRAPE_HASHES + 1),  # too many
        _announce(struct.pack(">QQQIIIiH", 0, 0, 0, 4, 0, 0, -1, 1)),  # event 4
        _announce(struct.pack(">QQQIIIiH", 2**63, 0, 0, 0, 0, 0, 0, 1)),  # downloaded < 0
    ],
)  # fmt: skip
def test_bad_requests_are_refused(data: bytes) -> None:
    with pytest.raises(TrackerError):
        parse_request(data)


def test_announce_extensions_after_98_bytes_are_ignored() -> None:
    req = AnnounceRequest(1, 2, IH, PID, port=1)
    assert parse_request(req.encode() + b"\2\5/ann\0") == req  # BEP 41 URL data


def test_peek_header() -> None:
    assert peek_header(ErrorResponse(0xABCDEF01, "no").encode()) == (3, 0xABCDEF01)
    with pytest.raises(TrackerError):
        peek_header(b"\0" * 7)


# --- properties --------------------------------------------------------------------------------


@given(u32)
def test_connect_round_trip(tid: int) -> None:
    req = ConnectRequest(tid)
    assert parse_request(req.encode()) == req


@given(
    st.builds(
        AnnounceRequest, u64, u32, hash20, hash20, counter, counter, counter,
        st.sampled_from(UdpEvent), u32, u32, st.integers(-(2**31), 2**31 - 1),
        st.integers(0, 65535),
    )
)  # fmt: skip
def test_announce_request_round_trip(req: AnnounceRequest) -> None:
    assert parse_request(req.encode()) == req


@given(u64, u32, st.lists(hash20, min_size=1, max_size=MAX_SCRAPE_HASHES))
def test_scrape_request_round_trip(cid: int, tid: int, hashes: list[bytes]) -> None:
    req = ScrapeRequest(cid, tid, tuple(hashes))
    assert parse_request(req.encode()) == req


@given(u32, u64)
def test_connect_response_round_trip(tid: int, cid: int) -> None:
    resp = ConnectResponse(tid, cid)
    assert parse_response(resp.encode(), action=Action.CONNECT, transaction_id=tid) == resp


@given(st.data(), u32, u32, u32, u32, st.booleans())
def test_announce_response_round_trip(
    data: st.DataObject, tid: int, interval: int, leechers: int, seeders: int, ipv6: bool
) -> None:
    addresses = st.one_of(v4, v6) if ipv6 else v4
    peers = tuple(data.draw(st.lists(st.tuples(addresses, port), max_size=40)))
    resp = AnnounceResponse(tid, interval, leechers, seeders, peers, ipv6)
    back = parse_response(resp.encode(), action=Action.ANNOUNCE, transaction_id=tid, ipv6=ipv6)
    assert back == resp


@given(u32, st.lists(st.tuples(u32, u32, u32), max_size=MAX_SCRAPE_HASHES))
def test_scrape_response_round_trip(tid: int, counts: list[tuple[int, int, int]]) -> None:
    resp = ScrapeResponse(tid, tuple(ScrapeFile(*c) for c in counts))
    back = parse_response(
        resp.encode(), action=Action.SCRAPE, transaction_id=tid, hashes=max(1, len(counts))
    )
    assert back == resp


@given(u32, st.text(max_size=100))
def test_error_response_round_trip(tid: int, message: str) -> None:
    resp = ErrorResponse(tid, message)
    for action in Action:
        back = parse_response(resp.encode(limit=10_000), action=action, transaction_id=tid)
        assert back == resp


@given(st.binary(max_size=400))
def test_random_requests_raise_only_tracker_error(data: bytes) -> None:
    # Any other exception fails the test; what parses is a request that encodes back.
    try:
        req = parse_request(data)
    except TrackerError:
        return
    assert isinstance(req, (ConnectRequest, AnnounceRequest, ScrapeRequest))
    assert parse_request(req.encode()) == req


@given(st.binary(max_size=400), st.sampled_from(Action), u32, st.booleans(), st.integers(1, 80))
def test_random_replies_raise_only_tracker_error(
    data: bytes, action: Action, tid: int, ipv6: bool, hashes: int
) -> None:
    try:
        resp = parse_response(data, action=action, transaction_id=tid, ipv6=ipv6, hashes=hashes)
    except TrackerError:
        return
    assert isinstance(resp, _RESPONSES)


@given(u32, st.sampled_from(Action), st.binary(max_size=200), st.booleans())
def test_replies_with_our_header_and_random_bodies(
    tid: int, action: Action, body: bytes, ipv6: bool
) -> None:
    data = struct.pack(">II", action, tid) + body
    try:
        resp = parse_response(data, action=action, transaction_id=tid, ipv6=ipv6)
    except TrackerError:
        return
    assert isinstance(resp, _RESPONSES)
