"""HTTP tracker client (BEP 3 announce, BEP 48 scrape) and BEP 12 tier order.

The query is built by :mod:`hubswarm.proto.tracker` and appended to the announce URL as is
(``encoded=True``: yarl must not re-quote the byte-wise escapes). The body is read with a cap,
and every aiohttp, OS or timeout failure becomes a :class:`TrackerError`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Sequence

import aiohttp
from yarl import URL

from hubswarm.errors import TrackerError
from hubswarm.limits import TRACKER_MAX_RESPONSE
from hubswarm.proto.tracker import (
    AnnounceRequest,
    AnnounceResponse,
    ScrapeRequest,
    ScrapeResponse,
    failure_reason,
    scrape_url,
)

__all__ = ["TrackerTiers", "announce", "build_url", "scrape"]

_READ_CHUNK = 64 * 1024


def build_url(base: str, query: str) -> str:
    """Append ``query`` to ``base``, respecting a query the URL already has (BEP 3 practice)."""
    if "#" in base:
        base = base.split("#", 1)[0]
    if "?" not in base:
        return f"{base}?{query}"
    if base.endswith(("?", "&")):
        return f"{base}{query}"
    return f"{base}&{query}"


async def _get(session: aiohttp.ClientSession, url: str, *, timeout: float) -> bytes:
    """GET ``url`` and return at most TRACKER_MAX_RESPONSE bytes of body."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise TrackerError(f"unsupported tracker scheme {scheme!r} (only HTTP trackers)")
    try:
        async with asyncio.timeout(timeout):
            async with session.get(
                URL(url, encoded=True), allow_redirects=True, max_redirects=3
            ) as resp:
                length = resp.content_length
                if length is not None and length > TRACKER_MAX_RESPONSE:
                    raise TrackerError(f"tracker response of {length} bytes is too large")
                body = bytearray()
                while chunk := await resp.content.read(_READ_CHUNK):
                    body += chunk
                    if len(body) > TRACKER_MAX_RESPONSE:
                        raise TrackerError("tracker response is too large")
                if resp.status != 200:
                    # Some trackers send a bencoded failure reason with a 4xx status.
                    reason = failure_reason(bytes(body))
                    if reason is not None:
                        raise TrackerError(f"tracker failure: {reason}")
                    raise TrackerError(f"tracker answered HTTP {resp.status}")
                return bytes(body)
    except TimeoutError as exc:
        raise TrackerError(f"tracker did not answer within {timeout:g} s") from exc
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise TrackerError(f"tracker unreachable: {exc}") from exc


async def announce(
    session: aiohttp.ClientSession, url: str, req: AnnounceRequest, *, timeout: float
) -> AnnounceResponse:
    """Announce ``req`` to the tracker at ``url``.

    Raises:
        TrackerError: failure reason, bad response, HTTP error, timeout or no connection.
    """
    body = await _get(session, build_url(url, req.to_query()), timeout=timeout)
    return AnnounceResponse.parse(body)


async def scrape(
    session: aiohttp.ClientSession, url: str, info_hashes: Sequence[bytes], *, timeout: float
) -> ScrapeResponse:
    """Scrape ``info_hashes`` from a tracker, given its announce (or scrape) URL (BEP 48).

    Raises:
        TrackerError: the tracker has no scrape URL, or the scrape failed.
    """
    target = scrape_url(url)
    if target is None:
        raise TrackerError(f"tracker {url} does not support scrape")
    query = ScrapeRequest(tuple(info_hashes)).to_query()
    body = await _get(session, build_url(target, query), timeout=timeout)
    return ScrapeResponse.parse(body)


class TrackerTiers:
    """BEP 12 announce-list order: shuffle each tier once, try tiers in order, and move a
    tracker that answered to the front of its tier."""

    def __init__(self, tiers: Sequence[Sequence[str]], rng: random.Random) -> None:
        seen: set[str] = set()
        self._tiers: list[list[str]] = []
        for tier in tiers:
            urls = []
            for url in tier:
                if url not in seen:
                    seen.add(url)
                    urls.append(url)
            if urls:
                rng.shuffle(urls)
                self._tiers.append(urls)

    @property
    def tiers(self) -> tuple[tuple[str, ...], ...]:
        """The current order, tier by tier."""
        return tuple(tuple(t) for t in self._tiers)

    def __iter__(self) -> Iterator[str]:
        """Every tracker URL in the order to try them."""
        return iter([u for tier in self._tiers for u in tier])

    def __len__(self) -> int:
        return sum(len(t) for t in self._tiers)

    def mark_success(self, url: str) -> None:
        """BEP 12: a tracker that answered moves to the front of its tier."""
        for tier in self._tiers:
            if url in tier:
                tier.remove(url)
                tier.insert(0, url)
                return
