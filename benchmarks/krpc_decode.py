"""Micro-benchmark of decoding (and encoding) KRPC packets (hubswarm.proto.krpc over proto.bencode).

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
from collections.abc import Callable, Sequence
from typing import Any

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


def _time(fn: Callable[[Any], object], packets: Sequence[Any], n: int) -> float:
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
    # Encoding the same messages back: what a node does for every answer it sends. The
    # reference is the general encoder's walk (bencode.encode), what encode_message used to
    # end with; encode_message now ends with encode_checked and reuses each node's compact form.
    messages = [krpc.decode_message(p) for p in packets]
    bodies = [fastbencode.bdecode(p) for p in packets]
    walk = _time(bencode.encode, bodies, args.packets)
    checked = _time(bencode.encode_checked, bodies, args.packets)
    enc = _time(krpc.encode_message, messages, args.packets)
    print(f"reference bencode.encode     : {walk:7.1f} us/packet")
    print(
        f"bencode.encode_checked       : {checked:7.1f} us/packet  ({walk / checked:.1f}x faster)"
    )
    print(f"krpc.encode_message          : {enc:7.1f} us/packet")


if __name__ == "__main__":
    main()
