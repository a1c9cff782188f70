"""DHTNode on loopback: 100-node network, churn, defences, tokens, persistence."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import statistics
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubswarm.limits import DHT_REANNOUNCE_AFTER
from hubswarm.proto import krpc
from hubswarm.proto.krpc import AnnouncePeer, CompactNode, FindNode, GetPeers, Ping, Query
from hubswarm.swarm.dht.node import DHTNode
from tests.swarm.dht.netutil import loopback_ip, start_network, stop_all, true_closest


class RawUDP(asyncio.DatagramProtocol):
    """A bare UDP socket for sending hand-made datagrams and reading the answers."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.inbox.put_nowait(data)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    async def recv(self, timeout: float = 1.0) -> bytes | None:
        """The next datagram that is not a query (the node pings unknown senders back)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.inbox.get()
                    if krpc.peek_query_transaction_id(data) is None:
                        return data
        except TimeoutError:
            return None

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port


async def raw_socket(host: str) -> RawUDP:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(RawUDP, local_addr=(host, 0))
    return proto


async def test_hundred_nodes_find_closest_in_log_rounds_and_survive_churn() -> None:
    n = 100
    nodes = await start_network(n, seed=3)
    try:
        rng = random.Random(11)
        rounds: list[int] = []
        exact = 0
        for node in nodes:
            target = rng.randbytes(20)
            result = await node.lookup(target)
            rounds.append(result.rounds)
            got = [c.node_id for c in result.closest]
            exact += got == true_closest(nodes, target, exclude=node.node_id)
        # Bound: each answering round fixes at least one more id bit of the best contact, and
        # the closest of N random ids shares ~log2(N) bits with the target; then up to
        # ceil(k/alpha) rounds ask the rest of the k closest, plus the round that finds no
        # improvement.
        bound = math.ceil(math.log2(n)) + math.ceil(8 / 3) + 1
        mean = statistics.mean(rounds)
        print(f"\n100 nodes: mean rounds {mean:.2f}, max {max(rounds)}, log2(N) {math.log2(n):.2f}")
        assert exact == n, f"only {exact}/{n} lookups found the true 8 closest"
        assert max(rounds) <= bound
        assert mean <= math.log2(n)

        # Announce 5 torrents from 5 nodes, then kill 30 % of all nodes (announcers included).
        hashes = [rng.randbytes(20) for _ in range(5)]
        for i, h in enumerate(hashes):
            accepted = await nodes[1 + i].announce_peer(h, 6881 + i)
            assert accepted >= 6
        victims = set(rng.sample(range(1, n), 30)) | {1, 2, 3, 4, 5}
        victims = set(sorted(victims)[:30])
        await stop_all(nodes[i] for i in sorted(victims))
        alive = [node for i, node in enumerate(nodes) if i not in victims]
        nodes = alive
        # Lookups now meet dead contacts (0.5 s timeouts): run the five at once.
        async with asyncio.TaskGroup() as tg:
            searches = [tg.create_task(alive[-1 - i].get_peers(h)) for i, h in enumerate(hashes)]
        for i, search in enumerate(searches):
            assert (loopback_ip(1 + i), 6881 + i) in search.result()
    finally:
        await stop_all(nodes)


async def test_garbage_datagrams_are_counted_and_node_keeps_answering() -> None:
    rng = random.Random(5)
    async with DHTNode(host="127.3.0.1", rng=random.Random(1)) as node:
        raw = await raw_socket("127.3.0.2")
        try:
            junk = [rng.randbytes(rng.randrange(0, 200)) for _ in range(200)]
            junk += [b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe", b"i1e", b"d" * 5000, b""]
            for data in junk:
                raw.send(data, node.address)
            await asyncio.sleep(0.2)
            assert node.stats.malformed >= len(junk) - 5  # random bytes are never valid KRPC
            assert node.stats.internal_errors == 0
            # A broken query with a transaction id gets a 203 error (BEP 5).
            while await raw.recv(0.05) is not None:
                pass
            raw.send(b"d1:ad2:id3:abce1:q4:ping1:t2:zz1:y1:qe", node.address)
            reply = await raw.recv()
            assert reply is not None
            assert krpc.decode_message(reply) == krpc.Error(b"zz", 203, "id must be 20 bytes")
            raw.send(b"d1:ad2:id20:abcdefghij0123456789e1:q6:vote!!1:t2:zy1:y1:qe", node.address)
            reply = await raw.recv()
            assert reply is not None
            err = krpc.decode_message(reply)
            assert isinstance(err, krpc.Error)
            assert err.code == 204
            # And a real ping still works.
            raw.send(krpc.encode_message(Query(b"pp", Ping(b"a" * 20))), node.address)
            reply = await raw.recv()
            assert reply is not None
            assert krpc.decode_message(reply) == krpc.Response(b"pp", node.node_id, version=b"HS01")
        finally:
            assert raw.transport is not None
            raw.transport.close()


async def test_responses_from_wrong_address_or_unknown_tid_are_ignored() -> None:
    async with (
        DHTNode(host="127.3.1.1", rng=random.Random(1), query_timeout=1.0) as a,
        DHTNode(host="127.3.1.2", rng=random.Random(2)) as b,
    ):
        spoofer = await raw_socket("127.3.1.3")
        try:
            forged_id = b"F" * 20
            task = asyncio.create_task(a.query(b.address, Ping(a.node_id)))
            await asyncio.sleep(0)
            (tid,) = list(a._waiters)
            spoofer.send(krpc.encode_message(krpc.Response(tid, forged_id)), a.address)
            spoofer.send(krpc.encode_message(krpc.Response(b"??", forged_id)), a.address)
            reply = await task
            assert reply.node_id == b.node_id
            await asyncio.sleep(0.05)
            assert a.stats.unknown_transaction + a.stats.wrong_address >= 2
            assert a.table.get(forged_id) is None
        finally:
            assert spoofer.transport is not None
            spoofer.transport.close()


async def test_per_ip_rate_limit() -> None:
    async with DHTNode(
        host="127.3.2.1", rng=random.Random(1), rate_per_ip=1.0, rate_burst=5.0
    ) as node:
        raw = await raw_socket("127.3.2.2")
        try:
            for i in range(30):
                q = Query(i.to_bytes(2, "big"), Ping(b"b" * 20))
                raw.send(krpc.encode_message(q), node.address)
            await asyncio.sleep(0.3)
            answers = 0
            while (data := await raw.recv(0.05)) is not None:
                msg = krpc.decode_message(data)
                answers += isinstance(msg, krpc.Response) and msg.node_id == node.node_id
            assert answers <= 6
            assert node.stats.rate_limited >= 24
        finally:
            assert raw.transport is not None
            raw.transport.close()


async def test_no_amplification_towards_unverified_address() -> None:
    rng = random.Random(4)
    async with DHTNode(host="127.3.3.1", rng=random.Random(1)) as node:
        for i in range(300):
            node.table.insert(CompactNode(rng.randbytes(20), "10.0.0.1", 1 + i), 0.0)
        info_hash = b"I" * 20
        for port in range(1, 200):
            node.peers.add(info_hash, ("10.0.0.2", port), node._clock())
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
            assert raw.transport is not None
            raw.transport.close()


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
            assert node.peers.get(h, node._clock(), 10) == [raw.address]
            assert node.stats.bad_tokens == 1
        finally:
            assert raw.transport is not None
            raw.transport.close()


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


async def test_cancelled_lookup_leaves_node_usable() -> None:
    async with (
        DHTNode(host="127.3.6.1", rng=random.Random(1), query_timeout=0.5) as a,
        DHTNode(host="127.3.6.2", rng=random.Random(2), bootstrap=[a.address]) as b,
    ):
        # A contact that never answers keeps the lookup waiting; cancel it mid-round.
        b.table.insert(CompactNode(b"\x01" * 20, "127.3.6.9", 9), 0.0)
        task = asyncio.create_task(b.lookup(b"\x01" * 20))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not b._waiters
        assert await b.ping(a.address) == a.node_id


async def test_questionable_nodes_pinged_and_bad_one_replaced_by_live_newcomer() -> None:
    own = b"\x00" * 20
    async with (
        DHTNode(host="127.3.7.1", node_id=own, rng=random.Random(1), query_timeout=0.3) as a,
        DHTNode(host="127.3.7.2", node_id=b"\xff" * 20, rng=random.Random(2)) as b,
    ):
        stale = a._clock() - 16 * 60  # BEP 5: no answer for 15 minutes -> questionable
        dead = [CompactNode(bytes([0x80 + i]) + b"\x00" * 19, "127.3.7.9", 9 + i) for i in range(8)]
        for contact in dead:
            a.table.insert(contact, stale)
        for _ in range(2):  # each answer from b while the bucket is full triggers the pings
            assert await a.ping(b.address) == b.node_id
            await asyncio.sleep(1.0)
        assert a.table.get(b.node_id) is not None
        assert a.stats.timeouts >= 8


async def test_stale_buckets_refreshed_and_tokens_rotated_by_maintenance() -> None:
    async with (
        DHTNode(host="127.3.8.1", rng=random.Random(1)) as a,
        DHTNode(
            host="127.3.8.2",
            rng=random.Random(2),
            bootstrap=[a.address],
            maintenance_interval=0.1,
            refresh_after=0.2,
            token_rotate_after=0.2,
        ) as b,
    ):
        token = b.tokens.token_for("10.0.0.1")
        sent = b.stats.queries_out
        await asyncio.sleep(0.8)
        assert b.stats.queries_out > sent  # refresh lookups of the stale buckets
        assert not b.tokens.is_valid(token, "10.0.0.1")  # two rotations later


@contextlib.asynccontextmanager
async def five_nodes(net: str) -> AsyncIterator[tuple[DHTNode, list[DHTNode]]]:
    """A bootstrap node at ``net``.1 and five nodes at ``net``.10-14 that joined through it."""
    async with contextlib.AsyncExitStack() as stack:
        boot = await stack.enter_async_context(DHTNode(host=f"{net}.1", rng=random.Random(1)))
        others = [
            await stack.enter_async_context(
                DHTNode(host=f"{net}.{10 + i}", bootstrap=[boot.address], rng=random.Random(10 + i))
            )
            for i in range(5)
        ]
        yield boot, others


async def test_background_bootstrap_lets_a_lookup_start_at_once() -> None:
    # Five nodes known to the bootstrap node; a newcomer enters without waiting for any
    # answer (its table still empty), a get_peers lookup at once waits for the bootstrap
    # node's answer and works, and the own-id lookup that runs in the background fills the
    # table.
    async with five_nodes("127.3.8") as (boot, others):
        info_hash = b"\x42" * 20
        await others[0].announce_peer(info_hash, 6881)
        async with DHTNode(
            host="127.3.8.2",
            bootstrap=[boot.address],
            rng=random.Random(2),
            lookups_in_background=True,
        ) as late:
            assert len(late.table) == 0
            assert ("127.3.8.10", 6881) in await late.get_peers(info_hash)
            assert late.table.get(boot.node_id) is not None
            async with asyncio.timeout(10):
                while len(late.table) < 6:
                    await asyncio.sleep(0.05)
            assert len(late.table) == 6


async def test_one_lookup_finds_peers_and_announces() -> None:
    # Five nodes; one announced a torrent. A sixth finds that peer and announces itself on
    # the same lookup: the peers reach ``found`` before the announce, and a node that only
    # looks afterwards sees both. One lookup's queries, not two lookups'.
    async with five_nodes("127.3.9") as (_, others):
        info_hash = b"\x17" * 20
        await others[0].announce_peer(info_hash, 6881)
        seen: list[list[tuple[str, int]]] = []
        sent = others[1].stats.queries_out
        accepted = await others[1].get_peers_and_announce(info_hash, 7000, seen.append)
        combined = others[1].stats.queries_out - sent
        assert seen == [[("127.3.9.10", 6881)]]
        assert accepted >= 1
        found = await others[2].get_peers(info_hash)
        assert {("127.3.9.10", 6881), ("127.3.9.11", 7000)} <= set(found)
        # The same pair as two calls: two lookups before the announce's queries.
        sent = others[3].stats.queries_out
        await others[3].get_peers(info_hash)
        await others[3].announce_peer(info_hash, 7001)
        assert combined < others[3].stats.queries_out - sent


async def test_a_repeated_lookup_announces_only_where_no_recent_announce_is_held() -> None:
    # A swarm repeats get_peers_and_announce (a flash crowd's ramp: 0.25, 0.5, 1 ... s
    # apart). The nodes that accepted the announce still store it: the repeat finds the
    # peers again, sends those nodes no announce_peer and counts them as holding it. Once
    # DHT_REANNOUNCE_AFTER has passed, they get it again, and maintenance forgets the old
    # acceptances.
    now = [1000.0]
    async with (
        five_nodes("127.3.11") as (boot, others),
        DHTNode(
            host="127.3.11.2",
            bootstrap=[boot.address],
            rng=random.Random(2),
            clock=lambda: now[0],
            maintenance_interval=0.05,
        ) as node,
    ):
        info_hash = b"\x51" * 20
        await others[0].announce_peer(info_hash, 6881)
        seen: list[list[tuple[str, int]]] = []
        first = await node.get_peers_and_announce(info_hash, 7000, seen.append)
        sent = node.stats.announces_out
        assert first >= 1
        assert sent >= first
        second = await node.get_peers_and_announce(info_hash, 7000, seen.append)
        assert seen[0] == [("127.3.11.10", 6881)]
        assert ("127.3.11.10", 6881) in seen[1]  # and ourselves, announced by the first
        assert second == first
        assert node.stats.announces_out == sent
        assert node.stats.announces_skipped == first
        assert ("127.3.11.2", 7000) in await others[1].get_peers(info_hash)
        # An explicit announce is always sent.
        await node.announce_peer(info_hash, 7000)
        assert node.stats.announces_out > sent
        sent = node.stats.announces_out
        now[0] += DHT_REANNOUNCE_AFTER + 1
        third = await node.get_peers_and_announce(info_hash, 7000, seen.append)
        assert third >= 1
        assert node.stats.announces_out >= sent + third
        assert node.stats.announces_skipped == first
        now[0] += DHT_REANNOUNCE_AFTER + 1
        async with asyncio.timeout(5):
            while node._announced:
                await asyncio.sleep(0.05)


async def test_a_lookup_with_an_empty_table_asks_the_bootstrap_node_again() -> None:
    # The bootstrap node is down when a node starts (its ping times out: an empty table);
    # once it is up, the next lookup re-contacts it and finds the announced peer.
    probe = await raw_socket("127.3.10.1")
    boot_address = probe.address
    assert probe.transport is not None
    probe.transport.close()  # the port stays known, and nobody answers on it yet
    async with DHTNode(
        host="127.3.10.2", bootstrap=[boot_address], rng=random.Random(2), query_timeout=0.3
    ) as lonely:
        assert len(lonely.table) == 0
        info_hash = b"\x33" * 20
        async with (
            DHTNode(host=boot_address[0], port=boot_address[1], rng=random.Random(1)) as boot,
            DHTNode(host="127.3.10.10", bootstrap=[boot.address], rng=random.Random(10)) as other,
        ):
            await other.announce_peer(info_hash, 6881)
            assert ("127.3.10.10", 6881) in await lonely.get_peers(info_hash)
            assert lonely.table.get(boot.node_id) is not None


async def test_entering_in_background_mode_does_not_wait_for_a_silent_bootstrap_node() -> None:
    # Nobody answers at the bootstrap address: entering still returns at once (a peer's
    # torrent starts), and a lookup gives up after the query time-outs, with nothing found.
    probe = await raw_socket("127.3.11.1")
    silent = probe.address  # bound but never answering
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with DHTNode(
        host="127.3.11.2",
        bootstrap=[silent],
        rng=random.Random(3),
        query_timeout=0.5,
        lookups_in_background=True,
    ) as node:
        assert loop.time() - started < 0.25
        assert await node.get_peers(b"\x44" * 20) == []
    assert probe.transport is not None
    probe.transport.close()
