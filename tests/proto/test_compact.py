"""Compact peer addresses (BEP 23/7 tracker lists, BEP 11 peer exchange)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.proto.compact import (
    V4_SIZE,
    V6_SIZE,
    entries,
    format_host_port,
    normalise_ip,
    pack_peers,
    parse_host_port,
    unpack_peers,
)


def test_pack_splits_families_in_order_byte_for_byte() -> None:
    v4, v6 = pack_peers([("10.0.0.1", 6881), ("::1", 51413), ("192.168.1.2", 1)])
    assert v4 == bytes([10, 0, 0, 1, 0x1A, 0xE1, 192, 168, 1, 2, 0, 1])
    assert v6 == bytes(15) + b"\x01" + b"\xc8\xd5"


def test_mapped_ipv6_is_packed_as_ipv4() -> None:
    assert normalise_ip("::ffff:10.1.2.3") == "10.1.2.3"
    assert pack_peers([("::ffff:10.1.2.3", 80)]) == (bytes([10, 1, 2, 3, 0, 80]), b"")


def test_unpack_skips_port_zero_and_a_trailing_partial_entry() -> None:
    blob = bytes([1, 2, 3, 4, 0, 0, 5, 6, 7, 8, 0x1F, 0x90, 9, 9])
    assert unpack_peers(blob, V4_SIZE) == [("5.6.7.8", 8080)]
    assert list(entries(blob, V4_SIZE)) == [("1.2.3.4", 0), ("5.6.7.8", 8080)]


def test_bad_input_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        pack_peers([("not-an-ip", 1)])
    with pytest.raises(ValueError):
        pack_peers([("1.2.3.4", 70000)])
    with pytest.raises(ValueError):
        unpack_peers(b"", 7)


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(str)
ports = st.integers(1, 65535)


@given(st.lists(st.tuples(st.one_of(ipv4, ipv6), ports), max_size=30))
def test_pack_unpack_round_trip(peers: list[tuple[str, int]]) -> None:
    v4, v6 = pack_peers(peers)
    assert len(v4) % V4_SIZE == 0
    assert len(v6) % V6_SIZE == 0
    back = unpack_peers(v4, V4_SIZE) + unpack_peers(v6, V6_SIZE)
    want = [p for p in peers if ":" not in p[0]] + [p for p in peers if ":" in p[0]]
    assert back == [(str(ipaddress.ip_address(ip)), port) for ip, port in want]


@given(st.binary(max_size=200), st.sampled_from([V4_SIZE, V6_SIZE]))
def test_any_bytes_unpack_to_whole_entries(blob: bytes, size: int) -> None:
    got = list(entries(blob, size))
    assert len(got) == len(blob) // size
    assert all(0 <= port <= 65535 for _, port in got)


def test_host_port_text_forms() -> None:
    assert parse_host_port("127.0.0.1:6881") == ("127.0.0.1", 6881)
    assert parse_host_port("[::1]:80") == ("::1", 80)
    assert parse_host_port("[fe80::1%eth0]:1") == ("fe80::1%eth0", 1)
    assert parse_host_port("tracker.example:65535") == ("tracker.example", 65535)
    assert format_host_port("::1", 80) == "[::1]:80"
    assert format_host_port("10.0.0.1", 80) == "10.0.0.1:80"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "nohost",
        ":80",
        "h:",
        "h:0",
        "h:65536",
        "h:x",
        "h:٨٠",  # Arabic-Indic digits pass str.isdigit()
        "h:000000080",
        "::1:80",  # an unbracketed IPv6 address: ambiguous
        "[::1]80",
        "[::1]",
        "[::1]:",
        "[]:80",
        "[host.example]:80",  # brackets hold an IPv6 literal only
        "[1.2.3.4]:80",
        "[::1:80",
        "a]:80",
    ],
)
def test_bad_host_port_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(bad)


names = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True)


@given(st.one_of(ipv4, ipv6, names), ports)
def test_host_port_round_trip(host: str, port: int) -> None:
    assert parse_host_port(format_host_port(host, port)) == (host, port)


@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_value_error(text: str) -> None:
    try:
        host, port = parse_host_port(text)
    except ValueError:
        return
    assert host
    assert 0 < port < 65536
    assert parse_host_port(format_host_port(host, port)) == (host, port)
