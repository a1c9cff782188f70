"""Screenshots of a lab report for the README: the headline, the table, the replay.

    python3 scripts/report_screenshots.py results/<stamp> [docs/img]

Headless Debian Chromium through Selenium (tests/browserkit.py: offline, fresh profile).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browserkit import chromium


def main(folder: Path, out: Path) -> None:
    from selenium.webdriver.common.by import By

    out.mkdir(parents=True, exist_ok=True)
    with chromium(width=1360, height=2600) as driver:
        driver.get((folder / "report.html").resolve().as_uri())
        driver.find_element(By.TAG_NAME, "img").screenshot(str(out / "report-headline.png"))
        driver.find_element(By.CSS_SELECTOR, "table.compare").screenshot(
            str(out / "report-table.png")
        )
        driver.get((folder / "replay.html").resolve().as_uri())
        slider = driver.find_element(By.ID, "slider")
        driver.execute_script(
            "arguments[0].value = '400'; arguments[0].dispatchEvent(new Event('input'))", slider
        )
        driver.find_element(By.ID, "runs").screenshot(str(out / "report-replay.png"))
    for name in ("report-headline.png", "report-table.png", "report-replay.png"):
        print(out / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) > 2 else "docs/img"))
