"""``hubswarm dht node`` as a real process: answers on UDP, saves its table, exits on time."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

from click.testing import CliRunner

from hubswarm.cli import cli
from hubswarm.swarm.dht.node import DHTNode


async def test_dht_node_command_serves_and_saves_state(tmp_path: Path) -> None:
    state = tmp_path / "table.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hubswarm", "dht", "node", "--port", "0", "--host", "127.8.0.1",
        "--state", str(state), "--duration", "2", "--status-every", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            first = (await proc.stdout.readline()).decode()
        assert first.startswith("dht node "), first
        host, port = first.rsplit(" ", 1)[1].strip().rsplit(":", 1)
        async with DHTNode(
            host="127.8.0.2", bootstrap=[(host, int(port))], rng=random.Random(1)
        ) as node:
            assert len(node.table) == 1
            remote_id = bytes.fromhex(first.split()[2])
            assert node.table.get(remote_id) is not None
            # The standalone node pings us back before it trusts us (BEP 5); our answer
            # puts us in its table.
            async with asyncio.timeout(10):
                while not node.stats.queries_in:
                    await asyncio.sleep(0.01)
        async with asyncio.timeout(20):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert b"routing table saved" in out
        saved = json.loads(state.read_text())
        assert saved["node_id"] == remote_id.hex()
        assert [n[1] for n in saved["nodes"]] == ["127.8.0.2"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_bad_bootstrap_address_is_one_line_error() -> None:
    result = CliRunner().invoke(cli, ["dht", "node", "--port", "1", "--bootstrap", "nope"])
    assert result.exit_code == 1
    assert "expected HOST:PORT" in result.output


def test_bad_info_hash_is_one_line_error() -> None:
    result = CliRunner().invoke(cli, ["dht", "get-peers", "xyz", "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 1
    assert "40 hex digits" in result.output
