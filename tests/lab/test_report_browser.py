"""The report and the replay in headless Chromium (tests/browserkit.py): no console errors,
every image drawn, badges as in runs.json, evidence that folds open, a slider that moves the
frame and a last frame where every peer is complete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hubswarm.lab.report import load_runs, write_report
from tests.browserkit import browser, console_errors, wait_for

__all__ = ["browser"]

FIXTURE = Path(__file__).parent / "data" / "sim-quick-runs.json"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs, failures, notes = load_runs(FIXTURE)
    return write_report(
        runs, tmp_path_factory.mktemp("report"), failures=failures, notes=notes
    ).folder


def test_report_page(browser: Any, folder: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get((folder / "report.html").as_uri())
    assert console_errors(browser) == []
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 5
    for img in images:
        assert (
            browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
            > 0
        )
    first = browser.find_element(By.TAG_NAME, "h2")
    assert first.text == "The answer"
    saved = json.loads((folder / "runs.json").read_text())["verdicts"]
    badges = browser.find_elements(By.CSS_SELECTOR, "span.badge")
    shown = [
        (b.get_attribute("data-feature"), b.get_attribute("data-arch"), b.text) for b in badges
    ]
    assert shown == [(v["feature"], v["architecture"], v["verdict"]) for v in saved]
    details = browser.find_elements(By.CSS_SELECTOR, "table.compare details")
    assert details
    evidence = details[0].find_element(By.TAG_NAME, "li")
    assert not evidence.is_displayed()
    details[0].find_element(By.TAG_NAME, "summary").click()
    assert evidence.is_displayed()
    assert "from the server" in evidence.text


def _frame_pixels(browser: Any, arch: str) -> str:
    return browser.execute_script(
        "return document.querySelector('canvas[data-arch=\"' + arguments[0] + '\"]').toDataURL()",
        arch,
    )


def test_replay_slider_and_last_frame(browser: Any, folder: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get((folder / "replay.html").as_uri())
    assert console_errors(browser) == []
    select = Select(browser.find_element(By.ID, "group"))
    assert select.first_selected_option.text == "acceptance N=8"
    canvases = browser.find_elements(By.TAG_NAME, "canvas")
    assert [c.get_attribute("data-arch") for c in canvases] == ["client-server", "p2p", "hybrid"]
    before = _frame_pixels(browser, "p2p")
    move = "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))"
    slider = browser.find_element(By.ID, "slider")
    browser.execute_script(move, slider, "300")
    assert _frame_pixels(browser, "p2p") != before
    browser.execute_script(move, slider, slider.get_attribute("max"))
    for canvas in canvases:
        assert canvas.get_attribute("data-complete") == "8"
    assert "8/8 complete" in browser.find_element(By.CSS_SELECTOR, ".caption[data-arch=p2p]").text
    # Play runs the slider to its end on its own (bounded wait).
    browser.execute_script(move, slider, "0")
    browser.find_element(By.ID, "play").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "slider").get_attribute("value") == "1000")
    assert console_errors(browser) == []
