"""Token bucket accuracy with a fake clock; RateLimiter chaining, fairness, cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.ratelimit import (
    KeyedBuckets,
    MinProgress,
    RateLimiter,
    RateMeter,
    TokenBucket,
    address_key,
)


class FakeClock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += delay
        await asyncio.sleep(0)


def test_bucket_burst_then_rate() -> None:
    b = TokenBucket(1000.0, burst=500.0, now=0.0)
    assert b.consume(500, 0.0) == 0.0
    assert b.consume(1000, 0.0) == pytest.approx(1.0)  # in debt by 1000 bytes
    assert b.delay(1, 1.0) == pytest.approx(0.001)
    assert b.tokens(2.0) == pytest.approx(500.0)  # refilled, capped at burst


def test_bucket_long_run_accuracy() -> None:
    rate = 100_000.0
    b = TokenBucket(rate, burst=16_384, now=0.0)
    now, sent = 0.0, 0
    while now < 100.0:
        now += b.consume(16_397, now)  # one piece message at a time, sent when allowed
        sent += 16_397
    assert sent / now == pytest.approx(rate, rel=0.01)


def test_unlimited_and_rate_change() -> None:
    b = TokenBucket(None, burst=None, now=0.0)
    assert b.unlimited
    assert b.consume(10**9, 0.0) == 0.0
    b.set_rate(0, None, 0.0)
    assert b.unlimited
    b.set_rate(10.0, 10.0, 0.0)
    assert b.consume(20, 0.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        b.set_rate(-1, None, 0.0)


def test_bucket_debt_accumulates_and_idle_refills_at_most_the_burst() -> None:
    b = TokenBucket(rate=100.0, burst=200.0, now=0.0)
    assert b.reserve(200, now=0.0) == 0.0  # the burst is free
    assert b.reserve(50, now=0.0) == pytest.approx(0.5)  # 50 bytes of debt at 100 B/s
    assert b.reserve(50, now=0.0) == pytest.approx(1.0)  # debt accumulates fairly
    # After 2 s the debt is paid and 100 bytes are back: 100 more are free.
    assert b.reserve(100, now=2.0) == 0.0
    # Idle time refills at most the burst.
    assert b.reserve(200, now=1000.0) == 0.0
    assert b.reserve(1, now=1000.0) > 0


@given(st.lists(st.tuples(st.integers(1, 10_000), st.floats(0, 5)), max_size=50))
def test_token_bucket_never_exceeds_rate(steps: list[tuple[int, float]]) -> None:
    # Property: bytes allowed by time t never exceed burst + rate * t.
    rate, burst = 1000.0, 2000.0
    b = TokenBucket(rate, burst, now=0.0)
    now = 0.0
    sent = 0
    for n, dt in steps:
        now += dt
        wait = b.reserve(n, now)
        sent += n
        assert sent <= burst + rate * (now + wait) + 1e-6


def test_two_consumers_share_fairly() -> None:
    b = TokenBucket(1000.0, burst=100.0, now=0.0)
    # Each consumer sends again as soon as its previous send was allowed; reservation order
    # alternates, so each gets half.
    ready = {"a": 0.0, "b": 0.0}
    sent = {"a": 0, "b": 0}
    while min(ready.values()) < 60.0:
        who = min(ready, key=lambda k: (ready[k], k))
        ready[who] = ready[who] + b.consume(100, ready[who])
        sent[who] += 100
    assert sent["a"] / sent["b"] == pytest.approx(1.0, rel=0.02)
    total_time = max(ready.values())
    assert (sent["a"] + sent["b"]) / total_time == pytest.approx(1000.0, rel=0.02)


async def test_limiter_chain_waits_on_peer_and_global_fake_clock() -> None:
    clock = FakeClock()
    glob = RateLimiter(10_000.0, burst=1000.0, clock=clock, sleep=clock.sleep)
    slow = RateLimiter(1_000.0, burst=1000.0, parent=glob, clock=clock, sleep=clock.sleep)
    fast = RateLimiter(None, parent=glob, clock=clock, sleep=clock.sleep)

    for _ in range(50):
        await slow.acquire(1000)
    # the slow peer is held to its own 1000 B/s
    assert 50_000 / clock.now == pytest.approx(1000.0, rel=0.03)

    start = clock.now
    for _ in range(50):
        await fast.acquire(1000)
    # the unlimited peer is held to the global 10 kB/s
    assert 50_000 / (clock.now - start) == pytest.approx(10_000.0, rel=0.03)


async def test_limiter_real_clock_short() -> None:
    # 40 kB/s, burst 4 kB: 20 kB in chunks of 2 kB must take at least (20-4)/40 = 0.4 s.
    glob = RateLimiter(40_000.0, burst=4_000.0)
    a = RateLimiter(None, parent=glob)
    b = RateLimiter(None, parent=glob)
    counts = {"a": 0, "b": 0}

    async def worker(name: str, lim: RateLimiter) -> None:
        for _ in range(5):
            await lim.acquire(2_000)
            counts[name] += 1

    t0 = time.monotonic()
    async with asyncio.timeout(5):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(worker("a", a))
            tg.create_task(worker("b", b))
    elapsed = time.monotonic() - t0
    assert counts == {"a": 5, "b": 5}
    assert elapsed >= 0.38  # a lower bound only: never a timed assertion on speed


async def test_cancel_refunds_reservation() -> None:
    clock = FakeClock()
    never = asyncio.Event()

    async def blocked_sleep(delay: float) -> None:
        await never.wait()

    lim = RateLimiter(100.0, burst=100.0, clock=clock, sleep=blocked_sleep)
    await lim.acquire(100)  # drains the burst
    task = asyncio.create_task(lim.acquire(1000))
    await asyncio.sleep(0)
    assert lim.bucket.tokens(clock.now) == pytest.approx(-1000.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lim.bucket.tokens(clock.now) == pytest.approx(0.0)


@given(
    rate=st.floats(100.0, 1e6),
    burst=st.floats(0.0, 1e5),
    sends=st.lists(st.tuples(st.integers(1, 50_000), st.floats(0.0, 2.0)), min_size=1, max_size=60),
)
def test_bucket_never_exceeds_rate_plus_burst(
    rate: float, burst: float, sends: list[tuple[int, float]]
) -> None:
    # Each sender arrives `gap` seconds after the previous one and sends after its delay;
    # by any send time t, the bytes sent must fit in burst + rate * t.
    b = TokenBucket(rate, burst=burst, now=0.0)
    now, total, sent_at = 0.0, 0, []
    for n, gap in sends:
        now += gap
        when = now + b.consume(n, now)
        total += n
        sent_at.append((when, total))
    for when, cumulative in sent_at:
        assert cumulative <= burst + rate * when + 1e-6 * cumulative + 1


def test_rate_meter_steady_and_decay() -> None:
    m = RateMeter(window=5.0, resolution=0.5)
    assert m.rate(0.0) == 0.0
    for k in range(200):  # 1000 B every 0.1 s = 10 kB/s for 20 s
        m.record(1000, k * 0.1)
    assert m.rate(20.0) == pytest.approx(10_000.0, rel=0.1)
    assert m.total == 200_000
    assert m.rate(30.0) == 0.0  # nothing for longer than the window
    assert len(m._slots) <= 11


def test_rate_meter_young_peer_not_underrated() -> None:
    m = RateMeter(window=10.0)
    m.record(5000, 100.0)
    m.record(5000, 100.5)
    assert m.rate(101.0) == pytest.approx(10_000.0)


def test_min_progress_windows() -> None:
    g = MinProgress(100, 10.0, now=0.0)
    assert g.time_left(4.0) == pytest.approx(6.0)
    assert g.record(60, 5.0)
    assert g.record(40, 9.0)
    assert g.check(10.0)  # exactly 100 in the first window
    assert g.time_left(10.0) == pytest.approx(10.0)
    assert g.record(99, 19.0)
    assert not g.check(20.0)  # 99 < 100 in the second


def test_min_progress_a_burst_does_not_cover_later_silence() -> None:
    g = MinProgress(100, 10.0, now=0.0)
    assert g.record(10_000, 1.0)
    assert g.check(15.0)
    assert not g.check(20.0)


def test_min_progress_zero_disables() -> None:
    g = MinProgress(0, 1.0, now=0.0)
    assert g.time_left(0.0) == float("inf")
    assert g.check(1e9)


def test_keyed_buckets_budget_each_key_and_stay_bounded() -> None:
    budgets = KeyedBuckets(rate=2.0, burst=3, max_keys=4)
    assert [budgets.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert budgets.retry_after("a", 0.0) == pytest.approx(0.5)
    assert budgets.allow("b", 0.0)  # another key has its own budget
    assert budgets.allow("a", 0.5)
    assert not budgets.allow("a", 0.5)
    for i in range(100):
        budgets.allow(f"k{i}", 1.0)
    assert len(budgets) == 4
    assert budgets.retry_after("never seen", 1.0) == 0.0
    with pytest.raises(ValueError, match="rate"):
        KeyedBuckets(rate=0.0, burst=1, max_keys=1)


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:1:2", "2001:db8::/64"),
        ("not an address", "not an address"),
    ],
)
def test_address_key_is_the_ipv4_address_or_the_ipv6_slash_64(ip: str, key: str) -> None:
    assert address_key(ip) == key
