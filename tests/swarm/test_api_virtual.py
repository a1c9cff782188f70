"""``api.fetch`` in virtual time on the in-memory network: its peer, session and DHT node
all take the network and the clock they are given."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubswarm import vtime
from hubswarm.clock import Clock
from hubswarm.errors import ConfigError
from hubswarm.memnet import EPHEMERAL_PORT_FIRST, MemoryNetwork
from hubswarm.proto.metainfo import Magnet, build_magnet
from hubswarm.swarm import api

from .swarmkit import KIB, MIB, VirtualHosts, fast_config, make_file, make_torrent

pytestmark = pytest.mark.timeout(60)


async def _fetch(tmp_path: Path) -> api.FetchResult:
    make_file(tmp_path / "seed" / "f.bin", 1 * MIB, seed=5)
    mi, _ = make_torrent(tmp_path / "seed" / "f.bin", 64 * KIB)
    hosts = VirtualHosts(latency=0.01)
    async with (
        hosts.peer(fast_config()) as seed,
        seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info, seed_mode=True),
    ):
        magnet = build_magnet(Magnet(info_hash=mi.info_hash, peers=((seed.host, seed.port),)))
        ip = "10.0.0.9"
        return await api.fetch(
            magnet,
            tmp_path / "leech",
            config=fast_config(use_dht=True),
            host=ip,
            # Nobody answers there: the DHT node's queries time out in virtual time too.
            dht_bootstrap=[("10.0.0.99", 6881)],
            stall_timeout=10,
            network=hosts.network.host(ip),
            clock=hosts.clock,
        )


def test_a_magnet_fetch_runs_in_virtual_time(tmp_path: Path) -> None:
    result = vtime.run(_fetch(tmp_path))
    data = (tmp_path / "seed" / "f.bin").read_bytes()
    assert (tmp_path / "leech" / "f.bin").read_bytes() == data
    assert result.total_length == len(data)
    # A handful of round trips (10 ms each way): connect, handshakes, metadata, data.
    assert 0 < result.seconds < 1.0


async def _peer_port_when_tcp_holds_the_first_number() -> tuple[int, int, int]:
    """Another listener holds on TCP the number the UDP socket takes first."""
    network = MemoryNetwork(latency=0.001)
    host = network.host("10.0.0.5")
    squatter = await host.listen(lambda: _Silent(), "10.0.0.5", EPHEMERAL_PORT_FIRST)
    try:
        config = fast_config(use_utp=True)
        async with api._running_peer(
            config, "10.0.0.5", False, (), None, clock=Clock(epoch=0.0), network=host
        ) as peer:
            udp = network._datagrams.get(("10.0.0.5", peer.port))
            return peer.port, config.listen_port, 0 if udp is None else peer.port
    finally:
        squatter.close()


class _Silent:
    def connection_made(self, transport: object) -> None:
        pass

    def connection_lost(self, exc: object) -> None:
        pass


def test_with_any_port_tcp_and_udp_end_on_one_free_number() -> None:
    port, configured, udp_port = vtime.run(_peer_port_when_tcp_holds_the_first_number())
    assert port != EPHEMERAL_PORT_FIRST
    assert configured == port
    assert udp_port == port  # uTP (and the DHT) listen on the number TCP has


async def _utp_only_fetch(tmp_path: Path) -> tuple[bool, bool, bytes]:
    """A seed and a leech with TCP off: the file can only travel over uTP."""
    make_file(tmp_path / "seed" / "f.bin", 256 * KIB, seed=7)
    mi, _ = make_torrent(tmp_path / "seed" / "f.bin", 64 * KIB)
    network = MemoryNetwork(latency=0.005)
    clock = Clock()
    seed_ip, leech_ip = "10.0.0.5", "10.0.0.6"
    async with (
        api._running_peer(
            fast_config(use_tcp=False),
            seed_ip,
            False,
            (),
            None,
            clock=clock,
            network=network.host(seed_ip),
        ) as seed,
        seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info, seed_mode=True),
    ):
        tcp_listening = (seed_ip, seed.port) in network._listeners
        udp_bound = (seed_ip, seed.port) in network._datagrams
        magnet = build_magnet(Magnet(info_hash=mi.info_hash, peers=((seed_ip, seed.port),)))
        await api.fetch(
            magnet,
            tmp_path / "leech",
            config=fast_config(use_tcp=False),
            host=leech_ip,
            stall_timeout=10,
            network=network.host(leech_ip),
            clock=clock,
        )
    return tcp_listening, udp_bound, (tmp_path / "leech" / "f.bin").read_bytes()


def test_with_tcp_off_a_pair_transfers_over_utp_only(tmp_path: Path) -> None:
    tcp_listening, udp_bound, got = vtime.run(_utp_only_fetch(tmp_path))
    assert not tcp_listening
    assert udp_bound
    assert got == (tmp_path / "seed" / "f.bin").read_bytes()


def test_with_tcp_and_utp_both_off_the_peer_refuses_to_start() -> None:
    async def start() -> None:
        network = MemoryNetwork(latency=0.001)
        config = fast_config(use_tcp=False, use_utp=False)
        async with api._running_peer(
            config, "10.0.0.5", False, (), None, clock=Clock(), network=network.host("10.0.0.5")
        ):
            pass

    with pytest.raises(ConfigError, match="no transport"):
        vtime.run(start())
