"""DHTNode on the kernel's UDP (loopback): defences that answer at once, tokens, persistence.

Whatever depends on time (time-outs, maintenance, many nodes) runs in virtual time on an
in-memory network: ``test_node_vtime.py`` and ``test_network_vtime.py``.
"""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import pytest

from hubswarm.proto import krpc
from hubswarm.proto.krpc import AnnouncePeer, CompactNode, FindNode, GetPeers, Query
from hubswarm.swarm.dht.node import DHTNode
from tests.ipv6 import needs_ipv6
from tests.swarm.dht.netutil import raw_socket


async def test_no_amplification_towards_unverified_address() -> None:
    rng = random.Random(4)
    async with DHTNode(host="127.3.3.1", rng=random.Random(1)) as node:
        for i in range(300):
            node.table.insert(CompactNode(rng.randbytes(20), "10.0.0.1", 1 + i), 0.0)
        info_hash = b"I" * 20
        for port in range(1, 200):
            node.peers.add(info_hash, ("10.0.0.2", port), node._clock.now())
        raw = await raw_socket("127.3.3.2")
        try:
            for body in (FindNode(b"c" * 20, b"d" * 20), GetPeers(b"c" * 20, info_hash)):
                query = krpc.encode_message(Query(b"q1", body))
                raw.send(query, node.address)
                reply = await raw.recv()
                assert reply is not None
                assert len(reply) <= 3 * len(query)
                msg = krpc.decode_message(reply)
                assert isinstance(msg, krpc.Response)
                assert msg.nodes or msg.values  # trimmed, not empty
        finally:
            raw.close()


async def test_announce_requires_token_and_implied_port_uses_source_port() -> None:
    async with DHTNode(host="127.3.4.1", rng=random.Random(1)) as node:
        raw = await raw_socket("127.3.4.2")
        try:
            h = b"H" * 20
            raw.send(krpc.encode_message(Query(b"g1", GetPeers(b"e" * 20, h))), node.address)
            reply = krpc.decode_message(await raw.recv() or b"")
            assert isinstance(reply, krpc.Response)
            assert reply.token is not None
            bad = AnnouncePeer(b"e" * 20, h, 7000, b"wrongtok")
            raw.send(krpc.encode_message(Query(b"a1", bad)), node.address)
            err = krpc.decode_message(await raw.recv() or b"")
            assert isinstance(err, krpc.Error)
            assert err.code == 203
            good = AnnouncePeer(b"e" * 20, h, 0, reply.token, implied_port=True)
            raw.send(krpc.encode_message(Query(b"a2", good)), node.address)
            ok = krpc.decode_message(await raw.recv() or b"")
            assert isinstance(ok, krpc.Response)
            assert node.peers.get(h, node._clock.now(), 10) == [raw.address]
            assert node.stats.bad_tokens == 1
        finally:
            raw.close()


async def test_routing_table_saved_on_exit_and_reloaded(tmp_path: Path) -> None:
    state = tmp_path / "dht.json"
    async with DHTNode(host="127.3.5.1", rng=random.Random(1)) as boot:
        async with DHTNode(
            host="127.3.5.2", bootstrap=[boot.address], state_path=state, rng=random.Random(2)
        ) as first:
            assert len(first.table) == 1
            first_id = first.node_id
        assert state.exists()
        # No --bootstrap this time: the saved table is enough to rejoin.
        async with DHTNode(host="127.3.5.2", state_path=state, rng=random.Random(3)) as again:
            assert again.node_id == first_id
            assert again.table.get(boot.node_id) is not None


async def test_a_bootstrap_name_is_resolved_before_the_ping() -> None:
    # Answers are matched on the address asked: "localhost" must become 127.0.0.1 first.
    async with (
        DHTNode(host="127.0.0.1", rng=random.Random(1)) as boot,
        DHTNode(
            host="127.3.12.2", bootstrap=[("localhost", boot.address[1])], rng=random.Random(2)
        ) as node,
    ):
        assert node.table.get(boot.node_id) is not None


@needs_ipv6
async def test_an_ipv6_node_drops_ipv6_queries_and_survives() -> None:
    """BEP 32 (IPv6 DHT) is left out: a node on ``::1`` (an IPv6-only peer) answers nothing
    and counts what it drops; its IPv4 bootstrap cannot be reached, and nothing crashes."""
    async with DHTNode(
        host="::1", bootstrap=[("127.0.0.1", 9)], query_timeout=0.2, rng=random.Random(1)
    ) as node:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as raw:
            raw.setblocking(False)
            raw.bind(("::1", 0))
            queries = [
                Query(b"p1", krpc.Ping(b"c" * 20)),
                Query(b"f1", FindNode(b"c" * 20, b"d" * 20)),
                Query(b"g1", GetPeers(b"c" * 20, b"H" * 20)),
            ]
            for query in queries:
                await loop.sock_sendto(raw, krpc.encode_message(query), node.address[:2])
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await loop.sock_recv(raw, 1500)
        result = await node.lookup(b"x" * 20, get_peers=True)
        assert result.peers == ()
        assert node.stats.not_ipv4 == len(queries)
        assert node.stats.queries_in == 0
        assert node.stats.internal_errors == 0
