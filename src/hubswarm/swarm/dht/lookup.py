"""Iterative Kademlia lookup in rounds (BEP 5 / Kademlia paper section 2.3), pure.

Theory: keep the candidates sorted by XOR distance to the target. Each round queries up to
``alpha`` of the closest unqueried candidates in parallel; the shell waits for the round to end
(answers or timeouts) and feeds the results back. When a round brings nothing closer than the
best already known, the next round queries *all* unqueried nodes among the k closest (the
paper's final step). The lookup ends when the k closest live candidates have all been asked, or
after ``max_rounds`` rounds. Every answer moves the best known id at least one prefix bit closer
in expectation, so rounds grow as log2(N), plus ~k/alpha for the final step.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from hubswarm.limits import DHT_ALPHA, DHT_K, DHT_LOOKUP_MAX_ROUNDS
from hubswarm.proto.krpc import CompactNode, distance

__all__ = ["Lookup", "LookupResult"]

# Candidates one lookup remembers (the farthest are forgotten first): the k closest are all
# that matter, and a flood of made-up contacts in replies costs bounded memory.
MAX_CANDIDATES = 256
# Peers one get_peers lookup collects: more than any swarm connects to, a bound on a flood.
MAX_PEERS = 4096

Address = tuple[str, int]


class _State(enum.Enum):
    NEW = 0
    IN_FLIGHT = 1
    ANSWERED = 2
    FAILED = 3


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The outcome of a lookup: closest answering nodes, peers, tokens and the cost."""

    target: bytes
    closest: tuple[CompactNode, ...]
    peers: tuple[Address, ...]
    tokens: dict[CompactNode, bytes]
    rounds: int
    queries: int
    responses: int


@dataclass(slots=True)
class Lookup:
    """State of one iterative lookup towards ``target``."""

    target: bytes
    own_id: bytes | None = None
    k: int = DHT_K
    alpha: int = DHT_ALPHA
    max_rounds: int = DHT_LOOKUP_MAX_ROUNDS
    max_candidates: int = MAX_CANDIDATES
    rounds: int = 0
    queries: int = 0
    responses: int = 0
    _state: dict[CompactNode, _State] = field(default_factory=dict)
    _peers: dict[Address, None] = field(default_factory=dict)
    _tokens: dict[CompactNode, bytes] = field(default_factory=dict)
    _best_before_round: int | None = None
    _improved: bool = True

    def add_candidates(self, nodes: Iterable[CompactNode]) -> None:
        """Learn nodes (from the routing table or from an answer); ignores ourselves."""
        for node in nodes:
            if node.node_id == self.own_id or node in self._state:
                continue
            self._state[node] = _State.NEW
        if len(self._state) > self.max_candidates:
            # Bounded memory: forget the farthest candidates that were never asked.
            far = sorted(self._state, key=self._distance, reverse=True)
            for node in far[: len(self._state) - self.max_candidates]:
                if self._state[node] is _State.NEW:
                    del self._state[node]

    def _distance(self, node: CompactNode) -> int:
        return distance(node.node_id, self.target)

    def _live_closest(self) -> list[CompactNode]:
        live = [n for n, s in self._state.items() if s is not _State.FAILED]
        live.sort(key=self._distance)
        return live[: self.k]

    def _best(self) -> int | None:
        live = [self._distance(n) for n, s in self._state.items() if s is not _State.FAILED]
        return min(live) if live else None

    @property
    def done(self) -> bool:
        """True when nothing useful is left to ask (or the round budget is spent)."""
        if any(s is _State.IN_FLIGHT for s in self._state.values()):
            return False
        if self.rounds >= self.max_rounds:
            return True
        return not any(self._state[n] is _State.NEW for n in self._live_closest())

    def next_round(self) -> list[CompactNode]:
        """Start a round: the nodes to query now (empty when the lookup is done)."""
        if self.done:
            return []
        unasked = [n for n in self._live_closest() if self._state[n] is _State.NEW]
        batch = unasked[: self.alpha] if self._improved else unasked
        for node in batch:
            self._state[node] = _State.IN_FLIGHT
        self.rounds += 1
        self.queries += len(batch)
        self._best_before_round = self._best()
        return batch

    def on_response(
        self,
        node: CompactNode,
        nodes: Iterable[CompactNode] = (),
        peers: Iterable[Address] = (),
        token: bytes | None = None,
    ) -> None:
        """``node`` answered with closer ``nodes``, maybe ``peers`` and a ``token``."""
        self._state[node] = _State.ANSWERED
        self.responses += 1
        if token is not None:
            self._tokens[node] = token
        for peer in peers:
            if len(self._peers) < MAX_PEERS:
                self._peers[peer] = None
        self.add_candidates(nodes)

    def on_failure(self, node: CompactNode) -> None:
        """``node`` timed out or answered with an error."""
        self._state[node] = _State.FAILED

    def end_round(self) -> None:
        """Close the round: remember whether it brought anything closer (Kademlia's rule)."""
        best = self._best()
        before = self._best_before_round
        self._improved = best is not None and (before is None or best < before)

    def result(self) -> LookupResult:
        """The k closest nodes that answered, every peer seen, and their tokens."""
        answered = [n for n, s in self._state.items() if s is _State.ANSWERED]
        answered.sort(key=self._distance)
        closest = tuple(answered[: self.k])
        return LookupResult(
            target=self.target,
            closest=closest,
            peers=tuple(self._peers),
            tokens={n: self._tokens[n] for n in closest if n in self._tokens},
            rounds=self.rounds,
            queries=self.queries,
            responses=self.responses,
        )
