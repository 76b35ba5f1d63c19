"""Economics views: per-block history recorded at commit, status, market offers and stats.

**History recorded at commit.** Every committed block gets one ``BlockEconomics`` record (supply,
minted, burned, bonded, unbonding, escrowed, deposits, both pools, inflation; the block's
issuance, burn, fees, validator and provider rewards; GPU-seconds settled, what requesters paid
for them, contracts settled), stored in the ``economics`` table in the same SQLite transaction as
the block. Recorded rather than derived: a history query is one indexed range read, not a replay
from genesis that grows with the chain, and the row is exactly what this replica computed. The
figures come from the ledger itself: totals from the state after the block, issuance, burn, fees
and rewards from ``apply_block``'s ``BlockResult``, settled work from the block's ``escrow_settle`` /
``escrow_finalize`` priced by the escrow module's own pay function (a dispute or a refund is not
settled work). ``RecordingLedgerApp`` builds the record inside ``commit``, the one place where both the
state before and after the block are at hand (the core can decide the next height before the
driver performs the first ``Commit``). A database from before the table is filled in at start,
replaying from genesis if a checkpoint lies above the first missing record.
``tests/integration/test_economics_history.py`` replays a two-validator network's blocks (transfers,
staking, governance, a settlement, a finalized claim) and compares every record; a restart with
records deleted fills them in (the test fails with the backfill disabled).

**RPC and CLI.** ``economics_status(window)``, ``economics_history(from_height, to_height, limit)`` (at
most 5,000 records a call, ``next`` says where to continue), ``market_offers``, ``market_stats``; exact
base units and 10^18 ratios as strings; windows at most 100,000 blocks and at most 1,000 offers a
call, so no call reads an unbounded slice. ``status``: staking APR = (validators' share of a year's
issuance at the current inflation + their share of the window's fees, annualized) / bonded;
provider earnings per GPU-hour = (pay after the protocol fee + provider-pool rewards paid in the
window) per GPU-hour settled. ``market offers`` filters the capacity table with the matcher's own
``device_meets`` and sorts as matching ranks, then lists the ledger's standing offers (`"source":
"standing"``, ``"guaranteed": true``, the DCT price a take in the next block would fix; ``--source`
picks one kind; a filter on something a standing offer does not state, such as memory, leaves
them out); ``market stats`` gives providers, units and prices per
GPU model and the work settled over the last ``--window`` blocks (the formulas are in
``protocol/econview/``).

``tests/e2e/test_economics_view.py`` runs ``economics status/history/plot``, ``gov propose ... --preview``
(for ``fee_burn_share`` and ``inflation_max``) and ``market offers/stats`` as real ``dcent`` processes
against a testnet of node processes.
"""
