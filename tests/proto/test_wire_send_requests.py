"""PeerConnection.send_requests: the batched request encoder equals send(Request) each."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import LocalProtocolError
from hubswarm.proto.wire import PeerConnection, Role
from hubswarm.proto.wire_events import Request
from tests.proto.test_wire import INFO_HASH, PEER_A, make_pair

requests = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(1, 16 * 1024)),
    max_size=20,
)


@given(requests)
def test_send_requests_equals_individual_sends(reqs: list[tuple[int, int, int]]) -> None:
    a, b = make_pair()
    batched = a.send_requests(reqs)
    a2, _ = make_pair()
    assert batched == b"".join(a2.send(Request(*r)) for r in reqs)
    assert b.receive_data(batched) == [Request(*r) for r in reqs]


@pytest.mark.parametrize(
    "bad", [(0, 0, 0), (0, 0, 16 * 1024 + 1), (-1, 0, 1), (0, 2**32, 1), (2**32, 0, 1)]
)
def test_send_requests_refuses_bad_requests(bad: tuple[int, int, int]) -> None:
    a, _ = make_pair()
    with pytest.raises(LocalProtocolError):
        a.send_requests([(0, 0, 16), bad])


def test_send_requests_checks_piece_count_and_handshake() -> None:
    a, _ = make_pair()
    a.set_num_pieces(4)
    with pytest.raises(LocalProtocolError):
        a.send_requests([(4, 0, 16)])
    fresh = PeerConnection(Role.INITIATOR, info_hash=INFO_HASH, peer_id=PEER_A)
    with pytest.raises(LocalProtocolError):
        fresh.send_requests([(0, 0, 16)])
