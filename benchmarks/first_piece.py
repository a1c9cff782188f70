#!/usr/bin/env python3
"""Time to the first piece over TCP and uTP, on loopback, against libtorrent 2.1 and aria2.

A. Others dialling our seed (the seed listens on TCP only, or on TCP and uTP with
   ``DualNetwork``); the leech is:
   - libtorrent with its default transports (uTP first, TCP after its 3 s uTP time-out);
   - libtorrent with TCP switched off (uTP only);
   - aria2c (TCP only; it finds the seed through our tracker, so its time includes one
     announce).
   Time = from adding the torrent to libtorrent (or starting aria2c) to the first piece:
   libtorrent's first ``piece_finished_alert`` (polled every 5 ms), or, for aria2c, our seed
   having uploaded one piece's bytes. The reference row is libtorrent -> libtorrent, same
   settings, same run. libtorrent dials its new peers on a 0.5 s tick, so no libtorrent row
   is below that.
B. Our leech dialling, by ``DualNetwork`` policy (tcp-first, utp-first, both), a seed that is
   libtorrent (defaults: TCP and uTP), libtorrent with TCP off, or aria2c (TCP only). Time =
   from starting our torrent (the seed's address given) to one piece's bytes downloaded, and
   to the whole file verified (which transport the policy picked shows here).

libtorrent runs in this process (its own threads), with the single-IP loopback settings of
PITFALLS.md, plaintext, no DHT/LSD/UPnP; our peers run on this process's event loop. Each row
is run ``--repeat`` times with a fresh seed and leech; the median is printed with the range.

Run: python3 benchmarks/first_piece.py [--repeat 3] [--size-mib 32] [--give-up 10]
     [--skip-aria2] [--skip-ours-dialling]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import libtorrent as lt
from aiohttp import web

from hubswarm.hub.tracker import TrackerConfig, create_tracker_app
from hubswarm.net import StreamNetwork, TcpNetwork
from hubswarm.proto.metainfo import Metainfo, parse_metainfo
from hubswarm.swarm.dualstack import DIAL_POLICIES, DialPolicy, DualNetwork
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.maketorrent import create_torrent
from hubswarm.swarm.session import SessionConfig
from hubswarm.swarm.utp import UtpNetwork, UtpSocket

MIB = 1024 * 1024
LOCAL = "127.0.0.1"
PIECE = 256 * 1024

LT_BASE: dict[str, Any] = {
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_ip_notifier": False,
    "allow_multiple_connections_per_ip": True,
    "ssrf_mitigation": False,
    "out_enc_policy": 2,  # plaintext: we do not speak MSE/PE yet
    "in_enc_policy": 2,
    "stop_tracker_timeout": 0,
    "alert_mask": lt.alert.category_t.status_notification
    | lt.alert.category_t.piece_progress_notification,
}
LT_DEFAULT_TRANSPORTS = {
    "enable_outgoing_tcp": True,
    "enable_incoming_tcp": True,
    "enable_outgoing_utp": True,
    "enable_incoming_utp": True,
}
LT_UTP_ONLY = {**LT_DEFAULT_TRANSPORTS, "enable_outgoing_tcp": False, "enable_incoming_tcp": False}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


def config() -> SessionConfig:
    return SessionConfig(
        choke_interval=1.0,
        announce_interval=1.0,
        connect_timeout=5.0,
        reconnect_min=0.3,
        reconnect_max=1.0,
        use_dht=False,
        max_per_address=None,  # every peer here is on 127.0.0.1
    )


@contextlib.contextmanager
def lt_session(transports: dict[str, bool]) -> Iterator[tuple[Any, int]]:
    port = free_port()
    session = lt.session({**LT_BASE, **transports, "listen_interfaces": f"{LOCAL}:{port}"})
    try:
        yield session, port
    finally:
        for handle in session.get_torrents():
            with contextlib.suppress(Exception):
                session.remove_torrent(handle)
        session.pause()
        del session


def lt_add(session: Any, raw: bytes, save: Path, peers: list[tuple[str, int]], seed: bool) -> Any:
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(lt.bdecode(raw))
    params.save_path = str(save)
    params.peers = peers  # once: a peer re-added with connect_peer is re-dialled over uTP
    if seed:
        params.flags |= lt.torrent_flags.seed_mode
    return session.add_torrent(params)


async def lt_first_piece(session: Any, give_up: float, started: float) -> float | None:
    while time.monotonic() - started < give_up:
        for alert in session.pop_alerts():
            if isinstance(alert, lt.piece_finished_alert):
                return time.monotonic() - started
        await asyncio.sleep(0.005)
    return None


async def lt_ready(session: Any, handle: Any) -> None:
    """A libtorrent seed refuses connections until it has started its torrent."""
    for _ in range(400):
        session.pop_alerts()
        status = handle.status()
        if status.is_seeding and not status.paused:
            await asyncio.sleep(0.2)
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("libtorrent seed did not start")


@contextlib.asynccontextmanager
async def our_network(kind: str, policy: DialPolicy = "tcp-first") -> AsyncIterator[StreamNetwork]:
    if kind == "tcp":
        yield TcpNetwork()
        return
    async with UtpSocket(host=LOCAL, rng=random.Random()) as sock:
        yield DualNetwork(TcpNetwork(), UtpNetwork(sock), policy)


@contextlib.asynccontextmanager
async def tracker() -> AsyncIterator[str]:
    runner = web.AppRunner(create_tracker_app(TrackerConfig(interval=1)))
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOCAL, 0)
        await site.start()
        yield f"http://{LOCAL}:{runner.addresses[0][1]}/announce"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def aria2c(args: list[str], cwd: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    exe = shutil.which("aria2c")
    if exe is None:
        raise RuntimeError("aria2c is not installed")
    cmd = [
        exe,
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--disable-ipv6=true",
        f"--listen-port={port}",
        "--bt-require-crypto=false",
        "--bt-min-crypto-level=plain",
        "--console-log-level=error",
        "--summary-interval=0",
        "--file-allocation=none",
        *args,
    ]
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


async def wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(LOCAL, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.3)
        return
    raise RuntimeError(f"nothing listens on {port}")


class Bench:
    def __init__(self, work: Path, size: int, give_up: float) -> None:
        self.work = work
        self.give_up = give_up
        self.seed_dir = work / "seed"
        self.seed_dir.mkdir(parents=True)
        (self.seed_dir / "file.bin").write_bytes(random.Random(1).randbytes(size))
        self.runs = 0

    def fresh(self) -> Path:
        self.runs += 1
        out = self.work / f"out{self.runs}"
        out.mkdir()
        return out

    def torrent(self, trackers: tuple[str, ...] = ()) -> tuple[Metainfo, bytes]:
        _, raw = create_torrent(self.seed_dir / "file.bin", piece_length=PIECE, trackers=trackers)
        return parse_metainfo(raw), raw

    # --- A: others dialling our seed ---------------------------------------------------

    async def lt_to_ours(self, transports: dict[str, bool], seed_kind: str) -> float | None:
        mi, raw = self.torrent()
        async with (
            our_network(seed_kind) as network,
            SwarmPeer(config(), host=LOCAL, network=network) as seed,
            seed.torrent(mi.info_hash, self.seed_dir, info=mi.info, seed_mode=True),
        ):
            await asyncio.sleep(0.2)
            with lt_session(transports) as (session, _):
                started = time.monotonic()
                lt_add(session, raw, self.fresh(), [(LOCAL, seed.port)], seed=False)
                return await lt_first_piece(session, self.give_up, started)

    async def lt_to_lt(self, transports: dict[str, bool]) -> float | None:
        _, raw = self.torrent()
        with lt_session(transports) as (seeder, port):
            await lt_ready(seeder, lt_add(seeder, raw, self.seed_dir, [], seed=True))
            with lt_session(transports) as (session, _):
                started = time.monotonic()
                lt_add(session, raw, self.fresh(), [(LOCAL, port)], seed=False)
                return await lt_first_piece(session, self.give_up, started)

    async def aria2_to_ours(self, seed_kind: str) -> float | None:
        async with tracker() as announce:
            mi, raw = self.torrent((announce,))
            out = self.fresh()
            (out / "t.torrent").write_bytes(raw)
            async with (
                our_network(seed_kind) as network,
                SwarmPeer(config(), host=LOCAL, network=network) as seed,
                seed.torrent(
                    mi.info_hash,
                    self.seed_dir,
                    info=mi.info,
                    trackers=mi.announce_list,
                    seed_mode=True,
                ) as seeding,
            ):
                await asyncio.sleep(0.5)  # our announce is in
                args = ["--seed-time=0", "-d", str(out), str(out / "t.torrent")]
                started = time.monotonic()
                with aria2c(args, out, free_port()):
                    while time.monotonic() - started < self.give_up:
                        if seeding.stats.uploaded >= PIECE:
                            return time.monotonic() - started
                        await asyncio.sleep(0.005)
        return None

    # --- B: our leech dialling ------------------------------------------------------------

    async def ours_from(self, policy: DialPolicy, seed: str) -> tuple[float | None, float | None]:
        mi, raw = self.torrent()
        if seed == "aria2c":
            port = free_port()
            (self.work / "seed.torrent").write_bytes(raw)
            args = [
                "--seed-ratio=0.0",
                "--bt-seed-unverified=true",
                "-d",
                str(self.seed_dir),
                str(self.work / "seed.torrent"),
            ]
            with aria2c(args, self.work, port):
                await wait_listening(port)
                return await self._our_leech(policy, mi, port)
        transports = LT_DEFAULT_TRANSPORTS if seed == "libtorrent" else LT_UTP_ONLY
        with lt_session(transports) as (seeder, port):
            await lt_ready(seeder, lt_add(seeder, raw, self.seed_dir, [], seed=True))
            return await self._our_leech(policy, mi, port)

    async def _our_leech(
        self, policy: DialPolicy, mi: Metainfo, port: int
    ) -> tuple[float | None, float | None]:
        first: float | None = None
        async with (
            our_network("dual", policy) as network,
            SwarmPeer(config(), host=LOCAL, network=network) as leech,
        ):
            started = time.monotonic()
            async with leech.torrent(
                mi.info_hash, self.fresh(), info=mi.info, peers=[(LOCAL, port)]
            ) as session:
                while time.monotonic() - started < self.give_up:
                    if first is None and session.stats.downloaded_from_peers >= PIECE:
                        first = time.monotonic() - started
                    if session.stats.completed_at is not None:
                        return first, time.monotonic() - started
                    await asyncio.sleep(0.005)
        return first, None


def cell(samples: list[float | None], give_up: float) -> str:
    done = [s for s in samples if s is not None]
    if not done:
        return f"none in {give_up:.0f} s"
    text = f"{statistics.median(done):.2f} s ({min(done):.2f}-{max(done):.2f})"
    if len(done) < len(samples):
        text += f", {len(samples) - len(done)} of {len(samples)} none in {give_up:.0f} s"
    return text


async def measure(
    label: str, run: Callable[[], Awaitable[float | None]], repeat: int, give_up: float
) -> None:
    samples = [await run() for _ in range(repeat)]
    print(f"| {label} | {cell(samples, give_up)} |", flush=True)


async def measure_two(
    label: str,
    run: Callable[[], Awaitable[tuple[float | None, float | None]]],
    repeat: int,
    give_up: float,
) -> None:
    samples = [await run() for _ in range(repeat)]
    first, whole = cell([s[0] for s in samples], give_up), cell([s[1] for s in samples], give_up)
    print(f"| {label} | {first} | {whole} |", flush=True)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="first_piece_") as tmp:
        bench = Bench(Path(tmp), args.size_mib * MIB, args.give_up)
        r, g = args.repeat, args.give_up
        print(f"libtorrent {lt.__version__}; {args.size_mib} MiB, {PIECE // 1024} KiB pieces;")
        print(f"median of {r} (range), give up after {g:.0f} s\n")
        print("| A. leech -> seed | time to first piece |")
        print("|---|---|")
        lt_def, lt_utp = LT_DEFAULT_TRANSPORTS, LT_UTP_ONLY
        await measure("libtorrent (defaults) -> libtorrent (reference)",
                      lambda: bench.lt_to_lt(lt_def), r, g)  # fmt: skip
        await measure("libtorrent (defaults) -> ours, TCP only",
                      lambda: bench.lt_to_ours(lt_def, "tcp"), r, g)  # fmt: skip
        await measure("libtorrent (defaults) -> ours, DualNetwork",
                      lambda: bench.lt_to_ours(lt_def, "dual"), r, g)  # fmt: skip
        await measure("libtorrent (TCP off) -> ours, TCP only",
                      lambda: bench.lt_to_ours(lt_utp, "tcp"), 1, g)  # fmt: skip
        await measure("libtorrent (TCP off) -> ours, DualNetwork",
                      lambda: bench.lt_to_ours(lt_utp, "dual"), r, g)  # fmt: skip
        if not args.skip_aria2:
            await measure("aria2c (TCP only, via tracker) -> ours, TCP only",
                          lambda: bench.aria2_to_ours("tcp"), r, g)  # fmt: skip
            await measure("aria2c (TCP only, via tracker) -> ours, DualNetwork",
                          lambda: bench.aria2_to_ours("dual"), r, g)  # fmt: skip
        if args.skip_ours_dialling:
            return
        print("\n| B. ours (DualNetwork policy) -> seed | time to first piece | whole file |")
        print("|---|---|---|")
        seeds = ["libtorrent", "libtorrent-utp-only"] + ([] if args.skip_aria2 else ["aria2c"])
        for seed in seeds:
            for policy in DIAL_POLICIES:
                await measure_two(f"{policy} -> {seed}",
                                  lambda p=policy, s=seed: bench.ours_from(p, s), r, g)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=32)
    parser.add_argument("--give-up", type=float, default=10.0)
    parser.add_argument("--skip-aria2", action="store_true")
    parser.add_argument("--skip-ours-dialling", action="store_true")
    asyncio.run(main(parser.parse_args()))
