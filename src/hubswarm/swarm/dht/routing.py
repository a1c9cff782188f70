"""Kademlia routing table (BEP 5 "Routing Table"): pure state, ``now`` passed in.

Theory: the 160-bit id space starts as one bucket [0, 2^160). A bucket holds at most k good
nodes; when a full bucket covers our own id it splits in two, so the table is detailed near our
id and sparse far away (~k * log2(N) entries). A full bucket that does not cover our id keeps
its nodes: a bad one (several failed queries) is replaced; otherwise the newcomer goes to a
bounded replacement cache and the caller is told which questionable nodes to ping (BEP 5:
"pinged ... until one fails to respond"). Only nodes that answered one of our queries are
inserted, so a spoofed source address cannot write itself into the table.
"""

from __future__ import annotations

import bisect
import enum
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from hubswarm.limits import (
    DHT_BUCKET_REFRESH,
    DHT_GOOD_FOR,
    DHT_K,
    DHT_MAX_FAILURES,
    DHT_REPLACEMENTS_PER_BUCKET,
)
from hubswarm.proto.krpc import ID_LEN, CompactNode, distance

__all__ = ["Bucket", "InsertOutcome", "NodeEntry", "NodeStatus", "RoutingTable"]

ID_SPACE = 1 << (8 * ID_LEN)
Address = tuple[str, int]


class NodeStatus(enum.Enum):
    """BEP 5 node quality."""

    GOOD = "good"
    QUESTIONABLE = "questionable"
    BAD = "bad"


class InsertOutcome(enum.Enum):
    """What :meth:`RoutingTable.insert` did."""

    ADDED = "added"
    UPDATED = "updated"
    REPLACED = "replaced"  # took the slot of a bad node
    CACHED = "cached"  # bucket full of good/questionable nodes: kept as a replacement
    IGNORED = "ignored"  # our own id, or an id clash with a live node


@dataclass(slots=True)
class NodeEntry:
    """A node in the table with the times BEP 5 needs to judge it."""

    node: CompactNode
    last_seen: float
    last_response: float | None = None
    failures: int = 0

    def status(self, now: float, good_for: float = DHT_GOOD_FOR) -> NodeStatus:
        """GOOD if it answered recently, BAD after repeated failures, else QUESTIONABLE."""
        if self.failures >= DHT_MAX_FAILURES:
            return NodeStatus.BAD
        if self.last_response is not None and now - self.last_seen < good_for:
            return NodeStatus.GOOD
        return NodeStatus.QUESTIONABLE


@dataclass(slots=True)
class Bucket:
    """Nodes whose ids lie in [lo, hi); ordered least recently seen first."""

    lo: int
    hi: int
    last_changed: float
    nodes: list[NodeEntry] = field(default_factory=list)
    replacements: list[NodeEntry] = field(default_factory=list)

    def covers(self, value: int) -> bool:
        """True if the id (as an integer) falls in this bucket's range."""
        return self.lo <= value < self.hi

    def random_id(self, rng: random.Random) -> bytes:
        """A random id in this bucket's range (BEP 5 bucket refresh target)."""
        return rng.randrange(self.lo, self.hi).to_bytes(ID_LEN, "big")


@dataclass(slots=True)
class RoutingTable:
    """Buckets of at most ``k`` nodes around ``own_id``."""

    own_id: bytes
    now: float = 0.0
    k: int = DHT_K
    max_replacements: int = DHT_REPLACEMENTS_PER_BUCKET
    buckets: list[Bucket] = field(default_factory=list)
    _by_address: dict[Address, bytes] = field(default_factory=dict)
    _own: int = 0

    def __post_init__(self) -> None:
        if len(self.own_id) != ID_LEN:
            raise ValueError(f"own_id must be {ID_LEN} bytes")
        if not self.buckets:
            self.buckets = [Bucket(0, ID_SPACE, self.now)]
        self._own = int.from_bytes(self.own_id, "big")

    # --- lookup helpers ------------------------------------------------------------------------

    def _bucket_index(self, node_id: bytes) -> int:
        value = int.from_bytes(node_id, "big")
        i = bisect.bisect_right([b.lo for b in self.buckets], value) - 1
        return i

    def bucket_for(self, node_id: bytes) -> Bucket:
        """The bucket whose range holds ``node_id``."""
        return self.buckets[self._bucket_index(node_id)]

    def __len__(self) -> int:
        return sum(len(b.nodes) for b in self.buckets)

    def entries(self) -> Iterator[NodeEntry]:
        """Every node entry, bucket by bucket."""
        for b in self.buckets:
            yield from b.nodes

    def get(self, node_id: bytes) -> NodeEntry | None:
        """The entry for ``node_id``, if present."""
        for e in self.bucket_for(node_id).nodes:
            if e.node.node_id == node_id:
                return e
        return None

    def by_address(self, address: Address) -> NodeEntry | None:
        """The entry of the node at ``address``, if present."""
        node_id = self._by_address.get(address)
        return None if node_id is None else self.get(node_id)

    def closest(
        self, target: bytes, n: int | None = None, now: float | None = None
    ) -> list[CompactNode]:
        """The ``n`` (default k) known non-bad nodes closest to ``target`` by XOR."""
        when = self.now if now is None else now
        alive = [e.node for e in self.entries() if e.status(when) is not NodeStatus.BAD]
        alive.sort(key=lambda node: distance(node.node_id, target))
        return alive[: self.k if n is None else n]

    def has_contacts(self, now: float) -> bool:
        """True if any known node is not bad: a lookup has somewhere to start."""
        return any(e.status(now) is not NodeStatus.BAD for e in self.entries())

    # --- updates -------------------------------------------------------------------------------

    def _remove(self, bucket: Bucket, entry: NodeEntry) -> None:
        bucket.nodes.remove(entry)
        self._by_address.pop(entry.node.address, None)

    def _add(self, bucket: Bucket, entry: NodeEntry, now: float) -> None:
        bucket.nodes.append(entry)
        bucket.last_changed = now
        self._by_address[entry.node.address] = entry.node.node_id

    def _split(self, index: int) -> None:
        old = self.buckets[index]
        mid = (old.lo + old.hi) // 2
        low = Bucket(old.lo, mid, old.last_changed)
        high = Bucket(mid, old.hi, old.last_changed)
        for e in old.nodes:
            (low if low.covers(int.from_bytes(e.node.node_id, "big")) else high).nodes.append(e)
        for e in old.replacements:
            target = low if low.covers(int.from_bytes(e.node.node_id, "big")) else high
            target.replacements.append(e)
        self.buckets[index : index + 1] = [low, high]

    def insert(self, node: CompactNode, now: float) -> tuple[InsertOutcome, list[CompactNode]]:
        """Record that ``node`` answered us at ``now``.

        Returns the outcome and, for a full bucket, the questionable nodes the caller should ping.
        """
        self.now = now
        if node.node_id == self.own_id:
            return InsertOutcome.IGNORED, []
        old_id = self._by_address.get(node.address)
        if old_id is not None and old_id != node.node_id:
            # The node at this address restarted with a new id: the old entry is dead.
            old = self.get(old_id)
            if old is not None:
                self._remove(self.bucket_for(old_id), old)
        for _ in range(8 * ID_LEN + 1):  # each split halves the range: bounded by 160
            index = self._bucket_index(node.node_id)
            bucket = self.buckets[index]
            for e in bucket.nodes:
                if e.node.node_id != node.node_id:
                    continue
                if e.node.address != node.address and e.status(now) is not NodeStatus.BAD:
                    return InsertOutcome.IGNORED, []  # id clash: keep the live node
                if e.node.address != node.address:
                    self._by_address.pop(e.node.address, None)
                    e.node = node
                    self._by_address[node.address] = node.node_id
                e.last_seen = e.last_response = now
                e.failures = 0
                bucket.nodes.remove(e)
                bucket.nodes.append(e)
                bucket.last_changed = now
                return InsertOutcome.UPDATED, []
            entry = NodeEntry(node, now, now)
            if len(bucket.nodes) < self.k:
                self._add(bucket, entry, now)
                return InsertOutcome.ADDED, []
            if bucket.covers(self._own) and bucket.hi - bucket.lo > 1:
                self._split(index)
                continue
            for e in bucket.nodes:
                if e.status(now) is NodeStatus.BAD:
                    self._remove(bucket, e)
                    self._add(bucket, entry, now)
                    return InsertOutcome.REPLACED, []
            bucket.replacements = [r for r in bucket.replacements if r.node != node]
            bucket.replacements.append(entry)
            del bucket.replacements[: -self.max_replacements]
            questionable = [
                e.node for e in bucket.nodes if e.status(now) is NodeStatus.QUESTIONABLE
            ]
            return InsertOutcome.CACHED, questionable
        raise AssertionError("bucket split did not converge")  # pragma: no cover

    def would_accept(self, node_id: bytes, now: float) -> bool:
        """True if a node with this id could enter the table (worth a verifying ping)."""
        if node_id == self.own_id:
            return False
        bucket = self.bucket_for(node_id)
        if len(bucket.nodes) < self.k or bucket.covers(self._own):
            return True
        return any(e.status(now) is not NodeStatus.GOOD for e in bucket.nodes)

    def heard_query(self, node: CompactNode, now: float) -> bool:
        """A known node queried us: refresh it (BEP 5: good if it once answered); else False."""
        entry = self.get(node.node_id)
        if entry is None or entry.node.address != node.address:
            return False
        entry.last_seen = now
        self.bucket_for(node.node_id).last_changed = now
        return True

    def mark_failed(self, node_id: bytes, now: float) -> None:
        """A query to ``node_id`` timed out; once bad, a cached replacement takes its slot."""
        bucket = self.bucket_for(node_id)
        for e in bucket.nodes:
            if e.node.node_id == node_id:
                e.failures += 1
                if e.status(now) is NodeStatus.BAD and bucket.replacements:
                    self._remove(bucket, e)
                    self._add(bucket, bucket.replacements.pop(), now)
                return

    def stale_buckets(self, now: float, refresh_after: float = DHT_BUCKET_REFRESH) -> list[Bucket]:
        """Buckets unchanged for ``refresh_after`` seconds (BEP 5: refresh every 15 minutes)."""
        return [b for b in self.buckets if now - b.last_changed >= refresh_after]
