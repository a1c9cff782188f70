"""A magnet's session asks a peer that announced pieces for the info dict even if that peer
had none at its extended handshake (metadata_shell.request_metadata(holder=True))."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

from hubswarm.proto import wire
from hubswarm.proto.wire_events import MetadataRequest
from hubswarm.swarm import metadata_shell
from hubswarm.swarm.metadata import MetadataFetch

RAW = bytes(range(256)) * 100  # 25,600 bytes: 2 metadata pieces
INFO_HASH = hashlib.sha1(RAW).digest()


class _Link:
    def __init__(self, size: int | None) -> None:
        self.conn = SimpleNamespace(
            remote_metadata_size=size, remote_extensions={wire.UT_METADATA: 3}
        )
        self.sent: list[Any] = []

    def send_many(self, events: list[Any]) -> None:
        self.sent.extend(events)


def _session() -> Any:
    return SimpleNamespace(info=None, metadata=MetadataFetch(INFO_HASH))


def test_a_holder_is_asked_with_the_size_another_peer_gave() -> None:
    session = _session()
    blind = _Link(None)  # it had no info dict when it said hello: asked for piece 0 only
    metadata_shell.request_metadata(session, blind, holder=True)  # type: ignore[arg-type]
    holder = _Link(None)
    metadata_shell.request_metadata(session, holder, holder=True)  # type: ignore[arg-type]
    assert holder.sent == []  # one blind request at a time
    first = _Link(len(RAW))
    metadata_shell.request_metadata(session, first)  # type: ignore[arg-type]
    assert first.sent == [MetadataRequest(1)]  # piece 0 is on its way from the blind one
    metadata_shell.request_metadata(session, holder, holder=True)  # type: ignore[arg-type]
    assert holder.sent == [MetadataRequest(0), MetadataRequest(1)]  # all busy: ask it too


def test_a_holder_asked_at_its_handshake_or_a_session_with_info_is_not_asked_again() -> None:
    session = _session()
    asked = _Link(len(RAW))
    metadata_shell.request_metadata(session, asked)  # type: ignore[arg-type]
    metadata_shell.request_metadata(session, asked, holder=True)  # type: ignore[arg-type]
    assert len(asked.sent) == 2
    session.info = object()
    late = _Link(None)
    metadata_shell.request_metadata(session, late, holder=True)  # type: ignore[arg-type]
    assert late.sent == []


def test_with_no_size_known_one_holder_is_asked_for_piece_0_whose_reply_gives_it() -> None:
    from hubswarm.proto.wire_events import MetadataData

    session = _session()
    first, second = _Link(None), _Link(None)
    metadata_shell.request_metadata(session, first, holder=True)  # type: ignore[arg-type]
    metadata_shell.request_metadata(session, second, holder=True)  # type: ignore[arg-type]
    assert first.sent == [MetadataRequest(0)]
    assert second.sent == []  # one blind request at a time
    assert session.metadata.received(first, MetadataData(0, len(RAW), RAW[:16384])) is None
    assembler = session.metadata.assembler
    assert assembler is not None
    assert assembler.metadata_size == len(RAW)
    metadata_shell.request_metadata(session, first, holder=True)  # type: ignore[arg-type]
    assert first.sent == [MetadataRequest(0), MetadataRequest(1)]
    whole = session.metadata.received(first, MetadataData(1, len(RAW), RAW[16384:]))
    assert whole == RAW
