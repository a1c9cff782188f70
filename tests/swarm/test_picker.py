"""PiecePicker: random first, rarest first, strict in-piece order, endgame, returns to pool."""

from __future__ import annotations

import random

import pytest

from hubswarm.errors import LocalProtocolError
from hubswarm.limits import MAX_OUTSTANDING_REQUESTS_OUT
from hubswarm.swarm.bitfield import Bitfield
from hubswarm.swarm.picker import BlockRequest, PiecePicker, request_queue_depth

B = 16 * 1024


def make(num: int, piece: int = 4 * B, last: int | None = None, seed: int = 1, **kw) -> PiecePicker:
    def size(i: int) -> int:
        return last if (last is not None and i == num - 1) else piece

    return PiecePicker(num, size, rng=random.Random(seed), **kw)


def complete(picker: PiecePicker, peer: object, reqs: list[BlockRequest]) -> set[int]:
    done = set()
    for r in reqs:
        if picker.block_received(peer, r).piece_done:
            done.add(r.piece_index)
    for i in done:
        picker.piece_complete(i, True)
    return done


def test_block_request_is_a_checked_tuple() -> None:
    r = BlockRequest(2, B, 5)
    assert r == (2, B, 5)
    assert hash(r) == hash((2, B, 5))  # a plain tuple finds it in a set
    assert (r.piece_index, r.begin, r.length) == (2, B, 5)
    for bad in ((-1, 0, 1), (0, -1, 1), (0, 0, 0)):
        with pytest.raises(ValueError):
            BlockRequest(*bad)


def test_block_grid_and_short_last_piece() -> None:
    p = make(2, piece=3 * B, last=B + 5)
    assert p.block_count(0) == 3
    assert p.block_count(1) == 2
    assert p.block(1, 1) == BlockRequest(1, B, 5)
    got = p.next_requests("a", Bitfield.all(2), 10, now=0.0)
    assert len(got) == 5
    assert {r.length for r in got if r.piece_index == 1} == {B, 5}


def test_in_piece_blocks_strictly_ascending_and_shared_between_peers() -> None:
    p = make(1, piece=8 * B)
    a = p.next_requests("a", Bitfield.all(1), 3, 0.0)
    b = p.next_requests("b", Bitfield.all(1), 3, 0.0)
    c = p.next_requests("c", Bitfield.all(1), 5, 0.0)
    assert [r.begin // B for r in a] == [0, 1, 2]
    assert [r.begin // B for r in b] == [3, 4, 5]
    # c takes the rest, then (endgame: all requested) duplicates the least-requested ones
    assert [r.begin // B for r in c] == [6, 7, 0, 1, 2]
    assert len({*a, *b}) == 6  # no duplicates before endgame


def test_partial_pieces_preferred() -> None:
    p = make(10, piece=4 * B, random_first=0)
    first = p.next_requests("a", Bitfield.all(10), 2, 0.0)
    assert len({r.piece_index for r in first}) == 1
    piece = first[0].piece_index
    nxt = p.next_requests("b", Bitfield.all(10), 2, 0.0)
    assert {r.piece_index for r in nxt} == {piece}  # finishes the started piece first
    assert [r.begin for r in nxt] == [2 * B, 3 * B]


def test_rarest_first_after_random_first() -> None:
    n = 12
    p = make(n, piece=B, have=Bitfield.from_indices(n, range(4)))  # 4 done: rarest-first on
    # availability: piece i is held by (i % 4) + 1 peers; 4 and 8 are rarest (1 copy).
    for k in range(4):
        p.peer_bitfield(Bitfield.from_indices(n, [i for i in range(4, n) if i % 4 >= k]))
    assert [p.availability[i] for i in range(4, 8)] == [1, 2, 3, 4]
    got = p.next_requests("x", Bitfield.all(n), 8, 0.0)
    order = [r.piece_index for r in got]
    avail = [p.availability[i] for i in order]
    assert avail == sorted(avail)
    assert set(order[:2]) == {4, 8}
    assert set(order[2:4]) == {5, 9}


def test_rarest_tie_break_is_random_but_seeded() -> None:
    orders = []
    for seed in range(6):
        p = make(30, piece=B, seed=seed, random_first=0)
        orders.append(tuple(r.piece_index for r in p.next_requests("x", Bitfield.all(30), 30, 0.0)))
    assert len(set(orders)) > 1  # random tie-break
    again = make(30, piece=B, seed=0, random_first=0)
    assert (
        tuple(r.piece_index for r in again.next_requests("x", Bitfield.all(30), 30, 0.0))
        == orders[0]
    )


def test_random_first_ignores_rarity() -> None:
    # With nothing complete, the first pieces are random: the rarest piece is not always first.
    firsts = set()
    for seed in range(20):
        p = make(20, piece=B, seed=seed)
        p.peer_bitfield(Bitfield.all(20))
        p.peer_bitfield(Bitfield.from_indices(20, range(1, 20)))  # piece 0 is rarest
        firsts.add(p.next_requests("x", Bitfield.all(20), 1, 0.0)[0].piece_index)
    assert len(firsts) > 3


def test_only_pieces_the_peer_has() -> None:
    p = make(8, piece=B)
    got = p.next_requests("x", Bitfield.from_indices(8, [3, 5]), 10, 0.0)
    assert {r.piece_index for r in got} == {3, 5}
    assert p.is_interesting(Bitfield.from_indices(8, [3]))
    p.piece_complete(3, True)
    assert not p.is_interesting(Bitfield.from_indices(8, [3]))


def test_endgame_duplicates_and_cancels() -> None:
    p = make(2, piece=2 * B)
    a = p.next_requests("a", Bitfield.all(2), 10, 0.0)
    assert len(a) == 4
    assert p.in_endgame
    b = p.next_requests("b", Bitfield.all(2), 10, 1.0)
    assert sorted((r.piece_index, r.begin) for r in b) == sorted(
        (r.piece_index, r.begin) for r in a
    )
    res = p.block_received("b", b[0])
    assert res.stored
    assert res.cancels == (("a", b[0]),)
    assert b[0] not in p.outstanding("a")
    # the late copy from a is not stored
    late = p.block_received("a", b[0])
    assert not late.stored
    assert late.cancels == ()
    # c gets duplicates of the least-duplicated blocks only... all have 2 requesters now
    c = p.next_requests("c", Bitfield.all(2), 1, 2.0)
    assert len(c) == 1
    assert c[0] != b[0]


def test_peer_lost_returns_blocks_to_pool() -> None:
    p = make(4, piece=2 * B)
    p.peer_bitfield(Bitfield.all(4))
    assert p.availability == [1, 1, 1, 1]
    a = p.next_requests("a", Bitfield.all(4), 3, 0.0)
    released = p.peer_left("a", Bitfield.all(4))
    assert set(released) == set(a)
    assert p.availability == [0, 0, 0, 0]
    assert p.outstanding("a") == []
    b = p.next_requests("b", Bitfield.all(4), 8, 0.0)
    assert set(a) <= set(b)  # the released blocks are requested again


def test_choke_keeps_allowed_fast() -> None:
    p = make(4, piece=B, random_first=0)
    got = p.next_requests("a", Bitfield.all(4), 4, 0.0)
    fast = got[0].piece_index
    released = p.peer_choked("a", allowed_fast={fast})
    assert {r.piece_index for r in released} == {r.piece_index for r in got} - {fast}
    assert [r.piece_index for r in p.outstanding("a")] == [fast]


def test_timeout_and_reject_return_block() -> None:
    p = make(1, piece=2 * B)
    a = p.next_requests("a", Bitfield.all(1), 2, 0.0)
    assert p.expired_requests(now=59.0, timeout=60.0) == []
    expired = p.expired_requests(now=60.0, timeout=60.0)
    assert [r for _, r in expired] == a
    assert {peer for peer, _ in expired} == {"a"}
    p.request_timed_out("a", a[0])
    p.request_rejected("a", a[1])
    b = p.next_requests("b", Bitfield.all(1), 2, 61.0)
    assert b == a


def test_bad_piece_returns_blocks_and_names_contributors() -> None:
    p = make(1, piece=3 * B)
    a = p.next_requests("a", Bitfield.all(1), 2, 0.0)
    b = p.next_requests("b", Bitfield.all(1), 1, 0.0)
    assert [r.begin for r in a + b] == [0, B, 2 * B]
    outs = [p.block_received("a", r) for r in a] + [p.block_received("b", r) for r in b]
    assert [o.piece_done for o in outs] == [False, False, True]
    assert p.is_fully_received(0)
    assert p.next_requests("c", Bitfield.all(1), 3, 0.0) == []  # awaiting the hash check
    assert p.piece_complete(0, False) == ["a", "b"]
    assert not p.have[0]
    again = p.next_requests("c", Bitfield.all(1), 5, 0.0)
    assert [r.begin for r in again] == [0, B, 2 * B]


def test_good_piece_joins_have_and_download_finishes() -> None:
    n = 20
    p = make(n, piece=2 * B, seed=7)
    peers = {
        f"p{k}": Bitfield.from_indices(n, random.Random(k).sample(range(n), 12)) for k in range(4)
    }
    peers["seed"] = Bitfield.all(n)
    for bf in peers.values():
        p.peer_bitfield(bf)
    for _ in range(200):
        if p.is_complete:
            break
        for name, bf in peers.items():
            complete(p, name, p.next_requests(name, bf, 3, 0.0))
    assert p.is_complete
    assert p.have.is_complete


def test_max_in_progress_bounds_open_pieces() -> None:
    p = make(10, piece=2 * B, max_in_progress=2)
    got = p.next_requests("a", Bitfield.all(10), 50, 0.0)
    assert len({r.piece_index for r in got}) == 2


def test_wanted_filter() -> None:
    p = make(6, piece=B)
    p.set_wanted([1, 2])
    got = p.next_requests("a", Bitfield.all(6), 10, 0.0)
    assert {r.piece_index for r in got} == {1, 2}
    assert not p.is_interesting(Bitfield.from_indices(6, [0, 5]))


def test_off_grid_block_rejected() -> None:
    p = make(1, piece=2 * B)
    with pytest.raises(LocalProtocolError):
        p.block_received("a", BlockRequest(0, 1, B))
    with pytest.raises(LocalProtocolError):
        p.block_received("a", BlockRequest(0, 2 * B, B))
    # well-formed but never requested: not stored
    assert not p.block_received("a", BlockRequest(0, 0, B)).stored


def test_request_queue_depth() -> None:
    assert request_queue_depth(0) == 4
    assert request_queue_depth(B) == 4  # 1 block/s x 3 s = 3, clamped up to 4
    assert request_queue_depth(10 * B) == 30  # 10 blocks/s x 3 s
    assert request_queue_depth(100 * B, target_latency_s=1.0) == 100
    assert request_queue_depth(1e12) == MAX_OUTSTANDING_REQUESTS_OUT
    # The lab's shallow queues: a floor below 4, never below 1.
    assert request_queue_depth(B, 0.1, minimum=2) == 2
    assert request_queue_depth(40 * B, 0.1, minimum=2) == 4
    assert request_queue_depth(0, minimum=0) == 1
    assert request_queue_depth(0, minimum=64) == 64


def check_invariants(p: PiecePicker) -> None:
    """Incremental state == state recomputed from scratch."""
    fresh = {i for i in range(p.num_pieces) if not p.have[i] and i not in p._pieces}
    assert {i for i in range(p.num_pieces) if p._fresh & p._bit(i)} == fresh
    assert set(p._slot) == fresh
    for a, level in enumerate(p._levels):
        for k, i in enumerate(level):
            assert p.availability[i] == a
            assert p._slot[i] == k
    for i, piece in p._pieces.items():
        unreq = sum(1 for b in piece.blocks if not b.received and not b.requested_by)
        assert piece.unrequested == unreq
        assert (i in p._open) == (unreq > 0)
        assert piece.received == sum(b.received for b in piece.blocks)
        for k, b in enumerate(piece.blocks):
            for peer in b.requested_by:
                assert p.block(i, k) in p._peer_requests[peer]
    for peer, reqs in p._peer_requests.items():
        for r in reqs:
            assert peer in p._pieces[r.piece_index].blocks[r.begin // B].requested_by


def test_random_operations_keep_invariants_and_finish() -> None:
    rng = random.Random(42)
    n = 40
    p = make(n, piece=3 * B, last=B + 1, seed=3, max_in_progress=8)
    bitfields: dict[str, Bitfield] = {}
    inflight: dict[str, list[BlockRequest]] = {}
    for step in range(4000):
        op = rng.random()
        if op < 0.05 and len(bitfields) < 6:
            name = f"p{step}"
            bf = (
                Bitfield.all(n)
                if rng.random() < 0.3
                else Bitfield.from_indices(n, rng.sample(range(n), rng.randrange(1, n)))
            )
            bitfields[name] = bf
            inflight[name] = []
            p.peer_bitfield(bf)
        elif op < 0.08 and bitfields:
            name = rng.choice(sorted(bitfields))
            released = p.peer_left(name, bitfields.pop(name))
            assert set(released) == set(inflight.pop(name))
        elif op < 0.1 and bitfields:
            name = rng.choice(sorted(bitfields))
            assert set(p.peer_choked(name)) == set(inflight[name])
            inflight[name] = []
        elif op < 0.5 and bitfields:
            name = rng.choice(sorted(bitfields))
            got = p.next_requests(name, bitfields[name], rng.randrange(1, 10), float(step))
            assert not set(got) & set(inflight[name])
            inflight[name].extend(got)
        elif bitfields:
            name = rng.choice(sorted(bitfields))
            if not inflight[name]:
                continue
            r = inflight[name].pop(0)
            if rng.random() < 0.1:
                p.request_timed_out(name, r)
                continue
            res = p.block_received(name, r)
            for other, req in res.cancels:
                inflight[other].remove(req)
            if res.piece_done:
                contributors = p.piece_complete(r.piece_index, rng.random() > 0.1)
                assert name in contributors
                for other in inflight:  # endgame leftovers for this piece were dropped
                    inflight[other] = [x for x in inflight[other] if x.piece_index != r.piece_index]
        check_invariants(p)
        if p.is_complete:
            break
    assert p.is_complete
