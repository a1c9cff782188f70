"""MSE/PE handshake core: back-to-back runs, policy pairings, known answers, bad input.

The known-answer tests script the other side by hand from hashlib, ``pow`` and an RC4
written here (checked against published vectors), so they do not share code with the core.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest

from hubswarm.errors import LocalProtocolError, RemoteProtocolError
from hubswarm.proto.mse import (
    MSE_MAX_IA_LENGTH,
    MSE_MAX_PAD,
    CryptoMethod,
    Established,
    MseCryptoError,
    MseError,
    MseInitiator,
    MseKeyError,
    MseLengthError,
    MsePolicyError,
    MseResponder,
    MseSyncError,
    MseUnknownInfoHashError,
    P,
    PlaintextHandshake,
    Policy,
    SendData,
    State,
    info_hash_lookup,
    looks_like_plaintext_handshake,
)

INFO_HASH = bytes(range(20))
OTHER_HASH = bytes(range(100, 120))
UNSERVED_HASH = b"\xee" * 20
BT_HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + INFO_HASH + b"-HS0001-" + bytes(12)
SERVED = (INFO_HASH, OTHER_HASH)
# The spec's windows, written out so that a change of the module's constants fails here:
# PadA/PadB are at most 512 bytes, then the 20-byte req1 hash or the 8-byte ENCRYPT(VC).
SPEC_REQ1_WINDOW = 512 + 20
SPEC_VC_WINDOW = 512 + 8


def rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


# --- an independent RC4 and the spec's formulas -----------------------------------------------


class Rc4Oracle:
    """RC4 straight from its description, the first ``discard`` keystream bytes dropped."""

    def __init__(self, key: bytes, discard: int = 1024) -> None:
        s = list(range(256))
        j = 0
        for i in range(256):
            j = (j + s[i] + key[i % len(key)]) % 256
            s[i], s[j] = s[j], s[i]
        self._s, self._i, self._j = s, 0, 0
        self.crypt(bytes(discard))

    def crypt(self, data: bytes) -> bytes:
        s, i, j = self._s, self._i, self._j
        out = bytearray()
        for byte in data:
            i = (i + 1) % 256
            j = (j + s[i]) % 256
            s[i], s[j] = s[j], s[i]
            out.append(byte ^ s[(s[i] + s[j]) % 256])
        self._i, self._j = i, j
        return bytes(out)


def sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def public(x: int) -> bytes:
    return pow(2, x, P).to_bytes(96, "big")


def secret(peer_public: bytes, x: int) -> bytes:
    return pow(int.from_bytes(peer_public, "big"), x, P).to_bytes(96, "big")


X_SCRIPT = int.from_bytes(hashlib.sha1(b"scripted peer").digest(), "big")  # 160 bits


@pytest.mark.parametrize(
    ("key", "plain", "cipher_hex"),
    [
        (b"Key", b"Plaintext", "bbf316e8d940af0ad3"),
        (b"Wiki", b"pedia", "1021bf0420"),
        (b"Secret", b"Attack at dawn", "45a01f645fc35b383552544b9bf5"),
    ],
)
def test_rc4_oracle_matches_published_vectors(key: bytes, plain: bytes, cipher_hex: str) -> None:
    assert Rc4Oracle(key, discard=0).crypt(plain).hex() == cipher_hex


def _pi_times_2_to(bits: int) -> int:
    """floor(pi * 2**bits) by Machin's formula in integers, with guard bits."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inv(x: int) -> int:
        total, term, k, x2 = 0, one // x, 0, x * x
        while term:
            total += term // (2 * k + 1) if k % 2 == 0 else -(term // (2 * k + 1))
            term //= x2
            k += 1
        return total

    return (16 * arctan_inv(5) - 4 * arctan_inv(239)) >> guard


def _is_probable_prime(n: int) -> bool:
    """Miller-Rabin with fixed bases (enough to catch a mistyped digit)."""
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


MSE_P_HEX = (  # the spec page's P, as in libtorrent's pe_crypto.cpp
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A"
    "08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A6"
    "3A36210000000000090563"
)


def test_prime_is_the_spec_literal_next_to_oakley_group_1() -> None:
    assert int(MSE_P_HEX, 16) == P
    # RFC 2409 section 6.1: p = 2^768 - 2^704 - 1 + 2^64 * ([2^638 pi] + 149686). MSE's P
    # shares its top 672 bits but is that prime + 591204 (0x90564): a different safe prime.
    oakley_1 = 2**768 - 2**704 - 1 + 2**64 * (_pi_times_2_to(638) + 149686)
    assert P - oakley_1 == 0x90564
    assert oakley_1 >> 96 == P >> 96
    assert P.bit_length() == 768
    assert _is_probable_prime(P)
    assert _is_probable_prime((P - 1) // 2)


# --- joining two cores back to back ---------------------------------------------------------


@dataclass
class End:
    """One side of a back-to-back run: what it saw, and the stream it received afterwards."""

    established: Established | None = None
    plaintext: PlaintextHandshake | None = None
    app: bytearray = field(default_factory=bytearray)


def whole(data: bytes) -> list[bytes]:
    return [data]


def pump(
    a: MseInitiator,
    b: MseResponder,
    *,
    payload_a: bytes = b"",
    payload_b: bytes = b"",
    split: Callable[[bytes], Iterable[bytes]] = whole,
) -> tuple[End, End]:
    """Move bytes between the cores until neither has anything to send; each side sends its
    payload (through its cipher) as soon as it is established."""
    ends = {id(a): End(), id(b): End()}
    queues: dict[int, bytearray] = {id(a): bytearray(), id(b): bytearray(a.initiate())}
    peers = {id(a): b, id(b): a}
    payloads = {id(a): payload_a, id(b): payload_b}
    for _ in range(10):
        for core in (b, a):
            data, queues[id(core)] = bytes(queues[id(core)]), bytearray()
            end = ends[id(core)]
            for piece in split(data):
                if end.established is not None:
                    end.app += core.cipher.decrypt(piece)
                    continue
                for event in core.receive_data(piece):
                    match event:
                        case SendData(out):
                            queues[id(peers[id(core)])] += out
                        case Established():
                            end.established = event
                            end.app += event.leftover
                            queues[id(peers[id(core)])] += core.cipher.encrypt(payloads[id(core)])
                        case PlaintextHandshake():
                            end.plaintext = event
        if not any(queues.values()):
            break
    return ends[id(a)], ends[id(b)]


def make_pair(
    initiator_policy: Policy = Policy.ENABLED,
    responder_policy: Policy = Policy.ENABLED,
    *,
    ia: bytes = BT_HANDSHAKE,
    info_hash: bytes = INFO_HASH,
    seed: int = 0,
    prefer_rc4: bool = False,
    max_pad: int = MSE_MAX_PAD,
) -> tuple[MseInitiator, MseResponder]:
    a = MseInitiator(info_hash, initiator_policy, rng(seed), initial_payload=ia, max_pad=max_pad)
    b = MseResponder(
        SERVED, responder_policy, rng(seed + 1), prefer_rc4=prefer_rc4, max_pad=max_pad
    )
    return a, b


# --- back to back -----------------------------------------------------------------------------

# (initiator, responder, prefer_rc4) -> the stream method, or None when the responder refuses.
MATRIX = [
    (Policy.ENABLED, Policy.ENABLED, False, CryptoMethod.PLAINTEXT),
    (Policy.ENABLED, Policy.ENABLED, True, CryptoMethod.RC4),
    (Policy.ENABLED, Policy.REQUIRED, False, CryptoMethod.RC4),
    (Policy.REQUIRED, Policy.ENABLED, False, CryptoMethod.RC4),
    (Policy.REQUIRED, Policy.REQUIRED, False, CryptoMethod.RC4),
    (Policy.REQUIRED, Policy.REQUIRED, True, CryptoMethod.RC4),
]


@pytest.mark.parametrize(("pi", "pr", "prefer_rc4", "method"), MATRIX)
@pytest.mark.parametrize("ia", [BT_HANDSHAKE, b"", b"x"])
def test_back_to_back_reaches_established(
    pi: Policy, pr: Policy, prefer_rc4: bool, method: CryptoMethod, ia: bytes
) -> None:
    a, b = make_pair(pi, pr, ia=ia, prefer_rc4=prefer_rc4)
    end_a, end_b = pump(a, b, payload_a=b"from A" * 100, payload_b=b"from B" * 100)
    assert end_a.established is not None
    assert end_b.established is not None
    assert end_a.established.method is end_b.established.method is method
    assert end_a.established.info_hash == end_b.established.info_hash == INFO_HASH
    assert end_b.established.initial_payload == ia
    assert end_a.established.initial_payload == b""
    assert bytes(end_a.app) == b"from B" * 100
    assert bytes(end_b.app) == b"from A" * 100
    assert a.state is b.state is State.ESTABLISHED
    assert a.cipher.method is b.cipher.method is method


def test_responder_finds_the_torrent_among_several() -> None:
    a, b = make_pair(info_hash=OTHER_HASH)
    _, end_b = pump(a, b)
    assert end_b.established is not None
    assert end_b.established.info_hash == OTHER_HASH
    assert b.info_hash == OTHER_HASH


def test_rc4_stream_is_not_plaintext_on_the_wire() -> None:
    a, b = make_pair(Policy.REQUIRED, Policy.REQUIRED)
    pump(a, b)
    assert a.cipher.encrypt(b"\x00" * 64) != b"\x00" * 64
    a2, b2 = make_pair(Policy.ENABLED, Policy.ENABLED)
    pump(a2, b2)
    assert a2.cipher.encrypt(b"\x00" * 64) == b"\x00" * 64


@pytest.mark.parametrize("pr", list(Policy))
def test_plaintext_dial_meets_each_responder_policy(pr: Policy) -> None:
    # A DISABLED initiator does not speak MSE at all: it sends the BitTorrent handshake.
    with pytest.raises(LocalProtocolError):
        MseInitiator(INFO_HASH, Policy.DISABLED, rng(0))
    b = MseResponder(SERVED, pr, rng(1))
    if pr is Policy.REQUIRED:
        with pytest.raises(MsePolicyError):
            b.receive_data(BT_HANDSHAKE + b"more")
        assert b.state is State.ERROR
        return
    (event,) = b.receive_data(BT_HANDSHAKE + b"more")
    assert event == PlaintextHandshake(BT_HANDSHAKE + b"more")
    assert b.state is State.PLAINTEXT
    with pytest.raises(LocalProtocolError):
        b.receive_data(b"later")


@pytest.mark.parametrize("pi", [Policy.ENABLED, Policy.REQUIRED])
def test_mse_dial_to_a_disabled_responder_fails_cleanly(pi: Policy) -> None:
    a, b = make_pair(pi, Policy.DISABLED)
    with pytest.raises(MsePolicyError):
        b.receive_data(a.initiate())
    assert b.state is State.ERROR
    with pytest.raises(MseError):
        b.receive_data(b"again")


def test_policy_properties() -> None:
    assert Policy.DISABLED.methods == frozenset()
    assert Policy.ENABLED.methods == {CryptoMethod.PLAINTEXT, CryptoMethod.RC4}
    assert Policy.REQUIRED.methods == {CryptoMethod.RC4}
    assert [p.dial_mse_first for p in Policy] == [False, False, True]
    assert [p.accepts_plaintext_handshake for p in Policy] == [True, True, False]
    assert Policy("required") is Policy.REQUIRED


# --- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", None),
        (b"\x13", None),
        (b"\x13BitTorrent protoco", None),
        (b"\x13BitTorrent protocol", True),
        (BT_HANDSHAKE, True),
        (b"\x13BitTorrent Protocol", False),
        (b"\x14", False),
        (b"\x13Bit torrent", False),
        (bytes(96), False),
    ],
)
def test_looks_like_plaintext_handshake(data: bytes, expected: bool | None) -> None:
    assert looks_like_plaintext_handshake(data) is expected
    assert looks_like_plaintext_handshake(memoryview(data)) is expected


def test_sniff_waits_byte_by_byte_for_the_protocol_string() -> None:
    b = MseResponder(SERVED, Policy.ENABLED, rng(1))
    for byte in BT_HANDSHAKE[:19]:
        assert b.receive_data(bytes((byte,))) == []
        assert b.state is State.SNIFF
    assert b.receive_data(BT_HANDSHAKE[19:20]) == [PlaintextHandshake(BT_HANDSHAKE[:20])]


def test_sniff_decides_mse_on_the_first_differing_byte() -> None:
    b = MseResponder(SERVED, Policy.ENABLED, rng(1))
    assert b.receive_data(b"\x13Bit") == []
    assert b.receive_data(b"X") == []
    assert b.state is State.AWAIT_Y
    assert b.buffered == 5


# --- known answers: the other side scripted from the spec's formulas --------------------------


def test_initiator_known_answer() -> None:
    seed = 7
    a = MseInitiator(INFO_HASH, Policy.ENABLED, rng(seed), initial_payload=BT_HANDSHAKE)
    step1 = a.initiate()
    # The private key is the first 20 bytes drawn; Ya = 2^Xa mod P, 96 bytes big endian.
    xa = int.from_bytes(random.Random(seed).randbytes(20), "big")
    assert step1[:96] == public(xa) == a.public_key
    assert len(step1) - 96 <= 512

    yb, pad_b = public(X_SCRIPT), b"\x5a" * 300
    (send,) = a.receive_data(yb + pad_b)
    assert isinstance(send, SendData)
    step3 = send.data
    s = secret(step1[:96], X_SCRIPT)
    assert s == secret(yb, xa)
    assert step3[:20] == sha1(b"req1", s)
    assert step3[20:40] == xor(sha1(b"req2", INFO_HASH), sha1(b"req3", s))
    enc_a = Rc4Oracle(sha1(b"keyA", s, INFO_HASH))
    clear = enc_a.crypt(step3[40:])
    assert clear[:8] == bytes(8)
    provide, pad_c_len = struct.unpack(">IH", clear[8:14])
    assert provide == 0x03
    assert pad_c_len <= 512
    rest = clear[14 + pad_c_len :]
    assert struct.unpack(">H", rest[:2]) == (len(BT_HANDSHAKE),)
    assert rest[2:] == BT_HANDSHAKE

    enc_b = Rc4Oracle(sha1(b"keyB", s, INFO_HASH))
    step4 = enc_b.crypt(bytes(8) + struct.pack(">IH", 0x02, 5) + b"PADDD")
    (established,) = a.receive_data(step4 + enc_b.crypt(b"\x13BitTorrent protocol"))
    assert established == Established(INFO_HASH, CryptoMethod.RC4, b"", b"\x13BitTorrent protocol")
    # The streams go on where the handshake left them.
    assert a.cipher.encrypt(b"payload A") == enc_a.crypt(b"payload A")
    assert a.cipher.decrypt(enc_b.crypt(b"payload B")) == b"payload B"


@dataclass
class ScriptedA:
    """The initiator's side written from the spec, to feed a responder exact bytes."""

    responder: MseResponder
    secret: bytes = b""
    enc_a: Rc4Oracle | None = None
    dec_b: Rc4Oracle | None = None

    def step1(self, pad_a: bytes = b"") -> bytes:
        (send,) = self.responder.receive_data(public(X_SCRIPT) + pad_a)
        assert isinstance(send, SendData)
        assert 96 <= len(send.data) <= 96 + 512
        self.secret = secret(send.data[:96], X_SCRIPT)
        return send.data

    def step3(
        self,
        *,
        info_hash: bytes = INFO_HASH,
        provide: int = 0x03,
        pad_c: bytes = b"",
        pad_c_len: int | None = None,
        ia: bytes = BT_HANDSHAKE,
        ia_len: int | None = None,
        vc: bytes = bytes(8),
    ) -> bytes:
        s = self.secret
        self.enc_a = Rc4Oracle(sha1(b"keyA", s, info_hash))
        self.dec_b = Rc4Oracle(sha1(b"keyB", s, info_hash))
        clear = (
            vc
            + struct.pack(">IH", provide, len(pad_c) if pad_c_len is None else pad_c_len)
            + pad_c
            + struct.pack(">H", len(ia) if ia_len is None else ia_len)
            + ia
        )
        head = sha1(b"req1", s) + xor(sha1(b"req2", info_hash), sha1(b"req3", s))
        return head + self.enc_a.crypt(clear)


def scripted(
    policy: Policy = Policy.ENABLED,
    *,
    prefer_rc4: bool = False,
    max_ia_length: int = MSE_MAX_IA_LENGTH,
) -> ScriptedA:
    return ScriptedA(
        MseResponder(SERVED, policy, rng(11), prefer_rc4=prefer_rc4, max_ia_length=max_ia_length)
    )


@pytest.mark.parametrize(
    ("policy", "prefer_rc4", "provide", "method"),
    [
        (Policy.ENABLED, False, 0x03, CryptoMethod.PLAINTEXT),
        (Policy.ENABLED, True, 0x03, CryptoMethod.RC4),
        (Policy.ENABLED, False, 0x01, CryptoMethod.PLAINTEXT),
        (Policy.ENABLED, True, 0x01, CryptoMethod.PLAINTEXT),
        (Policy.ENABLED, False, 0x02, CryptoMethod.RC4),
        (Policy.REQUIRED, False, 0x03, CryptoMethod.RC4),
        # Unknown bits are reserved for future methods and ignored (libtorrent does the same).
        (Policy.REQUIRED, False, 0xFFFFFFFF, CryptoMethod.RC4),
        (Policy.ENABLED, False, 0x06, CryptoMethod.RC4),
    ],
)
def test_responder_known_answer(
    policy: Policy, prefer_rc4: bool, provide: int, method: CryptoMethod
) -> None:
    peer = scripted(policy, prefer_rc4=prefer_rc4)
    peer.step1(pad_a=b"\xa5" * 77)
    step3 = peer.step3(provide=provide, pad_c=b"C" * 9)
    assert peer.enc_a is not None
    assert peer.dec_b is not None
    pipelined = peer.enc_a.crypt(b"after IA") if method is CryptoMethod.RC4 else b"after IA"
    send, established = peer.responder.receive_data(step3 + pipelined)
    assert established == Established(INFO_HASH, method, BT_HANDSHAKE, b"after IA")
    assert isinstance(send, SendData)
    clear = peer.dec_b.crypt(send.data)
    assert clear[:8] == bytes(8)
    select, pad_d_len = struct.unpack(">IH", clear[8:14])
    assert select == method.value
    assert len(clear) == 14 + pad_d_len
    assert pad_d_len <= 512
    b = peer.responder
    if method is CryptoMethod.RC4:
        assert b.cipher.encrypt(b"B says") == peer.dec_b.crypt(b"B says")
        assert b.cipher.decrypt(peer.enc_a.crypt(b"A says")) == b"A says"
    else:
        assert b.cipher.encrypt(b"B says") == b"B says"


# --- bad input --------------------------------------------------------------------------------


def test_unknown_info_hash_is_refused() -> None:
    a, b = make_pair(info_hash=UNSERVED_HASH)
    with pytest.raises(MseUnknownInfoHashError):
        pump(a, b)
    assert b.state is State.ERROR
    assert b.buffered == 0


@pytest.mark.parametrize(
    ("policy", "provide"),
    [(Policy.ENABLED, 0x00), (Policy.ENABLED, 0x04), (Policy.REQUIRED, 0x01)],
)
def test_crypto_provide_without_an_acceptable_method(policy: Policy, provide: int) -> None:
    peer = scripted(policy)
    peer.step1()
    with pytest.raises(MsePolicyError):
        peer.responder.receive_data(peer.step3(provide=provide))
    assert peer.responder.state is State.ERROR


def test_wrong_verification_constant() -> None:
    peer = scripted()
    peer.step1()
    with pytest.raises(MseCryptoError):
        peer.responder.receive_data(peer.step3(vc=b"\x00" * 7 + b"\x01"))


@pytest.mark.parametrize("pad_c_len", [513, 0x8000, 0xFFFF])
def test_huge_pad_c_length_is_refused_before_buffering(pad_c_len: int) -> None:
    peer = scripted()
    peer.step1()
    with pytest.raises(MseLengthError):
        peer.responder.receive_data(peer.step3(pad_c_len=pad_c_len, ia=b""))
    assert peer.responder.buffered == 0


def test_pad_c_of_512_is_accepted() -> None:
    peer = scripted()
    peer.step1()
    _, established = peer.responder.receive_data(peer.step3(pad_c=bytes(512)))
    assert isinstance(established, Established)


def test_ia_length_over_the_configured_cap() -> None:
    peer = scripted(max_ia_length=68)
    peer.step1()
    with pytest.raises(MseLengthError):
        peer.responder.receive_data(peer.step3(ia=BT_HANDSHAKE + b"!"))
    peer = scripted(max_ia_length=68)
    peer.step1()
    assert len(peer.responder.receive_data(peer.step3(ia=BT_HANDSHAKE))) == 2


def test_ia_of_the_field_maximum_is_carried() -> None:
    peer = scripted()
    peer.step1()
    ia = random.Random(9).randbytes(0xFFFF)
    step3 = peer.step3(ia=ia)
    events = []
    for i in range(0, len(step3), 4096):
        events += peer.responder.receive_data(step3[i : i + 4096])
        assert peer.responder.buffered <= 0xFFFF
    established = [e for e in events if isinstance(e, Established)]
    assert [e.initial_payload for e in established] == [ia]


@pytest.mark.parametrize("y", [0, 1, P - 1, P, 2**768 - 1])
def test_degenerate_public_keys_are_refused(y: int) -> None:
    b = MseResponder(SERVED, Policy.ENABLED, rng(1))
    with pytest.raises(MseKeyError):
        b.receive_data(y.to_bytes(96, "big"))
    assert b.state is State.ERROR
    a = MseInitiator(INFO_HASH, Policy.ENABLED, rng(2))
    a.initiate()
    with pytest.raises(MseKeyError):
        a.receive_data(y.to_bytes(96, "big"))
    assert a.state is State.ERROR


def test_req1_sync_window_is_exact() -> None:
    # PadA of 512 bytes: the req1 hash starts at the last offset the spec allows.
    peer = scripted()
    peer.step1(pad_a=bytes(512))
    assert len(peer.responder.receive_data(peer.step3())) == 2
    # 513 bytes before it: the window (512 + 20) closes on the 532nd byte after Ya.
    b = MseResponder(SERVED, Policy.ENABLED, rng(1))
    b.receive_data(public(X_SCRIPT))
    garbage = random.Random(3).randbytes(SPEC_REQ1_WINDOW)
    assert b.receive_data(garbage[:-1]) == []
    assert b.buffered == SPEC_REQ1_WINDOW - 1
    with pytest.raises(MseSyncError):
        b.receive_data(garbage[-1:])
    assert b.state is State.ERROR
    assert b.buffered == 0


def scripted_b(
    policy: Policy = Policy.ENABLED, seed: int = 5
) -> tuple[MseInitiator, bytes, Rc4Oracle, Rc4Oracle]:
    """An initiator that has sent step 3 to a scripted B; returns B's ciphers too."""
    a = MseInitiator(INFO_HASH, policy, rng(seed), initial_payload=BT_HANDSHAKE)
    ya = a.initiate()[:96]
    (send,) = a.receive_data(public(X_SCRIPT))
    assert isinstance(send, SendData)
    s = secret(ya, X_SCRIPT)
    return (
        a,
        send.data,
        Rc4Oracle(sha1(b"keyA", s, INFO_HASH)),
        Rc4Oracle(sha1(b"keyB", s, INFO_HASH)),
    )


def test_vc_sync_window_is_exact() -> None:
    a, _, _, enc_b = scripted_b()
    step4 = enc_b.crypt(bytes(8) + struct.pack(">IH", 1, 0))
    (established,) = a.receive_data(bytes(512) + step4)
    assert isinstance(established, Established)
    a, _, _, _ = scripted_b()
    garbage = random.Random(4).randbytes(SPEC_VC_WINDOW)
    assert a.receive_data(garbage[:-1]) == []
    assert a.buffered == SPEC_VC_WINDOW - 1
    with pytest.raises(MseSyncError):
        a.receive_data(garbage[-1:])
    assert a.state is State.ERROR


@pytest.mark.parametrize(
    ("policy", "select"),
    [
        (Policy.REQUIRED, 0x01),  # plaintext, which we did not offer
        (Policy.ENABLED, 0x03),  # both: B must choose one
        (Policy.ENABLED, 0x00),
        (Policy.ENABLED, 0x04),
    ],
)
def test_crypto_select_we_did_not_offer(policy: Policy, select: int) -> None:
    a, _, _, enc_b = scripted_b(policy)
    with pytest.raises(MsePolicyError):
        a.receive_data(enc_b.crypt(bytes(8) + struct.pack(">IH", select, 0)))
    assert a.state is State.ERROR


@pytest.mark.parametrize("pad_d_len", [513, 0xFFFF])
def test_huge_pad_d_length_is_refused(pad_d_len: int) -> None:
    a, _, _, enc_b = scripted_b()
    with pytest.raises(MseLengthError):
        a.receive_data(enc_b.crypt(bytes(8) + struct.pack(">IH", 2, pad_d_len)))


def test_errors_are_remote_protocol_errors() -> None:
    for cls in (
        MseSyncError,
        MseKeyError,
        MseUnknownInfoHashError,
        MseCryptoError,
        MseLengthError,
        MsePolicyError,
    ):
        assert issubclass(cls, MseError)
        assert issubclass(cls, RemoteProtocolError)


# --- our own misuse ---------------------------------------------------------------------------


def test_initiator_misuse() -> None:
    a = MseInitiator(INFO_HASH, Policy.ENABLED, rng(0))
    with pytest.raises(LocalProtocolError):
        a.receive_data(b"too early")
    with pytest.raises(LocalProtocolError):
        _ = a.cipher
    a.initiate()
    with pytest.raises(LocalProtocolError):
        a.initiate()
    with pytest.raises(LocalProtocolError):
        MseInitiator(INFO_HASH[:19], Policy.ENABLED, rng(0))
    with pytest.raises(LocalProtocolError):
        MseInitiator(INFO_HASH, Policy.ENABLED, rng(0), initial_payload=bytes(0x10000))
    with pytest.raises(LocalProtocolError):
        MseInitiator(INFO_HASH, Policy.ENABLED, rng(0), max_pad=513)
    with pytest.raises(LocalProtocolError):
        MseInitiator(INFO_HASH, Policy.ENABLED, lambda n: bytes(n))
    with pytest.raises(LocalProtocolError):
        MseInitiator(INFO_HASH, Policy.ENABLED, lambda n: b"short")
    with pytest.raises(LocalProtocolError):
        MseResponder(SERVED, Policy.ENABLED, rng(0), max_ia_length=0x10000)


def test_receive_after_established_is_misuse() -> None:
    a, b = make_pair()
    pump(a, b)
    for core in (a, b):
        with pytest.raises(LocalProtocolError):
            core.receive_data(b"use the cipher")


def test_lookup_returning_another_torrent_is_our_bug() -> None:
    a = MseInitiator(INFO_HASH, Policy.ENABLED, rng(0))
    b = MseResponder(lambda key: OTHER_HASH, Policy.ENABLED, rng(1))
    with pytest.raises(LocalProtocolError):
        pump(a, b)
    assert b.state is State.ERROR


def test_lookup_callable_and_snapshot_agree() -> None:
    lookup = info_hash_lookup(SERVED)
    assert lookup(sha1(b"req2", INFO_HASH)) == INFO_HASH
    assert lookup(sha1(b"req2", UNSERVED_HASH)) is None
    a = MseInitiator(INFO_HASH, Policy.ENABLED, rng(0))
    b = MseResponder(lookup, Policy.ENABLED, rng(1))
    _, end_b = pump(a, b)
    assert end_b.established is not None


def test_pad_a_and_pad_b_look_random() -> None:
    # They travel in clear: zeros would make the handshake easy to fingerprint.
    for seed in range(8):
        a, b = make_pair(seed=seed)
        step1 = a.initiate()
        (send,) = b.receive_data(step1)
        assert isinstance(send, SendData)
        for pad in (step1[96:], send.data[96:]):
            assert len(pad) <= 512
            if len(pad) >= 64:
                assert len(set(pad)) > 16


def test_transition_tables_send_every_receiving_state_to_error() -> None:
    from hubswarm.proto import mse

    for table in (mse._INITIATOR, mse._RESPONDER):
        for state, successors in table.items():
            if state in (State.START, State.ESTABLISHED, State.PLAINTEXT, State.ERROR):
                assert State.ERROR not in successors
            else:
                assert State.ERROR in successors, state
