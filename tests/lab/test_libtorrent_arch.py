"""The reference client as a lab architecture (issue 22): libtorrent peers on the netns fabric,
a clear error in sim, and the lab's word when the bindings are missing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from hubswarm.errors import LabError, ScenarioError
from hubswarm.lab import netem
from hubswarm.lab.campaign import run_scenarios
from hubswarm.lab.ltpeer import SETTINGS, settings_note
from hubswarm.lab.metrics import summarize
from hubswarm.lab.runners import libtorrent as libtorrent_runner
from hubswarm.lab.runners import make_runner, unavailable
from hubswarm.lab.runners.libtorrent import MISSING, NETNS_ONLY
from hubswarm.lab.scenario import default_scenario_dir, load_scenarios, parse_scenario
from hubswarm.lab.sim import run_sim

MIB = 2**20


def small(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "lt",
        "clients": 2,
        "file_size": "1MiB",
        "piece_size": "32KiB",
        "server_upload": "1MiB",
        "client_upload": "1MiB",
        "client_download": "8MiB",
        "architectures": ["libtorrent"],
        "emulation": "netns",
        "timeout": 30,
    }
    data.update(over)
    return data


def test_libtorrent_is_an_architecture_but_not_a_default_one() -> None:
    assert make_runner("libtorrent").name == "libtorrent"
    assert parse_scenario(small()).architectures == ("libtorrent",)
    default = small()
    del default["architectures"]
    assert "libtorrent" not in parse_scenario(default).architectures


def test_the_default_set_runs_libtorrent_in_the_acceptance_sweep() -> None:
    by_name = {s.name: s for s in load_scenarios(default_scenario_dir())}
    assert "libtorrent" in by_name["acceptance"].architectures
    assert [s.name for s in by_name.values() if "libtorrent" in s.architectures] == ["acceptance"]


async def test_the_campaign_skips_libtorrent_where_it_cannot_run_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    said: list[str] = []
    scenario = parse_scenario(small(clients=[2, 4], emulation="auto"))
    # App mode (--no-netns) and the sim: libtorrent runs in netns only; nothing starts.
    for how in ({"no_netns": True}, {"sim": True}):
        campaign = await run_scenarios(
            [scenario], workdir=tmp_path / "work", on_progress=said.append, **how
        )
        assert campaign.results == ()
        assert [(f.architecture, f.n, f.error) for f in campaign.failures] == [
            ("libtorrent", 2, NETNS_ONLY),
            ("libtorrent", 4, NETNS_ONLY),
        ]
        assert campaign.notes[0] == f"libtorrent not measured: {NETNS_ONLY}"
        assert said[-1] == f"libtorrent skipped (not measured): {NETNS_ONLY}"
    # Without the bindings (as on a machine installed without the reference extra).
    monkeypatch.setattr(libtorrent_runner, "libtorrent_version", lambda: None)
    assert unavailable("libtorrent", "netns") == MISSING
    assert unavailable("p2p", "app") is None
    campaign = await run_scenarios([scenario], workdir=tmp_path / "work", no_netns=True)
    assert {f.error for f in campaign.failures} == {MISSING}


def test_the_sim_refuses_libtorrent_clearly(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="sim cannot run it"):
        parse_scenario(small(emulation="sim"))
    with pytest.raises(ScenarioError, match="sim cannot run it"):
        parse_scenario(small(emulation="auto", latency=0.02))
    plan = parse_scenario(small()).plans()[0]
    with pytest.raises(LabError, match="own sockets"):
        run_sim(plan, "libtorrent", tmp_path)


def test_the_settings_note_names_the_version_and_every_change() -> None:
    note = settings_note("2.1.1.0")
    assert "libtorrent 2.1.1.0" in note
    assert all(f"{key}=" in note for key in SETTINGS)
    assert "pip install 'hubswarm[reference]'" in settings_note(None)
    assert "pip install 'hubswarm[reference]'" in MISSING


@pytest.mark.netns
@pytest.mark.timeout(120)
@pytest.mark.skipif(
    os.geteuid() != 0 or not netem.netns_available(),
    reason="needs root and ip netns (CI runs as root)",
)
async def test_libtorrent_swarm_on_netns(tmp_path: Path) -> None:
    pytest.importorskip("libtorrent")
    scenario = parse_scenario(small())
    campaign = await run_scenarios([scenario], workdir=tmp_path / "work")
    assert campaign.failures == ()
    (result,) = campaign.results
    assert result.architecture == "libtorrent"
    assert result.emulation == "netns"
    assert all(c.verified and c.bytes_received == MIB for c in result.clients), result.clients
    m = summarize(result)
    assert m.completed == 2
    assert not m.below_bound
    # Host 0 (the libtorrent seed) sent at least one copy; its settings are in the notes.
    assert result.server_bytes_sent is not None
    assert result.server_bytes_sent >= MIB
    assert any("libtorrent 2." in note and "enable_dht=False" in note for note in result.notes)
    # The replay knows where libtorrent's pieces came from: the seed (host 0) or a peer.
    assert {len(t.pieces) for t in result.tracks} == {result.pieces}
    sources = "".join(t.sources for t in result.tracks)
    assert "s" in sources
    assert set(sources) <= {"s", "p"}
