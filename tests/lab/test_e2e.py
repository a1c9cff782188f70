"""A small end-to-end lab run (N=4, 2 MiB, every architecture, kill_hub) in every emulation:
what ``hubswarm lab compare`` does, down to the written report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hubswarm.lab import netem
from hubswarm.lab.campaign import run_scenarios
from hubswarm.lab.metrics import summarize
from hubswarm.lab.report import write_report
from hubswarm.lab.scenario import parse_scenario

MIB = 2**20

NETNS = pytest.param(
    "netns",
    marks=[
        pytest.mark.netns,
        pytest.mark.skipif(
            os.geteuid() != 0 or not netem.netns_available(),
            reason="needs root and ip netns (CI runs as root)",
        ),
    ],
)


@pytest.mark.parametrize("mode", ["app", "sim", NETNS])
async def test_small_lab_run_with_kill_hub(tmp_path: Path, mode: str) -> None:
    # D_cs = 4 * 2 MiB / 1 MiB/s = 8 s: no client-server client can finish before the hub
    # dies at 1 s. The swarms lose their tracker / DHT node but keep the seed peer.
    scenario = parse_scenario(
        {
            "name": "e2e",
            "clients": 4,
            "file_size": "2MiB",
            "piece_size": "32KiB",
            "server_upload": "1MiB",
            "client_upload": "1MiB",
            "client_download": "8MiB",
            "emulation": mode,
            "timeout": 30,
            "faults": [{"at": 1.0, "kind": "kill_hub"}],
        }
    )
    campaign = await run_scenarios([scenario], workdir=tmp_path / "work", no_netns=mode == "app")
    assert campaign.failures == ()
    by_arch = {r.architecture: r for r in campaign.results}
    assert set(by_arch) == {"client-server", "hybrid", "p2p"}
    assert all(r.emulation == mode for r in campaign.results)
    # The report says how netns links are set (rates of payload); app mode has no such links.
    assert (netem.RATE_NOTE in campaign.notes) == (mode == "netns")

    cs = summarize(by_arch["client-server"])
    assert cs.fault_completion == (("kill_hub", 1.0, 0.0),)
    assert not any(c.verified for c in by_arch["client-server"].clients)
    for arch in ("hybrid", "p2p"):
        result = by_arch[arch]
        assert [f.kind for f in result.faults] == ["kill_hub"]
        assert all(c.verified for c in result.clients), (arch, result.clients)
        assert all(c.bytes_received == 2 * MIB for c in result.clients)
        m = summarize(result)
        assert m.completed == 4
        assert not m.below_bound, (arch, m.all_complete_time, m.bound_p2p)

    report = write_report(campaign.results, tmp_path / "results", notes=campaign.notes)
    md = (report.folder / "report.md").read_text(encoding="utf-8")
    assert "| Reliability |" in md
    # Every measured cell carries its own verdict; per-run numbers live under Details.
    for row in report.table:
        for cell in (row.cs, row.p2p, row.hybrid):
            assert "Verdict:" in cell, (row.feature, cell)
    reliability = next(t for t in report.table if t.feature == "Reliability")
    assert "stopped every pending client" in reliability.cs
    assert "every pending client completed after kill_hub" in reliability.p2p
    assert "wire bytes" not in md.split("## The comparison table")[0]
    data = json.loads((report.folder / "runs.json").read_text(encoding="utf-8"))
    assert len(data["runs"]) == 3
    assert (report.folder / "report.html").is_file()
