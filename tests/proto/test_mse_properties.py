"""Hypothesis properties of the MSE/PE core: any chunking, every split point, garbage.

The cores are deterministic given their ``randbytes``, so a recorded exchange can be
replayed into a fresh core with the same seed, split wherever we like.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import LocalProtocolError
from hubswarm.proto.mse import (
    CryptoMethod,
    Established,
    MseError,
    MseInitiator,
    MseResponder,
    MseSyncError,
    PlaintextHandshake,
    Policy,
    SendData,
    State,
)
from tests.proto.test_mse import (
    BT_HANDSHAKE,
    INFO_HASH,
    SERVED,
    SPEC_REQ1_WINDOW,
    SPEC_VC_WINDOW,
    make_pair,
    pump,
    rng,
)

# The largest buffer a peer can make us hold before the IA: one sync window.
MAX_BUFFER_BEFORE_IA = max(SPEC_REQ1_WINDOW, SPEC_VC_WINDOW, 96)

MSE_PAIRINGS = [
    (Policy.ENABLED, Policy.ENABLED, False),
    (Policy.ENABLED, Policy.ENABLED, True),
    (Policy.ENABLED, Policy.REQUIRED, False),
    (Policy.REQUIRED, Policy.ENABLED, False),
    (Policy.REQUIRED, Policy.REQUIRED, True),
]
seeds = st.integers(0, 2**32 - 1)


def splitter(cuts: list[int]) -> Callable[[bytes], Iterable[bytes]]:
    """Cut data into pieces whose sizes cycle through ``cuts``."""

    def split(data: bytes) -> Iterable[bytes]:
        pos, i = 0, 0
        while pos < len(data):
            size = cuts[i % len(cuts)]
            yield data[pos : pos + size]
            pos, i = pos + size, i + 1

    return split


@given(
    pairing=st.sampled_from(MSE_PAIRINGS),
    seed=seeds,
    ia=st.binary(max_size=300) | st.just(BT_HANDSHAKE),
    payload_a=st.binary(max_size=300),
    payload_b=st.binary(max_size=300),
    cuts=st.lists(st.integers(1, 700), min_size=1, max_size=30),
)
def test_any_chunking_reaches_established(
    pairing: tuple[Policy, Policy, bool],
    seed: int,
    ia: bytes,
    payload_a: bytes,
    payload_b: bytes,
    cuts: list[int],
) -> None:
    pi, pr, prefer_rc4 = pairing
    a, b = make_pair(pi, pr, ia=ia, seed=seed, prefer_rc4=prefer_rc4)
    end_a, end_b = pump(a, b, payload_a=payload_a, payload_b=payload_b, split=splitter(cuts))
    assert end_a.established is not None
    assert end_b.established is not None
    assert end_a.established.method is end_b.established.method
    expected_rc4 = pi is Policy.REQUIRED or pr is Policy.REQUIRED or prefer_rc4
    assert (end_a.established.method is CryptoMethod.RC4) == expected_rc4
    assert end_b.established.initial_payload == ia
    assert bytes(end_a.app) == payload_b
    assert bytes(end_b.app) == payload_a


# --- replay at every split point ----------------------------------------------------------------


@dataclass
class Seen:
    sent: bytearray = field(default_factory=bytearray)
    established: Established | None = None
    app: bytearray = field(default_factory=bytearray)


def feed(core: MseInitiator | MseResponder, parts: Iterable[bytes]) -> Seen:
    seen = Seen()
    for part in parts:
        if seen.established is not None:
            seen.app += core.cipher.decrypt(part)
            continue
        for event in core.receive_data(part):
            if isinstance(event, SendData):
                seen.sent += event.data
            elif isinstance(event, Established):
                # Where the handshake ends in a read decides what is leftover and what
                # comes later; the stream (``app``) is the same either way.
                seen.established = replace(event, leftover=b"")
                seen.app += event.leftover
    return seen


@dataclass(frozen=True)
class Recording:
    pairing: tuple[Policy, Policy, bool]
    seed: int
    to_b: bytes  # everything A sent: Ya, PadA, step 3 (with IA), then its payload
    to_a: bytes  # everything B sent: Yb, PadB, step 4, then its payload
    a_seen: Seen
    b_seen: Seen

    def initiator(self) -> MseInitiator:
        a, _ = make_pair(self.pairing[0], self.pairing[1], seed=self.seed)
        return a

    def responder(self) -> MseResponder:
        _, b = make_pair(
            self.pairing[0], self.pairing[1], seed=self.seed, prefer_rc4=self.pairing[2]
        )
        return b


def record(pairing: tuple[Policy, Policy, bool], seed: int) -> Recording:
    pi, pr, prefer_rc4 = pairing
    a, b = make_pair(pi, pr, seed=seed, prefer_rc4=prefer_rc4)
    step1 = a.initiate()
    (step2,) = b.receive_data(step1)
    assert isinstance(step2, SendData)
    (step3,) = a.receive_data(step2.data)
    assert isinstance(step3, SendData)
    step4, b_done = b.receive_data(step3.data)
    assert isinstance(step4, SendData)
    assert isinstance(b_done, Established)
    to_a = step2.data + step4.data + b.cipher.encrypt(b"payload from B")
    (a_done,) = a.receive_data(to_a[len(step2.data) :])
    assert isinstance(a_done, Established)
    to_b = step1 + step3.data + a.cipher.encrypt(b"payload from A")
    return Recording(
        pairing,
        seed,
        to_b,
        to_a,
        Seen(
            bytearray(step1 + step3.data), replace(a_done, leftover=b""), bytearray(a_done.leftover)
        ),
        Seen(
            bytearray(step2.data + step4.data),
            replace(b_done, leftover=b""),
            bytearray(b"payload from A"),
        ),
    )


def rec_id(rec: Recording) -> str:
    pi, pr, prefer_rc4 = rec.pairing
    return f"{pi.value}-{pr.value}-{'rc4' if prefer_rc4 else 'plain'}-{rec.seed}"


RECORDINGS = [record(p, 1) for p in MSE_PAIRINGS[:3]] + [record(MSE_PAIRINGS[4], 2)]


@pytest.mark.parametrize("rec", RECORDINGS, ids=rec_id)
def test_responder_at_every_split_point(rec: Recording) -> None:
    data = rec.to_b
    for k in range(len(data) + 1):
        seen = feed(rec.responder(), (data[:k], data[k:]))
        assert seen == rec.b_seen, k


@pytest.mark.parametrize("rec", RECORDINGS, ids=rec_id)
def test_initiator_at_every_split_point(rec: Recording) -> None:
    data = rec.to_a
    for k in range(len(data) + 1):
        a = rec.initiator()
        step1 = a.initiate()
        seen = feed(a, (data[:k], data[k:]))
        seen.sent[:0] = step1
        assert seen.sent == rec.a_seen.sent, k
        assert seen.established == rec.a_seen.established, k
        assert bytes(seen.app) == b"payload from B", k


@pytest.mark.parametrize("rec", RECORDINGS[:2], ids=rec_id)
def test_byte_at_a_time(rec: Recording) -> None:
    b = rec.responder()
    seen_b = feed(b, (rec.to_b[i : i + 1] for i in range(len(rec.to_b))))
    assert seen_b == rec.b_seen
    a = rec.initiator()
    a.initiate()
    seen_a = feed(a, (rec.to_a[i : i + 1] for i in range(len(rec.to_a))))
    assert seen_a.established == rec.a_seen.established
    assert bytes(seen_a.app) == b"payload from B"


# --- garbage and mutations ----------------------------------------------------------------------


def assert_garbage_handled(core: MseInitiator | MseResponder, parts: Iterable[bytes]) -> None:
    """Feed until the handshake ends; only MseError may escape, and it leaves ERROR."""
    try:
        for part in parts:
            if core.state in (State.ESTABLISHED, State.PLAINTEXT):
                return
            core.receive_data(part)
            if core.state not in (State.READ_IA, State.ESTABLISHED, State.PLAINTEXT):
                assert core.buffered <= MAX_BUFFER_BEFORE_IA
    except MseError:
        assert core.state is State.ERROR
        assert core.buffered == 0
        with pytest.raises(MseError):
            core.receive_data(b"more")


@given(
    data=st.binary(max_size=1500),
    cuts=st.lists(st.integers(1, 600), min_size=1, max_size=10),
    policy=st.sampled_from(list(Policy)),
    seed=seeds,
)
def test_garbage_into_a_responder(data: bytes, cuts: list[int], policy: Policy, seed: int) -> None:
    assert_garbage_handled(MseResponder(SERVED, policy, rng(seed)), splitter(cuts)(data))


@given(
    data=st.binary(max_size=1500),
    cuts=st.lists(st.integers(1, 600), min_size=1, max_size=10),
    seed=seeds,
)
def test_garbage_into_an_initiator(data: bytes, cuts: list[int], seed: int) -> None:
    a = MseInitiator(INFO_HASH, Policy.ENABLED, rng(seed), initial_payload=BT_HANDSHAKE)
    a.initiate()
    assert_garbage_handled(a, splitter(cuts)(data))


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """Flip, drop or insert a few bytes, or truncate."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, max(0, len(out) - 1)))
        match draw(st.sampled_from(["flip", "drop", "insert", "truncate"])):
            case "flip" if out:
                out[pos] ^= draw(st.integers(1, 255))
            case "drop" if out:
                del out[pos]
            case "insert":
                out[pos:pos] = draw(st.binary(min_size=1, max_size=40))
            case _:
                del out[pos:]
    return bytes(out)


@given(data=st.data(), which=st.integers(0, len(RECORDINGS) - 1))
def test_mutated_streams_never_crash(data: st.DataObject, which: int) -> None:
    rec = RECORDINGS[which]
    cuts = data.draw(st.lists(st.integers(1, 300), min_size=1, max_size=5))
    assert_garbage_handled(rec.responder(), splitter(cuts)(data.draw(mutated(rec.to_b))))
    a = rec.initiator()
    a.initiate()
    assert_garbage_handled(a, splitter(cuts)(data.draw(mutated(rec.to_a))))


def test_a_mebibyte_of_garbage_is_refused_within_the_sync_window() -> None:
    garbage = random.Random(1).randbytes(1 << 20)
    assert not garbage.startswith(b"\x13")
    # The responder answers Ya, then gives up at the 532nd byte after it, holding at most that.
    b = MseResponder(SERVED, Policy.ENABLED, rng(2))
    (send,) = b.receive_data(garbage[: 96 + SPEC_REQ1_WINDOW - 1])
    assert isinstance(send, SendData)
    assert b.buffered == SPEC_REQ1_WINDOW - 1
    with pytest.raises(MseSyncError):
        b.receive_data(garbage[96 + SPEC_REQ1_WINDOW - 1 :])
    assert b.buffered == 0
    # In one call: the same error, and nothing of the rest was kept.
    b = MseResponder(SERVED, Policy.ENABLED, rng(2))
    with pytest.raises(MseSyncError):
        b.receive_data(garbage)
    assert b.buffered == 0
    # The initiator after Yb: the window is PadB + 8.
    a = MseInitiator(INFO_HASH, Policy.REQUIRED, rng(3))
    a.initiate()
    with pytest.raises(MseSyncError):
        a.receive_data(garbage)
    assert a.state is State.ERROR


def test_plaintext_after_sniff_is_handed_over_whole() -> None:
    b = MseResponder(SERVED, Policy.ENABLED, rng(2))
    big = BT_HANDSHAKE + bytes(1 << 20)
    (event,) = b.receive_data(big)
    assert event == PlaintextHandshake(big)
    assert b.buffered == 0
    with pytest.raises(LocalProtocolError):
        b.receive_data(b"x")
