"""A pre-started lab client: ``python3 -m hubswarm.lab.agent get URL OUT [TOKEN]``,
``python3 -m hubswarm.lab.agent cli fetch MAGNET ...`` (any ``hubswarm`` command) or
``... lt fetch TORRENT ...`` (a libtorrent peer, :mod:`hubswarm.lab.ltpeer`).

On a loaded 2-core machine starting Python with aiohttp takes seconds, which would swamp the
transfer times the lab measures. The agent is a real process on its emulated host (inside
its namespace) that imports what its command needs first (the hub client for ``get``; the
CLI and the swarm for ``cli``), prints ``ready``, and starts the download (with
``hubswarm.hub.client.download``, the code behind ``hubswarm get``, or the command) only
when the lab writes ``go`` on its stdin. It prints one JSON line: start and end on
CLOCK_MONOTONIC, which all processes of the machine share, so the lab can place them on its
own time line. Both are read through :class:`~hubswarm.clock.Clock`: under the default event
loop its ``now()`` *is* ``time.monotonic()`` (and outside a loop it reads exactly that).

Profiling (issue 18): with ``HUBSWARM_AGENT_PROFILE=DIR`` in the lab's environment, a ``cli``
agent runs its command under cProfile from ``go`` and writes ``DIR/agent-PID.prof`` when the
command returns or on SIGTERM, which the lab sends before its SIGKILL when that variable is
set (:func:`stop_profiled`). ``benchmarks/lab_peer_cpu.py --profile`` merges them.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import json
import os
import re
import runpy
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from hubswarm.clock import Clock
from hubswarm.errors import HubswarmError

_RECEIVED = re.compile(r"received (\d+) of \d+")
# The environment variable naming the folder for per-agent profiles (see the docstring).
PROFILE_ENV = "HUBSWARM_AGENT_PROFILE"
# How long the lab waits for a profiled agent to write its profile after SIGTERM.
_PROFILE_DUMP_TIMEOUT = 10.0


def profiling() -> bool:
    """Whether the lab's agents run under cProfile (``HUBSWARM_AGENT_PROFILE`` is set)."""
    return bool(os.environ.get(PROFILE_ENV))


async def stop_profiled(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM a profiled agent and give it a moment to write its profile (the lab SIGKILLs
    it after this either way)."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_PROFILE_DUMP_TIMEOUT):
            await proc.wait()


class _Profile:
    """cProfile of this process from ``go``, written once: at the end or on SIGTERM."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"agent-{os.getpid()}.prof"
        # CPU time of the profiled (main) thread: on a loaded host, wall time would charge
        # other processes' turns to whatever function was running when this one lost its core.
        self.profile = cProfile.Profile(time.thread_time)
        self._written = False

    def start(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        self.profile.enable()

    def write(self) -> None:
        if self._written:
            return
        self._written = True
        self.profile.disable()
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.profile.dump_stats(self.path)

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        # Signal handlers run on the main thread, the one being profiled.
        self.write()
        os._exit(0)


async def _get(url: str, out: Path, token: str | None) -> dict[str, object]:
    from hubswarm.hub import client  # loaded by main before `ready`
    from hubswarm.lab.progress import ReceivedSampler  # the bytes over time (issue 20)

    received = [0]

    def progress(done: int, total: int | None) -> None:
        # The client discards a failed partial; this is how many bytes arrived anyway.
        received[0] = done
        sampler.note(done)

    clock = Clock()
    sampler = ReceivedSampler(clock)
    start = clock.now()
    try:
        async with sampler.watching(), sampler.session() as session:
            result = await client.download(
                url, out, token=token, progress=progress, resume=False, session=session
            )
            end = clock.now()  # before the session's and the sampler's close
    except HubswarmError as exc:
        end = clock.now()
        # Progress comes in ~1 MiB batches; aiohttp's message counts the bytes of a cut body.
        cut = _RECEIVED.search(str(exc))
        got = max(received[0], int(cut.group(1)) if cut else 0)
        return {
            "start": start,
            "end": end,
            "error": str(exc)[:300],
            "bytes": got,
            "progress": sampler.samples(),
        }
    return {
        "start": start,
        "end": end,
        "error": None,
        "bytes": result.bytes_received,
        "size": result.size,
        "sha256": result.sha256,
        "verified": result.verified,
        "progress": sampler.samples(),
    }


def _speaks_http(args: list[str]) -> bool:
    """Whether a command may contact trackers or web seeds: anything but a bare magnet link."""
    plain_magnet = any(a.startswith("magnet:") and "tr=" not in a and "ws=" not in a for a in args)
    return not plain_magnet or any(a in ("--tracker", "--web-seed") for a in args)


def _cli(args: list[str]) -> int:
    """``python3 -m hubswarm ARGS`` in this process after ``go``, its libraries imported first.

    The command runs exactly as from a shell (``runpy``: the package's ``__main__``), so the
    lab measures the real CLI; only the interpreter start-up is moved before the barrier.
    """
    _warm_up(args)
    # What the imports built lives as long as the process: out of the collector's way.
    gc.collect()
    gc.freeze()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 3
    clock = Clock()  # no loop runs here: now() reads time.monotonic()
    start = clock.now()
    code, error = 0, None
    sys.argv = ["hubswarm", *args]
    folder = os.environ.get(PROFILE_ENV)
    profile = _Profile(Path(folder)) if folder else None
    if profile is not None:
        profile.start()
    try:
        runpy.run_module("hubswarm", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:  # reported to the lab as data, not a crash of the agent
        code, error = 1, f"{type(exc).__name__}: {exc}"[:300]
    finally:
        if profile is not None:
            profile.write()
    report = {"start": start, "end": clock.now(), "exit": code, "error": error}
    print(json.dumps(report), flush=True)
    return code


def _warm_up(args: list[str]) -> None:
    """Import what ``hubswarm ARGS`` will load, so that none of it runs after ``go``."""
    import importlib

    # Warm-up: everything `python3 -m hubswarm ARGS` imports, including the module of the
    # command itself (the CLI loads it lazily) and what that command loads on first use (the
    # DHT node). Measured on an 8-peer flash crowd: 0.7 CPU-s per peer of imports after `go`
    # before this, i.e. ~1 s of every peer's distribution time on 2 cores. The agent stands
    # in for that program (a process entry point, not library code), so it may load the CLI
    # by name like runpy does.
    # uTP (swarm.utp and proto.utp*) loads when the session opens its UDP socket: measured
    # 0.08 s of wall time per peer after `go` on a loaded host before it was listed here.
    modules = ["hubswarm.swarm.api", "hubswarm.swarm.dht.node", "hubswarm.swarm.utp"]
    if _speaks_http(args):
        # Trackers and web seeds (the hybrid): the swarm imports these on first use.
        modules += ["hubswarm.swarm.tracker_client", "hubswarm.swarm.webseed"]
    for module in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    with contextlib.suppress(ImportError):
        cli = importlib.import_module("hubswarm.cli")
        if args:
            cli.cli.get_command(cli.click.Context(cli.cli), args[0])


def main(argv: list[str]) -> int:
    """Wait for ``go`` on stdin, download, print a JSON line. Exit 0 if the download worked."""
    if argv[:1] == ["cli"]:
        return _cli(argv[1:])
    if argv[:1] == ["lt"]:  # the reference client (architecture "libtorrent")
        from hubswarm.lab.ltpeer import agent_main

        return agent_main(argv[1:])
    if len(argv) not in (3, 4) or argv[0] != "get":
        print(
            "usage: python3 -m hubswarm.lab.agent get URL OUT [TOKEN] | cli ARGS... | lt ARGS...",
            file=sys.stderr,
        )
        return 2
    url, out = argv[1], Path(argv[2])
    token = argv[3] if len(argv) == 4 else None
    # The hub client (aiohttp) only here: swarm peers do not load it, which took ~0.2 CPU-s
    # from each of 33 agents starting together on 2 cores.
    import hubswarm.hub.client
    import hubswarm.lab.progress  # noqa: F401

    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 3
    report = asyncio.run(_get(url, out, token))
    print(json.dumps(report), flush=True)
    return 0 if report["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
