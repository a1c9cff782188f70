"""Tracker codec: byte-exact encodings, round-trips and garbage (BEP 3, 7, 23, 48)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubswarm.errors import TrackerError
from hubswarm.limits import TRACKER_MAX_NUMWANT, TRACKER_MAX_RESPONSE
from hubswarm.proto import bencode
from hubswarm.proto.tracker import (
    AnnounceRequest,
    AnnounceResponse,
    ScrapeFile,
    ScrapeRequest,
    ScrapeResponse,
    encode_failure,
    failure_reason,
    parse_query,
    scrape_url,
)

# Codec round-trips saturate quickly; 60 examples each keep this file within its time budget.
IH = bytes(range(0x80, 0x94))  # every byte above 0x7F: the aiohttp request.query trap
PID = b"-HS0001-" + bytes(range(0xF4, 0x100))


def test_to_query_is_byte_exact() -> None:
    req = AnnounceRequest(info_hash=b"\x00" * 19 + b"\xff", peer_id=b"a" * 20, port=6881, left=5)
    assert req.to_query() == (
        "info_hash=" + "%00" * 19 + "%FF&peer_id=" + "a" * 20
        + "&port=6881&uploaded=0&downloaded=0&left=5&compact=1"
    )  # fmt: skip


def test_to_query_optional_fields() -> None:
    req = AnnounceRequest(
        info_hash=IH, peer_id=PID, port=1, event="started", numwant=7, ip="10.0.0.1",
        key=b"k y\xfe", no_peer_id=True, tracker_id="t",
    )  # fmt: skip
    q = req.to_query()
    assert "&no_peer_id=1&event=started&numwant=7&ip=10.0.0.1&key=k%20y%FE&trackerid=t" in q
    assert parse_query(q) == req


def test_parse_query_real_libtorrent_style() -> None:
    raw = (
        "info_hash=%80%81%82%83%84%85%86%87%88%89%8a%8b%8c%8d%8e%8f%90%91%92%93"
        "&peer_id=-HS0001-%f4%f5%f6%f7%f8%f9%fa%fb%fc%fd%fe%ff&port=6881&uploaded=0"
        "&downloaded=0&left=1024&corrupt=0&key=ABCD&event=started&numwant=200&compact=1"
        "&no_peer_id=1&supportcrypto=1&redundant=0"
    )
    req = parse_query(raw)
    assert req.info_hash == IH
    assert req.peer_id == PID
    assert (req.port, req.left, req.event, req.numwant, req.compact) == (
        6881, 1024, "started", 200, True,
    )  # fmt: skip
    assert req.key == b"ABCD"


def test_parse_query_defaults_and_clamps() -> None:
    base = f"info_hash={'%41' * 20}&peer_id={'b' * 20}&port=1"
    req = parse_query(base)
    assert (req.compact, req.event, req.numwant, req.uploaded) == (False, None, None, 0)
    assert parse_query(base + "&numwant=100000").numwant == TRACKER_MAX_NUMWANT
    assert parse_query(base + "&numwant=-1").numwant is None
    assert parse_query(base + "&event=paused").event is None
    assert parse_query(base + "&event=").event is None
    # aria2 sends a binary key; a non-UTF-8 ip is ignored rather than failing the announce.
    odd = parse_query(base + "&key=%FE%CEr%B9&ip=%FF")
    assert (odd.key, odd.ip) == (b"\xfe\xcer\xb9", None)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "missing info_hash"),
        ("info_hash=" + "a" * 20, "missing peer_id"),
        ("info_hash=" + "a" * 19 + "&peer_id=" + "b" * 20 + "&port=1", "info_hash must be 20"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "b" * 21 + "&port=1", "peer_id must be 20"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "b" * 20, "missing port"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "b" * 20 + "&port=0", "invalid port"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "b" * 20 + "&port=65536", "invalid port"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "b" * 20 + "&port=x", "invalid port"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "b" * 20 + "&port=1&left=-1", "left must"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "b" * 20 + "&port=1&event=bogus", "event"),
        ("info_hash=" + "a" * 20 + "&info_hash=" + "a" * 20, "more than once"),
        ("x=" + "y" * 5000, "query longer"),
    ],
)
def test_parse_query_rejects(query: str, message: str) -> None:
    with pytest.raises(TrackerError, match=message):
        parse_query(query)


counters = st.integers(min_value=0, max_value=2**63 - 1)
requests = st.builds(
    AnnounceRequest,
    info_hash=st.binary(min_size=20, max_size=20),
    peer_id=st.binary(min_size=20, max_size=20),
    port=st.integers(1, 65535),
    uploaded=counters,
    downloaded=counters,
    left=counters,
    event=st.sampled_from([None, "started", "completed", "stopped"]),
    compact=st.booleans(),
    numwant=st.none() | st.integers(0, TRACKER_MAX_NUMWANT),
    ip=st.none() | st.text(max_size=40),
    key=st.none() | st.binary(max_size=20),
    no_peer_id=st.booleans(),
    tracker_id=st.none() | st.text(max_size=20),
)


@settings(max_examples=60)
@given(requests)
def test_announce_request_round_trip(req: AnnounceRequest) -> None:
    assert parse_query(req.to_query()) == req


@settings(max_examples=60)
@given(st.text(max_size=300))
def test_parse_query_garbage_raises_only_tracker_error(raw: str) -> None:
    try:
        parse_query(raw)
    except TrackerError:
        pass


def test_compact_response_is_byte_exact() -> None:
    resp = AnnounceResponse(
        interval=10, min_interval=5, complete=1, incomplete=2,
        peers=(("127.0.0.1", 6881), ("10.1.2.3", 0x1A2B)),
    )  # fmt: skip
    assert resp.encode(compact=True) == (
        b"d8:completei1e10:incompletei2e8:intervali10e12:min intervali5e"
        b"5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x01\x02\x03\x1a\x2be"
    )


def test_dict_response_is_byte_exact() -> None:
    resp = AnnounceResponse(interval=60, peers=(("127.0.0.1", 80),))
    assert resp.encode(compact=False) == b"d8:intervali60e5:peersld2:ip9:127.0.0.14:porti80eeee"


def test_ipv6_peers_go_to_peers6() -> None:
    resp = AnnounceResponse(interval=1, peers=(("::1", 1), ("1.2.3.4", 2)))
    data = resp.encode(compact=True)
    decoded = bencode.decode(data)
    assert decoded[b"peers"] == b"\x01\x02\x03\x04\x00\x02"
    assert decoded[b"peers6"] == b"\x00" * 15 + b"\x01\x00\x01"
    assert set(AnnounceResponse.parse(data).peers) == {("::1", 1), ("1.2.3.4", 2)}


def test_failure_reason_is_byte_exact() -> None:
    data = encode_failure("unregistered torrent")
    assert data == b"d14:failure reason20:unregistered torrente"
    assert failure_reason(data) == "unregistered torrent"
    assert failure_reason(b"garbage") is None
    with pytest.raises(TrackerError, match="tracker failure: unregistered torrent"):
        AnnounceResponse.parse(data)
    with pytest.raises(TrackerError, match="tracker failure"):
        ScrapeResponse.parse(data)


def test_parse_dict_peers_with_peer_id_and_warning() -> None:
    data = bencode.encode(
        {
            b"interval": 30,
            b"warning message": b"be nice",
            b"tracker id": b"abc",
            b"peers": [
                {b"ip": b"127.0.0.1", b"port": 1, b"peer id": b"x" * 20},
                {b"ip": b"::ffff:10.0.0.1", b"port": 2},
                {b"ip": b"example.org", b"port": 3},  # DNS names are skipped
                {b"ip": b"1.1.1.1", b"port": 0},  # port 0 is skipped
            ],
        }
    )
    resp = AnnounceResponse.parse(data)
    assert resp.peers == (("127.0.0.1", 1), ("10.0.0.1", 2))
    assert (resp.warning, resp.tracker_id) == ("be nice", "abc")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not bencode",
        b"le",
        b"de",  # no interval
        b"d8:intervali-1ee",
        b"d8:interval1:xe",
        b"d8:intervali1e5:peers5:12345e",
        b"d8:intervali1e5:peersi3ee",
        b"d8:intervali1e5:peersli1eee",
        b"d8:intervali1e5:peersld2:ipi1e4:porti1eeee",
        b"d8:intervali1e5:peersld2:ip1:x4:porti99999eeee",
        b"d8:intervali1e5:peers0:6:peers67:1234567e",
        b"d8:intervali1e5:peers0:6:peers6i1ee",
        b"d8:intervali1e5:peers0:e trailing",
    ],
)
def test_garbage_responses_raise_tracker_error(data: bytes) -> None:
    with pytest.raises(TrackerError):
        AnnounceResponse.parse(data)


def test_oversize_response_rejected_before_decode() -> None:
    with pytest.raises(TrackerError, match="larger than"):
        AnnounceResponse.parse(b"d" + b"x" * TRACKER_MAX_RESPONSE)


@settings(max_examples=60)
@given(st.binary(max_size=200))
def test_response_garbage_raises_only_tracker_error(data: bytes) -> None:
    for parse in (AnnounceResponse.parse, ScrapeResponse.parse):
        try:
            parse(data)
        except TrackerError:
            pass


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(str)
responses = st.builds(
    AnnounceResponse,
    interval=st.integers(0, 2**31),
    peers=st.lists(st.tuples(ipv4 | ipv6, st.integers(1, 65535)), max_size=12).map(tuple),
    min_interval=st.none() | st.integers(0, 2**31),
    complete=st.none() | st.integers(0, 2**31),
    incomplete=st.none() | st.integers(0, 2**31),
    warning=st.none() | st.text(max_size=30),
    tracker_id=st.none() | st.text(max_size=30),
)


@settings(max_examples=60)
@given(responses)
def test_dict_response_round_trip(resp: AnnounceResponse) -> None:
    assert AnnounceResponse.parse(resp.encode(compact=False)) == resp


@settings(max_examples=60)
@given(responses)
def test_compact_response_round_trip(resp: AnnounceResponse) -> None:
    parsed = AnnounceResponse.parse(resp.encode(compact=True))
    # Compact form groups IPv4 before IPv6; everything else is preserved.
    v4 = [p for p in resp.peers if ":" not in p[0]]
    v6 = [p for p in resp.peers if ":" in p[0]]
    assert parsed.peers == tuple(v4 + v6)
    assert parsed.interval == resp.interval
    assert (parsed.complete, parsed.warning) == (resp.complete, resp.warning)


hashes = st.binary(min_size=20, max_size=20)


@settings(max_examples=60)
@given(st.lists(hashes, min_size=1, max_size=32, unique=True))
def test_scrape_request_round_trip(info_hashes: list[bytes]) -> None:
    req = ScrapeRequest(tuple(info_hashes))
    assert ScrapeRequest.parse_query(req.to_query()) == req


@settings(max_examples=60)
@given(st.dictionaries(hashes, st.tuples(counters, counters, counters), max_size=10))
def test_scrape_response_round_trip(files: dict[bytes, tuple[int, int, int]]) -> None:
    resp = ScrapeResponse({h: ScrapeFile(*c) for h, c in files.items()})
    assert ScrapeResponse.parse(resp.encode()) == resp


def test_scrape_response_is_byte_exact() -> None:
    resp = ScrapeResponse({b"a" * 20: ScrapeFile(complete=1, downloaded=2, incomplete=3)})
    assert resp.encode() == (
        b"d5:filesd20:" + b"a" * 20 + b"d8:completei1e10:downloadedi2e10:incompletei3eeee"
    )


def test_scrape_request_limits() -> None:
    with pytest.raises(TrackerError):
        ScrapeRequest.parse_query("")
    with pytest.raises(TrackerError):
        ScrapeRequest(tuple(bytes([i]) * 20 for i in range(33)))
    with pytest.raises(TrackerError):
        ScrapeRequest.parse_query("info_hash=short")


@pytest.mark.parametrize(
    ("announce", "expected"),
    [
        ("http://t.example/announce", "http://t.example/scrape"),
        ("http://t.example/x/announce.php?k=1", "http://t.example/x/scrape.php?k=1"),
        ("http://t.example/announce?passkey=a", "http://t.example/scrape?passkey=a"),
        ("http://t.example/scrape", "http://t.example/scrape"),
        ("http://t.example/a", None),
        ("http://t.example/announce/x", None),
    ],
)
def test_scrape_url(announce: str, expected: str | None) -> None:
    assert scrape_url(announce) == expected


def test_request_validation() -> None:
    with pytest.raises(TrackerError):
        AnnounceRequest(info_hash=b"x", peer_id=PID, port=1)
    with pytest.raises(TrackerError):
        AnnounceRequest(info_hash=IH, peer_id=PID, port=1, numwant=TRACKER_MAX_NUMWANT + 1)
    with pytest.raises(TrackerError):
        AnnounceResponse(interval=1, peers=(("nope", 1),))
