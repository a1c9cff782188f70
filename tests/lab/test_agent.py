"""The lab agent: what it loads before `ready`, and its profiles (issue 18)."""

from __future__ import annotations

import asyncio
import os
import pstats
import subprocess
import sys
from pathlib import Path

from hubswarm.lab.agent import PROFILE_ENV, stop_profiled


def test_warm_up_loads_utp_before_ready() -> None:
    # The session opens its uTP socket at start: its modules must not load after `go`.
    code = (
        "import sys; from hubswarm.lab import agent; agent._warm_up(sys.argv[1:]); "
        "print('hubswarm.swarm.utp' in sys.modules, 'hubswarm.proto.utp' in sys.modules)"
    )
    args = ["fetch", "magnet:?xt=urn:btih:" + "ab" * 20, "--dht-bootstrap", "10.77.0.1:6881"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def _agent(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, PROFILE_ENV: str(tmp_path / "prof")}
    return subprocess.Popen(
        [sys.executable, "-m", "hubswarm.lab.agent", "cli", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def _profiled_functions(tmp_path: Path, pid: int) -> set[str]:
    path = tmp_path / "prof" / f"agent-{pid}.prof"
    return {name for _, _, name in pstats.Stats(str(path)).stats}  # type: ignore[attr-defined]


def test_a_profiled_agent_writes_its_profile_when_its_command_returns(tmp_path: Path) -> None:
    proc = _agent(tmp_path, "--version")
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        out, _ = proc.communicate("go\n", timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert '"exit": 0' in out
    assert "main" in _profiled_functions(tmp_path, proc.pid)


async def test_a_profiled_agent_writes_its_profile_on_sigterm(tmp_path: Path) -> None:
    # A command that runs until stopped (as a seeding peer does): the lab's SIGTERM.
    env = {**os.environ, PROFILE_ENV: str(tmp_path / "prof")}
    argv = ["cli", "dht", "node", "--host", "127.0.0.1", "--port", "0"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubswarm.lab.agent",
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        async with asyncio.timeout(60):
            assert (await proc.stdout.readline()).strip() == b"ready"
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            assert b"listening" in await proc.stdout.readline()
        await stop_profiled(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert proc.returncode == 0  # it wrote its profile and left, before any SIGKILL
    assert "main" in _profiled_functions(tmp_path, proc.pid)
