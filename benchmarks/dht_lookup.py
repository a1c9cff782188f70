"""DHT lookup cost on loopback: N of our nodes in one process, random lookups.

Prints, per network size N: mean and 95th percentile of lookup rounds and wall time, queries
(messages out) per lookup, the fraction of lookups that found the true 8 closest, and memory per
node (RSS growth / N), beside the log2(N) reference. Nodes live on distinct 127.7.x.y addresses.

    python benchmarks/dht_lookup.py --nodes 1000 --lookups 200
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time
from pathlib import Path

from hubswarm.proto.krpc import distance
from hubswarm.swarm.dht.node import DHTNode


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def ip(i: int) -> str:
    return f"127.7.{i // 250}.{i % 250 + 1}"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


async def run(n: int, lookups: int, seed: int, timeout: float) -> dict[str, float]:
    rss0 = rss_bytes()
    nodes: list[DHTNode] = []
    t0 = time.perf_counter()
    try:
        boot = DHTNode(host=ip(0), rng=random.Random(seed), query_timeout=timeout)
        await boot.__aenter__()
        nodes.append(boot)
        for i in range(1, n):
            node = DHTNode(
                host=ip(i),
                bootstrap=[boot.address],
                rng=random.Random(seed * 1_000_003 + i),
                query_timeout=timeout,
            )
            await node.__aenter__()
            nodes.append(node)
        join_s = time.perf_counter() - t0
        mem = (rss_bytes() - rss0) / n
        table = statistics.mean(len(x.table) for x in nodes)
        rng = random.Random(seed + 1)
        rounds: list[float] = []
        seconds: list[float] = []
        queries: list[float] = []
        exact = 0
        ids = [x.node_id for x in nodes]
        for _ in range(lookups):
            node = rng.choice(nodes)
            target = rng.randbytes(20)
            t = time.perf_counter()
            result = await node.lookup(target)
            seconds.append(time.perf_counter() - t)
            rounds.append(result.rounds)
            queries.append(result.queries)
            truth = sorted((i for i in ids if i != node.node_id), key=lambda i: distance(i, target))
            exact += [c.node_id for c in result.closest] == truth[:8]
        return {
            "n": n,
            "log2n": math.log2(n),
            "rounds_mean": statistics.mean(rounds),
            "rounds_p95": pct(rounds, 0.95),
            "rounds_max": max(rounds),
            "ms_mean": 1000 * statistics.mean(seconds),
            "ms_p95": 1000 * pct(seconds, 0.95),
            "queries_mean": statistics.mean(queries),
            "exact": exact / lookups,
            "table": table,
            "mem_kib": mem / 1024,
            "join_s": join_s,
        }
    finally:
        for node in nodes:
            await node.__aexit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, action="append", help="network size (repeatable)")
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1.0, help="per-query timeout (s)")
    args = parser.parse_args()
    sizes = args.nodes or [1000]
    header = (
        f"{'N':>6} {'log2N':>6} {'rounds':>7} {'p95':>4} {'max':>4} {'ms':>7} {'p95ms':>7} "
        f"{'msgs':>6} {'exact8':>7} {'table':>6} {'KiB/node':>9} {'join s':>7}"
    )
    print(header)
    for n in sizes:
        r = asyncio.run(run(n, args.lookups, args.seed, args.timeout))
        print(
            f"{r['n']:>6.0f} {r['log2n']:>6.2f} {r['rounds_mean']:>7.2f} {r['rounds_p95']:>4.0f} "
            f"{r['rounds_max']:>4.0f} {r['ms_mean']:>7.1f} {r['ms_p95']:>7.1f} "
            f"{r['queries_mean']:>6.1f} {r['exact']:>7.1%} {r['table']:>6.1f} "
            f"{r['mem_kib']:>9.1f} {r['join_s']:>7.1f}"
        )
    print(
        "rounds: parallel rounds of alpha=3 queries (k=8); msgs: queries sent per lookup; "
        "exact8: lookups that returned the true 8 closest; table: mean routing-table size."
    )


if __name__ == "__main__":
    main()
