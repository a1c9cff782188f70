"""The emulated network: token bucket, the app-mode proxy, and (as root) namespaces + htb."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time

import pytest

from hubswarm.lab import netem
from hubswarm.lab.netem import AppNetwork, NetnsNetwork, TokenBucket


def test_token_bucket_reserve() -> None:
    bucket = TokenBucket(4_000_000)
    now = bucket._stamp
    assert bucket.burst == 40_000  # 10 ms of transfer
    assert bucket.reserve(40_000, now) == 0.0
    assert bucket.reserve(400_000, now) == pytest.approx(0.1)
    # After the debt is paid off in time, a small take is free again.
    assert bucket.reserve(1_000, now + 0.2) == 0.0


def test_token_bucket_unlimited() -> None:
    bucket = TokenBucket(math.inf)
    assert bucket.reserve(10**12, time.monotonic()) == 0.0


def test_prefix_is_enforced() -> None:
    with pytest.raises(ValueError, match="hsw-"):
        netem.cleanup_leftovers("eth")
    with pytest.raises(ValueError, match="hsw-"):
        netem.leftovers("")


async def test_app_proxy_forwards_every_byte() -> None:
    payload = os.urandom(300_000)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        writer.write(payload)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with AppNetwork([(8e6, math.inf), (1e6, 16e6), (1e6, 16e6)]) as net:
            assert net.wrap(1, ["true"]) == ["true"]
            ports = await net.expose(0, port)
            for client in (1, 2):
                host, p = ports.address_for(client)
                assert host == "127.0.0.1"
                assert p != port
                reader, writer = await asyncio.open_connection(host, p)
                writer.write(b"hello")
                await writer.drain()
                async with asyncio.timeout(20):
                    got = await reader.read(-1)
                writer.close()
                await writer.wait_closed()
                assert got == payload
    finally:
        server.close()
        await server.wait_closed()


def _names(run_id: str) -> list[str]:
    return netem.leftovers(f"{netem.PREFIX}{run_id}")


def _stdout(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not netem.netns_available(),
    reason="needs root and ip netns (CI runs as root)",
)


@pytest.mark.netns
@needs_root
def test_namespaces_bridge_shaping_and_cleanup(tmp_path: object) -> None:
    net = NetnsNetwork([(2e6, math.inf), (1e6, 4e6)])
    run_id = net.run_id
    server = None
    with net:
        names = _names(run_id)
        assert f"hsw-{run_id}-h0" in names
        assert f"hsw-{run_id}-br" in names
        ns, inner, outer = f"hsw-{run_id}-h1", f"hsw-{run_id}-n1", f"hsw-{run_id}-b1"
        qdisc = _stdout("tc", "-n", ns, "class", "show", "dev", inner)
        assert "htb" in qdisc
        assert "rate 8Mbit" in qdisc  # 1e6 bytes/s upload
        assert "rate 32Mbit" in _stdout("tc", "class", "show", "dev", outer)  # 4e6 B/s download
        # No GSO super-packets: 64 KiB segments overflow a slow link's short queue (a 256 KiB/s
        # link carried 20 KiB/s with them). Both veth ends send one frame at a time.
        assert "gso_max_size 1514 " in _stdout("ip", "-n", ns, "-d", "link", "show", inner)
        assert "gso_max_size 1514 " in _stdout("ip", "-d", "link", "show", outer)
        folder = tmp_path
        (folder / "blob").write_bytes(b"x" * 200_000)  # type: ignore[operator]
        server = subprocess.Popen(
            net.wrap(0, [sys.executable, "-m", "http.server", "8000", "-d", str(folder)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sent_before = asyncio.run(net.tx_bytes(0))
        try:
            got = b""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                done = subprocess.run(
                    net.wrap(1, ["curl", "-s", "-m", "10", "http://10.77.0.1:8000/blob"]),
                    capture_output=True,
                    check=False,
                )
                if done.returncode == 0:
                    got = done.stdout
                    break
                time.sleep(0.2)
            assert got == b"x" * 200_000
            # Host 0 sent the blob (plus headers); host 1 only its request and ACKs.
            sent = asyncio.run(net.tx_bytes(0))
            assert sent_before is not None
            assert sent is not None
            assert 200_000 < sent - sent_before < 260_000
            received = asyncio.run(net.tx_bytes(1))
            assert received is not None
            assert received < 50_000
        finally:
            server.kill()
            server.wait(timeout=10)
    assert _names(run_id) == []


@pytest.mark.netns
@needs_root
def test_sigterm_removes_the_network() -> None:
    code = (
        "import sys, time\n"
        "from hubswarm.lab import netem\n"
        "netem.install_signal_cleanup()\n"
        "net = netem.NetnsNetwork([(1e6, 1e6), (1e6, 1e6)], run_id=sys.argv[1])\n"
        "net.__enter__()\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    run_id = os.urandom(2).hex()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, run_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"up"
        assert _names(run_id)
        proc.terminate()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    leftover = _names(run_id)
    netem.cleanup_leftovers(f"hsw-{run_id}")
    assert leftover == []
