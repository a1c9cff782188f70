"""ThrottledLog: a burst per kind and window, the rest counted; ServerLog keeps bugs' tracebacks."""

from __future__ import annotations

import logging

import pytest
from aiohttp.http_exceptions import BadStatusLine

from hubswarm.oplog import OPLOG_MAX_DETAIL, ServerLog, ThrottledLog, detail


class Lines(logging.Handler):
    """Collects formatted lines, tracebacks included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def lines() -> Lines:
    return Lines()


def _logger(name: str, handler: Lines) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def test_burst_then_count_then_summary(lines: Lines) -> None:
    now = [0.0]
    t = ThrottledLog(_logger("t.oplog.a", lines), lambda: now[0], burst=3, window=10.0)
    written = [t.log(logging.WARNING, "bad", "bad request %d", i) for i in range(515)]
    assert written == [True] * 3 + [False] * 512
    assert t.suppressed("bad") == 512
    assert len(lines.lines) == 3
    now[0] = 10.0
    assert t.log(logging.WARNING, "bad", "bad request again")
    assert lines.lines[3] == "WARNING ... 512 more bad in the last 10 s"
    assert lines.lines[4] == "WARNING bad request again"
    assert t.suppressed("bad") == 0


def test_kinds_have_their_own_budgets(lines: Lines) -> None:
    t = ThrottledLog(_logger("t.oplog.b", lines), lambda: 0.0, burst=1)
    assert t.log(logging.INFO, "a", "x")
    assert not t.log(logging.INFO, "a", "x")
    assert t.log(logging.INFO, "b", "y")


def test_disabled_level_costs_nothing(lines: Lines) -> None:
    logger = _logger("t.oplog.c", lines)
    logger.setLevel(logging.WARNING)
    t = ThrottledLog(logger, lambda: 0.0, burst=1)
    assert not t.log(logging.INFO, "a", "x")
    assert t.suppressed("a") == 0
    assert lines.lines == []


def test_detail_escapes_and_cuts() -> None:
    text = detail("GET /\r\nX-Forged: 1" + "a" * 500)
    assert "\n" not in text
    assert "\r" not in text
    assert len(text) <= OPLOG_MAX_DETAIL + 3


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_server_log_bad_request_and_disconnect_one_line_bug_keeps_traceback(
    lines: Lines,
) -> None:
    fallback = _logger("t.oplog.server", lines)
    s = ServerLog(ThrottledLog(_logger("t.oplog.d", lines), lambda: 0.0), fallback)
    s.exception(
        "Error handling request from %s", "10.0.0.1", exc_info=_raise(BadStatusLine("x\ny"))
    )
    s.exception(
        "Error handling request from %s", "10.0.0.1", exc_info=_raise(ConnectionResetError())
    )
    s.debug("Error handling request from %s", "10.0.0.1", exc_info=_raise(BadStatusLine("z")))
    assert lines.lines[0].startswith("WARNING malformed request from 10.0.0.1: ")
    assert lines.lines[1].startswith("INFO client 10.0.0.1 went away")
    assert lines.lines[2].startswith("DEBUG malformed request")
    assert all("Traceback" not in line and "\n" not in line for line in lines.lines)
    s.exception("Unhandled exception", exc_info=_raise(ZeroDivisionError("our bug")))
    assert lines.lines[3].startswith("ERROR Unhandled exception\nTraceback")
