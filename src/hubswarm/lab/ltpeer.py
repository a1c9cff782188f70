"""The reference client in the lab: one libtorrent peer, a process on its emulated host.

``python3 -m hubswarm.lab.ltpeer seed TORRENT --output DIR --host ADDR`` seeds at once and
prints ``seeding``; ``python3 -m hubswarm.lab.agent lt fetch TORRENT --output DIR --host ADDR
--events FILE [--seed] [--timeout S]`` (the lab's pre-started agent, see
:mod:`hubswarm.lab.agent`) imports libtorrent, prints ``ready``, waits for ``go`` on stdin and
downloads, logging ``piece`` events (with the addresses that sent the piece's blocks) and
``complete`` events with Unix times in the format of ``hubswarm fetch --events``
(:mod:`hubswarm.lab.events`), so the swarm runner watches it as it watches our peers. The
fetch options are ``hubswarm fetch``'s; those that have no libtorrent counterpart
(``--fast-intervals``, ``--json``...) are accepted and ignored.

Settings (:data:`SETTINGS`): libtorrent's defaults, but for what the lab's swarms also do
without: no DHT, local service discovery, UPnP or NAT-PMP (the tracker is the only way in, as
in the hybrid), no peer exchange (as ``--no-pex``), TCP only (as our peers), and several
connections per address (app mode puts every host on one address); and a re-announce every
2 s, the lab tracker's interval, as our peers do. The report prints them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["SETTINGS", "settings_note"]

# Changes from libtorrent's default settings_pack (everything else is its default).
SETTINGS: dict[str, bool | int | str] = {
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_incoming_utp": False,
    "enable_outgoing_utp": False,
    "allow_multiple_connections_per_ip": True,
}
# How long one wait for alerts may block (ms): the loop checks its deadline this often.
_ALERT_WAIT_MS = 200
# Re-announce this often (s), as the lab's tracker asks (it drops a peer silent for two
# intervals): libtorrent waits at least min_announce_interval (300 s) between announces, so
# a seed that announced before slow agents were ready (N = 32) was gone from the tracker.
ANNOUNCE_EVERY = 2.0


def settings_note(version: str | None) -> str:
    """The report's line about the reference client: its version and its settings."""
    changed = ", ".join(f"{k}={v}" for k, v in SETTINGS.items())
    if version is None:
        return (
            "libtorrent: the Python bindings are not installed (pip install 'hubswarm[reference]')"
        )
    return (
        f"libtorrent {version}: default settings except {changed}; peer exchange off "
        f"(torrent flag disable_pex); re-announces every {ANNOUNCE_EVERY:g} s as the lab's "
        "tracker asks; seed on host 0 in seed_mode; tracker: the hub's /announce"
    )


def _session(host: str, upload: int, download: int) -> Any:
    import libtorrent as lt

    pack: dict[str, Any] = dict(SETTINGS)
    pack["listen_interfaces"] = f"{host}:0"
    pack["outgoing_interfaces"] = host
    # block_progress: which peer sent each block, so a piece's event names its sources.
    pack["alert_mask"] = (
        lt.alert_category.status
        | lt.alert_category.piece_progress
        | lt.alert_category.block_progress
    )
    if upload:
        pack["upload_rate_limit"] = upload
    if download:
        pack["download_rate_limit"] = download
    params = lt.session_params()
    # The bindings take a dict here (their stubs say settings_pack, which is one).
    params.settings = pack  # type: ignore[assignment]
    return lt.session(params)


def _add(ses: Any, torrent: Path, output: Path, *, seed: bool) -> Any:
    import libtorrent as lt

    output.mkdir(parents=True, exist_ok=True)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(str(torrent))
    atp.save_path = str(output)
    atp.flags |= lt.torrent_flags.disable_pex
    if seed:
        # The seed has the file (the lab wrote it): no hash check before it serves.
        atp.flags |= lt.torrent_flags.seed_mode
    return ses.add_torrent(atp)


def _log(events: Path | None, record: dict[str, object]) -> None:
    if events is None:
        return
    with events.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _run(args: argparse.Namespace) -> int:
    """Download (or seed) until complete (and not ``--seed``), the deadline, or a kill."""
    import libtorrent as lt

    ses = _session(args.host, args.upload_rate, args.download_rate)
    handle = _add(ses, Path(args.torrent), Path(args.output), seed=args.role == "seed")
    events = Path(args.events) if args.events else None
    if args.role == "seed":
        print(f"seeding {handle.info_hashes().v1} as libtorrent {lt.__version__}", flush=True)
    deadline = time.monotonic() + args.timeout
    announce_at = time.monotonic() + ANNOUNCE_EVERY
    complete = args.role == "seed"
    senders: dict[int, set[str]] = {}  # piece -> addresses that sent its blocks so far
    while time.monotonic() < deadline:
        ses.wait_for_alert(_ALERT_WAIT_MS)
        if time.monotonic() >= announce_at:
            # Forced: libtorrent keeps the tracker's min interval otherwise.
            handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
            announce_at = time.monotonic() + ANNOUNCE_EVERY
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.block_finished_alert):
                senders.setdefault(alert.piece_index, set()).add(str(alert.endpoint[0]))
            elif isinstance(alert, lt.piece_finished_alert):
                peers = sorted(senders.pop(alert.piece_index, ()))
                piece = {"event": "piece", "index": alert.piece_index, "t": time.time()}
                _log(events, {**piece, "source": "peer", "peers": peers})
            elif isinstance(alert, lt.torrent_finished_alert) and not complete:
                complete = True
                _log(events, {"event": "complete", "t": time.time()})
        if complete and not args.seed:
            return 0
    return 0 if complete else 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hubswarm.lab.ltpeer", description=__doc__.splitlines()[0])
    p.add_argument("role", choices=["seed", "fetch"])
    p.add_argument("torrent")
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--events")
    p.add_argument("--seed", action="store_true", help="keep seeding after completing")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--upload-rate", type=int, default=0)
    p.add_argument("--download-rate", type=int, default=0)
    return p


def agent_main(argv: list[str]) -> int:
    """The lab agent's ``lt`` command: import, ``ready``, wait for ``go``, run (see above)."""
    args, _ = _parser().parse_known_args(argv)  # hubswarm fetch's other options: ignored
    args.seed = args.seed or args.role == "seed"
    import libtorrent  # noqa: F401  # before the barrier, as the agent imports our swarm

    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 3
    start = time.monotonic()
    code = _run(args)
    print(json.dumps({"start": start, "end": time.monotonic(), "exit": code}), flush=True)
    return code


def main(argv: list[str]) -> int:
    """The seed: start at once."""
    args = _parser().parse_args(argv)
    args.seed = True
    return _run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
