"""The UDP tracker client (BEP 15) in virtual time on the in-memory network.

A scripted tracker endpoint records when each datagram arrives and answers as the test
says, so the retransmission schedule (15 * 2**n s) and the connection id's one-minute
lifetime are checked in virtual seconds, with no wall-clock sleep.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any, cast

import pytest

from hubswarm import vtime
from hubswarm.errors import TrackerError
from hubswarm.memnet import MemoryNetwork
from hubswarm.proto import tracker
from hubswarm.proto import udp_tracker as udp
from hubswarm.proto.tracker import ScrapeFile
from hubswarm.swarm.udp_tracker_client import (
    UdpTrackerClient,
    UdpTrackerConfig,
    datagram_network,
    is_udp_url,
    parse_udp_url,
)

TRACKER = ("10.0.0.1", 6969)
URL = "udp://10.0.0.1:6969/announce"
IH = bytes(range(20))
REQ = tracker.AnnounceRequest(info_hash=IH, peer_id=b"-HS0001-abcdefghijkl", port=6881, left=9)

Reply = Callable[[udp.Request, int], bytes | None]  # (request, arrival number) -> datagram


class FakeTracker(asyncio.DatagramProtocol):
    """Records (virtual time, request) for each datagram; answers with ``reply``."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.log: list[tuple[float, udp.Request]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The kernel's UDP transport is not an asyncio.DatagramTransport subclass in 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        request = udp.parse_request(data)
        self.log.append((asyncio.get_running_loop().time(), request))
        answer = self.reply(request, len(self.log))
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)

    def kinds(self) -> list[str]:
        return [type(r).__name__ for _, r in self.log]


def answering(connection_id: int = 0xC0FFEE) -> Reply:
    """A well-behaved tracker: one peer, interval 1800."""

    def reply(request: udp.Request, _: int) -> bytes:
        match request:
            case udp.ConnectRequest():
                return udp.ConnectResponse(request.transaction_id, connection_id).encode()
            case udp.AnnounceRequest():
                assert request.connection_id == connection_id
                peers = (("10.0.0.9", 51413),)
                return udp.AnnounceResponse(request.transaction_id, 1800, 1, 2, peers).encode()
            case udp.ScrapeRequest():
                files = tuple(
                    ScrapeFile(i, 10 + i, 20 + i) for i in range(len(request.info_hashes))
                )
                return udp.ScrapeResponse(request.transaction_id, files).encode()
        raise AssertionError(request)

    return reply


def run(
    reply: Reply,
    body: Callable[[UdpTrackerClient, FakeTracker], Coroutine[Any, Any, Any]],
    config: UdpTrackerConfig | None = None,
) -> Any:
    async def main() -> Any:
        network = MemoryNetwork(latency=0.01)
        _, fake = await network.host(TRACKER[0]).bind(lambda: FakeTracker(reply), *TRACKER)
        client = UdpTrackerClient(network.host("10.0.0.2"), rng=random.Random(7), config=config)
        async with client:
            return await body(client, fake)

    return vtime.run(main(), start=0.0)


def test_urls() -> None:
    assert is_udp_url("UDP://t:1/announce")
    assert not is_udp_url("http://t:1/announce")
    assert parse_udp_url("udp://tracker.example:6969/announce") == ("tracker.example", 6969)
    assert parse_udp_url("udp://[::1]:80") == ("::1", 80)
    for bad in ("udp://host/announce", "udp://:80", "udp://h:99999/", "http://h:1/"):
        with pytest.raises(TrackerError):
            parse_udp_url(bad)


def test_datagram_network_follows_the_peers_network() -> None:
    host = MemoryNetwork().host("10.0.0.3")
    assert datagram_network(host) is host


def test_announce_then_reuse_connection_id_within_a_minute() -> None:
    async def body(client: UdpTrackerClient, fake: FakeTracker) -> None:
        first = await client.announce(URL, REQ, timeout=10)
        assert first.peers == (("10.0.0.9", 51413),)
        assert (first.interval, first.complete, first.incomplete) == (1800, 2, 1)
        await asyncio.sleep(59.0)
        await client.announce(URL, REQ, timeout=10)
        assert fake.kinds() == ["ConnectRequest", "AnnounceRequest", "AnnounceRequest"]
        await asyncio.sleep(1.5)  # now past the minute: connect again
        await client.announce(URL, REQ, timeout=10)
        assert fake.kinds()[3:] == ["ConnectRequest", "AnnounceRequest"]
        assert client.connects == 2

    run(answering(), body)


def test_announce_fields_reach_the_tracker() -> None:
    async def body(client: UdpTrackerClient, fake: FakeTracker) -> None:
        req = tracker.AnnounceRequest(
            info_hash=IH, peer_id=b"p" * 20, port=7000, uploaded=5, downloaded=6, left=7,
            event="completed", numwant=12, ip="192.0.2.4",
        )  # fmt: skip
        await client.announce(URL, req, timeout=10)
        sent = fake.log[1][1]
        assert isinstance(sent, udp.AnnounceRequest)
        assert (sent.uploaded, sent.downloaded, sent.left, sent.port) == (5, 6, 7, 7000)
        assert sent.event == udp.UdpEvent.COMPLETED
        assert sent.num_want == 12
        assert sent.ip_text == "192.0.2.4"
        assert sent.key == client.key
        # Transaction ids are drawn per request.
        tids = {r.transaction_id for _, r in fake.log}
        assert len(tids) == 2

    run(answering(), body)


def test_silent_tracker_gets_requests_at_15_45_105_seconds_and_bounded() -> None:
    async def body(client: UdpTrackerClient, fake: FakeTracker) -> float:
        with pytest.raises(TrackerError, match="silent"):
            await client.announce(URL, REQ)  # no caller deadline: the whole BEP 15 schedule
        return asyncio.get_running_loop().time()

    fake_log: list[FakeTracker] = []

    async def keep(client: UdpTrackerClient, fake: FakeTracker) -> float:
        fake_log.append(fake)
        return await body(client, fake)

    ended = run(lambda r, n: None, keep)
    fake = fake_log[0]
    arrivals = [round(t - 0.01, 6) for t, _ in fake.log]  # minus the one-way latency
    assert arrivals == [0, 15, 45, 105, 225, 465, 945, 1905, 3825]
    assert set(fake.kinds()) == {"ConnectRequest"}
    assert ended == pytest.approx(3825 + 3840)


def test_back_off_base_and_count_come_from_the_config() -> None:
    fakes: list[FakeTracker] = []

    async def body(client: UdpTrackerClient, fake: FakeTracker) -> None:
        fakes.append(fake)
        with pytest.raises(TrackerError):
            await client.scrape(URL, [IH])

    run(lambda r, n: None, body, UdpTrackerConfig(retransmit_base=2.0, max_retransmits=3))
    assert [round(t - 0.01, 6) for t, _ in fakes[0].log] == [0, 2, 6, 14]


def test_caller_timeout_bounds_the_schedule() -> None:
    async def body(client: UdpTrackerClient, fake: FakeTracker) -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(TrackerError, match="within 20 s"):
            await client.announce(URL, REQ, timeout=20)
        assert loop.time() == pytest.approx(20.0)
        assert len(fake.log) == 2  # at 0 and 15 s

    run(lambda r, n: None, body)


def test_lost_connect_reply_is_retransmitted_after_15_s() -> None:
    inner = answering()

    def reply(request: udp.Request, n: int) -> bytes | None:
        return None if n == 1 else inner(request, n)

    async def body(client: UdpTrackerClient, fake: FakeTracker) -> None:
        resp = await client.announce(URL, REQ, timeout=60)
        assert resp.peers
        assert [round(t - 0.01, 6) for t, _ in fake.log][:2] == [0, 15]
        assert fake.kinds() == ["ConnectRequest", "ConnectRequest", "AnnounceRequest"]

    run(reply, body)


def test_lost_announce_after_expiry_reconnects() -> None:
    """A retransmission after the connection id's minute first asks for a new one."""
    inner = answering()

    def reply(request: udp.Request, n: int) -> bytes | None:
        return None if n in (2, 3, 4) else inner(request, n)  # announces at 0, 15, 45 s lost

    async def body(client: UdpTrackerClient, fake: FakeTracker) -> None:
        await client.announce(URL, REQ, timeout=200)
        assert fake.kinds() == [
            "ConnectRequest", "AnnounceRequest", "AnnounceRequest",  # 0, 0, 15 s
            "AnnounceRequest",  # 45 s: the id is 45 s old, still good
            "ConnectRequest", "AnnounceRequest",  # 105 s: expired, connect first
        ]  # fmt: skip
        # The first announce left after the connect's round trip (0.02 s).
        assert fake.log[4][0] - 0.01 == pytest.approx(0.02 + 105)

    run(reply, body)


def test_wrong_transaction_id_is_ignored() -> None:
    inner = answering()

    def reply(request: udp.Request, n: int) -> bytes | None:
        good = inner(request, n)
        if n == 1 and good is not None:
            # First a reply for someone else's transaction, then nothing: the client must
            # ignore it and get the connect through on its retransmission.
            return udp.ConnectResponse(request.transaction_id ^ 1, 5).encode()
        return good

    async def body(client: UdpTrackerClient, fake: FakeTracker) -> None:
        resp = await client.announce(URL, REQ, timeout=60)
        assert resp.peers
        assert client.dropped == 1
        assert fake.kinds() == ["ConnectRequest", "ConnectRequest", "AnnounceRequest"]

    run(reply, body)


def test_error_reply_is_a_tracker_error() -> None:
    def reply(request: udp.Request, n: int) -> bytes:
        if isinstance(request, udp.ConnectRequest):
            return udp.ConnectResponse(request.transaction_id, 1).encode()
        return udp.ErrorResponse(request.transaction_id, "unregistered torrent").encode()

    async def body(client: UdpTrackerClient, fake: FakeTracker) -> None:
        with pytest.raises(TrackerError, match="unregistered torrent"):
            await client.announce(URL, REQ, timeout=10)

    run(reply, body)


def test_garbage_with_our_transaction_id_is_a_tracker_error() -> None:
    def reply(request: udp.Request, n: int) -> bytes:
        return udp.ConnectResponse(request.transaction_id, 1).encode()[:12]

    async def body(client: UdpTrackerClient, fake: FakeTracker) -> None:
        with pytest.raises(TrackerError, match="too short"):
            await client.announce(URL, REQ, timeout=10)

    run(reply, body)


def test_scrape_maps_entries_to_hashes_in_order() -> None:
    hashes = [bytes([i]) * 20 for i in range(3)]

    async def body(client: UdpTrackerClient, fake: FakeTracker) -> None:
        resp = await client.scrape(URL, hashes, timeout=10)
        assert resp.files == {
            hashes[0]: ScrapeFile(0, 10, 20),
            hashes[1]: ScrapeFile(1, 11, 21),
            hashes[2]: ScrapeFile(2, 12, 22),
        }
        with pytest.raises(TrackerError):
            await client.scrape(URL, [IH] * (udp.MAX_SCRAPE_HASHES + 1), timeout=10)

    run(answering(), body)


def test_reply_from_another_address_is_ignored() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        spoofer_transport, _ = await network.host("10.6.6.6").bind(
            asyncio.DatagramProtocol, "0.0.0.0", 6969
        )
        got: list[udp.Request] = []

        class Capture(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                request = udp.parse_request(data)
                got.append(request)
                # The spoofer guesses right (it saw the request) but sends from elsewhere.
                reply = udp.ConnectResponse(request.transaction_id, 1).encode()
                spoofer_transport.sendto(reply, addr)

        await network.host(TRACKER[0]).bind(Capture, *TRACKER)
        async with UdpTrackerClient(network.host("10.0.0.2"), rng=random.Random(1)) as client:
            with pytest.raises(TrackerError):
                await client.announce(URL, REQ, timeout=1)
            assert client.dropped == 1
            assert len(got) == 1

    vtime.run(main(), start=0.0)
