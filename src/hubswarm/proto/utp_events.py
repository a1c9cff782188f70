"""Events of a uTP connection (:class:`hubswarm.proto.utp.UtpConnection`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Closed",
    "Connected",
    "ConnectionReset",
    "Data",
    "EndOfStream",
    "Event",
    "TimedOut",
]


@dataclass(frozen=True, slots=True)
class Connected:
    """The handshake completed (a responder: the initiator proved its address)."""


@dataclass(frozen=True, slots=True)
class Data:
    """In-order application bytes from the peer; return them with
    :meth:`UtpConnection.acknowledge_received_data` once consumed."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The peer sent FIN and every byte before it has been delivered."""


@dataclass(frozen=True, slots=True)
class ConnectionReset:
    """The peer sent RESET (or refused our SYN with one)."""


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The peer stopped answering; the connection is given up."""


@dataclass(frozen=True, slots=True)
class Closed:
    """Both directions finished cleanly (our FIN acked, the peer's FIN received)."""


Event = Connected | Data | EndOfStream | ConnectionReset | TimedOut | Closed
