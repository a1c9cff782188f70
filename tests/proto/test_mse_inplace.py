"""CipherPair.decrypt_in_place: the same plaintext as ``decrypt``, chunk by chunk."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.proto import mse
from hubswarm.proto.mse import CipherPair, CryptoMethod


def _pair(method: CryptoMethod, key: bytes) -> CipherPair:
    # The two directions share one key here, so a pair's encrypt is its peer's decrypt.
    return CipherPair(method, mse._rc4(key), mse._rc4(key))


@given(
    key=st.binary(min_size=20, max_size=20),
    chunks=st.lists(st.binary(max_size=3000), max_size=8),
)
def test_in_place_decryption_matches_decrypt_chunk_by_chunk(
    key: bytes, chunks: list[bytes]
) -> None:
    sender = _pair(CryptoMethod.RC4, key)
    by_copy = _pair(CryptoMethod.RC4, key)
    in_place = _pair(CryptoMethod.RC4, key)
    for chunk in chunks:
        wire = sender.encrypt(chunk)
        assert by_copy.decrypt(wire) == chunk
        buf = bytearray(wire)
        in_place.decrypt_in_place(memoryview(buf))
        assert bytes(buf) == chunk


def test_plaintext_in_place_leaves_the_buffer_alone() -> None:
    buf = bytearray(b"plain bytes")
    _pair(CryptoMethod.PLAINTEXT, bytes(20)).decrypt_in_place(memoryview(buf))
    assert buf == b"plain bytes"


@given(
    key=st.binary(min_size=20, max_size=20),
    chunks=st.lists(st.binary(max_size=3000), max_size=8),
    method=st.sampled_from(list(CryptoMethod)),
)
def test_encrypt_into_writes_what_encrypt_returns(
    key: bytes, chunks: list[bytes], method: CryptoMethod
) -> None:
    by_copy = _pair(method, key)
    into = _pair(method, key)
    for chunk in chunks:
        out = bytearray(len(chunk))
        into.encrypt_into(chunk, memoryview(out))
        assert bytes(out) == by_copy.encrypt(chunk)


def test_encrypt_into_refuses_an_output_of_another_length() -> None:
    with pytest.raises(ValueError, match="as long as"):
        _pair(CryptoMethod.RC4, bytes(20)).encrypt_into(b"abc", memoryview(bytearray(2)))
