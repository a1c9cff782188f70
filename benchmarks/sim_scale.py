"""The swarm in the virtual-time sim at scale: issue 16's "At scale" targets.

Runs the real swarm (``lab.sim.run_sim``, architecture p2p) on the acceptance links (u_s = u_i =
1 MiB/s, F = 1.5 MiB, 32 KiB pieces, downloads 16 MiB/s, flash crowd) at each N, each N in a
fresh child process (so that its peak RSS is its own), and prints T, D_p2p, T / D_p2p, the
piece-granular floor (F/u)(1 + floor(log2 N)/M), wall and CPU seconds and peak RSS, each beside
its target: T / D_p2p <= 1.25, wall <= 60 s at N = 100 and 600 s at N = 1,000, RSS <= 4 GiB.

    python benchmarks/sim_scale.py                  # N = 100
    python benchmarks/sim_scale.py --n 100 --n 1000
    python benchmarks/sim_scale.py --n 100 --profile /tmp/sim100.prof   # cProfile of the run
    python benchmarks/sim_scale.py --n 100 --file-size 6MiB             # more pieces, same links

It also prints how fast a new piece spreads: the median, over the pieces, of the time from a
piece's first copy to its 16th, in piece times (F / M / u; 4 in the best schedule, one
doubling per piece time). Counted where every client's pieces are recorded (the replay's
tracks, up to 20,000 client-pieces: N = 100 at 48 pieces), "-" where they are sampled.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
TARGET_RATIO = 1.25
TARGET_RSS = 4 * 1024 * MIB


def target_wall(n: int) -> float:
    """Issue 16: N = 100 in under a minute, N = 1,000 in under ten (linear between)."""
    return 60.0 if n <= 100 else 600.0


HOP_COPIES = 16  # a new piece's spread: piece times from its first copy to this many


def scenario(n: int, seed: int, file_size: str = "1536KiB") -> dict[str, Any]:
    return {
        "name": f"sim-scale-{n}",
        "clients": n,
        "file_size": file_size,
        "server_upload": "1MiB",
        "client_upload": "1MiB",
        "client_download": "16MiB",
        "arrivals": "flash",
        "architectures": ["p2p"],
        "emulation": "sim",
        "timeout": 3600,
        "piece_size": "32KiB",
        "seed": seed,
    }


def spread(tracks: Any, n: int, piece_time: float) -> float:
    """Median over pieces of the piece times from a piece's first copy to its
    ``HOP_COPIES``-th; NaN unless all ``n`` clients' tracks were recorded."""
    if len(tracks) != n:
        return math.nan
    copies: dict[int, list[float]] = {}
    for track in tracks:
        for t, piece in zip(track.times, track.pieces, strict=True):
            copies.setdefault(piece, []).append(t)
    spans = [
        (ts[HOP_COPIES - 1] - ts[0]) / piece_time
        for ts in (sorted(v) for v in copies.values())
        if len(ts) >= HOP_COPIES
    ]
    return statistics.median(spans) if spans else math.nan


def one(n: int, seed: int, profile: str | None, size: str) -> dict[str, Any]:
    """One run of N in this process; what it measured."""
    from hubswarm.lab.bounds import d_p2p, piece_estimate
    from hubswarm.lab.scenario import parse_scenario
    from hubswarm.lab.sim import run_sim

    plan = parse_scenario(scenario(n, seed, size)).plans()[0]
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sim-scale-") as tmp:
        if profile:
            prof = cProfile.Profile()
            result = prof.runcall(run_sim, plan, "p2p", Path(tmp))
            prof.dump_stats(profile)
        else:
            result = run_sim(plan, "p2p", Path(tmp))
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    ends = [c.end for c in result.clients if c.end is not None]
    file_size = plan.scenario.file_size
    u_s = plan.scenario.server_upload
    bound = d_p2p(n, file_size, u_s, plan.uploads, plan.d_min)
    floor = piece_estimate(n, file_size, min(plan.uploads), plan.scenario.pieces)
    return {
        "n": n,
        "complete": len(ends),
        "t": max(ends) if len(ends) == n else math.nan,
        "t_median": sorted(ends)[len(ends) // 2] if ends else math.nan,
        "bound": bound,
        "floor": floor,
        "seed_mib": (result.server_bytes_sent or 0) / MIB,
        "spread": spread(result.tracks, n, file_size / plan.scenario.pieces / min(plan.uploads)),
        "wall": wall,
        "cpu": cpu,
        "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="swarm size (repeatable)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--file-size", default="1536KiB", help="F (default: the acceptance 1536KiB)"
    )
    parser.add_argument("--profile", help="write a cProfile of the (last) run here")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.seed, args.profile, args.file_size)))
        return
    print(
        f"{'N':>5} {'done':>5} {'T s':>7} {'D_p2p':>6} {'T/D':>6} {'/1.25':>6} {'floor':>6} "
        f"{'seed MiB':>8} {'spread':>6} {'wall s':>7} {'/target':>7} {'cpu s':>7} "
        f"{'RSS MiB':>8} {'/4GiB':>6}"
    )
    for n in args.n or [100]:
        cmd = [sys.executable, __file__, "--one", str(n), "--seed", str(args.seed)]
        cmd += ["--file-size", args.file_size]
        if args.profile:
            cmd += ["--profile", args.profile]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        ratio = r["t"] / r["bound"]
        print(
            f"{n:>5} {r['complete']:>5} {r['t']:>7.2f} {r['bound']:>6.2f} {ratio:>6.3f} "
            f"{ratio / TARGET_RATIO:>6.2f} {r['floor'] / r['bound']:>6.3f} {r['seed_mib']:>8.2f} "
            f"{'-' if math.isnan(r['spread']) else format(r['spread'], '.1f'):>6} "
            f"{r['wall']:>7.1f} {r['wall'] / target_wall(n):>7.2f} {r['cpu']:>7.1f} "
            f"{r['rss'] / MIB:>8.0f} {r['rss'] / TARGET_RSS:>6.2f}"
        )
    print(
        "T/D: makespan over the Kurose-Ross bound (target 1.25, goal 1.1); floor: the best "
        "piece-granular schedule (F/u)(1 + floor(log2 N)/M) over D_p2p; spread: piece times "
        f"from a piece's first copy to its {HOP_COPIES}th (best: 4); /target and /4GiB: "
        "wall time and peak RSS over issue 16's targets (60 s at N = 100, 600 s at 1,000)."
    )


if __name__ == "__main__":
    main()
