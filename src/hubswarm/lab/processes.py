"""The lab's child processes: start them, read what they print, kill every one on the way out.

Every process of a run (hub, seed, DHT node, client agents, curl, ss) is started through one
:class:`Processes`, an ``async with`` owner that SIGKILLs by PID whatever is still running
when the run ends, however it ends. A *service* is a process that prints one line when it is
ready (``serving ... on URL``); :func:`start_service` waits for that line and keeps reading
the rest so the service never blocks on a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from hubswarm.errors import LabError

__all__ = [
    "SERVICE_START_TIMEOUT",
    "Processes",
    "Service",
    "kill",
    "kill_and_reap",
    "last_json",
    "start_service",
]

# Starting a service (Python + aiohttp imports) takes ~0.5 s; 30 s covers a loaded 2-core machine.
SERVICE_START_TIMEOUT = 30.0
# Keep the last lines a service printed for error messages; drop the rest (bounded buffer).
_KEEP_LINES = 50
# Waiting for a SIGKILLed child to be reaped: the kernel does it at once; 5 s is generous.
_REAP_TIMEOUT = 5.0


def _child_env() -> dict[str, str]:
    """The environment for the lab's processes: ours, but allowed to cache bytecode.

    With PYTHONDONTWRITEBYTECODE set (as on these machines) each of the 33 processes of an
    N=32 run recompiled ~180 modules: ~28 core-seconds of start-up per run on 2 cores.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


class Processes:
    """Owns subprocesses: spawn, and on exit kill every one still running (by PID) and reap."""

    def __init__(self) -> None:
        self._procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Processes:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.kill_all()

    async def spawn(
        self, argv: Sequence[str], *, merge_output: bool = False, stdin: bool = False
    ) -> asyncio.subprocess.Process:
        """Start argv with stdout piped (stderr piped or merged into stdout). Raises LabError."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT if merge_output else asyncio.subprocess.PIPE,
                env=_child_env(),
            )
        except OSError as exc:
            raise LabError(f"cannot start {argv[0]}: {exc}") from exc
        self._procs.append(proc)
        return proc

    async def kill_all(self) -> None:
        """SIGKILL every child still running, then wait for all of them (bounded)."""
        for proc in self._procs:
            kill(proc)
        for proc in self._procs:
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                async with asyncio.timeout(_REAP_TIMEOUT):
                    await proc.wait()
        self._procs.clear()


def kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL ``proc`` if it still runs (a child that just exited is no error)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


async def kill_and_reap(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL ``proc`` if it still runs, and wait for its exit status."""
    kill(proc)
    await proc.wait()


@dataclass(slots=True)
class Service:
    """A started service: its process, the line that said it was ready, its last lines."""

    proc: asyncio.subprocess.Process
    ready_line: bytes
    lines: list[bytes] = field(default_factory=list)

    def kill(self) -> None:
        """SIGKILL the service (a crash, as the ``kill_hub`` fault wants it)."""
        kill(self.proc)


async def start_service(
    procs: Processes,
    tg: asyncio.TaskGroup,
    argv: Sequence[str],
    ready: re.Pattern[bytes],
    what: str,
) -> Service:
    """Start ``argv`` (output merged) and wait for a line matching ``ready``; ``tg`` then owns
    the task that keeps draining its output. Raises LabError if it exits or is slow first."""
    proc = await procs.spawn(argv, merge_output=True)
    assert proc.stdout is not None
    lines: list[bytes] = []
    try:
        async with asyncio.timeout(SERVICE_START_TIMEOUT):
            while True:
                line = await proc.stdout.readline()
                if not line:
                    tail = b"".join(lines[-5:]).decode(errors="replace").strip()
                    raise LabError(f"{what} exited before it was ready: {tail}")
                lines.append(line)
                if ready.search(line):
                    break
    except TimeoutError as exc:
        raise LabError(f"{what} was not ready in time") from exc
    tg.create_task(_drain(proc.stdout, lines))
    return Service(proc, line, lines)


async def _drain(stream: asyncio.StreamReader, lines: list[bytes]) -> None:
    # Keep reading so the service never blocks on a full pipe; keep only the last lines.
    while line := await stream.readline():
        lines.append(line)
        del lines[:-_KEEP_LINES]


def last_json(out: bytes) -> dict[str, object]:
    """The last line of ``out`` that is a JSON object (an agent's report), or ``{}``."""
    for line in reversed(out.decode(errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return {}
