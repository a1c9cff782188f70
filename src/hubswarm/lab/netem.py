"""The emulated network: the only code of hubswarm that runs ``ip`` and ``tc``.

Two emulations, one interface (:class:`Network`):

* ``netns`` (root): a bridge ``hsw-<id>-br`` and per host a namespace ``hsw-<id>-h<i>`` joined
  by a veth pair, addresses 10.77.x.y/16 *inside our own namespaces only*. Egress is shaped with
  ``htb`` on both ends of each veth: the host end is the host's upload, the bridge end its
  download (no IFB or police here, see PITFALLS.md). This kernel has no ``netem``, so delay and
  loss are not emulated; :func:`probe_netem` says so for the report.
* ``app`` (no root, or ``--no-netns``): everything on 127.0.0.1. For a server the lab puts a
  shaping TCP proxy in front of it (one listener per client: the server's upload is a token
  bucket shared by all clients, each client's download its own bucket); peers use their own
  rate-limit flags.

Everything we create carries the ``hsw-`` prefix and is removed on exit (context manager, plus
an atexit hook while a network is open); :func:`cleanup_leftovers` removes what a killed run left.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import os
import secrets
import signal
import socket
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Protocol

from hubswarm.errors import NetnsError
from hubswarm.ratelimit import TokenBucket

__all__ = [
    "PREFIX",
    "AppNetwork",
    "Host",
    "NetnsNetwork",
    "Network",
    "PortMap",
    "cleanup_leftovers",
    "install_signal_cleanup",
    "leftovers",
    "link_bucket",
    "netns_available",
    "probe_netem",
]

PREFIX = "hsw-"
# Linux interface names hold at most 15 bytes (IFNAMSIZ 16 with the NUL).
_IFNAMSIZ = 15
# A slow `ip`/`tc` call on a loaded machine still returns in well under a second.
_CMD_TIMEOUT = 20.0
# The proxy forwards in chunks of this size; 16 KiB is the BitTorrent block and keeps the
# token bucket's granularity fine at rates of a few hundred KiB/s.
_PROXY_CHUNK = 16 * 1024
# Token bucket depth: ~10 ms of transfer, at least one chunk. Deep enough to absorb the event
# loop's oversleeping, shallow enough that an idle bucket's head start cannot carry a flash
# crowd below the fluid bound (50 ms measured 1 % under D_cs at N=2).
_BURST_SECONDS = 0.01
# Receive buffer of the proxy's connection to a server (see _connect_small).
_UPSTREAM_RCVBUF = 64 * 1024


@dataclass(frozen=True, slots=True)
class Host:
    """One emulated host: index 0 is the server/seed, 1..N the clients, then services
    that are neither (the p2p runs' DHT bootstrap node, unshaped)."""

    index: int
    address: str
    upload: float  # bytes/s, math.inf = unshaped
    download: float
    namespace: str | None = None


class PortMap(Protocol):
    """Where client i must connect to reach a server port (through shaping, if any)."""

    def address_for(self, client: int) -> tuple[str, int]:
        """(host, port) for client index ``client``."""
        ...


class Network(Protocol):
    """What a runner may use of the emulated network."""

    mode: str  # "netns" or "app"
    hosts: tuple[Host, ...]
    shaped: bool  # True: the kernel shapes every host, processes need no rate flags
    notes: tuple[str, ...]
    mtu: int  # IP packet size of the links (wire counters count frames of mtu + 14 bytes)

    def wrap(self, host: int, argv: Sequence[str]) -> list[str]:
        """The command line that runs argv on host ``host``."""
        ...

    def bind_address(self, host: int) -> str:
        """The address a server on host ``host`` should listen on."""
        ...

    async def expose(self, host: int, port: int, *, upload: float | None = None) -> PortMap:
        """Make a server port on ``host`` reachable by the clients (shaped).

        ``upload``: where the emulation shapes per port (app), this port's share of the
        host's upload (default: all of it); the kernel shapes whole hosts and ignores it.
        """
        ...

    async def isolate(self, host: int) -> None:
        """Cut ``host`` off the network at once (a crashed machine: nothing more leaves it)."""
        ...

    async def tx_bytes(self, host: int) -> int | None:
        """Bytes that left ``host`` on the wire (headers included), if the emulation knows."""
        ...

    async def cut_port(self, host: int, port: int) -> None:
        """Abort the TCP connections of one server port of ``host`` (its process was killed);
        the host's other processes (a seed beside a killed hub) keep their connections."""
        ...


# --- helpers --------------------------------------------------------------------------------


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=_CMD_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done


# Leaf queue of each shaped link: 100 ms of its rate (a modest access-link buffer), at least
# a few full-size packets so TCP can keep the link busy.
_QUEUE_SECONDS = 0.1
_QUEUE_MIN_BYTES = 16 * 1514
# Segments a TCP flow keeps in a link's queue to recover from a loss without a timeout.
_MIN_WINDOW_FRAMES = 2
# IP packet sizes (MTU) of the emulated links: Ethernet's, or jumbo frames (9000, the common
# jumbo size of data-centre switches and NICs) where a frame still crosses the run's slowest
# shaped link within _FRAME_TIME_MAX. The host's kernel switches, shapes and acknowledges per
# packet: at 1 MiB/s a jumbo frame carries 6 x the payload for the same per-packet work (the
# kernel's softirq was 3.2-3.7 CPU-s of a 9-10 CPU-s run at N = 32, issue 18). A slow link
# keeps 1500: a 9 KB frame would take 0.14 s to cross a 64 KiB/s link, and every request
# queued behind one would wait that long.
ETH_MTU = 1500
JUMBO_MTU = 9000
_FRAME_TIME_MAX = 0.01
_ETH_HEADER = 14
_IP_TCP_HEADERS = 20 + 32  # IPv4, TCP with timestamps (Linux sends them by default)
# htb counts every byte of a frame; the bounds (and the app mode's token buckets) count file
# bytes. A full frame carries MTU + 14 bytes (with the Ethernet header) for MTU - 52 bytes of
# TCP payload: 1514 for 1448 at MTU 1500, 9014 for 8948 at 9000. Each link is set to its rate
# x frame / payload, so that it carries the scenario's rate of payload. Measured at MTU 1500:
# one TCP flow through a 1 MiB/s htb link delivered 0.956 MiB/s of payload (1448 / 1514)
# before this; 0.995-1.000 of the rate after (at 1 MiB/s and 256 KiB/s).
_FRAME_BYTES = ETH_MTU + _ETH_HEADER
_PAYLOAD_BYTES = ETH_MTU - _IP_TCP_HEADERS


def frame_bytes(mtu: int) -> int:
    """Bytes of one full Ethernet frame on a link of this MTU (what htb counts)."""
    return mtu + _ETH_HEADER


def wire_per_payload(mtu: int) -> float:
    """Frame bytes per byte of TCP payload in full frames on a link of this MTU."""
    return frame_bytes(mtu) / (mtu - _IP_TCP_HEADERS)


def queue_limit(wire_rate: float) -> int:
    """Bytes a shaped link's drop-tail leaf queue holds (``wire_rate``: frame bytes/s)."""
    return max(_QUEUE_MIN_BYTES, round(wire_rate * _QUEUE_SECONDS))


def link_mtu(rates: Iterable[float], flows: int = 1) -> int:
    """The MTU of a run's links: jumbo if one jumbo frame crosses the slowest of the shaped
    ``rates`` (payload bytes/s; math.inf = unshaped) within _FRAME_TIME_MAX and that link's
    queue holds _MIN_WINDOW_FRAMES jumbo frames for each of ``flows`` TCP flows sharing it;
    else 1500.

    Why the flows: a TCP flow needs a couple of segments in flight to recover from a loss by
    fast retransmit; when a short drop-tail queue cannot hold that for every flow, flows fall
    into timeout back-off and some never get going. Measured (fresh clone of 7a7b93f, idle
    host): client-server at N = 16 and 32 through one 1 MiB/s link with jumbo frames (a
    105 KB queue, 11 frames) left 1 of 16 and 17 of 32 clients with no byte after 20 s; at
    1500 (72 frames) every client finished at 1.00-1.01 x D_cs.
    """
    slowest = min((r for r in rates if math.isfinite(r)), default=math.inf)
    wire = slowest * wire_per_payload(JUMBO_MTU)
    frame = frame_bytes(JUMBO_MTU)
    if wire * _FRAME_TIME_MAX < frame:
        return ETH_MTU
    if math.isfinite(wire) and queue_limit(wire) < _MIN_WINDOW_FRAMES * frame * flows:
        return ETH_MTU
    return JUMBO_MTU


def payload_of_wire(wire_bytes: int, mtu: int = ETH_MTU) -> int:
    """The TCP payload that ``wire_bytes`` of full-size frames carry (the bounds' unit).

    A host's wire counter also holds its ACKs and small messages, which carry less: for a
    host that mostly sends data (a seed) this is within a few per cent, and slightly high.
    """
    return round(wire_bytes / wire_per_payload(mtu))


# For the report: how a netns link's rate is set.
RATE_NOTE = (
    "netns: each link's htb rate is its scenario rate x frame bytes / TCP payload bytes of a "
    f"full frame ({_FRAME_BYTES}/{_PAYLOAD_BYTES} at MTU {ETH_MTU}, "
    f"{frame_bytes(JUMBO_MTU)}/{JUMBO_MTU - _IP_TCP_HEADERS} at MTU {JUMBO_MTU}), so that it "
    "carries the scenario's rate of file bytes, as the bounds and the app mode count them"
)


def mtu_note(mtu: int) -> str:
    """For the report: the IP packet size of a netns run's links, and why."""
    if mtu == ETH_MTU:
        return f"netns: links carry Ethernet's {ETH_MTU}-byte IP packets"
    return (
        f"netns: links carry {mtu}-byte IP packets (jumbo frames, {frame_bytes(mtu)} bytes "
        f"with the Ethernet header, as htb counts them): every shaped link is fast enough to "
        f"send one in {_FRAME_TIME_MAX * 1000:g} ms; each packet carries 6 x the payload of "
        "a 1500-byte one, for the same per-packet work of the host's kernel (issue 18)"
    )


def _bits(rate: float) -> str:
    return f"{max(8, round(rate * 8))}bit"


def netns_available() -> bool:
    """True if we are root and ``ip netns`` works (the netns emulation can run)."""
    if os.geteuid() != 0:
        return False
    try:
        return _run(["ip", "netns", "list"], check=False).returncode == 0
    except NetnsError:
        return False


def probe_netem() -> bool:
    """Try ``tc qdisc add ... netem`` on a dummy link in a throwaway namespace of ours."""
    if not netns_available():
        return False
    ns = f"{PREFIX}{secrets.token_hex(2)}-probe"
    try:
        _run(["ip", "netns", "add", ns])
        _run(["ip", "-n", ns, "link", "add", "d0", "type", "dummy"])
        tried = _run(
            ["tc", "-n", ns, "qdisc", "add", "dev", "d0", "root", "netem", "delay", "1ms"],
            check=False,
        )
        return tried.returncode == 0
    except NetnsError:
        return False
    finally:
        _run(["ip", "netns", "del", ns], check=False)


def _our_namespaces(prefix: str = PREFIX) -> list[str]:
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def _our_links(prefix: str = PREFIX) -> list[str]:
    out = _run(["ip", "-o", "link", "show"], check=False).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            name = parts[1].strip().split("@", 1)[0]
            if name.startswith(prefix):
                names.append(name)
    return names


def _kill_namespace_pids(ns: str) -> None:
    # Only processes inside a namespace we created: the lab started them.
    out = _run(["ip", "netns", "pids", ns], check=False).stdout
    for word in out.split():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(word), signal.SIGKILL)


def leftovers(prefix: str = PREFIX) -> list[str]:
    """Names of namespaces and links starting with ``prefix`` (must start with ``hsw-``)."""
    if not prefix.startswith(PREFIX):
        raise ValueError(f"only names starting with {PREFIX!r} are ours")
    if os.geteuid() != 0:
        return []
    return _our_namespaces(prefix) + _our_links(prefix)


def cleanup_leftovers(prefix: str = PREFIX) -> list[str]:
    """Delete every namespace and link whose name starts with ``prefix`` (default ``hsw-``).

    Returns the names removed. A prefix that does not start with ``hsw-`` is refused.
    """
    if not prefix.startswith(PREFIX):
        raise ValueError(f"only names starting with {PREFIX!r} are ours")
    if os.geteuid() != 0:
        return []
    removed = []
    for ns in _our_namespaces(prefix):
        _kill_namespace_pids(ns)
        if _run(["ip", "netns", "del", ns], check=False).returncode == 0:
            removed.append(ns)
    for link in _our_links(prefix):
        if _run(["ip", "link", "del", link], check=False).returncode == 0:
            removed.append(link)
    return removed


def install_signal_cleanup() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so ``finally`` blocks and atexit hooks run."""

    def _exit(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _exit)


# --- netns emulation --------------------------------------------------------------------------


def _address(index: int) -> str:
    # 10.77.0.1 .. 10.77.0.250, 10.77.1.1 ...: private addresses inside our own namespaces.
    return f"10.77.{index // 250}.{index % 250 + 1}"


class NetnsNetwork:
    """Namespaces on a bridge, htb on both veth ends. Use as a context manager."""

    mode = "netns"
    shaped = True

    def __init__(self, capacities: Sequence[tuple[float, float]], *, run_id: str | None = None):
        """``capacities[i] = (upload, download)`` in bytes/s for host i (math.inf = unshaped)."""
        self.run_id = run_id or secrets.token_hex(2)
        # Every name of a run starts with hsw-<id>, so one prefix finds all of them.
        self.bridge = f"{PREFIX}{self.run_id}-br"
        if len(self.bridge) > _IFNAMSIZ or len(capacities) > 999:
            raise NetnsError("run id too long or too many hosts for interface names")
        self.hosts = tuple(
            Host(i, _address(i), up, down, f"{PREFIX}{self.run_id}-h{i}")
            for i, (up, down) in enumerate(capacities)
        )
        # Any one host's link may carry a flow to every other host (a server, a seed).
        self.mtu = link_mtu(
            (r for host in self.hosts for r in (host.upload, host.download)),
            flows=max(1, len(self.hosts) - 1),
        )
        self.notes: tuple[str, ...] = (
            "netns emulation: bandwidth shaped with htb on both ends of each veth",
            mtu_note(self.mtu),
        )
        self._created: list[str] = []  # namespaces, then links, in creation order
        self._open = False

    def _veth(self, i: int, side: str) -> str:
        return f"{PREFIX}{self.run_id}-{side}{i}"

    def __enter__(self) -> NetnsNetwork:
        if os.geteuid() != 0:
            raise NetnsError("the netns emulation needs root (use --no-netns)")
        atexit.register(self.close)
        self._open = True
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _setup(self) -> None:
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        self._created.append(self.bridge)
        _run(["ip", "link", "set", self.bridge, "up"])
        for host in self.hosts:
            ns = host.namespace
            assert ns is not None
            outer, inner = self._veth(host.index, "b"), self._veth(host.index, "n")
            _run(["ip", "netns", "add", ns])
            self._created.append(ns)
            _run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner])
            self._created.append(outer)
            # No segmentation offload: a veth hands htb 64 KiB GSO super-packets, larger than
            # the short leaf queue of a slow link, which drops every one of them (measured:
            # one TCP flow through a 256 KiB/s link got 20 KiB/s; with this, 245 KiB/s).
            # Fewer packets per byte come from the MTU instead (link_mtu), which htb counts.
            frame = str(frame_bytes(self.mtu))
            for dev in (outer, inner):
                _run(["ip", "link", "set", "dev", dev, "mtu", str(self.mtu)])
                _run(["ip", "link", "set", "dev", dev, "gso_max_size", frame])
            _run(["ip", "link", "set", inner, "netns", ns])
            _run(["ip", "link", "set", outer, "master", self.bridge, "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{host.address}/16", "dev", inner])
            _run(["ip", "-n", ns, "link", "set", inner, "up"])
            # Egress of the host end = what the host uploads; egress of the bridge end =
            # what the bridge delivers to the host, i.e. its download (PITFALLS.md: no IFB).
            if math.isfinite(host.upload):
                self._shape(["-n", ns], inner, host.upload, self.mtu)
            if math.isfinite(host.download):
                self._shape([], outer, host.download, self.mtu)
        # The bridge takes its ports' MTU; said explicitly, so that it never drops a frame.
        _run(["ip", "link", "set", "dev", self.bridge, "mtu", str(self.mtu)])

    @staticmethod
    def _shape(where: list[str], dev: str, rate: float, mtu: int) -> None:
        def tc(*args: str) -> None:
            _run(["tc", *where, *args])

        wire = rate * wire_per_payload(mtu)  # rate is in payload bytes/s (wire_per_payload)
        bits = _bits(wire)
        tc("qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1")
        # ``mtu``: the largest frame htb sizes its default burst for (tc's default is 1600).
        htb = ("htb", "rate", bits, "ceil", bits, "mtu", str(frame_bytes(mtu)))
        tc("class", "add", "dev", dev, "parent", "1:", "classid", "1:1", *htb)
        # The default leaf queue is txqueuelen (1000) packets: ~1.5 MB, over a second of
        # queueing at these rates, which turns every request/response into a second-long
        # round trip (bufferbloat). Cap it at about _QUEUE_SECONDS of the link's rate.
        limit = queue_limit(wire)
        tc("qdisc", "add", "dev", dev, "parent", "1:1", "bfifo", "limit", str(limit))

    def close(self) -> None:
        """Kill what runs in our namespaces, delete them and our links. Idempotent."""
        if not self._open:
            return
        self._open = False
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        for name in reversed(self._created):
            if name.startswith(f"{PREFIX}{self.run_id}-h"):
                _kill_namespace_pids(name)
                _run(["ip", "netns", "del", name], check=False)
        for name in reversed(self._created):
            if not name.startswith(f"{PREFIX}{self.run_id}-h"):
                # veth bridge ends vanish with their namespace's peer; the bridge does not.
                _run(["ip", "link", "del", name], check=False)
        self._created.clear()

    def wrap(self, host: int, argv: Sequence[str]) -> list[str]:
        """``ip netns exec hsw-<id>-h<i> argv...`` (ip execs in place: the PID is argv's)."""
        ns = self.hosts[host].namespace
        assert ns is not None
        return ["ip", "netns", "exec", ns, *argv]

    def bind_address(self, host: int) -> str:
        """Listen on every address of the host's namespace (loopback for local probes)."""
        return "0.0.0.0"

    async def expose(self, host: int, port: int, *, upload: float | None = None) -> PortMap:
        """The kernel shapes already: clients connect straight to the host's address."""
        return _Direct(self.hosts[host].address, port)

    async def isolate(self, host: int) -> None:
        """Drop what the host has queued and reset its TCP connections (after its process died).

        A killed process's sockets live on and drain their send buffers (megabytes at these
        rates), so the fault would not bite. Deleting the shaping qdisc drops the queue;
        ``ss -K`` (SOCK_DESTROY) aborts the orphaned sockets with a RST, which the clients see
        at once, as with the app emulation's aborted proxy connections.
        """
        ns = self.hosts[host].namespace
        assert ns is not None
        dev = self._veth(host, "n")
        await asyncio.to_thread(
            _run, ["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=False
        )
        await asyncio.to_thread(_run, ["ip", "netns", "exec", ns, "ss", "-t", "-K"], check=False)

    async def cut_port(self, host: int, port: int) -> None:
        """``ss -K`` (SOCK_DESTROY) the host's sockets of local port ``port`` only: a killed
        process's sockets would otherwise drain their send buffers. The qdisc stays (other
        processes on the host keep their shaped link)."""
        ns = self.hosts[host].namespace
        assert ns is not None
        argv = ["ip", "netns", "exec", ns, "ss", "-t", "-K", "sport", "=", f":{port}"]
        await asyncio.to_thread(_run, argv, check=False)

    async def tx_bytes(self, host: int) -> int | None:
        """Bytes that left ``host`` on the wire (IP packets, headers included): what the
        bridge end of its veth pair received, read from sysfs in our own namespace (an
        ``ip -n ... -s link`` process per sample cost ~8 ms of CPU, five times a second, on
        the cores the measured peers share)."""
        stats = Path("/sys/class/net") / self._veth(host, "b") / "statistics" / "rx_bytes"
        try:
            return int(stats.read_text())
        except (OSError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class _Direct:
    host: str
    port: int

    def address_for(self, client: int) -> tuple[str, int]:
        return (self.host, self.port)


# --- app emulation --------------------------------------------------------------------------


def link_bucket(rate: float, now: float) -> TokenBucket:
    """A link's token bucket: ``rate`` bytes/s (math.inf: unlimited), ~10 ms deep."""
    if not math.isfinite(rate):
        return TokenBucket(None, None, now)
    return TokenBucket(rate, max(_PROXY_CHUNK, rate * _BURST_SECONDS), now)


class AppNetwork:
    """Everything on 127.0.0.1; servers are reached through a shaping proxy. Async context."""

    mode = "app"
    shaped = False
    mtu = ETH_MTU  # nominal: loopback's packets are not counted (no wire counter)

    def __init__(self, capacities: Sequence[tuple[float, float]]) -> None:
        """``capacities[i] = (upload, download)`` in bytes/s for host i."""
        self.hosts = tuple(
            Host(i, "127.0.0.1", up, down) for i, (up, down) in enumerate(capacities)
        )
        self.notes: tuple[str, ...] = (
            "app emulation: loopback, server upload and client downloads capped by the lab's "
            "token-bucket proxy; no delay/loss emulation",
        )
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # Per exposed host: its listeners and live connections (for isolate()).
        self._by_host: dict[int, tuple[list[asyncio.Server], set[asyncio.StreamWriter]]] = {}

    async def __aenter__(self) -> AppNetwork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the proxies and close every proxied connection."""
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await server.wait_closed()
        self._servers.clear()

    def wrap(self, host: int, argv: Sequence[str]) -> list[str]:
        """Loopback: run argv as it is."""
        return list(argv)

    def bind_address(self, host: int) -> str:
        """Loopback only."""
        return "127.0.0.1"

    async def expose(self, host: int, port: int, *, upload: float | None = None) -> PortMap:
        """One listener per client; server->client bytes pass the server's and client's buckets.

        ``upload`` caps this port below the host's upload (another process of the host,
        rate-limited by itself, has the rest).
        """
        now = asyncio.get_running_loop().time()
        up = link_bucket(self.hosts[host].upload if upload is None else upload, now)
        servers, live = self._by_host.setdefault(host, ([], set()))
        ports: dict[int, int] = {}
        for client in self.hosts:
            if client.index == host:
                continue
            download = link_bucket(client.download, now)
            server = await asyncio.start_server(
                self._handler(port, (up, download), live), "127.0.0.1", 0
            )
            self._servers.append(server)
            servers.append(server)
            ports[client.index] = server.sockets[0].getsockname()[1]
        return _Proxied(ports)

    async def tx_bytes(self, host: int) -> int | None:
        """Loopback has no per-host wire counter."""
        return None

    async def cut_port(self, host: int, port: int) -> None:
        """Loopback: only exposed (proxied) ports are the lab's to cut; same as isolate."""
        await self.isolate(host)

    async def isolate(self, host: int) -> None:
        """Stop the host's listeners and abort its connections (buffered bytes are dropped)."""
        servers, live = self._by_host.get(host, ([], set()))
        for server in servers:
            server.close()
        for writer in list(live):
            writer.transport.abort()

    def _handler(  # type: ignore[no-untyped-def]
        self, port: int, buckets: tuple[TokenBucket, ...], live: set[asyncio.StreamWriter]
    ):
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            self._writers.add(writer)
            live.add(writer)
            up_writer = None
            try:
                try:
                    up_reader, up_writer = await _connect_small(port)
                except OSError:
                    return
                self._writers.add(up_writer)
                live.add(up_writer)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(_pump(reader, up_writer, ()))
                    tg.create_task(_pump(up_reader, writer, buckets))
            except* (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                for w in (writer, up_writer):
                    if w is not None:
                        self._writers.discard(w)
                        live.discard(w)
                        w.close()
                self._tasks.discard(task)

        return handle


async def _connect_small(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    # A small receive window towards the server keeps the bytes a server has "sent" close to
    # the bytes delivered (loopback autotuning would otherwise buffer megabytes in the kernel).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UPSTREAM_RCVBUF)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, buckets: tuple[TokenBucket, ...]
) -> None:
    # Bounded: each read is at most one chunk; drain() applies the peer's backpressure.
    while True:
        data = await reader.read(_PROXY_CHUNK)
        if not data:
            if writer.can_write_eof():
                writer.write_eof()
            return
        now = asyncio.get_running_loop().time()
        delays = [b.consume(len(data), now) for b in buckets]
        if delays and max(delays) > 0:
            await asyncio.sleep(max(delays))
        writer.write(data)
        await writer.drain()


@dataclass(frozen=True, slots=True)
class _Proxied:
    ports: dict[int, int]

    def address_for(self, client: int) -> tuple[str, int]:
        return ("127.0.0.1", self.ports[client])
