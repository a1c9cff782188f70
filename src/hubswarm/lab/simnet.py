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
- a lost segment (random loss, or a full queue) is sent again one smoothed round trip
  after it was sent (a fast retransmit: the ACKs of what followed it tell), or, lost
  again, after the retransmission timer, doubling with each repeat. Round trips are
  measured from ACKs, queueing included, as RFC 6298 says (Karn's rule; RTO at least
  :data:`MIN_RTO`); a timeout sets the window back to one packet. Loss costs time, never
  bytes: the receiver delivers every byte in order.

Datagrams take the same queues and are really dropped: by the loss rate, or by a full queue.

Not modelled (the report says so): the acknowledgements' share of the reverse path's
capacity, delayed ACKs, Nagle, per-packet header bytes (rates are payload rates), and the
kernel's CPU cost.
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
import weakref
from collections.abc import Callable
from dataclasses import dataclass
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
# RFC 6298's 1 s minimum is 200 ms in Linux (TCP_RTO_MIN); before any sample, 1 s.
MIN_RTO = 0.2
INITIAL_RTO = 1.0
# Linux caps the retransmission timer at TCP_RTO_MAX = 120 s.
MAX_RTO = 120.0
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


class _Packet:
    """What crosses the queues: a stream segment or a datagram. Subclasses say what its
    arrival and its loss do."""

    __slots__ = ("flow", "packets", "size")

    def __init__(self, flow: object, size: int, packets: int = 1) -> None:
        self.flow = flow
        self.size = size
        self.packets = packets  # full-size packets it stands for (each may be lost)

    def arrive(self) -> None:
        raise NotImplementedError

    def lost(self) -> None:
        raise NotImplementedError


class _Flow:
    """A flow's packets waiting in one queue, and its deficit (bytes it may still send)."""

    __slots__ = ("deficit", "packets", "queued")

    def __init__(self) -> None:
        self.packets: collections.deque[tuple[_Packet, Callable[[_Packet], None]]]
        self.packets = collections.deque()
        self.deficit = 0
        self.queued = 0  # bytes of this flow waiting


class _Queue:
    """One direction of one host's access link, fair between its flows: deficit round robin
    (Shreedhar and Varghese, 1995) gives each flow up to a quantum of bytes per turn, so
    flows share the rate evenly in bytes whatever their packet sizes; when the queue is
    full the flow holding the most bytes loses its last packet (longest-queue drop, as
    fair-queueing schedulers do), so a new or slow flow is never locked out by the others."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rate: float, limit: int) -> None:
        self._loop = loop
        self.rate = rate
        self._finite = math.isfinite(rate)
        self.limit = limit
        self._flows: dict[object, _Flow] = {}  # the dict's order is the round
        self.queued = 0
        self.busy = False
        self.sent_bytes = 0
        self.dropped = 0

    def offer(self, packet: _Packet, then: Callable[[_Packet], None]) -> bool:
        """Queue ``packet``; ``then(packet)`` when it has left. False: it was dropped.

        As fq_codel does on overflow: the packet joins its flow's queue, then while the
        queue is over its size the fattest flow loses its last packet (on a tie, the
        arriving flow: the flows already waiting keep their turn in the round).
        """
        key = packet.flow
        flow = self._flows.get(key)
        if flow is None:
            flow = self._flows[key] = _Flow()
        flow.packets.append((packet, then))
        flow.queued += packet.size
        self.queued += packet.size
        accepted = True
        while self.queued > self.limit and self._flows:
            fat_key, fat = max(self._flows.items(), key=lambda kv: kv[1].queued)
            if flow.packets and flow.queued >= fat.queued:
                fat_key, fat = key, flow  # a tie: the arriving flow's own tail goes
            victim, _ = fat.packets.pop()
            fat.queued -= victim.size
            self.queued -= victim.size
            self.dropped += 1
            if not fat.packets:
                del self._flows[fat_key]
            if victim is packet:
                accepted = False
            else:
                self._loop.call_soon(victim.lost)
        if accepted and not self.busy:
            self._serve()
        return accepted

    def _serve(self) -> None:
        # The flow at the front sends while its deficit covers its next packet; otherwise it
        # gets a quantum and goes to the back. A quantum is at least the largest packet, so
        # one pass round the flows always finds a packet to send.
        while True:
            key, flow = next(iter(self._flows.items()))
            packet, then = flow.packets[0]
            if packet.size <= flow.deficit:
                break
            flow.deficit += SEGMENT
            del self._flows[key]
            self._flows[key] = flow
        flow.packets.popleft()
        flow.queued -= packet.size
        flow.deficit -= packet.size
        if not flow.packets:
            del self._flows[key]  # an idle flow keeps no credit (DRR)
        self.busy = True
        if self._finite:
            self._loop.call_at(
                self._loop.time() + packet.size / self.rate, self._sent, packet, then
            )
        else:
            self._loop.call_soon(self._sent, packet, then)

    def _sent(self, packet: _Packet, then: Callable[[_Packet], None]) -> None:
        self.queued -= packet.size
        self.sent_bytes += packet.size
        self.busy = False
        then(packet)
        if self._flows:
            self._serve()


class _Path:
    """From one host to another: the sender's upload queue, the core's delay (with the
    path's loss), the receiver's download queue. A hop of no delay is taken at once, not
    through the loop's timers (most of a large run's events are such hops)."""

    __slots__ = (
        "_crossed",
        "_delay",
        "_enter_down",
        "_loop",
        "_net",
        "down",
        "dst",
        "src",
        "survive",
        "up",
    )

    def __init__(
        self,
        net: SimNetwork,
        src: str,
        dst: str,
        up: _Queue,
        down: _Queue,
        survive: float,
        delay: float,
    ) -> None:
        self._net = net
        self._loop = asyncio.get_running_loop()
        self.src, self.dst = src, dst
        self.up, self.down = up, down
        self.survive = survive
        self._delay = delay
        # Bound once: the queues call these per packet.
        self._crossed = self.crossed
        self._enter_down = self.enter_down

    def send(self, packet: _Packet) -> None:
        down = self._net._down
        if self.src in down or self.dst in down:
            return  # a dead host sends nothing, and what is sent to it is never answered
        if self.src == self.dst:
            self._loop.call_soon(packet.arrive)  # the host's own loopback: not shaped
            return
        if not self.up.offer(packet, self._crossed):
            self._loop.call_soon(packet.lost)

    def crossed(self, packet: _Packet) -> None:
        """``packet`` left the upload queue: lost on the way, or into the download queue."""
        survive = self.survive
        if survive < 1.0 and self._net.rng.random() >= survive**packet.packets:
            packet.lost()
        elif self._delay > 0:
            self._loop.call_at(self._loop.time() + self._delay, self._enter_down, packet)
        else:
            self.enter_down(packet)

    def enter_down(self, packet: _Packet) -> None:
        if not self.down.offer(packet, _arrive):
            packet.lost()


def _arrive(packet: _Packet) -> None:
    packet.arrive()


class SimNetwork(MemoryNetwork):
    """Hosts with shaped access links (see the module docstring); a seeded ``rng`` draws
    every loss, so a run is a function of its seed."""

    def __init__(self, *, rng: random.Random | None = None) -> None:
        super().__init__(rng=rng)
        self._specs: dict[str, LinkSpec] = {}
        self._queues: dict[str, tuple[_Queue, _Queue]] = {}
        self._streams: dict[str, weakref.WeakSet[SimStream]] = {}
        self._paths: dict[tuple[str, str], _Path] = {}
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

    def path(self, src: str, dst: str) -> _Path:
        """The path from ``src`` to ``dst`` (made on first use; a stream keeps its own)."""
        key = (src, dst)
        path = self._paths.get(key)
        if path is None:
            up, _ = self._links(src)
            _, down = self._links(dst)
            survive = (1.0 - self.spec(src).loss) * (1.0 - self.spec(dst).loss)
            path = self._paths[key] = _Path(self, src, dst, up, down, survive, self.delay(src, dst))
        return path

    def transmit(self, packet: _Packet, src: str, dst: str) -> None:
        """Send ``packet`` from ``src`` to ``dst``: ``packet.arrive()`` or ``packet.lost()``."""
        self.path(src, dst).send(packet)

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


class _Segment(_Packet):
    """A stream's segment: its arrival goes to the receiving end, its loss to the sender."""

    __slots__ = ("item", "losses", "sender", "sent_at", "seq")

    def __init__(self, sender: SimStream, seq: int, item: bytes | Closed | None, size: int) -> None:
        super().__init__(sender, size, max(1, -(-size // MSS)))
        self.sender = sender
        self.seq = seq  # the stream offset of its first byte (an end marker takes one, as FIN)
        self.item = item  # data, or the end of the stream (EOF / closed)
        self.sent_at = 0.0
        self.losses = 0

    def arrive(self) -> None:
        peer = self.sender.peer
        assert isinstance(peer, SimStream)
        peer._on_segment(self)

    def lost(self) -> None:
        self.sender._on_lost(self)


class _Datagram(_Packet):
    __slots__ = ("dst", "payload")

    def __init__(self, endpoint: SimDatagram, dst: Address, payload: bytes) -> None:
        super().__init__(endpoint, len(payload))
        self.dst = dst
        self.payload = payload

    def arrive(self) -> None:
        endpoint = self.flow
        assert isinstance(endpoint, SimDatagram)
        endpoint._arrive(endpoint._sim, self.dst, self.payload)

    def lost(self) -> None:
        endpoint = self.flow
        assert isinstance(endpoint, SimDatagram)
        endpoint.dropped += 1


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
        self._next_seq = 0
        self._in_flight = 0
        self._resend: collections.deque[_Segment] = collections.deque()  # lost, due again
        self._window = float(INITIAL_WINDOW)
        self._threshold = math.inf
        self._recover_seq = 0  # losses below this offset were in the window already halved
        # RFC 6298: the smoothed round trip and its variation, from segments sent once.
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._rto = INITIAL_RTO
        self._peer_unread = 0  # delivered to the peer's stack, not yet to its application
        # Receiving side: segments that arrived ahead of a missing one, by offset.
        self._expected = 0
        self._ahead: dict[int, _Segment] = {}
        self.retransmissions = 0
        self._path: _Path | None = None

    # --- asyncio.WriteTransport -----------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        return self._unsent_bytes

    def abort(self) -> None:
        """Reset: unsent data is dropped and the peer learns after the one-way delay."""
        self._unsent.clear()
        self._resend.clear()
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
        """Send what the window allows, lost segments first: segments cut to the window,
        never below one packet (one packet may always be in flight, TCP's smallest window)."""
        peer = self.peer
        while self._resend and peer is not None:
            if self._in_flight and self._resend[0].size > self._usable_window():
                break
            segment = self._resend.popleft()
            self._in_flight += segment.size
            self._transmit(segment)
        while self._unsent and not self._resend and peer is not None:
            head = self._unsent[0]
            size = len(head) if isinstance(head, bytes) else 0
            room = max(MSS, int(self._usable_window()))
            if isinstance(head, bytes) and size > room:
                if self._in_flight and self._usable_window() < MSS:
                    break
                # A window smaller than the segment: send what fits, keep the rest first.
                head, self._unsent[0] = head[:room], head[room:]
                size = room
            else:
                if self._in_flight and size > self._usable_window():
                    break
                self._unsent.popleft()
            self._unsent_bytes -= size
            self._in_flight += size
            segment = _Segment(self, self._next_seq, head, size)
            self._next_seq += max(1, size) if isinstance(head, bytes) else 1
            self._transmit(segment)
        self.resume_protocol_if_drained()

    def _transmit(self, segment: _Segment) -> None:
        segment.sent_at = self._loop.time()
        path = self._path
        if path is None:
            peer = self.peer
            assert isinstance(peer, SimStream)
            path = self._path = self._sim.path(self._local[0], peer._local[0])
        path.send(segment)

    def _on_lost(self, segment: _Segment) -> None:
        segment.losses += 1
        self.retransmissions += 1
        self._in_flight -= segment.size  # out of the network; due again later
        if segment.losses == 1:
            # Fast retransmit: the ACKs of what was sent after it tell, about one round trip
            # (queueing included) after the send; before any sample, the retransmission
            # timer. The window halves once per window of data (NewReno/SACK recovery).
            resend_at = segment.sent_at + (self._srtt if self._srtt is not None else self._rto)
            if segment.seq >= self._recover_seq:
                self._threshold = max(self._window / 2, 2.0 * MSS)
                self._window = self._threshold
                self._recover_seq = self._next_seq
        else:
            # The retransmission was lost too: the retransmission timer, doubling per
            # repeat (RFC 6298), and the window back to one packet.
            backoff = self._rto * 2 ** (segment.losses - 2)
            resend_at = segment.sent_at + min(MAX_RTO, backoff)
            self._threshold = max(self._window / 2, 2.0 * MSS)
            self._window = float(MSS)
        self._loop.call_at(max(self._loop.time(), resend_at), self._due_again, segment)

    def _due_again(self, segment: _Segment) -> None:
        """A lost segment is sent again, cut to the window as it is now (after a timeout,
        one packet: the rest follows as the window opens)."""
        room = max(MSS, int(self._window))
        item = segment.item
        if isinstance(item, bytes) and segment.size > room:
            for start in range(0, segment.size, room):
                part = item[start : start + room]
                piece = _Segment(self, segment.seq + start, part, len(part))
                piece.losses = segment.losses
                self._resend.append(piece)
        else:
            self._resend.append(segment)
        self._push()

    def _on_ack(self, segment: _Segment) -> None:
        if segment.losses == 0:  # Karn: a retransmitted segment's ACK is no sample
            self._sample_rtt(self._loop.time() - segment.sent_at)
        self._in_flight -= segment.size
        self._unacked -= segment.size
        if self._window < self._threshold:
            self._window += segment.size  # slow start: doubles per round trip
        else:
            self._window += MSS * segment.size / self._window  # one MSS per round trip
        self._window = min(self._window, float(RECEIVE_WINDOW))
        self._push()

    def _sample_rtt(self, sample: float) -> None:
        # RFC 6298, section 2 (alpha = 1/8, beta = 1/4, K = 4).
        if self._srtt is None:
            self._srtt, self._rttvar = sample, sample / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - sample)
            self._srtt = 0.875 * self._srtt + 0.125 * sample
        self._rto = min(MAX_RTO, max(MIN_RTO, self._srtt + 4 * self._rttvar))

    def _acknowledge(self, n: int) -> None:
        # The peer's application read n of our bytes: its receive window opens again.
        self._peer_unread -= n
        if self._unsent:
            self._push()

    # --- receiving ------------------------------------------------------------------------

    def _on_segment(self, segment: _Segment) -> None:
        peer = self.peer
        assert peer is None or isinstance(peer, SimStream)
        if peer is None or segment.seq < self._expected or segment.seq in self._ahead:
            return  # a duplicate (its first copy made it after all)
        back = self._sim.delay(self._local[0], peer._local[0])
        if back > 0:
            self._loop.call_at(self._loop.time() + back, peer._on_ack, segment)
        else:
            peer._on_ack(segment)
        self._ahead[segment.seq] = segment
        while self._expected in self._ahead:
            ready = self._ahead.pop(self._expected)
            self._expected += ready.size if isinstance(ready.item, bytes) else 1
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
        self._sim.transmit(_Datagram(self, dst, bytes(data)), self._local[0], dst[0])
