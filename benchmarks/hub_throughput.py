#!/usr/bin/env python3
"""Hub throughput against nginx, measured in the same run on the same file.

Starts our hub (``python3 -m hubswarm hub serve``) and nginx (sendfile on, one worker) on
loopback over the same folder, then measures, in rounds that alternate the cases (so a burst
of load from other jobs hits them alike):
  (a) curl from nginx and (b) curl from our hub (both to /dev/null): target >= 0.9x nginx,
  (c) our client (``hubswarm.hub.client.download``: streamed, SHA-256 verified, fsync'ed,
      renamed into place) against (d) the disk's write+fsync ceiling: target >= 0.8x,
  (e) 32 concurrent clients x 64 MiB and (f) 1,000 concurrent clients x 1 MiB from our hub,
      every body hashed and checked against the hub's X-Content-SHA256,
polling the hub's RSS (/proc/PID/status) all the while. Beside each time it prints the
CPU-seconds of the server (hub or nginx worker, from /proc/PID/stat) and of the client
(curl from getrusage, ours and the disk writer from os.times of this process).

Run: python3 benchmarks/hub_throughput.py [--size-mib 1024] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import os
import pstats
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from hubswarm.hub import client

MIB = 1024 * 1024
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float:
    """CPU-seconds (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    """CPU-seconds of this process (every thread: our client's hash and write threads too)."""
    t = os.times()
    return t.user + t.system


def children_cpu() -> float:
    """CPU-seconds of this process's finished children (curl)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed run: bytes per second, server and client CPU-seconds, load average."""

    rate: float
    server_cpu: float
    client_cpu: float
    load: str


def make_file(path: Path, size: int) -> None:
    """Random-ish content without spending seconds in os.urandom: repeat a random 1 MiB block
    with a counter, so no two MiB blocks are equal (no accidental dedup or compression)."""
    block = os.urandom(MIB)
    with open(path, "wb") as f:
        for i in range(size // MIB):
            f.write(i.to_bytes(8, "big") + block[8:])
        f.write(os.urandom(size % MIB))


class RssMonitor:
    """Polls VmRSS and VmHWM of one process every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = 0
        self.hwm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return
        for key, attr in (("VmRSS", "peak_rss"), ("VmHWM", "hwm")):
            m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
            if m:
                setattr(self, attr, max(getattr(self, attr), int(m.group(1)) * 1024))

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def __enter__(self) -> RssMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sample()
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak(self) -> int:
        return max(self.peak_rss, self.hwm)


@contextlib.contextmanager
def hub_process(data: Path) -> Iterator[tuple[str, int]]:
    """Run our hub; yield (base URL, pid); stop it by PID."""
    cmd = [sys.executable, "-m", "hubswarm", "hub", "serve", "--data", str(data), "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--anonymous-read"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        url = None
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"https?://[^\s/]+", line)
            if m:
                url = m.group(0)
                break
        if url is None:
            err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
            raise SystemExit(f"hub did not print its URL: {err.strip()[-500:]}")
        # Keep draining stdout so the hub never blocks on a full pipe.
        drain = threading.Thread(target=lambda: proc.stdout and proc.stdout.read(), daemon=True)
        drain.start()
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


@contextlib.contextmanager
def nginx_process(root: Path, tmp: Path, workers: int) -> Iterator[tuple[str, int]]:
    """Run nginx with sendfile over ``root``; yield (base URL, master pid); stop it by PID."""
    port = free_port()
    prefix = tmp / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    temps = "\n".join(
        f"  {k}_temp_path {prefix / k};"
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"""
daemon off;
user root;
worker_processes {workers};
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
{temps}
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location / {{ }}
  }}
}}
"""
    )
    proc = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(prefix)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise SystemExit(f"nginx exited: {(prefix / 'error.log').read_text()[-500:]}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful shutdown of master and workers
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def nginx_workers_cpu(master: int) -> float:
    """CPU-seconds of nginx's master and its workers (the workers do the sending)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return proc_cpu(master) + sum(proc_cpu(int(pid)) for pid in children)


def disk_ceiling(path: Path, size: int, *, windowed: bool) -> Sample:
    """Writing ``size`` bytes in 1 MiB blocks plus fsync (what ``dd bs=1M conv=fsync``
    measures), or, ``windowed``, as our client saves: 256 KiB writes, each finished 32 MiB
    pushed towards the disk as it goes. The faster bounds any client that saves durably."""
    block = memoryview(os.urandom(MIB))
    step = MIB // 4 if windowed else MIB
    window = 32 * MIB
    cpu0, started = self_cpu(), time.perf_counter()
    with open(path, "wb", buffering=0) as f:
        for i in range(size // MIB):
            for offset in range(0, MIB, step):
                f.write(block[offset : offset + step])
            end = (i + 1) * MIB
            if windowed and end % window == 0:
                os.posix_fadvise(f.fileno(), end - window, window, os.POSIX_FADV_DONTNEED)
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - started
    cpu = self_cpu() - cpu0
    path.unlink()
    return Sample(size / elapsed, 0.0, cpu, loadavg())


def curl_speed(url: str, server: Callable[[], float]) -> Sample:
    """One curl download to /dev/null: its speed, the server's and curl's CPU-seconds."""
    s0, c0 = server(), children_cpu()
    out = subprocess.run(
        ["curl", "-s", "-f", "-o", "/dev/null", "-w", "%{speed_download}", url],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    return Sample(float(out), server() - s0, children_cpu() - c0, loadavg())


async def our_client_speed(url: str, dest: Path, hub_pid: int) -> Sample:
    s0, c0 = proc_cpu(hub_pid), self_cpu()
    result = await client.download(url, dest, token=None, progress=None, resume=False)
    sample = Sample(result.rate, proc_cpu(hub_pid) - s0, self_cpu() - c0, loadavg())
    if not result.verified:
        raise SystemExit("download not verified")
    dest.unlink()
    return sample


async def fetch_verified(session: aiohttp.ClientSession, url: str) -> int:
    """Stream one body, hash it, check it against the hub's X-Content-SHA256; return size."""
    async with session.get(url, headers={"Accept-Encoding": "identity"}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}")
        expected = resp.headers["X-Content-SHA256"]
        h = hashlib.sha256()
        n = 0
        async for chunk in resp.content.iter_chunked(256 * 1024):
            h.update(chunk)
            n += len(chunk)
    if h.hexdigest() != expected:
        raise RuntimeError(f"{url}: checksum mismatch")
    return n


async def concurrent(url: str, clients: int, expected_size: int) -> float:
    """``clients`` simultaneous verified downloads over one session; returns elapsed s."""
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(fetch_verified(session, url)) for _ in range(clients)]
        elapsed = time.perf_counter() - started
    sizes = {t.result() for t in tasks}
    if sizes != {expected_size}:
        raise RuntimeError(f"wrong sizes {sizes}")
    return elapsed


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="single-file size (default 1024)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of the single-file cases")
    ap.add_argument("--quick", action="store_true", help="small concurrency cases (8x8, 100x1)")
    ap.add_argument("--clients", type=int, default=None, help="concurrent clients (default 32)")
    ap.add_argument("--clients-mib", type=int, default=None, help="their file size (default 64)")
    ap.add_argument("--many", type=int, default=None, help="many small clients (default 1000)")
    ap.add_argument("--nginx-workers", type=int, default=1)
    ap.add_argument(
        "--profile",
        action="store_true",
        help="first, one download by our client under cProfile (its event loop thread)",
    )
    args = ap.parse_args()
    clients = args.clients or (8 if args.quick else 32)
    clients_mib = args.clients_mib or (8 if args.quick else 64)
    many = args.many or (100 if args.quick else 1000)
    size = args.size_mib * MIB

    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    try:
        data = tmp / "data"
        files = data / "files"
        files.mkdir(parents=True)
        print(f"creating files in {tmp} ...", flush=True)
        make_file(files / "big.bin", size)
        make_file(files / "mid.bin", clients_mib * MIB)
        make_file(files / "small.bin", 1 * MIB)
        with (
            hub_process(data) as (hub, hub_pid),
            nginx_process(files, tmp, args.nginx_workers) as (nginx, nginx_pid),
            RssMonitor(hub_pid) as rss,
        ):
            print(f"hub {hub} (pid {hub_pid}), nginx {nginx} ({args.nginx_workers} worker)")
            # Warm up: the hub hashes each file once (cached), the page cache holds the file.
            for name in ("big.bin", "mid.bin", "small.bin"):
                curl_speed(f"{hub}/files/{name}", lambda: 0.0)
            curl_speed(f"{nginx}/big.bin", lambda: 0.0)

            big = "/files/big.bin"
            cases: dict[str, Callable[[], Sample]] = {
                "curl  <- nginx": lambda: curl_speed(
                    f"{nginx}/big.bin", lambda: nginx_workers_cpu(nginx_pid)
                ),
                "curl  <- hub": lambda: curl_speed(hub + big, lambda: proc_cpu(hub_pid)),
                "ours  <- hub": lambda: asyncio.run(
                    our_client_speed(hub + big, tmp / "dl.bin", hub_pid)
                ),
                "disk write+fsync": lambda: disk_ceiling(tmp / "disk.bin", size, windowed=False),
                "disk windowed": lambda: disk_ceiling(tmp / "disk.bin", size, windowed=True),
            }
            runs: dict[str, list[Sample]] = {k: [] for k in cases}
            mb = 1e6
            gib = size / 2**30
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                r = asyncio.run(our_client_speed(hub + big, tmp / "dl.bin", hub_pid))
                profiler.disable()
                print(f"\nour client under cProfile: {r.rate / mb:.1f} MB/s")
                pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
            print(f"\nsingle file {args.size_mib} MiB, {args.repeat} alternating rounds:")
            # nginx and the hub twice per round, in ABBA order, so a drift of the machine's
            # load within a round weighs on both alike (single runs vary 2x under load).
            order = ["curl  <- nginx", "curl  <- hub", "curl  <- hub", "curl  <- nginx"]
            order += [k for k in cases if not k.startswith("curl")]
            for i in range(args.repeat):
                for key in order:
                    run = cases[key]
                    r = run()
                    runs[key].append(r)
                    print(
                        f"  round {i + 1} {key:17s} {r.rate / mb:8.1f} MB/s  CPU-s/GiB "
                        f"server {r.server_cpu / gib:5.2f} client {r.client_cpu / gib:5.2f}  "
                        f"load {r.load}",
                        flush=True,
                    )

            def best(key: str) -> Sample:
                return max(runs[key], key=lambda r: r.rate)

            def median(key: str) -> float:
                return statistics.median(r.rate for r in runs[key])

            def line(key: str, note: str) -> None:
                b = best(key)
                print(
                    f"  {key:17s}: best {b.rate / mb:8.1f} MB/s (median {median(key) / mb:8.1f})"
                    f"  CPU-s/GiB server {b.server_cpu / gib:5.2f} client {b.client_cpu / gib:5.2f}"
                    f"  {note}"
                )

            r_nginx, r_curl = best("curl  <- nginx").rate, best("curl  <- hub").rate
            r_ours = best("ours  <- hub").rate
            r_dd, r_win = best("disk write+fsync").rate, best("disk windowed").rate
            print(f"\nsingle file {args.size_mib} MiB, best of all runs above:")
            line("curl  <- nginx", "(reference)")
            line(
                "curl  <- hub",
                f"{r_curl / r_nginx:5.2f}x nginx (median "
                f"{median('curl  <- hub') / median('curl  <- nginx'):.2f}x)  target >= 0.90x  "
                f"{verdict(r_curl >= 0.9 * r_nginx)}",
            )
            line("disk write+fsync", "(dd conv=fsync)")
            line("disk windowed", "(256 KiB writes, writeback every 32 MiB, as ours)")
            # The target is against dd's write+fsync; the windowed writer is printed
            # too, being the faster way to save durably on some disks.
            line(
                "ours  <- hub",
                f"{r_ours / r_dd:5.2f}x write+fsync  target >= 0.80x  "
                f"{verdict(r_ours >= 0.8 * r_dd)}  ({r_ours / r_win:.2f}x windowed; "
                "sha256 + write + fsync)",
            )
            s0, c0 = proc_cpu(hub_pid), self_cpu()
            t = asyncio.run(concurrent(hub + "/files/mid.bin", clients, clients_mib * MIB))
            total = clients * clients_mib * MIB
            print(
                f"\n{clients} clients x {clients_mib} MiB: all verified, {t:.2f} s, "
                f"{total / t / mb:.1f} MB/s aggregate; CPU-s hub {proc_cpu(hub_pid) - s0:.2f} "
                f"clients {self_cpu() - c0:.2f}; load {loadavg()}"
            )
            s0, c0 = proc_cpu(hub_pid), self_cpu()
            t = asyncio.run(concurrent(hub + "/files/small.bin", many, MIB))
            print(
                f"{many} clients x 1 MiB: all verified, {t:.2f} s, {many * MIB / t / mb:.1f} MB/s"
                f"; CPU-s hub {proc_cpu(hub_pid) - s0:.2f} clients {self_cpu() - c0:.2f}; "
                f"load {loadavg()}"
            )
        peak = rss.peak
        print(
            f"\nhub peak RSS {peak / MIB:.1f} MiB (VmHWM {rss.hwm / MIB:.1f} MiB)  "
            f"target < 200 MiB  {verdict(peak < 200 * MIB)}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
