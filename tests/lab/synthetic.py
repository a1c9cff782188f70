"""Synthetic run results for the metrics and report tests (no processes, no clock)."""

from __future__ import annotations

from hubswarm.lab.metrics import ClientRecord, FaultEvent, ReplicaSample, RunResult, SecurityProbe

MIB = 2**20


def cs_run(n: int, *, u_s: float = 4 * MIB, f: int = MIB, scenario: str = "sweep") -> RunResult:
    """A client-server flash crowd where the server is the bottleneck: client i ends at i F/u_s."""
    clients = tuple(
        ClientRecord(i, 0.0, (n * f / u_s) * (0.9 + 0.1 * i / n) * 1.05, f, f, 0, True)
        for i in range(1, n + 1)
    )
    return RunResult(
        architecture="client-server",
        scenario=scenario,
        n=n,
        file_size=f,
        server_upload=u_s,
        uploads=(MIB,) * n,
        downloads=(8 * MIB,) * n,
        clients=clients,
        server_bytes_sent=n * f,
        replicas=(ReplicaSample(0.0, (1,) * 4),),
        security=(
            SecurityProbe("client with no token", 0, f, "exit 1: 401"),
            SecurityProbe("client with valid read token (control)", f, f, "exit 0", True),
        ),
        pieces=4,
        notes=("synthetic",),
    )


def faulty_run() -> RunResult:
    """8 clients, the hub dies at 2.5 s: 2 had finished, the other 6 never do."""
    f = 4 * MIB
    done = [ClientRecord(i, 0.0, 2.0 + 0.1 * i, f, f, 0, True) for i in (1, 2)]
    failed = [ClientRecord(i, 0.0, None, MIB, MIB, 0, False, "cannot connect") for i in range(3, 9)]
    return RunResult(
        architecture="client-server",
        scenario="fault",
        n=8,
        file_size=f,
        server_upload=4 * MIB,
        uploads=(MIB,) * 8,
        downloads=(8 * MIB,) * 8,
        clients=(*done, *failed),
        server_bytes_sent=2 * f + 6 * MIB,
        faults=(FaultEvent(2.5, "kill_hub", "SIGKILL"),),
        replicas=(ReplicaSample(0.0, (1,) * 16), ReplicaSample(2.5, (0,) * 16)),
        pieces=16,
    )


def p2p_run(n: int) -> RunResult:
    """A swarm run: the server sends about one copy, peers the rest."""
    f = MIB
    clients = tuple(
        ClientRecord(i, 0.0, 1.0 + 0.05 * i, f, f // n, f - f // n, True) for i in range(1, n + 1)
    )
    return RunResult(
        architecture="p2p",
        scenario="sweep",
        n=n,
        file_size=f,
        server_upload=4 * MIB,
        uploads=(MIB,) * n,
        downloads=(8 * MIB,) * n,
        clients=clients,
        server_bytes_sent=f + f // 2,
        replicas=(ReplicaSample(0.0, (1,) * 4), ReplicaSample(1.5, (n + 1,) * 4)),
        pieces=4,
    )
