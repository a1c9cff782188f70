"""The hybrid against its parts in the virtual-time sim: issue 22's targets.

Runs the swarm (``p2p``) and the hybrid (hub as tracker and web seed beside a seed peer on host
0) in ``lab.sim`` on the same plan, the hybrid under each ``--mode`` (the clients' web-seed
policy, ``swarm.webseed_policy``), and prints T / D_p2p, the hybrid's time over the swarm's
(target <= 1.05) and host 0's bytes in copies of F (target <= 1.2 at N = 8, F = 12 MiB). Each
run in a child process (the runs of one invocation share nothing), two at a time.

    python benchmarks/hybrid_webseed.py                          # issue 22's scenario, N = 8
    python benchmarks/hybrid_webseed.py --scenario heterogeneous
    python benchmarks/hybrid_webseed.py --n 4 --n 32 --size 1536KiB --mode assist --mode always
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

TARGET_TIME = 1.05
TARGET_COPIES = 1.2


def flash(n: int, size: str, seed: int) -> dict[str, Any]:
    """Issue 22's flash crowd: u_s = u_i = 1 MiB/s, 32 KiB pieces, downloads 16 MiB/s."""
    return {
        "name": f"flash-{n}",
        "clients": n,
        "file_size": size,
        "server_upload": "1MiB",
        "client_upload": "1MiB",
        "client_download": "16MiB",
        "arrivals": "flash",
        "architectures": ["p2p", "hybrid"],
        "emulation": "sim",
        "timeout": 600,
        "piece_size": "32KiB",
        "seed": seed,
    }


def one(spec: dict[str, Any]) -> dict[str, Any]:
    """One run in this process: its makespan, bound and host 0's bytes."""
    from hubswarm import vtime
    from hubswarm.lab.bounds import d_p2p
    from hubswarm.lab.scenario import default_scenario_dir, load_scenario, parse_scenario
    from hubswarm.lab.sim import run_sim
    from hubswarm.lab.sim.hybrid import run_hybrid

    if spec["scenario"] == "flash":
        scenario = parse_scenario(flash(spec["n"], spec["size"], spec["seed"]))
    else:
        scenario = load_scenario(default_scenario_dir() / f"{spec['scenario']}.toml")
    plan = next(p for p in scenario.plans() if spec["n"] in (None, p.n))
    with tempfile.TemporaryDirectory(prefix="hybrid-webseed-") as tmp:
        if spec["mode"] is None:
            result = run_sim(plan, "p2p", Path(tmp))
        else:
            result = vtime.run(run_hybrid(plan, Path(tmp), webseed_mode=spec["mode"]))
    ends = [c.end for c in result.clients if c.end is not None]
    bound = d_p2p(
        plan.n, plan.scenario.file_size, plan.scenario.server_upload, plan.uploads, plan.d_min
    )
    return {
        "n": plan.n,
        "t": max(ends) if len(ends) == plan.n else float("nan"),
        "bound": bound,
        "copies": (result.server_bytes_sent or 0) / plan.scenario.file_size,
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", json.dumps(spec)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="flash", help="flash, or a default set's file stem")
    parser.add_argument("--n", type=int, action="append", help="swarm size (repeatable)")
    parser.add_argument("--size", default="12MiB", help="F for the flash scenario")
    parser.add_argument("--mode", action="append", help="hybrid web-seed mode (repeatable)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(json.loads(args.one))))
        return
    sizes: list[int | None] = list(args.n or ([8] if args.scenario == "flash" else [None]))
    modes: list[str | None] = [None, *(args.mode or ["assist"])]
    specs = [
        {"scenario": args.scenario, "n": n, "size": args.size, "seed": args.seed, "mode": m}
        for n in sizes
        for m in modes
    ]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(child, specs))
    print(f"{'N':>4} {'arch':<16} {'T s':>7} {'T/D_p2p':>8} {'/swarm':>7} {'host0 F':>8}")
    for k in range(0, len(results), len(modes)):
        swarm = results[k]
        for spec, r in zip(specs[k : k + len(modes)], results[k : k + len(modes)], strict=True):
            name = "p2p" if spec["mode"] is None else f"hybrid {spec['mode']}"
            print(
                f"{r['n']:>4} {name:<16} {r['t']:>7.2f} {r['t'] / r['bound']:>8.3f} "
                f"{r['t'] / swarm['t']:>7.3f} {r['copies']:>8.2f}"
            )
    print(
        f"/swarm: the run's time over the swarm's (target <= {TARGET_TIME}); host0 F: bytes host"
        f" 0 sent over F (target <= {TARGET_COPIES} at N = 8, F = 12 MiB)."
    )


if __name__ == "__main__":
    main()
