"""tus 1.0 header codec: round trips and garbage (hypothesis)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import RemoteProtocolError
from hubswarm.proto import tus

_keys = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=","),
    min_size=1,
    max_size=20,
)


@given(st.dictionaries(_keys, st.binary(max_size=100), max_size=10))
def test_metadata_round_trips(pairs: dict[str, bytes]) -> None:
    assert tus.parse_metadata(tus.encode_metadata(pairs)) == pairs


@given(st.text(max_size=300))
def test_metadata_garbage_is_a_typed_error_or_a_dict(text: str) -> None:
    try:
        out = tus.parse_metadata(text)
    except RemoteProtocolError:
        return
    assert all(isinstance(v, bytes) for v in out.values())


@pytest.mark.parametrize(
    "value",
    ["filename !!!", "filename a GVsbG8=", "a YQ==,a YQ==", "a YQ== b", "é YQ==", "k" * 9000],
)
def test_bad_metadata(value: str) -> None:
    with pytest.raises(RemoteProtocolError):
        tus.parse_metadata(value)


def test_metadata_bare_key_and_spaces() -> None:
    assert tus.parse_metadata("filename aGk=, is_public") == {"filename": b"hi", "is_public": b""}
    assert tus.parse_metadata(None) == {}
    assert tus.parse_metadata("  ") == {}


@given(st.integers(min_value=0, max_value=10**19 - 1))
def test_offset_round_trips(n: int) -> None:
    assert tus.parse_offset(str(n)) == n
    assert tus.parse_offset(f" {n} ") == n


@pytest.mark.parametrize("value", [None, "", "-1", "+1", "1.0", "0x10", "1e3", "١٢", "9" * 20])
def test_bad_offsets(value: str | None) -> None:
    with pytest.raises(RemoteProtocolError):
        tus.parse_offset(value)


@given(st.text(max_size=40))
def test_offset_garbage(text: str) -> None:
    try:
        assert tus.parse_offset(text) >= 0
    except RemoteProtocolError:
        pass


@given(st.binary(max_size=200), st.sampled_from(["sha1", "sha256", "SHA256"]))
def test_checksum_round_trips(data: bytes, algo: str) -> None:
    digest = hashlib.new(algo.lower(), data).digest()
    c = tus.parse_checksum(f"{algo} {base64.b64encode(digest).decode()}")
    assert c is not None
    assert c.algorithm == algo.lower()
    h = c.hasher()
    h.update(data)
    assert h.digest() == c.digest


@pytest.mark.parametrize(
    "value", ["md5 AAAA", "sha256 !!", "sha256 " + base64.b64encode(b"x" * 20).decode(), "sha1"]
)
def test_bad_checksums(value: str) -> None:
    with pytest.raises(RemoteProtocolError):
        tus.parse_checksum(value)


def test_checksum_absent() -> None:
    assert tus.parse_checksum(None) is None


def test_resumable_header() -> None:
    tus.check_resumable("1.0.0")
    for bad in (None, "0.2.2", "1.0"):
        with pytest.raises(RemoteProtocolError):
            tus.check_resumable(bad)


def test_expires_is_an_http_date() -> None:
    assert tus.format_expires(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
