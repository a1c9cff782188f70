"""The DHT node: an asyncio UDP shell around :mod:`hubswarm.proto.krpc` and the pure parts.

The protocol callback decides synchronously (parse, rate-limit, answer from the routing table,
token secrets and peer store) and sends at most one small datagram. Our own queries wait on a
future with a per-query timeout. Background work (token rotation, expiry, bucket refresh,
pinging nodes that queried us) lives in a TaskGroup owned by ``async with DHTNode(...)``.

Time and I/O go through two seams: every clock read and sleep through a
:class:`hubswarm.clock.Clock` (the running loop's time; timeouts are ``asyncio.timeout``
scopes, which read the same clock), and the UDP endpoint through a
:class:`hubswarm.net.DatagramNetwork`. On a :mod:`hubswarm.vtime` loop with a
:class:`hubswarm.memnet.MemoryNetwork`, a whole DHT runs in virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import os
import random
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hubswarm.clock import Clock
from hubswarm.errors import DHTError, HubswarmError, KRPCError
from hubswarm.limits import (
    DHT_ALPHA,
    DHT_AMPLIFICATION_FACTOR,
    DHT_BUCKET_REFRESH,
    DHT_K,
    DHT_LOOKUP_MAX_ROUNDS,
    DHT_MAX_PEERS_REPLY,
    DHT_PING_QUEUE,
    DHT_QUERY_TIMEOUT,
    DHT_RATE_BURST,
    DHT_RATE_PER_IP,
    DHT_REANNOUNCE_AFTER,
    DHT_TOKEN_ROTATE,
)
from hubswarm.net import DatagramNetwork, TcpNetwork
from hubswarm.proto import compact, krpc
from hubswarm.proto.krpc import (
    AnnouncePeer,
    CompactNode,
    FindNode,
    GetPeers,
    Ping,
    Query,
    QueryBody,
    Response,
)
from hubswarm.swarm.dht.lookup import Lookup, LookupResult
from hubswarm.swarm.dht.peerstore import PeerStore
from hubswarm.swarm.dht.routing import InsertOutcome, RoutingTable
from hubswarm.swarm.dht.tokens import PerIPLimiter, TokenSecrets

__all__ = ["DHTNode", "DHTStats", "parse_address"]

log = logging.getLogger(__name__)
Address = tuple[str, int]
# One announce we made: (info_hash, port, the node's address, the node's id).
_Announce = tuple[bytes, int, Address, bytes]
# BEP 5 "v": two characters of client id (as registered for BEP 20) and two of version.
VERSION = b"HS01"
# Concurrent pings of nodes that queried us or sit questionable in a full bucket: enough to
# keep the bounded queue (DHT_PING_QUEUE) moving, few enough to stay a trickle.
_PING_WORKERS = 4
# Contacts written to the state file: a routing table of 160 buckets of k=8 holds at most
# 1280, so this never cuts a real table; it bounds what a corrupt file can make us load.
_STATE_MAX_NODES = 2000
# Seconds between maintenance ticks (token rotation, expiry, bucket refresh). libtorrent
# runs its DHT refresh timer every 5 s too (dht_tracker::refresh_timeout).
DEFAULT_MAINTENANCE_INTERVAL = 5.0
# Stale buckets refreshed per maintenance tick: a few lookups at a time keep bursts small.
_REFRESHES_PER_TICK = 4
# Far buckets refreshed right after joining (Kademlia section 2.3) and the rounds each
# refresh lookup may take: two rounds reach nodes inside the bucket's range.
_JOIN_REFRESHES = 8
_JOIN_REFRESH_ROUNDS = 2
# Saved contacts pinged when rejoining, in multiples of k: enough to refill the closest
# buckets even if most saved contacts left.
_SAVED_CONTACTS_PINGED_PER_K = 4
# Addresses of one bootstrap name tried (a name may resolve to many routers).
_BOOTSTRAP_ADDRESSES_PER_NAME = 2
# Name resolution may take a few query time-outs (a resolver retries once or twice).
_RESOLVE_TIMEOUT_QUERIES = 4
# A KRPC error answering a broken query quotes at most this much of our parser's message.
_ERROR_MESSAGE_MAX = 64


def parse_address(text: str) -> Address:
    """Parse ``HOST:PORT`` (IPv4 literal or name resolved later by the OS).

    Raises:
        DHTError: not HOST:PORT with a port in 1..65535.
    """
    try:
        return compact.parse_host_port(text)
    except ValueError as exc:
        raise DHTError(f"expected HOST:PORT: {exc}") from exc


@dataclass(slots=True)
class DHTStats:
    """Counters of what the node saw; the defences show up here, never as exceptions."""

    datagrams_in: int = 0
    malformed: int = 0
    rate_limited: int = 0
    unknown_transaction: int = 0
    wrong_address: int = 0
    queries_in: int = 0
    responses_in: int = 0
    errors_in: int = 0
    queries_out: int = 0
    announces_out: int = 0  # announce_peer queries among queries_out
    announces_skipped: int = 0  # not re-sent: the node accepted ours lately
    timeouts: int = 0
    bad_tokens: int = 0
    truncated_replies: int = 0
    internal_errors: int = 0
    # From an IPv6 address: BEP 32 (the IPv6 DHT) is not spoken, so dropped unanswered.
    not_ipv4: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, node: DHTNode) -> None:
        self._node = node

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._node._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the query's timeout handles it.
        log.debug("dht socket error: %s", exc)


class DHTNode:
    """A BEP 5 DHT node bound to ``host:port`` (UDP); use as ``async with DHTNode(...) as node``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        node_id: bytes | None = None,
        bootstrap: Iterable[Address] = (),
        state_path: str | os.PathLike[str] | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        network: DatagramNetwork | None = None,
        query_timeout: float = DHT_QUERY_TIMEOUT,
        k: int = DHT_K,
        alpha: int = DHT_ALPHA,
        rate_per_ip: float = DHT_RATE_PER_IP,
        rate_burst: float = DHT_RATE_BURST,
        maintenance_interval: float = DEFAULT_MAINTENANCE_INTERVAL,
        refresh_after: float = DHT_BUCKET_REFRESH,
        token_rotate_after: float = DHT_TOKEN_ROTATE,
        auto_bootstrap: bool = True,
        lookups_in_background: bool = False,
    ) -> None:
        """``auto_bootstrap``: bootstrap on entering. ``lookups_in_background``: entering
        returns at once and the whole bootstrap runs on: a lookup that finds the table empty
        waits for the bootstrap contacts' answers (a peer starts its torrent at once; a lost
        answer no longer holds it for a query time-out).

        ``clock`` (default: the running loop's) is read for every time stamp and sleep;
        ``network`` (default: the kernel's UDP) binds the node's endpoint."""
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock if clock is not None else Clock()
        self._network: DatagramNetwork = network if network is not None else TcpNetwork()
        self.host = host
        self._port = port
        self._state_path = Path(state_path) if state_path is not None else None
        self._node_id_given = node_id is not None
        self.node_id = node_id if node_id is not None else self._rng.randbytes(krpc.ID_LEN)
        if len(self.node_id) != krpc.ID_LEN:
            raise DHTError(f"node_id must be {krpc.ID_LEN} bytes")
        self.bootstrap_addresses = list(bootstrap)
        self.query_timeout = query_timeout
        self.k = k
        self.alpha = alpha
        self.maintenance_interval = maintenance_interval
        self.refresh_after = refresh_after
        self.auto_bootstrap = auto_bootstrap
        self.lookups_in_background = lookups_in_background
        self.table = RoutingTable(self.node_id, self._clock.now(), k=k)
        self.transactions = krpc.TransactionTable(self._rng)
        self.tokens = TokenSecrets(self._rng, token_rotate_after)
        self.limiter = PerIPLimiter(rate_per_ip, rate_burst)
        self.peers = PeerStore()
        # When each node accepted our announce. Grows only with our own accepted announces
        # (k per lookup); pruned by maintenance.
        self._announced: dict[_Announce, float] = {}
        self.stats = DHTStats()
        self._saved_contacts: list[CompactNode] = []
        self._waiters: dict[bytes, asyncio.Future[Response]] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ping_queue: asyncio.Queue[Address] = asyncio.Queue(maxsize=DHT_PING_QUEUE)
        self._ping_wanted: set[Address] = set()
        self._contacting: asyncio.Task[None] | None = None  # bootstrap contacts in flight

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def address(self) -> Address:
        """The bound ``(host, port)``."""
        if self._transport is None:
            raise DHTError("DHT node is not running")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    async def __aenter__(self) -> DHTNode:
        if self._state_path is not None:
            await asyncio.to_thread(self.load_state, self._state_path)
        try:
            transport, _ = await self._network.bind(lambda: _Protocol(self), self.host, self._port)
        except OSError as exc:
            raise DHTError(f"cannot bind UDP {self.host}:{self._port}: {exc}") from exc
        self._transport = transport
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        try:
            self._tasks.append(self._tg.create_task(self._maintenance()))
            for _ in range(_PING_WORKERS):
                self._tasks.append(self._tg.create_task(self._ping_worker()))
            if self.auto_bootstrap and (self.bootstrap_addresses or self._saved_contacts):
                if self.lookups_in_background:
                    self._tasks.append(self._tg.create_task(self._background_lookups()))
                else:
                    await self.bootstrap()
        except BaseException as exc:
            await self._shutdown(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._shutdown(*exc_info)

    async def _shutdown(self, *exc_info: Any) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        try:
            if self._tg is not None:
                # Our background tasks are cancelled above; the caller's exception (if any)
                # propagates by itself instead of being wrapped in an ExceptionGroup.
                await self._tg.__aexit__(None, None, None)
        finally:
            self._tg = None
            for fut in self._waiters.values():
                fut.cancel()
            self._waiters.clear()
            if self._transport is not None:
                self._transport.close()
                self._transport = None
            if self._state_path is not None:
                try:
                    await asyncio.to_thread(self.save_state, self._state_path)
                except DHTError as exc:
                    log.warning("%s", exc)

    # --- routing table persistence ------------------------------------------------------

    def save_state(self, path: str | os.PathLike[str]) -> None:
        """Write our node id and the routing table's contacts to ``path`` (JSON, atomic rename).

        Raises:
            DHTError: the file cannot be written.
        """
        state = {
            "node_id": self.node_id.hex(),
            "nodes": [
                [e.node.node_id.hex(), e.node.ip, e.node.port]
                for e in list(self.table.entries())[:_STATE_MAX_NODES]
            ],
        }
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        try:
            tmp.write_text(json.dumps(state))
            tmp.replace(target)
        except OSError as exc:
            raise DHTError(f"cannot save DHT state to {target}: {exc}") from exc

    def load_state(self, path: str | os.PathLike[str]) -> int:
        """Read a file written by :meth:`save_state`: our id (unless given) and contacts to try.

        A missing file is a fresh start; returns the number of contacts loaded.

        Raises:
            DHTError: the file exists but is not a valid state file.
        """
        target = Path(path)
        try:
            text = target.read_text()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise DHTError(f"cannot read DHT state {target}: {exc}") from exc
        try:
            state = json.loads(text)
            node_id = bytes.fromhex(state["node_id"])
            contacts = [
                CompactNode(bytes.fromhex(h), str(ip), int(port))
                for h, ip, port in state["nodes"][:_STATE_MAX_NODES]
            ]
        except (ValueError, KeyError, TypeError, KRPCError) as exc:
            raise DHTError(f"{target} is not a DHT state file: {exc}") from exc
        if not self._node_id_given and len(node_id) == krpc.ID_LEN:
            self.node_id = node_id
            self.table = RoutingTable(node_id, self._clock.now(), k=self.k)
        self._saved_contacts = contacts
        return len(contacts)

    # --- sending and receiving ----------------------------------------------------------

    def _send(self, msg: krpc.Message, address: Address) -> int:
        data = krpc.encode_message(msg)
        if self._transport is not None:
            self._transport.sendto(data, address)
        return len(data)

    def _on_datagram(self, data: bytes, addr: Any) -> None:
        self.stats.datagrams_in += 1
        address: Address = (str(addr[0]), int(addr[1]))
        if ":" in address[0]:
            self.stats.not_ipv4 += 1
            return
        try:
            try:
                msg = krpc.decode_message(data)
            except KRPCError as exc:
                self.stats.malformed += 1
                tid = krpc.peek_query_transaction_id(data)
                # BEP 5 "Errors": answer a broken query with 203 (or 204 for unknown methods),
                # rate-limited like any query; an error is no bigger than the query's t allows.
                if tid is not None and self.limiter.allow(address[0], self._clock.now()):
                    error = krpc.Error(tid, exc.code, str(exc)[:_ERROR_MESSAGE_MAX])
                    if len(krpc.encode_message(error)) <= DHT_AMPLIFICATION_FACTOR * len(data):
                        self._send(error, address)
                return
            match msg:
                case Query():
                    self._on_query(msg, address, len(data))
                case Response():
                    self._on_reply(msg, address)
                case krpc.Error():
                    self._on_reply(msg, address)
        except Exception:  # a bug of ours must not stop the node; it is counted and logged
            self.stats.internal_errors += 1
            log.exception("DHT: error handling a datagram from %s", address)

    def _on_reply(self, msg: Response | krpc.Error, address: Address) -> None:
        now = self._clock.now()
        tid = msg.transaction_id
        pending = self.transactions.match(tid, address, now)
        if pending is None:
            if tid in self._waiters:
                self.stats.wrong_address += 1
            else:
                self.stats.unknown_transaction += 1
            return
        waiter = self._waiters.get(tid)
        if isinstance(msg, krpc.Error):
            self.stats.errors_in += 1
            if waiter is not None and not waiter.done():
                waiter.set_exception(KRPCError(msg.message or "KRPC error", code=msg.code))
            return
        self.stats.responses_in += 1
        outcome, questionable = self.table.insert(
            CompactNode(msg.node_id, address[0], address[1]), now
        )
        if outcome is InsertOutcome.CACHED:
            for node in questionable:
                self._want_ping(node.address)
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)

    def _want_ping(self, address: Address) -> None:
        if address in self._ping_wanted:
            return
        try:
            self._ping_queue.put_nowait(address)
        except asyncio.QueueFull:
            return
        self._ping_wanted.add(address)

    def _on_query(self, msg: Query, address: Address, size: int) -> None:
        now = self._clock.now()
        ip = address[0]
        if not self.limiter.allow(ip, now):
            self.stats.rate_limited += 1
            return
        self.stats.queries_in += 1
        body = msg.body
        sender = CompactNode(body.node_id, ip, address[1])
        verified = self.table.heard_query(sender, now)
        if not verified and self.table.would_accept(sender.node_id, now):
            # BEP 5: only nodes that answered us are good; ping before trusting it.
            self._want_ping(address)
        reply: krpc.Message
        match body:
            case Ping():
                reply = Response(msg.transaction_id, self.node_id, version=VERSION)
            case FindNode(target=target):
                reply = Response(
                    msg.transaction_id,
                    self.node_id,
                    nodes=tuple(self.table.closest(target, self.k, now)),
                    version=VERSION,
                )
            case GetPeers(info_hash=info_hash):
                peers = self.peers.get(info_hash, now, DHT_MAX_PEERS_REPLY, self._rng)
                reply = Response(
                    msg.transaction_id,
                    self.node_id,
                    nodes=() if peers else tuple(self.table.closest(info_hash, self.k, now)),
                    values=tuple(peers),
                    token=self.tokens.token_for(ip),
                    version=VERSION,
                )
            case AnnouncePeer():
                if not self.tokens.is_valid(body.token, ip):
                    self.stats.bad_tokens += 1
                    reply = krpc.Error(msg.transaction_id, krpc.ERROR_PROTOCOL, "bad token")
                else:
                    # BEP 5: with implied_port the peer's port is the UDP source port.
                    port = address[1] if body.implied_port else body.port
                    self.peers.add(body.info_hash, (ip, port), now)
                    reply = Response(msg.transaction_id, self.node_id, version=VERSION)
        if isinstance(reply, Response) and not verified:
            reply = self._fit(reply, DHT_AMPLIFICATION_FACTOR * size)
        self._send(reply, address)

    def _fit(self, reply: Response, budget: int) -> Response:
        """Trim values, then nodes, until the reply fits ``budget`` bytes (no amplification)."""
        values, nodes = list(reply.values), list(reply.nodes)
        for _ in range(len(values) + len(nodes) + 1):
            candidate = Response(
                reply.transaction_id,
                reply.node_id,
                tuple(nodes),
                tuple(values),
                reply.token,
                reply.version,
            )
            if len(krpc.encode_message(candidate)) <= budget:
                if len(values) < len(reply.values) or len(nodes) < len(reply.nodes):
                    self.stats.truncated_replies += 1
                return candidate
            if values:
                values.pop()
            elif nodes:
                nodes.pop()
        self.stats.truncated_replies += 1
        return Response(reply.transaction_id, reply.node_id, token=reply.token)

    # --- our queries ---------------------------------------------------------------------------

    async def query(
        self, address: Address, body: QueryBody, node_id: bytes | None = None
    ) -> Response:
        """Send one query and wait ``query_timeout`` for its response.

        Raises:
            TimeoutError: no answer in time (the node is marked as failed).
            KRPCError: the node answered with a KRPC error.
            DHTError: the node is not running.
        """
        if self._transport is None:
            raise DHTError("DHT node is not running")
        now = self._clock.now()
        method = type(body).__name__
        pending = self.transactions.open(address, method, now, self.query_timeout, node_id)
        tid = pending.transaction_id
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiters[tid] = waiter
        try:
            self.stats.queries_out += 1
            self._send(Query(tid, body, VERSION), address)
            async with asyncio.timeout(self.query_timeout):
                return await waiter
        except TimeoutError:
            self.stats.timeouts += 1
            if node_id is not None:
                self.table.mark_failed(node_id, self._clock.now())
            raise
        finally:
            self._waiters.pop(tid, None)
            self.transactions.cancel(tid)

    async def _try_query(
        self, address: Address, body: QueryBody, node_id: bytes | None = None
    ) -> Response | None:
        try:
            return await self.query(address, body, node_id)
        except (TimeoutError, KRPCError):
            return None

    async def ping(self, address: Address) -> bytes | None:
        """Ping ``address``; return its node id, or None if it did not answer."""
        resp = await self._try_query(address, Ping(self.node_id))
        return None if resp is None else resp.node_id

    async def _ping_host(self, host: str, port: int) -> None:
        # Answers are matched on the address asked, so a name must become an IP first.
        for address in await self._resolve(host, port):
            if await self.ping(address) is not None:
                return

    async def _resolve(self, host: str, port: int) -> list[Address]:
        """The IPv4 addresses of ``host`` (a literal as it is; a name through the resolver)."""
        with contextlib.suppress(ValueError):
            return [(str(ipaddress.IPv4Address(host)), port)]
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.query_timeout * _RESOLVE_TIMEOUT_QUERIES):
                infos = await loop.getaddrinfo(
                    host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
                )
        except (OSError, TimeoutError) as exc:
            log.warning("DHT bootstrap %s:%d: %s", host, port, exc)
            return []
        return [
            (str(info[4][0]), int(info[4][1])) for info in infos[:_BOOTSTRAP_ADDRESSES_PER_NAME]
        ]

    async def lookup(
        self, target: bytes, *, get_peers: bool = False, max_rounds: int = DHT_LOOKUP_MAX_ROUNDS
    ) -> LookupResult:
        """Iterative lookup (find_node, or get_peers when ``get_peers``) towards ``target``.

        With no usable contact (the bootstrap node did not answer: a lost datagram, or it
        was down; or every known node went bad) the bootstrap nodes are asked again first;
        else the lookup would return nothing until the next maintenance tick, and a peer
        could stay alone with whoever it already knew. Likewise, a lookup none of whose
        queries was answered (its datagrams lost, or every contact gone) asks the bootstrap
        nodes again and runs once more: a newcomer whose first lookup is lost would
        otherwise keep its one contact for good.
        """
        can_rejoin = bool(self.bootstrap_addresses or self._saved_contacts)
        if can_rejoin and not self.table.has_contacts(self._clock.now()):
            await self._contact_once()
        result = await self._iterate(target, get_peers, max_rounds)
        if result.queries and not result.responses and can_rejoin:
            await self._contact_once()
            result = await self._iterate(target, get_peers, max_rounds)
        return result

    async def _iterate(self, target: bytes, get_peers: bool, max_rounds: int) -> LookupResult:
        """One iterative lookup from the routing table's closest contacts."""
        lk = Lookup(target, self.node_id, self.k, self.alpha, max_rounds)
        lk.add_candidates(self.table.closest(target, 2 * self.k))
        if not self.table.closest(target, 1):
            lk.add_candidates(self._saved_contacts)
        body: QueryBody = (
            GetPeers(self.node_id, target) if get_peers else FindNode(self.node_id, target)
        )
        while batch := lk.next_round():
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    (node, tg.create_task(self._try_query(node.address, body, node.node_id)))
                    for node in batch
                ]
            for node, task in tasks:
                resp = task.result()
                if resp is None:
                    lk.on_failure(node)
                else:
                    lk.on_response(node, resp.nodes, resp.values, resp.token)
            lk.end_round()
        return lk.result()

    async def bootstrap(self, addresses: Iterable[Address] | None = None) -> int:
        """Ping the bootstrap addresses, then look up our own id; return the table size."""
        await self._contact_bootstrap_nodes(addresses)
        return await self._bootstrap_lookups()

    async def _contact_bootstrap_nodes(self, addresses: Iterable[Address] | None) -> None:
        """Ping the bootstrap addresses and the saved contacts (they join the table)."""
        targets = list(self.bootstrap_addresses if addresses is None else addresses)
        async with asyncio.TaskGroup() as tg:
            for host, port in targets:
                tg.create_task(self._ping_host(host, port))
        seeds = [n for n in self._saved_contacts if self.table.get(n.node_id) is None]
        if seeds:
            async with asyncio.TaskGroup() as tg:
                for node in seeds[: _SAVED_CONTACTS_PINGED_PER_K * self.k]:
                    tg.create_task(self.ping(node.address))

    async def _contact_once(self) -> None:
        """Contact the bootstrap nodes, or wait for the contact already in flight."""
        task = self._contacting
        if task is None or task.done():
            if self._tg is None:
                raise DHTError("DHT node is not running")
            task = self._contacting = self._tg.create_task(self._contact_bootstrap_nodes(None))
        await asyncio.shield(task)

    async def _background_lookups(self) -> None:
        try:
            await self._contact_once()
            await self._bootstrap_lookups()
        except HubswarmError as exc:  # a failed lookup must not stop the node
            log.info("DHT bootstrap lookups: %s", exc)

    async def _bootstrap_lookups(self) -> int:
        """Look up our own id, then refresh the sparse far buckets; return the table size.

        Right after a contact that nobody answered there is nothing to look up from; the
        lookup would only contact the same silent addresses once more.
        """
        if not len(self.table):
            return 0
        await self.lookup(self.node_id)
        # Kademlia (section 2.3): a joining node then refreshes the buckets farther away than
        # its closest neighbour; the own-id lookup only ever meets nodes in our own half.
        own = int.from_bytes(self.node_id, "big")
        sparse = [b for b in self.table.buckets if not b.covers(own) and len(b.nodes) < self.k]
        async with asyncio.TaskGroup() as tg:
            for bucket in sparse[:_JOIN_REFRESHES]:
                # Reaching nodes inside the bucket's range fills it; that is enough.
                target = bucket.random_id(self._rng)
                tg.create_task(self.lookup(target, max_rounds=_JOIN_REFRESH_ROUNDS))
        return len(self.table)

    async def find_node(self, target: bytes) -> list[CompactNode]:
        """The k nodes closest to ``target`` that answered an iterative lookup."""
        return list((await self.lookup(target)).closest)

    async def get_peers(self, info_hash: bytes) -> list[Address]:
        """Peers announced for ``info_hash`` anywhere on the DHT (plus our own store)."""
        return self._peers_found(info_hash, await self.lookup(info_hash, get_peers=True))

    async def announce_peer(self, info_hash: bytes, port: int, implied_port: bool = False) -> int:
        """Announce that a peer of ours serves ``info_hash`` on TCP ``port`` to the k closest.

        Returns how many nodes accepted the announce.
        """
        result = await self.lookup(info_hash, get_peers=True)
        return await self._announce_to(result, info_hash, port, implied_port)

    async def get_peers_and_announce(
        self, info_hash: bytes, port: int, found: Callable[[list[Address]], None]
    ) -> int:
        """``get_peers`` then ``announce_peer`` on one lookup, as libtorrent's announce does:
        the lookup that collects the closest nodes' tokens also collects their peers.

        ``found`` gets the peers as soon as the lookup ends (before the announce's replies).
        Meant to be repeated: a node that accepted our announce less than
        ``DHT_REANNOUNCE_AFTER`` ago is not sent it again (it still stores us).
        Returns how many of the closest nodes hold the announce: accepted now or lately.
        """
        result = await self.lookup(info_hash, get_peers=True)
        found(self._peers_found(info_hash, result))
        return await self._announce_to(result, info_hash, port, False, skip_recent=True)

    def _peers_found(self, info_hash: bytes, result: LookupResult) -> list[Address]:
        found = dict.fromkeys(result.peers)
        for peer in self.peers.get(info_hash, self._clock.now(), DHT_MAX_PEERS_REPLY, self._rng):
            found.setdefault(peer)
        return list(found)

    async def _announce_to(
        self,
        result: LookupResult,
        info_hash: bytes,
        port: int,
        implied_port: bool,
        *,
        skip_recent: bool = False,
    ) -> int:
        now = self._clock.now()
        held = 0
        todo: list[tuple[CompactNode, bytes, _Announce]] = []
        for node, token in result.tokens.items():
            key = (info_hash, port, node.address, node.node_id)
            if skip_recent and now - self._announced.get(key, -math.inf) < DHT_REANNOUNCE_AFTER:
                held += 1
                self.stats.announces_skipped += 1
            else:
                todo.append((node, token, key))
        self.stats.announces_out += len(todo)
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(
                    self._try_query(
                        node.address,
                        AnnouncePeer(self.node_id, info_hash, port, token, implied_port),
                        node.node_id,
                    )
                )
                for node, token, _ in todo
            ]
        for (_, _, key), task in zip(todo, tasks, strict=True):
            if task.result() is not None:
                self._announced[key] = now
                held += 1
        return held

    # --- background --------------------------------------------------------------------------

    async def _ping_worker(self) -> None:
        while True:
            address = await self._ping_queue.get()
            try:
                # A known (questionable) node is pinged by id, so a timeout counts against it
                # and a bad node gives its slot to a cached replacement (BEP 5).
                entry = self.table.by_address(address)
                node_id = None if entry is None else entry.node.node_id
                await self._try_query(address, Ping(self.node_id), node_id)
            finally:
                self._ping_wanted.discard(address)

    async def _maintenance(self) -> None:
        while True:
            await self._clock.sleep(self.maintenance_interval)
            now = self._clock.now()
            self.tokens.tick(now)
            self.peers.expire(now)
            self.transactions.expire(now)
            self._announced = {
                key: at for key, at in self._announced.items() if now - at < DHT_REANNOUNCE_AFTER
            }
            if self.bootstrap_addresses and not self.table.has_contacts(now):
                with contextlib.suppress(DHTError):
                    await self.bootstrap()
                continue
            # BEP 5: refresh buckets unchanged for 15 minutes with a lookup of a random id
            # in their range; a few per tick keeps the bursts small.
            stale = self.table.stale_buckets(now, self.refresh_after)
            for bucket in stale[:_REFRESHES_PER_TICK]:
                bucket.last_changed = now
                await self.lookup(bucket.random_id(self._rng))
