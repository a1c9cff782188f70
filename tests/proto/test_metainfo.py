"""Metainfo (.torrent) parsing, validation and building."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubswarm.errors import BencodeError, MetainfoError
from hubswarm.limits import PIECE_LENGTH_MAX, PIECE_LENGTH_MIN
from hubswarm.proto import bencode
from hubswarm.proto.metainfo import (
    InfoDict,
    auto_piece_length,
    build_info,
    build_metainfo,
    parse_info,
    parse_metainfo,
)

PL = 16 * 1024


def hashes_for(total: int, piece_length: int = PL) -> list[bytes]:
    """Fake but well-formed piece hashes for ``total`` bytes."""
    count = -(-total // piece_length)
    return [hashlib.sha1(i.to_bytes(4, "big")).digest() for i in range(count)]


def info_dict(**overrides: Any) -> dict[bytes, Any]:
    """A valid multi-file info dict as decoded bencode; ``overrides`` replace or drop keys."""
    info: dict[bytes, Any] = {
        b"name": b"folder",
        b"piece length": PL,
        b"pieces": b"".join(hashes_for(PL + 10)),
        b"files": [
            {b"length": PL, b"path": [b"a", b"b.txt"]},
            {b"length": 10, b"path": [b"c.bin"]},
        ],
    }
    for key, value in overrides.items():
        k = key.replace("_", " ").encode()
        if value is None:
            info.pop(k, None)
        else:
            info[k] = value
    return info


def torrent(info: Any, **top: Any) -> bytes:
    return bencode.encode(
        {b"info": info, **{k.replace("_", "-").encode(): v for k, v in top.items()}}
    )


# --- boundaries -------------------------------------------------------------------------------


@pytest.mark.parametrize("pieces", [1, 2, 3])
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_single_file_piece_boundaries(pieces: int, delta: int) -> None:
    total = pieces * PL + delta
    info = build_info("f.bin", PL, hashes_for(total), length=total)
    expected_count = -(-total // PL)
    assert info.num_pieces == expected_count
    assert info.total_length == total
    assert sum(info.piece_size(i) for i in range(info.num_pieces)) == total
    last = total - PL * (expected_count - 1)
    assert info.piece_size(expected_count - 1) == last
    assert 0 < last <= PL
    assert not info.is_multi_file
    assert info.files[0].path == ("f.bin",)
    with pytest.raises(IndexError):
        info.piece_size(expected_count)
    with pytest.raises(IndexError):
        info.piece_size(-1)


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_multi_file_offsets_across_piece_boundary(delta: int) -> None:
    sizes = [PL + delta, 0, PL - delta, 1]
    files = [((f"d{i}", f"f{i}"), size) for i, size in enumerate(sizes)]
    total = sum(sizes)
    info = build_info("top", PL, hashes_for(total), files=files)
    assert info.is_multi_file
    assert [f.offset for f in info.files] == [0, PL + delta, PL + delta, 2 * PL]
    assert info.files[0].path == ("top", "d0", "f0")
    assert info.num_pieces == 3
    assert info.piece_size(2) == 1


@pytest.mark.parametrize("delta", [-1, 1])
def test_piece_count_must_match_total(delta: int) -> None:
    hashes = hashes_for(PL * 2)
    count = len(hashes) + delta
    raw = bencode.encode(
        {b"length": PL * 2, b"name": b"x", b"piece length": PL, b"pieces": b"\0" * 20 * count}
    )
    with pytest.raises(MetainfoError, match="piece hashes"):
        parse_info(raw)


def test_multi_file_with_one_file_is_multi_file() -> None:
    info = build_info("top", PL, hashes_for(5), files=[(("only",), 5)])
    assert info.is_multi_file
    assert info.files[0].path == ("top", "only")


# --- validation -------------------------------------------------------------------------------

BAD_INFOS: list[tuple[Any, str]] = [
    ([1], "must be a dictionary"),
    (info_dict(name=None), "no 'name'"),
    (info_dict(name=b""), "empty"),
    (info_dict(name=b"."), "not allowed"),
    (info_dict(name=b".."), "not allowed"),
    (info_dict(name=b"a/b"), "forbidden"),
    (info_dict(name=b"a\\b"), "forbidden"),
    (info_dict(name=b"a\0b"), "forbidden"),
    (info_dict(name=5), "must be a string"),
    (info_dict(name=b"\xff\xfe"), "UTF-8"),
    (info_dict(piece_length=None), "piece length"),
    (info_dict(piece_length=b"16384"), "piece length"),
    (info_dict(piece_length=0), "piece length"),
    (info_dict(piece_length=-PL), "piece length"),
    (info_dict(piece_length=PL + 1), "multiple"),
    (info_dict(piece_length=PIECE_LENGTH_MIN // 2), "multiple"),
    (info_dict(piece_length=PIECE_LENGTH_MAX * 2), "multiple"),
    (info_dict(pieces=None), "'pieces'"),
    (info_dict(pieces=[b"x"]), "'pieces'"),
    (info_dict(pieces=b"\0" * 39), "multiple of 20"),
    (info_dict(pieces=b"\0" * 60), "piece hashes"),
    (info_dict(files=None), "exactly one"),
    (info_dict(length=5), "exactly one"),
    (info_dict(files=[]), "non-empty"),
    (info_dict(files=b"x"), "non-empty"),
    (info_dict(files=[b"x"]), "dictionary"),
    (info_dict(files=[{b"path": [b"a"]}]), "length"),
    (info_dict(files=[{b"length": -1, b"path": [b"a"]}]), "length"),
    (info_dict(files=[{b"length": b"1", b"path": [b"a"]}]), "length"),
    (info_dict(files=[{b"length": 1}]), "path"),
    (info_dict(files=[{b"length": 1, b"path": []}]), "path"),
    (info_dict(files=[{b"length": 1, b"path": b"a"}]), "path"),
    (info_dict(files=[{b"length": 1, b"path": [b""]}]), "empty"),
    (info_dict(files=[{b"length": 1, b"path": [b".."]}]), "not allowed"),
    (info_dict(files=[{b"length": 1, b"path": [b"a", b"."]}]), "not allowed"),
    (info_dict(files=[{b"length": 1, b"path": [b"/etc"]}]), "forbidden"),
    (info_dict(files=[{b"length": 1, b"path": [b"..\\x"]}]), "forbidden"),
    (info_dict(files=[{b"length": 1, b"path": [b"a\0"]}]), "forbidden"),
    (info_dict(files=[{b"length": 1, b"path": [1]}]), "string"),
    (
        info_dict(files=[{b"length": 5, b"path": [b"a"]}, {b"length": 5, b"path": [b"a"]}]),
        "duplicate",
    ),
    (
        info_dict(files=[{b"length": 5, b"path": [b"a"]}, {b"length": 5, b"path": [b"a", b"b"]}]),
        "both a file and a folder",
    ),
    (info_dict(files=None, length=-1, pieces=b""), "non-negative"),
    (info_dict(files=None, length=b"1"), "non-negative"),
    (info_dict(files=None, length=0, pieces=b""), "total length 0"),
    (info_dict(files=[{b"length": 0, b"path": [b"a"]}], pieces=b""), "total length 0"),
]


@pytest.mark.parametrize(("info", "message"), BAD_INFOS)
def test_invalid_info_rejected(info: Any, message: str) -> None:
    with pytest.raises(MetainfoError, match=message):
        parse_metainfo(torrent(info))
    with pytest.raises(MetainfoError, match=message):
        parse_info(bencode.encode(info))


def test_valid_base_info_parses() -> None:
    meta = parse_metainfo(torrent(info_dict()))
    assert meta.info.name == "folder"
    assert [f.path for f in meta.info.files] == [("folder", "a", "b.txt"), ("folder", "c.bin")]


@pytest.mark.parametrize(
    "data",
    [b"", b"i1e", b"le", b"de", b"d4:infoi1ee", b"d4:info", b"d4:infodee", b"d4:infod" + b"e" * 3],
)
def test_malformed_documents_rejected(data: bytes) -> None:
    with pytest.raises(MetainfoError):
        parse_metainfo(data)


def test_bencode_error_is_chained() -> None:
    with pytest.raises(MetainfoError) as excinfo:
        parse_metainfo(b"d4:infoi03ee")
    assert isinstance(excinfo.value.__cause__, BencodeError)
    with pytest.raises(MetainfoError) as excinfo:
        parse_info(b"d")
    assert isinstance(excinfo.value.__cause__, BencodeError)


@given(st.binary(max_size=300))
def test_garbage_raises_only_metainfo_error(data: bytes) -> None:
    for parse in (parse_metainfo, parse_info):
        try:
            parse(data)
        except MetainfoError:
            pass


# --- info-hash and fields --------------------------------------------------------------------


def test_info_hash_is_sha1_of_original_info_bytes() -> None:
    # Unknown keys in info (here 'source' and 'x-extra') are part of the hash.
    info = info_dict(source=b"TRACKER", x_extra=[1, 2])
    data = torrent(info, announce=b"http://t/a")
    raw = bencode.encode(info)
    meta = parse_metainfo(data)
    assert meta.info.raw == raw
    assert meta.info_hash == hashlib.sha1(raw).digest()
    stripped = build_info(
        "folder", PL, info[b"pieces"], files=[(("a", "b.txt"), PL), (("c.bin",), 10)]
    )
    assert stripped.info_hash != meta.info_hash


def test_parse_info_expected_hash() -> None:
    raw = bencode.encode(info_dict())
    good = hashlib.sha1(raw).digest()
    assert parse_info(raw, good).info_hash == good
    with pytest.raises(MetainfoError, match="does not match"):
        parse_info(raw, bytes(20))
    with pytest.raises(MetainfoError, match="does not match"):
        parse_info(raw + b" ", good)


def test_announce_list_tiers_win_over_announce() -> None:
    data = torrent(
        info_dict(),
        announce=b"http://ignored/a",
        announce_list=[[b"http://a/1", b"http://a/2", b"http://a/1"], [], [b"udp://b/3"], b"bad"],
    )
    meta = parse_metainfo(data)
    assert meta.announce_list == (("http://a/1", "http://a/2"), ("udp://b/3",))
    assert meta.trackers == ["http://a/1", "http://a/2", "udp://b/3"]


def test_announce_alone_is_one_tier_and_bad_types_are_ignored() -> None:
    assert parse_metainfo(torrent(info_dict(), announce=b"http://t/a")).announce_list == (
        ("http://t/a",),
    )
    assert parse_metainfo(torrent(info_dict(), announce=5)).announce_list == ()
    assert parse_metainfo(torrent(info_dict(), announce_list=[[b"\xff"]])).announce_list == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"http://ws/", ("http://ws/",)),
        ([b"http://a/", b"", 5, b"http://b/"], ("http://a/", "http://b/")),
        (7, ()),
    ],
)
def test_url_list_string_or_list(value: Any, expected: tuple[str, ...]) -> None:
    assert parse_metainfo(torrent(info_dict(), url_list=value)).url_list == expected


def test_nodes_comment_dates() -> None:
    data = torrent(
        info_dict(),
        nodes=[[b"router.example", 6881], [b"10.0.0.1", 0], [b"x"], [b"::1", 7000]],
        comment=b"caf\xc3\xa9",
        created_by=b"mktorrent",
        creation_date=1700000000,
    )
    # torrent() maps '_' to '-': fix the two keys BEP 3 spells with a space.
    data = data.replace(b"10:created-by", b"10:created by").replace(
        b"13:creation-date", b"13:creation date"
    )
    meta = parse_metainfo(data)
    assert meta.nodes == (("router.example", 6881), ("::1", 7000))
    assert meta.comment == "café"
    assert meta.created_by == "mktorrent"
    assert meta.creation_date == 1700000000


@pytest.mark.parametrize(("value", "private"), [(1, True), (0, False), (2, True), (b"1", False)])
def test_private_flag(value: Any, private: bool) -> None:
    assert parse_metainfo(torrent(info_dict(private=value))).info.private is private


def test_build_private_round_trip() -> None:
    info = build_info("p", PL, hashes_for(3), length=3, private=True)
    assert info.private
    assert b"7:privatei1e" in info.raw


def test_utf8_twins_preferred() -> None:
    files = [{b"length": PL + 10, b"path": [b"latin1-\xe9"], b"path.utf-8": [b"caf\xc3\xa9"]}]
    info = info_dict(files=files, name_utf_8=b"n\xc3\xa9")
    info[b"name.utf-8"] = info.pop(b"name utf 8")
    parsed = parse_metainfo(torrent(info)).info
    assert parsed.name == "né"
    assert parsed.files[0].path == ("né", "café")


def test_padding_files_may_share_a_path() -> None:
    # libtorrent's hybrids name pads by size: ".pad/16374" can appear many times.
    pad = {b"attr": b"p", b"length": PL - 10, b"path": [b".pad", b"16374"]}
    files = [
        {b"length": 10, b"path": [b"a"]},
        pad,
        {b"length": 10, b"path": [b"b"]},
        pad,
        {b"length": 10, b"path": [b"c"]},
    ]
    info = info_dict(files=files, pieces=b"".join(hashes_for(2 * PL + 10)))
    parsed = parse_metainfo(torrent(info)).info
    assert [f.padding for f in parsed.files] == [False, True, False, True, False]
    assert parsed.files[4].offset == 2 * PL
    real_dup = [*files, {b"length": 1, b"path": [b"a"]}]
    with pytest.raises(MetainfoError, match="duplicate"):
        parse_metainfo(torrent(info_dict(files=real_dup, pieces=b"".join(hashes_for(2 * PL + 11)))))


def test_padding_files_are_marked() -> None:
    files = [
        {b"length": 10, b"path": [b"a"]},
        {b"attr": b"p", b"length": PL - 10, b"path": [b".pad", b"16374"]},
        {b"length": 10, b"path": [b"b"]},
    ]
    parsed = parse_metainfo(torrent(info_dict(files=files))).info
    assert [f.padding for f in parsed.files] == [False, True, False]
    assert parsed.files[2].offset == PL


# --- building --------------------------------------------------------------------------------


def test_build_info_arguments() -> None:
    with pytest.raises(MetainfoError, match="exactly one"):
        build_info("x", PL, [], files=None, length=None)
    with pytest.raises(MetainfoError, match="exactly one"):
        build_info("x", PL, [], files=[(("a",), 1)], length=1)
    with pytest.raises(MetainfoError, match="forbidden"):
        build_info("a/b", PL, hashes_for(1), length=1)
    concatenated = build_info("x", PL, b"".join(hashes_for(PL * 2)), length=PL * 2)
    assert concatenated.piece_hashes == tuple(hashes_for(PL * 2))


def test_build_metainfo_fields_round_trip() -> None:
    info = build_info("x", PL, hashes_for(100), length=100)
    data = build_metainfo(
        info,
        announce_list=[["http://a/1", "http://a/2"], "udp://b/3", []],
        url_list=["http://ws/", ""],
        comment="c",
        creation_date=1234,
        nodes=[("n", 1)],
    )
    bencode.decode(data)  # canonical
    meta = parse_metainfo(data)
    assert meta.info == info
    assert meta.announce_list == (("http://a/1", "http://a/2"), ("udp://b/3",))
    assert meta.url_list == ("http://ws/",)
    assert meta.nodes == (("n", 1),)
    assert (meta.comment, meta.created_by, meta.creation_date) == ("c", "hubswarm/0.1", 1234)
    top = bencode.decode(data)
    assert top[b"announce"] == b"http://a/1"


def test_build_metainfo_single_tracker_has_no_announce_list() -> None:
    info = build_info("x", PL, hashes_for(1), length=1)
    top = bencode.decode(build_metainfo(info, ["http://t/a"], created_by=None))
    assert set(top) == {b"announce", b"info"}
    assert bencode.decode(build_metainfo(info)) == {
        b"created by": b"hubswarm/0.1",
        b"info": top[b"info"],
    }


def test_info_hash_field_checked() -> None:
    with pytest.raises(MetainfoError):
        InfoDict("x", PL, (), (), False, b"", b"short")


component = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="/\\\x00"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))


@st.composite
def info_args(draw: st.DrawFn) -> tuple[Any, ...]:
    name = draw(component)
    piece_length = PL * draw(st.sampled_from([1, 2, 3, 4, 64]))
    private = draw(st.booleans())
    if draw(st.booleans()):
        length = draw(st.integers(1, 5 * piece_length))
        return name, piece_length, None, length, private
    paths = draw(
        st.lists(st.lists(component, min_size=1, max_size=3).map(tuple), min_size=1, max_size=6)
    )
    # Drop duplicates and file/folder clashes, which the parser rightly refuses.
    kept: list[tuple[str, ...]] = []
    for p in paths:
        if all(p[: len(q)] != q and q[: len(p)] != p for q in kept):
            kept.append(p)
    sizes = draw(st.lists(st.integers(0, 2 * piece_length), min_size=len(kept), max_size=len(kept)))
    if sum(sizes) == 0:
        sizes[0] = 1
    return name, piece_length, list(zip(kept, sizes, strict=True)), None, private


@settings(max_examples=75)
@given(info_args(), st.lists(st.lists(st.just("http://t/a") | st.just("udp://u:1/x"))))
def test_build_parse_round_trip(args: tuple[Any, ...], tiers: list[list[str]]) -> None:
    name, piece_length, files, length, private = args
    total = length if files is None else sum(size for _, size in files)
    info = build_info(name, piece_length, hashes_for(total, piece_length), files, length, private)
    assert info.total_length == total
    assert info.private is private
    assert info.info_hash == hashlib.sha1(info.raw).digest()
    assert parse_info(info.raw, info.info_hash) == info
    meta = parse_metainfo(build_metainfo(info, tiers))
    assert meta.info == info
    if files is not None:
        assert [f.path for f in info.files] == [(name, *p) for p, _ in files]
        assert [f.length for f in info.files] == [s for _, s in files]
    assert sum(info.piece_size(i) for i in range(info.num_pieces)) == total


# --- auto piece length -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (1, PL),
        (PL * 2000, PL),
        (PL * 2000 + 1, 2 * PL),
        (1024**3, 1024 * 1024),
        (10**15, 16 * 1024 * 1024),
    ],
)
def test_auto_piece_length_examples(total: int, expected: int) -> None:
    assert auto_piece_length(total) == expected


@given(st.integers(1, 2**45))
def test_auto_piece_length_properties(total: int) -> None:
    pl = auto_piece_length(total)
    assert pl & (pl - 1) == 0
    assert PL <= pl <= 16 * 1024 * 1024
    pieces = -(-total // pl)
    assert pieces <= 2000 or pl == 16 * 1024 * 1024
    if pl > PL:
        assert pieces > 1000
