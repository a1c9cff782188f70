#!/usr/bin/env python3
"""Hub upload throughput: what hashing the torrent's pieces during an upload costs.

Starts two hubs on loopback (``python3 -m hubswarm hub serve``), the same code, one with the
SHA-1 piece hashing of uploads switched off (``hub.torrents.hasher_for`` returns None, as for
a chunked upload: the reference, the hub before issue 19) and one as shipped, and uploads
the same file to each in turn with ``curl -T`` (plain PUT) and with ``hubswarm put`` (tus),
``--repeat`` times alternating. Prints the median MB/s of each and the ratios.

Run: python3 benchmarks/hub_upload.py [--size-mib 512] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from hubswarm.hub.auth import Role, TokenStore

MIB = 1024 * 1024
_NO_PIECES = (
    "import sys, hubswarm.hub.torrents as t; t.hasher_for = lambda size: None; "
    "from hubswarm.cli import main; sys.argv[0] = 'hubswarm'; main()"
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def hub(data: Path, pieces: bool) -> Iterator[tuple[str, int]]:
    """A hub process on 127.0.0.1; yields its URL and PID; stopped by its PID."""
    data.mkdir(parents=True)
    prog = ["-m", "hubswarm"] if pieces else ["-c", _NO_PIECES]
    args = ["hub", "serve", "--data", str(data), "--port", "0", "--no-tracker"]
    proc = subprocess.Popen(
        [sys.executable, *prog, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"on (http://\S+)", line)
        if match is None:
            raise SystemExit(f"hub did not start: {line!r}")
        yield match.group(1), proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def token(data: Path) -> str:
    """A write token of the hub at ``data``."""
    return TokenStore(data).create(Role.WRITE)[1]


def curl_put(url: str, tok: str, src: Path, name: str) -> float:
    """Seconds for one ``curl -T`` upload (the hub answers only after its fsync)."""
    started = time.perf_counter()
    subprocess.run(
        [
            "curl",
            "-s",
            "-f",
            "-o",
            "/dev/null",
            "-H",
            f"Authorization: Bearer {tok}",
            "-T",
            str(src),
            f"{url}/files/{name}",
        ],
        check=True,
        timeout=600,
    )
    return time.perf_counter() - started


def tus_put(url: str, tok: str, src: Path, cache: Path) -> float:
    """Seconds for one ``hubswarm put`` (tus), its SHA-256 pass over the file included."""
    env = {**os.environ, "HUBSWARM_TOKEN": tok, "XDG_CACHE_HOME": str(cache)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "hubswarm", "put", str(src), url],
        check=True,
        timeout=600,
        env=env,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="128 MiB, 3 rounds")
    args = ap.parse_args()
    size = (128 if args.quick else args.size_mib) * MIB
    with tempfile.TemporaryDirectory(prefix="hub-upload-") as tmp:
        root = Path(tmp)
        src = root / "src.bin"
        with src.open("wb") as f:
            for _ in range(size // MIB):
                f.write(os.urandom(MIB))
        hubs = {"reference (no pieces)": root / "ref", "with pieces": root / "new"}
        times: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        with contextlib.ExitStack() as stack:
            urls, pids = {}, {}
            for label, data in hubs.items():
                urls[label], pids[label] = stack.enter_context(
                    hub(data, pieces=label == "with pieces")
                )
            tokens = {label: token(data) for label, data in hubs.items()}
            for i in range(args.repeat):
                for label in hubs:  # alternate, so drift in the machine's load hits both
                    for how in ("curl -T (PUT)", "hubswarm put (tus)"):
                        used = cpu_seconds(pids[label])
                        if how.startswith("curl"):
                            t = curl_put(urls[label], tokens[label], src, f"c{i}.bin")
                        else:
                            t = tus_put(urls[label], tokens[label], src, root / "cache")
                        times.setdefault((how, label), []).append(t)
                        cpu.setdefault((how, label), []).append(cpu_seconds(pids[label]) - used)
        print(f"upload of {size // MIB} MiB, median of {args.repeat}:")
        print("  wall: MB/s (10^6 bytes/s); hub CPU: seconds (all threads) per GiB received")
        for how in ("curl -T (PUT)", "hubswarm put (tus)"):
            ref = statistics.median(times[(how, "reference (no pieces)")])
            new = statistics.median(times[(how, "with pieces")])
            gib = size / (1 << 30)
            ref_cpu = statistics.median(cpu[(how, "reference (no pieces)")]) / gib
            new_cpu = statistics.median(cpu[(how, "with pieces")]) / gib
            print(
                f"  {how:20s} wall: reference {size / ref / 1e6:7.1f}  with pieces "
                f"{size / new / 1e6:7.1f}  ratio {ref / new:.3f}   hub CPU: reference "
                f"{ref_cpu:5.2f}  with pieces {new_cpu:5.2f}  ratio {new_cpu / ref_cpu:.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
