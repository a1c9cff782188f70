"""A TaskGroup whose tasks cannot take each other down: the session's structured concurrency.

A :class:`Supervisor` is entered and left by its owner (the torrent session) and owns one
``asyncio.TaskGroup``. Every task started with :meth:`Supervisor.spawn` is guarded: a
:class:`~hubswarm.errors.HubswarmError` or a bug (any other exception) in it is logged and
ends only that task, so one misbehaving link or loop never cancels its siblings; in a
``critical`` task (a loop the owner cannot run without) it is handed to ``on_failure``
instead. :meth:`Supervisor.close` cancels what still runs and waits for all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from hubswarm.errors import HubswarmError, LocalProtocolError, SwarmError

log = logging.getLogger(__name__)


class Supervisor:
    """Guarded tasks in one TaskGroup; ``spawn`` refuses once closing began."""

    def __init__(self, on_failure: Callable[[HubswarmError], None]) -> None:
        self._on_failure = on_failure
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.closing = False

    @property
    def running(self) -> bool:
        """True between ``start`` and ``close``."""
        return self._tg is not None and not self.closing

    async def start(self) -> None:
        """Enter the task group."""
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()

    def spawn(
        self, coro: Coroutine[Any, Any, None], *, critical: bool = False
    ) -> asyncio.Task[None]:
        """Start a guarded task.

        Raises:
            LocalProtocolError: not running (never started, or closing).
        """
        if self._tg is None or self.closing:
            coro.close()
            raise LocalProtocolError("session is not running")
        task = self._tg.create_task(self._guard(coro, critical))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # A task cancelled before its first step never awaited ``coro``: close it (no warning).
        task.add_done_callback(lambda _: coro.close())
        return task

    async def _guard(self, coro: Coroutine[Any, Any, None], critical: bool) -> None:
        try:
            await coro
        except HubswarmError as exc:
            log.info("task ended: %s", exc)
            if critical:
                self._on_failure(exc)
        except Exception as exc:
            log.error("internal error in a session task", exc_info=exc)
            if critical:
                self._on_failure(SwarmError(f"internal error: {type(exc).__name__}: {exc}"))

    def begin_close(self) -> None:
        """Refuse new tasks from now on (what runs may still finish)."""
        self.closing = True

    async def close(self) -> None:
        """Cancel every task still running and wait until all have finished."""
        self.closing = True
        tg, self._tg = self._tg, None
        if tg is None:
            return
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tg.__aexit__(None, None, None)
