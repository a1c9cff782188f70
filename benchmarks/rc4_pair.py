#!/usr/bin/env python3
"""Encrypted (MSE/PE, RC4) against plaintext on our seed -> leech pair, in the same run.

Both pairs are ours (``hubswarm share`` / ``hubswarm fetch``, see ``utp_pair.py``): one with
``--encryption required`` on both sides (every byte after the handshake through RC4), one with
``--encryption disabled``; the same file, over TCP (``--transport tcp``, the default: ``--no-utp``)
or uTP only (``--transport utp``: ``--no-tcp``). Prints MB/s and CPU-seconds of each pair and
the ratio encrypted / plaintext (issue 17's target: >= 0.8x).

Run: python3 benchmarks/rc4_pair.py [--size-mib 512] [--repeat 3] [--transport tcp|utp]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from utp_pair import PairRun, best, prepare, run_ours  # the sibling script, found through sys.path

TARGET_RATIO = 0.8
FLAGS = {"tcp": ["--no-utp"], "utp": ["--no-tcp"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=1, help="pairs per mode (best is kept)")
    ap.add_argument("--transport", choices=sorted(FLAGS), default="tcp")
    ap.add_argument("--workdir", type=Path, help="where the files go (default: a temp dir)")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    runs: dict[str, list[PairRun]] = {"required": [], "disabled": []}
    with tempfile.TemporaryDirectory(prefix="rc4-pair-", dir=args.workdir) as tmp:
        work = Path(tmp)
        src, digest = prepare(work, args.size_mib)
        print(f"ours -> ours over {args.transport}, {args.size_mib} MiB, loopback")
        for _ in range(args.repeat):
            for mode, kept in runs.items():
                kept.append(run_ours(src, digest, work, mode, FLAGS[args.transport]))
                print(kept[-1].line(), flush=True)
    rc4, plain = best(runs["required"]), best(runs["disabled"])
    ratio = rc4.mbps / plain.mbps
    verified = all(r.verified for kept in runs.values() for r in kept)
    met = ratio >= TARGET_RATIO
    print(
        f"\nbest of {args.repeat}: RC4 {rc4.mbps:.1f} MB/s, plaintext {plain.mbps:.1f} MB/s; "
        f"ratio {ratio:.2f}x (target >= {TARGET_RATIO}x: {'PASS' if met else 'FAIL'})"
    )
    print(f"every output verified: {verified}")
    return 0 if met and verified else 1


if __name__ == "__main__":
    sys.exit(main())
