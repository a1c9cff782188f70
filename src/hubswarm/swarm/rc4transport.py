"""A transport that encrypts what the link writes with its MSE/PE RC4 stream.

A :class:`~hubswarm.swarm.peer.WireProtocol` puts :class:`Rc4Transport` in place of the
connection's transport once an MSE handshake selects RC4 (reads are decrypted in place by
the protocol's receive hook); a plaintext link never sees it and pays nothing.

Each write is encrypted into a scratch buffer, part by part (``writelines`` joins nothing
first), and handed to the inner transport. The buffer is used again for the next write only
if the inner transport then holds no bytes: asyncio's socket transports send what they can
at once and copy (3.11) or keep (3.12+) the rest, so a transport with an empty buffer keeps
no reference to ours. Otherwise the next write gets a fresh buffer. One copy of each byte in
user space (the cipher's output), no allocation per write while the socket keeps up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from hubswarm.proto import mse

# The scratch buffer is kept between writes up to this size (the peer's upload batch is
# 256 KiB of blocks plus their headers); a larger write gets a buffer of its own.
SCRATCH_MAX = 512 * 1024


class Rc4Transport(asyncio.Transport):
    """Encrypts every byte written; everything else goes straight to the wrapped transport."""

    __slots__ = ("_cipher", "_inner", "_scratch")

    def __init__(self, inner: asyncio.Transport, cipher: mse.CipherPair) -> None:
        super().__init__()
        self._inner = inner
        self._cipher = cipher
        self._scratch: bytearray | None = None

    def _buffer(self, size: int) -> memoryview:
        scratch = self._scratch
        if scratch is None or len(scratch) < size:
            scratch = bytearray(max(size, 64 * 1024))
            self._scratch = scratch if len(scratch) <= SCRATCH_MAX else None
        return memoryview(scratch)[:size]

    def _send(self, out: memoryview) -> None:
        self._inner.write(out)
        if self._inner.get_write_buffer_size():
            self._scratch = None  # the inner transport may hold ``out``: never reuse it

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        out = self._buffer(len(data))
        self._cipher.encrypt_into(data, out)
        self._send(out)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        parts = [memoryview(p).cast("B") for p in list_of_data]
        size = sum(len(p) for p in parts)
        if not size:
            return
        out = self._buffer(size)
        at = 0
        for part in parts:
            self._cipher.encrypt_into(part, out[at : at + len(part)])
            at += len(part)
        self._send(out)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def close(self) -> None:
        self._inner.close()

    def abort(self) -> None:
        self._inner.abort()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def write_eof(self) -> None:
        self._inner.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()
