"""A hub served from its own thread and event loop, for callers that block (the CLI's
asyncio.run, Selenium)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from hubswarm.hub.app import HubConfig
from hubswarm.hub.server import running_hub


class ThreadedHub:
    """The hub app on 127.0.0.1 in its own thread and event loop (the CLI runs asyncio.run)."""

    def __init__(
        self, data: Path, configure: Callable[[web.Application], None] | None = None
    ) -> None:
        self.data = data
        self._configure = configure
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-hub")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        config = HubConfig(data_dir=self.data, shutdown_timeout=2.0)
        async with running_hub(config, configure=self._configure) as url:
            self.url = url
            self._ready.set()
            async with asyncio.timeout(120):
                await self._stop.wait()

    def __enter__(self) -> ThreadedHub:
        self._thread.start()
        assert self._ready.wait(10), "hub did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()
