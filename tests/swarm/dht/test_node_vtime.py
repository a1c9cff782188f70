"""DHTNode behaviour that depends on time, in virtual time on an in-memory network.

Each test runs under :func:`hubswarm.vtime.run` with its nodes on a
:class:`hubswarm.memnet.MemoryNetwork`: time-outs, maintenance ticks and "nothing happens
before then" are exact, and a test of minutes of DHT time takes milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import pytest

from hubswarm import vtime
from hubswarm.limits import DHT_REANNOUNCE_AFTER, DHT_TOKEN_ROTATE
from hubswarm.memnet import MemoryNetwork
from hubswarm.proto import krpc
from hubswarm.proto.krpc import AnnouncePeer, CompactNode, GetPeers, Ping, Query
from hubswarm.swarm.dht.node import DEFAULT_MAINTENANCE_INTERVAL, DHTNode
from hubswarm.swarm.dht.peerstore import PeerStore
from tests.swarm.dht.netutil import RawUDP, memory_node, raw_socket

# One-way delay of the in-memory network: a query answered at once takes 2 * LATENCY.
LATENCY = 0.01


def test_garbage_datagrams_are_counted_and_node_keeps_answering() -> None:
    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        rng = random.Random(5)
        async with memory_node(network, "10.3.0.1", rng=random.Random(1)) as node:
            raw = await raw_socket("10.3.0.2", network.host("10.3.0.2"))
            junk = [rng.randbytes(rng.randrange(0, 200)) for _ in range(200)]
            junk += [b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe", b"i1e", b"d" * 5000, b""]
            for data in junk:
                raw.send(data, node.address)
            await asyncio.sleep(2 * LATENCY)  # every datagram has arrived
            assert node.stats.datagrams_in == len(junk)
            assert node.stats.malformed >= len(junk) - 5  # random bytes are never valid KRPC
            assert node.stats.internal_errors == 0
            # A broken query with a transaction id gets a 203 error (BEP 5).
            while await raw.recv(0.05) is not None:
                pass
            raw.send(b"d1:ad2:id3:abce1:q4:ping1:t2:zz1:y1:qe", node.address)
            assert await raw.recv() == krpc.encode_message(
                krpc.Error(b"zz", 203, "id must be 20 bytes")
            )
            raw.send(b"d1:ad2:id20:abcdefghij0123456789e1:q6:vote!!1:t2:zy1:y1:qe", node.address)
            err = krpc.decode_message(await raw.recv() or b"")
            assert isinstance(err, krpc.Error)
            assert err.code == 204
            # And a real ping still works.
            raw.send(krpc.encode_message(Query(b"pp", Ping(b"a" * 20))), node.address)
            reply = await raw.recv()
            assert reply is not None
            assert krpc.decode_message(reply) == krpc.Response(b"pp", node.node_id, version=b"HS01")
            raw.close()

    vtime.run(main())


def test_responses_from_wrong_address_or_unknown_tid_are_ignored() -> None:
    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        async with (
            memory_node(network, "10.3.1.1", rng=random.Random(1), query_timeout=1.0) as a,
            memory_node(network, "10.3.1.2", rng=random.Random(2)) as b,
        ):
            spoofer = await raw_socket("10.3.1.3", network.host("10.3.1.3"))
            forged_id = b"F" * 20
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(a.query(b.address, Ping(a.node_id)))
                await asyncio.sleep(0)
                (tid,) = list(a._waiters)
                # Both forgeries arrive after one LATENCY, b's answer after two.
                spoofer.send(krpc.encode_message(krpc.Response(tid, forged_id)), a.address)
                spoofer.send(krpc.encode_message(krpc.Response(b"??", forged_id)), a.address)
            assert task.result().node_id == b.node_id
            assert a.stats.wrong_address == 1
            assert a.stats.unknown_transaction == 1
            assert a.table.get(forged_id) is None
            spoofer.close()

    vtime.run(main())


def test_per_ip_rate_limit_answers_the_burst_and_drops_the_rest() -> None:
    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        async with memory_node(
            network, "10.3.2.1", rng=random.Random(1), rate_per_ip=1.0, rate_burst=5.0
        ) as node:
            raw = await raw_socket("10.3.2.2", network.host("10.3.2.2"))
            for i in range(30):
                q = Query(i.to_bytes(2, "big"), Ping(b"b" * 20))
                raw.send(krpc.encode_message(q), node.address)
            answers = 0
            while (data := await raw.recv(0.5)) is not None:
                msg = krpc.decode_message(data)
                answers += isinstance(msg, krpc.Response) and msg.node_id == node.node_id
            # All 30 arrive at the same instant: no time to refill the bucket.
            assert answers == 5
            assert node.stats.rate_limited == 25
            raw.close()

    vtime.run(main())


def test_a_flood_from_one_address_is_cut_to_its_budget_while_another_is_answered() -> None:
    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        async with memory_node(
            network, "10.3.6.1", rng=random.Random(1), rate_per_ip=10.0, rate_burst=20.0
        ) as node:
            flooder = await raw_socket("10.3.6.2", network.host("10.3.6.2"))
            honest = await raw_socket("10.3.6.3", network.host("10.3.6.3"))
            sent = answered = 0
            # 2 s of a flood at 1,000 queries a second; the honest node pings every 0.1 s.
            for tick in range(20):
                for i in range(100):
                    q = Query((tick * 100 + i).to_bytes(2, "big"), Ping(b"f" * 20))
                    flooder.send(krpc.encode_message(q), node.address)
                    sent += 1
                honest.send(
                    krpc.encode_message(Query(b"h%d" % tick, Ping(b"h" * 20))), node.address
                )
                await asyncio.sleep(0.1)
                while (data := await flooder.recv(0)) is not None:
                    answered += isinstance(krpc.decode_message(data), krpc.Response)
            while (data := await flooder.recv(0.1)) is not None:
                answered += isinstance(krpc.decode_message(data), krpc.Response)
            honest_answers = 0
            while (data := await honest.recv(0.1)) is not None:
                honest_answers += isinstance(krpc.decode_message(data), krpc.Response)
            # The burst (20) plus 10 a second for the 2 s, nothing more; the rest dropped
            # unanswered (no error reply either: a spoofed source gets nothing).
            assert 20 + 19 * 1 <= answered <= 20 + 10 * 2
            assert node.stats.rate_limited == sent - answered
            assert honest_answers == 20
            flooder.close()
            honest.close()

    vtime.run(main())


def test_an_announce_flood_with_many_info_hashes_holds_bounded_memory() -> None:
    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        async with memory_node(
            network, "10.3.7.1", rng=random.Random(1), rate_per_ip=1e6, rate_burst=1e6
        ) as node:
            node.peers = PeerStore(max_per_ip=50, max_total=120)
            flooder = await raw_socket("10.3.7.2", network.host("10.3.7.2"))
            honest = await raw_socket("10.3.7.3", network.host("10.3.7.3"))

            async def token_of(raw: RawUDP) -> bytes:
                raw.send(
                    krpc.encode_message(Query(b"gp", GetPeers(b"x" * 20, b"i" * 20))), node.address
                )
                reply = krpc.decode_message(await raw.recv() or b"")
                assert isinstance(reply, krpc.Response)
                assert reply.token is not None
                return reply.token

            honest_token = await token_of(honest)
            honest_hash = b"H" * 20
            body = AnnouncePeer(b"h" * 20, honest_hash, 6881, honest_token)
            honest.send(krpc.encode_message(Query(b"ah", body)), node.address)
            assert isinstance(krpc.decode_message(await honest.recv() or b""), krpc.Response)
            token = await token_of(flooder)
            rng = random.Random(3)
            for i in range(2000):
                body = AnnouncePeer(b"f" * 20, rng.randbytes(20), 1 + i % 60000, token)
                flooder.send(krpc.encode_message(Query(i.to_bytes(2, "big"), body)), node.address)
                if i % 100 == 99:
                    await asyncio.sleep(2 * LATENCY)
                    while await flooder.recv(0) is not None:
                        pass
                    assert node.peers.from_ip("10.3.7.2") <= 50
                    assert len(node.peers) <= 120
            await asyncio.sleep(2 * LATENCY)
            assert node.stats.queries_in >= 2000
            assert node.peers.from_ip("10.3.7.2") == 50
            # The other address's announce is still held and handed out.
            assert node.peers.get(honest_hash, asyncio.get_running_loop().time(), 10) == [
                ("10.3.7.3", 6881)
            ]
            flooder.close()
            honest.close()

    vtime.run(main())


def test_cancelled_lookup_leaves_node_usable() -> None:
    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        async with (
            memory_node(network, "10.3.6.1", rng=random.Random(1), query_timeout=0.5) as a,
            memory_node(network, "10.3.6.2", rng=random.Random(2), bootstrap=[a.address]) as b,
        ):
            # A contact that never answers keeps the lookup waiting; cancel it mid-round.
            b.table.insert(CompactNode(b"\x01" * 20, "10.3.6.9", 9), b._clock.now())
            task = asyncio.create_task(b.lookup(b"\x01" * 20))
            await asyncio.sleep(0.1)
            assert b._waiters
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not b._waiters
            assert await b.ping(a.address) == a.node_id

    vtime.run(main())


def test_questionable_nodes_pinged_and_bad_one_replaced_by_live_newcomer() -> None:
    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        own = b"\x00" * 20
        async with (
            memory_node(
                network, "10.3.7.1", node_id=own, rng=random.Random(1), query_timeout=0.3
            ) as a,
            memory_node(network, "10.3.7.2", node_id=b"\xff" * 20, rng=random.Random(2)) as b,
        ):
            stale = a._clock.now() - 16 * 60  # BEP 5: no answer for 15 minutes -> questionable
            dead = [
                CompactNode(bytes([0x80 + i]) + b"\x00" * 19, "10.3.7.9", 9 + i) for i in range(8)
            ]
            for contact in dead:
                a.table.insert(contact, stale)
            # b answers while the bucket is full: b is cached and the 8 questionable nodes
            # are pinged, 4 at a time (0.3 s time-outs), so each has failed once by 0.6 s.
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert await a.ping(b.address) == b.node_id
            await asyncio.sleep(t0 + 0.7 - loop.time())
            assert a.stats.timeouts == len(dead)
            assert a.table.get(b.node_id) is None
            # b's own query to a had a ping b back queued behind them; its answer has the
            # questionable nodes pinged again, and a second failure makes a node bad: b
            # takes the first freed slot (BEP 5).
            await asyncio.sleep(0.4)
            assert a.stats.timeouts == len(dead) + 4
            assert a.table.get(b.node_id) is not None

    vtime.run(main())


def test_maintenance_refreshes_stale_buckets_and_rotates_tokens_on_time() -> None:
    # Nothing is sent before a bucket is stale; a refresh lookup within one maintenance tick
    # after; a token stays valid across one rotation and not across two (BEP 5).
    refresh_after = 60.0

    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        async with (
            memory_node(network, "10.3.8.1", rng=random.Random(1)) as a,
            memory_node(
                network,
                "10.3.8.2",
                rng=random.Random(2),
                bootstrap=[a.address],
                refresh_after=refresh_after,
            ) as b,
        ):
            token = b.tokens.token_for("10.0.0.1")
            sent = b.stats.queries_out
            await asyncio.sleep(refresh_after - DEFAULT_MAINTENANCE_INTERVAL)
            assert b.stats.queries_out == sent
            await asyncio.sleep(2 * DEFAULT_MAINTENANCE_INTERVAL)
            assert b.stats.queries_out > sent  # refresh lookups of the stale buckets
            await asyncio.sleep(DHT_TOKEN_ROTATE)
            assert b.tokens.is_valid(token, "10.0.0.1")  # one rotation: still accepted
            await asyncio.sleep(DHT_TOKEN_ROTATE)
            assert not b.tokens.is_valid(token, "10.0.0.1")  # two rotations later

    vtime.run(main())


@contextlib.asynccontextmanager
async def five_nodes(
    network: MemoryNetwork, net: str
) -> AsyncIterator[tuple[DHTNode, list[DHTNode]]]:
    """A bootstrap node at ``net``.1 and five nodes at ``net``.10-14 that joined through it."""
    async with contextlib.AsyncExitStack() as stack:
        boot = await stack.enter_async_context(
            memory_node(network, f"{net}.1", rng=random.Random(1))
        )
        others = [
            await stack.enter_async_context(
                memory_node(
                    network, f"{net}.{10 + i}", bootstrap=[boot.address], rng=random.Random(10 + i)
                )
            )
            for i in range(5)
        ]
        yield boot, others


def test_background_bootstrap_lets_a_lookup_start_at_once() -> None:
    # Five nodes known to the bootstrap node; a newcomer enters without waiting for any
    # answer (its table still empty), a get_peers lookup at once waits for the bootstrap
    # node's answer and works, and the own-id lookup that runs in the background fills the
    # table.
    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        async with five_nodes(network, "10.3.8") as (boot, others):
            info_hash = b"\x42" * 20
            await others[0].announce_peer(info_hash, 6881)
            async with memory_node(
                network,
                "10.3.8.2",
                bootstrap=[boot.address],
                rng=random.Random(2),
                lookups_in_background=True,
            ) as late:
                assert len(late.table) == 0
                assert ("10.3.8.10", 6881) in await late.get_peers(info_hash)
                assert late.table.get(boot.node_id) is not None
                async with asyncio.timeout(10):
                    while len(late.table) < 6:
                        await asyncio.sleep(LATENCY)
                assert len(late.table) == 6

    vtime.run(main())


def test_one_lookup_finds_peers_and_announces() -> None:
    # Five nodes; one announced a torrent. A sixth finds that peer and announces itself on
    # the same lookup: the peers reach ``found`` before the announce, and a node that only
    # looks afterwards sees both. One lookup's queries, not two lookups'.
    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        async with five_nodes(network, "10.3.9") as (_, others):
            info_hash = b"\x17" * 20
            await others[0].announce_peer(info_hash, 6881)
            seen: list[list[tuple[str, int]]] = []
            sent = others[1].stats.queries_out
            accepted = await others[1].get_peers_and_announce(info_hash, 7000, seen.append)
            combined = others[1].stats.queries_out - sent
            assert seen == [[("10.3.9.10", 6881)]]
            assert accepted >= 1
            found = await others[2].get_peers(info_hash)
            assert {("10.3.9.10", 6881), ("10.3.9.11", 7000)} <= set(found)
            # The same pair as two calls: two lookups before the announce's queries.
            sent = others[3].stats.queries_out
            await others[3].get_peers(info_hash)
            await others[3].announce_peer(info_hash, 7001)
            assert combined < others[3].stats.queries_out - sent

    vtime.run(main())


def test_a_repeated_lookup_announces_only_where_no_recent_announce_is_held() -> None:
    # A swarm repeats get_peers_and_announce (a flash crowd's ramp: 0.25, 0.5, 1 ... s
    # apart). The nodes that accepted the announce still store it: the repeat finds the
    # peers again, sends those nodes no announce_peer and counts them as holding it. Once
    # DHT_REANNOUNCE_AFTER has passed, they get it again, and maintenance forgets the old
    # acceptances.
    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        async with (
            five_nodes(network, "10.3.11") as (boot, others),
            memory_node(
                network, "10.3.11.2", bootstrap=[boot.address], rng=random.Random(2)
            ) as node,
        ):
            info_hash = b"\x51" * 20
            await others[0].announce_peer(info_hash, 6881)
            seen: list[list[tuple[str, int]]] = []
            first = await node.get_peers_and_announce(info_hash, 7000, seen.append)
            sent = node.stats.announces_out
            assert first >= 1
            assert sent >= first
            await asyncio.sleep(0.25)
            second = await node.get_peers_and_announce(info_hash, 7000, seen.append)
            assert seen[0] == [("10.3.11.10", 6881)]
            assert ("10.3.11.10", 6881) in seen[1]  # and ourselves, announced by the first
            assert second == first
            assert node.stats.announces_out == sent
            assert node.stats.announces_skipped == first
            assert ("10.3.11.2", 7000) in await others[1].get_peers(info_hash)
            # An explicit announce is always sent.
            await node.announce_peer(info_hash, 7000)
            assert node.stats.announces_out > sent
            sent = node.stats.announces_out
            await asyncio.sleep(DHT_REANNOUNCE_AFTER)
            third = await node.get_peers_and_announce(info_hash, 7000, seen.append)
            assert third >= 1
            assert node.stats.announces_out >= sent + third
            assert node.stats.announces_skipped == first
            assert node._announced
            await asyncio.sleep(DHT_REANNOUNCE_AFTER + DEFAULT_MAINTENANCE_INTERVAL)
            assert not node._announced

    vtime.run(main())


def test_a_lookup_with_an_empty_table_asks_the_bootstrap_node_again() -> None:
    # The bootstrap node is down when a node starts (its ping times out: an empty table);
    # once it is up, the next lookup re-contacts it and finds the announced peer, before
    # any maintenance tick would have.
    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        loop = asyncio.get_running_loop()
        boot_address = ("10.3.10.1", 6881)  # nobody listens there yet
        async with memory_node(
            network, "10.3.10.2", bootstrap=[boot_address], rng=random.Random(2), query_timeout=0.3
        ) as lonely:
            started = loop.time()
            assert len(lonely.table) == 0
            info_hash = b"\x33" * 20
            async with (
                memory_node(network, "10.3.10.1", port=6881, rng=random.Random(1)) as boot,
                memory_node(
                    network, "10.3.10.10", bootstrap=[boot.address], rng=random.Random(10)
                ) as other,
            ):
                await other.announce_peer(info_hash, 6881)
                assert ("10.3.10.10", 6881) in await lonely.get_peers(info_hash)
                assert lonely.table.get(boot.node_id) is not None
            assert loop.time() - started < DEFAULT_MAINTENANCE_INTERVAL

    vtime.run(main())


def test_entering_in_background_mode_does_not_wait_for_a_silent_bootstrap_node() -> None:
    # Nobody answers at the bootstrap address: entering still returns at once (a peer's
    # torrent starts), and a lookup gives up after the query time-out, with nothing found.
    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        silent = await raw_socket("10.3.11.1", network.host("10.3.11.1"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with memory_node(
            network,
            "10.3.11.2",
            bootstrap=[silent.address],
            rng=random.Random(3),
            query_timeout=0.5,
            lookups_in_background=True,
        ) as node:
            assert loop.time() == started
            assert await node.get_peers(b"\x44" * 20) == []
            assert loop.time() - started == pytest.approx(0.5)
        silent.close()

    vtime.run(main())
