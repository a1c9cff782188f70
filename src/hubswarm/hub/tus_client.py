"""The client side of the hub's tus 1.0 uploads: an interrupted ``hubswarm put`` resumes.

``upload`` asks the hub whether it speaks tus (``OPTIONS /uploads/``); if not, it returns
None and the caller uses plain ``PUT``. Otherwise it creates an upload (the name and the
file's SHA-256 in ``Upload-Metadata``) and remembers its URL in a small state file, keyed by
the target and the file's SHA-256 and size. Run again after an interruption, it asks the
hub for its offset (``HEAD``) and sends only the rest (``PATCH``). The hub checks the whole
file's SHA-256 before the file lands, so a resumed upload cannot splice two versions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from yarl import URL

from hubswarm.clock import Clock
from hubswarm.errors import ServerError, StorageError
from hubswarm.hub.client_http import Http, parse_url, raise_for_status
from hubswarm.limits import HUB_CLIENT_CHUNK

__all__ = ["TusResult", "default_state_dir", "upload"]

_TUS = {"Tus-Resumable": "1.0.0"}
# A PATCH refused because the hub still sees our previous (dropped) connection writing
# (423), or an offset that moved under us (409): ask again this many times, this far apart.
_RETRIES = 20
_RETRY_DELAY = 0.25


@dataclass(frozen=True, slots=True)
class TusResult:
    """A finished tus upload: the name, the hub's SHA-256 and how many bytes this call sent."""

    name: str
    sha256: str
    sent: int
    resumed_from: int


def default_state_dir() -> Path:
    """Where upload URLs are remembered: ``$XDG_CACHE_HOME/hubswarm/uploads``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "hubswarm" / "uploads"


def _split(file_url: str) -> tuple[str, str]:
    """``http://h/files/a%20b`` -> (``http://h/uploads/``, ``a b``)."""
    parsed = parse_url(file_url)
    path = parsed.raw_path
    cut = path.find("/files/")  # the first: a folder may be named "files" too
    base = parsed.with_path(path[:cut] + "/uploads/", encoded=True).with_query(None)
    name = URL.build(path=path[cut + len("/files/") :], encoded=True).path
    return str(base), name


def _state_path(state_dir: Path, uploads_url: str, name: str, digest: str, size: int) -> Path:
    key = hashlib.sha256(f"{uploads_url}\n{name}\n{digest}\n{size}".encode()).hexdigest()
    return state_dir / f"{key}.json"


def _remembered(state: Path) -> str | None:
    try:
        url = json.loads(state.read_text()).get("url")
    except (OSError, ValueError, AttributeError):
        return None
    return url if isinstance(url, str) else None


def _remember(state: Path, url: str) -> None:
    with contextlib.suppress(OSError):  # without it we cannot resume, but can still upload
        state.parent.mkdir(parents=True, exist_ok=True)
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": url}))
        os.replace(tmp, state)


async def _offers_tus(http: Http, uploads_url: str) -> bool:
    async with http.session.options(uploads_url, **http.kwargs({})) as resp:
        await resp.read()
        versions = resp.headers.get("Tus-Version", "")
        return resp.status in (200, 204) and "1.0.0" in versions.split(",")


async def _offset(http: Http, url: str) -> int | None:
    """The hub's offset of upload ``url``; None if it is gone (finished, expired, unknown)."""
    async with http.session.head(url, **http.kwargs(dict(_TUS))) as resp:
        if resp.status in (404, 410):
            return None
        if resp.status != 200:
            await raise_for_status(resp)
        try:
            return int(resp.headers["Upload-Offset"])
        except (KeyError, ValueError):
            raise ServerError(f"no Upload-Offset from {url}", url=url) from None


async def _create(http: Http, uploads_url: str, name: str, digest: str, size: int) -> str:
    meta = ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}"
        for k, v in (("filename", name), ("sha256", digest))
    )
    headers = {**_TUS, "Upload-Length": str(size), "Upload-Metadata": meta}
    async with http.session.post(uploads_url, **http.kwargs(headers)) as resp:
        if resp.status != 201 or "Location" not in resp.headers:
            await raise_for_status(resp)
        return str(resp.url.join(URL(resp.headers["Location"])))


async def _patch(
    http: Http,
    url: str,
    path: Path,
    offset: int,
    size: int,
    progress: Callable[[int, int | None], None] | None,
) -> tuple[int, str | None]:
    """Send the file from ``offset``; return (204, X-Content-SHA256) or (409 or 423, None).

    Any other answer raises the matching HubError.
    """
    f = await asyncio.to_thread(open, path, "rb", buffering=0)

    async def body() -> AsyncIterator[bytes]:
        sent = offset
        await asyncio.to_thread(f.seek, offset)
        while sent < size:
            chunk = await asyncio.to_thread(f.read, min(HUB_CLIENT_CHUNK, size - sent))
            if not chunk:
                raise OSError(errno.EIO, "file shrank while uploading")
            sent += len(chunk)
            yield chunk
            if progress is not None:
                progress(sent, size)

    headers = {
        **_TUS,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(size - offset),
    }
    try:
        async with http.session.patch(url, data=body(), **http.kwargs(headers)) as resp:
            if resp.status not in (204, 409, 423):
                await raise_for_status(resp)
            await resp.read()
            return resp.status, resp.headers.get("X-Content-SHA256")
    finally:
        await asyncio.to_thread(f.close)


async def upload(
    http: Http,
    path: Path,
    file_url: str,
    digest: str,
    size: int,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    state_dir: Path | None = None,
    clock: Clock | None = None,
) -> TusResult | None:
    """Upload ``path`` (SHA-256 ``digest``, ``size`` bytes) to ``file_url`` over tus,
    resuming an earlier attempt; None if the hub does not speak tus.

    Raises:
        HubError: the hub refused (the caller's session scope translates network failures).
        StorageError: the local file cannot be read.
    """
    uploads_url, name = _split(file_url)
    if not await _offers_tus(http, uploads_url):
        return None
    clock = clock if clock is not None else Clock()
    state = _state_path(state_dir or default_state_dir(), uploads_url, name, digest, size)
    url = await asyncio.to_thread(_remembered, state)
    offset = await _offset(http, url) if url is not None else None
    if url is None or offset is None:
        url = await _create(http, uploads_url, name, digest, size)
        await asyncio.to_thread(_remember, state, url)
        offset = 0
    resumed_from = offset
    for _attempt in range(_RETRIES):
        try:
            status, sha = await _patch(http, url, path, offset, size, progress)
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if status == 204:
            await asyncio.to_thread(state.unlink, missing_ok=True)
            if sha is None:
                raise ServerError(f"no X-Content-SHA256 when {name} landed", url=url)
            return TusResult(
                name=name, sha256=sha.lower(), sent=size - offset, resumed_from=resumed_from
            )
        # The hub still holds our last connection, or has a different offset: ask again.
        await clock.sleep(_RETRY_DELAY)
        new = await _offset(http, url)
        if new is None:
            raise ServerError(f"the upload of {name} vanished from the hub; run again", url=url)
        offset = new
    raise ServerError(f"the hub kept refusing the upload of {name}; run again", url=url)
