"""Wide-area sweeps: T / bound against RTT and against loss, in the report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hubswarm.cli import cli as cli_main
from hubswarm.lab import plots
from hubswarm.lab.metrics import RunResult
from hubswarm.lab.report import load_runs, write_report
from hubswarm.lab.scenario import load_scenario

from .synthetic import cs_run, p2p_run

EXAMPLES = Path(__file__).parents[2] / "examples" / "lab"


def _sweep() -> list[RunResult]:
    """Client-server and p2p at RTT 20, 100, 300 ms and loss 0, 1 %: 12 runs, one scenario."""
    runs = []
    for rtt in (0.02, 0.1, 0.3):
        for loss in (0.0, 0.01):
            for run in (cs_run(4, scenario="wan"), dataclasses.replace(p2p_run(4), scenario="wan")):
                runs.append(dataclasses.replace(run, rtt=rtt, loss=loss))
    return runs


def test_the_report_of_a_sweep_plots_t_over_bound_against_rtt_and_loss(tmp_path: Path) -> None:
    report = write_report(_sweep(), tmp_path)
    names = {p.name for p in report.plots}
    assert {"t-vs-rtt-wan.png", "t-vs-loss-wan.png"} <= names
    for name in ("t-vs-rtt-wan.png", "t-vs-loss-wan.png"):
        assert (report.folder / name).read_bytes().startswith(b"\x89PNG")
    markdown = (report.folder / "report.md").read_text()
    assert "t-vs-rtt-wan.png" in markdown
    # Each run's row says which point of the sweep it is.
    assert "wan (RTT 300 ms, loss 1%)" in markdown
    assert "wan (RTT 20 ms, loss 0%)" in markdown
    # And runs.json keeps the points, so the report can be redrawn.
    runs, _, _ = load_runs(report.folder / "runs.json")
    assert sorted({(r.rtt, r.loss) for r in runs}) == [
        (rtt, loss) for rtt in (0.02, 0.1, 0.3) for loss in (0.0, 0.01)
    ]


def test_no_sweep_no_rtt_or_loss_plot(tmp_path: Path) -> None:
    report = write_report([cs_run(2), cs_run(4), p2p_run(2), p2p_run(4)], tmp_path)
    names = {p.name for p in report.plots}
    assert "time-vs-n-sweep.png" in names
    assert not any(n.startswith(("t-vs-rtt", "t-vs-loss")) for n in names)


def test_figures_over_n_keep_the_first_point_of_a_sweep() -> None:
    runs = _sweep()
    first = plots._first_point([r for r in runs if r.architecture == "p2p"])
    assert [(r.rtt, r.loss) for r in first] == [(0.02, 0.0)]


@pytest.mark.parametrize(
    ("values", "scale"),
    [
        ([20.0, 50.0, 300.0], "log"),  # 15x
        ([0.0, 0.1, 2.0], "symlog"),  # 20x, and a lossless point
        ([0.0, 0.5, 2.0], "linear"),  # 4x
        ([1.0, 9.9], "linear"),
    ],
)
def test_log_axis_where_the_values_span_ten_times(values: list[float], scale: str) -> None:
    fig = plots._figure()
    ax = fig.add_subplot()
    ax.plot(values, values)
    plots._log_if_wide(ax, "x", values, values)
    assert ax.get_xscale() == scale


def test_wan_example_sweeps_rtt_20_to_300_ms_and_loss_to_2_percent() -> None:
    wan = load_scenario(EXAMPLES / "wan.toml")
    rtts = [round(1000 * lat.rtt) for lat in wan.latencies]
    assert (min(rtts), max(rtts)) == (20, 300)
    assert (min(wan.losses), max(wan.losses)) == (0.0, 0.02)
    assert set(wan.architectures) == {"client-server", "p2p"}
    assert wan.emulation == "sim"
    assert 16 <= min(wan.clients) <= max(wan.clients) <= 32
    # Heterogeneous uplinks.
    assert len(set(wan.plans()[0].uploads)) > 1


def test_lab_run_of_a_small_sweep_with_two_jobs_writes_both_plots(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny-wan.toml"
    scenario.write_text(
        'name = "tiny-wan"\nclients = 2\nfile_size = "256KiB"\nserver_upload = "1MiB"\n'
        'client_upload = "1MiB"\nclient_download = "4MiB"\narchitectures = ["client-server"]\n'
        "latency = [0.005, 0.075]\nloss = [0, 0.02]\n"
    )
    result = CliRunner().invoke(
        cli_main, ["lab", "run", str(scenario), "--jobs", "2", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "out").iterdir()
    assert (folder / "t-vs-rtt-tiny-wan.png").is_file()
    assert (folder / "t-vs-loss-tiny-wan.png").is_file()
    runs = json.loads((folder / "runs.json").read_text())["runs"]
    assert [(r["emulation"], round(r["rtt"], 3), r["loss"]) for r in runs] == [
        ("sim", 0.02, 0.0),
        ("sim", 0.02, 0.02),
        ("sim", 0.3, 0.0),
        ("sim", 0.3, 0.02),
    ]
    # A longer round trip and loss cost time (the sim models both).
    ends = [max(c["end"] for c in r["clients"]) for r in runs]
    assert ends[0] < ends[1]
    assert ends[0] < ends[2]


def test_help_says_netns_runs_stay_serial() -> None:
    out = CliRunner().invoke(cli_main, ["lab", "run", "--help"], terminal_width=200).output
    assert "--jobs" in out
    assert "--dask" in out
    assert "one at a time" in out
