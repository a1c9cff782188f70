"""The report's headline, badges, replay data, terminal summary and the two-campaign page,
built from stored runs.json fixtures (no run needed)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from hubswarm import vtime
from hubswarm.cli import cli as cli_main
from hubswarm.cli.lab import open_in_browser
from hubswarm.clock import Clock
from hubswarm.lab.metrics import ClientRecord, PieceTrack, RunResult
from hubswarm.lab.progress import MAX_SAMPLES, ReceivedSampler, per_client, thin
from hubswarm.lab.replay import (
    MAX_CELLS,
    cs_tracks,
    frame,
    keep_clients,
    recorded,
    replay_tracks,
    tracks_from_logs,
)
from hubswarm.lab.replay_page import replay_html
from hubswarm.lab.report import load_runs, write_report
from hubswarm.lab.report_pair import CHANGED, compare_campaigns
from hubswarm.lab.rowspec import LEVELS, verdict_level
from hubswarm.lab.scenario import parse_scenario
from hubswarm.lab.sim import run_sim
from hubswarm.lab.table import ROWS, verdicts
from hubswarm.lab.terminal import summary_lines

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "sim-quick-runs.json"


def _runs() -> list[RunResult]:
    return load_runs(FIXTURE)[0]


def test_tracks_from_logs_sources_and_duplicates() -> None:
    logs = {
        1: [
            {"t": 100.5, "event": "piece", "index": 0, "source": "peer", "peers": ["10.0.0.1"]},
            {"t": 101.0, "event": "piece", "index": 1, "source": "peer", "peers": ["10.0.0.3"]},
            {"t": 101.5, "event": "piece", "index": 2, "source": "webseed", "peers": []},
            {"t": 102.0, "event": "piece", "index": 1, "source": "peer", "peers": ["10.0.0.1"]},
            {"t": 102.5, "event": "piece", "index": 9, "source": "peer", "peers": []},
            {"t": 103.0, "event": "complete"},
        ],
        2: [],
    }
    one, two = tracks_from_logs(logs, 100.0, 3, seed={"10.0.0.1"})
    assert one == PieceTrack(1, (0.5, 1.0, 1.5), (0, 1, 2), "spw")
    assert two == PieceTrack(2, (), (), "")
    # Without the seed's address (app mode: one address for all), a peer is a peer.
    (same,) = tracks_from_logs({1: logs[1]}, 100.0, 3)
    assert same.sources == "ppw"


@given(st.integers(1, 3000), st.integers(1, 400), st.integers(1, 50_000))
def test_keep_clients_is_bounded_and_spread(n: int, pieces: int, cap: int) -> None:
    kept = keep_clients(list(range(1, n + 1)), pieces, cap)
    assert kept == sorted(set(kept))
    assert kept[0] == 1
    assert len(kept) * pieces <= max(cap, pieces)
    if n * pieces <= cap:
        assert len(kept) == n
    elif len(kept) > 1:
        assert kept[-1] == n


def test_thousand_peers_fit_the_cap() -> None:
    logs = {
        i: [{"t": float(k), "event": "piece", "index": k, "source": "peer"} for k in range(100)]
        for i in range(1, 1001)
    }
    tracks = tracks_from_logs(logs, 0.0, 100)
    assert sum(len(t.times) for t in tracks) <= MAX_CELLS
    assert tracks[0].client == 1
    assert tracks[-1].client == 1000


def test_runs_json_round_trip_and_old_files() -> None:
    runs = _runs()
    swarm = next(r for r in runs if r.architecture == "p2p" and r.n == 8)
    assert len(swarm.tracks) == 8
    assert RunResult.from_json(json.loads(json.dumps(swarm.to_json()))) == swarm
    old, _, _ = load_runs(DATA / "runs.json")  # written before tracks existed
    assert all(r.tracks == () for r in old)


def test_every_replay_ends_complete_and_client_server_fills_front_to_back() -> None:
    for run in _runs():
        if run.scenario != "acceptance":
            continue
        tracks = replay_tracks(run)
        assert len(tracks) == run.n
        end = max(t for tr in tracks for t in tr.times)
        assert frame(tracks, run.pieces, end).complete == run.n
        assert frame(tracks, run.pieces, 0.0).complete == 0
    cs = next(r for r in _runs() if r.architecture == "client-server" and r.n == 8)
    half = frame(cs_tracks(cs), cs.pieces, cs.clients[0].end / 2)  # type: ignore[operator]
    for row in half.cells:
        held = row.rstrip(".")
        assert "." not in held
        assert set(held) <= {"s"}
        assert 0 < len(held) < cs.pieces


def test_kill_hub_client_server_stops_at_the_fault() -> None:
    run = next(
        r for r in _runs() if r.scenario == "fault-kill-hub" and r.architecture == "client-server"
    )
    (kill,) = [f.at for f in run.faults if f.kind == "kill_hub"]
    tracks = cs_tracks(run)
    assert all(t <= kill + 1e-9 for tr in tracks for t in tr.times)
    assert frame(tracks, run.pieces, 1e9).complete == sum(c.complete for c in run.clients)


def test_every_judge_text_names_a_level() -> None:
    assert verdict_level("P2P confirmed: peers supplied 71%") == "confirmed"
    assert verdict_level("partly: 20% still completed after kill_hub") == "partly"
    assert verdict_level("P2P NOT confirmed: time ×4.0 for ×4 N") == "not seen"
    assert verdict_level("REFUTED: an unauthorized client obtained 5 bytes") == "not seen"
    assert verdict_level("P2P: no sweep") == "not measured"
    assert verdict_level("P2P: probe pending") == "not measured"
    assert verdict_level("confirmed: killing the hub stopped every pending client") == "confirmed"
    for _, row in verdicts(_runs()):
        assert all(v.level in LEVELS for v in row)


def test_report_headline_first_badges_match_runs_json(tmp_path: Path) -> None:
    report = write_report(_runs(), tmp_path)
    page = (report.folder / "report.html").read_text()
    md = (report.folder / "report.md").read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings[:2] == ["The answer", "The comparison table"]
    assert headings[-1] == "How this was measured"
    assert page.index("headline.png") < page.index('class="compare"')
    assert "client-server 12.00 s, p2p 1.90 s" in md
    assert "6.3× faster than client-server" in md
    saved = json.loads((report.folder / "runs.json").read_text())["verdicts"]
    badges = re.findall(r'data-feature="([^"]+)" data-arch="([^"]+)" data-verdict="([^"]+)"', page)
    assert badges == [(v["feature"], v["architecture"], v["verdict"]) for v in saved]
    assert len(badges) == len(ROWS) * 3
    assert page.count("<details>") == len(ROWS)
    replay = (report.folder / "replay.html").read_text()
    assert '<script type="application/json" id="replay-data">' in replay
    assert "http://" not in replay
    assert "https://" not in replay
    assert (report.folder / "replay-frames.png").read_bytes()[:4] == b"\x89PNG"


def test_summary_lines_name_every_row_and_the_report(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli_main, ["lab", "report", str(FIXTURE), "--out", str(tmp_path)], catch_exceptions=False
    )
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == len(ROWS) + 1
    scal = next(line for line in lines if line.startswith("Scalability"))
    assert "client-server 12.00 s at N=8" in scal
    assert "p2p 1.90 s at N=8" in scal
    assert "✅ confirmed" in scal
    assert lines[-1].startswith("report: ")
    assert lines[-1].endswith("report.html")
    assert Path(lines[-1].removeprefix("report: ")).is_file()
    assert summary_lines(verdicts([]))[0].startswith("Architecture")


def test_the_summary_says_once_per_reason_what_was_not_measured(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from hubswarm.cli.lab import _show
    from hubswarm.lab.campaign import Campaign
    from hubswarm.lab.metrics import RunFailure

    missing = "libtorrent's Python bindings are not installed"
    failures = tuple(RunFailure("libtorrent", "acceptance", n, missing) for n in (2, 4, 8))
    failures += (RunFailure("p2p", "churn", 8, "the seed died"),)
    report = write_report(load_runs(FIXTURE)[0], tmp_path)
    out = io.StringIO()
    _show(Console(file=out, width=200), Campaign((), failures, ()), report)
    said = [line for line in out.getvalue().splitlines() if line.startswith("not measured")]
    assert said == [
        f"not measured: acceptance N=2,4,8 libtorrent: {missing}",
        "not measured: churn N=8 p2p: the seed died",
    ]


def test_open_never_fails_without_a_display(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text("<p>x</p>")
    said = open_in_browser(page, env={})
    assert said.startswith("no display here") or said.startswith(("opened", "no browser"))


def test_two_campaigns_side_by_side(tmp_path: Path) -> None:
    a = _runs()
    b = [r for r in a if r.architecture != "hybrid"]
    b = [
        r
        if r.architecture != "p2p"
        else r.__class__.from_json({**r.to_json(), "server_bytes_sent": 3 * r.file_size * r.n})
        for r in b
    ]
    pair = compare_campaigns(a, b)
    assert pair.changes > 0
    marked = [row for row in pair.runs.rows if row[2] == "p2p" and row[0] == "acceptance"]
    assert all("▲ more" in row[-1] for row in marked)
    hybrid = [row for row in pair.verdicts.rows if row[1] == "hybrid"]
    assert all(row[3] == "-" and row[4] == CHANGED for row in hybrid)
    result = CliRunner().invoke(
        cli_main,
        ["lab", "report", str(FIXTURE), str(FIXTURE), "--out", str(tmp_path)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0
    assert result.output.startswith("0 differences marked")
    page = Path(result.output.splitlines()[-1].removeprefix("report: "))
    assert "two campaigns side by side" in page.read_text()


# --- client-server progress, recorded as each client downloads (issue 20) --------------------


@given(
    st.lists(st.tuples(st.floats(0, 1e4), st.integers(0, 2**40)), max_size=300),
    st.integers(2, 100),
)
def test_thin_keeps_first_last_and_order(samples: list[tuple[float, int]], cap: int) -> None:
    kept = thin(samples, cap)
    assert len(kept) == min(len(samples), cap)
    if samples:
        assert kept[0] == samples[0]
        assert kept[-1] == samples[-1]
    rest = iter(samples)
    assert all(any(s == x for x in rest) for s in kept)  # a subsequence, in order
    assert per_client(1) <= MAX_SAMPLES
    assert per_client(10**6) >= 8


def test_sampler_is_bounded_and_spread_however_long() -> None:
    sampler = ReceivedSampler(Clock(), period=0.05, cap=16)

    async def long_download() -> None:
        async with sampler.watching():
            await asyncio.sleep(1000.0)  # virtual time: a download 20,000 periods long

    vtime.run(long_download())
    samples = sampler.samples()
    assert 8 <= len(samples) <= 16
    times = [t for t, _ in samples]
    assert times == sorted(times)
    assert times[-1] - times[0] == pytest.approx(1000.0)
    gaps = [b - a for a, b in itertools.pairwise(times[:-1])]
    assert max(gaps) == pytest.approx(min(gaps))  # evenly spaced (the last one is the exit's)


def _sim_client_server(n: int) -> RunResult:
    scenario = parse_scenario(
        {
            "name": "acceptance",
            "clients": n,
            "file_size": "1536KiB",
            "piece_size": "32KiB",
            "server_upload": "1MiB",
            "client_upload": "1MiB",
            "client_download": "16MiB",
            "architectures": ["client-server"],
            "emulation": "sim",
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        return run_sim(scenario.plans()[0], "client-server", Path(tmp))


def test_client_server_replay_is_drawn_from_the_recorded_bytes() -> None:
    run = _sim_client_server(4)  # the real hub and client, in virtual time
    assert recorded(run)
    for c in run.clients:
        assert 2 <= len(c.progress) <= per_client(run.n)
        times, got = zip(*c.progress, strict=True)
        assert list(times) == sorted(times)
        assert list(got) == sorted(got)
        assert got[0] == 0
        assert got[-1] == run.file_size
        assert c.start <= times[0] + 1e-3
        assert c.end is not None
        assert abs(times[-1] - c.end) < 0.05
    # The recording survives runs.json.
    assert RunResult.from_json(json.loads(json.dumps(run.to_json()))) == run
    tracks = cs_tracks(run)
    assert frame(tracks, run.pieces, max(c.end or 0 for c in run.clients)).complete == run.n
    # Each piece appears when the client's recorded bytes passed its end.
    c, track = run.clients[0], tracks[0]
    for k in (0, run.pieces // 2, run.pieces - 1):
        mark = run.file_size * (k + 1) // run.pieces
        before = [b for t, b in c.progress if t < track.times[k] - 1e-3]
        after = [b for t, b in c.progress if t >= track.times[k]]
        assert not before or before[-1] < mark
        assert after[0] >= mark
    page = replay_html([run], "t")
    assert page is not None
    assert "drawn from each client's bytes received over time" in page


def test_client_server_replay_follows_an_uneven_recording() -> None:
    # A client that got half the file in the first tenth of its time (and the rest slowly):
    # the recording, not a constant rate from start to end, decides what the replay shows.
    half = 10 * 2**20
    client = ClientRecord(
        1,
        0.0,
        10.0,
        2 * half,
        2 * half,
        verified=True,
        progress=((0.0, 0), (1.0, half), (10.0, 2 * half)),
    )
    run = RunResult(
        "client-server", "x", 1, 2 * half, 2**20, (2**20,), (2**20,), (client,), pieces=20
    )
    shown = frame(cs_tracks(run), run.pieces, 1.0).cells[0]
    assert shown == "s" * 10 + "." * 10
    old = replace(run, clients=(replace(client, progress=()),))
    assert not recorded(old)
    assert frame(cs_tracks(old), old.pieces, 1.0).cells[0] == "s" * 2 + "." * 18
    page = replay_html([old], "t")
    assert page is not None
    assert "estimated from each client's start, end and bytes" in page


def test_old_runs_json_without_recordings_still_replay() -> None:
    cs = [r for r in _runs() if r.architecture == "client-server"]
    assert cs
    assert all(c.progress == () for r in cs for c in r.clients)
    assert not any(recorded(r) for r in cs)
    assert all(len(cs_tracks(r)) == r.n for r in cs)
