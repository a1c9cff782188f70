"""Malformed requests and disconnects in the hub and the tracker: one short line, no traceback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Iterator

import pytest
from benchmarks.abuse import MALFORMED_HTTP
from yarl import URL

from hubswarm.hub.tracker import TrackerConfig, run_tracker

from .conftest import Hub

# Requests aiohttp's parser refuses (the attacks of issue 21), shared with the harness.
MALFORMED = MALFORMED_HTTP
ROUNDS = 40  # 240 requests: well past the throttle's burst


class Bytes(logging.Handler):
    """Counts the bytes of every formatted line (tracebacks included), as a log file would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.size = 0
        self.tracebacks = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        self.size += len(text) + 1
        self.tracebacks += "Traceback" in text


@contextlib.contextmanager
def counting(level: int = logging.INFO) -> Iterator[Bytes]:
    root = logging.getLogger()
    handler = Bytes()
    old = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def _send(host: str, port: int, data: bytes, reset: bool = False) -> None:
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(data)
        if reset:  # RST instead of FIN: the client "crashes"
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        with contextlib.suppress(OSError):
            while s.recv(65536):
                pass


async def _flood(url: str) -> int:
    u = URL(url)
    assert u.host is not None
    assert u.port is not None
    sent = 0
    for _ in range(ROUNDS):
        for data in MALFORMED:
            await asyncio.to_thread(_send, u.host, u.port, data)
            sent += 1
    return sent


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
async def test_hub_malformed_requests_log_little(hub: Hub, level: int) -> None:
    with counting(level) as log:
        sent = await _flood(hub.url)
    assert log.tracebacks == 0
    assert log.size / sent < 200, log.size / sent


async def test_tracker_malformed_requests_log_little() -> None:
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(run_tracker(TrackerConfig(port=0), stop, ready=ready.set_result))
        try:
            async with asyncio.timeout(10):
                url = await ready
            with counting() as log:
                sent = await _flood(url)
        finally:
            stop.set()
    assert log.tracebacks == 0
    assert log.size / sent < 200, log.size / sent


async def test_reset_mid_upload_is_one_line_and_leaves_no_partial(hub: Hub) -> None:
    u = URL(hub.url)
    assert u.host is not None
    assert u.port is not None
    head = (
        b"PUT /files/cut HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {hub.tokens['write']}\r\n".encode()
        + b"Content-Length: 1000000\r\n\r\n"
    )
    with counting() as log:
        await asyncio.to_thread(_send, u.host, u.port, head + b"x" * 100_000, True)
        async with asyncio.timeout(10):
            while log.size == 0 or hub.partials():
                await asyncio.sleep(0.02)
    assert log.tracebacks == 0
    assert log.size < 400
    assert not (hub.data_dir / "files" / "cut").exists()
