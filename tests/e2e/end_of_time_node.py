"""A Byzantine validator for the e2e tests: ``dcent`` whose node times every block it proposes at
``2**63 - 1`` (issue 12: before BFT time, honest validators committed such a block and no later
block could ever follow it). Run as ``python -m tests.e2e.end_of_time_node node run --home H``.

Everything else is the honest node: it votes, syncs and serves RPC as usual. Each forged
proposal is logged (``FORGED_LINE`` and the height) so a test can see that the attack happened.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from node.cli.main import main
from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import Block

END_OF_TIME = 2**63 - 1
FORGED_LINE = "e2e: proposing a block timed 2**63-1 at height"


def _at_the_end_of_time(build: Callable[..., Block]) -> Callable[..., Block]:
    def build_block(self: LedgerApp, **kwargs: Any) -> Block:
        block = dataclasses.replace(build(self, **kwargs), time_ms=END_OF_TIME)
        print(f"{FORGED_LINE} {block.height}", file=sys.stderr, flush=True)
        return block

    return build_block


if __name__ == "__main__":
    LedgerApp.build_block = _at_the_end_of_time(LedgerApp.build_block)  # type: ignore[method-assign]
    sys.exit(main(sys.argv[1:]))
