"""Folders in the hub: paths a/b/c over HTTP, per-folder listings, deletes and conflicts."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from hubswarm.errors import UnsafePathError
from hubswarm.hub.store import FileStore, FolderInfo

from .conftest import Hub


async def _put(session: aiohttp.ClientSession, hub: Hub, path: str, data: bytes) -> int:
    url = URL(f"{hub.url}/files/{path}", encoded=True)
    async with session.put(url, data=data, headers=hub.auth("write")) as r:
        return r.status


async def _get_json(session: aiohttp.ClientSession, hub: Hub, path: str) -> tuple[int, dict]:
    url = URL(f"{hub.url}{path}", encoded=True)
    async with session.get(url, headers=hub.auth("read")) as r:
        return r.status, await r.json()


async def test_nested_upload_listing_sizes_and_counts(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    assert await _put(session, hub, "top.txt", b"t" * 3) == 201
    assert await _put(session, hub, "music/a.mp3", b"a" * 10) == 201
    assert await _put(session, hub, "music/live/b.mp3", b"b" * 20) == 201
    # An encoded "/" is the same path as a plain one.
    assert await _put(session, hub, "music%2Flive%2Fc.mp3", b"c" * 30) == 201
    assert (hub.data_dir / "files" / "music" / "live" / "c.mp3").read_bytes() == b"c" * 30

    status, top = await _get_json(session, hub, "/files")
    assert status == 200
    # "files" lists every file below (as before folders existed: `hubswarm ls` sees them all).
    assert [f["name"] for f in top["files"]] == [
        "music/a.mp3",
        "music/live/b.mp3",
        "music/live/c.mp3",
        "top.txt",
    ]
    assert top["folders"] == [{"name": "music", "size": 60, "files": 3}]
    assert (top["folder"], top["size"], top["count"]) == ("", 63, 4)

    status, music = await _get_json(session, hub, "/files/music/")
    assert status == 200
    assert music["folder"] == "music"
    assert music["folders"] == [{"name": "music/live", "size": 50, "files": 2}]
    assert music["size"] == 60

    async with session.get(
        f"{hub.url}/files/music", headers=hub.auth("read"), allow_redirects=False
    ) as r:
        assert r.status == 301
        assert r.headers["Location"].endswith("/files/music/")
    async with session.get(f"{hub.url}/files/music/live/b.mp3", headers=hub.auth("read")) as r:
        assert r.status == 200
        assert await r.read() == b"b" * 20
    status, _ = await _get_json(session, hub, "/files/nowhere/")
    assert status == 404
    status, _ = await _get_json(session, hub, "/files/top.txt/")
    assert status == 404


async def test_file_and_folder_conflicts_are_409(hub: Hub, session: aiohttp.ClientSession) -> None:
    assert await _put(session, hub, "a", b"file") == 201
    assert await _put(session, hub, "a/b", b"x") == 409  # "a" is a file
    assert await _put(session, hub, "d/x", b"x") == 201
    assert await _put(session, hub, "d", b"x") == 409  # "d" is a folder
    assert hub.partials() == []
    assert (hub.data_dir / "files" / "a").read_bytes() == b"file"


async def test_delete_files_and_empty_folders(hub: Hub, session: aiohttp.ClientSession) -> None:
    assert await _put(session, hub, "d/e/f.txt", b"f") == 201

    async def delete(path: str, role: str = "write") -> int:
        url = URL(f"{hub.url}/files/{path}", encoded=True)
        async with session.delete(url, headers=hub.auth(role)) as r:
            return r.status

    assert await delete("d/e/", role="read") == 403
    assert await delete("d/e/") == 409  # not empty
    assert await delete("d/e") == 409
    assert await delete("d/e/f.txt") == 204
    assert not (hub.data_dir / "files" / "d" / "e" / "f.txt").exists()
    status, listing = await _get_json(session, hub, "/files/d/")
    assert status == 200
    assert listing["folders"] == [{"name": "d/e", "size": 0, "files": 0}]
    assert await delete("d/e/") == 204
    assert await delete("d") == 204
    assert await delete("d") == 404
    async with session.delete(f"{hub.url}/files/", headers=hub.auth("admin")) as r:
        assert r.status == 405  # the top folder stays
    status, top = await _get_json(session, hub, "/files/")
    assert (status, top["folder"], top["files"]) == (200, "", [])
    assert list((hub.data_dir / "files").iterdir()) == []


async def test_bad_folder_paths_are_400(hub: Hub, session: aiohttp.ClientSession) -> None:
    for path in ("a//b", "/abs", "a/../b", "a/./b", "a/.hidden/b", "a%5Cb/c", "x/%00"):
        assert await _put(session, hub, path, b"x") == 400, path
    for path in ("/files/a//", "/files/../", "/files/.meta/"):
        status, body = await _get_json(session, hub, path)
        assert status in (400, 404), path
        assert body["status"] == status
    assert list((hub.data_dir / "files").iterdir()) == []


def test_store_listing_skips_symlinked_folders_and_hidden_names(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "data")
    store.prepare()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    (store.files_dir / "link").symlink_to(outside, target_is_directory=True)
    (store.files_dir / "ok").mkdir()
    (store.files_dir / "ok" / "f").write_bytes(b"f")
    (store.files_dir / "ok" / ".hidden").write_bytes(b"h")
    (store.files_dir / "ok" / "bad\nname").write_bytes(b"b")
    listing = store.listing_sync("")
    assert [f.name for f in listing.files] == ["ok/f"]
    assert listing.folders == [FolderInfo("ok", 1, 1)]
    assert listing.direct_files() == []
    assert not store.is_folder("link")
    with pytest.raises(FileNotFoundError):
        store.listing_sync("link")
    with pytest.raises(FileNotFoundError):
        store.listing_sync("ok/f")
    with pytest.raises(UnsafePathError):
        store.listing_sync("../outside")
