"""File and folder name validation: property tests for what is accepted and what is refused."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubswarm.errors import UnsafePathError
from hubswarm.hub.store import FileStore, validate_folder, validate_name, validate_segment
from hubswarm.limits import HUB_MAX_PATH_BYTES, HUB_MAX_PATH_DEPTH

# Any text a safe name may contain: no separators, no control characters, no surrogates.
_safe_chars = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\")
safe_names = st.text(_safe_chars, min_size=1, max_size=80).filter(
    lambda s: not s.startswith(".") and len(s.encode("utf-8")) <= 255
)
# Paths of one to five such names: files in folders.
safe_paths = (
    st.lists(safe_names, min_size=1, max_size=5)
    .map("/".join)
    .filter(lambda p: len(p.encode("utf-8")) <= HUB_MAX_PATH_BYTES)
)


@given(safe_names)
def test_valid_names_round_trip(name: str) -> None:
    assert validate_name(name) == name
    store = FileStore(Path("/nonexistent"))
    # The path stays directly inside files/ with exactly this name.
    p = store.path(name)
    assert p.parent == store.files_dir
    assert p.name == name


@given(st.text(max_size=40), st.sampled_from(["\\", "\x00"]), st.text(max_size=40))
def test_backslash_and_nul_rejected(prefix: str, bad: str, suffix: str) -> None:
    with pytest.raises(UnsafePathError):
        validate_name(prefix + bad + suffix)


@given(st.text(max_size=40), st.text(max_size=40))
def test_slash_is_never_part_of_a_segment(prefix: str, suffix: str) -> None:
    with pytest.raises(UnsafePathError):
        validate_segment(prefix + "/" + suffix)


@given(safe_paths)
def test_valid_paths_round_trip_and_stay_inside(path: str) -> None:
    assert validate_name(path) == path
    assert validate_folder(path) == path
    store = FileStore(Path("/nonexistent"))
    p = store.path(path)
    assert p.relative_to(store.files_dir).as_posix() == path
    assert ".." not in p.relative_to(store.files_dir).parts


@given(safe_paths, st.sampled_from(["", ".", "..", ".hidden"]), safe_paths)
def test_a_bad_segment_anywhere_is_rejected(before: str, bad: str, after: str) -> None:
    # An empty segment is a leading, trailing or double "/".
    for path in (f"{bad}/{after}", f"{before}/{bad}", f"{before}/{bad}/{after}"):
        with pytest.raises(UnsafePathError):
            validate_name(path)


def test_path_limits() -> None:
    deep = "/".join(["d"] * HUB_MAX_PATH_DEPTH)
    assert validate_name(deep) == deep
    with pytest.raises(UnsafePathError, match="deeper"):
        validate_name(deep + "/x")
    long = "/".join(["a" * 200] * 6)  # every segment fine, the whole too long
    assert len(long) > HUB_MAX_PATH_BYTES
    with pytest.raises(UnsafePathError, match="longer"):
        validate_name(long)
    with pytest.raises(UnsafePathError):
        validate_name("ok/" + "b" * 256)
    assert validate_folder("") == ""


@given(st.text(max_size=40), st.characters(whitelist_categories=("Cc",)), st.text(max_size=40))
def test_control_chars_rejected(prefix: str, ctrl: str, suffix: str) -> None:
    with pytest.raises(UnsafePathError):
        validate_name(prefix + ctrl + suffix)


@given(safe_names)
def test_leading_dot_rejected(name: str) -> None:
    with pytest.raises(UnsafePathError):
        validate_name("." + name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../x",
        "a/../b",
        "/etc/passwd",
        "\\\\server\\x",
        "C:\\x",
        ".partial",
        "a//b",
        "a/",
    ],
)
def test_classic_bad_names(name: str) -> None:
    with pytest.raises(UnsafePathError):
        validate_name(name)


def test_length_limit_in_utf8_bytes() -> None:
    assert validate_name("a" * 255) == "a" * 255
    with pytest.raises(UnsafePathError):
        validate_name("a" * 256)
    # 128 two-byte characters = 256 bytes: refused although only 128 characters long.
    with pytest.raises(UnsafePathError):
        validate_name("é" * 128)
    assert validate_name("é" * 127)


@given(st.integers(min_value=1, max_value=300))
def test_dot_only_names_rejected(n: int) -> None:
    with pytest.raises(UnsafePathError):
        validate_name("." * n)


def test_long_name_meta_file_fits(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    name = "b" * 255
    meta = store._meta_path(name)
    assert len(meta.name.encode()) <= 255
    assert meta.name == hashlib.sha256(name.encode()).hexdigest() + ".json"


@settings(max_examples=50)
@given(safe_paths, st.binary(max_size=100))
def test_valid_names_round_trip_through_the_store(name: str, data: bytes) -> None:
    # The filesystem must accept every name validate_name lets through.
    async def scenario(root: Path) -> None:
        store = FileStore(root)
        store.prepare()

        async def body() -> AsyncIterator[bytes]:
            yield data

        info, created = await store.put(name, body())
        assert created
        assert info.name == name
        assert [f.name for f in await store.list()] == [name]
        assert store.path(name).read_bytes() == data
        assert (await store.info(name)).sha256 == hashlib.sha256(data).hexdigest()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp)))
