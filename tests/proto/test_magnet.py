"""Magnet links (BEP 9): parse, build, round trip, errors."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubswarm.errors import MetainfoError
from hubswarm.limits import MAGNET_MAX_LENGTH
from hubswarm.proto.metainfo import Magnet, build_magnet, parse_magnet

IH = bytes(range(20))
HEX = IH.hex()


def test_hex_and_base32_btih() -> None:
    assert parse_magnet(f"magnet:?xt=urn:btih:{HEX}").info_hash == IH
    assert parse_magnet(f"magnet:?xt=urn:btih:{HEX.upper()}").info_hash == IH
    b32 = base64.b32encode(IH).decode()
    assert len(b32) == 32
    assert parse_magnet(f"magnet:?xt=urn:btih:{b32}").info_hash == IH
    assert parse_magnet(f"MAGNET:?XT=URN:BTIH:{b32.lower()}").info_hash == IH


def test_all_fields() -> None:
    uri = (
        f"magnet:?xt=urn:btih:{HEX}&dn=My+File%20%C3%A9"
        "&tr=http%3A%2F%2Ft%2Fannounce%3Fa%3D1%26b%3D2&tr=udp://u:80&tr.1=http://numbered/"
        "&ws=http%3A%2F%2Fw%2F&ws=http://w2/"
        "&x.pe=127.0.0.1:6881&x.pe=%5B%3A%3A1%5D%3A6882&x.pe=[fe80::1]:1&x.pe=host.example:9"
        "&foo=bar&novalue"
    )
    m = parse_magnet(uri)
    assert m.display_name == "My File é"
    assert m.trackers == ("http://t/announce?a=1&b=2", "udp://u:80", "http://numbered/")
    assert m.web_seeds == ("http://w/", "http://w2/")
    assert m.peers == (("127.0.0.1", 6881), ("::1", 6882), ("fe80::1", 1), ("host.example", 9))


def test_first_btih_wins_and_other_xt_ignored() -> None:
    other = "ff" * 20
    m = parse_magnet(f"magnet:?xt=urn:sha1:abc&xt.1=urn:btih:{HEX}&xt.2=urn:btih:{other}")
    assert m.info_hash == IH


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://x/", "not a magnet"),
        ("magnet:", "not a magnet"),
        ("magnet:?dn=x", "no 'xt=urn:btih:'"),
        ("magnet:?xt=urn:sha1:abc", "no 'xt=urn:btih:'"),
        ("magnet:?xt=urn:btmh:1220" + "00" * 32, "v2-only"),
        ("magnet:?xt=urn:btih:" + "a" * 39, "40 hex or 32 base32"),
        ("magnet:?xt=urn:btih:" + "a" * 41, "40 hex or 32 base32"),
        ("magnet:?xt=urn:btih:" + "g" * 40, "invalid btih"),
        ("magnet:?xt=urn:btih:" + "1" * 32, "invalid btih"),
        ("magnet:?xt=urn:btih:", "40 hex or 32 base32"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4", "x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4:0", "x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4:65536", "x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=::1:80", "x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=[::1]80", "x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=:80", "x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=h:８０", "x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&tr=%FF", "UTF-8"),
        ("magnet:?xt=urn:btih:" + HEX + "&tr=" + "a" * MAGNET_MAX_LENGTH, "longer than"),
    ],
)
def test_bad_magnets_rejected(uri: str, message: str) -> None:
    with pytest.raises(MetainfoError, match=message):
        parse_magnet(uri)


def test_magnet_value_checks() -> None:
    with pytest.raises(MetainfoError):
        Magnet(info_hash=b"short")
    with pytest.raises(MetainfoError):
        Magnet(info_hash=IH, peers=(("h", 0),))


def test_build_is_lowercase_hex_and_encoded() -> None:
    uri = build_magnet(
        Magnet(IH, "a b&c=d+é", ("http://t/a?x=1&y=2",), ("http://w/",), (("::1", 5),))
    )
    assert uri.startswith(f"magnet:?xt=urn:btih:{HEX}&")
    assert "dn=a%20b%26c%3Dd%2B%C3%A9" in uri
    assert "tr=http%3A%2F%2Ft%2Fa%3Fx%3D1%26y%3D2" in uri
    assert "x.pe=[::1]:5" in uri
    assert " " not in uri


host = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5})?", fullmatch=True),
)
url = st.builds(
    lambda h, p, path: f"http://{h}:{p}/{path}",
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    st.integers(1, 65535),
    st.text(max_size=15),
)
magnets = st.builds(
    Magnet,
    info_hash=st.binary(min_size=20, max_size=20),
    display_name=st.none() | st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
    trackers=st.lists(url, unique=True, max_size=4).map(tuple),
    web_seeds=st.lists(url, unique=True, max_size=3).map(tuple),
    peers=st.lists(st.tuples(host, st.integers(1, 65535)), unique=True, max_size=4).map(tuple),
)


@settings(max_examples=100)
@given(magnets)
def test_magnet_round_trip(m: Magnet) -> None:
    uri = build_magnet(m)
    assert uri.isascii()
    assert parse_magnet(uri) == m
    assert build_magnet(parse_magnet(uri)) == uri


@given(st.text(max_size=200))
def test_garbage_after_prefix_raises_only_metainfo_error(tail: str) -> None:
    try:
        parse_magnet("magnet:?" + tail)
    except MetainfoError:
        pass
