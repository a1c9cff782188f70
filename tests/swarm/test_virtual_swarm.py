"""A whole swarm in virtual time: real SwarmPeer/TorrentSession objects on a MemoryNetwork.

A seed and three leeches, every byte verified, completion at a virtual time that follows
the network's latency, the same to the microsecond when run twice with the same seeds.
No sockets, no wall-clock sleeps: the run takes a fraction of a second of real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from pathlib import Path

import pytest

from hubswarm import vtime
from hubswarm.clock import Clock
from hubswarm.memnet import MemoryNetwork
from hubswarm.swarm import session as session_module
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.session import TorrentSession
from hubswarm.swarm.storage import PieceStore

from .swarmkit import KIB, MIB, fast_config, make_file, make_torrent

pytestmark = pytest.mark.timeout(60)

SEED_IP = "10.0.0.1"
LEECHES = 3


async def _swarm(tmp: Path, latency: float, seed: int) -> list[float]:
    """Seconds (virtual) from the leeches' start to each one's completion."""
    data = make_file(tmp / "seed" / "v.bin", 1 * MIB, seed=3)
    mi, _ = make_torrent(tmp / "seed" / "v.bin", 64 * KIB)
    network = MemoryNetwork(latency=latency, rng=random.Random(seed))
    clock = Clock(epoch=0.0)
    loop = asyncio.get_running_loop()

    def config(k: int) -> object:
        return fast_config(rng_seed=seed * 100 + k, peer_id=b"-HS0100-virtual%05d" % k)

    async with contextlib.AsyncExitStack() as stack:
        seed_peer = await stack.enter_async_context(
            SwarmPeer(config(0), host=SEED_IP, network=network.host(SEED_IP), clock=clock)
        )
        await stack.enter_async_context(
            seed_peer.torrent(mi.info_hash, tmp / "seed", info=mi.info, seed_mode=True)
        )
        started = loop.time()
        sessions: list[TorrentSession] = []
        for k in range(1, LEECHES + 1):
            ip = f"10.0.0.{k + 1}"
            peer = await stack.enter_async_context(
                SwarmPeer(config(k), host=ip, network=network.host(ip), clock=clock)
            )
            sessions.append(
                await stack.enter_async_context(
                    peer.torrent(
                        mi.info_hash,
                        tmp / f"leech{k}",
                        info=mi.info,
                        peers=[(SEED_IP, seed_peer.port)],
                    )
                )
            )
        done: list[float] = [0.0] * LEECHES

        async def finish(k: int, session: TorrentSession) -> None:
            await session.wait_complete(timeout=60)
            done[k] = loop.time() - started

        async with asyncio.TaskGroup() as tg:
            for k, session in enumerate(sessions):
                tg.create_task(finish(k, session))
    for k in range(1, LEECHES + 1):
        assert (tmp / f"leech{k}" / "v.bin").read_bytes() == data
    return done


@pytest.mark.parametrize("latency", [0.001, 0.01, 0.05])
def test_a_small_swarm_completes_in_virtual_time_set_by_the_latency(
    tmp_path: Path, latency: float
) -> None:
    done = vtime.run(_swarm(tmp_path, latency, seed=7))
    rtt = 2 * latency
    # Four round trips: connect; handshakes; bitfield and interested / unchoke; requests
    # and their blocks. The request queue (64 blocks) holds the whole 1 MiB file, and the
    # in-memory network has no rate limit, so the last block comes with the first batch.
    assert done == [pytest.approx(4 * rtt, abs=1e-6)] * LEECHES


def test_two_runs_with_the_same_seeds_complete_at_the_same_virtual_times(
    tmp_path: Path,
) -> None:
    first = vtime.run(_swarm(tmp_path / "a", 0.02, seed=11))
    second = vtime.run(_swarm(tmp_path / "b", 0.02, seed=11))
    assert first == second


def test_a_finished_piece_tops_up_requests_when_piece_buffers_bound_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Piece buffers for 4 pieces (the store's floor) of the 16: the picker opens no fifth
    # piece until one is verified, so each leech's requests stop four times. A verified
    # piece must top them up at once; the ticker's refill alone (every 1 s of the choke
    # interval) made each stop last until the next tick.
    store = functools.partial(PieceStore, max_buffer_bytes=64 * KIB)
    monkeypatch.setattr(session_module, "PieceStore", store)
    done = vtime.run(_swarm(tmp_path, 0.01, seed=7))
    assert max(done) < 0.5
