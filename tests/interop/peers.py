"""Real third-party peers for interop tests: libtorrent sessions and aria2c processes.

Everything listens on 127.0.0.1 only (or ``::1`` where a test asks) and is stopped by the
code that started it (by PID for processes). Loops are bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hubswarm.swarm.rc4transport import Rc4Transport
from hubswarm.swarm.session import TorrentSession

try:
    import libtorrent as lt
except ImportError as exc:  # pragma: no cover - install.sh --test installs it
    raise RuntimeError(
        "libtorrent's Python bindings are missing: run `bash scripts/install.sh --test`"
    ) from exc


# Below Linux's ephemeral range (32768-60999): no connect or port-0 bind of another peer in
# the test can take the port between this choice and the client's own bind.
_FIXED_PORTS = range(20000, 32000)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on TCP and UDP a moment ago on ``host`` (127.0.0.1 or ::1), chosen outside
    the ephemeral range so the kernel hands it to nobody else meanwhile."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    rng = random.Random()
    for _ in range(200):
        port = rng.choice(_FIXED_PORTS)
        try:
            with (
                socket.socket(family, socket.SOCK_STREAM) as tcp,
                socket.socket(family, socket.SOCK_DGRAM) as udp,
            ):
                tcp.bind((host, port))
                udp.bind((host, port))
        except OSError:
            continue
        return port
    raise AssertionError(f"no free port in {_FIXED_PORTS} on {host}")


@contextlib.asynccontextmanager
async def link_kinds(session: TorrentSession) -> AsyncIterator[list[bool]]:
    """Whether each link ``session`` held (sampled every 5 ms while the block runs) was RC4
    (:class:`~hubswarm.swarm.rc4transport.Rc4Transport`): the list is filled when the block ends."""
    seen: dict[int, bool] = {}

    async def sample() -> None:
        while True:
            for link in list(session.links):
                seen[id(link)] = isinstance(link.protocol.transport, Rc4Transport)
            await asyncio.sleep(0.005)

    kinds: list[bool] = []
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(sample())
        try:
            yield kinds
        finally:
            task.cancel()
            kinds.extend(seen.values())


def lt_settings(
    port: int, *, dht: bool = False, host: str = "127.0.0.1", **extra: Any
) -> dict[str, Any]:
    """libtorrent settings for a single-IP lab on loopback (see PITFALLS.md)."""
    settings: dict[str, Any] = {
        "listen_interfaces": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "enable_dht": dht,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        # uTP was ~16x slower than TCP here; aria2 has no uTP at all.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "ssrf_mitigation": False,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "alert_mask": lt.alert.category_t.all_categories,
        # plaintext: these tests are about the wire protocol; tests/interop/test_mse_libtorrent.py
        # forces encryption
        "out_enc_policy": 2,
        "in_enc_policy": 2,
        "min_reconnect_time": 1,
        # Closing the session waits for `stopped` announces; a tracker served by the same event
        # loop cannot answer while close() blocks it, so do not wait (default 1 s per tracker,
        # and the receive timeout on top).
        "stop_tracker_timeout": 0,
        "peer_connect_timeout": 3,
    }
    settings.update(extra)
    return settings


class LtPeer:
    """One libtorrent session with at most one torrent, on 127.0.0.1."""

    def __init__(self, *, dht: bool = False, **extra: Any) -> None:
        self.port = free_port()
        self.session = lt.session(lt_settings(self.port, dht=dht, **extra))
        self.handle: Any = None

    def add(
        self,
        save_path: Path,
        *,
        torrent: bytes | None = None,
        magnet: str | None = None,
        seed_mode: bool = False,
    ) -> Any:
        """Add a torrent (bencoded bytes) or a magnet link; return the handle."""
        if torrent is not None:
            params = lt.add_torrent_params()
            params.ti = lt.torrent_info(lt.bdecode(torrent))
        else:
            assert magnet is not None
            params = lt.parse_magnet_uri(magnet)
        params.save_path = str(save_path)
        if seed_mode:
            params.flags |= lt.torrent_flags.seed_mode
        self.handle = self.session.add_torrent(params)
        return self.handle

    def connect(self, host: str, port: int) -> None:
        """Tell libtorrent to dial a peer directly."""
        self.handle.connect_peer((host, port))

    def progress(self) -> float:
        return float(self.handle.status().progress)

    def is_seed(self) -> bool:
        st = self.handle.status()
        return bool(st.is_seeding or st.is_finished)

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        """Poll ``predicate()`` until true or fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.session.pop_alerts()
            if predicate():
                return
            time.sleep(0.1)
        st = self.handle.status() if self.handle is not None else None
        state = (
            f"progress={st.progress:.3f} peers={st.num_peers} state={st.state} "
            f"error={st.errc.message()}"
            if st is not None
            else "no torrent"
        )
        raise AssertionError(f"libtorrent: {what} not reached in {timeout} s ({state})")

    async def await_(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Like :meth:`wait`, but yields to the event loop (our own peers run on it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.session.pop_alerts()
            if predicate():
                return
            await asyncio.sleep(0.1)
        self.wait(predicate, 0, what)  # raises with libtorrent's state

    def close(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(Exception):
                self.session.remove_torrent(self.handle)
        self.session.pause()
        del self.session


def lt_make_torrent(path: Path, piece_length: int, trackers: tuple[str, ...] = ()) -> bytes:
    """A v1-only .torrent of ``path`` made by libtorrent (its info-hash is sha1(info))."""
    with warnings.catch_warnings():
        # add_files / create_torrent(file_storage) are deprecated in 2.1 but still the simplest.
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = lt.file_storage()
        lt.add_files(fs, str(path))
        ct = lt.create_torrent(fs, piece_length, flags=lt.create_torrent.v1_only)
        for tier, url in enumerate(trackers):
            ct.add_tracker(url, tier)
        lt.set_piece_hashes(ct, str(path.parent))
        return bytes(lt.bencode(ct.generate()))


@contextlib.contextmanager
def lt_peer(**kwargs: Any) -> Iterator[LtPeer]:
    peer = LtPeer(**kwargs)
    try:
        yield peer
    finally:
        peer.close()


def aria2c_path() -> str:
    path = shutil.which("aria2c")
    if path is None:
        raise AssertionError(
            "aria2c is missing: run `bash scripts/install.sh --test` (Debian aria2)"
        )
    return path


@contextlib.contextmanager
def aria2c(args: list[str], *, cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run aria2c with lab-safe options; stop it by PID when the block ends."""
    port = free_port()
    cmd = [
        aria2c_path(),
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--disable-ipv6=true",
        f"--listen-port={port}",
        "--bt-require-crypto=false",
        "--bt-min-crypto-level=plain",
        "--check-certificate=false",
        "--console-log-level=warn",
        "--summary-interval=0",
        "--file-allocation=none",
        f"--log={log}",
        "--log-level=info",
        *args,
    ]
    with stopped_by_pid(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        yield proc


@contextlib.contextmanager
def stopped_by_pid(cmd: list[str], **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``cmd`` in a session of its own; SIGTERM it by PID when the block ends (SIGKILL
    if it is still there 10 s later)."""
    proc = subprocess.Popen(cmd, start_new_session=True, **popen)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@contextlib.contextmanager
def lt_session(host: str = "127.0.0.1", **settings: Any) -> Iterator[tuple[Any, int]]:
    """A libtorrent session on ``host`` (the single-IP settings plus ``settings``) and its
    port; its torrents removed, paused and dropped after."""
    port = free_port(host)
    session = lt.session(lt_settings(port, host=host, **settings))
    try:
        yield session, port
    finally:
        for handle in session.get_torrents():
            with contextlib.suppress(Exception):
                session.remove_torrent(handle)
        session.pause()
        del session


def lt_add(
    session: Any,
    raw: bytes,
    save_path: Path,
    *,
    peers: Sequence[tuple[str, int]] = (),
    seed_mode: bool = False,
) -> Any:
    """Add a torrent (its raw bytes) to ``session``; ``peers`` once, in the add params (a
    peer re-added with connect_peer is re-dialled over uTP again and again: PITFALLS)."""
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(lt.bdecode(raw))
    params.save_path = str(save_path)
    params.peers = list(peers)
    if seed_mode:
        params.flags |= lt.torrent_flags.seed_mode
    return session.add_torrent(params)


async def lt_until(session: Any, predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate()`` (yielding to our peers on the loop) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.pop_alerts()
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"libtorrent: {what} not reached in {timeout} s")


async def lt_seeding(session: Any, raw: bytes, save_path: Path) -> Any:
    """Add a torrent whose data is at ``save_path`` as a seed (no recheck) and wait until it
    seeds: libtorrent refuses a torrent's connections until it has started it."""
    handle = lt_add(session, raw, save_path, seed_mode=True)
    await lt_until(
        session,
        lambda: handle.status().is_seeding and not handle.status().paused,
        20,
        "seeding",
    )
    return handle
