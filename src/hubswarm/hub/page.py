"""The hub's page for browsers: a folder listing rendered with Jinja2, sign-in, live stats.

Routes: ``GET|POST /signin`` (a token entered once becomes a session cookie, see
``hub.sessions``), ``POST /signout``, ``GET /events`` (Server-Sent Events: the counters of
``/stats`` and the tracker's swarm state, once a second) and ``/static/`` (the page's own CSS and
JavaScript, shipped in the package: no CDN, no build step). The listing itself is
``app.list_files``, which hands browsers to :func:`render_listing`.

Every HTML response carries a strict Content-Security-Policy: scripts and styles only from
``/static/`` (no inline script, so an injected ``<script>`` or ``onerror=`` does nothing), no
framing, forms post only here. Names are escaped by Jinja2's autoescape and inserted by the
script with ``textContent``, never as HTML.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import hdrs, web

from hubswarm.hub.app import (
    CLOCK_KEY,
    SESSIONS_KEY,
    STATS_KEY,
    TOKENS_KEY,
    _HTTPJSONError,
    authorize,
)
from hubswarm.hub.auth import Role, TokenRecord, hash_token
from hubswarm.hub.sessions import COOKIE, CSRF_HEADER
from hubswarm.hub.store import Listing
from hubswarm.hub.tracker import tracker_state_key
from hubswarm.limits import HUB_EVENTS_INTERVAL, HUB_EVENTS_MAX_AGE, HUB_EVENTS_MAX_STREAMS

_HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": with it Chromium sends "Origin: null" on our own sign-in form.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# A sign-in form field longer than this is not a token (ours are 43 characters).
_MAX_TOKEN_FIELD = 512
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"`` (binary units, as ``ls -h``)."""
    value = float(n)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_date(ts: float) -> str:
    """Unix seconds -> ``"2026-12-04 18:41 UTC"``."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def file_href(name: str) -> str:
    """The URL path of a stored file (each folder segment quoted, ``/`` kept)."""
    return "/files/" + quote(name, safe="/")


def breadcrumbs(folder: str) -> list[tuple[str, str]]:
    """(label, href) from the top folder down to ``folder``."""
    crumbs = [("files", "/files")]
    parts = folder.split("/") if folder else []
    for i, part in enumerate(parts):
        crumbs.append((part, file_href("/".join(parts[: i + 1])) + "/"))
    return crumbs


def signin_url(request: web.Request) -> str:
    """Where a browser without a session is sent: the sign-in form, then back here."""
    return "/signin?next=" + quote(request.rel_url.path_qs, safe="")


def _safe_next(target: str | None) -> str:
    # Only a path on this hub: "//evil" or "https://evil" would make sign-in an open redirect.
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/files"
    return target


def _swarm_counts(request: web.Request, info_hashes: dict[str, str]) -> dict[str, list[int]]:
    """name -> [seeds, leechers, completed] from the built-in tracker, for files it knows."""
    state = request.app.get(tracker_state_key)
    if state is None or not info_hashes:
        return {}
    by_hash = {}
    for name, hexhash in info_hashes.items():
        with contextlib.suppress(ValueError):
            by_hash[bytes.fromhex(hexhash)] = name
    scraped = state.scrape(by_hash, state.clock.now())
    return {
        by_hash[h]: [f.complete, f.incomplete, f.downloaded]
        for h, f in scraped.files.items()
        if h in by_hash
    }


def _info_hashes(files: list[dict[str, object]]) -> dict[str, str]:
    return {str(f["name"]): str(f["info_hash"]) for f in files if f.get("info_hash")}


async def render_listing(
    request: web.Request,
    record: TokenRecord | None,
    listing: Listing,
    files: list[dict[str, object]],
) -> web.StreamResponse:
    """The page of one folder for ``record`` (None: anonymous reader)."""
    if "token" in request.query and record is not None:
        # A link with ?token=: open a session and drop the token from the address bar.
        token = request.query["token"]
        return _signed_in(request, token, request.rel_url.raw_path)
    sessions = request.app[SESSIONS_KEY]
    session = sessions.get(request.cookies.get(COOKIE), request.app[CLOCK_KEY].now())
    stats = request.app[STATS_KEY]
    swarms = _swarm_counts(request, _info_hashes(files))
    by_name = {str(f["name"]): f for f in files}
    rows = []
    for info in listing.direct_files():
        extra = by_name.get(info.name, {})
        rows.append(
            {
                "name": info.name,
                "label": info.name.rsplit("/", 1)[-1],
                "size": info.size,
                "mtime": info.mtime,
                "sha256": info.sha256,
                "href": file_href(info.name),
                "torrent": "/torrents/" + quote(info.name, safe="/") + ".torrent",
                "magnet": extra.get("magnet"),
                "swarm": swarms.get(info.name),
                "downloads": stats.downloads.get(info.name, 0),
            }
        )
    folders = [
        {
            "name": d.name,
            "label": d.name.rsplit("/", 1)[-1],
            "size": d.size,
            "files": d.files,
            "href": file_href(d.name) + "/",
        }
        for d in listing.folders
    ]
    context = {
        "folder": listing.folder,
        "crumbs": breadcrumbs(listing.folder),
        "files": rows,
        "folders": folders,
        "total_size": listing.size,
        "total_count": len(listing.files),
        "role": record.role.label if record is not None else "anonymous",
        "can_write": record is not None and record.role >= Role.WRITE,
        "signed_in": session is not None,
        "csrf": session.csrf if session is not None else "",
    }
    response = aiohttp_jinja2.render_template("listing.html", request, context)
    response.headers.update(_PAGE_HEADERS)
    return response


# --- sign-in -------------------------------------------------------------------------------


def _signed_in(request: web.Request, token: str, target: str) -> web.Response:
    """303 to ``target`` with a fresh session cookie for ``token`` (already checked)."""
    session_id, _session = request.app[SESSIONS_KEY].create(
        hash_token(token), request.app[CLOCK_KEY].now()
    )
    response = web.Response(status=303, headers={hdrs.LOCATION: _safe_next(target)})
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
        max_age=int(request.app[SESSIONS_KEY].ttl),
    )
    response.headers.update(_PAGE_HEADERS)
    return response


async def signin_form(request: web.Request) -> web.Response:
    """``GET /signin``: the token form."""
    context = {"next": _safe_next(request.query.get("next")), "error": None}
    response = aiohttp_jinja2.render_template("signin.html", request, context)
    response.headers.update(_PAGE_HEADERS)
    return response


async def signin(request: web.Request) -> web.StreamResponse:
    """``POST /signin`` (form: token, next): a valid token becomes a session cookie.

    A form posted from another site's page is refused (its ``Origin`` names that site), so no
    one can sign a visitor in with a token of theirs.
    """
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise _HTTPJSONError(403, "sign-in from another site's page")
    form = await request.post()
    token = str(form.get("token", "")).strip()
    target = _safe_next(str(form.get("next", "")))
    record = None
    if 0 < len(token) <= _MAX_TOKEN_FIELD:
        record = await asyncio.to_thread(request.app[TOKENS_KEY].lookup, token)
    if record is None:
        context = {"next": target, "error": "unknown or revoked token"}
        response = aiohttp_jinja2.render_template("signin.html", request, context, status=401)
        response.headers.update(_PAGE_HEADERS)
        return response
    return _signed_in(request, token, target)


async def signout(request: web.Request) -> web.StreamResponse:
    """``POST /signout`` (form field ``csrf``): forget the session and its cookie."""
    sessions = request.app[SESSIONS_KEY]
    cookie = request.cookies.get(COOKIE)
    session = sessions.get(cookie, request.app[CLOCK_KEY].now())
    form = await request.post()
    presented = request.headers.get(CSRF_HEADER) or str(form.get("csrf", ""))
    if session is not None:
        if not session.csrf_ok(presented):
            raise _HTTPJSONError(403, "missing or wrong CSRF token")
        sessions.drop(cookie)
    response = web.Response(status=303, headers={hdrs.LOCATION: "/signin"})
    response.del_cookie(COOKIE, path="/")
    return response


# --- live stats ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Events:
    """The open event streams: a count (capped) and the signal that ends them at shutdown."""

    stop: asyncio.Event | None = None
    streams: int = 0


EVENTS_KEY = web.AppKey("hub_events", _Events)


def _snapshot(request: web.Request) -> dict[str, Any]:
    app = request.app
    stats = app[STATS_KEY]
    state = app.get(tracker_state_key)
    swarm_total = state.swarm_count if state is not None else 0
    return {
        "t": app[CLOCK_KEY].wall(),
        "sent": stats.bytes_sent,
        "received": stats.bytes_received,
        # The event streams themselves are not transfers.
        "active": max(0, stats.active_requests - app[EVENTS_KEY].streams),
        "downloads": dict(stats.downloads.most_common(20)),
        "swarms": swarm_total,
    }


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /events``: ``text/event-stream`` of the hub's counters, one event a second."""
    await authorize(request, Role.READ)
    state = request.app[EVENTS_KEY]
    if state.streams >= HUB_EVENTS_MAX_STREAMS or state.stop is None:
        raise _HTTPJSONError(503, "too many live views open", headers={"Retry-After": "10"})
    clock = request.app[CLOCK_KEY]
    response = web.StreamResponse(
        headers={
            hdrs.CONTENT_TYPE: "text/event-stream",
            hdrs.CACHE_CONTROL: "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    state.streams += 1
    try:
        await response.prepare(request)
        ends = clock.now() + HUB_EVENTS_MAX_AGE
        # "retry": EventSource reconnects after 2 s when the stream ends.
        await response.write(b"retry: 2000\n\n")
        while clock.now() < ends and not state.stop.is_set():
            data = json.dumps(_snapshot(request), separators=(",", ":"))
            await response.write(f"data: {data}\n\n".encode())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HUB_EVENTS_INTERVAL):
                    await state.stop.wait()
    finally:
        state.streams -= 1
    return response


async def _events_start(app: web.Application) -> None:
    app[EVENTS_KEY].stop = asyncio.Event()


async def _events_stop(app: web.Application) -> None:
    # Runs before the server waits for handlers: open streams end now, not at the timeout.
    if (stop := app[EVENTS_KEY].stop) is not None:
        stop.set()


# --- assembly ------------------------------------------------------------------------------


async def _static_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/static/"):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"


def add_page_routes(app: web.Application) -> None:
    """Register the page's templates, static files, sign-in and live stats on ``app``."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        filters={"human_size": human_size, "human_date": human_date},
    )
    app[EVENTS_KEY] = _Events()
    app.on_startup.append(_events_start)
    app.on_shutdown.append(_events_stop)
    app.on_response_prepare.append(_static_headers)
    app.router.add_get("/signin", signin_form)
    app.router.add_post("/signin", signin)
    app.router.add_post("/signout", signout)
    app.router.add_get("/events", events)
    app.router.add_static("/static/", _HERE / "static", follow_symlinks=False)
