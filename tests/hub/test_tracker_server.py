"""Tracker: TrackerState decisions (pure) and the aiohttp routes on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.clock import Clock
from hubswarm.errors import ConfigError, TrackerError
from hubswarm.hub.tracker import (
    TrackerConfig,
    TrackerState,
    add_tracker_routes,
    create_tracker_app,
    load_allowed,
    tracker_state_key,
)
from hubswarm.proto import bencode
from hubswarm.proto.tracker import AnnounceRequest, AnnounceResponse
from hubswarm.swarm.tracker_client import announce, scrape

IH = bytes(range(0x80, 0x94))  # bytes >= 0x80: request.query would mangle them
IH2 = b"\xff" * 20


def pid(n: int) -> bytes:
    return b"-HS0001-" + bytes([0xF0]) + n.to_bytes(11)


def req(n: int, port: int | None = None, *, info_hash: bytes = IH, **kw: Any) -> AnnounceRequest:
    return AnnounceRequest(info_hash=info_hash, peer_id=pid(n), port=port or 6000 + n, **kw)


class ManualClock(Clock):
    """A Clock that stands still until the test moves it (as trio's MockClock)."""

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__()
        self.t = start

    def now(self) -> float:
        return self.t


# --- pure state ---------------------------------------------------------------------------


def test_lifecycle_started_completed_stopped() -> None:
    state = TrackerState(interval=10, rng=random.Random(1))
    r = state.announce(req(1, left=100, event="started"), "127.0.0.1", 0.0)
    assert (r.complete, r.incomplete, r.peers) == (0, 1, ())
    r = state.announce(req(2, left=0, event="started"), "127.0.0.2", 1.0)
    assert (r.complete, r.incomplete, r.peers) == (1, 1, (("127.0.0.1", 6001),))
    r = state.announce(req(1, left=0, event="completed"), "127.0.0.1", 2.0)
    assert (r.complete, r.incomplete) == (2, 0)
    # A repeated `completed` is counted once.
    state.announce(req(1, left=0, event="completed"), "127.0.0.1", 3.0)
    assert state.scrape([IH], 3.0).files[IH].downloaded == 1
    r = state.announce(req(1, left=0, event="stopped"), "127.0.0.1", 4.0)
    assert r.peers == ()
    assert [p.peer_id for p in state.peers(IH)] == [pid(2)]
    sf = state.scrape([IH, IH2], 4.0).files
    assert list(sf) == [IH]
    assert (sf[IH].complete, sf[IH].downloaded, sf[IH].incomplete) == (1, 1, 0)


def test_numwant_and_requester_excluded() -> None:
    state = TrackerState(interval=10, rng=random.Random(2))
    for n in range(30):
        state.announce(req(n, left=1), "127.0.0.1", 0.0)
    r = state.announce(req(0, left=1, numwant=5), "127.0.0.1", 1.0)
    assert len(r.peers) == 5
    assert ("127.0.0.1", 6000) not in r.peers
    r = state.announce(req(0, left=1, numwant=200), "127.0.0.1", 1.0)
    assert len(r.peers) == 29
    assert len(set(r.peers)) == 29
    r = state.announce(req(0, left=1, numwant=0), "127.0.0.1", 1.0)
    assert r.peers == ()


def test_seeded_rng_is_deterministic() -> None:
    def run() -> tuple[tuple[str, int], ...]:
        state = TrackerState(interval=10, rng=random.Random(7))
        for n in range(20):
            state.announce(req(n), "127.0.0.1", 0.0)
        return state.announce(req(99, numwant=4), "127.0.0.1", 0.0).peers

    assert run() == run()


def test_expiry_after_two_intervals() -> None:
    state = TrackerState(interval=10, rng=random.Random(3))
    state.announce(req(1), "127.0.0.1", 0.0)
    state.announce(req(2), "127.0.0.1", 15.0)
    r = state.announce(req(3), "127.0.0.1", 20.0)  # peer 1 seen 20 s ago: still there
    assert len(r.peers) == 2
    r = state.announce(req(3), "127.0.0.1", 20.5)
    assert r.peers == (("127.0.0.1", 6002),)
    assert state.scrape([IH], 100.0).files == {}


def test_same_address_new_peer_id_replaces() -> None:
    state = TrackerState(interval=10, rng=random.Random(4))
    state.announce(req(1, port=7000), "127.0.0.1", 0.0)
    state.announce(req(2, port=7000), "127.0.0.1", 1.0)
    assert [p.peer_id for p in state.peers(IH)] == [pid(2)]


def test_caps_bound_memory() -> None:
    state = TrackerState(interval=10, rng=random.Random(5), max_swarms=2, max_peers_per_swarm=3)
    for n in range(10):
        state.announce(req(n), "127.0.0.1", 0.0)
    assert len(state.peers(IH)) == 3
    state.announce(req(1, info_hash=b"b" * 20), "127.0.0.1", 0.0)
    with pytest.raises(TrackerError, match="full"):
        state.announce(req(1, info_hash=b"c" * 20), "127.0.0.1", 0.0)
    # After expiry the sweep frees room.
    state.announce(req(1, info_hash=b"c" * 20), "127.0.0.1", 100.0)
    assert state.swarm_count == 1


def test_allow_list_and_ip_param() -> None:
    state = TrackerState(interval=10, allowed=[IH], rng=random.Random(6))
    with pytest.raises(TrackerError, match="unregistered"):
        state.announce(req(1, info_hash=IH2), "127.0.0.1", 0.0)
    state.announce(req(1, ip="10.9.9.9"), "127.0.0.1", 0.0)
    assert state.peers(IH)[0].ip == "127.0.0.1"  # `ip` ignored by default
    trusting = TrackerState(interval=10, trust_ip_param=True, rng=random.Random(6))
    trusting.announce(req(1, ip="10.9.9.9"), "::ffff:127.0.0.1", 0.0)
    trusting.announce(req(2), "::ffff:127.0.0.1", 0.0)
    assert sorted(p.ip for p in trusting.peers(IH)) == ["10.9.9.9", "127.0.0.1"]
    with pytest.raises(TrackerError):
        trusting.announce(req(3, ip="not-an-ip"), "127.0.0.1", 0.0)


def test_an_address_over_its_announce_budget_fails_and_is_not_stored() -> None:
    state = TrackerState(interval=10, rng=random.Random(8), announces_per_address=5)
    for n in range(5):
        state.announce(req(n), "10.0.0.1", 0.0)
    # The sixth announce in the same instant: a failure, and no record for it.
    with pytest.raises(TrackerError, match=r"too many announces from this address; retry in 2 s"):
        state.announce(req(5), "10.0.0.1", 0.0)
    assert len(state.peers(IH)) == 5
    assert state.rate_limited == 1
    # The budget is the address's, whatever `ip` or info-hash it names, and whoever it is.
    with pytest.raises(TrackerError, match="too many"):
        state.announce(req(5, info_hash=IH2), "10.0.0.1", 0.0)
    with pytest.raises(TrackerError, match="too many"):
        state.announce(req(0), "::ffff:10.0.0.1", 0.0)  # the same IPv4 address
    # Another address is served meanwhile.
    r = state.announce(req(9), "10.0.0.2", 0.0)
    assert len(r.peers) == 5
    # Five announces per 10 s interval: one more every 2 s.
    state.announce(req(5), "10.0.0.1", 2.0)
    with pytest.raises(TrackerError, match="too many"):
        state.announce(req(6), "10.0.0.1", 2.0)
    assert {p.peer_id for p in state.peers(IH, 2.0)} == {pid(n) for n in (0, 1, 2, 3, 4, 5, 9)}


def test_ipv6_budgets_are_per_slash_64_and_zero_lifts_the_limit() -> None:
    state = TrackerState(interval=10, rng=random.Random(8), announces_per_address=2)
    state.announce(req(1), "2001:db8::1", 0.0)
    state.announce(req(2), "2001:db8::2", 0.0)
    with pytest.raises(TrackerError, match="too many"):
        state.announce(req(3), "2001:db8::ffff:3", 0.0)  # the same /64
    state.announce(req(3), "2001:db8:0:1::1", 0.0)  # another /64
    unlimited = TrackerState(interval=10, rng=random.Random(8), announces_per_address=0)
    for n in range(1500):  # past any budget: 1,000 by default, 2 here
        unlimited.announce(req(n % 50), "10.0.0.1", 0.0)
    assert unlimited.budgets is None
    assert unlimited.rate_limited == 0


@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 5)), max_size=200))
def test_any_announce_sequence_keeps_each_address_within_its_budget(
    events: list[tuple[int, float]],
) -> None:
    budget, interval = 4, 10
    state = TrackerState(interval=interval, rng=random.Random(1), announces_per_address=budget)
    now, accepted = 0.0, {a: 0 for a in range(4)}
    for n, (address, step) in enumerate(events):
        now += step
        try:
            state.announce(req(n % 50), f"10.0.0.{address}", now)
        except TrackerError:
            continue
        accepted[address] += 1
    for count in accepted.values():
        assert count <= budget + now * budget / interval + 1e-9


def test_load_allowed(tmp_path: Path) -> None:
    f = tmp_path / "allowed"
    f.write_text(f"# comment\n{IH.hex()}\n\n{IH2.hex().upper()}  # two\n")
    assert load_allowed(f) == {IH, IH2}
    f.write_text("abc\n")
    with pytest.raises(ConfigError, match=":1:"):
        load_allowed(f)


# --- HTTP ---------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    state: TrackerState
    clock: ManualClock
    session: aiohttp.ClientSession


@contextlib.asynccontextmanager
async def serving(state: TrackerState) -> AsyncIterator[str]:
    """The tracker routes of ``state`` on 127.0.0.1 while the block runs; the announce URL."""
    app = web.Application()
    add_tracker_routes(app, state)
    assert app[tracker_state_key] is state
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/announce"
    finally:
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    clock = ManualClock()
    state = TrackerState(interval=5, rng=random.Random(0), clock=clock)
    async with serving(state) as url, aiohttp.ClientSession() as session:
        yield Server(url, state, clock, session)


async def test_high_bytes_round_trip_through_aiohttp(server: Server) -> None:
    r = await announce(server.session, server.url, req(1, event="started"), timeout=5)
    assert r.interval == 5
    [peer] = server.state.peers(IH)
    assert peer.peer_id == pid(1)  # bytes 0x80..0xFF survived the real server
    assert (peer.ip, peer.port) == ("127.0.0.1", 6001)


async def test_http_lifecycle_numwant_scrape_expiry(server: Server) -> None:
    s, url = server.session, server.url
    for n in range(1, 6):
        await announce(s, url, req(n, left=10, event="started"), timeout=5)
    r = await announce(s, url, req(6, left=0, event="started", numwant=3), timeout=5)
    assert len(r.peers) == 3
    assert (r.complete, r.incomplete) == (1, 5)
    await announce(s, url, req(1, left=0, event="completed"), timeout=5)
    await announce(s, url, req(2, left=10, event="stopped"), timeout=5)
    sc = await scrape(s, url, [IH, IH2], timeout=5)
    assert set(sc.files) == {IH}
    f = sc.files[IH]
    assert (f.complete, f.downloaded, f.incomplete) == (2, 1, 3)
    # Dict-form peers when compact=0.
    r = await announce(s, url, req(7, compact=False), timeout=5)
    assert len(r.peers) == 5
    server.clock.t += 11  # > 2 x interval: everyone but the announcer expires
    r = await announce(s, url, req(8), timeout=5)
    assert r.peers == ()
    assert (r.complete, r.incomplete) == (1, 0)  # left=0: a seed


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", b"missing info_hash"),
        ("info_hash=%FF&peer_id=x&port=1", b"info_hash must be 20 bytes"),
        ("info_hash=" + "%FF" * 20 + "&peer_id=" + "a" * 20 + "&port=99999", b"invalid port 99999"),
        ("info_hash=" + "%FF" * 20 + "&peer_id=" + "a" * 20 + "&port=1&left=x", b"invalid left"),
    ],
)
async def test_malformed_announce_gets_failure_reason(
    server: Server, query: str, reason: bytes
) -> None:
    async with server.session.get(f"{server.url}?{query}") as resp:
        assert resp.status == 200
        body = await resp.read()
    assert bencode.decode(body) == {b"failure reason": reason}


async def test_http_announces_over_the_budget_get_a_failure_reason(server: Server) -> None:
    budgeted = TrackerState(
        interval=5, rng=random.Random(0), clock=server.clock, announces_per_address=3
    )
    async with serving(budgeted) as url:
        for n in range(3):
            await announce(server.session, url, req(n), timeout=5)
        with pytest.raises(TrackerError, match="too many announces"):
            await announce(server.session, url, req(3), timeout=5)
        assert len(budgeted.peers(IH)) == 3
        server.clock.t += 2  # 5 s refill 3 announces: one more after 5/3 s
        await announce(server.session, url, req(3), timeout=5)
        assert len(budgeted.peers(IH)) == 4


async def test_malformed_scrape_gets_failure_reason(server: Server) -> None:
    url = server.url.replace("announce", "scrape")
    async with server.session.get(f"{url}?info_hash=abc") as resp:
        assert resp.status == 200
        assert b"failure reason" in bencode.decode(await resp.read())


async def test_create_tracker_app_with_allow_list() -> None:
    app = create_tracker_app(TrackerConfig(interval=7, allowed=frozenset([IH])))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/announce"
        async with aiohttp.ClientSession() as s:
            r = await announce(s, url, req(1), timeout=5)
            assert r.interval == 7
            with pytest.raises(TrackerError, match="unregistered torrent"):
                await announce(s, url, req(1, info_hash=IH2), timeout=5)
    finally:
        await runner.cleanup()


async def test_cli_runs_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hubswarm", "tracker", "--port", "0",
        "--interval", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HUBSWARM_ANNOUNCES_PER_ADDRESS": "2"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("hubswarm tracker: listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        async with aiohttp.ClientSession() as s:
            r = await announce(s, url, req(1), timeout=5)
            await announce(s, url, req(2), timeout=5)
            # The budget from the environment: two announces per interval from this address.
            with pytest.raises(TrackerError, match="too many announces"):
                await announce(s, url, req(3), timeout=5)
        assert isinstance(r, AnnounceResponse)
        assert r.interval == 5
        proc.terminate()
        async with asyncio.timeout(10):
            out, _ = await proc.communicate()
        assert proc.returncode == 0
        assert b"stopped" in out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
