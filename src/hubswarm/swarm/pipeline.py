"""The session's download path: the shell around the picker and the piece store.

Requests go out to each link as deep as its measured rate calls for, refilled in batches
(:func:`fill_requests`, the depth and batch rules pure in :mod:`.picker`); blocks come in as
runs of ``piece`` messages (:func:`on_pieces`, the leech's hot path) or from web seeds
(:func:`accept_block`); endgame duplicates are cancelled (BEP 3). A complete piece is
SHA-1 checked off the loop before it is written or announced with ``have``, and the peers
that contributed to it gain or lose trust in the peer book, down to a ban. It lives apart
from :mod:`.session`, which dispatches events and runs the lifecycle, as the other shells
(:mod:`.choke_shell`, :mod:`.pex_shell`) do: one idea each, the same ``session`` passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hubswarm.errors import LocalProtocolError, StorageError
from hubswarm.proto.wire_events import Cancel, Have, NotInterested, Piece
from hubswarm.swarm.bitfield import Bitfield
from hubswarm.swarm.linkstate import LinkState
from hubswarm.swarm.peer import PeerLink
from hubswarm.swarm.picker import BlockRequest, grid_request, refill_size, request_queue_depth

if TYPE_CHECKING:
    from hubswarm.swarm.session import TorrentSession

log = logging.getLogger(__name__)


def fill_requests(session: TorrentSession, link: PeerLink, st: LinkState) -> None:
    """Keep the peer's request pipeline full (depth adapted to its measured rate)."""
    # Called after every block: while the queue is above 3/4 of the depth chosen last
    # time, return before anything else (refills come in batches of depth / 4).
    queued = st.queue_depth
    if queued and not refill_size(queued, len(st.inflight)):
        return
    picker = session.picker
    if picker is None or st.has is None or link.closed or not link.conn.am_interested:
        return
    if link.conn.peer_choking and not st.allowed_fast:
        return
    # Slow start: a new link gets a deep queue at once (its rate is unknown yet); then
    # rate x queue time.
    cfg = session.config
    depth = request_queue_depth(
        link.download_rate.rate, cfg.request_queue_time, minimum=cfg.initial_queue_depth
    )
    st.queue_depth = depth
    missing = refill_size(depth, len(st.inflight))
    if not missing:
        return  # refill in batches: fewer picker calls, larger writes
    has = st.has
    if link.conn.peer_choking:
        has = Bitfield.from_indices(len(has), (i for i in st.allowed_fast if has[i]))
    reqs = picker.next_requests(link, has, missing, session.clock())
    if not reqs:
        return
    st.inflight.update(reqs)
    link.send_bytes(link.conn.send_requests((r.piece_index, r.begin, r.length) for r in reqs))


def refill_all(session: TorrentSession) -> None:
    """Top up every link's requests now (a piece left the picker's pieces in progress).

    A fast link's requests are often bounded by ``max_in_progress`` (the store's piece
    buffers), not by its queue depth: once every block of the open pieces has arrived,
    only a finished piece frees a place, and waiting for the ticker's refill left the
    link idle for up to ``session.TICK_PERIOD`` (seen as 0.6-1 s pauses on loopback).
    """
    for link, st in list(session.links.items()):
        if not link.closed:
            fill_requests(session, link, st)


def expire_requests(session: TorrentSession, now: float) -> None:
    """The ticker's round: requests unanswered for ``request_timeout`` go back to the
    pool (their peer counts as snubbed), then every link is topped up."""
    picker = session.picker
    if picker is None:
        return
    for key, req in picker.expired_requests(now, session.config.request_timeout):
        picker.request_timed_out(key, req)
        st = session.links.get(key) if isinstance(key, PeerLink) else None
        if st is not None:
            st.inflight.discard(req)
            st.snubbed = True
    refill_all(session)


def on_pieces(session: TorrentSession, link: PeerLink, pieces: list[Piece]) -> None:
    """Handle a run of ``piece`` messages from one read (the leech's hot path).

    Synchronous, and the bookkeeping of the run is done once: the link's state, the
    clock (the batch's arrival), the byte counters and the refill of its request queue.
    Per block: one set removal, the picker's record, the copy into the piece buffer.
    Hashing goes to a task per completed piece.
    """
    st = session.links.get(link)
    picker, store = session.picker, session.store
    if st is None or picker is None or store is None:
        return
    inflight = st.inflight
    received = picker.block_received
    add_block = store.add_block
    got = 0
    done: list[int] = []
    for event in pieces:
        block = event.block
        n = len(block)
        req = grid_request((event.piece_index, event.begin, n))
        try:
            inflight.remove(req)
        except KeyError:
            continue  # unrequested or cancelled: BEP 3 allows it to arrive; ignore
        got += n
        try:
            res = received(link, req)
        except LocalProtocolError:
            continue
        if res.cancels:
            _send_cancels(session, res.cancels)
        if res.stored:
            add_block(req[0], req[1], block)
            if res.piece_done:
                done.append(req[0])
    if not got:
        return
    st.last_piece_at = now = link.last_recv_at  # read once per batch of messages
    st.snubbed = False
    session.stats.downloaded_from_peers += got
    session.download_meter.add(got, now)
    for index in done:
        # Hash and write in a task of the session, so this link keeps reading meanwhile.
        # The picker counts the piece as in progress until piece_complete, so
        # max_in_progress bounds these tasks and the memory they hold.
        try:
            session.spawn(_finish_piece(session, index, source="peer"))
        except LocalProtocolError:
            return  # the session is stopping: the piece is dropped with it
    fill_requests(session, link, st)


async def accept_block(
    session: TorrentSession, key: object, req: BlockRequest, block: bytes, *, source: str
) -> None:
    """Store one block (from a web seed); when its piece is complete, verify and announce it."""
    if _store_block(session, key, req, block):
        await _finish_piece(session, req.piece_index, source=source)


def _store_block(session: TorrentSession, key: object, req: BlockRequest, block: bytes) -> bool:
    """Record and buffer one block; True when its piece is complete (hash it next)."""
    picker, store = session.picker, session.store
    assert picker is not None
    assert store is not None
    try:
        received = picker.block_received(key, req)
    except LocalProtocolError:
        return False
    if received.cancels:
        _send_cancels(session, received.cancels)
    if not received.stored:
        return False
    store.add_block(req.piece_index, req.begin, block)
    return received.piece_done


def _send_cancels(session: TorrentSession, cancels: Iterable[tuple[object, BlockRequest]]) -> None:
    """Cancel endgame duplicates of a block that arrived (BEP 3)."""
    links = session.links
    for other, dup in cancels:
        if not isinstance(other, PeerLink) or other.closed or other not in links:
            continue
        links[other].inflight.discard(dup)
        other.send(Cancel(dup.piece_index, dup.begin, dup.length))


async def _finish_piece(session: TorrentSession, index: int, *, source: str) -> None:
    picker, store = session.picker, session.store
    assert picker is not None
    assert store is not None
    try:
        ok = await store.finish_piece(index)
    except StorageError as exc:
        # Disk full or an I/O error: the piece goes back to the pool, the download stops
        # with that error (the peer did nothing wrong: its link stays up).
        picker.piece_complete(index, False)
        if not session.stopping:
            session.fail(exc)
        return
    contributors = picker.piece_complete(index, ok)
    links = [peer for peer in contributors if isinstance(peer, PeerLink)]
    if not ok:
        session.stats.bad_pieces += 1
        session.log_event("bad_piece", index=index)
        log.warning("piece %d failed its hash check", index)
        for link in links:
            _judge(session, link, good=False, alone=len(contributors) == 1)
        refill_all(session)  # its blocks are back in the pool
        return
    for link in links:
        _judge(session, link, good=True)
    if source == "webseed":
        session.stats.pieces_from_webseeds += 1
    session.log_event(
        "piece", index=index, source=source, peers=[f"{lk.address[0]}" for lk in links]
    )
    for link, st in list(session.links.items()):
        if link.closed:
            continue
        if st.has is None or not st.has[index]:
            link.send(Have(index))
        has = st.has
        if link.conn.am_interested and has is not None and not picker.is_interesting(has):
            link.send(NotInterested())
    if picker.is_complete:
        session.mark_complete()
    else:
        refill_all(session)


def _judge(session: TorrentSession, link: PeerLink, *, good: bool, alone: bool = False) -> None:
    """Trust for a piece ``link`` contributed to; a peer that falls too low is banned."""
    book, key = session.peer_book, link.address
    if good:
        book.good_piece(key)
        return
    hs = link.conn.remote_handshake
    change = book.bad_piece(key, alone=alone, peer_id=hs.peer_id if hs else None)
    if change.banned:
        log.warning("banning %s:%d: trust %d after bad pieces", *key, change.trust)
        session.stats.banned += 1
        session.log_event("banned", peer=f"{key[0]}:{key[1]}")
        link.close()
