"""The browser kit starts headless Chromium offline, reads its console, leaves no driver behind."""

from __future__ import annotations

import os
from pathlib import Path

from tests.browserkit import chromium, console_errors, set_color_scheme

PAGE = (
    "data:text/html,<html><body><p id=p>hi</p>"
    "<script>console.error('boom-from-page');"
    "document.getElementById('p').textContent="
    "matchMedia('(prefers-color-scheme: dark)').matches?'dark':'light'</script></body></html>"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"


def test_console_errors_are_read_and_driver_ends(tmp_path: Path) -> None:
    with chromium(download_dir=tmp_path) as driver:
        pid = driver.service.process.pid
        driver.get(PAGE)
        errors = console_errors(driver)
        assert any("boom-from-page" in e for e in errors), errors
        assert console_errors(driver) == []  # read once
        set_color_scheme(driver, "dark")
        driver.get(PAGE)
        assert driver.find_element("id", "p").text == "dark"
    assert not _alive(pid)
