"""The UDP tracker (BEP 15): connection ids, no amplification, the HTTP tracker's state and
limits, garbage, and the shell on the in-memory network, kernel UDP and the hub's CLI."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm import vtime
from hubswarm.errors import TrackerError
from hubswarm.hub.tracker import TrackerState
from hubswarm.hub.udp_tracker import (
    MAX_PEERS_V6,
    ConnectionIds,
    UdpTrackerHandler,
    running_udp_tracker,
)
from hubswarm.memnet import MemoryNetwork
from hubswarm.proto import tracker
from hubswarm.proto import udp_tracker as udp
from hubswarm.proto.tracker import ScrapeFile
from hubswarm.swarm.udp_tracker_client import UdpTrackerClient

IH = bytes(range(20))
IH2 = bytes(range(1, 21))
KEY = bytes(range(32))
NOW = 1000.0
CLIENT = ("10.0.0.2", 40000)


def handler(**state_args: object) -> UdpTrackerHandler:
    state = TrackerState(interval=60, rng=random.Random(0), **state_args)  # type: ignore[arg-type]
    return UdpTrackerHandler(state, ConnectionIds(KEY))


def connect(h: UdpTrackerHandler, source: tuple[str, int] = CLIENT, now: float = NOW) -> int:
    reply = h.handle(udp.ConnectRequest(5).encode(), source, now)
    assert reply is not None
    parsed = udp.parse_response(reply, action=udp.Action.CONNECT, transaction_id=5)
    assert isinstance(parsed, udp.ConnectResponse)
    return parsed.connection_id


def announce_bytes(cid: int, *, peer: int = 1, port: int = 6881, **fields: object) -> bytes:
    req = udp.AnnounceRequest(
        cid, 9, fields.pop("info_hash", IH), bytes([peer]) * 20, port=port,  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip
    return req.encode()


def announce(
    h: UdpTrackerHandler, source: tuple[str, int] = CLIENT, now: float = NOW, **fields: object
) -> udp.Response:
    cid = connect(h, source, now)
    reply = h.handle(announce_bytes(cid, **fields), source, now)  # type: ignore[arg-type]
    assert reply is not None
    return udp.parse_response(
        reply, action=udp.Action.ANNOUNCE, transaction_id=9, ipv6=":" in source[0]
    )


# --- connection ids ----------------------------------------------------------------------------


def test_connect_reply_is_16_bytes_for_16() -> None:
    h = handler()
    reply = h.handle(udp.ConnectRequest(5).encode(), CLIENT, NOW)
    assert reply is not None
    assert len(reply) == 16
    assert h.stats.connects == 1


def test_connection_id_is_bound_to_the_address_and_lasts_two_minutes() -> None:
    ids = ConnectionIds(KEY)
    cid = ids.issue("10.0.0.2", NOW)
    assert ids.valid(cid, "10.0.0.2", NOW)
    assert ids.valid(cid, "10.0.0.2", NOW + 120)  # at least two minutes
    assert not ids.valid(cid, "10.0.0.2", NOW + 180)
    assert not ids.valid(cid, "10.0.0.3", NOW)  # another address
    assert not ids.valid(cid ^ 1, "10.0.0.2", NOW)
    # Another server start (another key) does not accept it.
    assert not ConnectionIds(bytes(32)).valid(cid, "10.0.0.2", NOW)


def test_announce_without_a_valid_connection_id_gets_nothing() -> None:
    h = handler()
    for cid in (0, udp.PROTOCOL_ID, 123456789):
        assert h.handle(announce_bytes(cid), CLIENT, NOW) is None
    stolen = connect(h, ("10.9.9.9", 1))  # an id made for another address
    assert h.handle(announce_bytes(stolen), CLIENT, NOW) is None
    expired = connect(h, CLIENT, NOW - 200)
    assert h.handle(announce_bytes(expired), CLIENT, NOW) is None
    scrape = udp.ScrapeRequest(7, 1, (IH,)).encode()
    assert h.handle(scrape, CLIENT, NOW) is None
    assert h.stats.bad_connection_id == 6
    assert h.state.swarm_count == 0


@given(st.binary(max_size=300))
def test_garbage_is_dropped_and_never_amplified(data: bytes) -> None:
    h = handler()
    reply = h.handle(data, CLIENT, NOW)
    assert reply is None or len(reply) <= len(data)


def test_malformed_datagrams_are_counted() -> None:
    h = handler()
    for data in (b"", b"\0" * 15, b"\xff" * 98, b"\0" * 3000):
        assert h.handle(data, CLIENT, NOW) is None
    assert h.handle(udp.ConnectRequest(1).encode(), ("not an ip", 1), NOW) is None
    assert h.stats.malformed == 5


def test_a_connect_flood_is_cut_to_the_budget_and_another_address_still_connects() -> None:
    h = UdpTrackerHandler(
        TrackerState(interval=60, rng=random.Random(0)),
        ConnectionIds(KEY),
        connects_per_second=2.0,
        connect_burst=10,
    )
    data = udp.ConnectRequest(5).encode()
    replies = [h.handle(data, ("10.0.0.9", port), NOW) for port in range(1, 1001)]
    # The burst is answered, the rest dropped silently (the source may be spoofed).
    assert sum(r is not None for r in replies) == 10
    assert (h.stats.connects, h.stats.connects_limited) == (10, 990)
    assert connect(h, ("10.0.0.10", 1))  # another address is not held back
    assert h.handle(data, ("10.0.0.9", 1), NOW + 0.5) is not None  # 2 a second refill
    assert h.handle(data, ("10.0.0.9", 1), NOW + 0.5) is None
    # The table of budgets stays bounded under connects from ever new (spoofed) sources.
    for i in range(5000):
        h.handle(data, (f"10.{i // 250}.{i % 250}.1", 1), NOW)
    assert h.connect_budgets is not None
    assert len(h.connect_budgets) <= h.connect_budgets.max_keys


def test_announces_over_the_address_budget_get_an_error_and_are_not_stored() -> None:
    h = handler(announces_per_address=3)
    for peer in range(1, 4):
        resp = announce(h, peer=peer, port=6880 + peer)
        assert isinstance(resp, udp.AnnounceResponse)
    data = announce_bytes(connect(h), peer=4, port=6884)
    reply = h.handle(data, CLIENT, NOW)
    assert reply is not None
    assert len(reply) <= len(data)
    parsed = udp.parse_response(reply, action=udp.Action.ANNOUNCE, transaction_id=9)
    assert isinstance(parsed, udp.ErrorResponse)
    assert parsed.message.startswith("too many announces from this address")
    assert len(h.state.peers(IH)) == 3
    # Another address announces meanwhile.
    resp = announce(h, ("10.0.0.3", 1), peer=5)
    assert isinstance(resp, udp.AnnounceResponse)
    assert len(resp.peers) == 3


# --- the HTTP tracker's state and limits --------------------------------------------------------


def test_announce_joins_the_http_trackers_swarm() -> None:
    h = handler()
    http_req = tracker.AnnounceRequest(info_hash=IH, peer_id=b"h" * 20, port=7000, left=0)
    h.state.announce(http_req, "10.0.0.7", NOW)  # a seed that came over HTTP
    resp = announce(h, left=5, event=udp.UdpEvent.STARTED)
    assert isinstance(resp, udp.AnnounceResponse)
    assert resp.peers == (("10.0.0.7", 7000),)
    assert (resp.seeders, resp.leechers, resp.interval) == (1, 1, 60)
    listed = {(p.ip, p.port) for p in h.state.peers(IH)}
    assert listed == {("10.0.0.7", 7000), ("10.0.0.2", 6881)}
    # stopped leaves the swarm.
    announce(h, event=udp.UdpEvent.STOPPED)
    assert {(p.ip, p.port) for p in h.state.peers(IH)} == {("10.0.0.7", 7000)}


def test_numwant_is_capped_as_over_http() -> None:
    h = handler()
    for i in range(30):
        http_req = tracker.AnnounceRequest(info_hash=IH, peer_id=bytes([100 + i]) * 20, port=7000)
        h.state.announce(http_req, f"10.1.0.{i + 1}", NOW)
    few = announce(h, num_want=4)
    assert isinstance(few, udp.AnnounceResponse)
    assert len(few.peers) == 4
    default = announce(h, peer=2, port=6882)
    assert isinstance(default, udp.AnnounceResponse)
    assert len(default.peers) == 31  # under TRACKER_DEFAULT_NUMWANT: all the others


def test_ipv6_request_gets_18_byte_ipv6_peers_only() -> None:
    h = handler()
    for i, ip in enumerate(("10.0.0.7", "2001:db8::7", "2001:db8::8")):
        http_req = tracker.AnnounceRequest(info_hash=IH, peer_id=bytes([50 + i]) * 20, port=7000)
        h.state.announce(http_req, ip, NOW)
    source = ("2001:db8::2", 40000)
    resp = announce(h, source)
    assert isinstance(resp, udp.AnnounceResponse)
    assert resp.ipv6
    assert sorted(resp.peers) == [("2001:db8::7", 7000), ("2001:db8::8", 7000)]
    assert MAX_PEERS_V6 * 18 + 20 <= 1500 - 40 - 8
    v4 = announce(h, ("10.0.0.3", 1), peer=3)
    assert isinstance(v4, udp.AnnounceResponse)
    assert v4.peers == (("10.0.0.7", 7000),)


def test_refusals_are_error_replies_no_bigger_than_the_request() -> None:
    h = handler(allowed=[IH2])
    data = announce_bytes(connect(h))
    reply = h.handle(data, CLIENT, NOW)
    assert reply is not None
    assert len(reply) <= len(data)
    parsed = udp.parse_response(reply, action=udp.Action.ANNOUNCE, transaction_id=9)
    assert parsed == udp.ErrorResponse(9, "unregistered torrent")
    bad_port = h.handle(announce_bytes(connect(h), port=0), CLIENT, NOW)
    assert bad_port is not None
    assert udp.peek_header(bad_port)[0] == udp.Action.ERROR
    assert h.stats.errors == 2


def test_scrape_answers_by_position_and_is_capped() -> None:
    h = handler()
    announce(h, left=0, event=udp.UdpEvent.COMPLETED)
    cid = connect(h)
    reply = h.handle(udp.ScrapeRequest(cid, 3, (IH2, IH)).encode(), CLIENT, NOW)
    assert reply is not None
    parsed = udp.parse_response(reply, action=udp.Action.SCRAPE, transaction_id=3, hashes=2)
    assert isinstance(parsed, udp.ScrapeResponse)
    assert parsed.files == (ScrapeFile(0, 0, 0), ScrapeFile(1, 1, 0))
    too_many = udp.ScrapeRequest(cid, 3, tuple(bytes([i]) * 20 for i in range(40))).encode()
    reply = h.handle(too_many, CLIENT, NOW)
    assert reply is not None
    assert udp.peek_header(reply)[0] == udp.Action.ERROR


# --- the shell -----------------------------------------------------------------------------------


def test_two_clients_find_each_other_in_virtual_time() -> None:
    async def main() -> None:
        network = MemoryNetwork(latency=0.005)
        state = TrackerState(interval=30, rng=random.Random(1))
        tracker_host = network.host("10.0.0.1")
        async with (
            running_udp_tracker(state, "10.0.0.1", 6969, network=tracker_host) as server,
            UdpTrackerClient(network.host("10.0.0.2"), rng=random.Random(2)) as a,
            UdpTrackerClient(network.host("10.0.0.3"), rng=random.Random(3)) as b,
        ):
            assert server.url == "udp://10.0.0.1:6969/announce"
            req_a = tracker.AnnounceRequest(info_hash=IH, peer_id=b"a" * 20, port=1111, left=0)
            req_b = tracker.AnnounceRequest(info_hash=IH, peer_id=b"b" * 20, port=2222, left=9)
            first = await a.announce(server.url, req_a, timeout=10)
            assert first.peers == ()
            second = await b.announce(server.url, req_b, timeout=10)
            assert second.peers == (("10.0.0.2", 1111),)
            assert (second.complete, second.incomplete, second.interval) == (1, 1, 30)
            counts = await b.scrape(server.url, [IH], timeout=10)
            assert counts.files == {IH: ScrapeFile(1, 0, 1)}
            assert server.stats.announces == 2
            assert server.stats.connects == 2  # b reused its id for the scrape

    vtime.run(main(), start=0.0)


async def test_kernel_udp_on_loopback() -> None:
    state = TrackerState(interval=30, rng=random.Random(1))
    async with (
        running_udp_tracker(state, "127.0.0.1", 0) as server,
        UdpTrackerClient(rng=random.Random(2)) as client,
    ):
        req = tracker.AnnounceRequest(info_hash=IH, peer_id=b"k" * 20, port=3333)
        resp = await client.announce(server.url, req, timeout=5)
        assert resp.interval == 30
        assert [(p.ip, p.port) for p in state.peers(IH)] == [("127.0.0.1", 3333)]


@contextlib.asynccontextmanager
async def cli(*args: str, lines: int) -> AsyncIterator[list[str]]:
    """``python -m hubswarm ARGS``; yields its first ``lines`` of output; then SIGTERM by PID,
    and it must exit 0 without a traceback."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hubswarm", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            yield [(await proc.stdout.readline()).decode() for _ in range(lines)]
        proc.terminate()
        async with asyncio.timeout(10):
            _, err = await proc.communicate()
        assert proc.returncode == 0
        assert b"Traceback" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_hub_serve_udp_port(tmp_path: Path) -> None:
    args = ("hub", "serve", "--data", str(tmp_path), "--port", "0", "--udp-port", "0")
    async with cli(*args, "--tracker-interval", "7", lines=2) as lines:
        udp_lines = [line for line in lines if "UDP tracker on udp://127.0.0.1:" in line]
        assert udp_lines, lines
        url = udp_lines[0].rsplit(" ", 1)[1].strip()
        async with UdpTrackerClient() as client:
            req = tracker.AnnounceRequest(info_hash=IH, peer_id=b"c" * 20, port=4444)
            resp = await client.announce(url, req, timeout=5)
            assert resp.interval == 7
            # Junk does not stop it: it still answers afterwards.
            endpoint = await client._endpoint(2)
            assert endpoint.transport is not None
            host, port = url[len("udp://") :].split("/")[0].split(":")
            endpoint.transport.sendto(b"\xff" * 50, (host, int(port)))
            client.forget_connection_id((host, int(port)))
            assert (await client.announce(url, req, timeout=5)).interval == 7


def test_client_raises_tracker_error_for_an_unregistered_torrent() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        state = TrackerState(interval=30, allowed=[IH2])
        async with (
            running_udp_tracker(state, "10.0.0.1", 6969, network=network.host("10.0.0.1")) as s,
            UdpTrackerClient(network.host("10.0.0.2")) as client,
        ):
            req = tracker.AnnounceRequest(info_hash=IH, peer_id=b"a" * 20, port=1)
            with pytest.raises(TrackerError, match="unregistered torrent"):
                await client.announce(s.url, req, timeout=10)

    vtime.run(main(), start=0.0)


async def test_tracker_cli_udp_port_shares_the_http_swarm() -> None:
    args = ("tracker", "--port", "0", "--udp-port", "0", "--interval", "5")
    async with cli(*args, lines=2) as (http_line, udp_line):
        assert http_line.startswith("hubswarm tracker: listening on http://127.0.0.1:")
        assert udp_line.startswith("hubswarm tracker: listening on udp://127.0.0.1:")
        http_url = http_line.rsplit(" ", 1)[1].strip()
        udp_url = udp_line.rsplit(" ", 1)[1].strip()
        import aiohttp

        from hubswarm.swarm.tracker_client import announce as http_announce

        async with aiohttp.ClientSession() as session:
            seed = tracker.AnnounceRequest(info_hash=IH, peer_id=b"s" * 20, port=5555, left=0)
            await http_announce(session, http_url, seed, timeout=5)
        async with UdpTrackerClient() as client:
            leech = tracker.AnnounceRequest(info_hash=IH, peer_id=b"l" * 20, port=6666, left=1)
            resp = await client.announce(udp_url, leech, timeout=5)
        assert resp.peers == (("127.0.0.1", 5555),)
        assert (resp.interval, resp.complete, resp.incomplete) == (5, 1, 1)
