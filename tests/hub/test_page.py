"""The page's server side over HTTP: sign-in cookies, CSRF, CSP, roles, logs, live events."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.hub.page import _safe_next, breadcrumbs, human_size
from hubswarm.hub.sessions import COOKIE, SessionStore

from .conftest import Hub, HubFactory, tls_contexts


async def _page(session: aiohttp.ClientSession, hub: Hub, cookie: str, path: str = "/files") -> str:
    """The HTML page at ``path`` as the browser with ``cookie`` sees it."""
    async with session.get(
        f"{hub.url}{path}", headers={"Cookie": cookie, "Accept": "text/html"}
    ) as r:
        assert r.status == 200
        return await r.text()


async def _sign_in(session: aiohttp.ClientSession, hub: Hub, role: str) -> tuple[str, str]:
    """Sign in with ``role``'s token; return (cookie header value, CSRF token of the page)."""
    async with session.post(
        f"{hub.url}/signin",
        data={"token": hub.tokens[role], "next": "/files"},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
        assert r.headers["Location"] == "/files"
        morsel = SimpleCookie(r.headers["Set-Cookie"])[COOKIE]
    cookie = f"{COOKIE}={morsel.value}"
    page = await _page(session, hub, cookie)
    match = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert match is not None
    return cookie, match.group(1)


async def test_sign_in_sets_a_strict_http_only_cookie(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    async with session.post(
        f"{hub.url}/signin",
        data={"token": hub.tokens["read"], "next": "/files/x/"},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
        assert r.headers["Location"] == "/files/x/"
        raw = r.headers["Set-Cookie"]
    morsel = SimpleCookie(raw)[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/"
    assert not morsel["secure"]  # plain http here; see the TLS test
    assert hub.tokens["read"] not in raw

    for bad in ("", "nope", "x" * 10_000):
        async with session.post(f"{hub.url}/signin", data={"token": bad}) as r:
            assert r.status == 401
            assert "Set-Cookie" not in r.headers
            assert "unknown or revoked token" in await r.text()


async def test_cookie_writes_need_the_csrf_token_bearer_does_not(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    cookie, csrf = await _sign_in(session, hub, "write")
    url = f"{hub.url}/files/f.txt"
    async with session.put(url, data=b"1", headers={"Cookie": cookie}) as r:
        assert r.status == 403
        assert "CSRF" in (await r.json())["error"]
    async with session.put(url, data=b"1", headers={"Cookie": cookie, "X-CSRF-Token": "x"}) as r:
        assert r.status == 403
    async with session.put(url, data=b"1", headers={"Cookie": cookie, "X-CSRF-Token": csrf}) as r:
        assert r.status == 201
    # Reads need no CSRF token; an API client with Bearer needs none either.
    async with session.get(url, headers={"Cookie": cookie}) as r:
        assert await r.read() == b"1"
    async with session.put(url, data=b"2", headers=hub.auth("write")) as r:
        assert r.status == 200
    async with session.delete(url, headers={"Cookie": cookie, "X-CSRF-Token": csrf}) as r:
        assert r.status == 204


async def test_tus_uploads_take_the_session_with_its_csrf_token(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    """The page uploads over tus: a session's cookie works there as for PUT, with the CSRF
    token on every state-changing request (HEAD, a safe method, needs none), and a read
    role's session is refused."""
    cookie, csrf = await _sign_in(session, hub, "write")
    tus = {"Tus-Resumable": "1.0.0", "Cookie": cookie}
    create = {**tus, "Upload-Length": "3", "Upload-Metadata": "filename " + "dC50eHQ="}  # t.txt
    for headers in (create, {**create, "X-CSRF-Token": "x"}):
        async with session.post(f"{hub.url}/uploads/", headers=headers) as r:
            assert r.status == 403
    async with session.post(f"{hub.url}/uploads/", headers={**create, "X-CSRF-Token": csrf}) as r:
        assert r.status == 201
        url = hub.url + "/uploads/" + r.headers["Location"].rsplit("/", 1)[1]
    async with session.head(url, headers=tus) as r:
        assert r.status == 200
        assert r.headers["Upload-Offset"] == "0"
    patch = {**tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    async with session.patch(url, data=b"abc", headers=patch) as r:
        assert r.status == 403
    async with session.patch(url, data=b"abc", headers={**patch, "X-CSRF-Token": csrf}) as r:
        assert r.status == 204
    async with session.get(f"{hub.url}/files/t.txt", headers={"Cookie": cookie}) as r:
        assert await r.read() == b"abc"
    cookie_r, csrf_r = await _sign_in(session, hub, "read")
    headers = {**create, "Cookie": cookie_r, "X-CSRF-Token": csrf_r}
    async with session.post(f"{hub.url}/uploads/", headers=headers) as r:
        assert r.status == 403


async def test_read_role_page_has_no_controls_and_server_refuses(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    async with session.put(f"{hub.url}/files/a.txt", data=b"a", headers=hub.auth("write")) as r:
        assert r.status == 201
    cookie, csrf = await _sign_in(session, hub, "read")
    page = await _page(session, hub, cookie)
    assert "a.txt" in page
    assert 'id="pick-files"' not in page
    assert 'class="delete"' not in page
    async with session.delete(
        f"{hub.url}/files/a.txt", headers={"Cookie": cookie, "X-CSRF-Token": csrf}
    ) as r:
        assert r.status == 403
    cookie_w, _ = await _sign_in(session, hub, "write")
    page = await _page(session, hub, cookie_w)
    assert 'id="pick-files"' in page
    assert 'class="delete"' in page


async def test_page_headers_csp_and_no_inline_script(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    cookie, _ = await _sign_in(session, hub, "read")
    for path in ("/files", "/signin"):
        async with session.get(
            f"{hub.url}{path}", headers={"Cookie": cookie, "Accept": "text/html"}
        ) as r:
            assert r.status == 200
            csp = r.headers["Content-Security-Policy"]
            page = await r.text()
        assert "script-src 'self'" in csp
        assert "default-src 'none'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        # Every script is an external file of ours; no event-handler attributes.
        assert re.findall(r"<script(?![^>]*\bsrc=\"/static/)", page) == []
        assert not re.search(r"\son[a-z]+=", page)
    for name in ("hub.js", "hub.css", "favicon.svg"):
        async with session.get(f"{hub.url}/static/{name}") as r:
            assert r.status == 200
            assert r.headers["X-Content-Type-Options"] == "nosniff"
    async with session.get(f"{hub.url}/static/../app.py") as r:
        assert r.status in (403, 404)


async def test_revoked_token_ends_its_sessions_and_sign_out(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    cookie, csrf = await _sign_in(session, hub, "read")
    async with session.get(f"{hub.url}/files", headers={"Cookie": cookie}) as r:
        assert r.status == 200
    async with session.post(f"{hub.url}/signout", headers={"Cookie": cookie}) as r:
        assert r.status == 403  # no CSRF token
    async with session.post(
        f"{hub.url}/signout", data={"csrf": csrf}, headers={"Cookie": cookie}, allow_redirects=False
    ) as r:
        assert r.status == 303
    async with session.get(f"{hub.url}/files", headers={"Cookie": cookie}) as r:
        assert r.status == 401

    cookie, _ = await _sign_in(session, hub, "read")
    async with session.delete(
        f"{hub.url}/tokens/{hub.token_ids['read']}", headers=hub.auth("admin")
    ) as r:
        assert r.status == 204
    async with session.get(f"{hub.url}/files", headers={"Cookie": cookie}) as r:
        assert r.status == 401
    # A browser without a session is sent to the form, an API client gets 401.
    async with session.get(
        f"{hub.url}/files/x/",
        headers={"Cookie": cookie, "Accept": "text/html"},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
        assert r.headers["Location"].startswith("/signin?next=")


async def test_sign_in_from_another_site_is_refused(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    form = {"token": hub.tokens["read"]}
    async with session.post(
        f"{hub.url}/signin", data=form, headers={"Origin": "http://evil.example"}
    ) as r:
        assert r.status == 403
        assert "Set-Cookie" not in r.headers
    origin = hub.url  # the page's own origin is fine
    async with session.post(
        f"{hub.url}/signin", data=form, headers={"Origin": origin}, allow_redirects=False
    ) as r:
        assert r.status == 303


async def test_page_links_torrents_of_files_in_folders(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    async with session.put(f"{hub.url}/files/d/t.bin", data=b"t" * 5000, headers=hub.auth()) as r:
        assert r.status == 201
    cookie, _ = await _sign_in(session, hub, "read")
    page = await _page(session, hub, cookie, "/files/d/")
    match = re.search(r'class="torrent" href="([^"]+)"', page)
    assert match is not None
    assert match.group(1) == "/torrents/d/t.bin.torrent"
    assert 'class="magnet" href="magnet:?xt=urn:btih:' in page
    async with session.get(f"{hub.url}{match.group(1)}", headers={"Cookie": cookie}) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/x-bittorrent"


async def test_token_link_becomes_a_session_and_leaves_the_address(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    async with session.get(
        f"{hub.url}/files?token={hub.tokens['write']}",
        headers={"Accept": "text/html"},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
        assert r.headers["Location"] == "/files"
        assert COOKIE in SimpleCookie(r.headers["Set-Cookie"])


async def test_tokens_never_reach_the_access_log(
    hub: Hub, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = hub.tokens["admin"]
    async with session.get(f"{hub.url}/files?token={token}") as r:
        assert r.status == 200
    async with session.get(f"{hub.url}/files?token={token}", headers={"Accept": "text/html"}):
        pass
    cookie, _ = await _sign_in(session, hub, "admin")
    async with session.get(f"{hub.url}/stats", headers={"Cookie": cookie}) as r:
        assert r.status == 200
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any("/signin" in line for line in access)
    assert any("/files" in line for line in access)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in text
    assert cookie.split("=", 1)[1] not in text


async def test_sign_in_under_tls_sets_secure(make_hub: HubFactory, tmp_path: Path) -> None:
    server_ctx, client_ctx = tls_contexts()
    async with (
        make_hub(ssl_context=server_ctx) as hub,
        aiohttp.ClientSession() as s,
        s.post(
            f"{hub.url}/signin",
            data={"token": hub.tokens["read"]},
            ssl=client_ctx,
            allow_redirects=False,
        ) as r,
    ):
        assert r.status == 303
        assert SimpleCookie(r.headers["Set-Cookie"])[COOKIE]["secure"] is True


async def test_events_stream_counters(hub: Hub, session: aiohttp.ClientSession) -> None:
    async with session.put(f"{hub.url}/files/e.bin", data=b"e" * 1000, headers=hub.auth()) as r:
        assert r.status == 201
    async with session.get(f"{hub.url}/files/e.bin", headers=hub.auth("read")) as r:
        assert await r.read() == b"e" * 1000
    async with session.get(f"{hub.url}/events", headers=hub.auth("read")) as r:
        assert r.status == 200
        assert r.content_type == "text/event-stream"
        events = []
        async for line in r.content:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
            if len(events) == 2:
                break
    assert events[0]["received"] == 1000
    assert events[0]["sent"] == 1000
    assert events[0]["downloads"] == {"e.bin": 1}
    assert events[1]["t"] > events[0]["t"]
    async with session.get(f"{hub.url}/events") as r:
        assert r.status == 401


# --- pure helpers ------------------------------------------------------------------------


def test_human_size() -> None:
    assert human_size(0) == "0 B"
    assert human_size(1023) == "1023 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(3 << 20) == "3.0 MiB"
    assert human_size(1 << 60).endswith("PiB")


def test_breadcrumbs() -> None:
    assert breadcrumbs("") == [("files", "/files")]
    assert breadcrumbs("a b/c") == [
        ("files", "/files"),
        ("a b", "/files/a%20b/"),
        ("c", "/files/a%20b/c/"),
    ]


@given(st.text(max_size=60))
def test_sign_in_never_redirects_off_the_hub(target: str) -> None:
    out = _safe_next(target)
    assert out.startswith("/")
    assert not out.startswith(("//", "/\\"))


def test_session_store_expiry_cap_and_revocation() -> None:
    store = SessionStore(ttl=10.0, max_sessions=2)
    a, sa = store.create("h1", now=0.0)
    b, _ = store.create("h2", now=1.0)
    assert store.get(a, 5.0) == sa
    assert sa.csrf_ok(sa.csrf)
    assert not sa.csrf_ok(None)
    assert not sa.csrf_ok(sa.csrf + "x")
    assert store.get(a, 10.0) is None  # expired, and forgotten
    c, _ = store.create("h1", now=2.0)
    d, _ = store.create("h3", now=3.0)  # over the cap: the oldest (b) goes
    assert store.get(b, 4.0) is None
    assert len(store) == 2
    store.drop_token("h1")
    assert store.get(c, 4.0) is None
    assert store.get(d, 4.0) is not None
    assert store.get("", 4.0) is None


async def test_open_event_streams_end_when_the_hub_stops(make_hub: HubFactory) -> None:
    # With a 30 s grace period, a stream that ignored shutdown would hold the hub for 30 s.
    async with aiohttp.ClientSession() as s:
        hub_cm = make_hub(shutdown_timeout=30.0)
        hub = await hub_cm.__aenter__()
        try:
            r = await s.get(f"{hub.url}/events", headers=hub.auth("read"))
            assert (await r.content.readline()).startswith(b"retry:")
        finally:
            async with asyncio.timeout(10):
                await hub_cm.__aexit__(None, None, None)
        async with asyncio.timeout(10):
            rest = await r.read()
        assert rest.count(b"data: ") <= 2
        r.release()
