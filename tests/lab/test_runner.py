"""End-to-end client-server runs (real hub, real client agents) and the runner plumbing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from hubswarm.cli import cli
from hubswarm.errors import LabError
from hubswarm.lab import netem
from hubswarm.lab.campaign import quick_plan, run_plan, run_scenarios
from hubswarm.lab.emulation import open_network, resolve_emulation
from hubswarm.lab.events import EventTail, read_events
from hubswarm.lab.metrics import RunResult, summarize
from hubswarm.lab.netem import Network
from hubswarm.lab.runners import ClientServerRunner, make_runner
from hubswarm.lab.scenario import RunPlan, parse_scenario

MIB = 2**20


def scenario(**over: object):  # type: ignore[no-untyped-def]
    data: dict[str, object] = {
        "name": "e2e",
        "clients": 4,
        "file_size": "2MiB",
        "server_upload": "8MiB",
        "client_upload": "1MiB",
        "client_download": "16MiB",
        "architectures": ["client-server"],
        "timeout": 60,
    }
    data.update(over)
    return parse_scenario(data)


def check_complete_run(result, n: int, *, probes: bool = True) -> None:  # type: ignore[no-untyped-def]
    assert result.architecture == "client-server"
    assert len(result.clients) == n
    assert all(c.verified for c in result.clients), [c.error for c in result.clients]
    assert all(c.bytes_received == 2 * MIB for c in result.clients)
    # The hub sent at least N copies (plus headers and /stats answers).
    assert result.server_bytes_sent is not None
    assert result.server_bytes_sent >= n * 2 * MIB
    m = summarize(result)
    assert m.completed == n
    assert m.all_complete_time is not None
    # A flash crowd can never beat the fluid bound: below it would be a measurement bug.
    assert not m.below_bound, (m.all_complete_time, m.bound_cs)
    if not probes:
        assert result.security == ()
        return
    probes = {p.description: p for p in result.security}
    assert probes["client with no token"].bytes_obtained == 0
    assert probes["client with revoked token"].bytes_obtained == 0
    assert probes["client with forged token"].bytes_obtained == 0
    control = probes["client with valid read token (control)"]
    assert control.bytes_obtained == 2 * MIB


async def test_client_server_app_mode(tmp_path: Path) -> None:
    plan = scenario(emulation="app").plans()[0]
    result = await run_plan(plan, ClientServerRunner(), mode="app", workdir=tmp_path)
    assert result.emulation == "app"
    check_complete_run(result, 4)


@pytest.mark.netns
@pytest.mark.skipif(
    os.geteuid() != 0 or not netem.netns_available(),
    reason="needs root and ip netns (CI runs as root)",
)
async def test_client_server_netns_mode(tmp_path: Path) -> None:
    before = set(netem.leftovers())
    plan = scenario(emulation="netns").plans()[0]
    # The probes ran in app mode above; here the shaping and the namespaces are under test.
    runner = ClientServerRunner(probe_security=False)
    result = await run_plan(plan, runner, mode="netns", workdir=tmp_path)
    assert result.emulation == "netns"
    check_complete_run(result, 4, probes=False)
    assert set(netem.leftovers()) <= before  # everything this run made is gone


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


@pytest.mark.parametrize("mode", ["app", NETNS])
async def test_kill_hub_stops_every_pending_client(tmp_path: Path, mode: str) -> None:
    # D_cs = 2 * 2 MiB / 0.5 MiB/s = 8 s; the hub dies at 1 s.
    s = scenario(
        clients=2,
        server_upload="512KiB",
        faults=[{"at": 1.0, "kind": "kill_hub"}],
        timeout=30,
    )
    runner = ClientServerRunner(probe_security=False)
    result = await run_plan(s.plans()[0], runner, mode=mode, workdir=tmp_path)
    assert [f.kind for f in result.faults] == ["kill_hub"]
    # The hub's host was cut off: clients fail at once, not at the 30 s timeout.
    assert all(c.error != "timeout" for c in result.clients), result.clients
    assert not any(c.verified for c in result.clients)
    assert all(c.error for c in result.clients)
    assert all(0 < c.bytes_received < 2 * MIB for c in result.clients)
    assert summarize(result).fault_completion == (("kill_hub", 1.0, 0.0),)
    assert result.server_bytes_sent == sum(c.bytes_received for c in result.clients)
    assert result.replicas[-1].counts[0] == 0


class _Unavailable:
    """A runner that cannot run (as a swarm runner could not before the swarm landed)."""

    extra_hosts = 0

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, plan: RunPlan, network: Network, workdir: Path) -> RunResult:
        raise LabError(f"{self.name}: swarm runner not available yet")


async def test_lab_errors_become_failures(tmp_path: Path) -> None:
    stub = _Unavailable("hybrid")
    with pytest.raises(LabError, match="unknown architecture"):
        make_runner("mainframe")
    assert make_runner("hybrid").name == "hybrid"
    s = scenario(architectures=["hybrid"], clients=[2, 3])
    campaign = await run_scenarios([s], workdir=tmp_path, no_netns=True, runners={"hybrid": stub})
    assert campaign.results == ()
    assert [(f.architecture, f.n) for f in campaign.failures] == [("hybrid", 2), ("hybrid", 3)]
    assert "not available yet" in campaign.failures[0].error


async def test_only_the_swarm_gets_a_host_for_its_bootstrap_node() -> None:
    # p2p: hosts 0 (seed), 1..N (clients) and N + 1, unshaped, for the DHT bootstrap node.
    plan = scenario().plans()[0]
    assert [make_runner(a).extra_hosts for a in ("client-server", "hybrid", "p2p")] == [0, 0, 1]
    async with open_network(plan, "app", extra_hosts=1) as network:
        assert len(network.hosts) == plan.n + 2
        boot = network.hosts[-1]
        assert (boot.upload, boot.download) == (float("inf"), float("inf"))
        assert network.hosts[0].upload == 8 * MIB
    async with open_network(plan, "app") as network:
        assert len(network.hosts) == plan.n + 1


def test_resolve_emulation_and_quick() -> None:
    assert resolve_emulation("auto", no_netns=True) == "app"
    assert resolve_emulation("app") == "app"
    expected = "netns" if os.geteuid() == 0 and netem.netns_available() else "app"
    assert resolve_emulation("auto") == expected
    assert quick_plan(scenario(clients=[2, 4, 8, 16, 32])).clients == (2, 4, 8)
    assert quick_plan(scenario(clients=[16, 32])).clients == (16,)


def test_cli_bad_scenario_and_cleanup(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nclients = -3\n')
    runner = CliRunner()
    result = runner.invoke(cli, ["lab", "run", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "[clients] must be a positive integer, got -3" in result.output
    # A prefix no one uses: never disturb a lab run going on beside the tests.
    result = runner.invoke(cli, ["lab", "cleanup", "--prefix", "hsw-zz"])
    assert result.exit_code == 0
    assert result.output.strip() == "nothing to remove"
    result = runner.invoke(cli, ["lab", "cleanup", "--prefix", "eth"])
    assert result.exit_code == 2


def test_agent_warms_http_only_for_commands_that_may_use_it() -> None:
    from hubswarm.lab.agent import _speaks_http

    magnet = "magnet:?xt=urn:btih:" + "ab" * 20 + "&dn=payload.bin"
    assert not _speaks_http(["fetch", magnet, "--dht-bootstrap", "10.77.0.1:6881"])
    assert _speaks_http(["fetch", magnet + "&tr=http%3A%2F%2Fh%2Fannounce"])
    assert _speaks_http(["fetch", magnet, "--tracker", "http://h/announce"])
    assert _speaks_http(["fetch", "/tmp/t1.torrent", "--webseed-mode", "always"])


@pytest.mark.parametrize(
    ("args", "http"),
    [
        (["fetch", "magnet:?xt=urn:btih:" + "ab" * 20, "--dht-bootstrap", "10.77.0.1:6881"], False),
        (["fetch", "magnet:?xt=urn:btih:" + "ab" * 20, "--tracker", "http://h/announce"], True),
    ],
)
def test_agent_warm_up_loads_aiohttp_only_for_http(args: list[str], http: bool) -> None:
    # A fresh interpreter (this one has aiohttp loaded): a DHT-only peer's agent must not
    # pay for aiohttp (~0.2 CPU-s each, 33 at once on 2 cores); a tracker user gets it
    # before `ready`, not after `go`.
    code = (
        "import sys; from hubswarm.lab import agent; agent._warm_up(sys.argv[1:]); "
        "print('hubswarm.cli.swarm' in sys.modules, 'aiohttp' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", str(http)]


def test_event_tail_reads_each_line_once_and_waits_for_a_torn_one(tmp_path: Path) -> None:
    log = tmp_path / "c1.events"
    tail = EventTail(log)
    assert tail.read_new() == []  # not created yet
    log.write_bytes(b'{"event": "metadata"}\n{"event": "pie')
    assert tail.read_new() == [{"event": "metadata"}]
    with log.open("ab") as f:
        f.write(b'ce", "index": 3}\nnot json\n[1]\n\xff\n')
    # The torn line, completed; garbage, a non-object and bad UTF-8 are skipped.
    assert tail.read_new() == [{"event": "piece", "index": 3}]
    assert tail.read_new() == []
    with log.open("ab") as f:
        f.write(b'{"event": "complete", "t": 1.5}\n')
    assert tail.read_new() == [{"event": "complete", "t": 1.5}]
    # What the whole-file reader makes of the same log.
    assert read_events(log) == [
        {"event": "metadata"},
        {"event": "piece", "index": 3},
        {"event": "complete", "t": 1.5},
    ]


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(
        st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
        max_size=8,
    ),
    cuts=st.lists(st.integers(0, 400), max_size=5),
)
def test_event_tail_matches_whole_reads_however_the_writes_are_cut(
    tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, object]], cuts: list[int]
) -> None:
    log = tmp_path_factory.mktemp("tail") / "c.events"
    data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    tail = EventTail(log)
    seen: list[dict[str, object]] = []
    done = 0
    for cut in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        with log.open("ab") as f:
            f.write(data[done:cut])
        done = max(done, cut)
        seen += tail.read_new()
    assert seen == records == read_events(log)
