"""Mempool costs: admission per transaction (against raw signature verification), the proposer's
``reap`` of a full block from a full pool, ``remove_committed`` after that block, and refusing an
unfunded flood.

Prints figures, then one JSON line:
    {"bench": "mempool", "admit_us": ..., "verify_us": ..., "admit_overhead_us": ...,
     "reap_ms": ..., "remove_committed_ms": ..., "refuse_unfunded_us": ..., ...}
Goal (issue 14): admission costs little beyond the one signature check it does; ``reap`` of a
5,000-transaction block from a 20,000-transaction pool stays in the low milliseconds (the proposer
calls it every block).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from node.services.mempool import Mempool, MempoolError, MempoolSettings
from protocol.crypto import PrivateKey
from protocol.ledger.block import BlockContext, apply_block
from protocol.ledger.errors import LedgerError
from protocol.ledger.genesis import dev_genesis, genesis_state
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import Transfer, decode_tx, sign_tx
from protocol.units import DCT

CHAIN_ID = "dcent-bench-mempool"
FEE = 10_000


def _state(senders: list[PrivateKey], validator: PrivateKey) -> LedgerState:
    genesis = dev_genesis(
        CHAIN_ID,
        [(validator.public_key.raw, 1_000 * DCT)],
        [(key.address.raw, 1_000 * DCT) for key in senders],
    )
    return genesis_state(genesis)


def _signed(senders: list[PrivateKey], per_sender: int) -> list[bytes]:
    """Nonces 1..per_sender of every sender, senders interleaved, fees varying per sender."""
    return [
        sign_tx(key, CHAIN_ID, nonce, FEE + (index % 7) * 1_000, Transfer(bytes(20), 1 + nonce))
        for nonce in range(1, per_sender + 1)
        for index, key in enumerate(senders)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=400)
    parser.add_argument("--per-sender", type=int, default=50)
    parser.add_argument("--block", type=int, default=5_000, help="max_block_txs")
    parser.add_argument("--reaps", type=int, default=20)
    parser.add_argument("--flood", type=int, default=20_000, help="unfunded transactions refused")
    args = parser.parse_args()

    validator = PrivateKey.from_label("bench-mempool-validator")
    senders = [PrivateKey.from_label(f"bench-mempool-{i}") for i in range(args.senders)]
    state = _state(senders, validator)
    raws = _signed(senders, args.per_sender)
    total = len(raws)
    pool = Mempool(
        MempoolSettings(max_txs=total, max_block_txs=args.block, busy_blocks=max(1, total // args.block + 1))
    )

    started = time.perf_counter()
    for raw in raws:
        pool.add(raw, state)
    admit_s = time.perf_counter() - started
    if len(pool) != total:
        print(f"only {len(pool)} of {total} admitted", file=sys.stderr)
        return 1

    decoded = [decode_tx(raw) for raw in raws[:5_000]]
    started = time.perf_counter()
    for tx in decoded:
        tx.verify_signature()
    verify_s = (time.perf_counter() - started) / len(decoded)

    reap_times = []
    for _ in range(args.reaps):
        started = time.perf_counter()
        block = pool.reap(args.block)
        reap_times.append(time.perf_counter() - started)
    if len(block) != min(args.block, total):
        print(f"reap returned {len(block)}", file=sys.stderr)
        return 1

    apply_block(state, BlockContext(1, validator.address.raw), block, verified=pool.was_verified)
    started = time.perf_counter()
    dropped = pool.remove_committed(state, {tx.hash for tx in block})
    remove_s = time.perf_counter() - started
    if dropped != len(block):
        print(f"remove_committed dropped {dropped} of {len(block)}", file=sys.stderr)
        return 1

    strangers = [PrivateKey.from_label(f"bench-mempool-stranger-{i}") for i in range(313)]
    flood = [
        sign_tx(strangers[i % len(strangers)], CHAIN_ID, i // len(strangers) + 1, FEE, Transfer(bytes(20), 1))
        for i in range(args.flood)
    ]
    refused = 0
    started = time.perf_counter()
    for raw in flood:
        try:
            pool.add(raw, state)
        except (LedgerError, MempoolError):
            refused += 1
    refuse_s = time.perf_counter() - started
    if refused != len(flood):
        print(f"{len(flood) - refused} unfunded transactions admitted", file=sys.stderr)
        return 1

    admit_us = admit_s / total * 1e6
    figures = {
        "bench": "mempool",
        "txs": total,
        "senders": args.senders,
        "admit_us": round(admit_us, 1),
        "verify_us": round(verify_s * 1e6, 1),
        "admit_overhead_us": round(admit_us - verify_s * 1e6, 1),
        "reap_ms": round(statistics.median(reap_times) * 1e3, 2),
        "reap_block": args.block,
        "remove_committed_ms": round(remove_s * 1e3, 2),
        "refuse_unfunded_us": round(refuse_s / len(flood) * 1e6, 1),
    }
    print(f"admission: {figures['admit_us']} us/tx ({figures['verify_us']} us of it one signature check)")
    print(f"reap of {args.block} from {total}: {figures['reap_ms']} ms (median of {args.reaps})")
    print(f"remove_committed after that block: {figures['remove_committed_ms']} ms")
    print(f"refusing an unfunded flood: {figures['refuse_unfunded_us']} us/tx")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
