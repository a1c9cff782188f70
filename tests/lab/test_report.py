"""Report generation from synthetic results: files, table, plots, missing architectures."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

from hubswarm.lab.metrics import RunFailure
from hubswarm.lab.report import REFERENCE, build_table, write_report
from tests.lab.synthetic import cs_run, faulty_run, p2p_run

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_only_client_server(tmp_path: Path) -> None:
    scenario = tmp_path / "sweep.toml"
    scenario.write_text('name = "sweep"\n')
    runs = [
        dataclasses.replace(r, scenario_path=str(scenario))
        for r in (cs_run(2), cs_run(4), cs_run(8), faulty_run())
    ]
    failures = [RunFailure("p2p", "sweep", 2, "p2p: swarm runner not available yet")]
    report = write_report(runs, tmp_path / "results", failures=failures, now=NOW)
    assert report.folder == tmp_path / "results" / "20260102T030405Z"
    for name in ("runs.json", "report.md", "report.html", "scenarios/sweep.toml"):
        assert (report.folder / name).is_file(), name
    data = json.loads((report.folder / "runs.json").read_text())
    assert len(data["runs"]) == 4
    assert data["failures"][0]["architecture"] == "p2p"
    assert {p.name for p in report.plots} >= {
        "time-vs-n-sweep.png",
        "cdf-sweep.png",
        "server-bytes-sweep.png",
        "faults-fault.png",
    }
    for plot in report.plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (report.folder / "report.html").read_text()
    md = (report.folder / "report.md").read_text()
    for feature, ref_cs, _ in REFERENCE:
        assert f"<td><b>{feature}</b></td>" in html
        assert f"| {feature} | {ref_cs} / " in md
    assert "data:image/png;base64," in html
    assert 'href="scenarios/sweep.toml"' in html
    assert "http://" not in html  # no network needed
    assert "https://" not in html
    assert "swarm runner not available yet" in md
    # N = 8: T = 2.1 s against D_cs = 2 s, as a ratio and as a time over the bound.
    assert "| 1.05 (+0.10 s) |" in md
    assert "<td>1.05 (+0.10 s)</td>" in html
    rows = {row.feature: row for row in report.table}
    assert rows["Reliability"].verdict.startswith("confirmed: killing the hub")
    assert rows["Security"].verdict.startswith("confirmed: the hub gave 0 bytes")
    assert "0 of 1048576 bytes" in rows["Security"].cs
    assert rows["Scalability"].verdict.startswith("confirmed")
    assert all(row.p2p == "not measured yet" for row in report.table)


def test_both_architectures() -> None:
    runs = [cs_run(2), cs_run(4), p2p_run(2), p2p_run(4)]
    table = build_table(runs)
    rows = {row.feature: row for row in table}
    assert "62% from peers" in rows["Architecture"].p2p  # mean of 50% and 75%
    assert "P2P" in rows["Architecture"].verdict
    assert "100% of received bytes came from the server" in rows["Architecture"].cs
    assert "pending" not in rows["Cost"].verdict
    assert rows["Data Storage"].p2p.startswith(
        "live copies of the rarest piece at the end of fault-free runs: 3..5"
    )


def test_empty_results(tmp_path: Path) -> None:
    report = write_report([], tmp_path, now=NOW)
    assert (report.folder / "report.html").is_file()
    assert report.plots == ()
    assert all(row.cs == "not measured yet" for row in report.table)
    again = write_report([], tmp_path, now=NOW)
    assert again.folder != report.folder  # never overwrite an earlier report


def test_redraw_from_runs_json(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hubswarm.cli import cli

    first = write_report([cs_run(2), p2p_run(2)], tmp_path / "a", now=NOW)
    result = CliRunner().invoke(
        cli, ["lab", "report", str(first.folder / "runs.json"), "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 0, result.output
    folder = Path(result.output.split("report: ")[1].strip()).parent
    assert (folder / "report.html").is_file()
    assert (
        json.loads((folder / "runs.json").read_text())["runs"]
        == json.loads((first.folder / "runs.json").read_text())["runs"]
    )
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = CliRunner().invoke(cli, ["lab", "report", str(bad)])
    assert result.exit_code == 1
    assert "not a lab runs.json" in result.output
