"""DualNetwork: TCP and uTP on one port number, and the three dial policies.

The policy tests run in virtual time on a MemoryNetwork (its streams stand in for TCP), so
fall-back delays are exact; the port tests use the kernel's TCP and UDP on loopback.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from hubswarm import vtime
from hubswarm.memnet import MemoryNetwork
from hubswarm.net import Listener, StreamNetwork, TcpNetwork
from hubswarm.swarm.dualstack import (
    DEFAULT_DIAL_POLICY,
    DialPolicy,
    DualNetwork,
)
from hubswarm.swarm.utp import UtpNetwork, UtpSocket

from .test_utp_shell import Sink

pytestmark = pytest.mark.timeout(60)

LOCAL = "127.0.0.1"
LATENCY = 0.010  # one way, on the MemoryNetwork
PORT = 6881


class Counting:
    """A protocol factory that keeps every protocol it made."""

    def __init__(self) -> None:
        self.made: list[Sink] = []

    def __call__(self) -> Sink:
        self.made.append(Sink())
        return self.made[-1]

    def open(self) -> list[Sink]:
        """Protocols whose connection neither ended nor was half-closed by the dialler."""
        return [s for s in self.made if not s.eof.is_set()]


@asynccontextmanager
async def memory_peer(
    network: MemoryNetwork, ip: str, *, tcp: bool, utp: bool, seed: int
) -> AsyncIterator[tuple[UtpSocket, Counting]]:
    """A host listening on PORT over the transports asked for."""
    accepted = Counting()
    async with UtpSocket(
        host=ip, port=PORT, network=network.host(ip), rng=random.Random(seed)
    ) as s:
        listeners: list[Listener] = []
        if utp:
            listeners.append(await UtpNetwork(s).listen(accepted, ip, PORT))
        if tcp:
            listeners.append(await network.host(ip).listen(accepted, ip, PORT))
        try:
            yield s, accepted
        finally:
            for listener in listeners:
                listener.close()


def dial(policy: DialPolicy, *, tcp: bool, utp: bool) -> tuple[float, str, list[int], list[int]]:
    """Dial a peer offering ``tcp``/``utp`` with ``policy``; return (seconds, transport
    used, [open, made] protocols on the far side a second later, [dialler's, far side's]
    uTP routes)."""

    async def main() -> tuple[float, str, list[int], list[int]]:
        network = MemoryNetwork(latency=LATENCY, rng=random.Random(1))
        loop = asyncio.get_running_loop()
        async with (
            memory_peer(network, "10.0.0.2", tcp=tcp, utp=utp, seed=2) as (far, accepted),
            UtpSocket(
                host="10.0.0.1", network=network.host("10.0.0.1"), rng=random.Random(1)
            ) as near,
        ):
            dual = DualNetwork(network.host("10.0.0.1"), UtpNetwork(near), policy)
            started = loop.time()
            transport, _ = await dual.connect(Sink, "10.0.0.2", PORT)
            took = loop.time() - started
            used = "utp" if transport.get_extra_info("utp") is not None else "tcp"
            transport.write(b"x")  # a uTP responder makes its protocol on the first packet
            await asyncio.sleep(1)
            far_side = [len(accepted.open()), len(accepted.made)]
            routes = [near.connections, far.connections]
            transport.close()
            return round(took, 6), used, far_side, routes

    return vtime.run(main())


def test_tcp_first_connects_over_tcp_to_a_peer_with_both() -> None:
    assert dial("tcp-first", tcp=True, utp=True) == (2 * LATENCY, "tcp", [1, 1], [0, 0])


def test_tcp_first_falls_back_to_utp_when_tcp_is_refused() -> None:
    took, used, far_side, _ = dial("tcp-first", tcp=False, utp=True)
    assert used == "utp"
    assert took == pytest.approx(4 * LATENCY)  # the refusal's round trip, then SYN and STATE
    assert far_side == [1, 1]


def test_utp_first_connects_over_utp_to_a_peer_with_both() -> None:
    assert dial("utp-first", tcp=True, utp=True) == (2 * LATENCY, "utp", [1, 1], [1, 1])


def test_utp_first_falls_back_to_tcp_after_the_fallback_delay() -> None:
    took, used, far_side, routes = dial("utp-first", tcp=True, utp=False)
    assert used == "tcp"
    assert took == pytest.approx(
        DualNetwork(TcpNetwork(), TcpNetwork()).fallback_after + 2 * LATENCY
    )
    assert far_side == [1, 1]
    assert routes[0] == 0  # the abandoned uTP dial is forgotten


def test_both_keeps_one_connection_and_closes_the_other() -> None:
    took, _, far_side, routes = dial("both", tcp=True, utp=True)
    assert took == 2 * LATENCY
    assert far_side[0] == 1  # one connection stays open on the far side
    assert routes[0] in (0, 1)


@pytest.mark.parametrize(("tcp", "utp"), [(True, False), (False, True)])
def test_both_reaches_a_peer_with_either_transport_at_once(tcp: bool, utp: bool) -> None:
    took, used, far_side, routes = dial("both", tcp=tcp, utp=utp)
    assert used == ("tcp" if tcp else "utp")
    assert took == 2 * LATENCY
    assert far_side == [1, 1]
    assert routes[0] == (1 if utp else 0)


def test_every_transport_failing_raises_the_last_error() -> None:
    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        async with UtpSocket(host="10.0.0.1", network=network.host("10.0.0.1")) as near:
            for policy in ("tcp-first", "utp-first", "both"):
                dual = DualNetwork(network.host("10.0.0.1"), UtpNetwork(near), policy)
                with pytest.raises(OSError):
                    async with asyncio.timeout(30):
                        await dual.connect(Sink, "10.0.0.3", PORT)
            assert near.connections == 0

    vtime.run(main())


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="dial policy"):
        DualNetwork(TcpNetwork(), TcpNetwork(), "udp-only")  # type: ignore[arg-type]
    assert DEFAULT_DIAL_POLICY in ("tcp-first", "utp-first", "both")


# --- listening on both, same port number ------------------------------------------------


async def _dual_listen(sock: UtpSocket, accepted: Counting) -> Listener:
    network: StreamNetwork = DualNetwork(TcpNetwork(), UtpNetwork(sock))
    return await network.listen(accepted, LOCAL, 0)


async def test_listen_takes_the_same_port_number_for_tcp_and_utp() -> None:
    accepted = Counting()
    async with (
        UtpSocket(host=LOCAL, rng=random.Random(1)) as server,
        UtpSocket(host=LOCAL) as client,
    ):
        listener = await _dual_listen(server, accepted)
        try:
            port = listener.address[1]
            assert port == server.address[1]
            for network in (TcpNetwork(), UtpNetwork(client)):
                transport, _ = await network.connect(Sink, LOCAL, port)
                transport.write(b"hi")
                await asyncio.sleep(0.05)
                transport.close()
            assert len(accepted.made) == 2
        finally:
            for sink in accepted.made:
                if sink.transport is not None:
                    sink.transport.close()
            listener.close()
            await listener.wait_closed()


async def test_listen_moves_tcp_elsewhere_when_the_port_number_is_taken() -> None:
    async with UtpSocket(host=LOCAL) as server:
        with socket.socket() as squatter:
            squatter.bind((LOCAL, server.address[1]))
            squatter.listen()
            listener = await _dual_listen(server, Counting())
            try:
                assert listener.address[1] != server.address[1]
            finally:
                listener.close()
                await listener.wait_closed()
