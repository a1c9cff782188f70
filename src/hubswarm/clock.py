"""The one seam for time: every clock read and sleep in the hub, the swarm and the DHT.

Theory of operation
-------------------
A :class:`Clock` reads the *running event loop's* clock (``loop.time()``) and sleeps with
``asyncio.sleep``, which reads the same clock. So whatever loop runs the code decides what
time is: the ordinary loop gives monotonic wall time; a virtual-time loop
(:mod:`hubswarm.vtime`) jumps to the next timer whenever nothing is runnable, and the very
same hub, session and DHT code then runs in virtual time, aiohttp's timeouts included
(they read ``loop.time()`` too). Nothing in the system reads ``time.time()`` or
``time.monotonic()`` for its decisions.

``wall()`` is for records a person reads (event logs, ``started_at``): Unix seconds. A
clock made with ``epoch=`` reports ``epoch + now()`` instead, so a virtual-time run writes
timestamps in its own time, not in the host's.

Pure policies (picker, choker, DHT routing, ...) never see a Clock: their callers pass
``now`` in.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["Clock"]


class Clock:
    """Monotonic ``now()`` and ``sleep()`` from the running loop; ``wall()`` for records."""

    __slots__ = ("_epoch",)

    def __init__(self, *, epoch: float | None = None) -> None:
        self._epoch = epoch

    def now(self) -> float:
        """Seconds on the running loop's clock (monotonic; virtual under a virtual loop).

        Outside a running loop (construction in synchronous code) it falls back to
        ``time.monotonic()``, which is what the default loop's ``time()`` returns.
        """
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def wall(self) -> float:
        """Unix seconds for records, or ``epoch + now()`` for a clock made with ``epoch``."""
        if self._epoch is not None:
            return self._epoch + self.now()
        return time.time()

    async def sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds of this clock (``asyncio.sleep``: the loop's timer)."""
        await asyncio.sleep(max(0.0, delay))

    def __call__(self) -> float:
        """``clock()`` is ``clock.now()``: a Clock fits where a ``Callable[[], float]`` did."""
        return self.now()
