"""A lab swarm peer's CPU per run (issue 18, target 2), measured from /proc.

Runs the acceptance flash crowd (u_s = u_i = 1 MiB/s, F = 1.5 MiB, 32 KiB pieces, DHT only) as
``hubswarm lab run`` at each N, and prints per run: CPU-s per peer process from ``go`` to its
end (user + system, read by the lab from /proc/PID/stat, the note the fleet adds to runs.json)
beside the 0.08 CPU-s target, the host's busy and kernel CPU-s over the run, T / D_p2p, how
busy the host was, and the load average before and after. Root: netns emulation.

    python3 benchmarks/lab_peer_cpu.py --clients 8 --repeat 3
    python3 benchmarks/lab_peer_cpu.py --clients 8 --clients 32 --profile /tmp/prof --top 30

``--profile DIR``: every peer runs under cProfile from ``go`` (``HUBSWARM_AGENT_PROFILE``);
the profiles of each N are merged and their top entries printed (cumulative over all peers).
Profiling slows the peers: read CPU-s from runs without it.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from hubswarm.lab.bounds import d_p2p

TARGET_CPU_PER_PEER = 0.08
_CPU_NOTE = re.compile(
    r"client CPU .*?: (\d+) processes, mean ([\d.]+), median ([\d.]+), max ([\d.]+) CPU-s"
    r" \(system: mean ([\d.]+)\)"
    r"(?:; host busy ([\d.]+) CPU-s, kernel \(system \+ irq \+ softirq\) ([\d.]+))?"
)
_SCENARIO = """name = "peer-cpu-n{n}"
description = "Acceptance flash crowd, swarm only (benchmarks/lab_peer_cpu.py)."
clients = {n}
file_size = "1536KiB"
server_upload = "1MiB"
client_upload = "1MiB"
client_download = "16MiB"
arrivals = "flash"
architectures = ["p2p"]
emulation = "netns"
timeout = 90
piece_size = "32KiB"
seed = 1
"""


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def one_run(n: int, work: Path, profile: Path | None) -> dict[str, object]:
    scenario = work / f"n{n}.toml"
    scenario.write_text(_SCENARIO.format(n=n))
    out = work / f"out-n{n}"
    env = dict(os.environ)
    if profile is not None:
        env["HUBSWARM_AGENT_PROFILE"] = str(profile / f"n{n}")
    before = loadavg()
    cmd = [sys.executable, "-m", "hubswarm", "lab", "run", str(scenario), "--out", str(out)]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=600)
    after = loadavg()
    runs_json = max(out.glob("*/runs.json"), key=lambda p: p.stat().st_mtime)
    run = json.loads(runs_json.read_text())["runs"][0]
    match = next(filter(None, (_CPU_NOTE.search(x) for x in run["notes"])), None)
    ends = [c["end"] for c in run["clients"]]
    bound = d_p2p(
        run["n"], run["file_size"], run["server_upload"], run["uploads"], min(run["downloads"])
    )
    t = max(ends) if all(e is not None for e in ends) else None
    return {
        "n": n,
        "procs": int(match.group(1)) if match else None,
        "mean": float(match.group(2)) if match else None,
        "max": float(match.group(4)) if match else None,
        "sys": float(match.group(5)) if match else None,
        "host": float(match.group(6)) if match and match.group(6) else None,
        "kernel": float(match.group(7)) if match and match.group(7) else None,
        "t_bound": t / bound if t is not None else None,
        "busy": run["host_cpu_busy"],
        "load": f"{before} -> {after}",
    }


def fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# Areas of the code, by file (first match wins); a builtin's time goes to its caller's area.
_AREAS = (
    ("DHT (node, lookups, KRPC, bencode)", ("/dht/", "krpc", "bencode", "dhtramp", "sendto")),
    ("uTP and the UDP socket shell", ("utp", "hubswarm/net.py", "recvfrom")),
    ("asyncio event loop", ("asyncio", "selectors", "epoll")),
    ("wire codec (proto/wire*)", ("proto/wire",)),
    ("peer link shell, socket send/recv", ("swarm/peer.py", "'send'", "recv_into")),
    ("event log, clock", ("json", "hubswarm/clock.py", "flush")),
    ("session, picker, choker, storage, dialer", ("hubswarm/swarm/",)),
    ("start-up (CLI, imports)", ("click", "rich", "cli", "importlib", "exec", "proto/")),
)


def area(filename: str, function: str) -> str:
    where = f"{filename}:{function}"
    return next((name for name, keys in _AREAS if any(k in where for k in keys)), "other")


def print_areas(stats: pstats.Stats) -> None:
    """Own time by area of the code, each builtin's time charged to its callers."""
    areas: dict[str, float] = {}
    total = 0.0
    table = stats.stats  # type: ignore[attr-defined]
    for (filename, _, function), (_, _, tottime, _, callers) in table.items():
        total += tottime
        if filename == "~" and "epoll" not in function and callers:
            for (c_file, _, c_function), (_, _, c_tottime, _) in callers.items():
                key = area(c_file, c_function)
                areas[key] = areas.get(key, 0.0) + c_tottime
        else:
            key = area(filename, function)
            areas[key] = areas.get(key, 0.0) + tottime
    print(f"  main-thread CPU under cProfile: {total:.2f} s; by area:")
    for name, seconds in sorted(areas.items(), key=lambda kv: -kv[1]):
        print(f"    {100 * seconds / total:5.1f} %  {name}")


def print_profile(folder: Path, top: int) -> None:
    files = sorted(str(p) for p in folder.glob("agent-*.prof"))
    if not files:
        print(f"  no profiles in {folder}")
        return
    stats = pstats.Stats(files[0])
    for f in files[1:]:
        stats.add(f)
    print_areas(stats)
    print(f"  {len(files)} peer profiles merged ({folder}); top {top} by own time:")
    stats.sort_stats("tottime").print_stats(top)
    print(f"  top {top} by cumulative time:")
    stats.sort_stats("cumulative").print_stats(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, action="append", help="N (repeatable; default 8)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="cProfile every peer into this folder")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    sizes = args.clients or [8]
    print(f"target: <= {TARGET_CPU_PER_PEER} CPU-s per peer process per run")
    print(
        "N  peers  CPU-s/peer mean  (sys)  max    /target  host CPU-s  kernel  T/D_p2p  busy  "
        "loadavg"
    )
    with tempfile.TemporaryDirectory(prefix="lab-peer-cpu-") as tmp:
        for _ in range(args.repeat):
            for n in sizes:
                r = one_run(n, Path(tmp), args.profile)
                mean = r["mean"]
                ratio = mean / TARGET_CPU_PER_PEER if isinstance(mean, float) else None
                print(
                    f"{n:<3}{fmt(r['procs'], '<7')}{fmt(r['mean'], '<17.3f')}"
                    f"{fmt(r['sys'], '<7.3f')}"
                    f"{fmt(r['max'], '<7.3f')}{fmt(ratio, '<9.2f')}{fmt(r['host'], '<12.2f')}"
                    f"{fmt(r['kernel'], '<8.2f')}{fmt(r['t_bound'], '<9.2f')}"
                    f"{fmt(r['busy'], '<6.0%')}{r['load']}",
                    flush=True,
                )
    if args.profile is not None:
        for n in sizes:
            print(f"\nprofile N = {n}:")
            print_profile(args.profile / f"n{n}", args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
