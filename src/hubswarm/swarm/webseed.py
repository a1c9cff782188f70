"""BEP 19 web seeds: fetch byte ranges of a torrent from any HTTP server.

A web seed is an always-unchoked seed that answers HTTP Range requests. A URL ending in
``/`` gets the torrent's ``name`` appended, and ``name/path...`` for multi-file torrents
(BEP 19 "url-list"); a URL without a trailing slash names the file itself (single-file).
A range that crosses file boundaries becomes one request per file.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import aiohttp

from hubswarm.errors import SwarmError
from hubswarm.proto.metainfo import InfoDict
from hubswarm.swarm.layout import Layout


def file_url(base: str, info: InfoDict, file_index: int) -> str:
    """The URL of one file of the torrent under the web seed ``base`` (BEP 19)."""
    entry = info.files[file_index]
    if not info.is_multi_file and not base.endswith("/"):
        return base
    prefix = base if base.endswith("/") else base + "/"
    return prefix + "/".join(quote(part, safe="") for part in entry.path)


async def fetch(
    http: aiohttp.ClientSession,
    base: str,
    info: InfoDict,
    layout: Layout,
    offset: int,
    length: int,
    *,
    timeout: float,
) -> bytes:
    """``length`` bytes at ``offset`` of the torrent's byte stream, from the web seed.

    Raises:
        SwarmError: HTTP error, wrong status or length, timeout, connection failure.
    """
    parts: list[bytes] = []
    for span in layout.byte_spans(offset, length):
        if span.file.padding:
            parts.append(bytes(span.length))  # BEP 47: padding bytes are zeros
            continue
        url = file_url(base, info, span.file_index)
        parts.append(await _get_range(http, url, span.file_offset, span.length, timeout))
    return b"".join(parts)


async def _get_range(
    http: aiohttp.ClientSession, url: str, start: int, length: int, timeout: float
) -> bytes:
    headers = {"Range": f"bytes={start}-{start + length - 1}"}
    try:
        async with asyncio.timeout(timeout), http.get(url, headers=headers) as resp:
            full = resp.status == 200 and start == 0 and resp.content_length == length
            if resp.status != 206 and not full:
                raise SwarmError(f"web seed {url}: HTTP {resp.status} for a range request")
            if resp.content_length is not None and resp.content_length != length:
                raise SwarmError(f"web seed {url}: {resp.content_length} bytes, want {length}")
            body = await resp.content.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise SwarmError(f"web seed {url}: short body ({len(exc.partial)} of {length})") from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise SwarmError(f"web seed {url}: {exc or type(exc).__name__}") from exc
    if len(body) != length:
        raise SwarmError(f"web seed {url}: got {len(body)} bytes, expected {length}")
    return body
