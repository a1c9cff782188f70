"""Routing table (BEP 5): bucket splitting, k per bucket, questionable/bad nodes, refresh."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from hubswarm.proto.krpc import CompactNode, distance
from hubswarm.swarm.dht.routing import ID_SPACE, InsertOutcome, NodeStatus, RoutingTable

OWN = b"\x00" * 20


def node(value: int, port: int | None = None) -> CompactNode:
    return CompactNode(value.to_bytes(20, "big"), "127.0.0.2", port or 1000 + value % 60000)


def check_invariants(table: RoutingTable) -> None:
    assert table.buckets[0].lo == 0
    assert table.buckets[-1].hi == ID_SPACE
    for a, b in zip(table.buckets, table.buckets[1:], strict=False):
        assert a.hi == b.lo
    for b in table.buckets:
        assert len(b.nodes) <= table.k
        for e in b.nodes:
            assert b.covers(int.from_bytes(e.node.node_id, "big"))
    own = [b for b in table.buckets if b.covers(int.from_bytes(table.own_id, "big"))]
    assert len(own) == 1


@given(
    st.lists(st.binary(min_size=20, max_size=20), max_size=300), st.binary(min_size=20, max_size=20)
)
def test_table_invariants_hold_for_any_insert_sequence(id_list: list[bytes], own: bytes) -> None:
    table = RoutingTable(own)
    for i, node_id in enumerate(id_list):
        table.insert(CompactNode(node_id, "127.0.0.2", 1 + i), now=float(i))
    check_invariants(table)
    assert table.get(own) is None


def test_split_only_the_bucket_holding_our_id() -> None:
    table = RoutingTable(OWN)
    # Far half (top bit set): 8 fit, the 9th is cached, not split.
    far = [node((1 << 159) + i) for i in range(9)]
    outcomes = [table.insert(n, now=1.0)[0] for n in far]
    assert outcomes[:8] == [InsertOutcome.ADDED] * 8
    assert len(table.buckets) == 2  # the 9th forced one split of the all-covering bucket
    assert outcomes[8] is InsertOutcome.CACHED
    assert len(table) == 8
    # Near our id: splits keep happening, so many near nodes fit.
    for i in range(1, 40):
        table.insert(node(i), now=2.0)
    check_invariants(table)
    assert len(table) > 8 + 16


def test_full_far_bucket_asks_to_ping_questionable_then_replaces_bad() -> None:
    table = RoutingTable(OWN)
    far = [node((1 << 159) + i) for i in range(8)]
    for n in far:
        table.insert(n, now=0.0)
    newcomer = node((1 << 159) + 100)
    # All good: nothing to ping, the newcomer waits in the replacement cache.
    assert table.insert(newcomer, now=10.0) == (InsertOutcome.CACHED, [])
    # 15 minutes later they are questionable: the caller is told whom to ping.
    outcome, to_ping = table.insert(newcomer, now=10.0 + 16 * 60)
    assert outcome is InsertOutcome.CACHED
    assert set(to_ping) == set(far)
    # Two failures make a node bad; the cached replacement takes its slot.
    table.mark_failed(far[0].node_id, now=1000.0)
    assert table.get(far[0].node_id) is not None
    table.mark_failed(far[0].node_id, now=1001.0)
    assert table.get(far[0].node_id) is None
    assert table.get(newcomer.node_id) is not None


def test_bad_node_replaced_on_insert_and_excluded_from_closest() -> None:
    table = RoutingTable(OWN)
    far = [node((1 << 159) + i) for i in range(8)]
    for n in far:
        table.insert(n, now=0.0)
    table.mark_failed(far[3].node_id, 1.0)
    table.mark_failed(far[3].node_id, 1.0)
    entry = table.get(far[3].node_id)
    assert entry is not None
    assert entry.status(1.0) is NodeStatus.BAD
    assert far[3] not in table.closest(far[3].node_id, 8, now=1.0)
    newcomer = node((1 << 159) + 50)
    assert table.insert(newcomer, 2.0)[0] is InsertOutcome.REPLACED
    assert table.get(far[3].node_id) is None


def test_a_table_of_bad_nodes_has_no_contacts() -> None:
    # A lookup has nowhere to start: the node must rejoin through its bootstrap nodes.
    table = RoutingTable(OWN)
    assert not table.has_contacts(0.0)
    only = node(5)
    table.insert(only, now=0.0)
    assert table.has_contacts(15 * 60.0 + 1)  # questionable still counts
    table.mark_failed(only.node_id, 1.0)
    table.mark_failed(only.node_id, 1.0)
    assert len(table) == 1
    assert not table.has_contacts(1.0)


def test_node_status_transitions() -> None:
    table = RoutingTable(OWN)
    n = node(5)
    table.insert(n, now=0.0)
    entry = table.get(n.node_id)
    assert entry is not None
    assert entry.status(60.0) is NodeStatus.GOOD
    assert entry.status(15 * 60.0 + 1) is NodeStatus.QUESTIONABLE
    assert table.heard_query(n, now=15 * 60.0)  # a query refreshes a node that once answered
    assert entry.status(15 * 60.0 + 1) is NodeStatus.GOOD
    assert not table.heard_query(node(6), now=1.0)


def test_same_address_new_id_replaces_old_entry() -> None:
    table = RoutingTable(OWN)
    table.insert(node(5, port=7000), 0.0)
    table.insert(node(9, port=7000), 1.0)
    assert table.get(node(5).node_id) is None
    assert table.by_address(("127.0.0.2", 7000)) is not None
    assert len(table) == 1


def test_id_clash_with_live_node_ignored() -> None:
    table = RoutingTable(OWN)
    table.insert(node(5, port=7000), 0.0)
    assert table.insert(node(5, port=7001), 1.0)[0] is InsertOutcome.IGNORED
    assert table.by_address(("127.0.0.2", 7000)) is not None


def test_closest_sorted_by_xor() -> None:
    rng = random.Random(3)
    table = RoutingTable(rng.randbytes(20))
    for i in range(200):
        table.insert(CompactNode(rng.randbytes(20), "127.0.0.2", 1 + i), 0.0)
    target = rng.randbytes(20)
    got = table.closest(target, 8)
    assert len(got) == 8
    dists = [distance(n.node_id, target) for n in got]
    assert dists == sorted(dists)
    assert dists[-1] <= min(
        distance(e.node.node_id, target) for e in table.entries() if e.node not in got
    )


def test_stale_buckets_and_random_id_in_range() -> None:
    table = RoutingTable(OWN)
    for i in range(20):
        table.insert(node((1 << 159) + i), 0.0)
    assert table.stale_buckets(100.0) == []
    stale = table.stale_buckets(16 * 60.0)
    assert stale
    rng = random.Random(0)
    for b in stale:
        assert b.covers(int.from_bytes(b.random_id(rng), "big"))
