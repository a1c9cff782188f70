"""The swarm's HTTP client (trackers, BEP 19 web seeds), created on first use.

A peer that finds its swarm through the DHT never speaks HTTP, and importing aiohttp costs
a good fraction of a CPU-second per process (its connector builds a TLS context at import),
which adds up over the many peers of a lab on one machine. So the HTTP modules are
imported, and the one
``aiohttp.ClientSession`` a peer shares between its torrents is opened, only when a tracker
or web seed is first contacted. On a ``network`` other than the kernel's (the lab's sim,
tests on an in-memory network) the session dials through
:class:`~hubswarm.httpnet.NetworkConnector`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

    from hubswarm.net import StreamNetwork

__all__ = ["LazyHttp"]


class LazyHttp:
    """One ``aiohttp.ClientSession``, opened by the first :meth:`get`; :meth:`close` ends it."""

    def __init__(self, network: StreamNetwork | None = None) -> None:
        """``network``: where to dial (None: aiohttp's own sockets)."""
        self._network = network
        self._session: aiohttp.ClientSession | None = None

    @property
    def opened(self) -> bool:
        """True once :meth:`get` opened the session (and until :meth:`close`)."""
        return self._session is not None

    def get(self) -> aiohttp.ClientSession:
        """The session, opened now if needed (call from the event loop)."""
        if self._session is None:
            # Deferred on purpose: see the module docstring.
            import aiohttp

            if self._network is None:
                self._session = aiohttp.ClientSession()
            else:
                from hubswarm.httpnet import NetworkConnector

                self._session = aiohttp.ClientSession(connector=NetworkConnector(self._network))
        return self._session

    async def close(self) -> None:
        """Close the session if it was opened; a later :meth:`get` opens a new one."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
