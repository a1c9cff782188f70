"""MSE/PE on the wire: two SwarmPeers over loopback TCP under every pairing of policies."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hubswarm.errors import ConfigError, RemoteProtocolError
from hubswarm.proto import wire
from hubswarm.proto.mse import Policy
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.peer import dial
from hubswarm.swarm.rc4transport import Rc4Transport

from .swarmkit import KIB, fast_config, make_file, make_torrent

HOST = "127.0.0.1"


def _count_rc4_links(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts each RC4-wrapped connection end as it is made (a finished pair disconnects)."""
    made = [0]
    init = Rc4Transport.__init__

    def counting(self: Rc4Transport, *args: Any) -> None:
        made[0] += 1
        init(self, *args)

    monkeypatch.setattr(Rc4Transport, "__init__", counting)
    return made


@pytest.mark.parametrize(
    ("seed_policy", "leech_policy", "rc4"),
    [
        ("disabled", "disabled", False),
        ("enabled", "enabled", False),  # plaintext first: both accept it
        ("disabled", "enabled", False),
        ("enabled", "disabled", False),
        ("required", "required", True),
        ("required", "enabled", True),  # plaintext refused, then the MSE redial
        ("enabled", "required", True),
    ],
)
async def test_policies_that_meet_transfer_every_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed_policy: str, leech_policy: str, rc4: bool
) -> None:
    made = _count_rc4_links(monkeypatch)
    data = make_file(tmp_path / "seed" / "f.bin", 1024 * KIB + 3, seed=17)
    mi, _ = make_torrent(tmp_path / "seed" / "f.bin", 64 * KIB)
    async with (
        SwarmPeer(fast_config(encryption=seed_policy), host=HOST) as seed,
        seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
        SwarmPeer(fast_config(encryption=leech_policy), host=HOST) as leech,
        leech.torrent(
            mi.info_hash, tmp_path / "leech", info=mi.info, peers=[(HOST, seed.port)]
        ) as session,
    ):
        await session.wait_complete(20)
    assert made[0] == (2 if rc4 else 0)  # both ends of the one link
    assert (tmp_path / "leech" / "f.bin").read_bytes() == data


@pytest.mark.parametrize(
    ("dialler", "listener"), [("required", "disabled"), ("disabled", "required")]
)
async def test_policies_that_cannot_meet_fail_cleanly(
    tmp_path: Path, dialler: str, listener: str
) -> None:
    make_file(tmp_path / "seed" / "f.bin", 64 * KIB, seed=3)
    mi, _ = make_torrent(tmp_path / "seed" / "f.bin", 16 * KIB)
    async with (
        SwarmPeer(fast_config(encryption=listener), host=HOST) as seed,
        seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
    ):
        conn = wire.PeerConnection(
            wire.Role.INITIATOR, info_hash=mi.info_hash, peer_id=b"-HS0001-" + bytes(12)
        )
        async with asyncio.timeout(10):
            with pytest.raises((OSError, TimeoutError, RemoteProtocolError)):
                await dial(
                    seed.network,
                    conn,
                    (HOST, seed.port),
                    connect_timeout=2,
                    handshake_timeout=3,
                    encryption=Policy(dialler),
                )
        await asyncio.sleep(0)
        assert not seed.sessions[mi.info_hash].links


async def test_mse_for_an_unknown_torrent_is_refused(tmp_path: Path) -> None:
    make_file(tmp_path / "seed" / "f.bin", 64 * KIB, seed=3)
    mi, _ = make_torrent(tmp_path / "seed" / "f.bin", 16 * KIB)
    async with SwarmPeer(fast_config(encryption="enabled"), host=HOST) as seed:
        conn = wire.PeerConnection(
            wire.Role.INITIATOR, info_hash=mi.info_hash, peer_id=b"-HS0001-" + bytes(12)
        )
        async with asyncio.timeout(10):
            with pytest.raises((OSError, RemoteProtocolError)):
                await dial(
                    seed.network,
                    conn,
                    (HOST, seed.port),
                    connect_timeout=2,
                    handshake_timeout=3,
                    encryption=Policy.REQUIRED,
                )


def test_bad_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        SwarmPeer(fast_config(encryption="maybe"))
