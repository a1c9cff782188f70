"""Compact peer addresses: 4 (IPv4) or 16 (IPv6) address bytes, then a 2-byte port.

The one encoding behind tracker replies (BEP 23 ``peers``, BEP 7 ``peers6``) and peer
exchange (BEP 11 ``added``/``dropped``, ``added6``/``dropped6``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

__all__ = ["V4_SIZE", "V6_SIZE", "entries", "normalise_ip", "pack_peers", "unpack_peers"]

V4_SIZE = 6
V6_SIZE = 18


def normalise_ip(ip: str) -> str:
    """Canonical text of an IP address; IPv4-mapped IPv6 becomes plain IPv4.

    Raises:
        ValueError: ``ip`` is not an IP address.
    """
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def pack_peers(peers: Iterable[tuple[str, int]]) -> tuple[bytes, bytes]:
    """The IPv4 and the IPv6 compact strings of ``peers``, in their order.

    Raises:
        ValueError: an address is not an IP address or a port is not in 0..65535.
    """
    v4, v6 = bytearray(), bytearray()
    for ip, port in peers:
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port {port} not in 0..65535")
        addr = ipaddress.ip_address(normalise_ip(ip))
        (v4 if addr.version == 4 else v6).extend(addr.packed + port.to_bytes(2, "big"))
    return bytes(v4), bytes(v6)


def entries(blob: bytes, size: int) -> Iterator[tuple[str, int]]:
    """Every whole entry of a compact string (``size`` 6 or 18), port 0 included.

    A trailing partial entry is not read: the caller decides whether it is an error.
    """
    if size not in (V4_SIZE, V6_SIZE):
        raise ValueError(f"compact entry size {size} is not {V4_SIZE} or {V6_SIZE}")
    for i in range(0, len(blob) - size + 1, size):
        port = int.from_bytes(blob[i + size - 2 : i + size], "big")
        yield normalise_ip(str(ipaddress.ip_address(blob[i : i + size - 2]))), port


def unpack_peers(blob: bytes, size: int) -> list[tuple[str, int]]:
    """The whole entries of a compact string, those with port 0 (unusable) skipped."""
    return [(ip, port) for ip, port in entries(blob, size) if port]
