"""Two uTP cores back to back through a simulated lossy, reordering, duplicating pipe.

:class:`Pipe` is the test helper: a heap of datagrams in flight and a manual clock that jumps
to the next delivery or to the earliest ``timeout_at()`` of either side, so seconds of
protocol time (timeouts, back-off) cost microseconds of test time.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubswarm.proto.utp import (
    MAX_PACKET_SIZE,
    Closed,
    Connected,
    ConnectionReset,
    Data,
    EndOfStream,
    Event,
    State,
    TimedOut,
    UtpConnection,
)
from hubswarm.proto.utp_packet import PacketType, decode


@dataclass
class Link:
    """One direction of the pipe."""

    delay: float = 0.010  # fixed one-way delay, seconds
    jitter: float = 0.0  # extra uniform delay: reorders packets when > the sending gap
    loss: float = 0.0
    duplicate: float = 0.0
    # Extra one-way delay as a function of time (queueing delay for the LEDBAT tests).
    queueing: Callable[[float], float] | None = None
    up: bool = True


@dataclass
class Side:
    """One endpoint: its core, what it received, and what it still has to send."""

    name: str
    conn: UtpConnection | None = None
    received: bytearray = field(default_factory=bytearray)
    events: list[Event] = field(default_factory=list)
    to_send: bytes | bytearray = b""  # becomes a bytearray, consumed from the front
    close_when_sent: bool = False
    close_on_eof: bool = False
    auto_read: bool = True
    max_in_flight: int = 0
    max_peer_excess: int = 0


class Pipe:
    """Joins an initiator ``a`` and a responder ``b`` (accepted from a's SYN)."""

    def __init__(self, rng: random.Random, ab: Link | None = None, ba: Link | None = None):
        self.rng = rng
        self.now = 0.0
        self.links = {"a": ab or Link(), "b": ba or Link()}
        self.sides = {"a": Side("a"), "b": Side("b")}
        self._heap: list[tuple[float, int, str, bytes]] = []
        self._counter = 0
        self.delivered = 0
        self.sizes: list[int] = []
        self.accept_kwargs: dict[str, int] = {}

    @property
    def a(self) -> Side:
        return self.sides["a"]

    @property
    def b(self) -> Side:
        return self.sides["b"]

    def connect(self) -> None:
        conn = UtpConnection.initiator(random.Random(self.rng.random()))
        self.a.conn = conn
        self._emit("a", conn.connect(self.now))

    def _emit(self, src: str, datagrams: list[bytes]) -> None:
        link = self.links[src]
        dst = "b" if src == "a" else "a"
        for datagram in datagrams:
            assert len(datagram) <= MAX_PACKET_SIZE
            self.sizes.append(len(datagram))
            copies = 2 if self.rng.random() < link.duplicate else 1
            for _ in range(copies):
                if not link.up or self.rng.random() < link.loss:
                    continue
                delay = link.delay + link.jitter * self.rng.random()
                if link.queueing is not None:
                    delay += link.queueing(self.now)
                self._counter += 1
                heapq.heappush(self._heap, (self.now + delay, self._counter, dst, datagram))

    def _feed(self, name: str) -> None:
        side = self.sides[name]
        conn = side.conn
        if conn is None:
            return
        # A responder's application exists from Connected on (as the shell builds it then).
        if side.to_send and conn.state in (
            State.IDLE,
            State.SYN_SENT,
            State.CONNECTED,
        ):
            if not isinstance(side.to_send, bytearray):
                side.to_send = bytearray(side.to_send)
            n = min(len(side.to_send), conn.send_buffer_free)
            if n:
                conn.send(side.to_send[:n])
                del side.to_send[:n]
        if side.close_when_sent and not side.to_send:
            conn.close()
        self._emit(name, conn.datagrams_to_send(self.now))
        side.max_in_flight = max(side.max_in_flight, conn.in_flight)
        # In flight beyond the peer's window: only the one packet a zero window lets through.
        side.max_peer_excess = max(side.max_peer_excess, conn.in_flight - conn.peer_window)

    def _handle(self, name: str, events: list[Event]) -> None:
        side = self.sides[name]
        assert side.conn is not None
        for event in events:
            side.events.append(event)
            if isinstance(event, Data):
                side.received += event.data
                if side.auto_read:
                    side.conn.acknowledge_received_data(len(event.data))
            elif isinstance(event, EndOfStream) and side.close_on_eof:
                side.conn.close()

    @staticmethod
    def _half_open_gone(side: Side) -> bool:
        conn = side.conn
        return (
            conn is not None
            and conn.state is State.TIMED_OUT
            and not any(isinstance(e, Connected) for e in side.events)
        )

    def step(self) -> bool:
        """Advance to the next delivery or deadline; False when nothing is left to happen."""
        deadlines = [
            (t, name)
            for name, side in self.sides.items()
            if side.conn is not None and (t := side.conn.timeout_at()) is not None
        ]
        next_delivery = self._heap[0][0] if self._heap else None
        next_deadline = min(deadlines) if deadlines else None
        if next_delivery is None and next_deadline is None:
            return False
        if next_deadline is not None and (
            next_delivery is None or next_deadline[0] < next_delivery
        ):
            self.now = max(self.now, next_deadline[0])
            name = next_deadline[1]
            conn = self.sides[name].conn
            assert conn is not None
            self._handle(name, conn.on_timeout(self.now))
            self._feed(name)
            return True
        at, _, dst, datagram = heapq.heappop(self._heap)
        self.now = max(self.now, at)
        self.delivered += 1
        side = self.sides[dst]
        if dst == "b" and (side.conn is None or self._half_open_gone(side)):
            # As the shell would: a SYN with no live connection behind its ids is a new one.
            packet = decode(datagram)
            if packet.type is not PacketType.ST_SYN:
                return True
            side.events.clear()  # a half-open responder's timeout is never seen by the app
            side.conn = UtpConnection.accept(
                packet, self.now, random.Random(self.rng.random()), **self.accept_kwargs
            )
        else:
            self._handle(dst, side.conn.receive_datagram(datagram, self.now))
        self._feed(dst)
        return True

    def run(
        self, until: Callable[[], bool], max_time: float = 600.0, max_steps: int = 500_000
    ) -> None:
        for _ in range(max_steps):
            if until() or self.now > max_time:
                return
            self._feed("a")
            if self.b.conn is not None:
                self._feed("b")
            if not self.step():
                return
        raise AssertionError("simulation did not settle")


def both_closed(pipe: Pipe) -> Callable[[], bool]:
    def check() -> bool:
        a, b = pipe.a.conn, pipe.b.conn
        return (
            a is not None and b is not None and a.state is State.CLOSED and b.state is State.CLOSED
        )

    return check


def transfer(
    seed: int,
    a_data: bytes,
    b_data: bytes,
    *,
    loss: float = 0.0,
    jitter: float = 0.0,
    duplicate: float = 0.0,
) -> Pipe:
    rng = random.Random(seed)
    link = Link(delay=0.02, jitter=jitter, loss=loss, duplicate=duplicate)
    back = Link(delay=0.02, jitter=jitter, loss=loss, duplicate=duplicate)
    pipe = Pipe(rng, link, back)
    pipe.a.to_send, pipe.b.to_send = a_data, b_data
    pipe.a.close_when_sent = True
    pipe.b.close_when_sent = True
    pipe.connect()
    pipe.run(both_closed(pipe))
    return pipe


def assert_clean_transfer(pipe: Pipe, a_data: bytes, b_data: bytes) -> None:
    assert bytes(pipe.b.received) == a_data
    assert bytes(pipe.a.received) == b_data
    for side in (pipe.a, pipe.b):
        assert side.conn is not None
        assert side.conn.state is State.CLOSED, (side.name, side.conn.state)
        kinds = [type(e) for e in side.events if not isinstance(e, Data)]
        assert kinds == [Connected, EndOfStream, Closed], (side.name, kinds)
        assert side.max_peer_excess <= MAX_PACKET_SIZE
        assert side.conn.timeout_at() is None


# --- clean and lossy transfers ------------------------------------------------------------


def test_clean_transfer_both_directions() -> None:
    a_data = random.Random(1).randbytes(300_000)
    b_data = random.Random(2).randbytes(50_000)
    pipe = transfer(0, a_data, b_data)
    assert_clean_transfer(pipe, a_data, b_data)


def test_empty_streams_close_cleanly() -> None:
    pipe = transfer(0, b"", b"")
    assert_clean_transfer(pipe, b"", b"")


@pytest.mark.parametrize("loss", [0.01, 0.05, 0.10, 0.20])
@pytest.mark.parametrize("seed", range(4))
def test_lossy_reordering_duplicating_pipe(loss: float, seed: int) -> None:
    rng = random.Random(seed)
    a_data = rng.randbytes(120_000)
    b_data = rng.randbytes(20_000)
    pipe = transfer(seed, a_data, b_data, loss=loss, jitter=0.03, duplicate=0.05)
    assert_clean_transfer(pipe, a_data, b_data)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    a_data=st.binary(max_size=40_000),
    b_data=st.binary(max_size=4_000),
    loss=st.floats(0.0, 0.2),
    jitter=st.sampled_from([0.0, 0.005, 0.05]),
    duplicate=st.floats(0.0, 0.2),
    seed=st.integers(0, 2**32),
)
def test_any_bytes_arrive_intact_and_in_order(
    a_data: bytes, b_data: bytes, loss: float, jitter: float, duplicate: float, seed: int
) -> None:
    pipe = transfer(seed, a_data, b_data, loss=loss, jitter=jitter, duplicate=duplicate)
    assert_clean_transfer(pipe, a_data, b_data)


# --- reset and timeouts ---------------------------------------------------------------------


def test_reset_ends_the_other_side() -> None:
    pipe = Pipe(random.Random(3))
    pipe.a.to_send = b"x" * 50_000
    pipe.connect()
    pipe.run(lambda: len(pipe.b.received) >= 10_000)
    assert pipe.b.conn is not None
    assert pipe.a.conn is not None
    pipe._emit("b", pipe.b.conn.abort(pipe.now))
    assert pipe.b.conn.state is State.RESET
    pipe.run(lambda: pipe.a.conn is not None and pipe.a.conn.state is State.RESET)
    assert pipe.a.conn.state is State.RESET
    assert any(isinstance(e, ConnectionReset) for e in pipe.a.events)
    assert pipe.a.conn.timeout_at() is None
    assert pipe.a.conn.datagrams_to_send(pipe.now) == []


def test_a_dead_peer_is_given_up() -> None:
    pipe = Pipe(random.Random(4))
    pipe.a.to_send = b"y" * 30_000
    pipe.connect()
    pipe.run(lambda: len(pipe.b.received) >= 5_000)
    pipe.links["b"].up = False  # b's packets never arrive any more
    pipe.links["a"].up = False
    pipe.run(lambda: pipe.a.conn is not None and pipe.a.conn.state is State.TIMED_OUT)
    assert pipe.a.conn is not None
    assert pipe.a.conn.state is State.TIMED_OUT
    assert isinstance(pipe.a.events[-1], TimedOut)
