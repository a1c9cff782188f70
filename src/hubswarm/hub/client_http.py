"""The hub client's HTTP plumbing: URLs, TLS, timeouts, and failures turned into HubErrors.

:mod:`hubswarm.hub.client` does the transfers; this module owns what every request shares:
building and checking hub URLs (``/files/NAME``, ``/files``), the TLS context for a private
CA, the :class:`Timeouts`, and :func:`session_scope`, the one session scope inside which
any aiohttp or socket failure becomes a :class:`~hubswarm.errors.HubError` naming the
server, plus the reading of small bodies and of error responses (the server's JSON message).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl as ssl_module
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
from yarl import URL

from hubswarm.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    ServerError,
    ServerUnreachableError,
)
from hubswarm.limits import (
    HUB_CLIENT_CONNECT_TIMEOUT,
    HUB_CLIENT_MAX_ERROR_BODY,
    HUB_CLIENT_READ_BUFFER,
    HUB_READ_TIMEOUT,
)

__all__ = [
    "Http",
    "Timeouts",
    "file_url",
    "list_url",
    "make_ssl_context",
    "name_from_url",
    "parse_url",
    "raise_for_status",
    "read_bounded",
    "session_scope",
]

# Redirects followed: enough for http -> https -> a moved path; a loop fails fast (aiohttp
# allows 10, curl -L 50).
_MAX_REDIRECTS = 5


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Connect and per-read timeouts in seconds (no total: big files take as long as they take)."""

    connect: float = HUB_CLIENT_CONNECT_TIMEOUT
    sock_read: float = HUB_READ_TIMEOUT

    def __post_init__(self) -> None:
        if self.connect <= 0 or self.sock_read <= 0:
            raise ConfigError("timeouts must be positive")

    def client_timeout(self) -> aiohttp.ClientTimeout:
        """The aiohttp form."""
        return aiohttp.ClientTimeout(
            total=None, connect=self.connect, sock_connect=self.connect, sock_read=self.sock_read
        )


# --- URLs and TLS ------------------------------------------------------------------------------


def file_url(url: str, name: str | None = None) -> str:
    """The URL of one file: ``.../files/NAME`` is kept, a hub base URL gets ``/files/<name>``.

    Raises:
        ConfigError: not an http(s) URL, or a base URL and no name to append.
    """
    parsed = parse_url(url)
    parts = [p for p in parsed.path.split("/") if p]
    if "files" in parts[:-1]:  # .../files/NAME or .../files/FOLDER/NAME
        return str(parsed)
    if not name:
        raise ConfigError(f"{url}: expected a file URL like http://host:port/files/NAME")
    base = parsed.with_query(None).with_fragment(None)
    if parts and parts[-1] == "files":
        return str(base / name)
    return str(base.with_path(base.path.rstrip("/")) / "files" / name)


def list_url(url: str) -> str:
    """The ``/files`` listing URL of a hub given its base URL (or the listing URL itself)."""
    parsed = parse_url(url)
    path = parsed.path.rstrip("/")
    if not path.endswith("/files"):
        path += "/files"
    return str(parsed.with_path(path))


def name_from_url(url: str) -> str:
    """The file name a URL points at (its last path segment, percent-decoded).

    Raises:
        ConfigError: the URL names no file, or a name that is not a plain file name.
    """
    name = parse_url(url).name
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\x00" in name:
        raise ConfigError(f"{url}: cannot take a file name from this URL (use -o PATH)")
    return name


def make_ssl_context(cacert: Path | None) -> ssl_module.SSLContext | None:
    """A client TLS context trusting ``cacert`` (a PEM file), or None for the system default.

    Raises:
        ConfigError: the CA file cannot be read or parsed.
    """
    if cacert is None:
        return None
    try:
        return ssl_module.create_default_context(cafile=str(cacert))
    except (OSError, ssl_module.SSLError) as exc:
        raise ConfigError(f"cannot load CA file {cacert}: {exc}") from exc


def parse_url(url: str) -> URL:
    """``url`` parsed, if it is http(s) with a host; else :class:`ConfigError`."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid URL {url!r}: {exc}") from exc
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise ConfigError(f"invalid URL {url!r}: expected http(s)://host[:port]/...")
    return parsed


# --- session and error translation ----------------------------------------------------------


@dataclass(slots=True)
class Http:
    """One session (ours or the caller's) plus per-request settings."""

    session: aiohttp.ClientSession
    token: str | None
    ssl: ssl_module.SSLContext | None
    timeouts: Timeouts
    extra: dict[str, Any] = field(default_factory=dict)

    def kwargs(self, headers: dict[str, str]) -> dict[str, Any]:
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        kw: dict[str, Any] = {
            "headers": headers,
            "timeout": self.timeouts.client_timeout(),
            "read_bufsize": HUB_CLIENT_READ_BUFFER,
            "allow_redirects": True,
            "max_redirects": _MAX_REDIRECTS,
        }
        if self.ssl is not None:
            kw["ssl"] = self.ssl
        return kw


@contextlib.asynccontextmanager
async def session_scope(
    session: aiohttp.ClientSession | None,
    token: str | None,
    ssl: ssl_module.SSLContext | None,
    timeouts: Timeouts | None,
    url: str,
) -> AsyncIterator[Http]:
    """Yield a session scope; any aiohttp failure inside becomes a HubError for ``url``."""
    if token and not token.isprintable():  # a newline would split the header
        raise ConfigError("the token must be printable text (check $HUBSWARM_TOKEN)")
    own: aiohttp.ClientSession | None = None
    where = _where(url)
    try:
        if session is None:
            # auto_decompress off: checksums are over the bytes the server stores.
            own = aiohttp.ClientSession(auto_decompress=False)
            session = own
        yield Http(session, token, ssl, timeouts or Timeouts())
    except aiohttp.ClientSSLError as exc:
        raise ServerUnreachableError(f"TLS handshake with {where} failed: {exc}", url=url) from exc
    except aiohttp.ClientConnectorError as exc:
        why = _os_reason(exc.os_error)
        raise ServerUnreachableError(f"cannot connect to {where}: {why}", url=url) from exc
    except TimeoutError as exc:  # also aiohttp.ServerTimeoutError (connect and sock_read)
        raise ServerUnreachableError(f"timed out talking to {where}", url=url) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise ServerUnreachableError(
            f"connection to {where} lost mid-transfer: {_why(exc)}", url=url
        ) from exc
    except aiohttp.InvalidURL as exc:
        raise ConfigError(f"invalid URL {url!r}") from exc
    except aiohttp.ClientConnectionError as exc:
        raise ServerUnreachableError(f"connection to {where} failed: {_why(exc)}", url=url) from exc
    except aiohttp.ClientError as exc:
        raise ServerError(f"HTTP error from {where}: {_why(exc)}", url=url) from exc
    except OSError as exc:  # socket errors aiohttp did not wrap; local file errors are wrapped
        raise ServerUnreachableError(f"connection to {where} failed: {_why(exc)}", url=url) from exc
    finally:
        if own is not None:
            await own.close()


def _where(url: str) -> str:
    try:
        u = URL(url)
        return f"{u.host}:{u.port}"
    except (ValueError, TypeError):
        return url


def _os_reason(exc: OSError) -> str:
    """ "Connection refused", "Name or service not known": the words a user can act on."""
    if exc.errno and exc.errno > 0 and not isinstance(exc, socket.gaierror):
        return os.strerror(exc.errno)
    return exc.strerror or _why(exc)


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read a whole (small) body, refusing more than ``limit`` bytes."""
    if resp.content_length is not None and resp.content_length > limit:
        raise ServerError(f"response too large ({resp.content_length} bytes)", url=str(resp.url))
    buf = bytearray()
    while chunk := await resp.content.readany():
        buf += chunk
        if len(buf) > limit:
            raise ServerError(f"response larger than {limit} bytes", url=str(resp.url))
    return bytes(buf)


async def raise_for_status(resp: aiohttp.ClientResponse) -> NoReturn:
    """Turn an error response into the matching HubError, with the server's JSON message."""
    url = str(resp.url)
    message = resp.reason or "error"
    with contextlib.suppress(aiohttp.ClientError, TimeoutError, ServerError):
        body = await read_bounded(resp, HUB_CLIENT_MAX_ERROR_BODY)
        try:
            obj = json.loads(body)
            if isinstance(obj, dict) and isinstance(obj.get("error"), str):
                message = obj["error"]
        except ValueError:
            pass
    text = f"{resp.status} {message} ({url})"
    status = resp.status
    if status in (401, 403):
        raise AuthError(text, status=status, url=url)
    if status == 404:
        raise NotFoundError(text, status=status, url=url)
    raise ServerError(text, status=status, url=url)
