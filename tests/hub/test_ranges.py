"""Range edge cases (RFC 9110 §14): the pure planner, then the hub over HTTP (aiohttp, curl)."""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.hub.ranges import RangeVerdict, plan_range

from .conftest import Hub

U = RangeVerdict.UNSATISFIABLE
IGN = RangeVerdict.IGNORE
ONE = RangeVerdict.SINGLE


@pytest.mark.parametrize(
    ("header", "size", "verdict", "span"),
    [
        ("bytes=-0", 10, U, None),  # zero-length suffix: unsatisfiable (§14.1.1)
        ("bytes=-000", 10, U, None),
        ("bytes=5-2", 10, U, None),  # last < first: invalid
        ("bytes=10-", 10, U, None),  # first-pos at the end
        ("bytes=10-20", 10, U, None),
        ("bytes=9-", 10, ONE, (9, 9)),
        ("bytes=5-1000", 10, ONE, (5, 9)),  # last clamped to the end
        ("bytes=-3", 10, ONE, (7, 9)),
        ("bytes=-30", 10, ONE, (0, 9)),  # suffix longer than the file: the whole file
        ("bytes=0-0", 10, ONE, (0, 0)),
        ("BYTES = 2-3", 10, ONE, (2, 3)),  # unit is case-insensitive
        ("bytes=2-3, ,", 10, ONE, (2, 3)),  # empty list elements tolerated (§5.6.1.2)
        ("bytes=0-1,5-6", 10, IGN, None),  # multi-range: whole file (§14.2 MAY ignore)
        ("bytes=20-30,0-1", 10, IGN, None),  # one satisfiable spec is enough
        ("bytes=20-30,40-", 10, U, None),  # none satisfiable
        ("bytes=0-1,5-2", 10, U, None),  # one invalid spec: reject the set
        ("items=0-1", 10, IGN, None),  # unknown unit: MUST ignore
        ("bytes", 10, IGN, None),
        ("bytes=", 10, U, None),
        ("bytes=abc", 10, U, None),
        ("bytes=-", 10, U, None),
        ("bytes=0-", 0, U, None),  # empty file: nothing to point at
        ("bytes=-5", 0, IGN, None),  # ... but a suffix is served whole
        ("bytes=-0", 0, U, None),
        ("bytes=1-" + "9" * 5000, 10, ONE, (1, 9)),  # no quadratic int(), no ValueError
        ("bytes=" + "9" * 5000 + "-", 10, U, None),
        ("bytes=" + ",".join(["0-0"] * 500), 10, IGN, None),  # many small ranges: ignored
    ],
)
def test_plan_range_edges(
    header: str, size: int, verdict: RangeVerdict, span: tuple[int, int] | None
) -> None:
    plan = plan_range(header, size)
    assert plan.verdict is verdict
    if span is not None:
        assert (plan.first, plan.last) == span


@given(st.text(max_size=80), st.integers(min_value=0, max_value=1 << 40))
def test_plan_range_garbage_never_raises(header: str, size: int) -> None:
    plan = plan_range(header, size)
    if plan.verdict is ONE:
        assert 0 <= plan.first <= plan.last < size


@given(
    st.integers(min_value=0, max_value=1000),
    st.integers(min_value=0, max_value=1000),
    st.integers(min_value=0, max_value=1000),
)
def test_plan_range_single_matches_slice_semantics(first: int, length: int, size: int) -> None:
    last = first + length
    plan = plan_range(f"bytes={first}-{last}", size)
    data = bytes(range(256)) * 4
    want = data[:size][first : last + 1]
    if want:
        assert plan.verdict is ONE
        assert data[:size][plan.first : plan.last + 1] == want
    else:
        assert plan.verdict is U


async def _put(session: aiohttp.ClientSession, hub: Hub, name: str, data: bytes) -> None:
    async with session.put(
        f"{hub.url}/files/{name}", data=io.BytesIO(data), headers=hub.auth("write")
    ) as r:
        assert r.status in (200, 201)


async def test_range_edges_over_http(hub: Hub, session: aiohttp.ClientSession) -> None:
    data = bytes(range(100))
    await _put(session, hub, "r.bin", data)
    await _put(session, hub, "empty", b"")
    url = f"{hub.url}/files/r.bin"
    auth = hub.auth("read")
    cases = [
        ("bytes=-0", 416, None),
        ("bytes=5-2", 416, None),
        ("bytes=100-", 416, None),
        ("bytes=90-1000", 206, data[90:]),
        ("bytes=0-1,5-6", 200, data),
        ("items=0-5", 200, data),
        ("bytes= 3-4", 206, data[3:5]),
    ]
    for header, status, body in cases:
        async with session.get(url, headers={**auth, "Range": header}) as r:
            assert r.status == status, header
            if status == 416:
                assert r.headers["Content-Range"] == "bytes */100"
            else:
                assert await r.read() == body
    async with session.get(f"{hub.url}/files/empty", headers={**auth, "Range": "bytes=0-"}) as r:
        assert r.status == 416
        assert r.headers["Content-Range"] == "bytes */0"
    async with session.get(f"{hub.url}/files/empty", headers={**auth, "Range": "bytes=-5"}) as r:
        assert r.status == 200
        assert await r.read() == b""


@pytest.mark.interop
async def test_range_zero_suffix_with_curl(hub: Hub, session: aiohttp.ClientSession) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is not on PATH: run scripts/install.sh (it installs Debian's curl)")
    await _put(session, hub, "c.bin", b"x" * 50)
    args = [curl, "--silent", "--show-error", "-o", "/dev/null", "-D", "-"]
    args += ["-H", f"Authorization: Bearer {hub.tokens['read']}"]
    out = await asyncio.to_thread(
        subprocess.run,
        [*args, "-r", "-0", f"{hub.url}/files/c.bin"],
        capture_output=True,
        timeout=30,
        check=True,
    )
    head = out.stdout.decode().lower()
    assert head.startswith("http/1.1 416")
    assert "content-range: bytes */50" in head
