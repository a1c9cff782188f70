"""TCP and uTP behind one :class:`hubswarm.net.StreamNetwork`: listen on both, dial by policy.

Theory of operation: BitTorrent clients listen for TCP and uTP on the same port number (the
one they announce), so :meth:`DualNetwork.listen` listens on uTP first (its UDP port is
already bound, usually shared with the DHT) and then on TCP at that same number, falling
back to any free TCP port only if that one is taken. :meth:`DualNetwork.connect` dials by a
:data:`DialPolicy`:

- ``"tcp-first"``: TCP; if it fails or takes longer than ``fallback_after``, uTP;
- ``"utp-first"``: uTP; if it fails or takes longer than ``fallback_after``, TCP (what
  libtorrent does, with 3 s);
- ``"both"``: dial both at once, keep the first to connect, close the other.

Why :data:`DEFAULT_DIAL_POLICY` is ``"tcp-first"`` (``benchmarks/first_piece.py`` measures
it against libtorrent with both transports, libtorrent with TCP off, and aria2):

- what made libtorrent wait 3-4 s for its first piece from us was *its* uTP dial going
  unanswered; listening on uTP fixes that whatever our dial policy is;
- against a peer with both transports every policy connects at once, but ``"utp-first"`` and
  ``"both"`` (uTP answers a little sooner on loopback) then move the whole torrent over uTP,
  several times slower than TCP here (LEDBAT in Python against the kernel's TCP);
- against a TCP-only peer (aria2) ``"utp-first"`` pays the whole fall-back delay, since
  nobody answers its SYN;
- the price: a peer whose TCP port accepts and then closes (libtorrent with incoming TCP
  switched off) is never reached by our dial, as no error comes back to fall back on; such
  a peer reaches us over uTP itself, as libtorrent dials uTP first. ``"both"`` does not
  avoid this reliably either: when TCP wins the race, the handshake fails just the same. A
  peer whose TCP port drops SYNs costs ``fallback_after`` before uTP.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from typing import Literal, TypeVar

from hubswarm.net import Listener, StreamNetwork

__all__ = ["DEFAULT_DIAL_POLICY", "DIAL_POLICIES", "FALLBACK_AFTER", "DialPolicy", "DualNetwork"]

log = logging.getLogger(__name__)

_P = TypeVar("_P", bound=asyncio.BaseProtocol)

DialPolicy = Literal["tcp-first", "utp-first", "both"]
DIAL_POLICIES: tuple[DialPolicy, ...] = ("tcp-first", "utp-first", "both")
# See the module docstring: as fast as any to the first piece from peers with TCP, and the
# torrent then runs over the faster transport.
DEFAULT_DIAL_POLICY: DialPolicy = "tcp-first"
# How long the first transport may take before the second is tried. libtorrent gives its
# uTP attempt 3 s (utp_connect_timeout); our uTP core's first SYN resend comes after 1 s
# (BEP 29's initial timeout), so 1.5 s survives one lost SYN and still beats libtorrent.
FALLBACK_AFTER = 1.5


class _DualListener:
    """Both listeners as one :class:`hubswarm.net.Listener`; ``address`` is TCP's."""

    def __init__(self, tcp: Listener, utp: Listener) -> None:
        self.tcp = tcp
        self.utp = utp

    @property
    def address(self) -> tuple[str, int]:
        return self.tcp.address

    def close(self) -> None:
        self.tcp.close()
        self.utp.close()

    async def wait_closed(self) -> None:
        await self.tcp.wait_closed()
        await self.utp.wait_closed()


class DualNetwork:
    """Listen on TCP and uTP, dial by :data:`DialPolicy` (see the module docstring)."""

    name = "dual"

    def __init__(
        self,
        tcp: StreamNetwork,
        utp: StreamNetwork,
        policy: DialPolicy = DEFAULT_DIAL_POLICY,
        *,
        fallback_after: float = FALLBACK_AFTER,
    ) -> None:
        if policy not in DIAL_POLICIES:
            raise ValueError(f"dial policy {policy!r} is not one of {DIAL_POLICIES}")
        self.tcp = tcp
        self.utp = utp
        self.policy: DialPolicy = policy
        self.fallback_after = fallback_after

    async def listen(
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: str, port: int
    ) -> Listener:
        """uTP on ``port`` (its socket's), then TCP on the same number where possible.

        Raises:
            OSError: uTP cannot listen there, or TCP cannot listen at all.
        """
        utp = await self.utp.listen(protocol_factory, host, port)
        shared = utp.address[1]
        try:
            tcp = await self.tcp.listen(protocol_factory, host, shared)
        except OSError as exc:
            if port != 0:
                utp.close()
                raise
            log.warning("TCP port %d is taken (%s): TCP listens elsewhere", shared, exc)
            try:
                tcp = await self.tcp.listen(protocol_factory, host, 0)
            except BaseException:
                utp.close()
                raise
        except BaseException:
            utp.close()
            raise
        return _DualListener(tcp, utp)

    async def connect(
        self, protocol_factory: Callable[[], _P], host: str, port: int
    ) -> tuple[asyncio.Transport, _P]:
        """Dial ``host:port`` by the policy; the caller's timeout scope bounds it all.

        Raises:
            OSError: every transport failed (the last error).
        """
        match self.policy:
            case "tcp-first":
                return await self._in_turn(self.tcp, self.utp, protocol_factory, host, port)
            case "utp-first":
                return await self._in_turn(self.utp, self.tcp, protocol_factory, host, port)
            case _:
                return await self._race(protocol_factory, host, port)

    async def _in_turn(
        self,
        first: StreamNetwork,
        second: StreamNetwork,
        protocol_factory: Callable[[], _P],
        host: str,
        port: int,
    ) -> tuple[asyncio.Transport, _P]:
        try:
            async with asyncio.timeout(self.fallback_after):
                return await first.connect(protocol_factory, host, port)
        except OSError as exc:  # TimeoutError too
            log.debug(
                "%s to %s:%d failed (%r), trying %s", first.name, host, port, exc, second.name
            )
        return await second.connect(protocol_factory, host, port)

    async def _race(
        self, protocol_factory: Callable[[], _P], host: str, port: int
    ) -> tuple[asyncio.Transport, _P]:
        won: list[tuple[asyncio.Transport, _P]] = []
        errors: list[OSError] = []
        tasks: list[asyncio.Task[None]] = []

        async def attempt(network: StreamNetwork) -> None:
            try:
                result = await network.connect(protocol_factory, host, port)
            except OSError as exc:
                errors.append(exc)
                return
            if won:
                result[0].close()  # connected a moment after the winner
                return
            won.append(result)
            for task in tasks:
                if task is not asyncio.current_task():
                    task.cancel()

        async with asyncio.TaskGroup() as tg:
            tasks.extend(tg.create_task(attempt(n)) for n in (self.utp, self.tcp))
        if won:
            return won[0]
        raise errors[-1] if errors else OSError(errno.ECONNREFUSED, f"{host}:{port} unreachable")
