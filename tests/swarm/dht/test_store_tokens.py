"""Peer store caps and expiry, announce tokens and their rotation, per-IP rate limits."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from hubswarm.swarm.dht.peerstore import PeerStore
from hubswarm.swarm.dht.tokens import PerIPLimiter, TokenSecrets

H1, H2 = b"\x01" * 20, b"\x02" * 20


def test_peers_expire_after_ttl_and_refresh_extends() -> None:
    store = PeerStore(ttl=100.0)
    store.add(H1, ("10.0.0.1", 1), now=0.0)
    store.add(H1, ("10.0.0.2", 2), now=50.0)
    assert set(store.get(H1, 60.0, 10)) == {("10.0.0.1", 1), ("10.0.0.2", 2)}
    store.add(H1, ("10.0.0.1", 1), now=90.0)  # re-announce
    assert set(store.get(H1, 120.0, 10)) == {("10.0.0.1", 1), ("10.0.0.2", 2)}
    assert store.get(H1, 151.0, 10) == [("10.0.0.1", 1)]
    assert store.get(H1, 191.0, 10) == []
    assert store.info_hashes == 0


@given(
    st.lists(st.tuples(st.sampled_from([H1, H2, b"\x03" * 20]), st.integers(1, 500)), max_size=400)
)
def test_caps_hold_for_any_announce_flood(announces: list[tuple[bytes, int]]) -> None:
    store = PeerStore(max_per_hash=20, max_total=45)
    for i, (h, port) in enumerate(announces):
        store.add(h, ("10.0.0.1", port), now=float(i))
        assert len(store) <= 45
        assert len(store.get(h, float(i), 1000)) <= 20
    assert len(store) == sum(len(store.get(h, 1e9 - 1e9, 1000)) for h in (H1, H2, b"\x03" * 20))


def test_get_limits_reply_size() -> None:
    store = PeerStore()
    for port in range(1, 200):
        store.add(H1, ("10.0.0.1", port), 0.0)
    assert len(store.get(H1, 0.0, 50, random.Random(1))) == 50


def test_token_valid_for_same_ip_across_one_rotation_only() -> None:
    secrets = TokenSecrets(random.Random(1), rotate_after=300.0)
    secrets.tick(0.0)
    token = secrets.token_for("10.0.0.1")
    assert secrets.is_valid(token, "10.0.0.1")
    assert not secrets.is_valid(token, "10.0.0.2")
    assert not secrets.tick(299.0)
    assert secrets.tick(300.0)
    assert secrets.is_valid(token, "10.0.0.1")  # up to 10 minutes old (BEP 5)
    assert secrets.tick(600.0)
    assert not secrets.is_valid(token, "10.0.0.1")
    assert not secrets.is_valid(b"", "10.0.0.1")


def test_rate_limiter_burst_then_rate_and_bounded_memory() -> None:
    limiter = PerIPLimiter(rate=10.0, burst=5.0, max_ips=3)
    assert [limiter.allow("10.0.0.1", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert limiter.allow("10.0.0.2", 0.0)  # other IPs unaffected
    assert limiter.allow("10.0.0.1", 0.1)  # 0.1 s at 10/s refills one
    assert not limiter.allow("10.0.0.1", 0.1)
    for i in range(10):
        limiter.allow(f"10.0.1.{i}", 1.0)
    assert len(limiter) == 3


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 300)), max_size=400))
def test_no_address_holds_more_than_its_share_of_the_store(
    announces: list[tuple[int, int]],
) -> None:
    store = PeerStore(max_per_hash=1000, max_total=1000, max_per_ip=25)
    rng = random.Random(0)
    for i, (address, port) in enumerate(announces):
        store.add(rng.randbytes(20), (f"10.0.0.{address}", port), now=float(i))
        assert all(store.from_ip(f"10.0.0.{a}") <= 25 for a in range(4))
        assert len(store) <= 4 * 25
