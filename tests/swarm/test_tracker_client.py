"""Tracker client against canned aiohttp servers on 127.0.0.1:0, and BEP 12 tier order."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from hubswarm.errors import TrackerError
from hubswarm.hub.tracker import TrackerState, add_tracker_routes
from hubswarm.limits import TRACKER_MAX_RESPONSE
from hubswarm.proto.tracker import AnnounceRequest, AnnounceResponse, encode_failure, parse_query
from hubswarm.swarm.tracker_client import TrackerTiers, announce, build_url, scrape

REQ = AnnounceRequest(info_hash=b"\xff" * 20, peer_id=b"\x80" * 20, port=6881, left=1)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a one-route server on demand; return its base URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def test_build_url() -> None:
    assert build_url("http://t/announce", "a=1") == "http://t/announce?a=1"
    assert build_url("http://t/announce?pk=x", "a=1") == "http://t/announce?pk=x&a=1"
    assert build_url("http://t/announce?", "a=1") == "http://t/announce?a=1"
    assert build_url("http://t/announce#frag", "a=1") == "http://t/announce?a=1"


async def test_existing_query_and_raw_bytes_reach_server(serve, session) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.rel_url.raw_query_string)
        return web.Response(body=AnnounceResponse(interval=9).encode(compact=True))

    base = await serve(handler)
    r = await announce(session, f"{base}/announce?passkey=abc", REQ, timeout=5)
    assert r.interval == 9
    assert seen[0].startswith("passkey=abc&info_hash=%FF%FF")
    assert parse_query(seen[0].split("&", 1)[1]) == REQ


async def test_failure_reason_even_with_error_status(serve, session) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=400, body=encode_failure("go away"))

    base = await serve(handler)
    with pytest.raises(TrackerError, match="go away"):
        await announce(session, f"{base}/announce", REQ, timeout=5)


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (404, b"not found", "HTTP 404"),
        (200, b"<html>oops</html>", "not valid bencode"),
        (200, b"d8:intervali1e5:peers5:abcdee", "multiple of 6"),
        (200, b"x" * (TRACKER_MAX_RESPONSE + 1), "too large"),
    ],
    ids=["404", "html", "bad-compact", "oversize"],
)
async def test_bad_replies_become_tracker_error(serve, session, status, body, match) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body)

    base = await serve(handler)
    with pytest.raises(TrackerError, match=match):
        await announce(session, f"{base}/announce", REQ, timeout=5)


async def test_oversize_chunked_reply_is_cut_off(serve, session) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(40):  # 40 x 64 KiB > 1 MiB, without a Content-Length
            await resp.write(b"l" * 65536)
        return resp

    base = await serve(handler)
    with pytest.raises(TrackerError, match="too large"):
        await announce(session, f"{base}/announce", REQ, timeout=5)


async def test_timeout_becomes_tracker_error(serve, session) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        async with asyncio.timeout(5):
            await release.wait()
        return web.Response(body=b"")

    base = await serve(handler)
    try:
        with pytest.raises(TrackerError, match="did not answer"):
            await announce(session, f"{base}/announce", REQ, timeout=0.2)
    finally:
        release.set()


async def test_connection_refused_and_bad_scheme(session) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TrackerError, match="unreachable"):
        await announce(session, f"http://127.0.0.1:{port}/announce", REQ, timeout=5)
    with pytest.raises(TrackerError, match="scheme"):
        await announce(session, "udp://127.0.0.1:1/announce", REQ, timeout=5)
    with pytest.raises(TrackerError, match="does not support scrape"):
        await scrape(session, "http://127.0.0.1:1/a", [b"a" * 20], timeout=5)


async def test_every_byte_value_survives_our_server(serve, session) -> None:
    """All 256 byte values in info_hash/peer_id survive client -> aiohttp -> TrackerState."""
    state = TrackerState(interval=5, rng=random.Random(0))
    app = web.Application()
    add_tracker_routes(app, state)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/announce"
        every = bytes(range(256)) + bytes(range(4))
        hashes = [every[i : i + 20] for i in range(0, 260, 20)]
        for n, h in enumerate(hashes):
            await announce(
                session, url, AnnounceRequest(info_hash=h, peer_id=h[::-1], port=1000 + n),
                timeout=5,
            )  # fmt: skip
        for n, h in enumerate(hashes):
            [peer] = state.peers(h)
            assert (peer.peer_id, peer.port) == (h[::-1], 1000 + n)
        sc = await scrape(session, url, hashes[:5], timeout=5)
        assert set(sc.files) == set(hashes[:5])
    finally:
        await runner.cleanup()


def test_tiers_shuffle_within_tiers_and_promote() -> None:
    tiers = TrackerTiers([["a", "b", "c"], ["d", "e"], ["a"], []], random.Random(3))
    assert len(tiers) == 5  # duplicate "a" and the empty tier are dropped
    order = tiers.tiers
    assert [set(t) for t in order] == [{"a", "b", "c"}, {"d", "e"}]
    last = order[0][-1]
    tiers.mark_success(last)
    assert tiers.tiers[0][0] == last
    assert list(tiers)[:1] == [last]
    tiers.mark_success("e")
    assert tiers.tiers[1][0] == "e"
    tiers.mark_success("zzz")  # unknown: no change
    assert len(tiers) == 5


def test_tiers_shuffle_is_seeded() -> None:
    urls = [[f"u{i}" for i in range(10)]]
    assert TrackerTiers(urls, random.Random(1)).tiers == TrackerTiers(urls, random.Random(1)).tiers
    assert TrackerTiers(urls, random.Random(1)).tiers != TrackerTiers(urls, random.Random(2)).tiers
