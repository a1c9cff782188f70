"""The emulated network: token bucket, the app-mode proxy, and (as root) namespaces + htb."""

from __future__ import annotations

import asyncio
import math
import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest

from hubswarm.lab import netem
from hubswarm.lab.netem import AppNetwork, NetnsNetwork, link_bucket


def test_token_bucket_reserve() -> None:
    now = 5.0
    bucket = link_bucket(4_000_000, now)
    assert bucket.burst == 40_000  # 10 ms of transfer
    assert bucket.consume(40_000, now) == 0.0
    assert bucket.consume(400_000, now) == pytest.approx(0.1)
    # After the debt is paid off in time, a small take is free again.
    assert bucket.consume(1_000, now + 0.2) == 0.0


def test_token_bucket_unlimited() -> None:
    bucket = link_bucket(math.inf, 0.0)
    assert bucket.consume(10**12, 0.0) == 0.0


def test_payload_of_wire_takes_the_headers_off() -> None:
    # 1514-byte frames (Ethernet + IPv4 + TCP with timestamps) carry 1448 bytes of payload.
    assert netem.payload_of_wire(1514 * 1000) == 1448 * 1000
    assert netem.payload_of_wire(0) == 0
    # Jumbo frames: 9014 bytes carry 8948.
    assert netem.payload_of_wire(9014 * 1000, netem.JUMBO_MTU) == 8948 * 1000


def test_link_mtu_is_jumbo_only_where_a_frame_crosses_the_slowest_link_quickly() -> None:
    # 1 MiB/s: a 9014-byte frame takes 8.6 ms; 64 KiB/s: 137 ms (longer than its queue).
    assert netem.link_mtu([1024 * 1024, math.inf, 16 * 1024 * 1024]) == netem.JUMBO_MTU
    assert netem.link_mtu([1024 * 1024, 64 * 1024]) == netem.ETH_MTU
    assert netem.link_mtu([math.inf]) == netem.JUMBO_MTU  # nothing shaped
    assert netem.link_mtu([]) == netem.JUMBO_MTU


def test_link_mtu_keeps_1500_where_the_queue_cannot_hold_two_jumbo_frames_per_flow() -> None:
    # A 1 MiB/s link queues 0.1 s of its rate: 105 KB, 11 jumbo frames, 72 Ethernet ones.
    mib = 1024 * 1024
    queue = netem.queue_limit(mib * netem.wire_per_payload(netem.JUMBO_MTU))
    assert queue // netem.frame_bytes(netem.JUMBO_MTU) == 11
    assert netem.queue_limit(mib * netem.wire_per_payload(netem.ETH_MTU)) // 1514 == 72
    assert netem.link_mtu([mib], flows=5) == netem.JUMBO_MTU
    assert netem.link_mtu([mib], flows=6) == netem.ETH_MTU
    # A faster link holds more frames, so more flows fit.
    assert netem.link_mtu([16 * mib], flows=32) == netem.JUMBO_MTU
    assert netem.link_mtu([math.inf], flows=1000) == netem.JUMBO_MTU  # nothing shaped


def test_notes_say_the_mtu() -> None:
    assert "1500" in netem.mtu_note(netem.ETH_MTU)
    assert "9014" in netem.mtu_note(netem.JUMBO_MTU)
    assert "9014/8948" in netem.RATE_NOTE
    assert "1514/1448" in netem.RATE_NOTE


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


def _htb_bits(tc_class_show: str) -> float:
    """The rate of the one htb class in ``tc class show`` output, in bits/s."""
    found = re.findall(r"\brate (\d+(?:\.\d+)?)([KMG]?)bit", tc_class_show)
    assert len(found) == 1, tc_class_show
    value, unit = found[0]
    return float(value) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[unit]


def _reap(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc`` if it still runs (the test failed first), then close its pipes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


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
        # Every link sends a 9014-byte frame within 10 ms: jumbo frames (fewer packets).
        assert net.mtu == netem.JUMBO_MTU
        # Rates are of payload: the wire rate adds the headers of a full frame (9014 / 8948).
        assert _htb_bits(qdisc) == pytest.approx(8e6 * 9014 / 8948, rel=1e-3)  # 1e6 B/s up
        down = _stdout("tc", "class", "show", "dev", outer)
        assert _htb_bits(down) == pytest.approx(32e6 * 9014 / 8948, rel=1e-3)  # 4e6 B/s
        # No GSO super-packets: 64 KiB segments overflow a slow link's short queue (a 256 KiB/s
        # link carried 20 KiB/s with them). Both veth ends send one frame at a time.
        for where, dev in ((["-n", ns], inner), ([], outer)):
            link = _stdout("ip", *where, "-d", "link", "show", dev)
            assert "mtu 9000 " in link
            assert "gso_max_size 9014 " in link
        assert "mtu 9000 " in _stdout("ip", "link", "show", f"hsw-{run_id}-br")
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
        _reap(proc)
    leftover = _names(run_id)
    netem.cleanup_leftovers(f"hsw-{run_id}")
    assert leftover == []


_RECEIVER = """
import socket, sys, time
server = socket.create_server((sys.argv[1], 5001))
print("ready", flush=True)
conn, _ = server.accept()
got, mark = 0, None
while chunk := conn.recv(1 << 16):
    got += len(chunk)
    if mark is None and got >= int(sys.argv[2]):
        mark = (got, time.monotonic())
print((got - mark[0]) / (time.monotonic() - mark[1]), got, flush=True)
"""

_SENDER = """
import socket, sys
with socket.create_connection((sys.argv[1], 5001), timeout=30) as conn:
    conn.sendall(bytes(int(sys.argv[2])))
"""


@pytest.mark.netns
@needs_root
def test_a_shaped_link_carries_its_rate_of_payload() -> None:
    """The bounds count file bytes: a link of rate u must carry u bytes/s of TCP payload, not
    u bytes/s of frames (1448 of 1514 bytes are payload: 0.956 u before the calibration)."""
    rate, warmup, total = 1_000_000, 300_000, 2_300_000
    with NetnsNetwork([(rate, math.inf), (math.inf, math.inf)]) as net:
        address = net.hosts[1].address
        receiver = subprocess.Popen(
            net.wrap(1, [sys.executable, "-c", _RECEIVER, address, str(warmup)]),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert receiver.stdout is not None
            assert receiver.stdout.readline().strip() == "ready"
            subprocess.run(
                net.wrap(0, [sys.executable, "-c", _SENDER, address, str(total)]),
                check=True,
                timeout=60,
            )
            goodput, got = receiver.stdout.readline().split()
            receiver.wait(timeout=30)
        finally:
            _reap(receiver)
    assert int(got) == total
    # Steady state over the last 2 MB (2 s): htb is exact, so 2.5 % is room for the clock.
    assert 0.975 * rate < float(goodput) < 1.025 * rate
