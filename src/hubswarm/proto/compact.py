"""Compact peer addresses: 4 (IPv4) or 16 (IPv6) address bytes, then a 2-byte port.

The one encoding behind tracker replies (BEP 23 ``peers``, BEP 7 ``peers6``) and peer
exchange (BEP 11 ``added``/``dropped``, ``added6``/``dropped6``), and the text form of one
address (``HOST:PORT``, ``[V6]:PORT``) that magnet ``x.pe`` values and command lines use.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

__all__ = [
    "V4_SIZE",
    "V6_SIZE",
    "entries",
    "format_host_port",
    "normalise_ip",
    "pack_peers",
    "parse_host_port",
    "unpack_peers",
]

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


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv4 literal or name) or ``[V6]:PORT`` (RFC 3986 authority), port 1..65535.

    An IPv6 address must be bracketed: ``::1:80`` could be the address ``::1:80`` itself, so
    it is refused rather than guessed.

    Raises:
        ValueError: not such an address.
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"not [V6]:PORT: {text!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address in brackets: {text!r}") from None
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"not HOST:PORT (an IPv6 address needs [brackets]): {text!r}")
        if "[" in host or "]" in host:
            raise ValueError(f"not HOST:PORT: {text!r}")
    if not host or not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise ValueError(f"not HOST:PORT: {text!r}")
    port = int(port_text)
    if not 0 < port < 0x10000:
        raise ValueError(f"port not in 1..65535: {text!r}")
    return host, port


def format_host_port(host: str, port: int) -> str:
    """The text :func:`parse_host_port` reads back: an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
