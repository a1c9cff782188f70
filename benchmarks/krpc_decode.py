"""Micro-benchmark of decoding KRPC packets (hubswarm.proto.krpc over proto.bencode).

A DHT node decodes every datagram it receives; in a 33-peer lab run that was a large share of
each peer's CPU. Decodes a realistic mix (get_peers queries, find_node responses with 8 compact
nodes, get_peers responses with values) and prints microseconds per packet for:

- ``krpc.decode_message`` (what the node runs),
- ``bencode.decode`` alone (fast path: fastbencode, then a depth check),
- the reference measured in the same run: the full token ``scan`` followed by fastbencode (what
  ``bencode.decode`` did for every document before its fast path).

    python3 benchmarks/krpc_decode.py [--packets 20000]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import fastbencode

from hubswarm.proto import bencode, krpc


def _packets(rng: random.Random) -> list[bytes]:
    node_id = rng.randbytes(20)
    nodes = rng.randbytes(26 * 8)
    values = [rng.randbytes(6) for _ in range(8)]
    return [
        bencode.encode(
            {
                b"t": b"aa",
                b"y": b"q",
                b"q": b"get_peers",
                b"a": {b"id": node_id, b"info_hash": rng.randbytes(20)},
            }
        ),
        bencode.encode({b"t": b"ab", b"y": b"r", b"r": {b"id": node_id, b"nodes": nodes}}),
        bencode.encode(
            {
                b"t": b"ac",
                b"y": b"r",
                b"r": {b"id": node_id, b"token": rng.randbytes(8), b"values": values},
            }
        ),
    ]


def _scan_then_decode(data: bytes) -> object:
    bencode.scan(data, max_depth=krpc.KRPC_MAX_DEPTH)
    return fastbencode.bdecode(data)


def _time(fn: Callable[[bytes], object], packets: list[bytes], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(packets[i % len(packets)])
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=20000)
    args = parser.parse_args()
    packets = _packets(random.Random(1))
    ref = _time(_scan_then_decode, packets, args.packets)
    fast = _time(lambda d: bencode.decode(d, max_depth=krpc.KRPC_MAX_DEPTH), packets, args.packets)
    full = _time(krpc.decode_message, packets, args.packets)
    print(f"reference scan + fastbencode : {ref:7.1f} us/packet")
    print(f"bencode.decode               : {fast:7.1f} us/packet  ({ref / fast:.1f}x faster)")
    print(f"krpc.decode_message          : {full:7.1f} us/packet")


if __name__ == "__main__":
    main()
