"""The hub's page in a real browser: headless Chromium through Selenium (tests/browserkit.py).

The hub runs on its own event loop in a thread (tests/hub/threaded.py: Selenium's calls
block), with the built-in tracker, on 127.0.0.1. Every wait is bounded (browserkit.wait_for),
every test has a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from aiohttp import web

from hubswarm.hub.app import CONFIG_KEY
from hubswarm.hub.tracker import TrackerState, add_tracker_routes
from tests.browserkit import browser, chromium, console_errors, set_color_scheme, wait_for

from .conftest import make_tokens
from .threaded import ThreadedHub

__all__ = ["browser"]  # the fixture, imported for the tests below

pytestmark = [pytest.mark.timeout(120)]

XSS_NAME = "<img src=x onerror=alert(1)>.txt"
MIB = 1 << 20
# The PATCHes of the page's uploads in the resume test (hub.js: CHUNK, 32 MiB, unless the
# page's body has data-upload-chunk).
PAGE_CHUNK = 8 * MIB


@dataclass
class ThreadHub:
    url: str
    data_dir: Path
    tokens: dict[str, str]

    def request(
        self, method: str, path: str, data: bytes | None = None, role: str = "admin"
    ) -> tuple[int, bytes]:
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.tokens[role]}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def put(self, name: str, data: bytes) -> None:
        status, body = self.request("PUT", "/files/" + quote(name, safe="/"), data)
        assert status in (200, 201), body

    def names(self) -> list[str]:
        status, body = self.request("GET", "/files", role="read")
        assert status == 200
        return [f["name"] for f in json.loads(body)["files"]]


@contextlib.contextmanager
def threaded_hub(
    tmp_path: Path, *, anonymous_read: bool = False, proxy: CuttingProxy | None = None
) -> Iterator[ThreadHub]:
    data = tmp_path / "data"
    data.mkdir()
    tokens, _ = make_tokens(data)

    def configure(app: web.Application) -> None:
        add_tracker_routes(app, TrackerState())
        if anonymous_read:  # so a BitTorrent client may use the hub as web seed without a token
            app[CONFIG_KEY] = dataclasses.replace(app[CONFIG_KEY], anonymous_read=True)
        if proxy is not None:
            app.cleanup_ctx.append(proxy.serve)

    with ThreadedHub(data, configure) as h:
        if proxy is not None:
            proxy.target_port = int(h.url.rsplit(":", 1)[1])
        yield ThreadHub(h.url, data, tokens)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[ThreadHub]:
    with threaded_hub(tmp_path) as h:
        yield h


def sign_in(driver: Any, hub: ThreadHub, role: str, *, path: str = "/files") -> None:
    driver.get(hub.url + path)
    wait_for(driver, lambda d: d.find_elements("id", "token"))
    assert "/signin" in driver.current_url
    driver.find_element("id", "token").send_keys(hub.tokens[role])
    driver.find_element("id", "signin").click()
    wait_for(driver, lambda d: d.execute_script("return document.body.dataset.ready") == "1")


def visible_names(driver: Any) -> set[str]:
    """Names of the listing's visible rows (read in one script: no stale elements)."""
    return set(
        driver.execute_script(
            "return Array.from(document.querySelectorAll('#listing tbody tr'))"
            ".filter(r => !r.hidden).map(r => r.dataset.name)"
        )
    )


def rows(driver: Any) -> dict[str, Any]:
    """Visible rows of the listing by their shown name."""
    return {
        r.get_attribute("data-name"): r
        for r in driver.find_elements("css selector", "#listing tbody tr")
        if r.is_displayed()
    }


def wait_uploads_done(driver: Any, count: int) -> None:
    def done(d: Any) -> bool:
        items = d.find_elements("css selector", "#uploads li")
        results = [i.get_attribute("data-result") for i in items]
        return (
            len(items) == count
            and all(r == "done" for r in results)
            and d.execute_script("return document.body.dataset.uploads") == "idle"
        )

    wait_for(driver, done, timeout=30)


def test_sign_in_upload_search_download_delete(
    browser: Any, hub: ThreadHub, tmp_path: Path
) -> None:
    sign_in(browser, hub, "write")
    cookie = browser.get_cookie("hubswarm_session")
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: not for scripts
    assert hub.tokens["write"] not in browser.current_url

    src = tmp_path / "src"
    src.mkdir()
    one, two = src / "alpha report.txt", src / "beta.bin"
    one.write_bytes(b"alpha " * 1000)
    two.write_bytes(os.urandom(3 << 20))
    browser.execute_script("document.body.dataset.uploads = 'busy'")
    browser.find_element("id", "pick-files").send_keys(f"{one}\n{two}")
    wait_uploads_done(browser, 2)
    bars = browser.find_elements("css selector", "#uploads progress")
    assert all(b.get_attribute("value") == b.get_attribute("max") for b in bars)

    folder = tmp_path / "photos"
    (folder / "2026").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"A" * 5000)
    (folder / "2026" / "b.jpg").write_bytes(b"B" * 7000)
    browser.execute_script("document.body.dataset.uploads = 'busy'")
    browser.find_element("id", "pick-folder").send_keys(str(folder))
    wait_uploads_done(browser, 4)
    assert sorted(hub.names()) == [
        "alpha report.txt",
        "beta.bin",
        "photos/2026/b.jpg",
        "photos/a.jpg",
    ]
    shown = rows(browser)
    assert {"alpha report.txt", "beta.bin", "photos"} <= set(shown)
    assert "2 files" in shown["photos"].text
    assert "11.7 KiB" in shown["photos"].text
    assert "3.0 MiB" in shown["beta.bin"].text

    # The search box narrows the listing to the matching names.
    browser.find_element("id", "search").send_keys("alpha")
    wait_for(browser, lambda d: visible_names(d) == {"alpha report.txt"})

    # Download by the link and compare bytes.
    rows(browser)["alpha report.txt"].find_element("css selector", "a.download").click()
    target = browser.download_dir / "alpha report.txt"
    wait_for(browser, lambda d: target.exists() and target.stat().st_size == one.stat().st_size)
    assert target.read_bytes() == one.read_bytes()

    # The folder's page has breadcrumbs back up.
    browser.find_element("id", "search").clear()
    browser.get(hub.url + "/files/photos/")
    wait_for(browser, lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    assert set(rows(browser)) == {"2026", "a.jpg"}
    crumbs = [a.text for a in browser.find_elements("css selector", ".crumbs a")]
    assert crumbs == ["files"]
    assert browser.find_element("id", "here").text == "photos"

    # Delete takes two clicks (no dialog); the file is gone from the page and the hub.
    button = rows(browser)["a.jpg"].find_element("css selector", "button.delete")
    button.click()
    assert button.text == "confirm delete"
    button.click()
    wait_for(browser, lambda d: "a.jpg" not in visible_names(d))
    assert "photos/a.jpg" not in hub.names()
    assert console_errors(browser) == []


def test_read_only_sees_no_controls_and_the_xss_name_is_text(browser: Any, hub: ThreadHub) -> None:
    hub.put(XSS_NAME, b"x")
    hub.put("plain.txt", b"y")
    sign_in(browser, hub, "read")
    assert browser.find_element("id", "role").text == "read"
    assert browser.find_elements("id", "pick-files") == []
    assert browser.find_elements("id", "pick-folder") == []
    assert browser.find_elements("css selector", "button.delete") == []
    shown = rows(browser)
    assert XSS_NAME in shown
    link = shown[XSS_NAME].find_element("css selector", "a.download")
    assert link.text == XSS_NAME
    # Nothing the name says became an element, and no script ran.
    assert browser.find_elements("css selector", "#listing img") == []
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    assert console_errors(browser) == []
    # The server refuses what the page does not show (read role, even with the CSRF token).
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/files/plain.txt', {method: 'DELETE', headers: {'X-CSRF-Token':"
        " document.getElementById('csrf').content}}).then(r => done(r.status));"
    )
    assert status == 403
    assert "plain.txt" in hub.names()


def test_write_without_csrf_token_is_refused(browser: Any, hub: ThreadHub) -> None:
    hub.put("keep.txt", b"k")
    sign_in(browser, hub, "admin")
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/files/keep.txt', {method: 'DELETE'}).then(r => done(r.status));"
    )
    assert status == 403
    assert "keep.txt" in hub.names()


def test_live_stats_and_dark_mode(browser: Any, hub: ThreadHub) -> None:
    hub.put("s.bin", b"s" * 100_000)
    sign_in(browser, hub, "read")
    light = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    browser.find_element("css selector", "#live summary").click()
    for _ in range(3):
        status, _ = hub.request("GET", "/files/s.bin", role="read")
        assert status == 200
    # Two events give a rate; the per-file download count arrives with them.
    wait_for(browser, lambda d: d.find_element("id", "rate").text.startswith("out "), 15)
    wait_for(browser, lambda d: "s.bin — 3 downloads" in d.find_element("id", "top-downloads").text)
    set_color_scheme(browser, "dark")
    dark = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert light != dark
    assert console_errors(browser) == []


def test_phone_width_has_no_horizontal_scroll(hub: ThreadHub) -> None:
    hub.put("a-rather-long-file-name-that-could-push-the-table-wider-than-a-phone.tar.gz", b"z")
    hub.put("folder/inner.txt", b"i")
    with chromium(width=390, height=844) as driver:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
        )
        sign_in(driver, hub, "write")
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        assert driver.find_element("id", "search").is_displayed()
        assert console_errors(driver) == []


_REQUEST_LINE = re.compile(
    rb"(?:^|\r\n)((?:GET|HEAD|POST|PATCH|PUT|DELETE|OPTIONS) /\S*) HTTP/1\.1\r\n"
)

_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of a hub, run by the hub's own event loop (``serve``
    is a ``cleanup_ctx`` of the hub's app: up with the hub, closed with it).

    Armed with ``cut_after(n)``, it forwards ``n`` more bytes towards the hub and then drops
    the connection carrying the next byte, once: the browser's side is reset at once, the hub's
    side is left hanging, as when a laptop changes networks, until a ``HEAD /uploads/`` (the
    page asking the hub's offset) comes by. Until then a PATCH that a browser resends by itself
    finds the old one still holding the upload (423). It counts every byte sent towards the hub
    and keeps the request lines and the response codes it forwarded.
    """

    def __init__(self) -> None:
        self.target_port = 0  # the hub's, set once it listens
        self.url = ""
        self.upstream_bytes = 0
        self.cuts = 0
        self.requests: list[str] = []
        self.requests_after_cut: list[str] = []
        self.statuses: list[int] = []
        self.saw_checksum = False
        self._budget: int | None = None
        self._held: asyncio.StreamWriter | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def cut_after(self, n: int) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(setattr, self, "_budget", n)

    async def serve(self, app: web.Application) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield
        finally:
            server.close()
            for w in list(self._writers):
                w.transport.abort()
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=5)
            await server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        try:
            hub_r, hub_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        pair = (client_w, hub_w)
        self._writers.update(pair)
        hub_gone = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._upstream(client_r, hub_w, client_w, hub_gone))
                tg.create_task(self._downstream(hub_r, client_w, hub_gone))
        finally:
            self._writers.difference_update(pair)
            for w in pair:
                w.transport.abort()

    def _note_requests(self, seen: bytes, new_from: int) -> None:
        for m in _REQUEST_LINE.finditer(seen):
            if m.end() > new_from:
                line = m.group(1).decode()
                self.requests.append(line)
                if self.cuts:
                    self.requests_after_cut.append(line)
                if self._held is not None and line.startswith("HEAD /uploads/"):
                    self._held.transport.abort()  # now the hub learns of the drop
                    self._held = None

    async def _upstream(
        self,
        reader: asyncio.StreamReader,
        hub_w: asyncio.StreamWriter,
        client_w: asyncio.StreamWriter,
        hub_gone: asyncio.Event,
    ) -> None:
        tail = b""
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(1 << 16):
                seen = tail + data
                self._note_requests(seen, len(tail))
                self.saw_checksum |= b"\r\nupload-checksum: sha256 " in seen.lower()
                tail = seen[-128:]
                if self._budget is not None and len(data) > self._budget:
                    hub_w.write(data[: self._budget])
                    self.upstream_bytes += self._budget
                    self._budget = None
                    self.cuts += 1
                    self._held = hub_w
                    client_w.transport.abort()
                    await hub_gone.wait()  # the HEAD dropped it (or the hub timed out)
                    return
                if self._budget is not None:
                    self._budget -= len(data)
                self.upstream_bytes += len(data)
                hub_w.write(data)
                await hub_w.drain()
            if hub_w.can_write_eof():
                hub_w.write_eof()

    async def _downstream(
        self, reader: asyncio.StreamReader, client_w: asyncio.StreamWriter, hub_gone: asyncio.Event
    ) -> None:
        tail = b""
        try:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(1 << 16):
                    seen = tail + data
                    self.statuses += [
                        int(m.group(1)) for m in _STATUS_LINE.finditer(seen) if m.end() > len(tail)
                    ]
                    tail = seen[-32:]
                    client_w.write(data)
                    await client_w.drain()
                if client_w.can_write_eof():
                    client_w.write_eof()
        finally:
            hub_gone.set()


def hub_sha256(hub: ThreadHub, name: str) -> str:
    status, body = hub.request("GET", "/files/" + quote(name, safe="/"), role="read")
    assert status == 200
    return hashlib.sha256(body).hexdigest()


def test_upload_resumes_after_the_connection_drops(browser: Any, tmp_path: Path) -> None:
    """The page uploads over tus; the proxy drops its connection once in the last PATCH: the
    page asks the hub's offset (HEAD), goes on from there, and the file lands byte for byte.
    Then a page opened anew resumes an upload started before."""
    data = os.urandom(4 * PAGE_CHUNK)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    proxy = CuttingProxy()
    with threaded_hub(tmp_path, proxy=proxy) as hub:
        sign_in(browser, ThreadHub(proxy.url, hub.data_dir, hub.tokens), "write")
        # In the middle of the last chunk (the page and the sign-in came before the arming).
        proxy.cut_after(3 * PAGE_CHUNK + PAGE_CHUNK // 2)
        browser.execute_script(f"document.body.dataset.uploadChunk = {PAGE_CHUNK}")
        browser.execute_script("document.body.dataset.uploads = 'busy'")
        browser.find_element("id", "pick-files").send_keys(str(src))
        wait_uploads_done(browser, 1)
        assert proxy.cuts == 1
        # The page's own retry asked the hub's offset, and went on with the same upload.
        assert browser.find_element("css selector", "#uploads li").get_attribute("data-retries")
        assert any(r.startswith("HEAD /uploads/") for r in proxy.requests_after_cut)
        assert [r for r in proxy.requests if r.startswith("POST /uploads/")] == ["POST /uploads/"]
        # 127.0.0.1 is a secure context and the hub offers sha256: the PATCHes were checksummed,
        # each digest right (the next chunk's is computed while one is sent).
        assert proxy.saw_checksum
        assert proxy.statuses.count(204) >= 4
        assert 460 not in proxy.statuses
        assert hub_sha256(hub, "big.bin") == hashlib.sha256(data).hexdigest()
        assert not any((hub.data_dir / ".uploads").glob("*.part"))
        # The failed requests the drop made may be logged; nothing else.
        assert all("/uploads/" in e for e in console_errors(browser))

        # A page opened again finds the upload it had started (its URL in localStorage, keyed by
        # target, size and modification time) and sends only the rest.
        half = tmp_path / "half.bin"
        rest = os.urandom(PAGE_CHUNK + 1000)
        half.write_bytes(data[:PAGE_CHUNK] + rest)
        os.utime(half, (1_700_000_000, 1_700_000_000))
        upload = started_upload(hub, "half.bin", data[:PAGE_CHUNK], half.stat().st_size)
        browser.get(hub.url + "/files")
        wait_for(browser, lambda d: d.execute_script("return document.body.dataset.ready") == "1")
        key = f"hubswarm-upload:half.bin:{half.stat().st_size}:1700000000000"
        browser.execute_script("localStorage.setItem(arguments[0], arguments[1])", key, upload)
        browser.execute_script("document.body.dataset.uploads = 'busy'")
        browser.find_element("id", "pick-files").send_keys(str(half))
        wait_uploads_done(browser, 1)
        assert hub_sha256(hub, "half.bin") == hashlib.sha256(half.read_bytes()).hexdigest()
        assert not any((hub.data_dir / ".uploads").glob("*.part"))  # that upload, not a new one
        assert browser.execute_script("return localStorage.getItem(arguments[0])", key) is None
        assert console_errors(browser) == []


def started_upload(hub: ThreadHub, name: str, first: bytes, length: int) -> str:
    """A tus upload of ``length`` bytes to ``name`` with ``first`` sent; its path."""
    auth = {"Authorization": f"Bearer {hub.tokens['write']}", "Tus-Resumable": "1.0.0"}
    meta = "filename " + base64.b64encode(name.encode()).decode()
    create = {**auth, "Upload-Length": str(length), "Upload-Metadata": meta}
    req = urllib.request.Request(hub.url + "/uploads/", method="POST", headers=create)
    with urllib.request.urlopen(req, timeout=10) as r:
        path = urlsplit(r.headers["Location"]).path
    patch = {**auth, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    req = urllib.request.Request(hub.url + path, data=first, method="PATCH", headers=patch)
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Upload-Offset"] == str(len(first))
    return path


# Drops built in the page: a DataTransfer of two File objects (as a real drag of files gives),
# then a folder. A page's script cannot make the File System entries a real folder drag
# carries, so the folder comes as objects with the same members (isDirectory, createReader,
# readEntries, file), around real File objects.
DROP_FILES = """
const bytes = new Uint8Array(300000).map((_, i) => (i * 7 + 3) % 251);
const dt = new DataTransfer();
dt.items.add(new File(["dropped text"], "note.txt"));
dt.items.add(new File([bytes], "data.bin"));
document.getElementById("drop").dispatchEvent(
  new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
"""
DROP_FOLDER = """
const fileEntry = (f) => ({isFile: true, isDirectory: false, name: f.name,
  file: (ok) => ok(f)});
const dirEntry = (name, children) => ({isFile: false, isDirectory: true, name,
  createReader() {
    let given = false;
    return {readEntries(ok) {  // as the real one: asynchronous, then an empty batch
      const batch = given ? [] : children;
      given = true;
      setTimeout(() => ok(batch));
    }};
  }});
const tree = dirEntry("album", [fileEntry(new File(["A"], "a.txt")),
  dirEntry("inner", [fileEntry(new File(["BB"], "b.txt"))])]);
const ev = new Event("drop", {bubbles: true, cancelable: true});
Object.defineProperty(ev, "dataTransfer",
  {value: {items: [{webkitGetAsEntry: () => tree}], files: []}});
document.getElementById("drop").dispatchEvent(ev);
"""


def test_drop_files_and_a_folder_then_fetch_a_torrent_with_libtorrent(
    browser: Any, tmp_path: Path
) -> None:
    pytest.importorskip("libtorrent")
    from tests.interop.peers import lt_peer

    expected = bytes((i * 7 + 3) % 251 for i in range(300000))
    with threaded_hub(tmp_path, anonymous_read=True) as hub:
        sign_in(browser, hub, "write", path="/signin?next=/files")
        browser.execute_script("document.body.dataset.uploads = 'busy'")
        browser.execute_script(DROP_FILES)
        wait_uploads_done(browser, 2)
        browser.execute_script("document.body.dataset.uploads = 'busy'")
        browser.execute_script(DROP_FOLDER)
        wait_uploads_done(browser, 4)
        assert sorted(hub.names()) == ["album/a.txt", "album/inner/b.txt", "data.bin", "note.txt"]
        assert hub_sha256(hub, "data.bin") == hashlib.sha256(expected).hexdigest()
        wait_for(browser, lambda d: {"album", "data.bin", "note.txt"} <= visible_names(d))

        # The page's .torrent link, downloaded by the browser, is all libtorrent needs: the
        # hub's web seed (url-list) serves the bytes.
        rows(browser)["data.bin"].find_element("css selector", "a.torrent").click()
        torrent = browser.download_dir / "data.bin.torrent"
        wait_for(browser, lambda d: torrent.exists() and torrent.stat().st_size > 0)
        dest = tmp_path / "lt"
        dest.mkdir()
        with lt_peer() as peer:
            peer.add(dest, torrent=torrent.read_bytes())
            peer.wait(peer.is_seed, 30, "download from the hub's web seed")
        assert (dest / "data.bin").read_bytes() == expected
        assert console_errors(browser) == []
