"""Micro-benchmark of the sans-IO peer wire codec (hubswarm.proto.wire).

Parses 1 GiB worth of 16 KiB piece messages fed in 64 KiB chunks, and serializes them,
printing MB/s beside a reference measured in the same run (bytes(memoryview slice) of the
same stream: the one unavoidable copy per block).

    python3 benchmarks/wire_parse.py [--mib 1024]
"""

from __future__ import annotations

import argparse
import time

from hubswarm.limits import BLOCK_SIZE
from hubswarm.proto.wire import PeerConnection, Role
from hubswarm.proto.wire_events import Piece

INFO_HASH = bytes(range(20))


def _pair() -> tuple[PeerConnection, PeerConnection]:
    a = PeerConnection(Role.INITIATOR, info_hash=INFO_HASH, peer_id=b"A" * 20)
    b = PeerConnection(Role.RESPONDER, info_hash=INFO_HASH, peer_id=b"B" * 20)
    b.receive_data(a.handshake())
    a.receive_data(b.handshake())
    return a, b


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024, help="MiB of block data to move")
    parser.add_argument("--chunk", type=int, default=64 * 1024, help="bytes per receive_data")
    args = parser.parse_args()
    sender, receiver = _pair()
    block = bytes(range(256)) * (BLOCK_SIZE // 256)
    n_msgs = args.mib * 1024 * 1024 // BLOCK_SIZE
    # One 64 MiB stream of messages, fed repeatedly: the parser never sees it twice as one.
    per_stream = min(n_msgs, 4096)

    t0 = time.perf_counter()
    for i in range(n_msgs):
        sender.send(Piece(i % 1000, 0, block))
    t_ser = time.perf_counter() - t0

    stream = b"".join(sender.send(Piece(i, 0, block)) for i in range(per_stream))
    chunks = [stream[i : i + args.chunk] for i in range(0, len(stream), args.chunk)]
    rounds = n_msgs // per_stream
    events = 0
    t0 = time.perf_counter()
    for _ in range(rounds):
        for chunk in chunks:
            events += len(receiver.receive_data(chunk))
    t_parse = time.perf_counter() - t0
    assert events == rounds * per_stream, events

    mv = memoryview(stream)
    t0 = time.perf_counter()
    for _ in range(rounds):
        for off in range(0, len(stream), BLOCK_SIZE + 13):
            bytes(mv[off + 13 : off + 13 + BLOCK_SIZE])
    t_ref = time.perf_counter() - t0

    total = rounds * per_stream * BLOCK_SIZE / 1e6
    print(f"blocks: {rounds * per_stream} x {BLOCK_SIZE} B, chunk {args.chunk} B")
    print(f"parse      : {total / t_parse:8.0f} MB/s  ({t_parse:.2f} s)")
    print(f"serialize  : {total / t_ser:8.0f} MB/s  ({t_ser:.2f} s)")
    print(f"reference  : {total / t_ref:8.0f} MB/s  (one bytes() copy per block)")
    print(f"parse / reference: {t_ref / t_parse:.2f}")


if __name__ == "__main__":
    main()
