"""The mempool package: :mod:`.pool` (admission, ordering, eviction), :mod:`.spend` (what each
transaction kind commits), :mod:`.settings`, :mod:`.errors` (codes 5600-5649).

Every validator builds its blocks from its own mempool, so the mempool decides what spam costs
and what an honest transaction waits. ``Mempool.add(raw, committed_state)`` admits a transaction
with the cheap checks first, so that refusing costs less than accepting, and changes nothing
when it refuses:

1. **Decode**; refuse a duplicate (5601), another chain, a fee under ``min_fee``.
2. **Nonces in order per sender**: the nonce must be the committed one + 1 + the sender's waiting
   count (append) or one of the waiting ones (replace). A used nonce is the ledger's ``BadNonce``,
   a skipped one ``NonceGap`` (5607). With no gaps every waiting transaction could be in the next
   blocks, and a sender's pending state is well defined.
3. **Per-sender bounds**: ``max_per_sender`` (64) transactions and 64 maximum-size transactions'
   bytes (``SenderLimit`` 5606).
4. **Payable against pending** (``spend.py``): each transaction kind declares what it takes from
   which account: the fee plus the transfer amount, the stake, the escrow deposit *and the
   provider's collateral* (from the provider's account; a grant-paid escrow's deposit and fee from
   the payer's), the proposal deposit, the unstaked bond.
   The sum must fit the committed balance alone (else the ledger's ``InsufficientFunds`` 2006 /
   ``InsufficientStake`` 2010: it can never apply) and, added to what the account's waiting
   transactions already commit, still fit it (else ``PendingSpendExceedsBalance`` 5604: retry once
   they are in). Credits a waiting transaction would bring are never counted: they may not apply.
5. **Replace by fee**: the same sender and nonce pays ``replace_bump_percent`` (10%, at least one base
   unit) more fee and no less per byte (``NonceTaken`` 5603 names the fee), unless the waiting one is
   the sender's next and can no longer apply (the other party closed its escrow, say): then any
   valid transaction takes the nonce.
6. **Dry run** (apply and roll back) on top of the sender's waiting transactions, for its next
   transaction and for kinds whose failures step 4 cannot see: an unstake with nothing bonded, a
   vote without power, a settle of an unknown contract are refused with the ledger's error at
   once instead of waiting forever. Behind a waiting transaction that no longer applies, such
   kinds get ``BlockedByPendingTx`` (5608) until it is replaced.
7. **Room**: the hard bounds ``max_txs`` (20,000) and ``max_bytes`` (64 MiB) give ``MempoolFull`` (5602);
   **admission control** refuses beyond ``busy_blocks`` (2) blocks' worth waiting: ``MempoolBusy``
   (5605, "busy, retry"), so an admitted transaction waits a bounded time. A block's worth is what
   blocks actually carry: the most any of the last 8 committed blocks carried, between
   ``busy_floor_txs`` (256) and ``consensus.max_block_txs`` (5,000; also the bound before any
   block); a block that takes everything waiting raises the bound for the next, so under load it
   climbs to what proposers can carry. And no more waits than those blocks finalized per
   ``busy_wait_ms`` (1,000) by their block times: bigger blocks are slower ones (4,000
   transactions took ~9 s to build and execute on a loaded 2-core testnet), so the fixed 10,000
   this replaces let finality under overload grow to 15-30 s (issue 14). Over either bound a
   newcomer still gets in by evicting waiting transactions that pay strictly less per byte,
   cheapest first, and only
   senders' *last* transactions (never a lower nonce while a higher one stays, never the
   newcomer's own). The node's own market transactions (the tx lane, ``local=True``) are exempt from
   admission control, not from the bounds.
8. **The signature, last and once per node**: the hash is remembered while the transaction waits
   and, after it leaves other than by a commit (evicted, expired, replaced), in a ring of
   ``verified_keep`` (20,000), so ``apply_block(verified=mempool.was_verified)`` re-verifies nothing the
   node admitted, from RPC or relay alike. A verified hash covers the signature, so it vouches
   only for those exact bytes.

After each commit ``remove_committed`` drops what the block included, what its nonces made stale,
what waited ``expiry_blocks`` (600) with the sender's later ones, and, newest first, what no longer
fits its account (a slash, another node's conflicting transaction, an escrow that locked a
provider's collateral). So at every moment each account's waiting commitments fit its committed
balance, and a proposer never meets an unpayable transaction. ``reap`` gives the proposer senders'
next transactions merged by fee per byte (ties by arrival), each sender's in nonce order, in
O(senders + n log senders). Fee per byte is the integer ``(fee << 32) // size``.

Attacks each mechanism was built against (issue 12 flooded a testnet with 20,000 transfers from
313 unfunded keys):

- *unfunded keys flooding*: step 4 refuses them before the signature, for a dict lookup, and they
  are never relayed (``test_unfunded_flood_is_refused_at_submit_never_relayed_and_a_funded_transfer_commits``);
- *a funded key promising its balance many times over*, or spending collateral an escrow is about
  to lock: step 4 sums every waiting commitment of an account, the provider's included;
- *transactions that can never apply, parked forever*: the dry run, and expiry;
- *a flood of valid, funded, cheap transactions*: admission control keeps the wait bounded, and a
  higher fee per byte still gets in and is reaped first
  (``test_funded_flood_beyond_admission_control_is_refused_busy_and_a_richer_transfer_commits``);
  the market's own settlements cannot be crowded out (local exemption);
- *eviction used to strand a sender's later nonces*: only last transactions are evicted;
- *replace-by-fee spam*: each replacement pays the bump; *one sender filling the pool*: the
  per-sender bounds; *forged signatures*: verified before anything is kept.

The bounds are ``[mempool]`` in ``config.toml`` (``max_txs``, ``max_bytes``, ``busy_blocks``,
``busy_floor_txs``, ``busy_wait_ms``, ``max_per_sender``, ``max_sender_bytes``, ``expiry_blocks``,
``replace_bump_percent``, ``verified_keep``);
``max_block_txs`` always follows ``consensus.max_block_txs`` (setting it under ``[mempool]`` is refused).
Why these defaults: two blocks' worth keeps an admitted transaction's wait near two blocks at full
load; the hard bounds (four blocks' worth, 64 MiB) cap memory even with replacements and local
transactions; 64 per sender is more than a wallet or the market's lane has in flight and bounds
how far ahead of its committed nonce one key reaches; 600 blocks is several minutes at the block
time floor. A new transaction kind needs a rule in ``spend.py`` (``test_every_transaction_kind_has_a_spend_rule``).
``bench/mempool.py`` measures admission against a raw signature check, ``reap`` of a full block from
a full pool, and refusing an unfunded flood.

Verify and decode once per node
-------------------------------

Already on main: the mempool's verified-hash cache (``was_verified``, keyed by the hash of the whole
envelope, signature included) is used by ``check_block`` on every validator, so a signature
admitted by RPC or relay is not verified again at block execution (a forged copy with the same
body and another signature is not vouched for and fails: ``test_mempool.py``). The profile confirmed
it: ~1.06 Ed25519 verifications per committed transaction per node. What the profile showed
instead was **decoding**: each node received every transaction from each of its N-1 peers and
decoded every copy (~20-90 us) before refusing it as a duplicate, and decoded every block's
transactions again to execute them. Now ``Mempool.add`` refuses a duplicate on its hash before
decoding; ``LedgerApp(tx_decoded=mempool.decoded)`` executes blocks with the mempool's decoded
``Tx`` objects (the hash covers every byte, so it is the same transaction); and the driver refuses
relayed copies of recently committed transactions (a ring of 32,768 hashes) on their hash,
counted as useless as a used nonce would be. Measured in-process (3,000 transfers, one node,
CPU time, load 7): admission of the two duplicate copies 41.4 -> 5.1 us per tx, building a block
55.5 -> 27.1, checking one 34.2 -> 9.4; a non-proposer's path per tx 359 -> 252 us.
Tests: ``tests/unit/test_decode_once.py``, ``test_consensus_replays.py``
(``test_a_relayed_copy_of_a_committed_transaction_is_refused_on_its_hash_and_counted``).
"""

from node.services.mempool.errors import (
    BlockedByPendingTx,
    DuplicateTx,
    MempoolBusy,
    MempoolError,
    MempoolFull,
    MempoolSettingsError,
    NonceGap,
    NonceTaken,
    PendingSpendExceedsBalance,
    SenderLimit,
)
from node.services.mempool.pool import Mempool, MempoolStats
from node.services.mempool.settings import MempoolSettings

__all__ = [
    "BlockedByPendingTx",
    "DuplicateTx",
    "Mempool",
    "MempoolBusy",
    "MempoolError",
    "MempoolFull",
    "MempoolSettings",
    "MempoolSettingsError",
    "MempoolStats",
    "NonceGap",
    "NonceTaken",
    "PendingSpendExceedsBalance",
    "SenderLimit",
]
