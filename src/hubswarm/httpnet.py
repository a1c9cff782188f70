"""aiohttp over any :class:`hubswarm.net.StreamNetwork`: a server site and a client connector.

The hub (an aiohttp app) and its clients (aiohttp sessions) normally open sockets through the
event loop. The lab's virtual-time runs put them on a modelled network instead
(:mod:`hubswarm.lab.simnet`), so both ends need a way in:

- :class:`NetworkSite` serves an ``aiohttp.web`` runner on a StreamNetwork listener (the
  runner's ``server`` is the protocol factory, as ``TCPSite`` hands it to the loop);
- :class:`NetworkConnector` is a ``TCPConnector`` whose connections are dialled on a
  StreamNetwork. It overrides aiohttp's ``_wrap_create_connection``, the one step where
  the connector turns resolved addresses into a transport (aiohttp 3.10+): pooling,
  keep-alive, timeouts and errors stay aiohttp's own. URLs must name hosts by address.

``FileResponse`` falls back from sendfile to reads on a transport without a socket.
Imported only where used: aiohttp is a heavy import (see ``swarm.http.LazyHttp``).
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from hubswarm.net import Listener, StreamNetwork

__all__ = ["NetworkConnector", "NetworkSite"]


class NetworkSite(web.BaseSite):
    """Serve an ``aiohttp.web`` runner on ``network`` at (host, port); port 0 picks one."""

    __slots__ = ("_host", "_listener", "_network", "_port")

    def __init__(
        self, runner: web.BaseRunner, network: StreamNetwork, host: str, port: int
    ) -> None:
        super().__init__(runner)
        self._network = network
        self._host = host
        self._port = port
        self._listener: Listener | None = None

    @property
    def name(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the port resolved once started)."""
        return self._listener.address if self._listener is not None else (self._host, self._port)

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # BaseSite.__init__ checked runner.setup() ran
        self._listener = await self._network.listen(server, self._host, self._port)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        await super().stop()


class NetworkConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that dials on ``network`` instead of the kernel's TCP."""

    def __init__(self, network: StreamNetwork, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._network = network

    async def _wrap_create_connection(  # type: ignore[override]
        self,
        protocol_factory: Any,
        *args: Any,
        addr_infos: list[Any],
        req: aiohttp.ClientRequest,
        timeout: aiohttp.ClientTimeout,
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[Any, Any]:
        # addr_infos come from getaddrinfo's shape: (family, type, proto, canonname, sockaddr).
        host, port = addr_infos[0][4][:2]
        try:
            async with aiohttp.helpers.ceil_timeout(timeout.sock_connect):
                return await self._network.connect(protocol_factory, host, port)
        except OSError as exc:
            raise client_error(req.connection_key, exc) from exc
