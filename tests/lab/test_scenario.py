"""Scenario files: good ones parse, every bad field is named in the error."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import ScenarioError
from hubswarm.lab.scenario import (
    Arrivals,
    default_scenario_dir,
    load_scenario,
    load_scenarios,
    parse_scenario,
    parse_size,
)

MIB = 2**20
GOOD = """
name = "t1"
clients = [2, 4]
file_size = "8MiB"
server_upload = "40mbit"
client_upload = { dist = "uniform", min = "1MiB", max = "2MiB" }
client_download = { dist = "choice", values = ["4MiB", 8388608] }
arrivals = { poisson = { rate = 2.0 } }
architectures = ["client-server", "p2p"]
emulation = "app"
timeout = 30
seed = 5
[churn]
leave_after_complete = 2.5
random_leave_rate = 0.1
[[faults]]
at = 1.5
kind = "kill_hub"
[[faults]]
kind = "kill_peers"
count = 3
"""


def base(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "x",
        "clients": 4,
        "file_size": "1MiB",
        "server_upload": "4MiB",
        "client_upload": "1MiB",
        "client_download": "8MiB",
    }
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


def test_good_file(tmp_path: Path) -> None:
    path = tmp_path / "t1.toml"
    path.write_text(GOOD)
    s = load_scenario(path)
    assert s.clients == (2, 4)
    assert s.file_size == 8 * MIB
    assert s.server_upload == pytest.approx(40e6 / 8)
    assert s.client_upload.dist == "uniform"
    assert s.client_download.values == (4 * MIB, 8 * MIB)
    assert s.arrivals == Arrivals("poisson", 2.0)
    assert s.churn.leave_after_complete == 2.5
    assert [f.kind for f in s.faults] == ["kill_hub", "kill_peers"]
    assert s.faults[1].count == 3
    assert s.architectures == ("client-server", "p2p")
    assert s.path == str(path)
    plans = s.plans()
    assert [p.n for p in plans] == [2, 4]
    for p in plans:
        assert len(p.uploads) == len(p.downloads) == len(p.arrivals) == p.n
        assert all(MIB <= u <= 2 * MIB for u in p.uploads)
        assert set(p.downloads) <= {4 * MIB, 8 * MIB}
        assert list(p.arrivals) == sorted(p.arrivals)
    assert s.plans() == plans  # seeded: the same capacities every time


def test_defaults_and_single_client_count() -> None:
    s = parse_scenario(base())
    assert s.clients == (4,)
    assert s.arrivals.kind == "flash"
    assert s.architectures == ("client-server", "hybrid", "p2p")
    assert s.emulation == "auto"
    assert s.plans()[0].arrivals == (0.0,) * 4


def test_shipped_scenarios_load() -> None:
    scenarios = load_scenarios(default_scenario_dir())
    names = {s.name for s in scenarios}
    assert {"acceptance", "heterogeneous", "fault-kill-hub", "churn", "corrupt-peer"} <= names
    sweep = next(s for s in scenarios if s.name == "acceptance")
    assert sweep.clients == (2, 4, 8, 16, 32)
    # The acceptance condition: u_s = u_i, fixed, so the P2P bound is F / u_s for every N.
    assert sweep.client_upload.dist == "fixed"
    assert sweep.client_upload.values == (sweep.server_upload,)
    # Three architectures in the sweep (issue 22), the hybrid among them.
    assert {"client-server", "p2p", "hybrid"} <= set(sweep.architectures)
    kinds = {f.kind for s in scenarios for f in s.faults}
    assert {"kill_hub", "corrupt_peer"} <= kinds


@pytest.mark.parametrize(
    ("over", "field", "text"),
    [
        ({"clients": -3}, "clients", "must be a positive integer, got -3"),
        ({"clients": 0}, "clients", "positive integer"),
        ({"clients": [2, "x"]}, "clients", "positive integer"),
        ({"clients": []}, "clients", "at least one"),
        ({"clients": 20_000}, "clients", "at most"),
        ({"clients": True}, "clients", "positive integer"),
        ({"clients": None}, "clients", "required"),
        ({"name": "bad name!"}, "name", "A-Za-z"),
        ({"file_size": "8 parsecs"}, "file_size", "unknown unit"),
        ({"file_size": "-1MiB"}, "file_size", "size"),
        ({"file_size": 0}, "file_size", "positive"),
        ({"file_size": None}, "file_size", "required"),
        ({"server_upload": [1]}, "server_upload", "size"),
        ({"client_upload": {"dist": "normal"}}, "client_upload.dist", "uniform"),
        ({"client_upload": {"dist": "uniform", "min": 2}}, "client_upload", "min and max"),
        ({"client_upload": {"dist": "uniform", "min": 3, "max": 2}}, "client_upload", "above"),
        ({"client_download": {"dist": "choice", "values": []}}, "client_download.values", "list"),
        ({"client_download": {"dist": "choice", "values": [1], "x": 1}}, "client_download", "x"),
        ({"arrivals": "stampede"}, "arrivals", "flash"),
        ({"arrivals": {"poisson": {}}}, "arrivals", "rate"),
        ({"arrivals": {"poisson": {"rate": 0}}}, "arrivals.rate", "> 0"),
        ({"churn": 3}, "churn", "table"),
        ({"churn": {"leave_after_complete": -1}}, "churn.leave_after_complete", ">= 0"),
        ({"churn": {"random_leave_rate": "x"}}, "churn.random_leave_rate", "number"),
        ({"churn": {"bogus": 1}}, "churn", "bogus"),
        ({"faults": {"kind": "kill_hub"}}, "faults", "list"),
        ({"faults": [{"kind": "meteor"}]}, "faults[0].kind", "kill_hub"),
        ({"faults": [{"kind": "kill_hub", "at": -1}]}, "faults[0].at", ">= 0"),
        ({"faults": [{"kind": "kill_peers", "count": 0}]}, "faults[0].count", "positive"),
        ({"faults": [{"kind": "kill_hub", "when": 1}]}, "faults[0]", "when"),
        ({"architectures": ["mainframe"]}, "architectures", "client-server"),
        ({"architectures": []}, "architectures", "non-empty"),
        ({"emulation": "vm"}, "emulation", "netns"),
        ({"timeout": 0}, "timeout", "> 0"),
        ({"timeout": 1e9}, "timeout", "at most"),
        ({"seed": 1.5}, "seed", "integer"),
        ({"piece_size": "lots"}, "piece_size", "size"),
        ({"description": 3}, "description", "string"),
        ({"colour": "blue"}, "scenario", "colour"),
    ],
)
def test_bad_field_is_named(over: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(base(**over))
    assert info.value.field == field
    assert f"[{field}]" in str(info.value)
    assert text in str(info.value)


def test_error_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace("clients = [2, 4]", "clients = -3"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: [clients] must be a positive integer, got -3"
    assert info.value.field == "clients"


def test_not_toml_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = ")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    with pytest.raises(ScenarioError, match=r"no \*\.toml"):
        load_scenarios(tmp_path / "empty-dir-that-has-no-files")


@pytest.mark.parametrize(
    ("text", "rate", "want"),
    [
        ("8MiB", False, 8 * MIB),
        ("1.5 MB", False, 1.5e6),
        ("4096", False, 4096),
        (4096, False, 4096),
        ("40mbit", True, 5e6),
        ("1MiB/s", True, MIB),
        ("2k", False, 2000),
    ],
)
def test_parse_size(text: object, rate: bool, want: float) -> None:
    assert parse_size(text, "f", rate=rate) == pytest.approx(want)


def test_bits_are_only_rates() -> None:
    with pytest.raises(ScenarioError, match="unknown unit"):
        parse_size("40mbit", "file_size")


@given(st.one_of(st.text(max_size=20), st.integers(), st.floats(), st.none(), st.booleans()))
def test_parse_size_garbage(value: object) -> None:
    error: ScenarioError | None = None
    try:
        got = parse_size(value, "f", rate=True)
    except ScenarioError as exc:
        error = exc
    if error is not None:
        assert error.field == "f"
    else:
        assert got > 0


@given(st.integers(1, 64), st.floats(0.1, 100), st.integers())
def test_poisson_arrivals_sorted(n: int, rate: float, seed: int) -> None:
    times = Arrivals("poisson", rate).times(random.Random(seed), n)
    assert len(times) == n
    assert times[0] == 0.0
    assert list(times) == sorted(times)


def test_example_scenarios_parse_and_are_named_after_their_files() -> None:
    # examples/lab holds the scenarios behind measurements quoted in the README.
    folder = Path(__file__).parents[2] / "examples" / "lab"
    scenarios = load_scenarios(folder)
    assert sorted(s.name for s in scenarios) == sorted(p.stem for p in folder.glob("*.toml"))
    assert all(s.path is not None and Path(s.path).parent == folder for s in scenarios)


# --- latency and loss sweeps (the wide-area scenarios) ----------------------------------------

SWEEP = """
name = "wan"
clients = [2, 3]
file_size = "1MiB"
server_upload = "1MiB"
client_upload = { dist = "choice", values = ["256KiB", "1MiB"] }
client_download = "8MiB"
latency = [0.005, { dist = "uniform", min = 0.01, max = 0.03 }, 0.075]
loss = [0, 0.01]
"""


def test_a_sweep_runs_every_combination_with_the_same_capacities(tmp_path: Path) -> None:
    path = tmp_path / "wan.toml"
    path.write_text(SWEEP)
    s = load_scenario(path)
    assert [lat.describe() for lat in s.latencies] == ["20 ms", "40-120 ms", "300 ms"]
    assert s.losses == (0.0, 0.01)
    assert s.needs_sim
    plans = s.plans()
    assert len(plans) == 2 * 3 * 2
    # N outermost, then latency, then loss, in the file's order; 40-120 ms has a mean of 80.
    points = [(p.n, round(1000 * p.scenario.latency.rtt), p.scenario.loss) for p in plans]
    assert points == [(n, rtt, q) for n in (2, 3) for rtt in (20, 80, 300) for q in (0.0, 0.01)]
    # A sweep's points differ in their network only: the same drawn capacities per N.
    for n in (2, 3):
        same_n = [p for p in plans if p.n == n]
        assert len({(p.uploads, p.downloads, p.arrivals) for p in same_n}) == 1
    assert plans[-1].label == "N=3 RTT 300 ms loss 1%"


def test_a_single_latency_and_loss_is_no_sweep() -> None:
    s = parse_scenario(base(latency=0.01, loss=0.02))
    assert s.latency_sweep == ()
    assert s.loss_sweep == ()
    (plan,) = s.plans()
    assert plan.scenario.latency.values == (0.01,)
    assert plan.scenario.loss == 0.02
    assert parse_scenario(base()).plans()[0].label == "N=4"


@pytest.mark.parametrize(
    ("over", "field", "text"),
    [
        ({"latency": []}, "latency", "1 to 32 values"),
        ({"loss": []}, "loss", "1 to 32 values"),
        ({"loss": [0.0] * 33}, "loss", "1 to 32 values"),
        ({"latency": [0.01, 0.01]}, "latency", "twice"),
        ({"loss": [0, 0.01, 0.0]}, "loss", "twice"),
        ({"latency": [0.01, 3.0]}, "latency[1]", "at most"),
        ({"latency": [0.01, "far"]}, "latency[1]", "number"),
        ({"latency": [{"dist": "normal"}]}, "latency[0]", "uniform"),
        ({"latency": [{"dist": "uniform", "min": 0.2, "max": 0.1}]}, "latency[0]", "min <= max"),
        ({"loss": [0.01, 0.9]}, "loss[1]", "at most"),
        ({"loss": [-0.01]}, "loss[0]", ">= 0"),
        ({"loss": [0, 0.01], "emulation": "netns"}, "emulation", "sim"),
        ({"latency": [0, 0.01], "emulation": "app"}, "emulation", "sim"),
    ],
)
def test_bad_sweep_is_named(over: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(base(**over))
    assert info.value.field == field
    assert text in str(info.value)


def test_a_zero_sweep_needs_no_sim() -> None:
    # latency = [0] and loss = [0] ask for nothing netns cannot do.
    s = parse_scenario(base(latency=[0.0], loss=[0.0], emulation="netns"))
    assert not s.needs_sim
    assert len(s.plans()) == 1


_latencies = st.lists(st.floats(0.0, 2.0), min_size=1, max_size=6, unique=True)
_losses = st.lists(st.floats(0.0, 0.5), min_size=1, max_size=6, unique=True)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=3), _latencies, _losses)
def test_sweep_plans_are_the_product_of_the_lists(
    clients: list[int], latencies: list[float], losses: list[float]
) -> None:
    s = parse_scenario(base(clients=clients, latency=latencies, loss=losses))
    plans = s.plans()
    assert len(plans) == len(clients) * len(latencies) * len(losses)
    want = [(n, lat, p) for n in clients for lat in latencies for p in losses]
    assert [(p.n, p.scenario.latency.values[0], p.scenario.loss) for p in plans] == want
    assert s.needs_sim == (any(latencies) or any(losses))
    # A plan's scenario keeps the sweep (the report and the plots group by scenario).
    assert all(p.scenario.name == s.name for p in plans)


_garbage = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(_garbage, _garbage)
def test_sweep_garbage_parses_or_raises_scenario_error(latency: object, loss: object) -> None:
    try:
        s = parse_scenario(base(latency=latency, loss=loss))
    except ScenarioError:
        return
    assert s.plans()
