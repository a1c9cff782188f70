"""``hubswarm share`` / ``hubswarm fetch``: exit codes and one-line errors."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.cli import cli
from hubswarm.cli.swarm import parse_address, parse_rate
from hubswarm.errors import ConfigError
from hubswarm.swarm.storage import PieceStore

from .swarmkit import KIB, MIB, free_port, make_file, make_torrent, share_process

pytestmark = pytest.mark.timeout(40)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("hubswarm: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_share_then_fetch_by_torrent_and_by_magnet(tmp_path: Path) -> None:
    data = make_file(tmp_path / "seed" / "cli.bin", 2 * MIB + 5)
    torrent = tmp_path / "cli.torrent"
    with share_process(tmp_path / "seed" / "cli.bin", torrent, free_port()) as ready:
        port = ready["port"]
        runner = CliRunner()
        result = runner.invoke(
            cli,
            [
                "fetch",
                str(torrent),
                "-o",
                str(tmp_path / "a"),
                "--peer",
                f"127.0.0.1:{port}",
                "-q",
                "--host",
                "127.0.0.1",
                "--stall-timeout",
                "10",
            ],
        )
        assert result.exit_code == 0, result.output + result.stderr
        assert "every piece verified" in result.stdout
        assert (tmp_path / "a" / "cli.bin").read_bytes() == data

        magnet = str(ready["magnet"])
        assert magnet.startswith("magnet:?")
        assert "x.pe=" in magnet
        result = runner.invoke(
            cli,
            [
                "fetch",
                magnet,
                "-o",
                str(tmp_path / "b"),
                "--json",
                "--host",
                "127.0.0.1",
                "--stall-timeout",
                "10",
            ],
        )
        assert result.exit_code == 0, result.output + result.stderr
        record = json.loads(result.stdout.strip().splitlines()[-1])
        assert record["verified"] is True
        assert record["bytes"] == len(data)
        assert (tmp_path / "b" / "cli.bin").read_bytes() == data


def test_fetch_without_peers_is_one_line_and_exit_1(tmp_path: Path) -> None:
    make_file(tmp_path / "n.bin", 256 * KIB)
    _, raw = make_torrent(tmp_path / "n.bin", 64 * KIB)
    (tmp_path / "n.torrent").write_bytes(raw)
    result = CliRunner().invoke(
        cli,
        [
            "fetch",
            str(tmp_path / "n.torrent"),
            "-o",
            str(tmp_path / "out"),
            "-q",
            "--host",
            "127.0.0.1",
            "--peer",
            f"127.0.0.1:{free_port()}",
            "--stall-timeout",
            "1",
        ],
    )
    assert result.exit_code == 1
    assert "no peers" in one_error_line(result.stderr)


def test_bad_torrent_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "bad.torrent").write_bytes(b"d4:infoi3ee")
    result = CliRunner().invoke(cli, ["fetch", str(tmp_path / "bad.torrent"), "-q"])
    assert result.exit_code == 1
    one_error_line(result.stderr)
    result = CliRunner().invoke(cli, ["fetch", "magnet:?xt=urn:btih:nothex", "-q"])
    assert result.exit_code == 1
    one_error_line(result.stderr)


def test_disk_full_is_one_line_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_file(tmp_path / "seed" / "full.bin", 512 * KIB)
    torrent = tmp_path / "full.torrent"
    with share_process(tmp_path / "seed" / "full.bin", torrent, free_port()) as ready:

        def full(self: PieceStore, fd: int, chunk: memoryview, offset: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(PieceStore, "_pwrite_all", full)
        result = CliRunner().invoke(
            cli,
            [
                "fetch",
                str(torrent),
                "-o",
                str(tmp_path / "out"),
                "-q",
                "--host",
                "127.0.0.1",
                "--peer",
                f"127.0.0.1:{ready['port']}",
                "--stall-timeout",
                "10",
            ],
        )
    assert result.exit_code == 1
    assert "disk full" in one_error_line(result.stderr)


@pytest.mark.parametrize(
    ("text", "value"),
    [("2MB/s", 2e6), ("20mbit", 2.5e6), ("512KiB", 512 * 1024), ("1000", 1000.0), ("0", None)],
)
def test_parse_rate(text: str, value: float | None) -> None:
    assert parse_rate(text) == value


@given(st.text(max_size=20))
def test_parse_rate_and_address_never_crash(text: str) -> None:
    try:
        rate = parse_rate(text)
    except ConfigError:
        rate = None
    assert rate is None or rate > 0
    try:
        host, port = parse_address(text)
    except ConfigError:
        return
    assert host
    assert 0 < port < 65536


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:6881") == ("127.0.0.1", 6881)
    assert parse_address("[::1]:80") == ("::1", 80)
    for bad in ("nohost", ":80", "h:0", "h:70000", "h:x"):
        with pytest.raises(ConfigError):
            parse_address(bad)


def test_killed_fetch_resumes_with_only_missing_pieces(tmp_path: Path) -> None:
    """SIGKILL a ``hubswarm fetch`` mid-way; the rerun re-checks the .part file and fetches
    only what is missing."""
    size = 3 * MIB
    data = make_file(tmp_path / "seed" / "res.bin", size)
    torrent = tmp_path / "res.torrent"
    events = tmp_path / "events.jsonl"
    share = share_process(
        tmp_path / "seed" / "res.bin", torrent, free_port(), "--upload-rate", "2MB/s"
    )
    with share as ready:
        peer = f"127.0.0.1:{ready['port']}"
        cmd = [
            sys.executable,
            "-m",
            "hubswarm",
            "fetch",
            str(torrent),
            "-o",
            str(tmp_path / "out"),
            "-q",
            "--host",
            "127.0.0.1",
            "--peer",
            peer,
            "--events",
            str(events),
        ]
        stderr = tmp_path / "fetch.err"
        with stderr.open("wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and proc.poll() is None:
                text = events.read_text() if events.exists() else ""
                if text.count('"event": "piece"') >= 12:  # 48 pieces of 64 KiB in all
                    break
                time.sleep(0.05)
            assert proc.poll() is None, (
                f"fetch ended before it could be killed: {stderr.read_text()}"
            )
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        assert (tmp_path / "out" / "res.bin.part").exists()
        assert not (tmp_path / "out" / "res.bin").exists()
        result = CliRunner().invoke(
            cli,
            [
                "fetch",
                str(torrent),
                "-o",
                str(tmp_path / "out"),
                "--json",
                "--host",
                "127.0.0.1",
                "--peer",
                peer,
                "--stall-timeout",
                "10",
            ],
        )
    assert result.exit_code == 0, result.output + result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0 < record["stats"]["downloaded_from_peers"] <= size - 12 * 64 * KIB
    assert (tmp_path / "out" / "res.bin").read_bytes() == data


def test_no_pex_turns_peer_exchange_off() -> None:
    from hubswarm.cli.swarm import _config

    base = {"port": 0, "max_peers": 50}
    assert _config(base).use_pex
    assert not _config({**base, "no_pex": True}).use_pex
    assert not _config({**base, "no_pex": True, "fast_intervals": True}).use_pex


def test_a_command_is_built_once_per_process() -> None:
    # Building the swarm's commands (every option) costs milliseconds; the lab's agents build
    # them before their start signal, so a second lookup must not build them again.
    ctx = click.Context(cli)
    fetch = cli.get_command(ctx, "fetch")
    assert fetch is not None
    assert cli.get_command(ctx, "fetch") is fetch
    share = cli.get_command(ctx, "share")  # registered by the same module, kept with fetch
    assert share is not None
    assert share.name == "share"
    assert cli.get_command(ctx, "no-such-command") is None
