"""Access-control probes: what a client without the right key obtains from each architecture.

Client-server: a second hub over the same file that requires tokens, asked by clients with
no token, a forged one, a revoked one, and (the control) a valid read token. A swarm: a peer
with nothing but the magnet link joins after the run. Each probe's record says how many
bytes it got: 0 means access control held.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hubswarm.hub.auth import Role, TokenStore
from hubswarm.lab.metrics import SecurityProbe
from hubswarm.lab.payload import check_file, largest_partial
from hubswarm.lab.processes import kill_and_reap, last_json

__all__ = ["LockedHub", "ProbeCase", "lock_hub_data", "outsider_probe", "run_probes"]

# A probe asks a hub on an unshaped path for a few MiB, or is refused at once.
_PROBE_TIMEOUT = 30.0
# How much of a probe's error goes into its record.
_ERROR_CHARS = 160


@dataclass(frozen=True, slots=True)
class ProbeCase:
    """One probe against the locked hub: its label, its token, whether it should get in."""

    label: str
    token: str | None
    authorized: bool


@dataclass(frozen=True, slots=True)
class LockedHub:
    """A data folder for a hub that requires tokens, and the probes to run against it."""

    data: Path
    cases: tuple[ProbeCase, ...]


def lock_hub_data(workdir: Path, source: Path) -> LockedHub:
    """Hard-link ``source`` into a fresh hub data folder with a valid and a revoked token."""
    data = workdir / "hub-locked"
    target = data / "files" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(source, target)
    valid, revoked = _make_tokens(data)
    cases = (
        ProbeCase("no token", None, False),
        ProbeCase("forged token", "forged-" + "0" * 32, False),
        ProbeCase("revoked token", revoked, False),
        ProbeCase("valid read token (control)", valid, True),
    )
    return LockedHub(data, cases)


def _make_tokens(data: Path) -> tuple[str, str]:
    """A valid read token and a revoked one, straight in the hub's token store."""
    store = TokenStore(data)
    _, valid = store.create(Role.parse("read"))
    record, revoked = store.create(Role.parse("read"))
    store.revoke(record.id)
    return valid, revoked


async def run_probes(
    agents: Sequence[asyncio.subprocess.Process],
    cases: Sequence[ProbeCase],
    outs: Sequence[Path],
    size: int,
) -> tuple[SecurityProbe, ...]:
    """Let the probe agents (one per case, downloading to ``outs``) go; record what each got."""
    for proc in agents:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
    probes = []
    for case, proc, out in zip(cases, agents, outs, strict=True):
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT):
                out_bytes, _ = await proc.communicate()
        except TimeoutError:
            await kill_and_reap(proc)
            out_bytes = b""
        report = last_json(out_bytes)
        got = await asyncio.to_thread(largest_partial, out.parent)
        reported = report.get("bytes")
        got = max(got, reported if isinstance(reported, int) else 0)
        outcome = f"exit {proc.returncode}"
        if report.get("error"):
            outcome += f": {str(report['error'])[:_ERROR_CHARS]}"
        probes.append(
            SecurityProbe(f"client with {case.label}", got, size, outcome, case.authorized)
        )
    return tuple(probes)


async def outsider_probe(
    proc: asyncio.subprocess.Process, out: Path, file_size: int, timeout: float
) -> tuple[SecurityProbe, ...]:
    """A peer with nothing but the magnet link (no account, no token) joins after the run."""
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    try:
        async with asyncio.timeout(timeout):
            await proc.communicate()
    except TimeoutError:
        await kill_and_reap(proc)
    got, _ = await asyncio.to_thread(check_file, out, "")
    return (
        SecurityProbe("peer with only the magnet link", got, file_size, f"exit {proc.returncode}"),
    )
