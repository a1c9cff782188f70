"""Headless Chromium driven by Selenium, for tests that open the hub's page (and the lab's report).

Debian's ``chromium`` and ``chromium-driver`` (``scripts/install.sh --test``) at fixed paths: the
driver path is passed explicitly through ``Service`` and Selenium Manager is kept offline, so
nothing is downloaded and no usage statistics are sent (PITFALLS.md, browsers). Each browser gets a
fresh profile in a temporary directory and is quit in ``finally``: chromedriver ends with it.

Use the ``browser`` fixture (import it into a conftest or a test module:
``from tests.browserkit import browser``), or the ``chromium()`` context manager directly.
``console_errors(driver)`` returns the SEVERE entries of the browser console since the last call,
so a test can assert "no console errors".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# Each flag keeps the browser from reaching the network on its own or from needing what a container
# lacks: no sandbox (root in a container), no GPU, no QUIC, no first-run/sync/component updates, and
# /tmp instead of a small /dev/shm.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

# A page load or script that takes longer than this is a failure, not something to wait out.
PAGE_LOAD_TIMEOUT_S = 30.0
SCRIPT_TIMEOUT_S = 30.0


def missing_reason() -> str | None:
    """Why a browser cannot start here, or None if it can."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is not installed (bash scripts/install.sh --test installs chromium)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@contextlib.contextmanager
def chromium(
    *,
    width: int = 1280,
    height: int = 900,
    download_dir: Path | None = None,
    extra_flags: tuple[str, ...] = (),
) -> Iterator[Any]:
    """A headless Chromium WebDriver; quit (and its chromedriver ended) on exit.

    ``download_dir``: where downloads land, without a prompt (set through CDP
    ``Page.setDownloadBehavior`` as well as the profile's prefs).
    """
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver

    # Selenium Manager must not try to fetch a browser or a driver, nor send statistics.
    os.environ["SE_OFFLINE"] = "1"
    os.environ["SE_AVOID_STATS"] = "true"
    profile = Path(tempfile.mkdtemp(prefix="hubswarm-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, *extra_flags):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if download_dir is not None:
        options.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(download_dir),
                "download.prompt_for_download": False,
                "safebrowsing.enabled": False,
            },
        )
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER), log_output=os.devnull)
    driver = None
    try:
        driver = webdriver.Chrome(options=options, service=service)
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
        driver.set_script_timeout(SCRIPT_TIMEOUT_S)
        if download_dir is not None:
            driver.execute_cdp_cmd(
                "Page.setDownloadBehavior",
                {"behavior": "allow", "downloadPath": str(download_dir)},
            )
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        else:
            service.stop()
        shutil.rmtree(profile, ignore_errors=True)


def console_log(driver: Any) -> list[dict[str, Any]]:
    """The browser console entries since the last call (each: level, message, source, timestamp)."""
    return list(driver.get_log("browser"))


def console_errors(driver: Any) -> list[str]:
    """Messages of SEVERE console entries (uncaught errors, CSP violations, failed loads) since the
    last call."""
    return [e["message"] for e in console_log(driver) if e.get("level") == "SEVERE"]


def set_color_scheme(driver: Any, scheme: str) -> None:
    """Emulate ``prefers-color-scheme: scheme`` ("light" or "dark") through CDP."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )


def wait_for(driver: Any, condition: Any, timeout: float = 15.0) -> Any:
    """``WebDriverWait(driver, timeout).until(condition)``: bounded waits only; an element
    replaced while the condition looks at it (stale) counts as "not yet"."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.05,
        ignored_exceptions=[StaleElementReferenceException],
    )
    return wait.until(condition)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium with downloads going to ``tmp_path / "downloads"``."""
    downloads = tmp_path / "downloads"
    downloads.mkdir(exist_ok=True)
    with chromium(download_dir=downloads) as driver:
        driver.download_dir = downloads
        yield driver
