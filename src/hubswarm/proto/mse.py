"""Sans-IO Message Stream Encryption / Protocol Encryption (MSE/PE), BitTorrent's obfuscation.

Theory of operation (modelled on h11): an :class:`MseInitiator` or :class:`MseResponder`
never touches a socket, a clock or a global RNG. ``receive_data(bytes) -> list[Event]``
parses what the peer sent and returns :class:`SendData` (bytes to write now),
:class:`Established` or :class:`PlaintextHandshake`; the initiator's first bytes come from
:meth:`MseInitiator.initiate`. Randomness (private keys, padding) comes from an injected
``randbytes(n) -> bytes`` callable (``secrets.token_bytes`` in production,
``random.Random(seed).randbytes`` in tests). Once established, :attr:`cipher` is the
:class:`CipherPair` the peer link wraps around its transport.

The handshake (the Vuze wiki's "Message Stream Encryption" page, as libtorrent's
``bt_peer_connection.cpp`` and ``pe_crypto.cpp`` implement it)::

    1 A->B: Ya, PadA
    2 B->A: Yb, PadB
    3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
            ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
    4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload stream)
    5 A->B: ENCRYPT2(payload stream)

Y = G^X mod P (the spec's 768-bit safe prime, G = 2, X of 160 random bits), 96 bytes big
endian; S = the DH secret, 96 bytes; SKEY = the info_hash; HASH = SHA-1; ENCRYPT = RC4 keyed
``HASH('keyA', S, SKEY)`` from A to B and ``HASH('keyB', S, SKEY)`` from B to A, the first
1,024 bytes of each keystream discarded; VC = 8 zero bytes; ``len(X)`` is 2 bytes, the
crypto fields 4, big endian. ENCRYPT2 is RC4 (the same streams, continued) or plaintext, as
``crypto_select`` says; IA is always RC4 (A does not yet know the selection). B finds the
end of PadA by scanning for ``HASH('req1', S)``; A finds the end of PadB by scanning for
ENCRYPT(VC). Each side sends its Y as soon as it has the other's (libtorrent's order).

States (one enum; each role walks its own table, ``_INITIATOR`` / ``_RESPONDER``)::

    initiator: START --initiate()--> AWAIT_Y --Yb, send step 3--> SYNC --ENCRYPT(VC)-->
               READ_CRYPTO --crypto_select, len(PadD)--> READ_PAD --PadD--> ESTABLISHED
    responder: SNIFF --"\\x13BitTorrent protocol"--> PLAINTEXT
               SNIFF --anything else--> AWAIT_Y --Ya, send Yb+PadB--> SYNC --req1 hash-->
               READ_CRYPTO --SKEY, VC, crypto_provide, len(PadC)--> READ_PAD --PadC, len(IA)-->
               READ_IA --IA, send step 4--> ESTABLISHED
    any of the above --peer violation--> ERROR   (RemoteProtocolError, see MseError)

Every step pulls only the bytes it needs, so the buffer never holds more than the largest
step (len(IA) bytes, at most ``max_ia_length``; otherwise at most 532 bytes): a peer cannot
make it grow by sending more. Bytes past the handshake come out as ``Established.leftover``,
already decrypted.

How the peer link (the asyncio shell, not built here) will use this core:

- incoming: every accepted connection starts with an :class:`MseResponder` (it sniffs the
  first bytes with :func:`looks_like_plaintext_handshake`, libtorrent's rule: anything that
  is not ``\\x13BitTorrent protocol`` is an MSE attempt). :class:`PlaintextHandshake` hands
  the bytes so far to ``wire.PeerConnection`` as they are; :class:`Established` hands it
  ``initial_payload + leftover`` and the shell then passes every later read through
  ``cipher.decrypt`` and every write through ``cipher.encrypt``;
- outgoing: :attr:`Policy.dial_mse_first` decides. DISABLED dials plaintext only; ENABLED
  dials plaintext first (no Diffie-Hellman to pay, and every peer accepts it but one that
  requires encryption) and redials once with MSE if the peer closes before its handshake;
  REQUIRED dials MSE offering RC4 only. The initiator carries our BitTorrent handshake as
  IA, so the handshake costs no extra round trip.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext

try:  # cryptography >= 43 keeps RC4 among the "decrepit" algorithms
    from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
except ImportError:  # pragma: no cover - cryptography < 43
    from cryptography.hazmat.primitives.ciphers.algorithms import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        ARC4,
    )

from hubswarm.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DH_KEY_LENGTH",
    "MSE_MAX_IA_LENGTH",
    "MSE_MAX_PAD",
    "PRIVATE_KEY_LENGTH",
    "RC4_DISCARD",
    "REQ1_SYNC_WINDOW",
    "VC",
    "VC_SYNC_WINDOW",
    "CipherPair",
    "CryptoMethod",
    "Established",
    "Event",
    "G",
    "MseCryptoError",
    "MseError",
    "MseInitiator",
    "MseKeyError",
    "MseLengthError",
    "MsePolicyError",
    "MseResponder",
    "MseSyncError",
    "MseUnknownInfoHashError",
    "P",
    "PlaintextHandshake",
    "Policy",
    "SendData",
    "State",
    "info_hash_lookup",
    "looks_like_plaintext_handshake",
    "req2_hash",
]

# --- constants and limits (the spec page and libtorrent's pe_crypto.cpp) ----------------------

# The MSE spec's P, G = 2, as libtorrent, Vuze and Transmission spell it. It is *not* exactly
# RFC 2409's 768-bit "Oakley group 1" prime: the top 672 bits agree, but it ends
# ...A63A3621 0000000000090563 instead of ...A63A3620 FFFFFFFFFFFFFFFF (it is that prime plus
# 591204, also a safe prime). Interoperability needs this literal.
P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B2251"
    "4A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C"
    "42E9A63A36210000000000090563",
    16,
)
G = 2
DH_KEY_LENGTH = 96  # 768 bits, sent big endian and left-padded with zeros
# The spec asks for at least 128 random bits and recommends 160; libtorrent draws 20 bytes.
PRIVATE_KEY_LENGTH = 20
VC = bytes(8)
# The spec: "PadA, PadB: random data with a random length of 0 to 512 bytes each"; PadC and
# PadD are 0 to 512 bytes too. libtorrent refuses len(PadC) or len(PadD) above 512.
MSE_MAX_PAD = 512
# len(IA) is a 2-byte field. libtorrent refuses more than 68 (one BitTorrent handshake, all it
# ever sends as IA); the spec sets no lower cap, so we take the field's maximum by default and
# let the shell tighten it (``max_ia_length``). Either way the buffer is bounded.
MSE_MAX_IA_LENGTH = 0xFFFF
# The spec: B synchronises on HASH('req1', S) within PadA (<= 512) + 20 bytes after Ya, and A
# on ENCRYPT(VC) within PadB + 8 bytes after Yb; libtorrent gives up at the same points.
REQ1_SYNC_WINDOW = MSE_MAX_PAD + 20
VC_SYNC_WINDOW = MSE_MAX_PAD + 8
# The spec and libtorrent (rc4_handler::set_incoming_key): drop RC4's weak first 1,024 bytes.
RC4_DISCARD = 1024

_PROTOCOL_PREFIX = b"\x13BitTorrent protocol"
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U32_U16 = struct.Struct(">IH")


class CryptoMethod(Enum):
    """The ``crypto_provide`` / ``crypto_select`` bits: the stream after the handshake."""

    PLAINTEXT = 0x01
    RC4 = 0x02


class Policy(Enum):
    """The ``--encryption`` setting: which handshakes we speak and which streams we accept."""

    DISABLED = "disabled"  # plaintext BitTorrent handshakes only; MSE refused
    ENABLED = "enabled"  # both; an MSE peer may choose a plaintext or an RC4 stream
    REQUIRED = "required"  # MSE only, RC4 stream only (libtorrent's pe_forced + pe_rc4)

    @property
    def methods(self) -> frozenset[CryptoMethod]:
        """Stream methods we offer as initiator and accept as responder (empty: no MSE)."""
        return _POLICY_METHODS[self]

    @property
    def accepts_plaintext_handshake(self) -> bool:
        """Whether an incoming plaintext ``\\x13BitTorrent protocol`` handshake is accepted."""
        return self is not Policy.REQUIRED

    @property
    def dial_mse_first(self) -> bool:
        """Whether an outgoing connection starts with MSE (see the module docstring)."""
        return self is Policy.REQUIRED


_POLICY_METHODS = {
    Policy.DISABLED: frozenset[CryptoMethod](),
    Policy.ENABLED: frozenset((CryptoMethod.PLAINTEXT, CryptoMethod.RC4)),
    Policy.REQUIRED: frozenset((CryptoMethod.RC4,)),
}


def _bits(methods: Iterable[CryptoMethod]) -> int:
    bits = 0
    for method in methods:
        bits |= method.value
    return bits


# --- errors (subclasses of RemoteProtocolError: the connection goes to ERROR) -------------------


class MseError(RemoteProtocolError):
    """The peer's MSE handshake is invalid; the handshake is in ERROR."""


class MseSyncError(MseError):
    """HASH('req1', S) or ENCRYPT(VC) not found within the spec's window (PadA/PadB + 20/8)."""


class MseKeyError(MseError):
    """The peer's DH public key is outside [2, P - 2] (a degenerate secret, as libtorrent)."""


class MseUnknownInfoHashError(MseError):
    """The SKEY the initiator asked for is none of the torrents we serve."""


class MseCryptoError(MseError):
    """The verification constant decrypted to something else than 8 zero bytes."""


class MseLengthError(MseError):
    """len(PadC), len(PadD) or len(IA) above its limit (MSE_MAX_PAD, ``max_ia_length``)."""


class MsePolicyError(MseError):
    """No stream method both sides accept, a crypto_select we did not offer, or a handshake
    kind (plaintext or MSE) that our policy refuses."""


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendData:
    """Bytes to write to the peer now, in order with any other SendData."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Established:
    """The handshake completed; use the core's :attr:`~MseInitiator.cipher` from now on.

    ``initial_payload`` is the initiator's decrypted IA (always ``b""`` on the initiator's
    side); ``leftover`` are the bytes received past the handshake, already decrypted.
    """

    info_hash: bytes
    method: CryptoMethod
    initial_payload: bytes
    leftover: bytes


@dataclass(frozen=True, slots=True)
class PlaintextHandshake:
    """The peer opened with a plaintext BitTorrent handshake: feed ``data`` (all bytes
    received so far, the handshake's start included) to the wire core; no cipher."""

    data: bytes


Event = SendData | Established | PlaintextHandshake


class State(Enum):
    """State of an MSE handshake (see the module docstring)."""

    START = "start"
    SNIFF = "sniff"
    AWAIT_Y = "await_y"
    SYNC = "sync"
    READ_CRYPTO = "read_crypto"
    READ_PAD = "read_pad"
    READ_IA = "read_ia"
    ESTABLISHED = "established"
    PLAINTEXT = "plaintext"
    ERROR = "error"


_S = State
_INITIATOR: dict[State, frozenset[State]] = {
    _S.START: frozenset((_S.AWAIT_Y,)),
    _S.AWAIT_Y: frozenset((_S.SYNC, _S.ERROR)),
    _S.SYNC: frozenset((_S.READ_CRYPTO, _S.ERROR)),
    _S.READ_CRYPTO: frozenset((_S.READ_PAD, _S.ERROR)),
    _S.READ_PAD: frozenset((_S.ESTABLISHED, _S.ERROR)),
    _S.ESTABLISHED: frozenset(),
    _S.ERROR: frozenset(),
}
_RESPONDER: dict[State, frozenset[State]] = {
    _S.SNIFF: frozenset((_S.AWAIT_Y, _S.PLAINTEXT, _S.ERROR)),
    _S.AWAIT_Y: frozenset((_S.SYNC, _S.ERROR)),
    _S.SYNC: frozenset((_S.READ_CRYPTO, _S.ERROR)),
    _S.READ_CRYPTO: frozenset((_S.READ_PAD, _S.ERROR)),
    _S.READ_PAD: frozenset((_S.READ_IA, _S.ERROR)),
    _S.READ_IA: frozenset((_S.ESTABLISHED, _S.ERROR)),
    _S.ESTABLISHED: frozenset(),
    _S.PLAINTEXT: frozenset(),
    _S.ERROR: frozenset(),
}


# --- pure helpers -----------------------------------------------------------------------------


def looks_like_plaintext_handshake(first_bytes: bytes | bytearray | memoryview) -> bool | None:
    """True if the bytes start a plaintext BitTorrent handshake, False if they cannot,
    None if they are a strict prefix of ``\\x13BitTorrent protocol`` (read more)."""
    n = min(len(first_bytes), len(_PROTOCOL_PREFIX))
    if bytes(first_bytes[:n]) != _PROTOCOL_PREFIX[:n]:
        return False
    return True if n == len(_PROTOCOL_PREFIX) else None


def _sha1(*parts: bytes) -> bytes:
    h = hashlib.sha1(usedforsecurity=False)
    for part in parts:
        h.update(part)
    return h.digest()


def req2_hash(info_hash: bytes) -> bytes:
    """``HASH('req2', SKEY)``: the key a responder's lookup table is indexed by."""
    return _sha1(b"req2", info_hash)


def info_hash_lookup(info_hashes: Iterable[bytes]) -> Callable[[bytes], bytes | None]:
    """A lookup for :class:`MseResponder` over a fixed set of info_hashes (a snapshot)."""
    table = {req2_hash(bytes(ih)): bytes(ih) for ih in info_hashes}
    return table.get


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _rc4(key: bytes) -> CipherContext:
    ctx = Cipher(ARC4(key), mode=None).encryptor()
    ctx.update(bytes(RC4_DISCARD))
    return ctx


class CipherPair:
    """The stream after the handshake: ``encrypt`` what we send, ``decrypt`` what we receive.

    With :attr:`CryptoMethod.PLAINTEXT` both are the identity.
    """

    __slots__ = ("_dec", "_enc", "method")

    def __init__(self, method: CryptoMethod, enc: CipherContext, dec: CipherContext) -> None:
        self.method = method
        self._enc = enc if method is CryptoMethod.RC4 else None
        self._dec = dec if method is CryptoMethod.RC4 else None

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Bytes to write for ``data`` (advances the outgoing keystream)."""
        return bytes(data) if self._enc is None else self._enc.update(data)

    def encrypt_into(self, data: bytes | bytearray | memoryview, out: memoryview) -> None:
        """Write the bytes to send for ``data`` into ``out`` (``len(out) == len(data)``):
        no allocation, and ``update_into`` runs at about 1.7x ``update``'s speed on a
        256 KiB write (a fresh 256 KiB result is page-faulted in on every call)."""
        if len(out) != len(data):
            raise ValueError("out must be as long as data")
        if self._enc is None:
            out[:] = data
        else:
            self._enc.update_into(data, out)

    def decrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Plaintext for bytes read from the peer (advances the incoming keystream)."""
        return bytes(data) if self._dec is None else self._dec.update(data)

    def decrypt_in_place(self, buf: memoryview) -> None:
        """Decrypt a writable buffer where it lies (advances the incoming keystream): a
        read buffer is decrypted without a copy (RC4 is a stream cipher, in = out works)."""
        if self._dec is not None:
            self._dec.update_into(buf, buf)


# --- the handshake cores ----------------------------------------------------------------------


class _Handshake:
    """What both roles share: DH keys, the byte pump, transitions and ERROR handling."""

    _TABLE: dict[State, frozenset[State]]

    def __init__(
        self, state: State, policy: Policy, randbytes: Callable[[int], bytes], max_pad: int
    ) -> None:
        if not 0 <= max_pad <= MSE_MAX_PAD:
            raise LocalProtocolError(f"max_pad must be within 0..{MSE_MAX_PAD}")
        self._state = state
        self.policy = policy
        self._randbytes = randbytes
        self._max_pad = max_pad
        self._buf = bytearray()
        self._secret = b""  # S, 96 bytes, once the peer's Y is known
        self._enc: CipherContext | None = None
        self._dec: CipherContext | None = None
        self._cipher: CipherPair | None = None
        self._info_hash: bytes | None = None
        x = int.from_bytes(self._random(PRIVATE_KEY_LENGTH), "big")
        if x == 0:
            raise LocalProtocolError("randbytes returned a zero private key")
        self._private_key = x
        self.public_key = pow(G, x, P).to_bytes(DH_KEY_LENGTH, "big")

    @property
    def state(self) -> State:
        """The current :class:`State`."""
        return self._state

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed (bounded by the largest step)."""
        return len(self._buf)

    @property
    def info_hash(self) -> bytes | None:
        """SKEY: the initiator's from the start, the responder's once the peer named it."""
        return self._info_hash

    @property
    def cipher(self) -> CipherPair:
        """The stream cipher pair (state ESTABLISHED).

        Raises:
            LocalProtocolError: the handshake is not established.
        """
        if self._cipher is None:
            raise LocalProtocolError(f"no cipher in state {self._state.name}")
        return self._cipher

    def _random(self, n: int) -> bytes:
        data = self._randbytes(n)
        if len(data) != n:
            raise LocalProtocolError(f"randbytes({n}) returned {len(data)} bytes")
        return bytes(data)

    def _pad(self, random_content: bool) -> bytes:
        # 0..max_pad bytes, as libtorrent's random(512); the modulo bias is under 1 %.
        n = int.from_bytes(self._random(2), "big") % (self._max_pad + 1)
        # PadA/PadB go out in clear and must look random; PadC/PadD are encrypted anyway.
        return self._random(n) if random_content else bytes(n)

    def _transition(self, new: State) -> None:
        if new not in self._TABLE[self._state]:
            raise LocalProtocolError(f"no transition from {self._state.name} to {new.name}")
        self._state = new

    def _set_secret(self, peer_public: bytes) -> None:
        y = int.from_bytes(peer_public, "big")
        if not 2 <= y <= P - 2:
            raise MseKeyError("degenerate Diffie-Hellman public key")
        self._secret = pow(y, self._private_key, P).to_bytes(DH_KEY_LENGTH, "big")

    def _keys(self, info_hash: bytes, *, outgoing: bytes, incoming: bytes) -> None:
        self._enc = _rc4(_sha1(outgoing, self._secret, info_hash))
        self._dec = _rc4(_sha1(incoming, self._secret, info_hash))

    def _decrypt(self, n: int) -> bytes:
        """Take ``n`` bytes off the buffer and decrypt them with the incoming keystream."""
        assert self._dec is not None
        data = self._dec.update(bytes(self._buf[:n]))
        del self._buf[:n]
        return data

    def _establish(self, method: CryptoMethod, initial_payload: bytes, rest: memoryview) -> Event:
        assert self._enc is not None
        assert self._dec is not None
        assert self._info_hash is not None
        self._cipher = CipherPair(method, self._enc, self._dec)
        leftover = self._cipher.decrypt(bytes(self._buf) + bytes(rest))
        self._buf = bytearray()
        self._transition(State.ESTABLISHED)
        return Established(self._info_hash, method, initial_payload, leftover)

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes read from the peer; return what to send and what completed.

        Raises:
            MseError: the peer broke the handshake (state becomes ERROR), or it was already
                in ERROR.
            LocalProtocolError: called before :meth:`MseInitiator.initiate` or after the
                handshake ended (ESTABLISHED, PLAINTEXT).
        """
        if self._state is State.ERROR:
            raise MseError("MSE handshake is in ERROR state")
        if self._state in (State.START, State.ESTABLISHED, State.PLAINTEXT):
            raise LocalProtocolError(f"receive_data() in state {self._state.name}")
        events: list[Event] = []
        try:
            self._pump(memoryview(data).cast("B"), events)
        except (RemoteProtocolError, LocalProtocolError):
            # Every state receive_data() runs in may go to ERROR (see the tables); a bug of
            # ours (LocalProtocolError) leaves the handshake as unusable as a peer's would.
            self._state = State.ERROR
            self._buf = bytearray()
            self._enc = self._dec = None
            raise
        return events

    def _pump(self, view: memoryview, events: list[Event]) -> None:
        pos = 0
        while self._state not in (State.ESTABLISHED, State.PLAINTEXT):
            need = self._need()
            if len(self._buf) < need and pos < len(view):
                take = min(need - len(self._buf), len(view) - pos)
                self._buf += view[pos : pos + take]
                pos += take
            if not self._step(events, view[pos:]):
                return

    def _need(self) -> int:
        """Bytes the current step wants in the buffer (a bound, never more)."""
        raise NotImplementedError

    def _step(self, events: list[Event], rest: memoryview) -> bool:
        """Advance on the buffer if possible; False if more bytes must arrive first."""
        raise NotImplementedError


class MseInitiator(_Handshake):
    """The dialling side (A): offers ``policy.methods`` for ``info_hash`` and carries IA.

    Raises:
        LocalProtocolError: a DISABLED policy (dial plaintext instead), a bad info_hash, an
            IA over 65535 bytes.
    """

    _TABLE = _INITIATOR

    def __init__(
        self,
        info_hash: bytes,
        policy: Policy,
        randbytes: Callable[[int], bytes],
        *,
        initial_payload: bytes = b"",
        max_pad: int = MSE_MAX_PAD,
    ) -> None:
        if len(info_hash) != 20:
            raise LocalProtocolError("info_hash must be 20 bytes")
        if not policy.methods:
            raise LocalProtocolError("policy DISABLED: dial a plaintext handshake, not MSE")
        if len(initial_payload) > MSE_MAX_IA_LENGTH:
            raise LocalProtocolError(f"initial payload over {MSE_MAX_IA_LENGTH} bytes")
        super().__init__(State.START, policy, randbytes, max_pad)
        self._info_hash = bytes(info_hash)
        self._initial_payload = bytes(initial_payload)
        self._provide = _bits(policy.methods)
        self._sync_vc = b""
        self._method: CryptoMethod | None = None
        self._pad_len = 0

    def initiate(self) -> bytes:
        """Step 1: our public key and PadA; send it as soon as the connection is up.

        Raises:
            LocalProtocolError: called twice.
        """
        if self._state is not State.START:
            raise LocalProtocolError(f"initiate() in state {self._state.name}")
        self._transition(State.AWAIT_Y)
        return self.public_key + self._pad(random_content=True)

    def _need(self) -> int:
        match self._state:
            case State.AWAIT_Y:
                return DH_KEY_LENGTH
            case State.SYNC:
                return VC_SYNC_WINDOW
            case State.READ_CRYPTO:
                return _U32_U16.size
            case _:
                return self._pad_len

    def _step(self, events: list[Event], rest: memoryview) -> bool:
        buf = self._buf
        if len(buf) < self._need():
            if self._state is State.SYNC and len(buf) >= len(VC):
                # Fail as soon as the window is known not to hold it; else wait.
                return self._find_vc()
            return False
        match self._state:
            case State.AWAIT_Y:
                events.append(SendData(self._step3(bytes(buf[:DH_KEY_LENGTH]))))
                del buf[:DH_KEY_LENGTH]
                self._transition(State.SYNC)
            case State.SYNC:
                if not self._find_vc():
                    raise MseSyncError(f"no ENCRYPT(VC) within {VC_SYNC_WINDOW} bytes after Yb")
            case State.READ_CRYPTO:
                select, pad_len = _U32_U16.unpack(self._decrypt(_U32_U16.size))
                if select not in (CryptoMethod.PLAINTEXT.value, CryptoMethod.RC4.value) or not (
                    select & self._provide
                ):
                    raise MsePolicyError(
                        f"crypto_select {select:#x} is not one of {self._provide:#x} we offered"
                    )
                if pad_len > MSE_MAX_PAD:
                    raise MseLengthError(f"len(PadD) {pad_len} over {MSE_MAX_PAD}")
                self._method = CryptoMethod(select)
                self._pad_len = pad_len
                self._transition(State.READ_PAD)
            case State.READ_PAD:
                self._decrypt(self._pad_len)
                assert self._method is not None
                events.append(self._establish(self._method, b"", rest))
        return True

    def _step3(self, peer_public: bytes) -> bytes:
        self._set_secret(peer_public)
        assert self._info_hash is not None
        s, skey = self._secret, self._info_hash
        self._keys(skey, outgoing=b"keyA", incoming=b"keyB")
        assert self._enc is not None
        assert self._dec is not None
        # What B's ENCRYPT(VC) looks like: the first 8 bytes of its keystream.
        self._sync_vc = self._dec.update(VC)
        pad_c = self._pad(random_content=False)
        clear = b"".join(
            (
                VC,
                _U32.pack(self._provide),
                _U16.pack(len(pad_c)),
                pad_c,
                _U16.pack(len(self._initial_payload)),
                self._initial_payload,
            )
        )
        return b"".join(
            (_sha1(b"req1", s), _xor(req2_hash(skey), _sha1(b"req3", s)), self._enc.update(clear))
        )

    def _find_vc(self) -> bool:
        at = self._buf.find(self._sync_vc, 0, VC_SYNC_WINDOW)
        if at < 0:
            if len(self._buf) >= VC_SYNC_WINDOW:
                raise MseSyncError(f"no ENCRYPT(VC) within {VC_SYNC_WINDOW} bytes after Yb")
            return False
        del self._buf[: at + len(VC)]
        self._transition(State.READ_CRYPTO)
        return True


class MseResponder(_Handshake):
    """The accepting side (B) of any incoming connection: plaintext or MSE, as ``policy``
    allows. ``lookup_info_hash(HASH('req2', SKEY))`` returns the info_hash served under that
    key or None; a collection of info_hashes is accepted too (see :func:`info_hash_lookup`).

    ``prefer_rc4`` picks RC4 when the initiator offers both (libtorrent's ``prefer_rc4``,
    off by default: the plaintext stream is cheaper and the handshake is hidden either way).
    """

    _TABLE = _RESPONDER

    def __init__(
        self,
        lookup_info_hash: Callable[[bytes], bytes | None] | Iterable[bytes],
        policy: Policy,
        randbytes: Callable[[int], bytes],
        *,
        prefer_rc4: bool = False,
        max_pad: int = MSE_MAX_PAD,
        max_ia_length: int = MSE_MAX_IA_LENGTH,
    ) -> None:
        if not 0 <= max_ia_length <= MSE_MAX_IA_LENGTH:
            raise LocalProtocolError(f"max_ia_length must be within 0..{MSE_MAX_IA_LENGTH}")
        super().__init__(State.SNIFF, policy, randbytes, max_pad)
        self._lookup = (
            lookup_info_hash if callable(lookup_info_hash) else info_hash_lookup(lookup_info_hash)
        )
        self.prefer_rc4 = prefer_rc4
        self.max_ia_length = max_ia_length
        self._sync_req1 = b""
        self._method: CryptoMethod | None = None
        self._pad_len = 0
        self._ia_len = 0

    def _need(self) -> int:
        match self._state:
            case State.SNIFF:
                return len(_PROTOCOL_PREFIX)
            case State.AWAIT_Y:
                return DH_KEY_LENGTH
            case State.SYNC:
                return REQ1_SYNC_WINDOW
            case State.READ_CRYPTO:
                return 20 + len(VC) + _U32_U16.size
            case State.READ_PAD:
                return self._pad_len + _U16.size
            case _:
                return self._ia_len

    def _step(self, events: list[Event], rest: memoryview) -> bool:
        buf = self._buf
        if self._state is State.SNIFF:
            return self._sniff(events, rest)
        if len(buf) < self._need():
            if self._state is State.SYNC and len(buf) >= 20:
                return self._find_req1()
            return False
        match self._state:
            case State.AWAIT_Y:
                self._set_secret(bytes(buf[:DH_KEY_LENGTH]))
                del buf[:DH_KEY_LENGTH]
                self._sync_req1 = _sha1(b"req1", self._secret)
                events.append(SendData(self.public_key + self._pad(random_content=True)))
                self._transition(State.SYNC)
            case State.SYNC:
                if not self._find_req1():
                    raise MseSyncError(f"no HASH('req1', S) within {REQ1_SYNC_WINDOW} bytes")
            case State.READ_CRYPTO:
                self._read_skey()
            case State.READ_PAD:
                (ia_len,) = _U16.unpack(self._decrypt(self._pad_len + _U16.size)[-2:])
                if ia_len > self.max_ia_length:
                    raise MseLengthError(f"len(IA) {ia_len} over {self.max_ia_length}")
                self._ia_len = ia_len
                self._transition(State.READ_IA)
            case State.READ_IA:
                initial_payload = self._decrypt(self._ia_len)
                assert self._enc is not None
                assert self._method is not None
                pad_d = self._pad(random_content=False)
                step4 = VC + _U32_U16.pack(self._method.value, len(pad_d)) + pad_d
                events.append(SendData(self._enc.update(step4)))
                events.append(self._establish(self._method, initial_payload, rest))
        return True

    def _sniff(self, events: list[Event], rest: memoryview) -> bool:
        plaintext = looks_like_plaintext_handshake(self._buf)
        if plaintext is None:
            return False
        if plaintext:
            if not self.policy.accepts_plaintext_handshake:
                raise MsePolicyError("plaintext handshake refused: encryption is required")
            events.append(PlaintextHandshake(bytes(self._buf) + bytes(rest)))
            self._buf = bytearray()
            self._transition(State.PLAINTEXT)
            return False
        if not self.policy.methods:
            raise MsePolicyError("not a plaintext BitTorrent handshake, and MSE is disabled")
        self._transition(State.AWAIT_Y)
        return True

    def _find_req1(self) -> bool:
        at = self._buf.find(self._sync_req1, 0, REQ1_SYNC_WINDOW)
        if at < 0:
            if len(self._buf) >= REQ1_SYNC_WINDOW:
                raise MseSyncError(f"no HASH('req1', S) within {REQ1_SYNC_WINDOW} bytes")
            return False
        del self._buf[: at + 20]
        self._transition(State.READ_CRYPTO)
        return True

    def _read_skey(self) -> None:
        obfuscated = bytes(self._buf[:20])
        del self._buf[:20]
        wanted = _xor(obfuscated, _sha1(b"req3", self._secret))
        info_hash = self._lookup(wanted)
        if info_hash is None:
            raise MseUnknownInfoHashError("the initiator asked for a torrent we do not serve")
        if req2_hash(info_hash) != wanted:
            raise LocalProtocolError("lookup_info_hash returned an info_hash of another key")
        self._info_hash = bytes(info_hash)
        self._keys(self._info_hash, outgoing=b"keyB", incoming=b"keyA")
        if self._decrypt(len(VC)) != VC:
            raise MseCryptoError("verification constant did not decrypt to zeros")
        provide, pad_len = _U32_U16.unpack(self._decrypt(_U32_U16.size))
        # Unknown bits are reserved for future methods: ignore them, as libtorrent does.
        offered = {m for m in self.policy.methods if provide & m.value}
        if not offered:
            raise MsePolicyError(
                f"crypto_provide {provide:#x} has no method our policy {self.policy.value} accepts"
            )
        if len(offered) == 1:
            (self._method,) = offered
        else:
            self._method = CryptoMethod.RC4 if self.prefer_rc4 else CryptoMethod.PLAINTEXT
        if pad_len > MSE_MAX_PAD:
            raise MseLengthError(f"len(PadC) {pad_len} over {MSE_MAX_PAD}")
        self._pad_len = pad_len
        self._transition(State.READ_PAD)
