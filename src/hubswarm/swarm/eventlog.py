"""A session's event log: one JSON object per line, stamped with the clock's wall time.

The lab and ``--events`` read these records (``peer_connected``, ``piece``, ``complete``,
``banned``, ...) after a run; each is flushed as written, so a peer killed mid-run leaves
every record up to its end. ``t`` is :meth:`~hubswarm.clock.Clock.wall`: Unix seconds, or
a virtual-time run's own epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from hubswarm.clock import Clock
from hubswarm.errors import ConfigError


class EventLog:
    """Appends records to ``path``; without a path it writes nothing."""

    def __init__(self, path: Path | None, clock: Clock) -> None:
        """Raises: ConfigError: the file cannot be opened."""
        self._clock = clock
        try:
            self._file: IO[str] | None = path.open("a") if path is not None else None
        except OSError as exc:
            raise ConfigError(f"cannot open {path}: {exc.strerror or exc}") from exc

    def write(self, kind: str, **fields: Any) -> None:
        """One record: ``{"t": ..., "event": kind, **fields}``."""
        if self._file is not None:
            record = {"t": self._clock.wall(), "event": kind, **fields}
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
