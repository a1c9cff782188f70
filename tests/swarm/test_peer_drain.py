"""WireProtocol's write flow control: every task waiting in ``drain()`` is released."""

from __future__ import annotations

import asyncio

import pytest

from hubswarm.proto.wire import PeerConnection, Role
from hubswarm.swarm.peer import WireProtocol

pytestmark = pytest.mark.timeout(10)

INFO_HASH = bytes(20)


def _protocol() -> WireProtocol:
    conn = PeerConnection(Role.INITIATOR, info_hash=INFO_HASH, peer_id=b"a" * 20, num_pieces=4)
    return WireProtocol(conn)


async def _two_drains(release: str) -> list[str]:
    protocol = _protocol()
    protocol.pause_writing()
    # The upload loop and the request sender both wait while the transport is full: the
    # second waiter used to replace the first, which then waited forever (a uTP pair
    # stalled with blocks queued and nothing in flight).
    results: list[str] = []

    async def wait(name: str) -> None:
        try:
            await protocol.drain()
        except ConnectionResetError:
            results.append(f"{name}: reset")
            return
        results.append(f"{name}: drained")

    async with asyncio.timeout(2), asyncio.TaskGroup() as tg:
        tg.create_task(wait("upload"))
        tg.create_task(wait("requests"))
        for _ in range(3):
            await asyncio.sleep(0)
        if release == "resume":
            protocol.resume_writing()
        else:
            protocol.connection_lost(None)
    return sorted(results)


def test_resume_writing_releases_every_drain_waiter() -> None:
    assert asyncio.run(_two_drains("resume")) == ["requests: drained", "upload: drained"]


def test_a_lost_connection_releases_every_drain_waiter_with_an_error() -> None:
    assert asyncio.run(_two_drains("lost")) == ["requests: reset", "upload: reset"]


def test_drain_returns_at_once_when_writing_is_not_paused() -> None:
    async def drain() -> str:
        async with asyncio.timeout(1):
            await _protocol().drain()
        return "drained"

    assert asyncio.run(drain()) == "drained"
