"""Lab scenarios: a TOML file becomes frozen dataclasses, every mistake a ``ScenarioError``.

A scenario describes one experiment (clients, file size, capacities, arrivals, churn, faults)
and which architectures to run it on. ``clients`` may be a list: a sweep, one run per N;
so may ``latency`` and ``loss`` (the wide-area sweeps), and a scenario runs every combination
of its lists, e.g. ``clients = 16``, ``latency = [0.005, 0.025, 0.075]``, ``loss = [0, 0.01]``
gives six runs per architecture, each with the same drawn capacities.
Sizes accept ``"8MiB"``-style strings; rates accept sizes per second (``"4MiB"``) or bit rates
(``"40mbit"``). Every number ends up in bytes or bytes/s.
"""

from __future__ import annotations

import math
import random
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from hubswarm.errors import ScenarioError

__all__ = [
    "ARCHITECTURES",
    "REFERENCE_ARCHITECTURES",
    "Arrivals",
    "Churn",
    "Fault",
    "RateSpec",
    "RunPlan",
    "Scenario",
    "default_scenario_dir",
    "load_scenario",
    "load_scenarios",
    "parse_scenario",
    "parse_size",
]

ARCHITECTURES = ("client-server", "hybrid", "p2p")
# Not in the default list: the reference client (libtorrent peers, netns only; issue 22).
REFERENCE_ARCHITECTURES = ("libtorrent",)
FAULT_KINDS = ("kill_hub", "kill_peers", "corrupt_peer", "revoked_token")
EMULATIONS = ("auto", "netns", "app", "sim")
# Lab runs are short by design: a whole default set must fit in minutes on 2 cores. A
# process per client (netns, app) stops there; virtual time (sim) goes much further.
MAX_CLIENTS = 256
MAX_SIM_CLIENTS = 10_000
# A path's one-way latency and loss: ranges the studies of BitTorrent over the Internet saw.
MAX_LATENCY = 2.0
MAX_LOSS = 0.5
# A sweep list (latency, loss) of at most this many values: each is a run per N and
# architecture, and the plots stay readable.
MAX_SWEEP = 32
# A queue must hold a few packets at least (the model's segment is 16 KiB).
MIN_QUEUE = 16 * 1024
MAX_TIMEOUT = 3600.0
_T = TypeVar("_T")

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_BIT_UNITS = {"bit": 1, "kbit": 1000, "mbit": 1000**2, "gbit": 1000**3}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*(?:/s)?\s*$")


def parse_size(value: object, field_name: str, *, rate: bool = False) -> float:
    """``4096``, ``"8MiB"``, ``"1.5 MB"`` (and for rates ``"40mbit"``) -> bytes (or bytes/s)."""
    if isinstance(value, bool):
        raise ScenarioError(f"must be a size, got {value!r}", field=field_name)
    if isinstance(value, int | float):
        number, unit = float(value), ""
    elif isinstance(value, str):
        match = _SIZE_RE.match(value)
        if not match:
            raise ScenarioError(f"must be a size like '8MiB', got {value!r}", field=field_name)
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise ScenarioError(f"must be a size, got {value!r}", field=field_name)
    if rate and unit in _BIT_UNITS:
        result = number * _BIT_UNITS[unit] / 8
    elif unit in _UNITS:
        result = number * _UNITS[unit]
    else:
        raise ScenarioError(f"unknown unit {unit!r} in {value!r}", field=field_name)
    if not math.isfinite(result) or result <= 0:
        raise ScenarioError(f"must be positive, got {value!r}", field=field_name)
    return result


@dataclass(frozen=True, slots=True)
class RateSpec:
    """A per-client rate: fixed, uniform in [low, high], or a choice among values (bytes/s)."""

    dist: Literal["fixed", "uniform", "choice"]
    values: tuple[float, ...]

    def sample(self, rng: random.Random, n: int) -> tuple[float, ...]:
        """Draw n rates with the injected rng (same seed, same capacities)."""
        if self.dist == "fixed":
            return (self.values[0],) * n
        if self.dist == "uniform":
            return tuple(rng.uniform(self.values[0], self.values[1]) for _ in range(n))
        return tuple(rng.choice(self.values) for _ in range(n))


@dataclass(frozen=True, slots=True)
class LatencySpec:
    """A host's one-way latency to the core, in seconds: ``fixed`` or ``uniform`` (min, max)."""

    kind: Literal["fixed", "uniform"] = "fixed"
    values: tuple[float, ...] = (0.0,)

    def sample(self, rng: random.Random, n: int) -> tuple[float, ...]:
        """Latencies of n hosts."""
        if self.kind == "fixed":
            return (self.values[0],) * n
        low, high = self.values
        return tuple(rng.uniform(low, high) for _ in range(n))

    @property
    def zero(self) -> bool:
        return self.kind == "fixed" and self.values[0] == 0.0

    @property
    def rtt(self) -> float:
        """The mean round trip between two hosts, in seconds: a path crosses both hosts'
        access links, each way (``lab.simnet``), so four one-way latencies."""
        return 4 * sum(self.values) / len(self.values)

    def describe(self) -> str:
        """``"40 ms"`` or ``"20-60 ms"`` (as an RTT: what the report and the plots show)."""
        if self.kind == "fixed":
            return f"{1000 * self.rtt:g} ms"
        low, high = (4000 * v for v in self.values)
        return f"{low:g}-{high:g} ms"


@dataclass(frozen=True, slots=True)
class Arrivals:
    """``flash``: everyone at t=0; ``poisson``: exponential inter-arrival times at ``rate``/s."""

    kind: Literal["flash", "poisson"] = "flash"
    rate: float = 0.0

    def times(self, rng: random.Random, n: int) -> tuple[float, ...]:
        """Arrival times of n clients, seconds after the start of the run."""
        if self.kind == "flash":
            return (0.0,) * n
        t, out = 0.0, []
        for _ in range(n):
            out.append(t)
            t += rng.expovariate(self.rate)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Churn:
    """Whether clients leave after completing (False, True = at once, or after seconds)."""

    leave_after_complete: bool | float = False
    random_leave_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault at ``at`` seconds: kill_hub, kill_peers (count), corrupt_peer, revoked_token."""

    kind: str
    at: float = 0.0
    count: int = 1


@dataclass(frozen=True, slots=True)
class Scenario:
    """One experiment, possibly a sweep over several client counts."""

    name: str
    clients: tuple[int, ...]
    file_size: int
    server_upload: float
    client_upload: RateSpec
    client_download: RateSpec
    seed: int = 1
    arrivals: Arrivals = field(default_factory=Arrivals)
    churn: Churn = field(default_factory=Churn)
    faults: tuple[Fault, ...] = ()
    architectures: tuple[str, ...] = ARCHITECTURES
    emulation: Literal["auto", "netns", "app", "sim"] = "auto"
    timeout: float = 120.0
    piece_size: int = 32 * 1024
    description: str = ""
    path: str | None = None
    # The network's delay, loss and queues: only a sim run can honour them (this kernel
    # has no netem; app mode shapes bandwidth only). A plan's scenario holds its run's
    # latency and loss; a sweep lists every value (empty: no sweep, the one value above).
    latency: LatencySpec = field(default_factory=LatencySpec)
    loss: float = 0.0
    queue: int | None = None  # bytes per host queue; None: the model's default
    latency_sweep: tuple[LatencySpec, ...] = ()
    loss_sweep: tuple[float, ...] = ()

    @property
    def latencies(self) -> tuple[LatencySpec, ...]:
        """Every latency the scenario runs with."""
        return self.latency_sweep or (self.latency,)

    @property
    def losses(self) -> tuple[float, ...]:
        """Every loss rate the scenario runs with."""
        return self.loss_sweep or (self.loss,)

    @property
    def needs_sim(self) -> bool:
        """True when the scenario asks for what only the sim emulation models."""
        return (
            any(not latency.zero for latency in self.latencies)
            or any(loss > 0 for loss in self.losses)
            or self.queue is not None
        )

    @property
    def pieces(self) -> int:
        """How many pieces the file is cut into (the last one may be short)."""
        return max(1, math.ceil(self.file_size / self.piece_size))

    def plans(self) -> tuple[RunPlan, ...]:
        """One concrete run per client count, latency and loss (every combination, in that
        order), capacities and arrivals drawn from ``seed`` and N only: the points of a
        latency or loss sweep differ in nothing else. Each plan's scenario has its point's
        latency and loss."""
        out = []
        for n in self.clients:
            rng = random.Random(f"{self.seed}:{n}")
            uploads = self.client_upload.sample(rng, n)
            downloads = self.client_download.sample(rng, n)
            arrivals = self.arrivals.times(rng, n)
            for latency in self.latencies:
                for loss in self.losses:
                    point = replace(self, latency=latency, loss=loss)
                    out.append(RunPlan(point, n, uploads, downloads, arrivals))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class RunPlan:
    """One run of a scenario at a given N, with every client's capacities fixed."""

    scenario: Scenario
    n: int
    uploads: tuple[float, ...]
    downloads: tuple[float, ...]
    arrivals: tuple[float, ...]

    @property
    def d_min(self) -> float:
        """The slowest client download rate (bytes/s)."""
        return min(self.downloads)

    @property
    def label(self) -> str:
        """``"N=16"``, with the RTT and loss when the scenario has either (progress lines)."""
        scenario = self.scenario
        if not scenario.needs_sim:
            return f"N={self.n}"
        return f"N={self.n} RTT {scenario.latency.describe()} loss {100 * scenario.loss:g}%"


# --- parsing --------------------------------------------------------------------------------


def _positive_int(value: object, name: str, *, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ScenarioError(f"must be a positive integer, got {value!r}", field=name)
    if maximum is not None and value > maximum:
        raise ScenarioError(f"must be at most {maximum}, got {value}", field=name)
    return value


def _number(value: object, name: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"must be a number, got {value!r}", field=name)
    if value < minimum or (strict and value == minimum):
        op = ">" if strict else ">="
        raise ScenarioError(f"must be {op} {minimum:g}, got {value!r}", field=name)
    return float(value)


def _rate_spec(value: object, name: str) -> RateSpec:
    if not isinstance(value, Mapping):
        return RateSpec("fixed", (parse_size(value, name, rate=True),))
    dist = value.get("dist")
    if dist == "uniform":
        _only(value, {"dist", "min", "max"}, name)
        if "min" not in value or "max" not in value:
            raise ScenarioError("uniform needs min and max", field=name)
        low = parse_size(value["min"], f"{name}.min", rate=True)
        high = parse_size(value["max"], f"{name}.max", rate=True)
        if low > high:
            raise ScenarioError(f"min {low:g} is above max {high:g}", field=name)
        return RateSpec("uniform", (low, high))
    if dist == "choice":
        _only(value, {"dist", "values"}, name)
        values = value.get("values")
        if not isinstance(values, list) or not values:
            raise ScenarioError("choice needs a non-empty list of values", field=f"{name}.values")
        return RateSpec("choice", tuple(parse_size(v, f"{name}.values", rate=True) for v in values))
    raise ScenarioError(f"dist must be 'uniform' or 'choice', got {dist!r}", field=f"{name}.dist")


def _only(table: Mapping[str, Any], allowed: set[str], name: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ScenarioError(f"unknown key(s) {', '.join(extra)}", field=name)


def _arrivals(value: object) -> Arrivals:
    if value == "flash":
        return Arrivals()
    if isinstance(value, Mapping):
        table = value.get("poisson", value)
        if isinstance(table, Mapping) and (value.get("kind", "poisson") == "poisson"):
            if "rate" not in table:
                raise ScenarioError("poisson needs a rate (arrivals per second)", field="arrivals")
            rate = _number(table["rate"], "arrivals.rate", strict=True)
            return Arrivals("poisson", rate)
    raise ScenarioError(
        f"must be 'flash' or {{poisson = {{rate = R}}}}, got {value!r}", field="arrivals"
    )


def _churn(value: object) -> Churn:
    if not isinstance(value, Mapping):
        raise ScenarioError(f"must be a table, got {value!r}", field="churn")
    _only(value, {"leave_after_complete", "random_leave_rate"}, "churn")
    leave = value.get("leave_after_complete", False)
    if not isinstance(leave, bool):
        leave = _number(leave, "churn.leave_after_complete")
    rate = _number(value.get("random_leave_rate", 0.0), "churn.random_leave_rate")
    return Churn(leave, rate)


def _faults(value: object) -> tuple[Fault, ...]:
    if not isinstance(value, list):
        raise ScenarioError(f"must be a list of tables, got {value!r}", field="faults")
    out = []
    for i, item in enumerate(value):
        name = f"faults[{i}]"
        if not isinstance(item, Mapping):
            raise ScenarioError(f"must be a table, got {item!r}", field=name)
        _only(item, {"at", "kind", "count"}, name)
        kind = item.get("kind")
        if kind not in FAULT_KINDS:
            raise ScenarioError(
                f"kind must be one of {', '.join(FAULT_KINDS)}, got {kind!r}", field=f"{name}.kind"
            )
        at = _number(item.get("at", 0.0), f"{name}.at")
        count = _positive_int(item.get("count", 1), f"{name}.count")
        out.append(Fault(str(kind), at, count))
    return tuple(out)


_KEYS = {
    "name",
    "description",
    "clients",
    "file_size",
    "server_upload",
    "client_upload",
    "client_download",
    "seed",
    "arrivals",
    "churn",
    "faults",
    "architectures",
    "emulation",
    "timeout",
    "piece_size",
    "latency",
    "loss",
    "queue",
}


def _latency(value: object, name: str = "latency") -> LatencySpec:
    if isinstance(value, Mapping):
        _only(value, {"dist", "min", "max"}, name)
        if value.get("dist") != "uniform":
            raise ScenarioError('a table needs dist = "uniform"', field=name)
        low = _number(value.get("min"), f"{name}.min")
        high = _number(value.get("max"), f"{name}.max")
        if not low <= high <= MAX_LATENCY:
            raise ScenarioError(f"need min <= max <= {MAX_LATENCY:g} s", field=name)
        return LatencySpec("uniform", (low, high))
    seconds = _number(value, name)
    if seconds > MAX_LATENCY:
        raise ScenarioError(f"must be at most {MAX_LATENCY:g} s, got {seconds:g}", field=name)
    return LatencySpec("fixed", (seconds,))


def _loss(value: object, name: str = "loss") -> float:
    loss = _number(value, name)
    if loss > MAX_LOSS:
        raise ScenarioError(f"must be at most {MAX_LOSS:g}, got {loss:g}", field=name)
    return loss


def _sweep(value: object, name: str, parse: Callable[[object, str], _T]) -> tuple[_T, ...]:
    """A list is a sweep (one run per value, in the file's order); anything else one value
    (the empty tuple: no sweep)."""
    if not isinstance(value, list):
        return ()
    if not value or len(value) > MAX_SWEEP:
        raise ScenarioError(f"a sweep needs 1 to {MAX_SWEEP} values, got {len(value)}", field=name)
    values = tuple(parse(v, f"{name}[{i}]") for i, v in enumerate(value))
    if len(set(values)) < len(values):
        raise ScenarioError("a sweep lists a value twice (the same run twice)", field=name)
    return values


def parse_scenario(data: Mapping[str, Any], *, path: str | None = None) -> Scenario:
    """Validate a decoded TOML table. Raises ScenarioError naming the bad field."""
    try:
        return _parse(data, path)
    except ScenarioError as exc:
        if path and exc.path is None:
            located = ScenarioError(str(exc), path=path)
            located.field = exc.field
            raise located from exc
        raise


def _parse(data: Mapping[str, Any], path: str | None) -> Scenario:
    _only(data, _KEYS, "scenario")
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
        raise ScenarioError(f"must be 1-64 of [A-Za-z0-9._-], got {name!r}", field="name")
    raw_clients = data.get("clients")
    if raw_clients is None:
        raise ScenarioError("is required", field="clients")
    if isinstance(raw_clients, list):
        if not raw_clients:
            raise ScenarioError("a sweep needs at least one client count", field="clients")
        clients = tuple(_positive_int(c, "clients", maximum=MAX_SIM_CLIENTS) for c in raw_clients)
    else:
        clients = (_positive_int(raw_clients, "clients", maximum=MAX_SIM_CLIENTS),)
    for key in ("file_size", "server_upload", "client_upload", "client_download"):
        if key not in data:
            raise ScenarioError("is required", field=key)
    file_size = int(parse_size(data["file_size"], "file_size"))
    server_upload = parse_size(data["server_upload"], "server_upload", rate=True)
    seed = data.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ScenarioError(f"must be an integer, got {seed!r}", field="seed")
    architectures = data.get("architectures", list(ARCHITECTURES))
    known = (*ARCHITECTURES, *REFERENCE_ARCHITECTURES)
    if (
        not isinstance(architectures, list)
        or not architectures
        or any(a not in known for a in architectures)
    ):
        raise ScenarioError(
            f"must be a non-empty list from {', '.join(known)}, got {architectures!r}",
            field="architectures",
        )
    emulation = data.get("emulation", "auto")
    if emulation not in EMULATIONS:
        raise ScenarioError(
            f"must be one of {', '.join(EMULATIONS)}, got {emulation!r}", field="emulation"
        )
    raw_latency, raw_loss = data.get("latency", 0.0), data.get("loss", 0.0)
    latency_sweep = _sweep(raw_latency, "latency", _latency)
    loss_sweep = _sweep(raw_loss, "loss", _loss)
    latency = latency_sweep[0] if latency_sweep else _latency(raw_latency)
    loss = loss_sweep[0] if loss_sweep else _loss(raw_loss)
    queue = None
    if "queue" in data:
        queue = int(parse_size(data["queue"], "queue"))
        if queue < MIN_QUEUE:
            raise ScenarioError(f"must be at least {MIN_QUEUE} bytes, got {queue}", field="queue")
    if max(clients) > MAX_CLIENTS and emulation != "sim":
        raise ScenarioError(
            f'more than {MAX_CLIENTS} clients need emulation = "sim" (a process per client '
            "stops there)",
            field="clients",
        )
    timeout = _number(data.get("timeout", 120.0), "timeout", strict=True)
    if timeout > MAX_TIMEOUT:
        raise ScenarioError(f"must be at most {MAX_TIMEOUT:g}, got {timeout:g}", field="timeout")
    piece_size = int(parse_size(data.get("piece_size", 32 * 1024), "piece_size"))
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError("must be a string", field="description")
    scenario = Scenario(
        name=name,
        clients=clients,
        file_size=file_size,
        server_upload=server_upload,
        client_upload=_rate_spec(data["client_upload"], "client_upload"),
        client_download=_rate_spec(data["client_download"], "client_download"),
        seed=seed,
        arrivals=_arrivals(data.get("arrivals", "flash")),
        churn=_churn(data.get("churn", {})),
        faults=_faults(data.get("faults", [])),
        architectures=tuple(dict.fromkeys(architectures)),
        emulation=emulation,
        timeout=timeout,
        piece_size=piece_size,
        description=description,
        path=path,
        latency=latency,
        loss=loss,
        queue=queue,
        latency_sweep=latency_sweep,
        loss_sweep=loss_sweep,
    )
    reference = [a for a in scenario.architectures if a in REFERENCE_ARCHITECTURES]
    if reference and (emulation == "sim" or scenario.needs_sim):
        raise ScenarioError(
            f"{', '.join(reference)} opens its own sockets: the sim cannot run it (use "
            'emulation = "netns", without latency, loss or queue)',
            field="architectures",
        )
    if scenario.needs_sim and emulation in ("netns", "app"):
        raise ScenarioError(
            f'latency, loss and queue need emulation = "sim" (or "auto"): {emulation} '
            "cannot honour them (this kernel has no netem)",
            field="emulation",
        )
    return scenario


def load_scenario(path: Path) -> Scenario:
    """Read and validate one scenario file. Raises ScenarioError (with the path)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"cannot read: {exc.strerror}", path=str(path)) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"not valid TOML: {exc}", path=str(path)) from exc
    return parse_scenario(data, path=str(path))


def load_scenarios(folder: Path) -> tuple[Scenario, ...]:
    """Every ``*.toml`` of a folder, sorted by file name."""
    files = sorted(folder.glob("*.toml"))
    if not files:
        raise ScenarioError(f"no *.toml scenario files in {folder}")
    return tuple(load_scenario(p) for p in files)


def default_scenario_dir() -> Path:
    """The scenarios shipped with the package."""
    return Path(__file__).parent / "scenarios"
