"""Whether this machine has IPv6 loopback (``::1``): the IPv6 tests skip with the reason."""

from __future__ import annotations

import socket

import pytest


def ipv6_loopback_missing() -> str | None:
    """Why ``::1`` cannot be used here, or None when a TCP and a UDP socket bind to it."""
    if not socket.has_ipv6:
        return "Python was built without IPv6"
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        try:
            with socket.socket(socket.AF_INET6, kind) as s:
                s.bind(("::1", 0))
        except OSError as exc:
            return f"cannot bind ::1: {exc}"
    return None


_MISSING = ipv6_loopback_missing()
needs_ipv6 = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")
