"""The token ledger: a deterministic state machine over one replicated state.

Laid out like a Cosmos SDK app: ``state.py`` (the stores), one module per concern with its message
handlers (``bank.py``, ``staking.py``, ``distribution.py``, ``slashing.py``, ``escrow.py``, ``authz.py``,
``gov.py``), ``block.py`` (begin-block, transactions,
end-block), ``genesis.py``, ``errors.py`` (one class and code per failure), ``params.py``.

**Atomicity by journal, not by checking first.** All maps of a state share a ``Journal``; inside
``journal.atomic()`` every write records the key's old value, and an exception unwinds them newest
first. Scopes nest (a block, then each transaction), so a failed transaction or block leaves the
state byte-identical, and handlers can be written straightforwardly instead of validating every
path before the first write. The same mechanism gives dry runs (the mempool's admission, ``check_tx``,
``select_txs`` for proposers): apply, then roll back on purpose.

**A block is valid only if every transaction in it applies.** Proposers filter candidates with
``select_txs``; validators re-execute and reject a block whose transactions fail. The alternative
(Ethereum's "include, charge the fee, revert the effects") resists spam better but makes block
validity depend on more state; with a mempool that checks every transaction against the pending
state the simple rule costs nothing and keeps "every failure changes nothing" true at every level.

**State hash.** sha256 over every section (scalars, params, accounts, validators, unbonding queue,
escrows, closed contracts, proposals, votes, epoch work) in key order, each row msgpack-encoded.
Recomputed per block; O(state), which is small for a testnet. Map iteration elsewhere goes through
``JMap.sorted_items()``; the only unordered accessor (``values()``) is used for sums.

**Bounded arithmetic.** Every integer the ledger stores is in [0, 2^63 - 1] by construction, so
the state always encodes and hashes. Issuance stops once genesis supply plus everything minted
reaches ``MAX_ISSUANCE = 2^63 - 1`` base units (9.2 billion DCT), whatever governance sets; amounts,
fees and nonces are bounded at decode, a contract's ``price x max_gpu_seconds`` must be below 2^63,
governance values are checked against each parameter's bounds (2031), shares and tokens are
checked when they grow (``AmountOverflow`` 2009). ``apply_block`` computes the state hash inside its
atomic scope, and any arithmetic error left (a bug the bounds should make impossible) becomes
``ArithmeticFault`` 2097: the block is invalid, the state unchanged, the proposer alive. Snapshots
parse strictly (every row's length, every cell's type and range; else ``SnapshotError`` and a
replay from genesis). Attack (issue 12): price-0 contracts settled until a provider's reward
weight passed 2^64 and ``state_hash`` raised ``OverflowError`` inside every proposer, halting the
chain; and issuance overflow by governance. ``tests/unit/test_ledger_bounds.py`` applies every kind
with values at every 64-bit boundary near the supply limit; ``test_ledger_attacks.py`` sends each
attack to real nodes over JSON-RPC (refused at ``tx_submit``, nothing in the mempool, the chain
keeps committing).

**Supply invariant**, checked after every block in tests and in the demo, recomputing every
running total from its entries:

    sum(balances) + bonded + unbonding + escrowed + deposits + community_pool + provider_pool + fee_pool
        == genesis_supply + minted - burned
"""
