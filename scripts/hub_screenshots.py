"""Screenshots of the hub's page for the README, light and dark.

    python3 scripts/hub_screenshots.py [docs/img]

Starts a hub with its tracker on 127.0.0.1 over a temporary folder with a few sample files,
announces two made-up peers for one of them (so the swarm column has something to show),
signs in with a write token and saves ``hub-page.png`` and ``hub-page-dark.png``. Headless
Debian Chromium through Selenium (tests/browserkit.py: offline, fresh profile).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browserkit import chromium, set_color_scheme, wait_for
from tests.hub.threaded import ThreadedHub

from hubswarm.hub.auth import Role, TokenStore
from hubswarm.hub.tracker import TrackerState, add_tracker_routes

SAMPLES = {
    "debian-13.2.0-amd64-netinst.iso": 700_000,
    "datasets/weather-2026.csv.zst": 180_000,
    "datasets/readme.md": 4_200,
    "photos/2026/harbour.jpg": 95_000,
    "release-notes.pdf": 310_000,
}


def _request(url: str, token: str, method: str = "GET", data: bytes | None = None) -> bytes:
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        body: bytes = r.read()
        return body


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        _, token = TokenStore(data).create(Role.WRITE)
        configure = lambda app: add_tracker_routes(app, TrackerState())  # noqa: E731
        with ThreadedHub(data, configure) as hub:
            for name, size in SAMPLES.items():
                body = bytes(range(256)) * (size // 256) + b"\n" * (size % 256)
                _request(f"{hub.url}/files/{quote(name)}", token, "PUT", body)
            listing = json.loads(_request(f"{hub.url}/files", token))
            iso = next(f for f in listing["files"] if f["name"].endswith(".iso"))
            info_hash = quote(bytes.fromhex(iso["info_hash"]), safe="")
            for n, left in ((1, 0), (2, 350_000)):
                peer = quote(f"-XX0001-{n:012d}", safe="")
                _request(
                    f"{hub.url}/announce?info_hash={info_hash}&peer_id={peer}&port={6880 + n}"
                    f"&uploaded=0&downloaded=0&left={left}&compact=1",
                    token,
                )
            _request(f"{hub.url}/files/release-notes.pdf", token)
            with chromium(width=1100, height=820) as driver:
                driver.get(f"{hub.url}/signin")
                driver.find_element("id", "token").send_keys(token)
                driver.find_element("id", "signin").click()
                wait_for(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
                driver.find_element("css selector", "#live summary").click()
                for _ in range(8):  # some traffic for the throughput chart
                    _request(f"{hub.url}/files/{quote(iso['name'])}", token)
                    time.sleep(0.5)
                wait_for(driver, lambda d: d.find_element("id", "rate").text.startswith("out "))
                driver.save_screenshot(str(out / "hub-page.png"))
                set_color_scheme(driver, "dark")
                driver.save_screenshot(str(out / "hub-page-dark.png"))
    for name in ("hub-page.png", "hub-page-dark.png"):
        print(out / name)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))
