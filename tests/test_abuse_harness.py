"""The abuse harness, short (``benchmarks/abuse.py --quick``): a real seed (wire, MSE, uTP),
hub (HTTP, tus), DHT node (KRPC) and tracker (BEP 15) under hostile inputs stay up, keep
serving a legit client, log little, and give back their memory and file descriptors. Speed
ratios are only printed (they live in the benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "benchmarks" / "abuse.py"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_quick_abuse_run_holds_the_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(HARNESS), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert {r["service"] for r in rows} == {"seed", "hub", "dht", "tracker"}
    attacks = " ".join(r["attack"] for r in rows)
    for parser in ("wire", "MSE", "uTP", "HTTP", "tus", "KRPC", "UDP"):
        assert parser in attacks, parser
    assert "tracebacks" not in out.stderr
    for r in rows:
        what = f"{r['service']}: {r['attack']}"
        assert r["alive"], what
        assert r["inputs"] > 0, what
        assert r["legit_under"] is not None, what  # the legit client finished under attack
        # Connections closed, memory levelled: within 10 % of the baseline (+ a little
        # slack for an allocator's page).
        assert r["fds_after"] <= r["fds_before"] * 1.1 + 1, what
        assert r["rss_after_kib"] <= r["rss_before_kib"] * 1.1 + 1024, what
        if r["log_bytes_per_input"] is not None:
            assert r["log_bytes_per_input"] < 200, what
