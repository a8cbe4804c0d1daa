"""Benchmark: the HCCL rank table of 128 pods x 8 Ascend cards, built and gathered through the rendezvous.

    python bench/bench_ranktable.py [--pods 128] [--cards 8] [--repeat 5]

Prints milliseconds (median of ``--repeat`` runs) for
- build: parsing every pod's device-plugin annotation and building the version-1.0 table in one process;
- gather: the real rendezvous on 127.0.0.1 — one ``RendezvousServer`` and one client thread per pod, each
  sending its piece with ``exchange`` and receiving the complete table (what ``vitjob launch`` does at start),
  from the first connection to the last pod holding the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

from vitjob.launch import rendezvous
from vitjob.launch.ranktable import build_rank_table, piece_from_annotation


def annotations(pods: int, cards: int) -> list[str]:
    return [
        json.dumps(
            {
                "pod_name": f"vit-worker-{i}",
                "server_id": f"uid-{i:04d}",
                "host_ip": "192.0.2.1",
                "devices": [
                    {"device_id": str(d), "device_ip": f"10.{i // 256}.{i % 256}.{d + 1}"}
                    for d in range(cards)
                ],
            }
        )
        for i in range(pods)
    ]


def build_once(texts: list[str]) -> float:
    start = time.perf_counter()
    pieces = [piece_from_annotation(i, f"vit-worker-{i}", t) for i, t in enumerate(texts)]
    table = build_rank_table(pieces)
    json.dumps(table, indent=2)
    return time.perf_counter() - start


def gather_once(texts: list[str]) -> float:
    pieces = [piece_from_annotation(i, f"vit-worker-{i}", t) for i, t in enumerate(texts)]
    server = rendezvous.RendezvousServer(0, len(pieces), 60.0, host="127.0.0.1").serve()
    tables: list[object] = [None] * len(pieces)

    def pod(i: int) -> None:
        tables[i] = rendezvous.exchange("127.0.0.1", server.port, pieces[i], 60.0)

    threads = [threading.Thread(target=pod, args=(i,)) for i in range(len(pieces))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    server.close()
    if any(t != tables[0] for t in tables) or tables[0] is None:
        raise SystemExit("pods received different tables")
    return elapsed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=128)
    parser.add_argument("--cards", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    texts = annotations(args.pods, args.cards)
    build = statistics.median(build_once(texts) for _ in range(args.repeat))
    gather = statistics.median(gather_once(texts) for _ in range(args.repeat))
    layout = f"{args.pods} pods x {args.cards} cards = {args.pods * args.cards} ranks"
    print(f"rank table build ({layout}): {build * 1000:.1f} ms")
    print(f"rank table gather through the rendezvous ({args.pods} client threads): {gather * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
