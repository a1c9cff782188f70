"""Every hub file is a torrent: GET /torrents/NAME.torrent, piece cache, magnets in the listing."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import aiohttp
import pytest

from hubswarm.hub.app import HubConfig
from hubswarm.hub.server import running_hub
from hubswarm.hub.tracker import TrackerState, add_tracker_routes
from hubswarm.proto.metainfo import parse_magnet, parse_metainfo
from hubswarm.swarm.maketorrent import create_torrent

from .conftest import Hub, HubFactory, make_tokens

MIB = 1 << 20


async def _put(session: aiohttp.ClientSession, hub: Hub, name: str, data: bytes) -> None:
    async with session.put(
        f"{hub.url}/files/{name}", data=io.BytesIO(data), headers=hub.auth("write")
    ) as r:
        assert r.status in (200, 201), await r.text()


async def _torrent(session: aiohttp.ClientSession, hub: Hub, name: str) -> bytes:
    async with session.get(f"{hub.url}/torrents/{name}.torrent", headers=hub.auth("read")) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"] == "application/x-bittorrent"
        return await r.read()


def _pieces_files(hub: Hub) -> list[Path]:
    d = hub.data_dir / ".pieces"
    return sorted(d.iterdir()) if d.exists() else []


@pytest.mark.parametrize("size", [1, 16 * 1024, 16 * 1024 + 1, 3 * MIB + 5])
async def test_torrent_matches_maketorrent(
    hub: Hub, session: aiohttp.ClientSession, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    await _put(session, hub, "f.bin", data)
    assert len(_pieces_files(hub)) == 1  # hashed while the upload streamed in
    mi = parse_metainfo(await _torrent(session, hub, "f.bin"))
    local = tmp_path / "f.bin"
    local.write_bytes(data)
    ref, _ = create_torrent(local, web_seeds=["x"])
    # Same info dict as `hubswarm torrent create` makes of the same bytes: same info-hash.
    assert mi.info.raw == ref.raw
    assert mi.url_list == (f"{hub.url}/files/f.bin",)
    assert mi.trackers == []  # this hub runs no tracker


async def test_announce_is_the_hubs_tracker(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    tokens, _ = make_tokens(data_dir)
    config = HubConfig(data_dir=data_dir, anonymous_read=True, shutdown_timeout=2.0)
    configure = lambda app: add_tracker_routes(app, TrackerState())  # noqa: E731
    async with (
        running_hub(config, configure=configure) as url,
        aiohttp.ClientSession() as s,
    ):
        auth = {"Authorization": f"Bearer {tokens['write']}"}
        async with s.put(f"{url}/files/a b.txt", data=b"hello", headers=auth) as r:
            assert r.status == 201
        async with s.get(f"{url}/torrents/a%20b.txt.torrent") as r:
            assert r.status == 200
            mi = parse_metainfo(await r.read())
        async with s.get(f"{url}/files", headers={"Accept": "application/json"}) as r:
            listing = (await r.json())["files"]
    assert mi.trackers == [f"{url}/announce"]
    assert mi.url_list == (f"{url}/files/a%20b.txt",)
    assert mi.info.name == "a b.txt"
    (entry,) = listing
    assert entry["info_hash"] == mi.info_hash.hex()
    m = parse_magnet(entry["magnet"])
    assert m.info_hash == mi.info_hash
    assert m.trackers == (f"{url}/announce",)
    assert m.web_seeds == (f"{url}/files/a%20b.txt",)


async def test_file_from_before_gets_pieces_on_first_request(
    hub: Hub, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = os.urandom(MIB + 3)
    (hub.data_dir / "files" / "old.bin").write_bytes(data)  # no pieces stored
    async with session.get(f"{hub.url}/files", headers=hub.auth("read")) as r:
        (entry,) = (await r.json())["files"]
    assert entry["magnet"] is None
    assert entry["info_hash"] is None
    # Several at once: hashed once, all get the same torrent.
    results = await asyncio.gather(*(_torrent(session, hub, "old.bin") for _ in range(4)))
    assert len(set(results)) == 1
    assert len(_pieces_files(hub)) == 1
    local = tmp_path / "old.bin"
    local.write_bytes(data)
    ref, _ = create_torrent(local)
    assert parse_metainfo(results[0]).info.raw == ref.raw
    async with session.get(f"{hub.url}/files", headers=hub.auth("read")) as r:
        (entry,) = (await r.json())["files"]
    assert entry["info_hash"] == ref.info_hash.hex()


async def test_new_content_new_torrent(hub: Hub, session: aiohttp.ClientSession) -> None:
    await _put(session, hub, "f", b"one" * 1000)
    first = parse_metainfo(await _torrent(session, hub, "f"))
    await _put(session, hub, "f", b"two" * 1000)
    second = parse_metainfo(await _torrent(session, hub, "f"))
    assert first.info_hash != second.info_hash
    assert second.info.total_length == 3000


async def test_chunked_upload_gets_pieces_lazily(hub: Hub, session: aiohttp.ClientSession) -> None:
    async def body():  # no Content-Length: the piece length is not known while it streams
        yield b"x" * 1000
        yield b"y" * 1000

    async with session.put(f"{hub.url}/files/c", data=body(), headers=hub.auth("write")) as r:
        assert r.status == 201
    assert _pieces_files(hub) == []
    mi = parse_metainfo(await _torrent(session, hub, "c"))
    assert mi.info.total_length == 2000


async def test_token_in_query_goes_to_the_web_seed(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    await _put(session, hub, "f", b"abc")
    token = hub.tokens["read"]
    async with session.get(f"{hub.url}/torrents/f.torrent?token={token}") as r:
        assert r.status == 200
        mi = parse_metainfo(await r.read())
    assert mi.url_list == (f"{hub.url}/files/f?token={token}",)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/torrents/missing.torrent", 404),
        ("/torrents/f", 404),
        ("/torrents/..%2Fx.torrent", 400),
        ("/torrents/%FF.torrent", 400),
        ("/torrents/empty.torrent", 409),
    ],
)
async def test_bad_requests(
    hub: Hub, session: aiohttp.ClientSession, path: str, status: int
) -> None:
    await _put(session, hub, "f", b"abc")
    await _put(session, hub, "empty", b"")
    async with session.get(f"{hub.url}{path}", headers=hub.auth("read")) as r:
        assert r.status == status
        assert (await r.json())["status"] == status


async def test_needs_read_role(hub: Hub, session: aiohttp.ClientSession) -> None:
    await _put(session, hub, "f", b"abc")
    async with session.get(f"{hub.url}/torrents/f.torrent") as r:
        assert r.status == 401


async def test_anonymous_read_hub(make_hub: HubFactory) -> None:
    async with make_hub(anonymous_read=True) as hub, aiohttp.ClientSession() as s:
        await _put(s, hub, "f", b"abc")
        async with s.get(f"{hub.url}/torrents/f.torrent") as r:
            assert r.status == 200


# --- folders -----------------------------------------------------------------------------------


async def test_folder_is_a_multi_file_torrent(make_hub: HubFactory, tmp_path: Path) -> None:
    files = {
        "top/a.txt": b"a" * 20_000,
        "top/sub/b.bin": os.urandom(70_000),
        "top/sub/empty": b"",
        "top/Z": b"zz",
        "other.txt": b"not in the folder",
    }
    local = tmp_path / "local"
    async with make_hub(anonymous_read=True) as hub, aiohttp.ClientSession() as s:
        for name, data in files.items():
            await _put(s, hub, name, data)
            (local / name).parent.mkdir(parents=True, exist_ok=True)
            (local / name).write_bytes(data)
        raw = await _torrent(s, hub, "top")
        again = await _torrent(s, hub, "top")  # from the cache this time
        async with s.get(f"{hub.url}/torrents/top/sub.torrent") as r:
            sub = parse_metainfo(await r.read())
    mi = parse_metainfo(raw)
    assert raw == again
    ref, _ = create_torrent(local / "top")
    assert mi.info.raw == ref.raw  # what `hubswarm torrent create` makes of the same folder
    assert mi.info.is_multi_file
    assert mi.url_list == (f"{hub.url}/files/",)  # BEP 19: + "top/sub/b.bin"
    assert sub.info.name == "sub"
    assert sub.url_list == (f"{hub.url}/files/top/",)


async def test_folder_without_bytes_is_409(hub: Hub, session: aiohttp.ClientSession) -> None:
    await _put(session, hub, "d/empty", b"")
    async with session.get(f"{hub.url}/torrents/d.torrent", headers=hub.auth("read")) as r:
        assert r.status == 409
