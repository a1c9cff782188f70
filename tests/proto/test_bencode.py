"""Strict bencode: round trips, garbage, every non-canonical form, info_span."""

from __future__ import annotations

import time
from typing import Any

import fastbencode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubswarm.errors import BencodeError
from hubswarm.limits import BENCODE_MAX_DEPTH, BENCODE_MAX_INT_DIGITS, BENCODE_MAX_SIZE
from hubswarm.proto import bencode

bencodable = st.recursive(
    st.binary(max_size=40) | st.integers(min_value=-(10**30), max_value=10**30),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.binary(max_size=8), children, max_size=6)
    ),
    max_leaves=20,
)


# Example counts are fixed so the runtime budget holds under either profile.
@settings(max_examples=100)
@given(bencodable)
def test_round_trip(value: Any) -> None:
    data = bencode.encode(value)
    assert bencode.decode(data) == value
    assert bencode.scan(data).end == len(data)
    # Canonical: re-encoding the decoded value gives the same bytes.
    assert bencode.encode(bencode.decode(data)) == data


@settings(max_examples=50)
@given(bencodable, st.binary(max_size=20))
def test_decode_prefix_returns_value_and_offset(value: Any, tail: bytes) -> None:
    data = bencode.encode(value)
    decoded, end = bencode.decode_prefix(data + tail)
    assert decoded == value
    assert end == len(data)


@given(st.binary(max_size=200))
def test_garbage_raises_only_bencode_error(data: bytes) -> None:
    try:
        bencode.decode(data)
    except BencodeError:
        pass


@settings(max_examples=100)
@given(bencodable, st.data())
def test_mutated_documents_raise_only_bencode_error(value: Any, data: st.DataObject) -> None:
    doc = bytearray(bencode.encode(value))
    i = data.draw(st.integers(0, len(doc) - 1))
    doc[i] = data.draw(st.sampled_from(b"0123456789:ilde-x"))
    for candidate in (bytes(doc), bytes(doc[:i])):
        try:
            decoded = bencode.decode(candidate)
        except BencodeError:
            continue
        # Strict decoding accepts only canonical documents: they re-encode byte for byte.
        assert bencode.encode(decoded) == candidate


def test_str_keys_and_values_encode_as_utf8() -> None:
    assert bencode.encode({"b": "é", "a": [1, "x"]}) == b"d1:ali1e1:xe1:b2:\xc3\xa9e"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"i03e", "leading zero"),
        (b"i-0e", "negative zero"),
        (b"i-03e", "leading zero"),
        (b"ie", "empty"),
        (b"i-e", "lone minus"),
        (b"i1.5e", "float"),
        (b"i 1e", "space"),
        (b"i+1e", "plus sign"),
        (b"i1", "unterminated"),
        (b"01:a", "leading zero length"),
        (b"-1:a", "negative length"),
        (b"d1:bi1e1:ai2ee", "unsorted keys"),
        (b"d1:ai1e1:ai2ee", "duplicate keys"),
        (b"di1ei2ee", "integer key"),
        (b"d1:ae", "key without value"),
        (b"i1ei2e", "trailing value"),
        (b"le ", "trailing space"),
        (b"4:abc", "string past the end"),
        (b"l", "truncated list"),
        (b"d", "truncated dict"),
        (b"", "empty input"),
        (b"x", "unknown type"),
        (b"e", "lone end"),
        (b"l" * (BENCODE_MAX_DEPTH + 1) + b"e" * (BENCODE_MAX_DEPTH + 1), "too deep"),
        (b"i" + b"1" * (BENCODE_MAX_INT_DIGITS + 1) + b"e", "too many digits"),
        (b"i" + b"1" * 5000 + b"e", "past Python's int() digit limit"),
    ],
)
def test_non_canonical_and_malformed_rejected(data: bytes, why: str) -> None:
    with pytest.raises(BencodeError):
        bencode.decode(data)


def test_depth_at_cap_is_accepted() -> None:
    data = b"l" * BENCODE_MAX_DEPTH + b"e" * BENCODE_MAX_DEPTH
    assert bencode.scan(data).end == len(data)


def test_deep_nesting_does_not_recurse() -> None:
    # A recursion bomb: a million 'l' bytes must fail on the depth cap, not RecursionError.
    with pytest.raises(BencodeError, match="deeper"):
        bencode.decode(b"l" * 1_000_000)


def test_huge_length_prefix_rejected_without_allocation() -> None:
    start = time.perf_counter()
    with pytest.raises(BencodeError, match="past the end"):
        bencode.decode(b"99999999999:abc")
    with pytest.raises(BencodeError):
        bencode.decode(b"l99999999999999999999:e")
    # Not a speed assertion: a generous bound that only an allocation of 100 GB would miss.
    assert time.perf_counter() - start < 5


def test_oversized_document_rejected() -> None:
    with pytest.raises(BencodeError, match="exceeds"):
        bencode.decode(b"0:" + b" " * BENCODE_MAX_SIZE)


@pytest.mark.parametrize("value", [1.5, None, True, object(), {1: 2}])
def test_unencodable_values_rejected(value: Any) -> None:
    with pytest.raises(BencodeError):
        bencode.encode(value)


@settings(max_examples=100)
@given(bencodable)
def test_encode_checked_gives_the_canonical_bytes(value: Any) -> None:
    assert bencode.encode_checked(value) == bencode.encode(value)


@pytest.mark.parametrize("value", [1.5, None, "text", {"key": 1}, {1: 2}, bytearray(b"x")])
def test_encode_checked_refuses_what_it_was_not_built_for(value: Any) -> None:
    with pytest.raises(BencodeError):
        bencode.encode_checked(value)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(BencodeError):
        bencode.decode("i1e")  # type: ignore[arg-type]


@settings(max_examples=50)
@given(
    st.dictionaries(st.binary(max_size=6).filter(lambda k: k != b"info"), bencodable, max_size=4),
    bencodable,
)
def test_info_span_is_exact_bytes_of_info(others: dict[bytes, Any], info: Any) -> None:
    doc = bencode.encode({**others, b"info": info})
    start, end = bencode.info_span(doc)
    assert doc[start:end] == bencode.encode(info)
    assert bencode.decode(doc[start:end]) == info


def test_info_span_keeps_original_bytes_not_a_reencoding() -> None:
    info = b"d4:name1:x12:piece lengthi16384ee"
    doc = b"d8:announce3:abc4:info" + info + b"3:zzzi1ee"
    start, end = bencode.info_span(doc)
    assert doc[start:end] == info
    assert (start, end) == (22, 22 + len(info))


def test_info_span_scalar_and_nested_info_key() -> None:
    # A nested 'info' key is not the top-level one.
    doc = b"d1:ad4:infoi1ee4:infoi7ee"
    start, end = bencode.info_span(doc)
    assert doc[start:end] == b"i7e"
    with pytest.raises(BencodeError, match="no 'info'"):
        bencode.info_span(b"d1:ad4:infoi1eee")


@pytest.mark.parametrize("doc", [b"l4:infoe", b"4:info", b"de", b"d4:infoi1ee "])
def test_info_span_errors(doc: bytes) -> None:
    with pytest.raises(BencodeError):
        bencode.info_span(doc)


def _full_scan_decode(data: bytes, max_depth: int) -> tuple[bool, Any]:
    """The reference: decode with the token scan forced (what decode did before its fast path)."""
    try:
        result = bencode.scan(data, max_depth=max_depth)
        if result.end != len(data):
            return False, None
        return True, fastbencode.bdecode(data)
    except (BencodeError, ValueError, TypeError, RecursionError):
        return False, None


@given(bencodable, st.data())
def test_fast_path_accepts_exactly_what_the_scan_accepts(value: Any, data: st.DataObject) -> None:
    doc = bytearray(bencode.encode(value))
    for _ in range(data.draw(st.integers(0, 3))):
        i = data.draw(st.integers(0, len(doc)))
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        byte = data.draw(st.sampled_from(b"0123456789ield:-e"))
        if op == "insert":
            doc.insert(i, byte)
        elif i < len(doc):
            if op == "set":
                doc[i] = byte
            else:
                del doc[i]
    max_depth = data.draw(st.sampled_from([1, 2, 4, BENCODE_MAX_DEPTH]))
    expected_ok, expected = _full_scan_decode(bytes(doc), max_depth)
    try:
        got = bencode.decode(bytes(doc), max_depth=max_depth)
    except BencodeError:
        assert not expected_ok
    else:
        assert expected_ok
        assert got == expected


def test_depth_cap_applies_on_the_fast_path() -> None:
    # Few containers and no long numbers: decode takes its fast path, and still enforces it.
    assert bencode.decode(b"d1:ali1eee", max_depth=2) == {b"a": [1]}
    with pytest.raises(BencodeError, match="deeper"):
        bencode.decode(b"d1:ald1:bi1eeee", max_depth=2)
