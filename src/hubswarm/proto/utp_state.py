"""The states of a uTP connection and the table of its transitions (BEP 29).

:class:`~hubswarm.proto.utp.UtpConnection` moves between these states only through
:data:`TRANSITIONS`; a trigger a state has no entry for is a bug of ours. The sets below
name the states the connection's code asks about: live (a handshake or a stream under
way), ended cleanly or not, and acking what the peer sends (CLOSED too, as TCP's TIME-WAIT).
The diagram is in :mod:`hubswarm.proto.utp`'s docstring.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["ACKING", "ENDED", "LIVE", "TRANSITIONS", "State", "Trigger"]


class State(Enum):
    """State of a :class:`~hubswarm.proto.utp.UtpConnection` (see its module docstring)."""

    IDLE = "idle"
    SYN_SENT = "syn_sent"
    SYN_RECV = "syn_recv"
    CONNECTED = "connected"
    FIN_SENT = "fin_sent"
    CLOSED = "closed"
    RESET = "reset"
    TIMED_OUT = "timed_out"
    ERROR = "error"


class Trigger(Enum):
    """What moves a :class:`State` to the next (see :data:`TRANSITIONS`)."""

    CONNECT = "connect"
    ACCEPT = "accept"
    SYN_ACKED = "syn_acked"
    CONFIRMED = "confirmed"
    FIN_SENT = "fin_sent"
    FINISHED = "finished"
    RESET = "reset"
    TIMEOUT = "timeout"
    VIOLATION = "violation"


_LIVE_EXITS = {
    Trigger.RESET: State.RESET,
    Trigger.TIMEOUT: State.TIMED_OUT,
    Trigger.VIOLATION: State.ERROR,
}
TRANSITIONS: dict[State, dict[Trigger, State]] = {
    State.IDLE: {Trigger.CONNECT: State.SYN_SENT, Trigger.ACCEPT: State.SYN_RECV},
    State.SYN_SENT: {Trigger.SYN_ACKED: State.CONNECTED, **_LIVE_EXITS},
    State.SYN_RECV: {Trigger.CONFIRMED: State.CONNECTED, **_LIVE_EXITS},
    State.CONNECTED: {Trigger.FIN_SENT: State.FIN_SENT, **_LIVE_EXITS},
    State.FIN_SENT: {Trigger.FINISHED: State.CLOSED, **_LIVE_EXITS},
    State.CLOSED: {},
    State.RESET: {},
    State.TIMED_OUT: {},
    State.ERROR: {},
}
LIVE = frozenset((State.SYN_SENT, State.SYN_RECV, State.CONNECTED, State.FIN_SENT))
ENDED = frozenset((State.CLOSED, State.RESET, State.TIMED_OUT))
# States that ack what the peer sends (CLOSED too: TIME-WAIT).
ACKING = frozenset((State.SYN_RECV, State.CONNECTED, State.FIN_SENT, State.CLOSED))
