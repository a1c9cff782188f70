"""The hub's page in a real browser: headless Chromium through Selenium (tests/browserkit.py).

The hub runs on its own event loop in a thread (tests/hub/threaded.py: Selenium's calls
block), with the built-in tracker, on 127.0.0.1. Every wait is bounded (browserkit.wait_for),
every test has a timeout.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from hubswarm.hub.tracker import TrackerState, add_tracker_routes
from tests.browserkit import browser, chromium, console_errors, set_color_scheme, wait_for

from .conftest import make_tokens
from .threaded import ThreadedHub

__all__ = ["browser"]  # the fixture, imported for the tests below

pytestmark = [pytest.mark.timeout(120)]

XSS_NAME = "<img src=x onerror=alert(1)>.txt"


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


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[ThreadHub]:
    data = tmp_path / "data"
    data.mkdir()
    tokens, _ = make_tokens(data)
    configure = lambda app: add_tracker_routes(app, TrackerState())  # noqa: E731
    with ThreadedHub(data, configure) as h:
        yield ThreadHub(h.url, data, tokens)


def sign_in(driver: Any, hub: ThreadHub, role: str) -> None:
    driver.get(hub.url + "/files")
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
