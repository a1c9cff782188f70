#!/usr/bin/env python3
"""The page's uploads in a real browser: tus (8 MiB PATCHes, sha256 each) against one plain PUT.

Starts a hub (``python3 -m hubswarm hub serve``) on loopback and headless Chromium
(tests/browserkit.py), signs in with a write token, then uploads the same file ``--repeat``
times, alternating: through the page's file input (its tus client, as people use it) and, as
the reference, as one XHR ``PUT /files/NAME`` of the same File from the same page (what the
page did before). Times are taken in the page (``performance.now()``); the hub's CPU from
/proc. Prints the median MB/s of each, the ratio, and the hub's CPU seconds per GiB.

Run: python3 benchmarks/page_upload.py [--size-mib 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.hub_upload import cpu_seconds, hub, token
from tests.browserkit import chromium, wait_for

MIB = 1024 * 1024

# The page's upload of the file chosen in #pick-files: start and end times in the page.
_WATCH = """
window.__bench = {};
document.getElementById("pick-files").addEventListener("change",
  () => { window.__bench.t0 = performance.now(); }, {capture: true});
new MutationObserver(() => {
  const li = document.querySelector("#uploads li[data-result]");
  if (li && !window.__bench.t1) {
    window.__bench.t1 = performance.now();
    window.__bench.result = li.dataset.result;
  }
}).observe(document.getElementById("uploads"), {subtree: true, attributes: true});
"""
# The reference: one XHR PUT of the file chosen in #bench-file.
_PUT = """
const done = arguments[arguments.length - 1];
const file = document.getElementById("bench-file").files[0];
const xhr = new XMLHttpRequest();
xhr.open("PUT", "/files/put.bin");
xhr.setRequestHeader("X-CSRF-Token", document.getElementById("csrf").content);
const t0 = performance.now();
xhr.onload = () => done({status: xhr.status, ms: performance.now() - t0});
xhr.onerror = () => done({status: 0, ms: 0});
xhr.send(file);
"""


def page_upload(driver: Any, src: Path) -> float:
    """Seconds the page's tus upload of ``src`` took."""
    driver.get(driver.current_url)
    wait_for(driver, lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    driver.execute_script(_WATCH)
    driver.find_element("id", "pick-files").send_keys(str(src))
    wait_for(driver, lambda d: d.execute_script("return window.__bench.t1"), timeout=600)
    bench = driver.execute_script("return window.__bench")
    assert bench["result"] == "done", bench
    return float(bench["t1"] - bench["t0"]) / 1000


def put_upload(driver: Any, src: Path) -> float:
    """Seconds one XHR PUT of ``src`` from the page took."""
    driver.execute_script(
        "const i = document.createElement('input'); i.type = 'file'; i.id = 'bench-file';"
        "i.hidden = true; document.body.append(i);"
    )
    driver.find_element("id", "bench-file").send_keys(str(src))
    result = driver.execute_async_script(_PUT)
    assert result["status"] in (200, 201), result
    return float(result["ms"]) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        src = Path(tmp) / "upload.bin"
        with src.open("wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(MIB))
        results: dict[str, list[tuple[float, float]]] = {"tus (page)": [], "PUT (reference)": []}
        with hub(data, pieces=True) as (url, pid), chromium() as driver:
            driver.set_script_timeout(600)
            driver.get(f"{url}/signin")
            driver.find_element("id", "token").send_keys(token(data))
            driver.find_element("id", "signin").click()
            wait_for(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
            for i in range(args.repeat):
                order = [("tus (page)", page_upload), ("PUT (reference)", put_upload)]
                for label, run in order if i % 2 == 0 else order[::-1]:
                    cpu0 = cpu_seconds(pid)
                    seconds = run(driver, src)
                    results[label].append((seconds, cpu_seconds(pid) - cpu0))
                    time.sleep(0.5)
    print(f"upload of {args.size_mib} MiB from headless Chromium, {args.repeat} runs each")
    print(f"load average: {Path('/proc/loadavg').read_text().strip()}")
    medians = {}
    for label, runs in results.items():
        mbps = statistics.median(size / s / 1e6 for s, _ in runs)
        cpu = statistics.median(c for _, c in runs) / (size / (1 << 30))
        medians[label] = mbps
        each = " ".join(f"{size / s / 1e6:.0f}" for s, _ in runs)
        print(f"{label:16} {mbps:8.1f} MB/s  hub CPU {cpu:5.2f} s/GiB  (runs: {each})")
    ratio = medians["tus (page)"] / medians["PUT (reference)"]
    print(f"tus / PUT        {ratio:8.2f}")


if __name__ == "__main__":
    main()
