"""Abuse harness (issue 21): hostile inputs against a real seed, hub, DHT node and tracker,
with legit clients timed with and without the attack in the same run.

Loopback only (all of 127.0.0.0/8 is loopback on Linux: attackers bind 127.x.y.z sources),
real processes (``hubswarm share``, ``hubswarm hub serve``, ``hubswarm dht node``,
``hubswarm tracker``; legit ``hubswarm fetch``/``get``/``put``/``dht get-peers`` and a small
BEP 15 + HTTP announcer), every loop bounded. Every parser of untrusted input gets hostile
input: the peer wire protocol, uTP and MSE (the seed), HTTP and tus (the hub), KRPC (the DHT
node), the UDP and HTTP tracker. For each attack it prints: inputs sent, whether the
service is alive, the legit client's time without and under attack (ratio), RSS and open
files before and after (the attack's sockets closed), the service's log bytes per hostile
input, and the 1-minute load average when the row was measured.

    python benchmarks/abuse.py            # the issue's sizes (a few minutes)
    python benchmarks/abuse.py --quick    # small sizes (tests/test_abuse_harness.py)
    python benchmarks/abuse.py --json     # one JSON object per row

Targets: seed under 100 idle handshaken peers from one address, under 500 from distinct
addresses, under 500 half-open: fetch within 2x; hub under 300 idle and 25 trickling
connections: get within 2x; malformed HTTP: < 200 log bytes each, no traceback; RSS and
open files back within 10 % of the baseline. The other rows are held to the same 2x.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import http.client
import json
import os
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from hubswarm.proto import mse, utp_packet
from hubswarm.proto import udp_tracker as udp
from hubswarm.proto.metainfo import parse_metainfo
from hubswarm.proto.utp_packet import PacketType

PY = sys.executable
PSTR = b"\x13BitTorrent protocol"
KEEPALIVE = b"\x00\x00\x00\x00"
# Each a request aiohttp's parser refuses: bad version, over-long line, control bytes, TLS,
# header without a colon, negative Content-Length.
MALFORMED_HTTP = [
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
    b"GET \x00\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
]
# Seconds for a service to close what an attack left before "after" is read, and between
# the attack's start and the legit client's (--quick: a fifth of each).
SETTLE = 1.5
WAIT = 0.5


@dataclass
class Row:
    service: str
    attack: str
    inputs: int
    alive: bool
    legit_without: float | None
    legit_under: float | None
    rss_before_kib: int
    rss_after_kib: int
    fds_before: int
    fds_after: int
    log_bytes_per_input: float | None
    loadavg: float = 0.0  # 1-minute load average when the row was measured

    @property
    def ratio(self) -> float | None:
        if self.legit_without and self.legit_under is not None:
            return self.legit_under / self.legit_without
        return None


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


class Service:
    """A child process whose stdout's first line says it is ready; stderr goes to a file."""

    def __init__(self, name: str, argv: list[str], workdir: Path) -> None:
        self.name = name
        self.err_path = workdir / f"{name}.stderr"
        with self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, cwd=workdir)
        assert self.proc.stdout is not None
        self.ready = self.proc.stdout.readline().decode()
        if not self.ready:
            raise RuntimeError(f"{name} failed: {self.err_path.read_text()[-2000:]}")

    def next_line(self) -> str:
        """The next line the service prints on stdout (e.g. a second listening address)."""
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().decode()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_bytes(self) -> int:
        return self.err_path.stat().st_size

    def tracebacks(self) -> int:
        return self.err_path.read_text(errors="replace").count("Traceback")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if n := self.tracebacks():
            print(f"{self.name} stderr holds {n} tracebacks", file=sys.stderr)


async def _timed(argv: list[str], cwd: Path) -> float:
    """Wall seconds a legit client process takes; raises if it fails."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"legit client failed ({proc.returncode}): {err.decode()[-800:]}")
    return time.perf_counter() - started


def _addresses(prefix: int, n: int, *, distinct: bool) -> list[str]:
    """``n`` source addresses in 127.prefix.0.0/16: all one, or all different."""
    if not distinct:
        return [f"127.{prefix}.0.1"] * n
    return [f"127.{prefix}.{(k // 250) % 256}.{k % 250 + 1}" for k in range(n)]


async def _open(ip: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0)), timeout=10
    )


@contextlib.asynccontextmanager
async def held(
    count: int,
    opener: Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]],
    first: Callable[[int], bytes],
    every: bytes,
    period: float,
) -> AsyncIterator[Callable[[], int]]:
    """``count`` hostile connections held while the block runs: each writes ``first(k)``,
    then ``every`` each ``period`` s, reading and dropping what comes. Yields the count of
    inputs sent so far."""
    sent = [0]

    async def one(k: int) -> None:
        try:
            reader, writer = await opener(k)
        except OSError:
            return
        try:
            data = first(k)
            writer.write(data)
            sent[0] += 1  # the connection, or its first message
            for _ in range(10_000):  # bounded: cancelled when the block ends
                try:
                    async with asyncio.timeout(period):
                        if not await reader.read(65536):
                            return  # the service closed us
                except TimeoutError:
                    if every:
                        writer.write(every)
                        sent[0] += 1
        except OSError:
            return
        finally:
            writer.close()

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(one(k)) for k in range(count)]
        try:
            yield lambda: sent[0]
        finally:
            for t in tasks:
                t.cancel()


async def _burst(port: int, payloads: list[bytes], ip: str = "127.0.0.1") -> int:
    """One short connection per payload (64 at a time): send, read until the service closes
    or 2 s pass (an MSE responder waits for more bytes up to its handshake time-out)."""

    def send(data: bytes) -> None:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(ip, 0)) as s,
            contextlib.suppress(OSError),
        ):
            s.sendall(data)
            for _ in range(100):
                if not s.recv(65536):
                    break

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(64) as pool:
        await asyncio.gather(*(loop.run_in_executor(pool, send, d) for d in payloads))
    return len(payloads)


@contextlib.asynccontextmanager
async def _bursting(port: int, payloads: list[bytes], ip: str) -> AsyncIterator[Callable[[], int]]:
    """:func:`_burst` as an attack: all sent before the legit client starts."""
    sent = await _burst(port, payloads, ip)
    yield lambda: sent


Datagram = tuple[str, bytes]  # (source address in 127.0.0.0/8, payload)


def _udp_send(
    port: int,
    datagrams: list[Datagram],
    *,
    rate: float | None = None,
    stop: threading.Event | None = None,
    sent: list[int] | None = None,
) -> int:
    """Send each datagram from its own source address to 127.0.0.1:``port`` (one socket per
    address, closed at the end), at most ``rate`` a second; stop early when ``stop`` is set."""
    socks: dict[str, socket.socket] = {}
    count = 0
    started = time.perf_counter()
    try:
        for ip, data in datagrams:
            if stop is not None and stop.is_set():
                break
            sock = socks.get(ip)
            if sock is None:
                sock = socks[ip] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((ip, 0))
                sock.setblocking(False)
            with contextlib.suppress(OSError):  # a full buffer or ICMP: a lost datagram
                sock.sendto(data, ("127.0.0.1", port))
            count += 1
            if sent is not None:
                sent[0] = count
            if rate and count % 50 == 0:
                ahead = count / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        for sock in socks.values():
            sock.close()
    return count


@contextlib.asynccontextmanager
async def _udp_bursting(port: int, datagrams: list[Datagram]) -> AsyncIterator[Callable[[], int]]:
    """All ``datagrams`` sent before the legit client starts."""
    sent = await asyncio.to_thread(_udp_send, port, datagrams)
    yield lambda: sent


@contextlib.asynccontextmanager
async def _udp_flooding(
    port: int, datagrams: list[Datagram], rate: float
) -> AsyncIterator[Callable[[], int]]:
    """``datagrams`` sent at ``rate`` a second while the block runs (the legit client runs
    under the flood); bounded by the list's length."""
    stop, sent = threading.Event(), [0]
    worker = asyncio.create_task(
        asyncio.to_thread(_udp_send, port, datagrams, rate=rate, stop=stop, sent=sent)
    )
    try:
        yield lambda: sent[0]
    finally:
        stop.set()
        await worker


def _mse_dial(port: int, ip: str, info_hash: bytes, seed: int, corrupt_vc: bool) -> None:
    """An MSE initiator that does the Diffie-Hellman exchange for real, then sends a wrong
    verification constant (``corrupt_vc``) or asks for a torrent the seed does not serve."""
    rng = random.Random(seed)
    init = mse.MseInitiator(info_hash, mse.Policy.ENABLED, rng.randbytes)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(ip, 0)) as s,
        contextlib.suppress(OSError, mse.MseError),
    ):
        s.sendall(init.initiate())
        for _ in range(100):
            data = s.recv(65536)
            if not data:
                return
            for event in init.receive_data(data):
                if isinstance(event, mse.SendData):
                    out = bytearray(event.data)
                    if corrupt_vc:
                        out[40] ^= 0xFF  # the first byte of ENCRYPT(VC): decrypts to non-zero
                    s.sendall(bytes(out))


@contextlib.asynccontextmanager
async def _mse_attack(
    port: int, info_hash: bytes, payloads: list[bytes], dials: int, ip: str
) -> AsyncIterator[Callable[[], int]]:
    """Raw MSE garbage (:func:`_burst`), then ``dials`` handshakes with a wrong VC or an
    unknown torrent, all before the legit client starts."""
    sent = await _burst(port, payloads, ip)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(16) as pool:
        await asyncio.gather(
            *(
                loop.run_in_executor(
                    pool,
                    _mse_dial,
                    port,
                    ip,
                    info_hash if k % 2 else bytes(20),
                    k,
                    bool(k % 2),
                )
                for k in range(dials)
            )
        )
    yield lambda: sent + dials


async def _measure(
    service: Service,
    attack: str,
    legit: Callable[[], Awaitable[float]],
    baseline: float,
    run: Callable[[], contextlib.AbstractAsyncContextManager[Callable[[], int]]],
    wait_before: float | None = None,
    *,
    settle: float = SETTLE,
    wait: float = WAIT,
) -> Row:
    pid = service.proc.pid
    rss0, fds0, log0 = _rss_kib(pid), _fds(pid), service.log_bytes()
    async with run() as sent:
        await asyncio.sleep(wait if wait_before is None else wait_before)
        under = await legit()
        inputs = sent()
    await asyncio.sleep(settle)
    log_per = (service.log_bytes() - log0) / inputs if inputs else None
    return Row(
        service.name, attack, inputs, service.alive, baseline, under,
        rss0, _rss_kib(pid), fds0, _fds(pid), log_per, _loadavg(),
    )  # fmt: skip


def _utp(
    kind: PacketType,
    cid: int,
    rng: random.Random,
    *,
    wnd: int = 1 << 20,
    seq: int | None = None,
    ack: int | None = None,
    payload: bytes = b"",
) -> bytes:
    return utp_packet.encode_fields(
        kind, cid, rng.getrandbits(32), 0, wnd,
        rng.getrandbits(16) if seq is None else seq,
        rng.getrandbits(16) if ack is None else ack, b"", payload,
    )  # fmt: skip


def _utp_hostile(rng: random.Random, n: int, ip: str) -> list[Datagram]:
    """Random and crafted uTP from one address: bad versions, huge windows, out-of-range
    acks on a connection just opened, data and FINs for unknown connections, extension
    chains that lie about their lengths."""
    out: list[Datagram] = []
    while len(out) < n:
        cid = rng.getrandbits(16)
        match len(out) % 6:
            case 0:
                out.append((ip, rng.randbytes(rng.randrange(1, 200))))
            case 1:  # a SYN of version 2
                bad = bytearray(_utp(PacketType.ST_SYN, cid, rng))
                bad[0] = (PacketType.ST_SYN << 4) | 2
                out.append((ip, bytes(bad)))
            case 2:  # a SYN advertising a 4 GiB window, then data acking what was never sent
                out.append((ip, _utp(PacketType.ST_SYN, cid, rng, wnd=0xFFFFFFFF, seq=100)))
                data = rng.randbytes(500)
                send_id = (cid + 1) & 0xFFFF
                out.append((ip, _utp(PacketType.ST_DATA, send_id, rng, wnd=0xFFFFFFFF, seq=101,
                                     payload=data)))  # fmt: skip
            case 3:  # state packets for unknown connections, acks anywhere
                out.append((ip, _utp(PacketType.ST_STATE, cid, rng)))
            case 4:  # data and FIN for unknown connections
                kind = PacketType.ST_DATA if rng.random() < 0.5 else PacketType.ST_FIN
                out.append((ip, _utp(kind, cid, rng, payload=rng.randbytes(1000))))
            case _:  # an extension chain whose lengths run past the datagram
                head = bytearray(_utp(PacketType.ST_DATA, cid, rng))
                head[1] = 1
                out.append((ip, bytes(head) + bytes((2, 200)) + rng.randbytes(30)))
    return out[:n]


def _syn_flood(rng: random.Random, n: int, ips: list[str]) -> list[Datagram]:
    return [(ips[k % len(ips)], _utp(PacketType.ST_SYN, rng.getrandbits(16), rng, ack=0))
            for k in range(n)]  # fmt: skip


def _mse_garbage(rng: random.Random, n: int) -> list[bytes]:
    """Garbage instead of a DH key (0, all ones: outside [2, P-2]) and a plausible key
    followed by endless padding (no req1 hash within 512 bytes)."""
    out = []
    for k in range(n):
        match k % 3:
            case 0:
                out.append(bytes(96) + rng.randbytes(rng.randrange(0, 512)))
            case 1:
                out.append(b"\xff" * 96 + rng.randbytes(rng.randrange(0, 512)))
            case _:
                out.append(rng.randbytes(96 + 16384))
    return out


async def _baseline(legit: Callable[[], Awaitable[float]], quick: bool) -> float:
    """The legit client's time without attack: the median of 3 runs (--quick: one)."""
    return statistics.median([await legit() for _ in range(1 if quick else 3)])


def _measurer(quick: bool) -> Callable[..., Awaitable[Row]]:
    if quick:
        return functools.partial(_measure, settle=SETTLE / 5, wait=WAIT / 5)
    return _measure


@dataclass
class _Seed:
    """A running ``hubswarm share`` and a legit ``hubswarm fetch`` of it."""

    service: Service
    port: int
    info_hash: bytes
    fetch: Callable[[], Awaitable[float]]  # over TCP
    fetch_utp: Callable[[], Awaitable[float]]  # over uTP only


def _start_seed(work: Path, size: int, rng: random.Random) -> _Seed:
    src = work / "seed" / "payload.bin"
    src.parent.mkdir()
    src.write_bytes(rng.randbytes(size))
    torrent = work / "payload.torrent"
    seed = Service(
        "seed",
        [PY, "-m", "hubswarm", "-v", "share", str(src), "-o", str(torrent), "--host",
         "127.0.0.1", "--port", "0", "--json", "--max-per-address", "1"],
        work,
    )  # fmt: skip
    port = int(json.loads(seed.ready)["port"])
    runs = [0]

    async def fetch(transport: str = "--no-utp") -> float:
        """A legit fetch over TCP (``--no-utp``) or uTP (``--no-tcp``)."""
        runs[0] += 1
        out = work / f"fetch{runs[0]}"
        return await _timed(
            [PY, "-m", "hubswarm", "fetch", str(torrent), "-o", str(out), "--peer",
             f"127.0.0.1:{port}", "--host", "127.0.0.1", transport, "-q", "--timeout", "90"],
            work,
        )  # fmt: skip

    info_hash = parse_metainfo(torrent.read_bytes()).info_hash
    return _Seed(seed, port, info_hash, fetch, functools.partial(fetch, "--no-tcp"))


async def _seed_rows(work: Path, size: int, quick: bool, rng: random.Random) -> list[Row]:
    """The peer wire protocol over TCP: slots, half-open connections, garbage."""
    s = _start_seed(work, size, rng)
    seed, port, info_hash, fetch = s.service, s.port, s.info_hash, s.fetch

    def handshake(k: int) -> bytes:
        return PSTR + bytes(8) + info_hash + b"-XX0000-%012d" % k

    Attack = Callable[[], contextlib.AbstractAsyncContextManager[Callable[[], int]]]

    def squat(ips: list[str]) -> Attack:
        return lambda: held(len(ips), lambda k: _open(ips[k], port), handshake, KEEPALIVE, 30.0)

    def half_open(ips: list[str]) -> Attack:
        return lambda: held(len(ips), lambda k: _open(ips[k], port), lambda k: b"", b"", 60.0)

    measure = _measurer(quick)
    rows: list[Row] = []
    try:
        baseline = await _baseline(fetch, quick)
        one, many, flood = (20, 0, 100) if quick else (100, 500, 500)
        rows.append(
            await measure(seed, f"{one} idle handshaken, one address", fetch, baseline,
                           squat(_addresses(2, one, distinct=False)))
        )  # fmt: skip
        if many:
            # Held past the eviction age (SessionConfig.evict_min_idle, 10 s) so an idle
            # squatter can make room: before that, only a free slot would let the fetch in.
            rows.append(
                await measure(seed, f"{many} idle handshaken, distinct addresses", fetch,
                               baseline, squat(_addresses(3, many, distinct=True)), 11.0)
            )  # fmt: skip
        rows.append(
            await measure(seed, f"{flood} half-open (no handshake)", fetch, baseline,
                           half_open(_addresses(4, flood, distinct=True)))
        )  # fmt: skip

        payloads = []
        for k in range(50 if quick else 500):
            match k % 4:
                case 0:
                    payloads.append(rng.randbytes(rng.randrange(1, 300)))
                case 1:  # a handshake, then a 2 GiB length prefix
                    payloads.append(handshake(k) + b"\x7f\xff\xff\xff\x07")
                case 2:  # a handshake for a torrent we do not serve
                    payloads.append(PSTR + bytes(8) + rng.randbytes(40))
                case _:  # a handshake, then random messages
                    payloads.append(handshake(k) + rng.randbytes(rng.randrange(1, 2000)))
        garbage = functools.partial(_bursting, port, payloads, "127.5.0.1")
        rows.append(await measure(seed, "wire garbage", fetch, baseline, garbage))

    finally:
        seed.stop()
    return rows


async def _seed_rows_utp_mse(work: Path, size: int, quick: bool, rng: random.Random) -> list[Row]:
    """MSE (over TCP) and uTP, on a seed of their own (run beside the first in --quick)."""
    s = _start_seed(work, size, rng)
    seed, port, info_hash, fetch, fetch_utp = (
        s.service, s.port, s.info_hash, s.fetch, s.fetch_utp
    )  # fmt: skip
    measure = _measurer(quick)
    rows: list[Row] = []
    try:
        baseline = await _baseline(fetch, quick)
        n_mse, dials = (30, 10) if quick else (300, 100)
        mse_attack = functools.partial(
            _mse_attack, port, info_hash, _mse_garbage(rng, n_mse), dials, "127.12.0.1"
        )
        rows.append(
            await measure(seed, "MSE: bad DH keys, endless padding, wrong VC, unknown torrent",
                           fetch, baseline, mse_attack)
        )  # fmt: skip

        # uTP: the legit fetch over uTP only; its own baseline.
        baseline_utp = await _baseline(fetch_utp, quick)
        n_utp = 120 if quick else 5000  # a sixth are valid SYNs
        utp_garbage = functools.partial(_udp_bursting, port, _utp_hostile(rng, n_utp, "127.10.0.1"))
        rows.append(
            await measure(seed, "uTP: random, bad version, huge window, bad acks", fetch_utp,
                           baseline_utp, utp_garbage)
        )  # fmt: skip
        # --quick stays under the seed's half-open cap (swarm.utp.MAX_HALF_OPEN, 64, with the
        # garbage row's valid SYNs): past it SYNs are dropped until the entries expire
        # (SYN_RECV_TIMEOUT, 10 s), which the full run shows and the short one cannot afford.
        n_syn, syn_ips = (24, 24) if quick else (40_000, 500)
        syns = _syn_flood(rng, n_syn, _addresses(11, syn_ips, distinct=True))
        syn_rate = 2000.0
        utp_syn = functools.partial(_udp_flooding, port, syns, syn_rate)
        rows.append(
            await measure(seed, f"uTP SYN flood from {syn_ips} addresses, {syn_rate:.0f}/s",
                           fetch_utp, baseline_utp, utp_syn)
        )  # fmt: skip
    finally:
        seed.stop()
    return rows


def _tus_uploads(port: int, token: str, count: int) -> list[str]:
    """``count`` real tus uploads of 1,000 bytes (their ids), for the hostile PATCHes."""
    ids = []
    for k in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/uploads/", headers={
                "Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}",
                "Upload-Length": "1000",
                "Upload-Metadata": "filename " + base64.b64encode(b"tus%d.bin" % k).decode(),
            })  # fmt: skip
            resp = conn.getresponse()
            resp.read()
            if resp.status != 201:
                raise RuntimeError(f"tus creation refused: {resp.status}")
            ids.append(str(resp.getheader("Location")).rsplit("/", 1)[1])
        finally:
            conn.close()
    return ids


def _tus_hostile(rng: random.Random, n: int, token: str, ids: list[str]) -> list[bytes]:
    """Bad offsets, huge or signed Upload-Length, bad checksums, unknown (or expired) ids,
    a wrong Tus-Resumable, garbage metadata: each a request of its own, Connection: close."""

    def request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
        lines = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close",
                 f"Authorization: Bearer {token}", f"Content-Length: {len(body)}"]  # fmt: skip
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    tus = {"Tus-Resumable": "1.0.0"}
    octets = {**tus, "Content-Type": "application/offset+octet-stream"}
    name = "filename " + base64.b64encode(b"x.bin").decode()
    wrong_sha = "sha256 " + base64.b64encode(bytes(32)).decode()
    shapes: list[Callable[[str], bytes]] = [
        lambda i: request(
            "POST", "/uploads/", {**tus, "Upload-Length": "9" * 25, "Upload-Metadata": name}
        ),
        lambda i: request(
            "POST", "/uploads/", {**tus, "Upload-Length": str(1 << 50), "Upload-Metadata": name}
        ),
        lambda i: request(
            "POST", "/uploads/", {**tus, "Upload-Length": "-1", "Upload-Metadata": name}
        ),
        lambda i: request(
            "POST",
            "/uploads/",
            {**tus, "Upload-Length": "10", "Upload-Metadata": "filename !!!,x " * 50},
        ),
        lambda i: request("PATCH", f"/uploads/{i}", {**octets, "Upload-Offset": "500"}, b"x" * 10),
        lambda i: request("PATCH", f"/uploads/{i}", {**octets, "Upload-Offset": "-3"}, b"x"),
        lambda i: request(
            "PATCH",
            f"/uploads/{i}",
            {**octets, "Upload-Offset": "0", "Upload-Checksum": wrong_sha},
            b"y" * 100,
        ),
        lambda i: request(
            "PATCH",
            f"/uploads/{i}",
            {**octets, "Upload-Offset": "0", "Upload-Checksum": "md5 AAAA"},
            b"y",
        ),
        lambda i: request(
            "PATCH", f"/uploads/{i}", {**octets, "Upload-Offset": "0"}, b"z" * 1500
        ),  # past Upload-Length
        lambda i: request(
            "PATCH", f"/uploads/{rng.randbytes(16).hex()}", {**octets, "Upload-Offset": "0"}, b"q"
        ),  # unknown or expired
        lambda i: request("HEAD", f"/uploads/{rng.randbytes(16).hex()}", tus),
        lambda i: request("POST", "/uploads/", {"Tus-Resumable": "0.2.2", "Upload-Length": "1"}),
    ]
    return [shapes[k % len(shapes)](ids[k % len(ids)]) for k in range(n)]


async def _hub_rows(work: Path, size: int, quick: bool, rng: random.Random) -> list[Row]:
    data = work / "hubdata"
    data.mkdir()
    token = subprocess.run(
        [PY, "-m", "hubswarm", "hub", "token", "create", "--data", str(data), "--role", "admin"],
        capture_output=True, check=True, text=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    hub = Service(
        "hub",
        [PY, "-m", "hubswarm", "-v", "hub", "serve", "--data", str(data), "--port", "0"],
        work,
    )
    url = hub.ready.strip().rsplit(" ", 1)[-1]
    port = int(url.rsplit(":", 1)[1])
    src = work / "hub.bin"
    src.write_bytes(rng.randbytes(size))
    subprocess.run(
        [PY, "-m", "hubswarm", "put", str(src), url, "--token", token],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    runs = [0]

    async def get() -> float:
        runs[0] += 1
        out = work / f"get{runs[0]}.bin"
        return await _timed(
            [PY, "-m", "hubswarm", "get", f"{url}/files/hub.bin", "-o", str(out), "--no-resume",
             "--token", token],
            work,
        )  # fmt: skip

    async def put() -> float:
        runs[0] += 1
        return await _timed(
            [PY, "-m", "hubswarm", "put", str(src), f"{url}/files/put{runs[0]}.bin",
             "--token", token],
            work,
        )  # fmt: skip

    put_head = (
        b"PUT /files/trickle%d HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {token}\r\n".encode()
        + b"Content-Length: 1000000\r\n\r\n"
    )
    measure = _measurer(quick)
    rows: list[Row] = []
    try:
        baseline = await _baseline(get, quick)
        idle, trickle = (30, 5) if quick else (300, 25)

        @contextlib.asynccontextmanager
        async def slow() -> AsyncIterator[Callable[[], int]]:
            idle_ips = _addresses(6, idle, distinct=True)
            async with (
                held(idle, lambda k: _open(idle_ips[k], port), lambda k: b"G", b"", 60.0) as a,
                held(
                    trickle,
                    lambda k: _open("127.7.0.1", port),
                    lambda k: put_head % k,
                    b"x",
                    1.0,
                ) as b,
            ):
                yield lambda: a() + b()

        rows.append(
            await measure(hub, f"{idle} idle + {trickle} trickling connections", get,
                           baseline, slow, 2.0)
        )  # fmt: skip
        n = 60 if quick else 3000

        payloads = [MALFORMED_HTTP[k % len(MALFORMED_HTTP)] for k in range(n)]
        malformed = functools.partial(_bursting, port, payloads, "127.8.0.1")
        rows.append(await measure(hub, "malformed HTTP requests", get, baseline, malformed))

        # tus: the legit client is `hubswarm put` (tus when the hub offers it).
        put_baseline = await _baseline(put, quick)
        ids = await asyncio.to_thread(_tus_uploads, port, token, 4)
        tus_payloads = _tus_hostile(rng, 48 if quick else 1200, token, ids)
        tus_attack = functools.partial(_bursting, port, tus_payloads, "127.9.0.1")
        rows.append(
            await measure(hub, "tus: bad offsets, huge lengths, bad checksums, unknown ids",
                           put, put_baseline, tus_attack)
        )  # fmt: skip
    finally:
        hub.stop()
    return rows


# A legit DHT user of the attacked node, from its own address: each query retried after
# 0.5 s up to 8 times; exits non-zero unless its announce is handed back by get_peers. (A
# real `hubswarm dht get-peers` would also query the nodes the attacked node names, among
# them the earlier legit clients, gone: their 2 s time-outs would swamp the measurement.)
LEGIT_DHT = r"""
import os, socket, sys
from hubswarm.proto import krpc
ip, port, info_hash = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
me = os.urandom(20)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((ip, 0))
s.settimeout(0.5)
def ask(body, tid):
    query = krpc.encode_message(krpc.Query(tid, body))
    for _ in range(8):
        s.sendto(query, ("127.0.0.1", port))
        try:
            while True:
                msg = krpc.decode_message(s.recv(2048))
                if isinstance(msg, krpc.Response) and msg.transaction_id == tid:
                    return msg
        except TimeoutError:
            continue
    raise SystemExit("no answer from the DHT node")
ask(krpc.Ping(me), b"p0")
for k in range(50):
    ask(krpc.FindNode(me, os.urandom(20)), b"f%d" % k)
token = ask(krpc.GetPeers(me, info_hash), b"g0").token
ask(krpc.AnnouncePeer(me, info_hash, 6881, token), b"a0")
values = ask(krpc.GetPeers(me, info_hash), b"g1").values
assert (ip, 6881) in values, values
"""


def _krpc_hostile(rng: random.Random, n: int, ip: str) -> list[Datagram]:
    """Malformed bencode, wrong types, huge lists and oversized datagrams, from one address."""
    node = b"20:" + b"n" * 20
    shapes: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randrange(1, 300)),
        lambda: b"d1:ad2:id" + node + b"e1:q4:ping1:t2:aa1:y1:q",  # truncated
        lambda: b"l" * 200 + b"e" * 200,  # nesting past the depth cap
        lambda: b"d1:ai" + b"9" * 1000 + b"e1:q4:ping1:t2:aa1:y1:qe",  # a 1000-digit integer
        lambda: b"d1:ali1ei2ee1:q4:ping1:t2:aa1:y1:qe",  # a as a list
        lambda: b"d1:ad2:id" + node + b"e1:q4:ping1:ti7e1:y1:qe",  # t as an integer
        lambda: b"d1:ad2:idi5ee1:q9:find_node1:t2:aa1:y1:qe",  # id as an integer
        lambda: b"d1:ad2:id" + node + b"e1:q4:ping1:t2:aa1:yd1:xi1eee",  # y as a dict
        # A response whose nodes are 1,300 bytes, not a multiple of 26, to no query of ours.
        lambda: b"d1:rd2:id" + node + b"5:nodes1300:" + rng.randbytes(1300) + b"e1:t2:zz1:y1:re",
        # A response with a list of 180 values.
        lambda: (
            b"d1:rd2:id"
            + node
            + b"6:valuesl"
            + b"".join(b"6:" + rng.randbytes(6) for _ in range(180))
            + b"e5:token2:tte1:t2:zy1:y1:re"
        ),
        lambda: rng.randbytes(3000),  # over any datagram a node reads
        lambda: (
            b"d1:ad2:id"
            + node
            + b"6:target20:"
            + b"x" * 20
            + b"e1:q9:find_node1:t"
            + b"40:"
            + b"t" * 40
            + b"1:y1:qe"
        ),  # an over-long t
    ]
    return [(ip, shapes[k % len(shapes)]()) for k in range(n)]


def _krpc_queries(rng: random.Random, n: int, ips: list[str]) -> list[Datagram]:
    """Well-formed ping, find_node and get_peers queries, round-robin over ``ips``."""
    out = []
    for k in range(n):
        tid, nid, target = rng.randbytes(2), rng.randbytes(20), rng.randbytes(20)
        body = {
            0: b"d1:ad2:id20:" + nid + b"e1:q4:ping",
            1: b"d1:ad2:id20:" + nid + b"6:target20:" + target + b"e1:q9:find_node",
            2: b"d1:ad2:id20:" + nid + b"9:info_hash20:" + target + b"e1:q9:get_peers",
        }[k % 3]
        out.append((ips[k % len(ips)], body + b"1:t2:" + tid + b"1:y1:qe"))
    return out


def _announce_flood(port: int, ips: list[str], per_ip: int, seed: int) -> int:
    """From each address: a get_peers for its token, then ``per_ip`` announce_peer queries
    for random info-hashes (memory, not rate: each address's store is capped)."""
    rng = random.Random(seed)
    sent = 0
    for ip in ips:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((ip, 0))
            sock.settimeout(1.0)
            nid = rng.randbytes(20)
            query = b"d1:ad2:id20:" + nid + b"9:info_hash20:" + rng.randbytes(20)
            sock.sendto(query + b"e1:q9:get_peers1:t2:gp1:y1:qe", ("127.0.0.1", port))
            sent += 1
            token = None
            with contextlib.suppress(OSError):
                for _ in range(10):
                    reply = sock.recv(2048)
                    at = reply.find(b"5:token")
                    if at >= 0:
                        length, _, rest = reply[at + 7 :].partition(b":")
                        token = rest[: int(length)]
                        break
            if token is None:
                continue
            for _ in range(per_ip):
                body = (
                    b"d1:ad2:id20:" + nid + b"9:info_hash20:" + rng.randbytes(20)
                    + b"4:porti6881e5:token" + str(len(token)).encode() + b":" + token
                    + b"e1:q13:announce_peer1:t2:ap1:y1:qe"
                )  # fmt: skip
                with contextlib.suppress(OSError):
                    sock.sendto(body, ("127.0.0.1", port))
                sent += 1
    return sent


async def _dht_rows(work: Path, quick: bool, rng: random.Random) -> list[Row]:
    node = Service("dht", [PY, "-m", "hubswarm", "-v", "dht", "node", "--port", "0",
                           "--status-every", "3600"], work)  # fmt: skip
    port = int(node.ready.strip().rsplit(":", 1)[1])
    runs = [0]
    info_hash = rng.randbytes(20).hex()

    async def lookup() -> float:
        """A legit node, from an address of its own: ping, 50 find_node, get_peers, announce
        and get_peers again (its own announce must come back)."""
        runs[0] += 1
        return await _timed(
            [PY, "-c", LEGIT_DHT, f"127.13.0.{runs[0]}", str(port), info_hash], work
        )  # fmt: skip

    measure = _measurer(quick)
    rows: list[Row] = []
    try:
        baseline = await _baseline(lookup, quick)
        n = 300 if quick else 5000
        hostile = functools.partial(_udp_bursting, port, _krpc_hostile(rng, n, "127.14.0.1"))
        rows.append(
            await measure(node, "KRPC: malformed bencode, wrong types, huge lists", lookup,
                           baseline, hostile)
        )  # fmt: skip
        n_flood, rate = (4000, 2000.0) if quick else (40_000, 2000.0)
        one = functools.partial(
            _udp_flooding, port, _krpc_queries(rng, n_flood, ["127.14.0.2"]), rate
        )
        rows.append(
            await measure(node, f"KRPC query flood, one address, {rate:.0f}/s", lookup,
                           baseline, one)
        )  # fmt: skip
        many_ips = _addresses(14, 50 if quick else 500, distinct=True)
        many = functools.partial(_udp_flooding, port, _krpc_queries(rng, n_flood, many_ips), rate)
        rows.append(
            await measure(node, f"KRPC queries from {len(many_ips)} addresses, {rate:.0f}/s",
                           lookup, baseline, many)
        )  # fmt: skip
        ann_ips, per_ip = (_addresses(15, 5, distinct=True), 100) if quick else (
            _addresses(15, 50, distinct=True), 1000)  # fmt: skip

        @contextlib.asynccontextmanager
        async def announces() -> AsyncIterator[Callable[[], int]]:
            sent = await asyncio.to_thread(_announce_flood, port, ann_ips, per_ip, 7)
            yield lambda: sent

        rows.append(
            await measure(node, f"announce_peer flood, {len(ann_ips)} addresses x {per_ip} "
                           "info-hashes", lookup, baseline, announces)
        )  # fmt: skip
    finally:
        node.stop()
    return rows


# A legit tracker user: N BEP 15 announces (one connect) and N HTTP announces (the harness:
# 100 each, so one Python start does not make the whole time), from its own address; exits
# non-zero on any refusal.
LEGIT_TRACKER = r"""
import http.client, socket, sys
from urllib.parse import quote_from_bytes as q
from hubswarm.proto import bencode, udp_tracker as udp
ip, http_port, udp_port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ih = bytes(range(20))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((ip, 0))
s.settimeout(0.5)
def ask(data, action, tid):
    for _ in range(8):
        s.sendto(data, ("127.0.0.1", udp_port))
        try:
            return udp.parse_response(s.recv(4096), action=action, transaction_id=tid)
        except TimeoutError:
            continue
    raise SystemExit("no reply from the UDP tracker")
cid = ask(udp.ConnectRequest(1).encode(), udp.Action.CONNECT, 1).connection_id
for k in range(n):
    req = udp.AnnounceRequest(cid, 2 + k, ih, b"L" * 19 + bytes([k]), left=1, port=7000 + k)
    r = ask(req.encode(), udp.Action.ANNOUNCE, 2 + k)
    assert isinstance(r, udp.AnnounceResponse), r
c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10, source_address=(ip, 0))
for k in range(n):
    c.request("GET", f"/announce?info_hash={q(ih)}&peer_id={q(b'H' * 19 + bytes([k]))}"
              f"&port={8000 + k}&uploaded=0&downloaded=0&left=1&compact=1")
    body = bencode.decode(c.getresponse().read())
    assert b"failure reason" not in body, body
"""


def _tracker_hostile(rng: random.Random, n: int, ip: str) -> list[Datagram]:
    """Short packets, random bytes, announces and scrapes with made-up connection ids,
    connects with a wrong protocol id, oversized datagrams."""
    shapes: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randrange(0, 16)),
        lambda: rng.randbytes(rng.randrange(16, 200)),
        lambda: udp.AnnounceRequest(
            rng.getrandbits(64), 1, rng.randbytes(20), rng.randbytes(20), port=6881
        ).encode(),
        lambda: udp.ScrapeRequest(rng.getrandbits(64), 1, (rng.randbytes(20),)).encode(),
        lambda: rng.getrandbits(64).to_bytes(8, "big") + bytes(4) + rng.randbytes(4),
        lambda: rng.randbytes(3000),
    ]
    return [(ip, shapes[k % len(shapes)]()) for k in range(n)]


def _tracker_announce_flood(port: int, ip: str, n: int, seed: int) -> int:
    """One address: a connect, then ``n`` announces of new peers for new torrents."""
    rng = random.Random(seed)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ip, 0))
        sock.settimeout(1.0)
        sock.sendto(udp.ConnectRequest(1).encode(), ("127.0.0.1", port))
        reply = udp.parse_response(sock.recv(64), action=udp.Action.CONNECT, transaction_id=1)
        assert isinstance(reply, udp.ConnectResponse)
        for k in range(n):
            req = udp.AnnounceRequest(reply.connection_id, k, rng.randbytes(20),
                                      rng.randbytes(20), port=1 + k % 60000)  # fmt: skip
            with contextlib.suppress(OSError):
                sock.sendto(req.encode(), ("127.0.0.1", port))
            if k % 64 == 63:  # read what came back so the socket buffer never fills
                with contextlib.suppress(OSError):
                    sock.settimeout(0.01)
                    while sock.recv(4096):
                        pass
    return n + 1


async def _tracker_rows(work: Path, quick: bool, rng: random.Random) -> list[Row]:
    tracker = Service("tracker", [PY, "-m", "hubswarm", "-v", "tracker", "--port", "0",
                                  "--udp-port", "0", "--interval", "60"], work)  # fmt: skip
    http_port = int(tracker.ready.strip().rsplit(":", 1)[1].split("/")[0])
    udp_port = int(tracker.next_line().strip().rsplit(":", 1)[1].split("/")[0])
    runs = [0]

    async def announcer() -> float:
        runs[0] += 1
        return await _timed(
            [PY, "-c", LEGIT_TRACKER, f"127.16.0.{runs[0]}", str(http_port), str(udp_port),
             "10" if quick else "100"], work,
        )  # fmt: skip

    measure = _measurer(quick)
    rows: list[Row] = []
    try:
        baseline = await _baseline(announcer, quick)
        n = 300 if quick else 5000
        hostile = functools.partial(_udp_bursting, udp_port, _tracker_hostile(rng, n, "127.17.0.1"))
        rows.append(
            await measure(tracker, "UDP: short packets, bad connection ids, random", announcer,
                           baseline, hostile)
        )  # fmt: skip
        n_connects, rate = (4000, 2000.0) if quick else (40_000, 2000.0)
        connects = [("127.17.0.2", udp.ConnectRequest(k).encode()) for k in range(n_connects)]
        rows.append(
            await measure(tracker, f"UDP connect flood, one address, {rate:.0f}/s", announcer,
                           baseline, functools.partial(_udp_flooding, udp_port, connects, rate))
        )  # fmt: skip
        n_ann = 1500 if quick else 5000

        @contextlib.asynccontextmanager
        async def announces() -> AsyncIterator[Callable[[], int]]:
            sent = await asyncio.to_thread(_tracker_announce_flood, udp_port, "127.17.0.3",
                                           n_ann, 5)  # fmt: skip
            yield lambda: sent

        rows.append(
            await measure(tracker, f"UDP announce flood, one address, {n_ann} new peers",
                           announcer, baseline, announces)
        )  # fmt: skip
    finally:
        tracker.stop()
    return rows


def _table(rows: list[Row]) -> str:
    head = (
        "| service | attack | inputs | alive | legit without (s) | under attack (s) | ratio "
        "| RSS KiB before -> after | open files before -> after | log B / input | load |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        logb = f"{r.log_bytes_per_input:.1f}" if r.log_bytes_per_input is not None else "-"
        lines.append(
            f"| {r.service} | {r.attack} | {r.inputs} | {'yes' if r.alive else 'NO'} "
            f"| {r.legit_without:.2f} | {r.legit_under:.2f} | {ratio} "
            f"| {r.rss_before_kib} -> {r.rss_after_kib} | {r.fds_before} -> {r.fds_after} "
            f"| {logb} | {r.loadavg:.1f} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Row]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 8192), hard), hard))
    quick, seed = args.quick, args.seed
    size = (1 if quick else 8) << 20
    with tempfile.TemporaryDirectory(prefix="hubswarm-abuse-") as tmp:
        work = Path(tmp)
        everything: dict[str, Callable[[], Awaitable[list[Row]]]] = {
            "seed": lambda: _seed_rows(work / "seed", size, quick, random.Random(f"{seed}:seed")),
            "seed-utp": lambda: _seed_rows_utp_mse(
                work / "seed-utp", size, quick, random.Random(f"{seed}:seed-utp")
            ),
            "hub": lambda: _hub_rows(work / "hub", size, quick, random.Random(f"{seed}:hub")),
            "dht": lambda: _dht_rows(work / "dht", quick, random.Random(f"{seed}:dht")),
            "tracker": lambda: _tracker_rows(
                work / "tracker", quick, random.Random(f"{seed}:tracker")
            ),
        }
        chosen = args.only or list(everything)
        groups = [everything[name] for name in chosen]
        for group in chosen:
            (work / group).mkdir()
        if quick:
            # The five services at once: the short run checks that they hold (alive, memory,
            # files, logs); its ratios are noisier than the full run's, one service at a time.
            started = time.perf_counter()

            async def timed(group: Callable[[], Awaitable[list[Row]]]) -> list[Row]:
                rows = await group()
                print(f"{rows[0].service}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
                return rows

            return [
                row for rows in await asyncio.gather(*(timed(g) for g in groups)) for row in rows
            ]
        rows: list[Row] = []
        for group_rows in groups:
            rows += await group_rows()
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only",
        action="append",
        choices=["seed", "seed-utp", "hub", "dht", "tracker"],
        help="run only this group of rows (repeatable; seed-utp: MSE and uTP)",
    )
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    if args.json:
        for r in rows:
            print(json.dumps({**asdict(r), "ratio": r.ratio}))
    else:
        print(_table(rows))


if __name__ == "__main__":
    main()
