"""Hypothesis properties of the peer wire codec: round-trips, split feeding, garbage."""

from __future__ import annotations

import itertools
import struct

from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import RemoteProtocolError
from hubswarm.limits import BLOCK_SIZE, METADATA_MAX_SIZE, WIRE_MAX_BITFIELD, WIRE_MAX_MESSAGE
from hubswarm.proto.wire import PeerConnection, Role, State
from hubswarm.proto.wire_events import (
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    Event,
    Extended,
    ExtendedHandshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    NotInterested,
    Piece,
    Port,
    Reject,
    Request,
    Suggest,
    Unchoke,
    UnknownMessage,
    metadata_piece_count,
    metadata_piece_size,
)

INFO_HASH = bytes(range(20))
UT_METADATA_ID = 1

u32 = st.integers(0, 0xFFFFFFFF)
block_len = st.integers(1, BLOCK_SIZE)
small_bytes = st.binary(max_size=64)


@st.composite
def metadata_data(draw: st.DrawFn) -> MetadataData:
    total = draw(st.integers(1, 3 * BLOCK_SIZE) | st.just(METADATA_MAX_SIZE))
    piece = draw(st.integers(0, metadata_piece_count(total) - 1))
    size = metadata_piece_size(total, piece)
    return MetadataData(piece, total, draw(st.binary(min_size=size, max_size=size)))


metadata_piece = st.integers(0, metadata_piece_count(METADATA_MAX_SIZE) - 1)
ext_handshakes = st.builds(
    ExtendedHandshake,
    m=st.dictionaries(st.text(min_size=1, max_size=12), st.integers(0, 255), max_size=4),
    metadata_size=st.none() | st.integers(1, METADATA_MAX_SIZE),
    v=st.none() | st.text(max_size=20),
    p=st.none() | st.integers(1, 0xFFFF),
    reqq=st.none() | st.integers(1, 10**6),
    yourip=st.none() | st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16),
)

# Events legal at any point of an open connection (fast and extensions agreed).
regular_events: st.SearchStrategy[Event] = st.one_of(
    st.just(KeepAlive()),
    st.just(Choke()),
    st.just(Unchoke()),
    st.just(Interested()),
    st.just(NotInterested()),
    st.builds(Have, u32),
    st.builds(Request, u32, u32, block_len),
    st.builds(Piece, u32, u32, st.binary(min_size=1, max_size=300)),
    st.builds(Cancel, u32, u32, block_len),
    st.builds(Port, st.integers(0, 0xFFFF)),
    st.builds(Suggest, u32),
    st.builds(Reject, u32, u32, block_len),
    st.builds(AllowedFast, u32),
    st.builds(MetadataRequest, metadata_piece),
    st.builds(MetadataReject, metadata_piece),
    metadata_data(),
    st.builds(Extended, st.integers(2, 255), small_bytes),
    st.builds(
        UnknownMessage,
        st.integers(0, 255).filter(lambda i: i not in {*range(10), *range(13, 18), 20}),
        small_bytes,
    ),
)
first_events: st.SearchStrategy[Event] = st.one_of(
    st.builds(Bitfield, st.binary(max_size=40)), st.just(HaveAll()), st.just(HaveNone())
)


def ready_pair() -> tuple[PeerConnection, PeerConnection]:
    """Handshakes and extended handshakes exchanged; both sides speak ut_metadata as 1."""
    a = PeerConnection(Role.INITIATOR, info_hash=INFO_HASH, peer_id=b"a" * 20)
    b = PeerConnection(Role.RESPONDER, info_hash=INFO_HASH, peer_id=b"b" * 20)
    b.receive_data(a.handshake())
    a.receive_data(b.handshake())
    ehs = ExtendedHandshake(m={"ut_metadata": UT_METADATA_ID})
    b.receive_data(a.send(ehs))
    a.receive_data(b.send(ehs))
    return a, b


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[i:j] for i, j in itertools.pairwise(bounds)]


@given(st.one_of(regular_events, first_events, ext_handshakes))
def test_every_event_round_trips(event: Event) -> None:
    a, b = ready_pair()
    assert b.receive_data(a.send(event)) == [event]
    assert b.state is State.OPEN
    assert b.buffered == 0


@given(
    st.lists(regular_events, max_size=12),
    st.none() | first_events,
    st.lists(st.integers(0, 10_000), max_size=20),
)
def test_split_feeding_gives_the_same_events(
    events: list[Event], first: Event | None, cuts: list[int]
) -> None:
    if first is not None:
        events = [first, *events]
    a, b = ready_pair()
    data = b"".join(a.send(e) for e in events)
    got: list[Event] = []
    for chunk in split(data, cuts):
        got += b.receive_data(chunk)
    assert got == events
    assert b.buffered == 0


@given(st.lists(regular_events, max_size=4))
def test_one_byte_at_a_time_from_the_handshake(events: list[Event]) -> None:
    a = PeerConnection(Role.INITIATOR, info_hash=INFO_HASH, peer_id=b"a" * 20)
    b = PeerConnection(Role.RESPONDER, info_hash=None, peer_id=b"b" * 20)
    # Without b's handshake a does not know b's bits: only send BEP 3 messages it may.
    plain = [e for e in events if type(e) in {Have, Request, Piece, Cancel, Choke, KeepAlive}]
    data = a.handshake() + b"".join(a.send(e) for e in plain)
    got: list[Event] = []
    for i in range(len(data)):
        got += b.receive_data(data[i : i + 1])
    assert len(got) == 1
    assert b.state is State.AWAIT_ACCEPT
    b.accept(INFO_HASH)
    assert b.receive_data(b"") == plain


@given(st.binary(max_size=2000), st.lists(st.integers(0, 3000), max_size=10), st.booleans())
def test_garbage_after_handshake_only_raises_remote_errors(
    garbage: bytes, cuts: list[int], know_pieces: bool
) -> None:
    _a, b = ready_pair()
    if know_pieces:
        b.set_num_pieces(100)
    try:
        for chunk in split(garbage, cuts):
            b.receive_data(chunk)
            assert b.buffered <= WIRE_MAX_BITFIELD + 4
    except RemoteProtocolError:
        assert b.state is State.ERROR
        assert b.buffered == 0


frame_ids = st.sampled_from([*range(10), *range(13, 18), 20, 99])


@st.composite
def plausible_frames(draw: st.DrawFn) -> bytes:
    """Frames with real ids and near-valid lengths: reach deeper than uniform garbage."""
    msg_id = draw(frame_ids)
    payload = draw(st.binary(max_size=40))
    if msg_id == 20:
        payload = (
            bytes((draw(st.sampled_from([0, 1, 2])),))
            + draw(
                st.sampled_from([b"", b"de", b"d8:msg_typei1e5:piecei0e10:total_sizei3ee", b"le"])
            )
            + payload[:3]
        )
    length = draw(st.sampled_from([1 + len(payload), draw(st.integers(0, WIRE_MAX_MESSAGE * 2))]))
    return struct.pack(">IB", length, msg_id) + payload


@given(st.lists(plausible_frames(), max_size=10), st.lists(st.integers(0, 500), max_size=6))
def test_plausible_garbage_only_raises_remote_errors(frames: list[bytes], cuts: list[int]) -> None:
    _a, b = ready_pair()
    try:
        for chunk in split(b"".join(frames), cuts):
            b.receive_data(chunk)
            assert b.buffered <= WIRE_MAX_MESSAGE + 4
    except RemoteProtocolError:
        assert b.state is State.ERROR


@given(st.lists(regular_events, min_size=1, max_size=12), st.none() | first_events)
def test_bytes_wanted_never_reaches_past_the_frame(
    events: list[Event], first: Event | None
) -> None:
    """Fed exactly ``bytes_wanted()`` bytes at a time, the parser gets each frame whole,
    never waits on a byte of the next one, and returns each event when its last byte lands."""
    if first is not None:
        events = [first, *events]
    a, b = ready_pair()
    frames = [a.send(e) for e in events]
    data = b"".join(frames)
    ends = list(itertools.accumulate(len(f) for f in frames))
    pos, got = 0, []
    while pos < len(data):
        want = b.bytes_wanted()
        frame_end = next(e for e in ends if e > pos)
        assert 1 <= want <= frame_end - pos
        out = b.receive_data(data[pos : pos + want])
        pos += want
        assert len(out) == (1 if pos == frame_end else 0)
        got += out
    assert got == events
    assert b.bytes_wanted() == 1
