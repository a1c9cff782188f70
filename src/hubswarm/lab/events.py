"""A swarm peer's ``--events`` log: JSON lines, read whole or as it grows.

The peers (``hubswarm fetch --events FILE``) log ``piece``, ``complete``, ``bad_piece``,
``banned``... each with ``t`` in Unix seconds. The lab reads them to learn when a peer
completed (it keeps seeding, so it never exits on its own) and which pieces it held when.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["Event", "EventTail", "completed_at", "piece_arrivals", "read_events"]

Event = dict[str, object]


def read_events(path: Path) -> list[Event]:
    """The JSON lines of a ``--events`` log (a torn last line is skipped)."""
    with contextlib.suppress(OSError):
        return _event_lines(path.read_bytes().splitlines())
    return []


def _event_lines(lines: Iterable[bytes]) -> list[Event]:
    out: list[Event] = []
    for line in lines:
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                out.append(value)
    return out


class EventTail:
    """The lines appended to a growing ``--events`` log since the last ``read_new``.

    The runner watches every client's log five times a second; re-reading whole logs made
    that quadratic in their length (N = 32: ~100 lines each, parsed ~40 times per run, all
    inside the measured time on the same 2 cores as the peers).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._torn = b""  # a last line still being written

    def read_new(self) -> list[Event]:
        """The complete lines written since the last call."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return []
        self._offset += len(chunk)
        lines = (self._torn + chunk).split(b"\n")
        self._torn = lines.pop()
        return _event_lines(lines)


def completed_at(events: Sequence[Event]) -> float | None:
    """The Unix time of the first ``complete`` event, or None (none yet, or no time)."""
    done = [e.get("t") for e in events if e.get("event") == "complete"]
    return done[0] if done and isinstance(done[0], float) else None


def piece_arrivals(events: Iterable[Event], t0_wall: float) -> list[tuple[float, int]]:
    """(seconds since t = 0, piece_index) of every ``piece`` event."""
    out = []
    for e in events:
        t, index = e.get("t"), e.get("index")
        if e.get("event") == "piece" and isinstance(t, float) and isinstance(index, int):
            out.append((t - t0_wall, index))
    return out
