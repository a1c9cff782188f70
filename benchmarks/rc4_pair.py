#!/usr/bin/env python3
"""Encrypted (MSE/PE, RC4) against plaintext on our seed -> leech pair, in the same run.

Both pairs are ours (``hubswarm share`` / ``hubswarm fetch``, see ``utp_pair.py``): one with
``--encryption required`` on both sides (every byte after the handshake through RC4), one with
``--encryption disabled``; the same file, over TCP (``--transport tcp``, the default: ``--no-utp``)
or uTP only (``--transport utp``: ``--no-tcp``). Prints MB/s and CPU-seconds of each pair and
the ratio encrypted / plaintext (issue 17's target: >= 0.8x).

With ``--reference`` (TCP only) it also runs libtorrent's pair both ways (``pe_forced`` in and
out with RC4 only, against encryption disabled) and prints libtorrent's own ratio beside ours:
how much RC4 costs a C++ peer on the same machine in the same run.

Run: python3 benchmarks/rc4_pair.py [--size-mib 512] [--repeat 3] [--transport tcp|utp]
                                    [--reference]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from swarm_throughput import LT_SETTINGS  # the sibling scripts, found through sys.path
from utp_pair import PairRun, best, prepare, run_libtorrent, run_ours

# libtorrent's enc_policy (pe_forced 0, pe_disabled 2) and enc_level (pe_rc4 2).
LT_RC4 = {
    **LT_SETTINGS,
    "out_enc_policy": 0,
    "in_enc_policy": 0,
    "allowed_enc_level": 2,
    "prefer_rc4": True,
}
LT_PLAIN = {**LT_SETTINGS, "out_enc_policy": 2, "in_enc_policy": 2}

TARGET_RATIO = 0.8
FLAGS = {"tcp": ["--no-utp"], "utp": ["--no-tcp"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=1, help="pairs per mode (best is kept)")
    ap.add_argument("--transport", choices=sorted(FLAGS), default="tcp")
    ap.add_argument("--reference", action="store_true", help="also libtorrent's pair (TCP)")
    ap.add_argument("--workdir", type=Path, help="where the files go (default: a temp dir)")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    if args.reference and args.transport != "tcp":
        ap.error("--reference runs libtorrent over TCP only")
    runs: dict[str, list[PairRun]] = {"required": [], "disabled": []}
    lt_runs: dict[str, list[PairRun]] = {"required": [], "disabled": []}
    with tempfile.TemporaryDirectory(prefix="rc4-pair-", dir=args.workdir) as tmp:
        work = Path(tmp)
        src, digest = prepare(work, args.size_mib)
        print(f"ours -> ours over {args.transport}, {args.size_mib} MiB, loopback")
        for _ in range(args.repeat):
            for mode, kept in runs.items():
                kept.append(run_ours(src, digest, work, mode, FLAGS[args.transport]))
                print(kept[-1].line(), flush=True)
            if args.reference:
                for mode, settings in (("required", LT_RC4), ("disabled", LT_PLAIN)):
                    run = run_libtorrent(src, digest, work, settings)
                    lt_runs[mode].append(dataclasses.replace(run, who=f"libtorrent ({mode})"))
                    print(lt_runs[mode][-1].line(), flush=True)
    rc4, plain = best(runs["required"]), best(runs["disabled"])
    ratio = rc4.mbps / plain.mbps
    if args.reference:
        lt_rc4, lt_plain = best(lt_runs["required"]), best(lt_runs["disabled"])
        print(
            f"libtorrent, the same run: RC4 {lt_rc4.mbps:.1f} MB/s, "
            f"plaintext {lt_plain.mbps:.1f} MB/s; ratio {lt_rc4.mbps / lt_plain.mbps:.2f}x "
            "(printed, no target)"
        )
    verified = all(r.verified for kept in (*runs.values(), *lt_runs.values()) for r in kept)
    met = ratio >= TARGET_RATIO
    print(
        f"\nbest of {args.repeat}: RC4 {rc4.mbps:.1f} MB/s, plaintext {plain.mbps:.1f} MB/s; "
        f"ratio {ratio:.2f}x (target >= {TARGET_RATIO}x: {'PASS' if met else 'FAIL'})"
    )
    print(f"every output verified: {verified}")
    return 0 if met and verified else 1


if __name__ == "__main__":
    sys.exit(main())
