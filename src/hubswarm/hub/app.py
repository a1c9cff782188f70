"""The hub's aiohttp application: the Hub HTTP API of the interfaces brief.

Routes: ``GET /`` (redirect), ``GET /files`` and ``GET /files/FOLDER/`` (JSON or the page),
``PUT|GET|HEAD|DELETE /files/{path}`` (a path may have folders: ``a/b/c.txt``), ``GET /stats``,
``POST|GET /tokens``, ``DELETE /tokens/{id}``; the page's routes are in ``hub.page``. Every
error is a JSON body ``{"error": ..., "status": ...}``. All state lives in ``app[...]`` keys
(no globals), the clock too: every time stamp, uptime, ``If-Range`` date check and rate-limit
wait reads the app's :class:`hubswarm.clock.Clock` (aiohttp's own timeouts read the loop's time).

Downloads go through aiohttp's FileResponse (sendfile, Range, 416) with three fixes of ours:
``If-Range`` is evaluated here (aiohttp ignores an ETag there), the ETag is the file's SHA-256,
and ``Accept-Encoding`` is dropped so a stored ``x.gz`` is never served in place of ``x``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote_to_bytes

from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger, AbstractStreamWriter
from multidict import CIMultiDict

from hubswarm.clock import Clock
from hubswarm.errors import (
    ConfigError,
    DigestMismatchError,
    DiskFullError,
    NameConflictError,
    StorageError,
    UnsafePathError,
    UploadTooLargeError,
)
from hubswarm.hub.auth import PerTokenLimiter, Role, TokenRecord, TokenStore
from hubswarm.hub.ranges import RangeVerdict, etag_list_matches, if_range_matches, plan_range
from hubswarm.hub.sessions import COOKIE, CSRF_HEADER, SessionStore
from hubswarm.hub.store import FileStore, validate_folder, validate_name
from hubswarm.limits import (
    HUB_CHUNK,
    HUB_DEFAULT_MAX_UPLOAD,
    HUB_KEEPALIVE_TIMEOUT,
    HUB_MAX_DIGEST_HEADER,
    HUB_MIN_UPLOAD_BYTES,
    HUB_PROGRESS_INTERVAL,
    HUB_RATE_CHUNK,
    HUB_RATE_MIN_BURST,
    HUB_READ_TIMEOUT,
    HUB_SHUTDOWN_TIMEOUT,
)
from hubswarm.oplog import ThrottledLog, detail, is_disconnect
from hubswarm.ratelimit import MinProgress

log = logging.getLogger(__name__)

_FILES_PREFIX = "/files/"
# SHA-256: 32 bytes, 64 hex digits (the ETag, X-Content-SHA256 and Digest sha-256).
_SHA256_LEN = 32


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Everything the hub app and server need; the CLI fills it from its options."""

    data_dir: Path
    anonymous_read: bool = False
    max_upload: int = HUB_DEFAULT_MAX_UPLOAD
    # Seconds a body chunk may take to arrive (slow-loris, nginx client_body_timeout).
    read_timeout: float = HUB_READ_TIMEOUT
    # An upload must move min_upload_bytes in every progress_interval of waiting on the
    # client (time our own rate limit holds it back does not count), else 408; 0 disables.
    min_upload_bytes: int = HUB_MIN_UPLOAD_BYTES
    progress_interval: float = HUB_PROGRESS_INTERVAL
    # Seconds for a request's headers to arrive and between keep-alive requests.
    keepalive_timeout: float = HUB_KEEPALIVE_TIMEOUT
    shutdown_timeout: float = HUB_SHUTDOWN_TIMEOUT
    # Optional per-token limit in bytes/s, shared by all uploads and downloads of one token.
    rate_limit: int | None = None

    def __post_init__(self) -> None:
        if self.max_upload < 0:
            raise ConfigError("max_upload must be >= 0")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ConfigError("rate_limit must be > 0 bytes/s")
        if self.read_timeout <= 0 or self.keepalive_timeout <= 0:
            raise ConfigError("timeouts must be > 0")
        if self.min_upload_bytes < 0 or self.progress_interval <= 0:
            raise ConfigError("need min_upload_bytes >= 0 and progress_interval > 0")


@dataclass(slots=True)
class HubStats:
    """Counters behind ``GET /stats``; mutated only on the event loop.

    ``bytes_sent`` counts file-body bytes handed to the kernel: for each download the file
    position after sendfile (asyncio moves it by exactly the bytes sent, also on error) minus
    the start offset, so an aborted download counts what really left, not its Content-Length.
    Headers and JSON bodies are not counted. ``bytes_received`` counts upload body bytes.
    """

    started_at: float  # Unix seconds (Clock.wall), for people
    started_now: float  # Clock.now at the start, for the uptime
    bytes_sent: int = 0
    bytes_received: int = 0
    requests: int = 0
    active_requests: int = 0
    downloads: Counter[str] = field(default_factory=Counter)
    uploads: Counter[str] = field(default_factory=Counter)
    # Set by the server once it knows its connections; else in-flight requests are reported.
    connections_source: Callable[[], int] | None = None

    def to_json(self, now: float) -> dict[str, object]:
        """The JSON of ``GET /stats`` at ``now`` (Clock.now)."""
        active = self.connections_source() if self.connections_source else self.active_requests
        return {
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "active_connections": active,
            "requests": self.requests,
            "downloads": dict(self.downloads),
            "uploads": dict(self.uploads),
            "started_at": self.started_at,
            "uptime": now - self.started_now,
        }


CONFIG_KEY = web.AppKey("hub_config", HubConfig)
STORE_KEY = web.AppKey("hub_store", FileStore)
TOKENS_KEY = web.AppKey("hub_tokens", TokenStore)
STATS_KEY = web.AppKey("hub_stats", HubStats)
CLOCK_KEY = web.AppKey("hub_clock", Clock)
# Hostile-input lines (malformed requests, disconnects), throttled per kind.
OPLOG_KEY = web.AppKey("hub_oplog", ThrottledLog)
SESSIONS_KEY = web.AppKey("hub_sessions", SessionStore)
# Present only when the hub runs with a rate limit.
RATE_KEY = web.AppKey("hub_rate", PerTokenLimiter)


# --- errors ------------------------------------------------------------------------------------


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The API's error body ``{"error", "status"}``."""
    return web.json_response(
        {"error": message, "status": status}, status=status, headers=headers or {}
    )


class _HTTPJSONError(Exception):
    """An API error raised inside handlers; the middleware turns it into the JSON response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        close: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        # True when the rest of the body will not be read: aiohttp would otherwise keep
        # reading ("lingering") for up to 10 s before it could reuse the connection.
        self.close = close
        self.headers = headers or {}


_STORAGE_STATUS: list[tuple[type[StorageError], int]] = [
    (UnsafePathError, 400),
    (DigestMismatchError, 400),
    (NameConflictError, 409),
    (UploadTooLargeError, 413),
    (DiskFullError, 507),
]


@web.middleware
async def _error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    stats = request.app[STATS_KEY]
    stats.requests += 1
    stats.active_requests += 1
    try:
        return await handler(request)
    except _HTTPJSONError as exc:
        resp = json_error(exc.status, exc.message, exc.headers)
        if exc.close:
            resp.force_close()
        return resp
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Router 404/405 and friends: same status, JSON body, keep headers such as Allow.
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow",)}
        return json_error(exc.status, exc.reason, headers)
    except StorageError as exc:
        status = next((s for cls, s in _STORAGE_STATUS if isinstance(exc, cls)), 500)
        if status == 500:
            log.error("storage error: %s", exc)
        resp = json_error(status, str(exc))
        if status in (413, 507):
            resp.force_close()
        return resp
    except Exception as exc:
        if not is_disconnect(exc):
            raise  # our bug: aiohttp logs it with its traceback
        # The client hung up (mid-upload: the store has removed the partial file already).
        request.app[OPLOG_KEY].log(
            logging.INFO,
            "disconnects",
            "client %s went away during %s %s: %s",
            request.remote,
            request.method,
            detail(request.path),
            detail(exc),
        )
        resp = json_error(400, "connection lost")
        resp.force_close()
        return resp
    finally:
        stats.active_requests -= 1


# --- auth --------------------------------------------------------------------------------------


def _presented_token(request: web.Request) -> str | None:
    auth = request.headers.get(hdrs.AUTHORIZATION)
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _HTTPJSONError(401, "Authorization must be 'Bearer <token>'", headers=_CHALLENGE)
        return value.strip()
    return request.query.get("token")


# RFC 6750 §3: a 401 names the scheme the client should use.
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hubswarm"'}


# Methods that change nothing: a browser session needs no CSRF token for them (RFC 9110 §9.2.1).
_SAFE_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_OPTIONS})


async def _session_record(request: web.Request) -> TokenRecord | None:
    """The token record of the request's browser session (cookie), or None if it has none.

    401 if the session's token was revoked, 403 if a state-changing request lacks the session's
    CSRF token (``X-CSRF-Token``).
    """
    sessions = request.app[SESSIONS_KEY]
    cookie = request.cookies.get(COOKIE)
    session = sessions.get(cookie, request.app[CLOCK_KEY].now())
    if session is None:
        return None
    record = await asyncio.to_thread(request.app[TOKENS_KEY].lookup_hash, session.token_sha256)
    if record is None:
        sessions.drop_token(session.token_sha256)
        raise _HTTPJSONError(401, "the session's token was revoked", headers=_CHALLENGE)
    if request.method not in _SAFE_METHODS and not session.csrf_ok(
        request.headers.get(CSRF_HEADER)
    ):
        raise _HTTPJSONError(403, f"missing or wrong {CSRF_HEADER}")
    return record


async def authorize(request: web.Request, need: Role) -> TokenRecord | None:
    """Check the request's token (Bearer, ``?token=`` or a browser session's cookie) against
    ``need``; 401 if missing/unknown, 403 if too weak (or a session's CSRF token is missing).

    Returns None for an anonymous read (server started with anonymous_read).
    """
    token = _presented_token(request)
    if token is None:
        record = await _session_record(request)
        if record is not None:
            if record.role < need:
                raise _HTTPJSONError(403, f"role {record.role.label} may not do this")
            return record
        if need == Role.READ and request.app[CONFIG_KEY].anonymous_read:
            return None
        raise _HTTPJSONError(401, "a token is required", headers=_CHALLENGE)
    record = await asyncio.to_thread(request.app[TOKENS_KEY].lookup, token)
    if record is None:
        raise _HTTPJSONError(401, "unknown or revoked token", headers=_CHALLENGE)
    if record.role < need:
        raise _HTTPJSONError(403, f"role {record.role.label} may not do this ({need.label} needed)")
    return record


Throttle = Callable[[int], Awaitable[None]]


def throttle_for(request: web.Request, record: TokenRecord | None) -> Throttle | None:
    """Rate-limit hook of the request's token: wait until n more bytes may move; None if
    unlimited."""
    limiter = request.app.get(RATE_KEY)
    if limiter is None:
        return None
    key = record.id if record is not None else ""
    clock = request.app[CLOCK_KEY]

    async def wait(n: int) -> None:
        if (delay := limiter.reserve(key, n)) > 0:
            await clock.sleep(delay)

    return wait


# --- names and digests ---------------------------------------------------------------------------


def _raw_name(request: web.Request) -> str:
    """The path after ``/files/``, decoded from the raw path so ``%00`` and ``%2e%2e`` are seen."""
    raw = request.rel_url.raw_path
    if not raw.startswith(_FILES_PREFIX):
        raise _HTTPJSONError(400, "bad path")
    try:
        return unquote_to_bytes(raw[len(_FILES_PREFIX) :]).decode("utf-8")
    except UnicodeDecodeError:
        raise _HTTPJSONError(400, "file name is not valid UTF-8") from None


def _name_from(request: web.Request) -> str:
    """The validated file path of the request (folders separated by ``/``)."""
    try:
        return validate_name(_raw_name(request))
    except UnsafePathError as exc:
        raise _HTTPJSONError(400, str(exc)) from None


def folder_from(request: web.Request) -> str:
    """The validated folder of ``GET /files`` (``""``) or ``/files/FOLDER/``."""
    raw = "" if request.rel_url.raw_path == "/files" else _raw_name(request)
    try:
        return validate_folder(raw.removesuffix("/"))
    except UnsafePathError as exc:
        raise _HTTPJSONError(400, str(exc)) from None


def _hex_sha256(value: str) -> str:
    value = value.strip().lower()
    if len(value) != 2 * _SHA256_LEN or any(c not in "0123456789abcdef" for c in value):
        raise _HTTPJSONError(400, "X-Content-SHA256 must be 64 hex digits")
    return value


def _digest_sha256(value: str) -> str | None:
    """The sha-256 of an RFC 3230 ``Digest`` header as hex, or None if it has none."""
    for part in value.split(","):
        algo, _, b64 = part.strip().partition("=")
        if algo.strip().lower() != "sha-256":
            continue
        try:
            raw = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise _HTTPJSONError(400, "Digest sha-256 is not valid base64") from None
        if len(raw) != _SHA256_LEN:
            raise _HTTPJSONError(400, "Digest sha-256 must be 32 bytes")
        return raw.hex()
    return None


def expected_sha256(headers: Any) -> str | None:
    """The SHA-256 announced in ``X-Content-SHA256`` or ``Digest``; 400 if bad or differing."""
    found: list[str] = []
    if (x := headers.get("X-Content-SHA256")) is not None:
        if len(x) > HUB_MAX_DIGEST_HEADER:
            raise _HTTPJSONError(400, "X-Content-SHA256 too long")
        found.append(_hex_sha256(x))
    if (d := headers.get("Digest")) is not None:
        if len(d) > HUB_MAX_DIGEST_HEADER:
            raise _HTTPJSONError(400, "Digest too long")
        if (h := _digest_sha256(d)) is not None:
            found.append(h)
    if len(set(found)) > 1:
        raise _HTTPJSONError(400, "X-Content-SHA256 and Digest disagree")
    return found[0] if found else None


# --- download ----------------------------------------------------------------------------------


# Headers FileResponse must not see: we evaluate validators against the SHA-256 ETag ourselves,
# and Accept-Encoding would make it serve a sibling "<name>.gz" instead of the file.
_STRIPPED = (
    hdrs.ACCEPT_ENCODING,
    hdrs.IF_RANGE,
    hdrs.IF_MATCH,
    hdrs.IF_NONE_MATCH,
    hdrs.IF_MODIFIED_SINCE,
    hdrs.IF_UNMODIFIED_SINCE,
)


class HubFileResponse(web.FileResponse):
    """FileResponse with the SHA-256 ETag, byte accounting and a re-prepare guard."""

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        sha256: str,
        identity: str,
        stats: HubStats,
        throttle: Throttle | None = None,
    ):
        super().__init__(
            path,
            chunk_size=HUB_CHUNK,
            headers={
                # Never let a browser render an uploaded file in the hub's origin.
                hdrs.CONTENT_TYPE: "application/octet-stream",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox",
            },
        )
        self.hub_name = name
        self.hub_sha256 = sha256
        # FileResponse's own ETag ("mtime_ns-size" hex) for the stat our sha256 belongs to.
        self.hub_identity = identity
        self._hub_stats = stats
        self._throttle = throttle

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        # The handler prepares the response itself (to count bytes); aiohttp calls prepare
        # again afterwards, which FileResponse would answer by sending the file twice.
        if self.prepared:
            return await web.StreamResponse.prepare(self, request)
        return await super().prepare(request)

    async def _sendfile(
        self, request: web.BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        try:
            if self._throttle is None:
                return await super()._sendfile(request, fobj, offset, count)
            return await self._throttled_send(request, fobj, offset, count, self._throttle)
        finally:
            sent = 0
            with contextlib.suppress(OSError, ValueError):
                sent = max(0, min(fobj.tell() - offset, count))
            self._hub_stats.bytes_sent += sent

    async def _throttled_send(
        self, request: web.BaseRequest, fobj: IO[Any], offset: int, count: int, throttle: Throttle
    ) -> AbstractStreamWriter:
        # sendfile cannot be paced: a rate-limited download goes out in small timed writes.
        writer = await web.StreamResponse.prepare(self, request)
        assert writer is not None
        await asyncio.to_thread(fobj.seek, offset)
        left = count
        while left > 0:
            n = min(HUB_RATE_CHUNK, left)
            await throttle(n)
            chunk = await asyncio.to_thread(fobj.read, n)
            if not chunk:
                raise ConnectionResetError("file shrank while being sent")
            await writer.write(chunk)
            left -= len(chunk)
        await self.write_eof()
        return writer


async def _on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    if not isinstance(response, HubFileResponse) or hdrs.ETAG not in response.headers:
        return
    if response.headers[hdrs.ETAG] == f'"{response.hub_identity}"':
        response.headers[hdrs.ETAG] = f'"{response.hub_sha256}"'
        response.headers["X-Content-SHA256"] = response.hub_sha256
    else:
        # The file was replaced between our stat and FileResponse's open: we don't know the
        # digest of what is being sent, so promise nothing.
        del response.headers[hdrs.ETAG]


async def get_file(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /files/{name}``: the file, with ETag = SHA-256 and honest If-Range;
    ``/files/FOLDER/`` is the folder's listing, ``/files/FOLDER`` redirects there."""
    if request.rel_url.raw_path.endswith("/"):
        return await list_files(request)
    record = await authorize(request, Role.READ)
    name = _name_from(request)
    store = request.app[STORE_KEY]
    stats = request.app[STATS_KEY]
    try:
        info = await store.info(name)
    except FileNotFoundError:
        if await asyncio.to_thread(store.is_folder, name):
            raise web.HTTPMovedPermanently(request.rel_url.with_path(request.path + "/")) from None
        raise _HTTPJSONError(404, f"no such file: {name}") from None
    etag = f'"{info.sha256}"'
    headers = request.headers
    if (inm := headers.get(hdrs.IF_NONE_MATCH)) is not None and etag_list_matches(
        inm, etag, weak=True
    ):
        return web.Response(status=304, headers={hdrs.ETAG: etag})
    if (im := headers.get(hdrs.IF_MATCH)) is not None and not etag_list_matches(
        im, etag, weak=False
    ):
        raise _HTTPJSONError(412, "If-Match does not match the current file")
    new_headers = CIMultiDict(headers)
    for h in _STRIPPED:
        new_headers.popall(h, None)
    if (
        hdrs.RANGE in headers
        and (if_range := headers.get(hdrs.IF_RANGE)) is not None
        and not if_range_matches(if_range, etag, info.mtime, request.app[CLOCK_KEY].wall())
    ):
        # The client's partial copy is of another version: send the whole new file (§13.1.5).
        new_headers.popall(hdrs.RANGE, None)
    if (rng := new_headers.get(hdrs.RANGE)) is not None:
        plan = plan_range(rng, info.size)
        new_headers.popall(hdrs.RANGE, None)
        if plan.verdict is RangeVerdict.UNSATISFIABLE:
            raise _HTTPJSONError(
                416,
                "range not satisfiable",
                headers={hdrs.CONTENT_RANGE: f"bytes */{info.size}", hdrs.ACCEPT_RANGES: "bytes"},
            )
        if plan.verdict is RangeVerdict.SINGLE:
            new_headers[hdrs.RANGE] = plan.header
    resp = HubFileResponse(
        store.path(name),
        name=name,
        sha256=info.sha256,
        identity=f"{info.mtime_ns:x}-{info.size:x}",
        stats=stats,
        throttle=throttle_for(request, record),
    )
    await resp.prepare(request.clone(headers=new_headers))
    if request.method == hdrs.METH_GET and resp.status in (200, 206):
        stats.downloads[name] += 1
    return resp


# --- upload / delete / list ----------------------------------------------------------------------


async def _body_chunks(
    request: web.Request, config: HubConfig, stats: HubStats, throttle: Throttle | None
) -> AsyncGenerator[bytes, None]:
    """The request body, chunk by chunk; 408 if a chunk takes longer than ``read_timeout`` or
    a ``progress_interval`` of waiting brings fewer than ``min_upload_bytes`` (trickling)."""
    clock = request.app[CLOCK_KEY]
    # Charged time: only the time spent waiting on the client, not on our own throttle.
    progress = MinProgress(config.min_upload_bytes, config.progress_interval, 0.0)
    charged = 0.0
    while True:
        wait = min(config.read_timeout, progress.time_left(charged))
        started = clock.now()
        chunk: bytes | None = None
        try:
            async with asyncio.timeout(wait):
                chunk = await request.content.readany()
        except TimeoutError:
            pass
        charged += clock.now() - started
        if not progress.check(charged):
            raise _HTTPJSONError(
                408,
                f"upload too slow: under {config.min_upload_bytes} bytes"
                f" in {config.progress_interval:g} s",
                close=True,
            )
        if chunk is None:
            if wait < config.read_timeout:
                continue  # a progress window ended and was judged; keep reading
            raise _HTTPJSONError(408, "request body too slow", close=True)
        if not chunk:
            return
        progress.record(len(chunk), charged)
        stats.bytes_received += len(chunk)
        if throttle is not None:
            # Not reading is what slows the sender: TCP flow control pushes back.
            await throttle(len(chunk))
        yield chunk


async def _expect_upload(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` (curl -T sends it): refuse a bad upload before its body is sent.

    Runs outside the middlewares (aiohttp calls it before the handler), so it answers errors
    itself; on success the handler repeats the checks and reads the body.
    """
    try:
        if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
            # RFC 9110 §10.1.1: an expectation we don't know -> 417.
            raise _HTTPJSONError(417, "only 'Expect: 100-continue' is supported")
        await authorize(request, Role.WRITE)
        _name_from(request)
        expected_sha256(request.headers)
        limit = request.app[CONFIG_KEY].max_upload
        if request.content_length is not None and request.content_length > limit:
            raise _HTTPJSONError(413, f"upload larger than {limit} bytes", close=True)
    except _HTTPJSONError as exc:
        resp = json_error(exc.status, exc.message, exc.headers)
        resp.force_close()  # the client will not send the body: close rather than wait for it
        return resp
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        # As aiohttp's default handler does: the interim reply is not part of the response.
        request.writer.output_size = 0
    return None


async def put_file(request: web.Request) -> web.Response:
    """``PUT /files/{name}``: streamed, hashed, size-capped, atomic."""
    record = await authorize(request, Role.WRITE)
    name = _name_from(request)
    config = request.app[CONFIG_KEY]
    stats = request.app[STATS_KEY]
    expected = expected_sha256(request.headers)
    if request.content_length is not None and request.content_length > config.max_upload:
        raise _HTTPJSONError(413, f"upload larger than {config.max_upload} bytes", close=True)
    store = request.app[STORE_KEY]
    body = _body_chunks(request, config, stats, throttle_for(request, record))
    pieces = torrents.hasher_for(request.content_length)  # the torrent's, in the same pass
    async with contextlib.aclosing(body) as chunks:
        info, created = await store.put(
            name, chunks, max_size=config.max_upload, expected_sha256=expected, pieces=pieces
        )
    await torrents.remember(request.app, info, pieces)
    stats.uploads[name] += 1
    return web.json_response(info.to_json(), status=201 if created else 200)


async def delete_file(request: web.Request) -> web.Response:
    """``DELETE /files/{name}`` (a file, or an empty folder: 409 if not empty) -> 204."""
    await authorize(request, Role.WRITE)
    name = folder_from(request) if request.rel_url.raw_path.endswith("/") else _name_from(request)
    if not name:
        raise _HTTPJSONError(400, "the top folder cannot be deleted")
    try:
        await request.app[STORE_KEY].delete(name)
    except FileNotFoundError:
        raise _HTTPJSONError(404, f"no such file: {name}") from None
    return web.Response(status=204)


def wants_html(request: web.Request) -> bool:
    """A browser navigating (Accept: text/html), not an API client."""
    accept = request.headers.get(hdrs.ACCEPT, "")
    return "text/html" in accept and "application/json" not in accept


async def list_files(request: web.Request) -> web.StreamResponse:
    """``GET /files[/FOLDER/]``: the folder's JSON listing (``files``: every file below it,
    ``folders``: its subfolders with size and count), or the page for browsers."""
    html = wants_html(request)
    try:
        record = await authorize(request, Role.READ)
    except _HTTPJSONError as exc:
        if html and exc.status == 401:
            raise web.HTTPSeeOther(page.signin_url(request)) from None
        raise
    folder = folder_from(request)
    try:
        listing = await request.app[STORE_KEY].listing(folder)
    except FileNotFoundError:
        raise _HTTPJSONError(404, f"no such folder: {folder}") from None
    files = [f.to_json() for f in listing.files]
    await torrents.annotate(request, files)  # info_hash and magnet
    if html:
        return await page.render_listing(request, record, listing, files)
    return web.json_response({**listing.to_json(), "files": files})


async def root(request: web.Request) -> web.StreamResponse:
    """``GET /`` redirects to ``/files`` (keeping ?token=)."""
    raise web.HTTPFound(request.rel_url.with_path("/files"))


async def stats(request: web.Request) -> web.Response:
    """``GET /stats``."""
    await authorize(request, Role.READ)
    return web.json_response(request.app[STATS_KEY].to_json(request.app[CLOCK_KEY].now()))


# --- tokens ------------------------------------------------------------------------------------


async def create_token(request: web.Request) -> web.Response:
    """``POST /tokens`` ``{"role": "read"}`` -> ``{"id","token","role"}`` (admin)."""
    await authorize(request, Role.ADMIN)
    try:
        body = await request.json()
        role = Role.parse(str(body["role"]))
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise _HTTPJSONError(400, f'body must be {{"role": "read|write|admin"}} ({exc})') from None
    record, token = await asyncio.to_thread(request.app[TOKENS_KEY].create, role)
    return web.json_response({"id": record.id, "token": token, "role": role.label}, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    """``GET /tokens`` (admin): ids and roles, never the tokens."""
    await authorize(request, Role.ADMIN)
    records = await asyncio.to_thread(request.app[TOKENS_KEY].list)
    return web.json_response({"tokens": [r.to_json() for r in records]})


async def revoke_token(request: web.Request) -> web.Response:
    """``DELETE /tokens/{id}`` (admin) -> 204, or 404."""
    await authorize(request, Role.ADMIN)
    token_id = request.match_info["id"]
    if not await asyncio.to_thread(request.app[TOKENS_KEY].revoke, token_id):
        raise _HTTPJSONError(404, f"no such token id: {token_id}")
    return web.Response(status=204)


# --- assembly ----------------------------------------------------------------------------------


class QuietAccessLogger(AbstractAccessLogger):
    """Access log without the query string, which may carry ``?token=``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %s %.3fs",
            request.remote,
            request.method,
            request.path,
            response.status,
            time,
        )


async def _prepare_store(app: web.Application) -> None:
    removed = await asyncio.to_thread(app[STORE_KEY].prepare)
    if removed:
        log.info("removed %d leftover partial uploads", removed)


def create_app(config: HubConfig, *, clock: Clock | None = None) -> web.Application:
    """Build the hub application for ``config`` (the data folder is prepared on startup).

    ``clock`` (default: the running loop's) is the hub's only source of time.
    """
    clock = clock if clock is not None else Clock()
    app = web.Application(middlewares=[_error_middleware])
    app[CONFIG_KEY] = config
    app[CLOCK_KEY] = clock
    app[STORE_KEY] = FileStore(config.data_dir)
    app[TOKENS_KEY] = TokenStore(config.data_dir, clock=clock)
    app[STATS_KEY] = HubStats(started_at=clock.wall(), started_now=clock.now())
    app[OPLOG_KEY] = ThrottledLog(log, clock.now)
    app[SESSIONS_KEY] = SessionStore()
    if config.rate_limit is not None:
        burst = max(config.rate_limit, HUB_RATE_MIN_BURST)
        app[RATE_KEY] = PerTokenLimiter(config.rate_limit, burst, clock.now)
    app.on_startup.append(_prepare_store)
    app.on_response_prepare.append(_on_response_prepare)
    app.router.add_get("/", root)
    app.router.add_get("/files", list_files)
    app.router.add_get("/files/", list_files)
    # Any name (even with an encoded "/", "..", or a newline) reaches validate_name -> JSON 400.
    app.router.add_get("/files/{name:[\\s\\S]+}", get_file)  # also answers HEAD
    app.router.add_put("/files/{name:[\\s\\S]+}", put_file, expect_handler=_expect_upload)
    app.router.add_delete("/files/{name:[\\s\\S]+}", delete_file)
    app.router.add_get("/stats", stats)
    app.router.add_post("/tokens", create_token)
    app.router.add_get("/tokens", list_tokens)
    app.router.add_delete("/tokens/{id}", revoke_token)
    torrents.add_torrent_routes(app)
    tus.add_tus_routes(app)
    page.add_page_routes(app)
    return app


# Last: these modules import the helpers above (authorize, the app keys, _HTTPJSONError).
from hubswarm.hub import page, torrents, tus  # noqa: E402
