"""The lab's network model (hubswarm.lab.simnet) in virtual time: rates, fairness, delay, loss."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubswarm import net, vtime
from hubswarm.lab.simnet import SEGMENT, LinkSpec, SimNetwork

MIB = 1024 * 1024
SERVER, CLIENT_A, CLIENT_B = "10.1.0.1", "10.1.0.2", "10.1.0.3"


async def _serve_bytes(network: SimNetwork, size: int) -> net.Listener:
    """A server at SERVER:80 that sends ``size`` seeded bytes to whoever connects."""
    payload = random.Random(size).randbytes(size)

    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        writer.close()

    return await net.start_stream_server(network.host(SERVER), send, "0.0.0.0", 80)


async def _fetch(network: SimNetwork, client: str, size: int) -> tuple[float, str]:
    """(seconds from connect to the last byte, sha256 of what arrived)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    reader, writer = await net.open_stream(network.host(client), SERVER, 80)
    digest = hashlib.sha256()
    received = 0
    while chunk := await reader.read(256 * 1024):
        digest.update(chunk)
        received += len(chunk)
    writer.close()
    assert received == size
    return loop.time() - t0, digest.hexdigest()


def _expected_digest(size: int) -> str:
    return hashlib.sha256(random.Random(size).randbytes(size)).hexdigest()


def _one_transfer(server: LinkSpec, client: LinkSpec, size: int, seed: int = 1) -> float:
    async def main() -> float:
        network = SimNetwork(rng=random.Random(seed))
        network.add_host(SERVER, server)
        network.add_host(CLIENT_A, client)
        listener = await _serve_bytes(network, size)
        elapsed, digest = await _fetch(network, CLIENT_A, size)
        assert digest == _expected_digest(size)
        listener.close()
        return elapsed

    return vtime.run(main())


def test_a_queue_of_rate_r_carries_f_in_f_over_r() -> None:
    rate, size = 1 * MIB, 8 * MIB
    elapsed = _one_transfer(LinkSpec(upload=rate), LinkSpec(), size)
    assert elapsed == pytest.approx(size / rate, rel=0.01)


def test_the_slower_end_sets_the_rate() -> None:
    size = 4 * MIB
    elapsed = _one_transfer(LinkSpec(upload=4 * MIB), LinkSpec(download=512 * 1024), size)
    assert elapsed == pytest.approx(size / (512 * 1024), rel=0.01)


def test_two_flows_share_an_upload_evenly() -> None:
    rate, size = 1 * MIB, 4 * MIB

    async def main() -> list[float]:
        network = SimNetwork()
        network.add_host(SERVER, LinkSpec(upload=rate))
        listener = await _serve_bytes(network, size)
        results = await asyncio.gather(
            _fetch(network, CLIENT_A, size), _fetch(network, CLIENT_B, size)
        )
        listener.close()
        assert all(digest == _expected_digest(size) for _, digest in results)
        return [elapsed for elapsed, _ in results]

    a, b = vtime.run(main())
    # Each gets half of the rate: both finish together, at 2 F / R.
    assert a == pytest.approx(2 * size / rate, rel=0.01)
    assert b == pytest.approx(a, rel=0.01)


def test_latency_adds_a_round_trip_to_a_connect() -> None:
    async def connect_time(latency: float) -> float:
        network = SimNetwork()
        network.add_host(SERVER, LinkSpec(latency=latency))
        network.add_host(CLIENT_A, LinkSpec(latency=latency))
        listener = await _serve_bytes(network, 1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        reader, writer = await net.open_stream(network.host(CLIENT_A), SERVER, 80)
        elapsed = loop.time() - t0
        await reader.read()
        writer.close()
        listener.close()
        return elapsed

    assert vtime.run(connect_time(0.0)) == 0.0
    assert vtime.run(connect_time(0.025)) == pytest.approx(0.1)  # 2 x (25 + 25 ms)


def test_slow_start_costs_round_trips_on_a_long_path() -> None:
    # 1 MiB at an unlimited rate over a 100 ms round trip: the window starts at ten packets
    # and doubles per round trip, so it takes about log2(1 MiB / 14480 B) + 1 round trips.
    elapsed = _one_transfer(LinkSpec(latency=0.025), LinkSpec(latency=0.025), MIB)
    assert 0.6 <= elapsed <= 1.0


def test_loss_costs_time_never_bytes_and_is_deterministic() -> None:
    size = 2 * MIB
    clean = _one_transfer(LinkSpec(upload=MIB, latency=0.02), LinkSpec(latency=0.02), size)
    lossy = [
        _one_transfer(LinkSpec(upload=MIB, latency=0.02, loss=0.02), LinkSpec(latency=0.02), size)
        for _ in range(2)
    ]
    assert lossy[0] == lossy[1]  # same seed, same run, bit for bit
    assert lossy[0] > clean


def test_a_full_queue_drops_datagrams_and_loss_drops_more() -> None:
    class Count(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.got = 0

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.got += 1

    async def send_burst(spec: LinkSpec, count: int) -> int:
        network = SimNetwork(rng=random.Random(7))
        network.add_host(CLIENT_A, spec)
        _, sink = await network.host(SERVER).bind(Count, "0.0.0.0", 6881)
        sender, _ = await network.host(CLIENT_A).bind(Count, "0.0.0.0", 0)
        for _ in range(count):
            sender.sendto(b"x" * 1000, (SERVER, 6881))
        await asyncio.sleep(10.0)
        return sink.got

    roomy = LinkSpec(upload=100_000, queue=SEGMENT * 100)
    assert vtime.run(send_burst(roomy, 500)) == 500
    # A queue of 16 KiB holds 16 datagrams of 1000 bytes: the rest of a burst is dropped.
    assert vtime.run(send_burst(LinkSpec(upload=100_000, queue=SEGMENT), 500)) == 16
    lossy = vtime.run(send_burst(LinkSpec(upload=100_000, queue=SEGMENT * 100, loss=0.1), 500))
    assert 400 < lossy < 490


@settings(max_examples=15, deadline=None)
@given(
    size=st.integers(1, 300_000),
    loss=st.sampled_from([0.0, 0.01, 0.05]),
    latency=st.sampled_from([0.0, 0.005, 0.05]),
    seed=st.integers(0, 2**16),
)
def test_any_stream_arrives_whole_and_in_order(
    size: int, loss: float, latency: float, seed: int
) -> None:
    spec = LinkSpec(upload=256 * 1024, latency=latency, loss=loss, queue=4 * SEGMENT)
    elapsed = _one_transfer(spec, LinkSpec(latency=latency), size, seed)
    assert elapsed >= size / (256 * 1024) * 0.99


def test_a_crashed_host_resets_its_streams_and_refuses_new_ones() -> None:
    async def main() -> tuple[int, float]:
        network = SimNetwork()
        network.add_host(SERVER, LinkSpec(upload=MIB, latency=0.01))
        listener = await _serve_bytes(network, 4 * MIB)
        loop = asyncio.get_running_loop()
        loop.call_later(1.0, network.crash, SERVER)
        reader, writer = await net.open_stream(network.host(CLIENT_A), SERVER, 80)
        received = 0
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                received += len(chunk)
        cut_at = loop.time()
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await net.open_stream(network.host(CLIENT_B), SERVER, 80)
        listener.close()
        return received, cut_at

    received, cut_at = vtime.run(main())
    assert 0 < received < 4 * MIB  # about a second's worth, then the reset
    assert received == pytest.approx(MIB, rel=0.1)
    assert cut_at == pytest.approx(vtime.DEFAULT_START + 1.0, abs=0.05)
