"""Logs for operators, not attackers: one line per hostile event, at most a few per kind and
window, the rest counted ("... 512 more in the last 10 s"), tracebacks only for our own bugs.

``ThrottledLog`` is the one rate-limited helper: ``log(level, kind, msg, *args)``. It takes
``now`` from its caller's clock, so it runs in virtual time too. ``ServerLog`` is what the hub
and the tracker hand aiohttp as its server logger (``AppRunner(logger=...)``, a documented
argument): aiohttp reports malformed requests and client disconnects through
``logger.exception(..., exc_info=exc)``, with a traceback each; ``ServerLog`` turns those two
cases into one throttled line and passes everything else (our bugs) through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientPayloadError
from aiohttp.http_exceptions import ContentLengthError, HttpProcessingError, TransferEncodingError

# Lines per kind and window before the rest is only counted; the window of the count.
# As syslog's rate limiting (rsyslog imuxsock: 200 per 5 s) but per kind and much smaller,
# since one kind is one attacker's repeated input.
OPLOG_BURST = 5
OPLOG_WINDOW = 10.0
# Attacker-chosen text (a request line, a URL) is cut to this many characters, escaped.
OPLOG_MAX_DETAIL = 60


def detail(value: object) -> str:
    """Attacker-supplied text made safe for one log line: escaped (no newlines), cut short."""
    text = repr(str(value))[1:-1]
    if len(text) > OPLOG_MAX_DETAIL:
        text = text[:OPLOG_MAX_DETAIL] + "..."
    return text


@dataclass(slots=True)
class _Window:
    started_at: float
    logged: int = 0
    suppressed: int = 0


class ThrottledLog:
    """At most ``burst`` lines per kind per ``window`` seconds; suppressed lines are counted and
    reported in one line when the kind next logs after its window (no timer of its own)."""

    def __init__(
        self,
        logger: logging.Logger,
        now: Callable[[], float],
        *,
        burst: int = OPLOG_BURST,
        window: float = OPLOG_WINDOW,
    ) -> None:
        self.logger = logger
        self._now = now
        self.burst = burst
        self.window = window
        self._windows: dict[str, _Window] = {}

    def log(self, level: int, kind: str, msg: str, *args: object) -> bool:
        """Log one line of ``kind`` unless its budget is spent; True if it was written."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self._now()
        w = self._windows.get(kind)
        if w is None or now - w.started_at >= self.window:
            if w is not None and w.suppressed:
                self.logger.log(
                    level,
                    "... %d more %s in the last %.0f s",
                    w.suppressed,
                    kind,
                    now - w.started_at,
                )
            # The kinds are ours (a handful of constants), so this dict stays small.
            w = self._windows[kind] = _Window(started_at=now)
        if w.logged >= self.burst:
            w.suppressed += 1
            return False
        w.logged += 1
        self.logger.log(level, msg, *args)
        return True

    def suppressed(self, kind: str) -> int:
        """Lines of ``kind`` counted but not written in its current window."""
        w = self._windows.get(kind)
        return w.suppressed if w is not None else 0


def _is_bad_request(exc: BaseException) -> bool:
    # aiohttp's parser errors (bad request line, version, header, too-long line, bad URL).
    return isinstance(exc, HttpProcessingError)


def is_disconnect(exc: BaseException) -> bool:
    """A client that went away: reset, broken pipe, or a body cut short by EOF."""
    return isinstance(
        exc, ConnectionError | ClientPayloadError | ContentLengthError | TransferEncodingError
    )


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger: hostile-input errors become one throttled line, bugs keep
    their traceback. Pass as ``web.AppRunner(app, logger=ServerLog(...))``."""

    def __init__(self, throttled: ThrottledLog, fallback: logging.Logger) -> None:
        super().__init__(fallback, {})
        self.throttled = throttled

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, BaseException):
            # aiohttp's message is "Error handling request from %s" with the peer as args[0];
            # it logs non-HTTP bytes on a fresh connection at DEBUG, the rest at ERROR.
            peer = detail(args[0]) if args else "?"
            if is_disconnect(exc):
                self.throttled.log(
                    min(level, logging.INFO),
                    "disconnects",
                    "client %s went away: %s",
                    peer,
                    detail(exc),
                )
                return
            if _is_bad_request(exc):
                message = getattr(exc, "message", "") or type(exc).__name__
                self.throttled.log(
                    min(level, logging.WARNING),
                    "malformed requests",
                    "malformed request from %s: %s",
                    peer,
                    detail(message),
                )
                return
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs
