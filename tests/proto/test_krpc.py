"""KRPC codec (BEP 5): round-trips, BEP 5's example bytes, validation, garbage, transactions."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import KRPCError
from hubswarm.proto import krpc
from hubswarm.proto.krpc import (
    AnnouncePeer,
    CompactNode,
    FindNode,
    GetPeers,
    Ping,
    Query,
    Response,
    TransactionTable,
)

ids = st.binary(min_size=20, max_size=20)
tids = st.binary(min_size=1, max_size=8)
ips = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ports = st.integers(1, 65535)
nodes = st.builds(CompactNode, ids, ips, ports)
peers = st.tuples(ips, ports)
bodies = st.one_of(
    st.builds(Ping, ids),
    st.builds(FindNode, ids, ids),
    st.builds(GetPeers, ids, ids),
    st.builds(AnnouncePeer, ids, ids, ports, st.binary(min_size=1, max_size=20), st.booleans()),
)
versions = st.one_of(st.none(), st.binary(max_size=4))
messages = st.one_of(
    st.builds(Query, tids, bodies, versions),
    st.builds(
        Response,
        tids,
        ids,
        st.lists(nodes, max_size=8).map(tuple),
        st.lists(peers, max_size=8).map(tuple),
        st.one_of(st.none(), st.binary(max_size=20)),
        versions,
    ),
    st.builds(krpc.Error, tids, st.sampled_from([201, 202, 203, 204]), st.text(max_size=40)),
)


@given(messages)
def test_every_message_round_trips(msg: krpc.Message) -> None:
    assert krpc.decode_message(krpc.encode_message(msg)) == msg


@given(st.lists(nodes, max_size=16))
def test_compact_nodes_round_trip(contacts: list[CompactNode]) -> None:
    data = krpc.encode_nodes(contacts)
    assert len(data) == 26 * len(contacts)
    assert krpc.decode_nodes(data) == contacts


@given(peers)
def test_compact_peer_is_six_bytes(peer: tuple[str, int]) -> None:
    data = krpc.encode_peer(*peer)
    assert len(data) == 6
    assert krpc.decode_peers([data]) == [peer]


@given(st.binary(max_size=300))
def test_garbage_raises_only_krpc_error(data: bytes) -> None:
    code = 0
    try:
        krpc.decode_message(data)
    except KRPCError as exc:
        code = exc.code
    assert code in (0, 203, 204)
    assert krpc.peek_query_transaction_id(data) is None or data.startswith(b"d")


@given(messages, st.data())
def test_mutated_messages_never_raise_anything_else(msg: krpc.Message, data: st.DataObject) -> None:
    raw = bytearray(krpc.encode_message(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        decoded = krpc.decode_message(bytes(raw))
    except KRPCError:
        return
    assert isinstance(decoded, Query | Response | krpc.Error)


def test_bep5_ping_example_bytes() -> None:
    query = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
    msg = krpc.decode_message(query)
    assert msg == Query(b"aa", Ping(b"abcdefghij0123456789"))
    assert krpc.encode_message(msg) == query
    reply = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"
    assert krpc.decode_message(reply) == Response(b"aa", b"mnopqrstuvwxyz123456")


def test_bep5_announce_and_error_examples() -> None:
    raw = (
        b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz123456"
        b"4:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe"
    )
    msg = krpc.decode_message(raw)
    assert isinstance(msg, Query)
    assert msg.body == AnnouncePeer(
        b"abcdefghij0123456789", b"mnopqrstuvwxyz123456", 6881, b"aoeusnth", True
    )
    err = krpc.decode_message(b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee")
    assert err == krpc.Error(b"aa", 201, "A Generic Error Ocurred")


def test_get_peers_response_with_values_and_token() -> None:
    values = [krpc.encode_peer("10.0.0.1", 6881), krpc.encode_peer("10.0.0.2", 51413)]
    raw = b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl"
    raw += b"".join(b"6:" + v for v in values) + b"ee1:t2:aa1:y1:re"
    msg = krpc.decode_message(raw)
    assert isinstance(msg, Response)
    assert msg.values == (("10.0.0.1", 6881), ("10.0.0.2", 51413))
    assert msg.token == b"aoeusnth"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe", 203),  # id not 20 bytes
        (b"d1:ad2:id20:abcdefghij0123456789e1:q4:zzzz1:t2:aa1:y1:qe", 204),  # unknown method
        (b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:y1:qe", 203),  # no t
        (b"d1:t2:aa1:y1:xe", 203),  # bad y
        (b"le", 203),  # not a dict
        (b"d1:rd2:id20:abcdefghij01234567895:nodes3:abce1:t2:aa1:y1:re", 203),  # nodes % 26
    ],
)
def test_invalid_messages(raw: bytes, code: int) -> None:
    with pytest.raises(KRPCError) as info:
        krpc.decode_message(raw)
    assert info.value.code == code


def test_announce_port_range_and_implied_port() -> None:
    base = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456"
    with pytest.raises(KRPCError):
        krpc.decode_message(base + b"4:porti70000e5:token1:xe1:q13:announce_peer1:t1:a1:y1:qe")
    with pytest.raises(KRPCError):
        krpc.decode_message(base + b"4:porti0e5:token1:xe1:q13:announce_peer1:t1:a1:y1:qe")
    ok = krpc.decode_message(
        base.replace(b"9:info", b"12:implied_porti1e9:info")
        + b"4:porti0e5:token1:xe1:q13:announce_peer1:t1:a1:y1:qe"
    )
    assert isinstance(ok, Query)
    assert isinstance(ok.body, AnnouncePeer)
    assert ok.body.implied_port


def test_oversized_datagram_rejected() -> None:
    with pytest.raises(KRPCError):
        krpc.decode_message(b"d1:t" + b"2000:" + b"x" * 2000 + b"e")


def test_peek_transaction_id_only_for_queries() -> None:
    assert krpc.peek_query_transaction_id(b"d1:q4:zzzz1:t2:ab1:y1:qe") == b"ab"
    assert krpc.peek_query_transaction_id(b"d1:t2:ab1:y1:re") is None
    assert krpc.peek_query_transaction_id(b"garbage") is None


def test_transaction_table_matches_only_the_address_asked() -> None:
    table = TransactionTable(random.Random(1))
    p = table.open(("127.0.0.2", 1000), "ping", now=0.0, timeout=1.0)
    assert len(p.transaction_id) == 2
    assert table.match(p.transaction_id, ("127.0.0.3", 1000), now=0.1) is None
    assert table.match(b"zz", ("127.0.0.2", 1000), now=0.1) is None
    assert table.match(p.transaction_id, ("127.0.0.2", 1000), now=0.2) == p
    assert table.match(p.transaction_id, ("127.0.0.2", 1000), now=0.2) is None  # used once


def test_transaction_table_expiry_and_cap() -> None:
    table = TransactionTable(random.Random(2), max_pending=3)
    for i in range(3):
        table.open(("127.0.0.2", 1000 + i), "ping", now=0.0, timeout=1.0)
    with pytest.raises(KRPCError):
        table.open(("127.0.0.2", 2000), "ping", now=0.5, timeout=1.0)
    assert len(table.expire(2.0)) == 3
    assert len(table) == 0
    late = table.open(("127.0.0.2", 3000), "ping", now=0.0, timeout=1.0)
    assert table.match(late.transaction_id, ("127.0.0.2", 3000), now=5.0) is None


def test_distance_is_xor() -> None:
    a, b = b"\x00" * 19 + b"\x01", b"\x00" * 19 + b"\x03"
    assert krpc.distance(a, b) == 2
    assert krpc.distance(a, a) == 0
