"""A client-server client's bytes received over time, recorded as it downloads (issue 20).

:class:`ReceivedSampler` watches the HTTP responses of one download (an aiohttp
``TraceConfig`` hands it each response as its headers arrive) and reads how many body bytes
have arrived every ``period`` seconds of its clock, so it sees the bytes as they come, not
the client's write batches (1 MiB through aiohttp, 4 MiB where the hub client reads a big
body straight from the socket, issue 18). On a TCP socket it reads the kernel's count of
bytes received on the connection (``TCP_INFO``), whoever reads them; elsewhere (the sim's
in-memory transports) aiohttp's count of body bytes fed to the response
(``content.total_bytes``). Samples are bounded: once :data:`MAX_SAMPLES` are held, every
other one is dropped and the period doubles, so a download of any length keeps between half
and all of them, evenly spaced. The lab agent (netns and app modes) and the sim's
client-server runner use it alike; the replay draws a client-server run from these samples
(:func:`hubswarm.lab.replay.cs_tracks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Self

import aiohttp

from hubswarm.clock import Clock

__all__ = ["FIRST_PERIOD", "MAX_SAMPLES", "RUN_SAMPLES", "ReceivedSampler", "per_client", "thin"]

# Samples one client keeps: 64 draw a download's curve finely enough for a replay of a few
# hundred frames, and 32 clients' worth is ~30 kB of runs.json.
MAX_SAMPLES = 64
# The first sampling period (s): a 1.5 s download (the acceptance sweep's D_cs at N = 1)
# gets ~30 samples; longer ones double it as they fill MAX_SAMPLES.
FIRST_PERIOD = 0.05
# Samples one run keeps across its clients (as replay.MAX_CELLS caps the swarms' tracks): at
# N = 1,000 each client keeps 20.
RUN_SAMPLES = 20_000
# Fewest samples a client keeps, however many clients share RUN_SAMPLES.
_MIN_PER_CLIENT = 8

Sample = tuple[float, int]


def per_client(clients: int) -> int:
    """Samples each of ``clients`` clients keeps within :data:`RUN_SAMPLES`."""
    return max(_MIN_PER_CLIENT, min(MAX_SAMPLES, RUN_SAMPLES // max(clients, 1)))


def thin(samples: Sequence[Sample], cap: int) -> tuple[Sample, ...]:
    """``samples``, or at most ``cap`` of them evenly spread, the first and last kept."""
    if len(samples) <= cap:
        return tuple(samples)
    if cap < 2:
        return tuple(samples[-1:])
    step = (len(samples) - 1) / (cap - 1)
    return tuple(samples[round(k * step)] for k in range(cap))


# struct tcp_info (Linux uapi/linux/tcp.h, since 4.1): tcpi_bytes_received, a u64 at byte
# 128 (8 one-byte fields, 24 u32s, then pacing_rate, max_pacing_rate, bytes_acked).
_TCPI_BYTES_RECEIVED = 128
_TCP_INFO_LENGTH = 136


def _tcp_received(sock: Any) -> int | None:
    """Bytes the kernel has received on a TCP socket, or None (closed, not TCP, old kernel)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LENGTH)
    except (OSError, AttributeError, ValueError):
        return None
    if len(info) < _TCP_INFO_LENGTH:
        return None
    received: int = struct.unpack_from("=Q", info, _TCPI_BYTES_RECEIVED)[0]
    return received


def _unread(sock: Any) -> int:
    """Bytes waiting in the socket's receive queue (FIONREAD), 0 if unknown."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, AttributeError, ValueError):
        return 0
    unread: int = struct.unpack("=i", raw)[0]
    return max(0, unread)


@dataclass(slots=True)
class _Body:
    """One response's body bytes received so far: from the kernel's count on its connection
    (``tcp_at`` when the headers had been read, ``body_at`` body bytes then) where there is
    a TCP socket, else from aiohttp's."""

    response: aiohttp.ClientResponse
    sock: Any
    tcp_at: int
    body_at: int
    last: int = 0

    @classmethod
    def of(cls, response: aiohttp.ClientResponse) -> _Body:
        conn = response.connection
        sock = conn.transport.get_extra_info("socket") if conn and conn.transport else None
        tcp = _tcp_received(sock) if sock is not None else None
        if tcp is None:
            return cls(response, None, 0, 0)
        # What has reached the kernel but no reader yet is body (the headers were parsed).
        return cls(response, sock, tcp, response.content.total_bytes + _unread(sock))

    def received(self) -> int:
        got = self.response.content.total_bytes
        if self.sock is not None:
            tcp = _tcp_received(self.sock)
            if tcp is not None:  # else closed: keep the last reading
                self.last = max(self.last, self.body_at + tcp - self.tcp_at)
        got = max(got, self.last)
        length = self.response.content_length
        return got if length is None else min(got, length)


class ReceivedSampler:
    """Samples (clock time, body bytes received) of the responses of sessions traced by
    :attr:`trace`, every ``period`` s (doubling as samples fill ``cap``), in :meth:`watching`."""

    def __init__(
        self, clock: Clock, *, period: float = FIRST_PERIOD, cap: int = MAX_SAMPLES
    ) -> None:
        if period <= 0 or cap < 2:
            raise ValueError(f"period {period} and cap {cap} must be > 0 and >= 2")
        self._clock = clock
        self._period = period
        self._cap = cap
        self._bodies: list[_Body] = []
        self._noted = 0
        self._samples: list[Sample] = []
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_end.append(self._on_response)

    async def _on_response(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        self._bodies.append(_Body.of(params.response))

    def session(self, connector: aiohttp.BaseConnector | None = None) -> aiohttp.ClientSession:
        """A session traced by this sampler, as ``hubswarm get`` makes its own (the bytes as
        the server stores them: no decompression)."""
        return aiohttp.ClientSession(
            connector=connector, auto_decompress=False, trace_configs=[self.trace]
        )

    def note(self, done: int) -> None:
        """The client's own count of bytes it has (its progress callback): a floor, and the
        exact end once its socket is closed."""
        self._noted = max(self._noted, done)

    def received(self) -> int:
        """Body bytes received so far, over every response seen."""
        return max(self._noted, sum(b.received() for b in self._bodies))

    def _take(self) -> None:
        self._samples.append((self._clock.now(), self.received()))
        if len(self._samples) >= self._cap:
            # Keep every other sample (still evenly spaced) and sample half as often.
            self._samples = self._samples[::2]
            self._period *= 2

    async def _run(self) -> None:
        while True:
            self._take()
            # From the last sample kept (after a thinning, one period before now), so the
            # spacing stays even.
            await self._clock.sleep(self._samples[-1][0] + self._period - self._clock.now())

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[Self]:
        """Sample while the body runs; the last sample is taken as it ends (however)."""
        # One task, created, cancelled and awaited here: not a TaskGroup, which on 3.11 would
        # wrap the download's own exception (a HubError the caller catches) in a group.
        task = asyncio.get_running_loop().create_task(self._run())
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.wait([task])  # the sampler's end; a cancellation of ours goes on
            self._samples.append((self._clock.now(), self.received()))

    def samples(self) -> tuple[Sample, ...]:
        """The samples so far (the last taken on exit), at most ``cap``."""
        return thin(self._samples, self._cap)
