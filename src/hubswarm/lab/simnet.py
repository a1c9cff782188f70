"""The lab's network model for virtual-time runs: shaped access links, delay and loss.

The model
---------
Every host hangs off a core that is never the bottleneck by its own access link (the lab's
netns fabric is built the same way: one bridge, each host's veth shaped by htb at both
ends). A host's link has

- an **upload queue** and a **download queue**, each with a rate in payload bytes per second
  (the netns links are set so that their *payload* rate is the scenario's rate, htb's rate
  times 1514/1448) and a size in bytes (drop-tail). The flows through one queue share it
  fairly: the queue serves its flows round-robin, one segment at a time, as a fair-queueing
  leaf does and as libtorrent's libsimulator queues do;
- a one-way **latency** to the core: a path from A to B takes A's plus B's;
- a **loss** rate: each packet crossing the link is lost with that probability.

A packet from A to B waits in A's upload queue, crosses the core after the path's delay,
waits in B's download queue and arrives. Acknowledgements and connection set-up are small
and take the path's delay only (they queue nowhere).

Streams behave as TCP does at the scale the lab measures:

- a connect costs one round trip; a refused one too;
- data leaves in segments of at most :data:`SEGMENT` bytes, at most a congestion window in
  flight: the window starts at ten packets (RFC 6928), doubles per round trip in slow start,
  grows by a packet per round trip past the threshold, and halves on a loss (once per
  window: NewReno/SACK recovery), capped by the receiver's window less what its
  application has not read yet;
- a lost segment (random loss, or a full queue) is sent again one round trip after it was
  sent (a fast retransmit), or after a back-off timer of at least :data:`MIN_RTO` doubling
  with each repeated loss of the same segment (RFC 6298). Loss costs time, never bytes:
  the receiver delivers every byte in order.

Datagrams take the same queues and are really dropped: by the loss rate, or by a full queue.

Not modelled (the report says so): the delay of queues in the round-trip estimate, the
acknowledgements' share of the reverse path's capacity, delayed ACKs, Nagle, per-packet
header bytes (rates are payload rates), and the kernel's CPU cost.
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hubswarm.memnet import (
    Address,
    Closed,
    MemoryDatagram,
    MemoryNetwork,
    MemoryStream,
)

__all__ = ["LinkSpec", "SimNetwork"]

# TCP's maximum segment size on a 1500-byte MTU with timestamps (1500 - 20 - 32).
MSS = 1448
# What a queue serves at a time: a burst of up to eleven full packets. Coarser than one
# packet keeps the event count of a 1,000-peer run in bounds; at 1 MiB/s it is 15 ms of
# transfer, so fair sharing is exact well below a second.
SEGMENT = 16 * 1024
# RFC 6928: the initial window is ten segments.
INITIAL_WINDOW = 10 * MSS
# The receiver's window: Linux auto-tunes up to tcp_rmem's 6 MiB; 4 MiB fills any lab path.
RECEIVE_WINDOW = 4 * 1024 * 1024
# RFC 6298's 1 s minimum is 200 ms in Linux (TCP_RTO_MIN).
MIN_RTO = 0.2
# Linux's default txqueuelen is 1,000 packets: about 1.4 MB of payload per queue.
DEFAULT_QUEUE = 1000 * MSS


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One host's access link: payload rates (bytes/s, inf: unlimited), one-way latency to
    the core (s), packet loss (fraction) and each queue's size (bytes)."""

    upload: float = math.inf
    download: float = math.inf
    latency: float = 0.0
    loss: float = 0.0
    queue: int = DEFAULT_QUEUE

    def __post_init__(self) -> None:
        if not (self.upload > 0 and self.download > 0):
            raise ValueError("link rates must be > 0")
        if self.latency < 0 or not 0.0 <= self.loss < 1.0 or self.queue < SEGMENT:
            raise ValueError(f"need latency >= 0, 0 <= loss < 1, queue >= {SEGMENT}")


@dataclass(slots=True, eq=False)
class _Packet:
    """What crosses the queues: a stream segment or a datagram."""

    flow: object
    size: int
    arrive: Callable[[], None]
    lost: Callable[[], None]
    packets: int = 1  # full-size packets it stands for (each may be lost)


class _Queue:
    """One direction of one host's access link: drop-tail, round-robin between flows."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rate: float, limit: int) -> None:
        self._loop = loop
        self.rate = rate
        self.limit = limit
        self._flows: dict[object, collections.deque[_Packet]] = {}  # order: round-robin
        self.queued = 0
        self.busy = False
        self.sent_bytes = 0
        self.dropped = 0

    def offer(self, packet: _Packet, then: Callable[[_Packet], None]) -> bool:
        """Queue ``packet``; ``then(packet)`` when it has left. False: dropped (queue full)."""
        if self.queued and self.queued + packet.size > self.limit:
            self.dropped += 1
            return False
        self._flows.setdefault(packet.flow, collections.deque()).append(packet)
        self.queued += packet.size
        self._then = then
        if not self.busy:
            self._serve()
        return True

    def _serve(self) -> None:
        flow, waiting = next(iter(self._flows.items()))
        packet = waiting.popleft()
        del self._flows[flow]
        if waiting:
            self._flows[flow] = waiting  # to the back of the round
        self.busy = True
        service = packet.size / self.rate if math.isfinite(self.rate) else 0.0
        self._loop.call_at(self._loop.time() + service, self._sent, packet)

    def _sent(self, packet: _Packet) -> None:
        self.queued -= packet.size
        self.sent_bytes += packet.size
        self.busy = False
        self._then(packet)
        if self._flows:
            self._serve()


class SimNetwork(MemoryNetwork):
    """Hosts with shaped access links (see the module docstring); a seeded ``rng`` draws
    every loss, so a run is a function of its seed."""

    def __init__(self, *, rng: random.Random | None = None) -> None:
        super().__init__(rng=rng)
        self._specs: dict[str, LinkSpec] = {}
        self._queues: dict[str, tuple[_Queue, _Queue]] = {}
        self._streams: dict[str, weakref.WeakSet[SimStream]] = {}
        self._down: set[str] = set()

    def add_host(self, ip: str, spec: LinkSpec) -> None:
        """Give ``ip`` its access link (before the host is used)."""
        self._specs[ip] = spec

    def spec(self, ip: str) -> LinkSpec:
        return self._specs.get(ip) or LinkSpec()

    def delay(self, src: str, dst: str) -> float:
        if src == dst:
            return 0.0
        return self.spec(src).latency + self.spec(dst).latency

    def tx_bytes(self, ip: str) -> int:
        """Payload bytes that left ``ip``'s upload queue (retransmissions included)."""
        queues = self._queues.get(ip)
        return queues[0].sent_bytes if queues else 0

    def crash(self, ip: str) -> None:
        """The host at ``ip`` dies: its streams are reset (their peers learn after the path's
        delay), its listeners and datagram endpoints close, and nothing reaches it again."""
        self._down.add(ip)
        for stream in list(self._streams.get(ip, ())):
            stream.abort()
        for address, listener in list(self._listeners.items()):
            if address[0] == ip:
                listener.close()
        for address, endpoint in list(self._datagrams.items()):
            if address[0] == ip:
                endpoint.close()

    def _links(self, ip: str) -> tuple[_Queue, _Queue]:
        queues = self._queues.get(ip)
        if queues is None:
            spec = self.spec(ip)
            loop = asyncio.get_running_loop()
            queues = (
                _Queue(loop, spec.upload, spec.queue),
                _Queue(loop, spec.download, spec.queue),
            )
            self._queues[ip] = queues
        return queues

    def transmit(self, packet: _Packet, src: str, dst: str) -> None:
        """Send ``packet`` from ``src`` to ``dst``: ``packet.arrive()`` or ``packet.lost()``."""
        loop = asyncio.get_running_loop()
        if src in self._down or dst in self._down:
            return  # a dead host sends nothing, and what is sent to it is never answered
        if src == dst:
            loop.call_soon(packet.arrive)  # the host's own loopback: not shaped
            return
        up, _ = self._links(src)
        _, down = self._links(dst)
        survive = (1.0 - self.spec(src).loss) * (1.0 - self.spec(dst).loss)
        delay = self.delay(src, dst)

        def crossed(p: _Packet) -> None:
            if survive < 1.0 and self.rng.random() >= survive**p.packets:
                p.lost()
                return
            loop.call_at(loop.time() + delay, enter_down, p)

        def enter_down(p: _Packet) -> None:
            if not down.offer(p, lambda q: q.arrive()):
                p.lost()

        if not up.offer(packet, crossed):
            loop.call_soon(packet.lost)

    # --- the endpoints --------------------------------------------------------------------

    def open_pair(
        self, loop: asyncio.AbstractEventLoop, local: Address, remote: Address
    ) -> tuple[MemoryStream, MemoryStream]:
        client = SimStream(loop, self, local, remote)
        server = SimStream(loop, self, remote, local)
        client.peer, server.peer = server, client
        self._streams.setdefault(local[0], weakref.WeakSet()).add(client)
        self._streams.setdefault(remote[0], weakref.WeakSet()).add(server)
        return client, server

    def open_datagram(
        self, loop: asyncio.AbstractEventLoop, local: Address, protocol: asyncio.DatagramProtocol
    ) -> MemoryDatagram:
        return SimDatagram(loop, self, local, protocol)


@dataclass(slots=True, eq=False)
class _Segment:
    index: int
    item: bytes | Closed | None  # data, or the end of the stream (EOF / closed)
    size: int
    sent_at: float = 0.0
    losses: int = 0
    packet: _Packet | None = field(default=None, repr=False)


class SimStream(MemoryStream):
    """One end of a modelled TCP connection (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        network: SimNetwork,
        local: Address,
        remote: Address,
    ) -> None:
        super().__init__(loop, network, local, remote)
        self._sim = network
        # Sending side.
        self._unsent: collections.deque[bytes | Closed | None] = collections.deque()
        self._unsent_bytes = 0
        self._next_index = 0
        self._in_flight = 0
        self._window = float(INITIAL_WINDOW)
        self._threshold = math.inf
        self._recover_index = 0  # losses below this index were in the window already halved
        self._peer_unread = 0  # delivered to the peer's stack, not yet to its application
        # Receiving side: segments that arrived ahead of a missing one.
        self._expected = 0
        self._ahead: dict[int, _Segment] = {}
        self.retransmissions = 0

    # --- asyncio.WriteTransport -----------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        return self._unsent_bytes

    def abort(self) -> None:
        """Reset: unsent data is dropped and the peer learns after the one-way delay."""
        self._unsent.clear()
        self._unsent_bytes = 0
        peer = self.peer
        if peer is not None and not self._closing:
            at = self._loop.time() + self._sim.delay(self._local[0], peer._local[0])
            peer.receive(Closed(), at)
        self._closing = True
        self._loop.call_soon(self._connection_lost)

    # --- sending --------------------------------------------------------------------------

    def _send(self, item: bytes | Closed | None) -> None:
        if isinstance(item, bytes):
            for start in range(0, len(item), SEGMENT):
                self._unsent.append(item[start : start + SEGMENT])
            self._unsent_bytes += len(item)
        else:
            self._unsent.append(item)
        self._push()
        self.pause_protocol_if_full()

    def _usable_window(self) -> float:
        return min(self._window, RECEIVE_WINDOW - self._peer_unread) - self._in_flight

    def _push(self) -> None:
        """Send what the window allows (at least one segment when nothing is in flight)."""
        peer = self.peer
        while self._unsent and peer is not None:
            head = self._unsent[0]
            size = len(head) if isinstance(head, bytes) else 0
            if self._in_flight and size > self._usable_window():
                break
            self._unsent.popleft()
            self._unsent_bytes -= size
            self._in_flight += size
            segment = _Segment(self._next_index, head, size)
            self._next_index += 1
            self._transmit(segment)
        self.resume_protocol_if_drained()

    def _transmit(self, segment: _Segment) -> None:
        peer = self.peer
        assert isinstance(peer, SimStream)
        segment.sent_at = self._loop.time()
        packet = segment.packet
        if packet is None:
            packet = segment.packet = _Packet(
                flow=self,
                size=segment.size,
                arrive=lambda: peer._on_segment(segment),
                lost=lambda: self._on_lost(segment),
                packets=max(1, math.ceil(segment.size / MSS)),
            )
        self._sim.transmit(packet, self._local[0], peer._local[0])

    def _round_trip(self) -> float:
        peer = self.peer
        return 0.0 if peer is None else 2 * self._sim.delay(self._local[0], peer._local[0])

    def _on_lost(self, segment: _Segment) -> None:
        segment.losses += 1
        self.retransmissions += 1
        if segment.index >= self._recover_index:
            self._threshold = max(self._window / 2, 2.0 * MSS)
            self._window = self._threshold
            self._recover_index = self._next_index
        rtt = self._round_trip()
        if segment.losses == 1:
            resend_at = segment.sent_at + rtt  # fast retransmit: the next ACKs tell
        else:
            resend_at = segment.sent_at + max(MIN_RTO, 2 * rtt) * 2 ** (segment.losses - 2)
        self._loop.call_at(max(self._loop.time(), resend_at), self._transmit, segment)

    def _on_ack(self, segment: _Segment) -> None:
        self._in_flight -= segment.size
        self._unacked -= segment.size
        if self._window < self._threshold:
            self._window += segment.size  # slow start: doubles per round trip
        else:
            self._window += MSS * segment.size / self._window  # one MSS per round trip
        self._window = min(self._window, float(RECEIVE_WINDOW))
        self._push()

    def _acknowledge(self, n: int) -> None:
        # The peer's application read n of our bytes: its receive window opens again.
        self._peer_unread -= n
        if self._unsent:
            self._push()

    # --- receiving ------------------------------------------------------------------------

    def _on_segment(self, segment: _Segment) -> None:
        peer = self.peer
        assert peer is None or isinstance(peer, SimStream)
        if peer is None or segment.index < self._expected or segment.index in self._ahead:
            return  # a duplicate (its first copy made it after all)
        back = self._sim.delay(self._local[0], peer._local[0])
        self._loop.call_at(self._loop.time() + back, peer._on_ack, segment)
        self._ahead[segment.index] = segment
        while self._expected in self._ahead:
            ready = self._ahead.pop(self._expected)
            self._expected += 1
            if isinstance(ready.item, bytes):
                peer._peer_unread += ready.size
            self.receive(ready.item, self._loop.time())


class SimDatagram(MemoryDatagram):
    """A datagram endpoint whose datagrams take the model's queues and losses."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        network: SimNetwork,
        local: Address,
        protocol: asyncio.DatagramProtocol,
    ) -> None:
        super().__init__(loop, network, local, protocol)
        self._sim = network

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if self._closing or addr is None:
            return
        self.sent += 1
        dst = (str(addr[0]), int(addr[1]))
        payload = bytes(data)

        def lost() -> None:
            self.dropped += 1

        packet = _Packet(
            flow=self,
            size=len(payload),
            arrive=lambda: self._arrive(self._sim, dst, payload),
            lost=lost,
        )
        self._sim.transmit(packet, self._local[0], dst[0])
