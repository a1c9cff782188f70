"""Whole DHT networks in one process, in virtual time on an in-memory network.

Every node has its own host on a :class:`hubswarm.memnet.MemoryNetwork` with a one-way
latency (and, in some tests, datagram loss drawn from the network's seeded rng); the run is
deterministic, so two runs with the same seeds give the same result to the last counter.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from typing import Any

import pytest

from hubswarm import vtime
from hubswarm.memnet import MemoryDatagram, MemoryNetwork
from hubswarm.swarm.dht.node import DEFAULT_MAINTENANCE_INTERVAL, DHTNode
from tests.swarm.dht.netutil import memory_ip, memory_node, start_network, stop_all, true_closest

LATENCY = 0.02  # one way: 40 ms round trips


def test_hundred_nodes_find_closest_in_log_rounds_and_survive_churn() -> None:
    n = 100

    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        nodes = await start_network(n, seed=3, network=network)
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
            # Bound: each answering round fixes at least one more id bit of the best
            # contact, and the closest of N random ids shares ~log2(N) bits with the target;
            # then up to ceil(k/alpha) rounds ask the rest of the k closest, plus the round
            # that finds no improvement.
            bound = math.ceil(math.log2(n)) + math.ceil(8 / 3) + 1
            assert exact == n, f"only {exact}/{n} lookups found the true 8 closest"
            assert max(rounds) <= bound
            assert statistics.mean(rounds) <= math.log2(n)

            # Announce 5 torrents from 5 nodes, then kill 30 % of all nodes (announcers
            # included).
            hashes = [rng.randbytes(20) for _ in range(5)]
            for i, h in enumerate(hashes):
                accepted = await nodes[1 + i].announce_peer(h, 6881 + i)
                assert accepted >= 6
            victims = set(rng.sample(range(1, n), 30)) | {1, 2, 3, 4, 5}
            victims = set(sorted(victims)[:30])
            await stop_all(nodes[i] for i in sorted(victims))
            alive = [node for i, node in enumerate(nodes) if i not in victims]
            nodes = alive
            # Lookups now meet dead contacts (0.5 s time-outs): run the five at once.
            async with asyncio.TaskGroup() as tg:
                searches = [
                    tg.create_task(alive[-1 - i].get_peers(h)) for i, h in enumerate(hashes)
                ]
            for i, search in enumerate(searches):
                assert (memory_ip(1 + i), 6881 + i) in search.result()
        finally:
            await stop_all(nodes)

    vtime.run(main())


def _announce_and_find(n: int, seed: int, loss: float) -> dict[str, Any]:
    """Start ``n`` nodes, announce from node 7, look the peers up from the last node.

    The lookup is repeated once a second until it finds a peer, at most three times, as a
    session repeats its DHT lookups: with loss, one lookup can miss (every answer of the
    nodes holding the announce lost).
    """

    async def main() -> dict[str, Any]:
        network = MemoryNetwork(latency=LATENCY, loss=loss, rng=random.Random(seed))
        loop = asyncio.get_running_loop()
        nodes = await start_network(n, seed=seed, network=network)
        try:
            # Nodes whose bootstrap ping (or its answer) was lost start with an empty
            # table; maintenance contacts the bootstrap node again on every tick.
            await asyncio.sleep(12 * DEFAULT_MAINTENANCE_INTERVAL)
            empty = [i for i, node in enumerate(nodes) if not len(node.table)]
            info_hash = random.Random(seed).randbytes(20)
            accepted = await nodes[7].announce_peer(info_hash, 6881)
            lookups = []
            for _ in range(3):
                started = loop.time()
                result = await nodes[-1].lookup(info_hash, get_peers=True)
                lookups.append((result.rounds, loop.time() - started))
                if result.peers:
                    break
                await asyncio.sleep(1.0)
            return {
                "empty_tables": empty,
                "accepted": accepted,
                "peers": list(result.peers),
                "lookups": lookups,
                "stats": [node.stats.as_dict() for node in nodes],
                "datagrams": [_datagram_counts(node) for node in nodes],
                "clock": loop.time(),
            }
        finally:
            await stop_all(nodes)

    return vtime.run(main())


def _datagram_counts(node: DHTNode) -> tuple[int, int]:
    """(sent, dropped) of a node's in-memory endpoint."""
    transport = node._transport
    assert isinstance(transport, MemoryDatagram)
    return transport.sent, transport.dropped


def test_forty_nodes_find_an_announced_peer_deterministically() -> None:
    first = _announce_and_find(40, seed=5, loss=0.0)
    assert first["empty_tables"] == []
    assert first["accepted"] == 8  # the k closest nodes all took the announce
    assert (memory_ip(7), 6881) in first["peers"]
    # Without loss one lookup is enough, and every round is one round trip: the answers
    # arrive together and none times out.
    [(rounds, seconds)] = first["lookups"]
    assert seconds == pytest.approx(rounds * 2 * LATENCY)
    assert sum(s["timeouts"] for s in first["stats"]) == 0
    assert _announce_and_find(40, seed=5, loss=0.0) == first


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lookups_succeed_with_a_fifth_of_all_datagrams_lost(seed: int) -> None:
    result = _announce_and_find(40, seed=seed, loss=0.2)
    sent = sum(s for s, _ in result["datagrams"])
    dropped = sum(d for _, d in result["datagrams"])
    assert 0.15 * sent < dropped < 0.25 * sent
    # Lost queries and answers time out, and the lookups ask other nodes instead.
    assert sum(s["timeouts"] for s in result["stats"]) > 0
    assert result["empty_tables"] == []
    assert result["accepted"] >= 1
    assert (memory_ip(7), 6881) in result["peers"]
    assert _announce_and_find(40, seed=seed, loss=0.2) == result


class _OneLoss(MemoryNetwork):
    """A network that loses the next datagram sent to ``lose_next_to`` (a model of one loss)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lose_next_to: tuple[str, int] | None = None

    def open_datagram(
        self, loop: asyncio.AbstractEventLoop, local: tuple[str, int], protocol: Any
    ) -> MemoryDatagram:
        return _LosingDatagram(loop, self, local, protocol)


class _LosingDatagram(MemoryDatagram):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        network: _OneLoss,
        local: tuple[str, int],
        protocol: Any,
    ) -> None:
        super().__init__(loop, network, local, protocol)
        self.model = network

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if addr is not None and tuple(addr) == self.model.lose_next_to:
            self.model.lose_next_to = None
            self.sent += 1
            self.dropped += 1
            return
        super().sendto(data, addr)


def test_a_lost_bootstrap_ping_times_out_and_is_sent_again() -> None:
    # The newcomer's first ping to the bootstrap node is lost: it times out, the table stays
    # empty, and the next maintenance tick pings the bootstrap node again and joins.
    boot_ip = memory_ip(0, 4)

    async def main() -> None:
        network = _OneLoss(latency=LATENCY)
        network.lose_next_to = (boot_ip, 6881)
        loop = asyncio.get_running_loop()
        async with memory_node(network, boot_ip, port=6881, rng=random.Random(1)) as boot:
            started = loop.time()
            async with memory_node(
                network,
                memory_ip(1, 4),
                bootstrap=[boot.address],
                rng=random.Random(2),
                query_timeout=0.5,
            ) as node:
                assert loop.time() - started == pytest.approx(0.5)  # one query time-out
                assert len(node.table) == 0
                assert node.stats.timeouts == 1
                assert _datagram_counts(node) == (1, 1)
                await asyncio.sleep(DEFAULT_MAINTENANCE_INTERVAL + 2 * LATENCY)
                assert node.table.get(boot.node_id) is not None
                sent, dropped = _datagram_counts(node)
                assert sent > 1
                assert dropped == 1

    vtime.run(main())


def test_a_lookup_nobody_answered_contacts_the_bootstrap_node_and_runs_again() -> None:
    # The newcomer knows only the bootstrap node, and its lookup's one query is lost: it
    # times out, the bootstrap node is pinged again and the lookup runs once more.
    boot_ip = memory_ip(0, 5)

    async def main() -> None:
        network = _OneLoss(latency=LATENCY)
        loop = asyncio.get_running_loop()
        async with (
            memory_node(network, boot_ip, port=6881, rng=random.Random(1)) as boot,
            memory_node(
                network,
                memory_ip(1, 5),
                bootstrap=[boot.address],
                rng=random.Random(2),
                query_timeout=0.5,
            ) as node,
        ):
            assert len(node.table) == 1
            sent_before = _datagram_counts(node)[0]
            network.lose_next_to = boot.address
            started = loop.time()
            result = await node.lookup(random.Random(3).randbytes(20))
            # The lost query's time-out, the ping's round trip, the lookup's round trip.
            assert loop.time() - started == pytest.approx(0.5 + 4 * LATENCY)
            assert [c.node_id for c in result.closest] == [boot.node_id]
            assert node.stats.timeouts == 1
            assert _datagram_counts(node) == (sent_before + 3, 1)

    vtime.run(main())
