"""The hub's time on the seam: the real app on an in-memory network, in virtual time.

The rate limiter's waits, the slow-loris time-outs, the stats' uptime and the ``If-Range``
date check all read the app's Clock (or the loop's time, which is the same); under
:func:`hubswarm.vtime.run` they are exact and take no wall time. A direct
``time.monotonic()`` or ``time.time()`` in the hub would show up here as a wrong number.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest

from hubswarm import net, vtime
from hubswarm.clock import Clock
from hubswarm.httpnet import NetworkConnector
from hubswarm.hub import client
from hubswarm.hub.app import HubConfig
from hubswarm.hub.auth import Role, TokenStore
from hubswarm.hub.server import running_hub
from hubswarm.limits import HUB_RATE_MIN_BURST
from hubswarm.memnet import MemoryNetwork

HUB, USER = "10.1.0.1", "10.1.0.2"
LATENCY = 0.001  # one way
MIB = 1 << 20


def _data_dir(tmp_path: Path) -> tuple[Path, str]:
    data = tmp_path / "data"
    data.mkdir()
    return data, TokenStore(data).create(Role.ADMIN)[1]


def test_rate_limited_transfers_take_exactly_their_bucket_time(tmp_path: Path) -> None:
    rate = MIB
    burst = max(rate, HUB_RATE_MIN_BURST)
    payload = os.urandom(3 * MIB)
    data, token = _data_dir(tmp_path)

    async def main() -> tuple[float, float]:
        network = MemoryNetwork(latency=LATENCY)
        loop = asyncio.get_running_loop()
        config = HubConfig(data_dir=data, rate_limit=rate)
        async with (
            running_hub(config, "0.0.0.0", 8080, network=network.host(HUB)) as url,
            aiohttp.ClientSession(connector=NetworkConnector(network.host(USER))) as session,
        ):
            source = tmp_path / "p.bin"
            source.write_bytes(payload)
            t0 = loop.time()
            await client.upload(source, url, token=token, progress=None, session=session)
            t1 = loop.time()
            result = await client.download(
                f"{url}/files/p.bin", tmp_path / "copy.bin", token=token, progress=None,
                session=session,
            )  # fmt: skip
            t2 = loop.time()
            assert (tmp_path / "copy.bin").read_bytes() == payload
            assert result.elapsed == pytest.approx(t2 - t1)
            return t1 - t0, t2 - t1

    up, down = vtime.run(main())
    # The upload starts with a full bucket; the download right after finds it empty.
    assert up == pytest.approx((len(payload) - burst) / rate, abs=0.1)
    assert down == pytest.approx(len(payload) / rate, abs=0.1)


def test_slow_loris_body_and_headers_are_cut_at_their_time_outs(tmp_path: Path) -> None:
    data, token = _data_dir(tmp_path)

    async def stalled(
        network: MemoryNetwork, url: str, request: bytes
    ) -> tuple[bytes, float | None, float]:
        """Send ``request`` and never more: the server's reply, when its first byte came
        (None if none) and when the server closed."""
        loop = asyncio.get_running_loop()
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await net.open_stream(network.host(USER), host, int(port))
        t0 = loop.time()
        writer.write(request)
        reply = await reader.read(1)
        first = loop.time() - t0 if reply else None
        reply += await reader.read()  # until the server closes
        writer.close()
        return reply, first, loop.time() - t0

    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        config = HubConfig(data_dir=data, read_timeout=1.0, keepalive_timeout=3.0)
        async with running_hub(config, "0.0.0.0", 8080, network=network.host(HUB)) as url:
            body_reply, first, closed = await stalled(
                network,
                url,
                b"PUT /files/slow HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {token}\r\n".encode()
                + b"Content-Length: 100000\r\n\r\n0123456789",
            )
            assert body_reply.startswith(b"HTTP/1.1 408")
            # The 408 once read_timeout has passed, the close after the lingering time
            # (min(HUB_LINGERING_TIME, read_timeout)) spent reading what the client sends.
            assert first == pytest.approx(1.0, abs=0.01)
            assert closed == pytest.approx(2.0, abs=0.01)
            header_reply, first, closed = await stalled(
                network, url, b"GET /files HTTP/1.1\r\nHost: x\r\n"
            )
            assert header_reply == b""
            assert first is None
            assert closed == pytest.approx(3.0, abs=0.01)  # keepalive_timeout
        assert not (data / ".partial").exists() or not list((data / ".partial").iterdir())
        assert not (data / "files" / "slow").exists()

    vtime.run(main())


def test_stats_uptime_and_start_follow_the_injected_clock(tmp_path: Path) -> None:
    data, token = _data_dir(tmp_path)
    epoch = 1_000_000_000.0

    async def main() -> None:
        network = MemoryNetwork(latency=LATENCY)
        clock = Clock(epoch=epoch)
        started = clock.wall()
        async with (
            running_hub(
                HubConfig(data_dir=data), "0.0.0.0", 8080, clock=clock, network=network.host(HUB)
            ) as url,
            aiohttp.ClientSession(connector=NetworkConnector(network.host(USER))) as session,
        ):
            await asyncio.sleep(3600.0)
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{url}/stats", headers=headers) as resp:
                stats = await resp.json()
        assert stats["started_at"] == started
        assert stats["uptime"] == pytest.approx(3600.0, abs=0.01)
        # Tokens made by the app are stamped by the same clock.
        assert TokenStore(data, clock=clock).create(Role.READ)[0].created_at > epoch

    vtime.run(main())


def test_if_range_dates_are_judged_by_the_injected_wall_clock(tmp_path: Path) -> None:
    # RFC 9110 §13.1.5: a Last-Modified date validates only if the file is a second older
    # than "now". A clock whose wall time is before the file's mtime never validates it.
    data, token = _data_dir(tmp_path)

    async def status(clock: Clock | None) -> int:
        network = MemoryNetwork(latency=LATENCY)
        async with (
            running_hub(
                HubConfig(data_dir=data), "0.0.0.0", 8080, clock=clock, network=network.host(HUB)
            ) as url,
            aiohttp.ClientSession(connector=NetworkConnector(network.host(USER))) as session,
        ):
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{url}/files/f.bin", headers=headers) as resp:
                last_modified = resp.headers["Last-Modified"]
            ranged = {**headers, "Range": "bytes=10-", "If-Range": last_modified}
            async with session.get(f"{url}/files/f.bin", headers=ranged) as resp:
                await resp.read()
                return resp.status

    async def main() -> tuple[int, int]:
        (data / "files").mkdir(exist_ok=True)
        target = data / "files" / "f.bin"
        target.write_bytes(os.urandom(1000))
        old = target.stat().st_mtime - 60
        os.utime(target, (old, old))
        return await status(None), await status(Clock(epoch=0.0))

    assert vtime.run(main()) == (206, 200)


def test_trickled_upload_is_cut_with_408_at_the_progress_interval(tmp_path: Path) -> None:
    """One byte a second restarts the read timeout every time; the progress rule still cuts
    it when the first interval ends, and the partial file is gone (issue 21)."""
    data, token = _data_dir(tmp_path)

    async def main() -> tuple[bytes, float, int]:
        network = MemoryNetwork(latency=LATENCY)
        loop = asyncio.get_running_loop()
        config = HubConfig(
            data_dir=data, read_timeout=5.0, min_upload_bytes=100, progress_interval=30.0
        )
        async with running_hub(config, "0.0.0.0", 8080, network=network.host(HUB)) as url:
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await net.open_stream(network.host(USER), host, int(port))
            t0 = loop.time()
            writer.write(
                b"PUT /files/trickle HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {token}\r\n".encode()
                + b"Content-Length: 100000\r\n\r\n"
            )
            sent = 0
            reply = b""

            async def trickle() -> None:
                nonlocal sent
                for _ in range(1000):  # bounded: the server must cut us long before
                    writer.write(b"x")
                    sent += 1
                    await asyncio.sleep(1.0)

            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(trickle())
                reply = await reader.read(1)
                replied = loop.time() - t0
                reply += await reader.read()
                task.cancel()
            writer.close()
            partials = list((data / ".partial").iterdir()) if (data / ".partial").exists() else []
            assert partials == []
            return reply, replied, sent

    reply, replied, sent = vtime.run(main())
    assert reply.startswith(b"HTTP/1.1 408")
    assert b"upload too slow" in reply
    assert replied == pytest.approx(30.0, abs=0.1)  # cut when the first window is judged
    assert sent < 40  # plus the lingering close
    assert not (data / "files" / "trickle").exists()


def test_fast_enough_upload_passes_every_window(tmp_path: Path) -> None:
    """200 bytes a second against a minimum of 100 per 2 s: never cut, stored whole."""
    data, token = _data_dir(tmp_path)

    async def main() -> bytes:
        network = MemoryNetwork(latency=LATENCY)
        config = HubConfig(data_dir=data, min_upload_bytes=100, progress_interval=2.0)
        async with running_hub(config, "0.0.0.0", 8080, network=network.host(HUB)) as url:
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await net.open_stream(network.host(USER), host, int(port))
            writer.write(
                b"PUT /files/steady HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {token}\r\n".encode()
                + b"Content-Length: 4000\r\n\r\n"
            )
            for _ in range(20):
                writer.write(b"y" * 200)
                await asyncio.sleep(1.0)
            reply = await reader.read(12)
            writer.close()
            return reply

    assert vtime.run(main()) == b"HTTP/1.1 201"
    assert (data / "files" / "steady").read_bytes() == b"y" * 4000
