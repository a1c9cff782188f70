"""Rc4Transport over a real loopback TCP connection: every byte written, in any pattern of
writes, arrives encrypted and in order, also once the socket is full and asyncio keeps what
it could not send (the scratch buffer must not be reused under it)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from hubswarm.proto import mse
from hubswarm.proto.mse import CipherPair, CryptoMethod
from hubswarm.swarm.rc4transport import Rc4Transport

KEY = bytes(range(20))


def _cipher() -> CipherPair:
    # One key both ways: a pair's encrypt is its twin's decrypt.
    return CipherPair(CryptoMethod.RC4, mse._rc4(KEY), mse._rc4(KEY))


class _Sink(asyncio.Protocol):
    """Collects what arrives until the connection ends."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.transport: asyncio.BaseTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Rc4Transport, list[_Sink]]]:
    """An Rc4Transport around a loopback TCP connection, and the receiving end's sink."""
    loop = asyncio.get_running_loop()
    sinks: list[_Sink] = []

    def make_sink() -> _Sink:
        sinks.append(_Sink())
        return sinks[-1]

    server = await loop.create_server(make_sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    inner, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    rc4 = Rc4Transport(inner, _cipher())
    try:
        yield rc4, sinks
    finally:
        if not rc4.is_closing():
            rc4.abort()
        for sink in sinks:
            if sink.transport is not None:
                sink.transport.close()
        server.close()
        await server.wait_closed()


async def _received(rc4: Rc4Transport, sinks: list[_Sink]) -> bytes:
    """Close the sending end and return what the other end got, decrypted."""
    rc4.close()
    async with asyncio.timeout(30):
        while not sinks:
            await asyncio.sleep(0.01)
        await sinks[0].closed
    got = bytearray(sinks[0].data)
    _cipher().decrypt_in_place(memoryview(got))
    return bytes(got)


async def test_every_write_arrives_in_order_while_asyncio_holds_bytes(
    pair: tuple[Rc4Transport, list[_Sink]],
) -> None:
    rc4, sinks = pair
    rng = random.Random(5)
    sent = bytearray()
    held = 0
    # No await between the writes: the kernel's buffer fills within the first few MiB and
    # asyncio keeps the rest of each later write (in its own buffer, or as our view on 3.12+).
    for i in range(120):
        sizes = [
            rng.choice([1, 13, 16384, rng.randint(0, 700_000)]) for _ in range(rng.randint(1, 4))
        ]
        parts = [rng.randbytes(n) for n in sizes]
        if len(parts) == 1:
            rc4.write(memoryview(parts[0]) if i % 2 else parts[0])
        else:
            rc4.writelines(parts)
        sent += b"".join(parts)
        held = max(held, rc4.get_write_buffer_size())
    assert held > 0, "asyncio never held a byte: the reuse rule went untested"
    assert await _received(rc4, sinks) == sent


async def test_empty_writes_send_nothing_and_spend_no_keystream(
    pair: tuple[Rc4Transport, list[_Sink]],
) -> None:
    rc4, sinks = pair
    rc4.write(b"")
    rc4.writelines([b"", b""])
    rc4.write(b"x")
    rc4.writelines([b"y", memoryview(b"z")])
    assert await _received(rc4, sinks) == b"xyz"


class _Keeper(asyncio.Transport):
    """A transport that keeps the objects written to it, unsent, as Python 3.12's socket
    transport keeps the part of a write the kernel did not take (3.11, here, copies it)."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[memoryview] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.kept.append(memoryview(data))

    def get_write_buffer_size(self) -> int:
        return sum(len(v) for v in self.kept)


def test_a_buffer_the_inner_transport_keeps_is_never_written_again() -> None:
    inner = _Keeper()
    rc4 = Rc4Transport(inner, _cipher())
    writes = [bytes([i]) * (1000 + i) for i in range(6)]
    for w in writes:
        rc4.write(w)
    rc4.writelines([b"a" * 10, b"b" * 20])
    got = bytearray(b"".join(bytes(v) for v in inner.kept))
    _cipher().decrypt_in_place(memoryview(got))
    assert got == b"".join(writes) + b"a" * 10 + b"b" * 20
