"""Abuse harness (issue 21): hostile inputs against a real seed and a real hub, with legit
clients timed with and without the attack in the same run.

Loopback only (all of 127.0.0.0/8 is loopback on Linux: attackers bind 127.x.y.z sources),
real processes (``hubswarm share``, ``hubswarm hub serve``, ``hubswarm fetch``/``get``),
every loop bounded. For each attack it prints: inputs sent, whether the service is alive,
the legit client's time without and under attack (ratio), RSS and open files before and
after (the attack's sockets closed), and the service's log bytes per hostile input.

    python benchmarks/abuse.py            # the issue's sizes (about a minute)
    python benchmarks/abuse.py --quick    # a few seconds (tests/test_abuse_harness.py)
    python benchmarks/abuse.py --json     # one JSON object per row

Targets: seed under 100 idle handshaken peers from one address, under 500 from distinct
addresses, under 500 half-open: fetch within 2x; hub under 300 idle and 25 trickling
connections: get within 2x; malformed HTTP: < 200 log bytes each, no traceback; RSS and
open files back within 10 % of the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from hubswarm.proto.metainfo import parse_metainfo

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
# Seconds for a service to close what an attack left before "after" is read (--quick: 0.5).
SETTLE = 1.5


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


async def _measure(
    service: Service,
    attack: str,
    legit: Callable[[], Awaitable[float]],
    baseline: float,
    run: Callable[[], contextlib.AbstractAsyncContextManager[Callable[[], int]]],
    wait_before: float = 0.5,
    *,
    settle: float = SETTLE,
) -> Row:
    pid = service.proc.pid
    rss0, fds0, log0 = _rss_kib(pid), _fds(pid), service.log_bytes()
    async with run() as sent:
        await asyncio.sleep(wait_before)
        under = await legit()
        inputs = sent()
    await asyncio.sleep(settle)
    log_per = (service.log_bytes() - log0) / inputs if inputs else None
    return Row(
        service.name, attack, inputs, service.alive, baseline, under,
        rss0, _rss_kib(pid), fds0, _fds(pid), log_per,
    )  # fmt: skip


async def _seed_rows(work: Path, size: int, quick: bool, rng: random.Random) -> list[Row]:
    src = work / "seed" / "payload.bin"
    src.parent.mkdir()
    src.write_bytes(rng.randbytes(size))
    torrent = work / "payload.torrent"
    seed = Service(
        "seed",
        [PY, "-m", "hubswarm", "-v", "share", str(src), "-o", str(torrent), "--host",
         "127.0.0.1", "--port", "0", "--json", "--no-utp", "--max-per-address", "1"],
        work,
    )  # fmt: skip
    port = int(json.loads(seed.ready)["port"])
    info_hash = parse_metainfo(torrent.read_bytes()).info_hash
    runs = [0]

    async def fetch() -> float:
        runs[0] += 1
        out = work / f"fetch{runs[0]}"
        return await _timed(
            [PY, "-m", "hubswarm", "fetch", str(torrent), "-o", str(out), "--peer",
             f"127.0.0.1:{port}", "--host", "127.0.0.1", "--no-utp", "-q", "--timeout", "90"],
            work,
        )  # fmt: skip

    def handshake(k: int) -> bytes:
        return PSTR + bytes(8) + info_hash + b"-XX0000-%012d" % k

    Attack = Callable[[], contextlib.AbstractAsyncContextManager[Callable[[], int]]]

    def squat(ips: list[str]) -> Attack:
        return lambda: held(len(ips), lambda k: _open(ips[k], port), handshake, KEEPALIVE, 30.0)

    def half_open(ips: list[str]) -> Attack:
        return lambda: held(len(ips), lambda k: _open(ips[k], port), lambda k: b"", b"", 60.0)

    measure = functools.partial(_measure, settle=SETTLE / 3 if quick else SETTLE)
    rows: list[Row] = []
    try:
        baseline = statistics.median([await fetch() for _ in range(1 if quick else 3)])
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

    put_head = (
        b"PUT /files/trickle%d HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {token}\r\n".encode()
        + b"Content-Length: 1000000\r\n\r\n"
    )
    measure = functools.partial(_measure, settle=SETTLE / 3 if quick else SETTLE)
    rows: list[Row] = []
    try:
        baseline = statistics.median([await get() for _ in range(1 if quick else 3)])
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
    finally:
        hub.stop()
    return rows


def _table(rows: list[Row]) -> str:
    head = (
        "| service | attack | inputs | alive | legit without (s) | under attack (s) | ratio "
        "| RSS KiB before -> after | open files before -> after | log B / input |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        logb = f"{r.log_bytes_per_input:.1f}" if r.log_bytes_per_input is not None else "-"
        lines.append(
            f"| {r.service} | {r.attack} | {r.inputs} | {'yes' if r.alive else 'NO'} "
            f"| {r.legit_without:.2f} | {r.legit_under:.2f} | {ratio} "
            f"| {r.rss_before_kib} -> {r.rss_after_kib} | {r.fds_before} -> {r.fds_after} "
            f"| {logb} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Row]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 8192), hard), hard))
    rng = random.Random(args.seed)
    size = (1 if args.quick else 8) << 20
    with tempfile.TemporaryDirectory(prefix="hubswarm-abuse-") as tmp:
        work = Path(tmp)
        rows = await _seed_rows(work, size, args.quick, rng)
        rows += await _hub_rows(work, size, args.quick, rng)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    if args.json:
        for r in rows:
            print(json.dumps({**asdict(r), "ratio": r.ratio}))
    else:
        print(_table(rows))


if __name__ == "__main__":
    main()
