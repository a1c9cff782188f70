"""Tokens and roles: storage of hashes only, reload on change, CLI commands, HTTP 401/403."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from hubswarm.cli import cli
from hubswarm.errors import ConfigError
from hubswarm.hub.auth import PerTokenLimiter, Role, TokenStore, hash_token

from .conftest import HubFactory


def test_roles_are_ordered_and_parsed() -> None:
    assert Role.READ < Role.WRITE < Role.ADMIN
    assert Role.parse(" Write ") is Role.WRITE
    with pytest.raises(ConfigError):
        Role.parse("root")


def test_file_holds_only_hashes(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    rec, token = store.create(Role.WRITE)
    text = (tmp_path / "tokens.json").read_text()
    assert token not in text
    assert hash_token(token) in text
    assert store.lookup(token) == rec
    assert store.lookup(token + "x") is None
    assert store.lookup("") is None


def test_revocation_seen_by_another_instance(tmp_path: Path) -> None:
    server_view = TokenStore(tmp_path)
    cli_view = TokenStore(tmp_path)
    rec, token = cli_view.create(Role.READ)
    assert server_view.lookup(token) == rec
    assert cli_view.revoke(rec.id)
    assert server_view.lookup(token) is None
    assert not cli_view.revoke(rec.id)


def test_corrupt_file_fails_closed(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    _, token = store.create(Role.ADMIN)
    (tmp_path / "tokens.json").write_text("{not json")
    assert store.lookup(token) is None
    with pytest.raises(ConfigError):
        store.list()
    (tmp_path / "tokens.json").write_text(json.dumps({"tokens": [{"id": "x"}]}))
    assert store.lookup(token) is None


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["hub", "token", "create", "--data", str(tmp_path), "--role", "write"])
    assert res.exit_code == 0, res.output
    token = res.stdout.strip().splitlines()[0]
    rec = TokenStore(tmp_path).lookup(token)
    assert rec is not None
    assert rec.role is Role.WRITE
    listed = runner.invoke(cli, ["hub", "token", "list", "--data", str(tmp_path)])
    assert rec.id in listed.stdout
    assert "write" in listed.stdout
    assert token not in listed.stdout
    gone = runner.invoke(cli, ["hub", "token", "revoke", "--data", str(tmp_path), rec.id])
    assert gone.exit_code == 0
    assert TokenStore(tmp_path).lookup(token) is None
    again = runner.invoke(cli, ["hub", "token", "revoke", "--data", str(tmp_path), rec.id])
    assert again.exit_code == 1
    assert "no such token" in again.stderr


async def test_http_roles_and_cli_revocation(
    make_hub: HubFactory, session: aiohttp.ClientSession
) -> None:
    async with make_hub() as hub:
        url = f"{hub.url}/files/r.txt"
        async with session.get(f"{hub.url}/files") as r:
            assert r.status == 401
            assert (await r.json())["status"] == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        async with session.get(f"{hub.url}/files", headers={"Authorization": "Basic x"}) as r:
            assert r.status == 401
        async with session.get(f"{hub.url}/files", headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401
        async with session.put(url, data=b"x", headers=hub.auth("read")) as r:
            assert r.status == 403
            assert (await r.json()) == {
                "error": "role read may not do this (write needed)",
                "status": 403,
            }
        async with session.put(url, data=b"x", headers=hub.auth("write")) as r:
            assert r.status == 201
        async with session.get(url, params={"token": hub.tokens["read"]}) as r:
            assert r.status == 200
            assert await r.read() == b"x"
        async with session.get(f"{hub.url}/tokens", headers=hub.auth("write")) as r:
            assert r.status == 403
        async with session.post(
            f"{hub.url}/tokens", json={"role": "read"}, headers=hub.auth("admin")
        ) as r:
            assert r.status == 201
            made = await r.json()
            assert made["role"] == "read"
        async with session.get(f"{hub.url}/tokens", headers=hub.auth("admin")) as r:
            ids = [t["id"] for t in (await r.json())["tokens"]]
            assert made["id"] in ids
        async with session.post(
            f"{hub.url}/tokens", json={"role": "god"}, headers=hub.auth("admin")
        ) as r:
            assert r.status == 400
        # Revoke the read token from the CLI while the server runs: next request is refused.
        res = CliRunner().invoke(
            cli, ["hub", "token", "revoke", "--data", str(hub.data_dir), hub.token_ids["read"]]
        )
        assert res.exit_code == 0
        async with session.get(url, headers=hub.auth("read")) as r:
            assert r.status == 401
        async with session.delete(f"{hub.url}/tokens/{made['id']}", headers=hub.auth("admin")) as r:
            assert r.status == 204
        async with session.get(url, params={"token": made["token"]}) as r:
            assert r.status == 401


async def test_anonymous_read(make_hub: HubFactory, session: aiohttp.ClientSession) -> None:
    async with make_hub(anonymous_read=True) as hub:
        async with session.put(f"{hub.url}/files/a", data=b"a", headers=hub.auth("write")) as r:
            assert r.status == 201
        async with session.get(f"{hub.url}/files/a") as r:
            assert r.status == 200
            assert await r.read() == b"a"
        async with session.put(f"{hub.url}/files/b", data=b"b") as r:
            assert r.status == 401
        async with session.get(f"{hub.url}/tokens") as r:
            assert r.status == 401


# --- rate limit ----------------------------------------------------------------------------------


def test_per_token_limiter_refuses_a_zero_rate() -> None:
    with pytest.raises(ConfigError):
        PerTokenLimiter(rate=0, burst=1, clock=lambda: 0.0)


def test_rate_limiter_keys_are_separate() -> None:
    clock = [0.0]
    lim = PerTokenLimiter(rate=10.0, burst=10.0, clock=lambda: clock[0])
    assert lim.reserve("a", 10) == 0.0
    assert lim.reserve("a", 10) == pytest.approx(1.0)
    assert lim.reserve("b", 10) == 0.0


async def test_rate_limited_transfers_are_correct_and_paced(
    make_hub: HubFactory, session: aiohttp.ClientSession
) -> None:
    rate = 1 << 20
    data = os.urandom(3 * rate)
    async with make_hub(rate_limit=rate) as hub:
        t0 = time.monotonic()
        async with session.put(
            f"{hub.url}/files/r", data=io.BytesIO(data), headers=hub.auth("write")
        ) as r:
            assert r.status == 201
        async with session.get(
            f"{hub.url}/files/r", headers={**hub.auth("read"), "Range": "bytes=100-"}
        ) as r:
            assert r.status == 206
            assert await r.read() == data[100:]
        elapsed = time.monotonic() - t0
    # A lower bound only (never an upper one): 6 MiB through two 1 MiB/s buckets with 1 MiB
    # bursts cannot take less than about 2 s each way.
    assert elapsed > 3.0
