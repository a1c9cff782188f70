#!/usr/bin/env python3
"""A seed -> leech pair over uTP only, ours against libtorrent's, in the same run, on loopback.

ours       = ``hubswarm share --no-tcp`` and ``hubswarm fetch --no-tcp`` (neither side listens
             nor dials on TCP, so every byte crosses our uTP, BEP 29);
libtorrent = two ``lt.session`` processes with ``enable_outgoing_tcp`` and
             ``enable_incoming_tcp`` False (its uTP, with its MTU probing), plaintext.
Same file, same piece length (the .torrent ours writes), two processes each, seeding from and
writing to disk. MB/s = file size / the leech's in-process seconds (torrent added -> complete,
interpreter start-up left out on both sides). CPU-seconds of each side are read from
``/proc/PID/stat`` (utime + stime) when the leech reports completion: the seed's since the
leech started, the leech's since it started (its imports included). Every output is SHA-1
checked.

``--encryption MODE`` runs our pair with ``--encryption MODE`` on both sides (libtorrent's
reference stays plaintext; ``rc4_pair.py`` compares RC4 with plaintext).

``--profile DIR`` runs our two processes under cProfile (``DIR/ours-seed-N.prof`` and
``DIR/ours-leech-N.prof``, the seed's written when it is stopped) and prints the top of each;
the profiler slows each side 2-3x, so compare calls and shares there, not MB/s.

Run: python3 benchmarks/utp_pair.py [--size-mib 256] [--repeat 3] [--skip-libtorrent]
     [--profile DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from swarm_throughput import (  # the sibling script, found through sys.path
    LT_HELPER,
    LT_SETTINGS,
    MIB,
    PY,
    PeerProcess,
    make_file,
    ours_fetch,
    ours_share,
    sha1_file,
)

TARGET_RATIO = 1.0  # issue 17: ours >= 1.0x libtorrent's uTP pair
# ``python -c PROFILED OUT.prof hubswarm-args...``: ``python -m hubswarm`` under cProfile, its
# stats written at exit or on SIGTERM (PeerProcess.stop).
PROFILED = """
import cProfile, os, runpy, signal, sys
out, sys.argv = sys.argv[1], ["hubswarm", *sys.argv[2:]]
prof = cProfile.Profile()
def dump(*_):
    prof.disable(); prof.dump_stats(out); os._exit(0)
signal.signal(signal.SIGTERM, dump)
prof.enable()
try:
    runpy.run_module("hubswarm", run_name="__main__")
except SystemExit:
    pass
finally:
    prof.disable(); prof.dump_stats(out)
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")

# swarm_throughput's loopback settings with the transports turned round: uTP only.
LT_UTP_SETTINGS: dict[str, Any] = {
    **LT_SETTINGS,
    "enable_outgoing_utp": True,
    "enable_incoming_utp": True,
    "enable_outgoing_tcp": False,
    "enable_incoming_tcp": False,
}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (0.0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may hold spaces: count fields after its closing ")".
    rest = text[text.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


@dataclass
class PairRun:
    """One seed -> leech transfer."""

    who: str
    seconds: float  # the leech's in-process time
    size: int
    verified: bool
    seed_cpu: float
    leech_cpu: float

    @property
    def mbps(self) -> float:
        return self.size / self.seconds / 1e6

    def line(self) -> str:
        return (
            f"  {self.who:22} {self.seconds:7.2f} s {self.mbps:7.1f} MB/s   CPU s: seed "
            f"{self.seed_cpu:5.2f}, leech {self.leech_cpu:5.2f}   verified {self.verified}"
        )


def _pair(
    who: str,
    seed_argv: list[str],
    leech_argv_for: Any,
    got: Path,
    digest: str,
    size: int,
) -> PairRun:
    """Start the seed, wait for its port, run the leech to completion, sample CPU there."""
    with PeerProcess(f"{who} seed", seed_argv) as seed:
        _, rec = seed.wait_record(1800)
        seed_cpu0 = cpu_seconds(seed.pid)
        with PeerProcess(f"{who} leech", leech_argv_for(int(rec["port"]))) as leech:
            _, result = leech.wait_record(1800)
            seed_cpu = cpu_seconds(seed.pid) - seed_cpu0
            leech_cpu = cpu_seconds(leech.pid)
            code = leech.wait_exit(300)
        seed.stop()
    ok = code == 0 and got.is_file() and sha1_file(got) == digest
    return PairRun(who, float(result["seconds"]), size, ok, seed_cpu, leech_cpu)


def _profiled(argv: list[str], out: Path | None) -> list[str]:
    """``argv`` (``PY -m hubswarm ...``) under cProfile writing to ``out``, or as it is."""
    if out is None:
        return argv
    assert argv[1:3] == ["-m", "hubswarm"]
    return [PY, "-c", PROFILED, str(out), *argv[3:]]


def print_profile(path: Path, top: int = 15) -> None:
    import pstats

    print(f"--- {path.name}: top {top} by self time")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(top)


def run_ours(
    src: Path,
    digest: str,
    work: Path,
    encryption: str,
    transport_flags: Sequence[str],
    profile: tuple[Path, int] | None = None,
) -> PairRun:
    torrent = work / "ours.torrent"
    out = work / "ours-out"
    extra = [*transport_flags, "--encryption", encryption]
    prof_seed = prof_leech = None
    if profile is not None:
        prof_seed = profile[0] / f"ours-seed-{profile[1]}.prof"
        prof_leech = profile[0] / f"ours-leech-{profile[1]}.prof"
    seed_argv = _profiled(ours_share(src, torrent, piece_length=None, extra=extra), prof_seed)
    try:
        return _pair(
            f"ours ({encryption})",
            seed_argv,
            lambda port: _profiled(ours_fetch(torrent, out, [port], extra), prof_leech),
            out / src.name,
            digest,
            src.stat().st_size,
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_libtorrent(src: Path, digest: str, work: Path, settings: dict[str, Any]) -> PairRun:
    torrent = work / "ours.torrent"  # the same pieces as ours
    out = work / "lt-out"
    out.mkdir(exist_ok=True)
    text = json.dumps(settings)

    def argv(role: str, save: Path, peer: str) -> list[str]:
        seed_mode = "1" if role == "seed" else "0"  # the seed skips its check (ours does too)
        return [PY, "-c", LT_HELPER, role, str(torrent), str(save), peer, text, seed_mode]

    try:
        return _pair(
            "libtorrent",
            argv("seed", src.parent, "-"),
            lambda port: argv("leech", out, f"127.0.0.1:{port}"),
            out / src.name,
            digest,
            src.stat().st_size,
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


def best(runs: list[PairRun]) -> PairRun:
    return max(runs, key=lambda r: r.mbps)


def prepare(work: Path, size_mib: int) -> tuple[Path, str]:
    """The source file (random-looking MiBs) and its SHA-1."""
    src_dir = work / "src"
    src_dir.mkdir()
    src = src_dir / f"data-{size_mib}MiB.bin"
    return src, make_file(src, size_mib * MIB)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=1, help="pairs per client (best is kept)")
    ap.add_argument("--skip-libtorrent", action="store_true")
    ap.add_argument("--encryption", choices=["disabled", "enabled", "required"], default="disabled")
    ap.add_argument("--workdir", type=Path, help="where the files go (default: a temp dir)")
    ap.add_argument("--profile", type=Path, help="cProfile our processes, stats into this dir")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    with tempfile.TemporaryDirectory(prefix="utp-pair-", dir=args.workdir) as tmp:
        work = Path(tmp)
        src, digest = prepare(work, args.size_mib)
        print(f"1 seed -> 1 leech over uTP only, {args.size_mib} MiB, loopback")
        if not args.skip_libtorrent:
            import libtorrent as lt

            print(f"libtorrent {lt.__version__}: seed_mode; settings {LT_UTP_SETTINGS}")
        ours: list[PairRun] = []
        theirs: list[PairRun] = []
        for i in range(args.repeat):
            profile = None
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                profile = (args.profile, i)
            ours.append(run_ours(src, digest, work, args.encryption, ["--no-tcp"], profile))
            print(ours[-1].line(), flush=True)
            if profile is not None:
                for side in ("seed", "leech"):
                    print_profile(profile[0] / f"ours-{side}-{i}.prof")
            if not args.skip_libtorrent:
                theirs.append(run_libtorrent(src, digest, work, LT_UTP_SETTINGS))
                print(theirs[-1].line(), flush=True)
    verified = all(r.verified for r in ours + theirs)
    ok = verified
    print(f"\nbest of {args.repeat}: ours {best(ours).mbps:.1f} MB/s", end="")
    if theirs:
        ratio = best(ours).mbps / best(theirs).mbps
        ok &= ratio >= TARGET_RATIO
        print(
            f", libtorrent {best(theirs).mbps:.1f} MB/s; ratio ours/libtorrent {ratio:.2f}x "
            f"(target >= {TARGET_RATIO:.1f}x: {'PASS' if ratio >= TARGET_RATIO else 'FAIL'})"
        )
    else:
        print()
    print(f"every output verified: {verified}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
