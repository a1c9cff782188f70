"""An asyncio event loop whose clock is virtual: when nothing is runnable, time jumps.

Theory of operation
-------------------
asyncio's loop asks its selector to wait until the next timer is due. Here the selector
first polls without waiting; if nothing is ready, it *advances the virtual clock* to that
timer instead of sleeping. ``loop.time()`` returns the virtual clock, and everything that
reads it runs in virtual time unchanged: ``asyncio.sleep``, ``asyncio.timeout``,
``call_later``, aiohttp's timeouts, :class:`hubswarm.clock.Clock`. A run of code that talks
only through in-memory transports (:mod:`hubswarm.memnet`) is then deterministic and takes
as little wall time as its CPU work does. (The idea of libtorrent's libsimulator, trio's
MockClock with autojump, and the ``looptime`` package.)

Work sent to threads (``asyncio.to_thread``, ``run_in_executor``: hashing, file I/O, DNS)
takes wall time the virtual clock must not see. By default the loop runs such a job
*inline*, at once, on the loop's own thread: it takes no virtual time and its result is
ready at the same point of every run, so a run is a function of its inputs, bit for bit.
With ``threads=True`` the jobs go to the executor as usual and, while any is pending, the
selector waits for it in real time *without* advancing the clock (the order in which
results arrive is then the threads' own).

Real sockets still work (the selector polls them), but their peers live in wall time: use
them for what is ready at once (loopback inside this process), not to wait on the world.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import selectors
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["VirtualTimeLoop", "run"]

_T = TypeVar("_T")

# Virtual time starts here, not at 0: code that reads "0.0" as "never" (last-seen stamps)
# must not mistake the start of a run for the beginning of time.
DEFAULT_START = 10_000.0
# While thread jobs are pending, the selector waits this long in real time per poll.
_THREAD_POLL = 0.05
# The cyclic collector's first-generation threshold during a run. A virtual-time run is all
# CPU, and a swarm of hundreds of peers makes millions of short-lived objects (handles,
# futures, messages) among a large live heap; at CPython's default (700) the collector took
# a fifth of a 100-peer run. Generations 1 and 2 keep their defaults; refcounting frees
# all that is not a cycle at once, so this only delays cycles.
GC_THRESHOLD0 = 50_000


class _VirtualSelector(selectors.BaseSelector):
    """A real selector that never blocks while the loop has only timers to wait for."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.loop: VirtualTimeLoop | None = None

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self.loop
        assert loop is not None
        if len(self._real.get_map()) <= 1 and not loop.pending_threads:
            # Only the loop's own self-pipe is registered (no socket, no thread job): there
            # is nothing to poll, so skip the system call that would find nothing.
            if timeout is None:
                return self._real.select(None)  # no timer either: as a real loop, wait
            loop.advance(timeout)
            return []
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if loop.pending_threads:
            # A thread's job is due back: wait for it in real time, the clock stands still.
            return self._real.select(_THREAD_POLL)
        if timeout is None:
            # No timer at all and nothing ready: only the outside world can wake us.
            return self._real.select(None)
        loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock (see the module docstring)."""

    def __init__(self, start: float = DEFAULT_START, *, threads: bool = False) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = start
        self._threads = threads
        self.pending_threads = 0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward (only the selector does this while running)."""
        if seconds > 0:
            self._now += seconds

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        if not self._threads:
            done: asyncio.Future[_T] = self.create_future()
            try:
                done.set_result(func(*args))
            except Exception as exc:  # the job's error is the awaiting caller's
                done.set_exception(exc)
            return done
        future = super().run_in_executor(executor, func, *args)
        self.pending_threads += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _: asyncio.Future[Any]) -> None:
        self.pending_threads -= 1


def run(
    main: Coroutine[Any, Any, _T], *, start: float = DEFAULT_START, threads: bool = False
) -> _T:
    """``asyncio.run`` on a :class:`VirtualTimeLoop` (with the collector's first threshold at
    :data:`GC_THRESHOLD0` while it runs)."""
    with (
        _gc_threshold(GC_THRESHOLD0),
        asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(start, threads=threads)) as runner,
    ):
        return runner.run(main)


@contextlib.contextmanager
def _gc_threshold(threshold0: int) -> Iterator[None]:
    """Raise the collector's first threshold to at least ``threshold0``, then restore it."""
    before = gc.get_threshold()
    gc.set_threshold(max(threshold0, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
