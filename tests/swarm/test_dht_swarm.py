"""The swarm peer on the DHT (BEP 5): no tracker, a magnet with only xt and dn, and BEP 27.

Every DHT node sits on its own 127.7.x.y address (a DHT stores the announcing node's IP, and
the peer listens on the same address), all bootstrapped from one node. The in-process tests
run in virtual time (``vtime.run``) on an in-memory network: their waits of seconds cost
none; the CLI tests run real processes on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hubswarm import vtime
from hubswarm.cli import cli
from hubswarm.clock import Clock
from hubswarm.memnet import MemoryNetwork
from hubswarm.proto.metainfo import Magnet, build_magnet, parse_magnet
from hubswarm.swarm import api
from hubswarm.swarm.dht.node import DHTNode
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.session import TorrentSession

from .swarmkit import (
    KIB,
    MIB,
    FakeDHT,
    fast_config,
    free_port,
    make_file,
    make_torrent,
    share_process,
)

pytestmark = pytest.mark.timeout(60)

LEECHES = 5


def ip(net: int, i: int) -> str:
    """A distinct loopback address per node: 127.7.<net>.<i + 1>."""
    return f"127.7.{net}.{i + 1}"


def bare_magnet(info_hash: bytes, name: str) -> str:
    """A magnet with only the info-hash and the name: no tracker, no web seed, no x.pe."""
    magnet = build_magnet(Magnet(info_hash=info_hash, display_name=name))
    parsed = parse_magnet(magnet)
    assert (parsed.trackers, parsed.web_seeds, parsed.peers) == ((), (), ())
    return magnet


class Hosts:
    """One in-memory network and a clock for the virtual-time tests (1 ms each way)."""

    def __init__(self) -> None:
        self.network = MemoryNetwork(latency=0.001, rng=random.Random(0))
        self.clock = Clock(epoch=0.0)

    def dht_node(
        self, host: str, seed: int, bootstrap: list[tuple[str, int]] | None = None
    ) -> DHTNode:
        return DHTNode(
            host=host,
            bootstrap=bootstrap or [],
            rng=random.Random(seed),
            query_timeout=0.5,
            clock=self.clock,
            network=self.network.host(host),
        )

    def peer(self, config: Any, host: str, dht: Any = None) -> SwarmPeer:
        network = self.network.host(host)
        return SwarmPeer(config, host=host, dht=dht, network=network, clock=self.clock)


def stored_anywhere(nodes: list[DHTNode], info_hash: bytes) -> list[tuple[str, int]]:
    """Peers any node's store holds for ``info_hash``."""
    found: list[tuple[str, int]] = []
    now = asyncio.get_running_loop().time()
    for node in nodes:
        found += node.peers.get(info_hash, now, 50, random.Random(0))
    return found


def test_one_seed_five_leeches_meet_through_the_dht_only(tmp_path: Path) -> None:
    # The helper asserts every leech verified the file and the seed announced itself; the
    # time is virtual, within the helper's 30 s bound.
    took = vtime.run(_seed_and_leeches(tmp_path))
    assert 0 < took < 30, f"1 seed + {LEECHES} leeches over the DHT: {took:.1f} s (virtual)"


async def _seed_and_leeches(tmp_path: Path) -> float:
    hosts = Hosts()
    loop = asyncio.get_running_loop()
    data = make_file(tmp_path / "seed" / "payload.bin", 3 * MIB + 4321, seed=11)
    mi, _ = make_torrent(tmp_path / "seed" / "payload.bin", 64 * KIB)
    source = api.load_source(bare_magnet(mi.info_hash, "payload.bin"))
    assert (source.metainfo, source.trackers, source.peers) == (None, (), ())
    started = loop.time()
    async with contextlib.AsyncExitStack() as stack:
        boot = await stack.enter_async_context(hosts.dht_node(ip(0, 0), 1))
        nodes = [boot]
        sessions: list[TorrentSession] = []
        for i in range(1 + LEECHES):
            host = ip(0, i + 1)
            node = await stack.enter_async_context(hosts.dht_node(host, 100 + i, [boot.address]))
            nodes.append(node)
            peer = await stack.enter_async_context(
                hosts.peer(fast_config(use_dht=True, rng_seed=i), host, node)
            )
            session = await stack.enter_async_context(
                peer.torrent(
                    source.info_hash,
                    tmp_path / ("seed" if i == 0 else f"leech{i}"),
                    info=mi.info if i == 0 else None,  # the leeches have the magnet only
                )
            )
            sessions.append(session)
        assert sessions[0].is_seed
        async with asyncio.timeout(30), asyncio.TaskGroup() as tg:
            for session in sessions[1:]:
                tg.create_task(session.wait_complete())
        took = loop.time() - started
        stored = stored_anywhere(nodes, mi.info_hash)
        assert (ip(0, 1), sessions[0].listen_port) in stored, "the seed announced itself"
        for session in sessions[1:]:
            assert session.stats.bad_pieces == 0
            assert session.stats.downloaded_from_peers >= mi.info.total_length
    for i in range(1, 1 + LEECHES):
        assert (tmp_path / f"leech{i}" / "payload.bin").read_bytes() == data
    return took


def test_private_torrent_never_touches_the_dht(tmp_path: Path) -> None:
    data = vtime.run(_private_torrent(tmp_path))
    assert (tmp_path / "leech" / "p.bin").read_bytes() == data


async def _private_torrent(tmp_path: Path) -> bytes:
    """The seed's data, once the leech finished without a DHT call on either side."""
    hosts = Hosts()
    data = make_file(tmp_path / "seed" / "p.bin", 512 * KIB, seed=3)
    mi, _ = make_torrent(tmp_path / "seed" / "p.bin", 64 * KIB, private=True)
    assert mi.info.private
    seed_dht, leech_dht = FakeDHT([]), FakeDHT([])
    async with (
        hosts.peer(fast_config(use_dht=True), ip(1, 1), seed_dht) as seed,
        seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
        hosts.peer(fast_config(use_dht=True), ip(1, 2), leech_dht) as leech,
        leech.torrent(
            mi.info_hash, tmp_path / "leech", info=mi.info, peers=[(ip(1, 1), seed.port)]
        ) as session,
    ):
        await session.wait_complete(20)
        await asyncio.sleep(1.5)  # a public torrent would have queried by now (at once, 0.25 s)
        assert seed_dht.calls == []
        assert leech_dht.calls == []
    return data


def test_public_torrent_queries_at_once_and_retries_fast(tmp_path: Path) -> None:
    calls = vtime.run(_public_torrent(tmp_path))
    assert calls.count("get_peers") == 3, "then after 0.5 s (doubling)"


async def _public_torrent(tmp_path: Path) -> list[str]:
    """The DHT calls of a lone public torrent's first 0.85 s."""
    hosts = Hosts()
    make_file(tmp_path / "seed" / "q.bin", 100 * KIB, seed=4)
    mi, _ = make_torrent(tmp_path / "seed" / "q.bin", 64 * KIB)
    dht = FakeDHT([])
    async with (
        hosts.peer(fast_config(use_dht=True), ip(1, 3), dht) as peer,
        peer.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
    ):
        await asyncio.sleep(0.1)
        assert dht.calls == ["get_peers", "announce_peer"], "first lookup and announce at once"
        await asyncio.sleep(0.25)
        assert dht.calls.count("get_peers") == 2, "retried after 0.25 s while alone"
        await asyncio.sleep(0.5)
        return list(dht.calls)


def test_magnet_of_private_torrent_stops_using_the_dht(tmp_path: Path) -> None:
    data = vtime.run(_magnet_of_private_torrent(tmp_path))
    assert (tmp_path / "leech" / "m.bin").read_bytes() == data


async def _magnet_of_private_torrent(tmp_path: Path) -> bytes:
    """The seed's data, once the magnet's leech finished and stopped calling the DHT."""
    hosts = Hosts()
    # With a bare magnet nothing says "private" until the metadata arrives (BEP 27 then applies).
    data = make_file(tmp_path / "seed" / "m.bin", 256 * KIB, seed=5)
    mi, _ = make_torrent(tmp_path / "seed" / "m.bin", 64 * KIB, private=True)
    async with (
        hosts.peer(fast_config(), ip(1, 4)) as seed,
        seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
    ):
        dht = FakeDHT([(ip(1, 4), seed.port)])
        async with (
            hosts.peer(fast_config(use_dht=True), ip(1, 5), dht) as leech,
            leech.torrent(mi.info_hash, tmp_path / "leech") as session,
        ):
            await session.wait_complete(20)
            assert session.info is not None
            assert session.info.private
            calls = len(dht.calls)
            await asyncio.sleep(2.5)  # announce_interval is 1 s in fast_config
            assert len(dht.calls) == calls
    return data


async def until(condition: Any, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


def test_peer_dht_state_is_saved_on_exit_and_reloaded(tmp_path: Path) -> None:
    without_state = vtime.run(_dht_state(tmp_path))
    assert without_state is None  # no bootstrap and no state file: no DHT node at all


async def _dht_state(tmp_path: Path) -> object:
    """Saves and reloads a peer's DHT state; returns the node made with neither."""
    hosts = Hosts()

    def on(host: str) -> dict[str, Any]:
        return {"clock": hosts.clock, "network": hosts.network.host(host)}

    state = tmp_path / "dht.json"
    async with hosts.dht_node(ip(2, 0), 7) as boot:
        async with api._maybe_dht([boot.address], ip(2, 1), state, **on(ip(2, 1))) as first:
            assert isinstance(first, DHTNode)
            first_id = first.node_id
            # The peer's node bootstraps in the background (its torrent does not wait).
            await until(lambda: len(first.table) >= 1)
        saved = json.loads(state.read_text())
        assert saved["node_id"] == first_id.hex()
        assert [boot.address[0], boot.address[1]] in [n[1:] for n in saved["nodes"]]
        # No bootstrap given: the saved contacts are enough to join again, with the same id.
        async with api._maybe_dht([], ip(2, 2), state, **on(ip(2, 2))) as second:
            assert isinstance(second, DHTNode)
            assert second.node_id == first_id
            await until(lambda: second.table.get(boot.node_id) is not None)
    async with api._maybe_dht([], ip(2, 3), None, **on(ip(2, 3))) as none:
        return none


def test_cli_passes_dht_state_to_fetch_and_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    async def fake(*args: Any, **kwargs: Any) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(api, "fetch", fake)
    monkeypatch.setattr(api, "share", fake)
    state = tmp_path / "s.json"
    magnet = bare_magnet(bytes(range(20)), "x")
    args = ["fetch", magnet, "-q", "--dht-bootstrap", "127.7.3.1:7000", "--dht-state", str(state)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert seen["dht_state"] == state
    assert seen["dht_bootstrap"] == [("127.7.3.1", 7000)]
    seen.clear()
    (tmp_path / "f").write_bytes(b"x")
    result = CliRunner().invoke(cli, ["share", str(tmp_path / "f"), "--dht-state", str(state)])
    assert result.exit_code == 0, result.output
    assert seen["dht_state"] == state
    seen.clear()
    result = CliRunner().invoke(cli, ["fetch", magnet, "-q"])
    assert result.exit_code == 0, result.output
    assert "dht_state" not in seen  # default: no state file


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def test_cli_fetch_of_bare_magnet_over_dht(tmp_path: Path) -> None:
    """``hubswarm dht node`` + ``share --dht-bootstrap`` + ``fetch MAGNET`` (xt and dn only)."""
    data = make_file(tmp_path / "seed" / "cli.bin", 2 * MIB + 77, seed=9)
    node = subprocess.Popen(
        [sys.executable, "-m", "hubswarm", "dht", "node", "--port", "0", "--host", ip(3, 0),
         "--duration", "40", "--status-every", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert node.stdout is not None
        first = node.stdout.readline().decode()
        assert first.startswith("dht node "), first
        boot = first.rsplit(" ", 1)[1].strip()
        torrent = tmp_path / "cli.torrent"
        with share_process(
            tmp_path / "seed" / "cli.bin", torrent, free_port(), "--dht-bootstrap", boot
        ) as shared:
            magnet = bare_magnet(bytes.fromhex(str(shared["info_hash"])), "cli.bin")
            out = subprocess.run(
                [sys.executable, "-m", "hubswarm", "fetch", magnet, "-o", str(tmp_path / "out"),
                 "--host", ip(3, 2), "--dht-bootstrap", boot, "--fast-intervals", "-q", "--json",
                 "--timeout", "25", "--stall-timeout", "20"],
                capture_output=True, timeout=40,
            )  # fmt: skip
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        record = json.loads(out.stdout.decode().strip().splitlines()[-1])
        assert record["verified"] is True
        assert record["bytes"] == len(data)
        assert (tmp_path / "out" / "cli.bin").read_bytes() == data
        print(f"CLI fetch of a bare magnet over the DHT: {record['seconds']:.1f} s")
    finally:
        _stop(node)
