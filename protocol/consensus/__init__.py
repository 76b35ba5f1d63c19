"""Tendermint consensus as a pure state machine, and the ledger application under it.

Tendermint's Algorithm 1 ("The latest gossip on BFT consensus", arXiv 1807.04938), stake-weighted,
with integer thresholds (``3*power > 2*total``, ``3*power > total``), as a pure state machine:
``start / receive / on_timeout(..., now_ms) -> list[Effect]``. The full design reasoning (rule by
rule, the sign guard, validator-set delay, evidence, sync, the simulator and its checker) is in
[``protocol/consensus/README.md``](protocol/consensus/README.md); the points a newcomer needs:

- **Persist before broadcast.** Every signature goes through a sign guard (``signer.py``) that
  refuses any (height, round, step) at or below the last persisted one; the ``Persist`` effect
  (last signed step, our votes of that round, the lock and the valid block with its proof of lock)
  always precedes the ``Broadcast`` of what it records, and the node awaits the SQLite write first.
- **Validator-set delay of 2** (CometBFT's H+2): the set voting at height H is the ledger's active
  set after block H-2, so everyone knows the next set before deciding the current height, and a
  syncing node can verify certificates as soon as it has applied the block two below.
- **A block carries its parent's commit certificate and the state hash after executing it**, so a
  certificate certifies the state; validators re-execute a proposal before prevoting for it.
- **Evidence**: two signed votes of one validator for the same (height, round, type) and
  different blocks. Stale (older than ``evidence_max_age``), duplicate (already tombstoned), forged
  or non-conflicting pairs are rejected; included evidence slashes through the ledger hook.
- **Commit timer**: after deciding, the core enters the new height but starts its round 0 (the
  proposer builds its block, everyone arms timeoutPropose) only when a ``COMMIT`` timeout fires
  (``timeout_commit_ms``, CometBFT's NewHeight step). Messages of the new height that arrive
  meanwhile are kept, and a commit quorum still decides at once (catching up never waits). So
  ``timeout_commit_ms`` is a real block-time floor, which the market's block deadlines rely on,
  and a block carries whatever transactions arrived during the wait. An earlier version started
  round 0 at once and only paused the rules: with several validators the next proposal left
  immediately, empty blocks came ~20 a second on an idle testnet, and every node burned CPU on
  them (measured: 23% of a core per idle node; 32 nodes could not make progress on 2 cores).
- **Block time is BFT time**: a block's ``time_ms`` is the stake-weighted median of the precommit
  times in its ``last_commit`` (``certificate.bft_time``; votes carry the signer's clock, signed; an
  honest validator times its vote ``max(now, parent time + 1)``). ``LedgerApp.check_block`` refuses any
  other time, so honest validators prevote nil; the proposer chooses no time at all. Attack
  (issue 12): one proposer timing its block ``2**63 - 1``, after which no block could follow. The
  signers of a certificate hold > 2/3 of the power and Byzantine ones < 1/3, so the median is
  always some honest validator's clock. Chosen over CometBFT's proposer-based timestamps because
  validity stays a pure function of the chain (PBTS compares with the receiver's clock at
  reception, which sync, replay and the simulator's checker cannot re-check) and liveness needs no
  synchronised clocks. Costs: a block's time is its parent's commit time; votes are 8 bytes larger.
  ``tests/e2e/test_block_time_attack.py`` runs a validator process that times every proposal
  ``2**63 - 1``: none commits, the chain goes on, times increase and are not ahead of the clocks.
- **Messages for other heights are authenticated before they act** (``other_heights.py``): a vote
  or proposal for a past, the next or a later height can make the core send blocks, buffer or
  request sync only if a validator of that height's set (or the newest known) signed it; a
  committed block from beyond our height triggers sync only with signatures of > 1/3 of the newest
  known set. The next height's messages wait in a buffer with a quota per validator
  (``consensus.max_buffered_per_validator``, 64): a stranger's messages never get in and a
  validator's flood evicts only its own. Attack: 1,024 unsigned next-height votes evicting the
  real proposal. The core raises nothing but ``InvalidMessage`` for bad input and ``on_timeout`` never
  raises; a block that cannot be built (``BlockExecutionFailed``, counted) means no proposal and a
  round timeout, not a dead proposer (property test over arbitrary input).
- **Late precommits join the next block's last commit** (``late_precommits.py``): see "Validators
  and delegation"; the stored certificate of a block is the one at decision time (what sync
  serves; a superset is valid wherever it is).
- **The simulator** (``protocol/sim/``, ``dcent sim``) runs the real core and the real ledger per
  node in one process on a virtual clock and network, seeded: drops, duplicates, reordering,
  delays, partitions and heals, crashes and restarts (including between persist and broadcast),
  clock skew of hours, unequal stakes, validators joining and leaving. Byzantine keys (together
  under 1/3 of the stake unless the negative control asks for more) draw behaviours per seed:
  equivocation, forged votes, votes for other heights and a stranger's flood, proposals timed 0
  or ``2**63 - 1``, invalid blocks (wrong state hash, replayed, overdrawn, cross-chain or unsigned
  transactions, forged last commit or evidence), withheld votes, amnesia, forged sync, lock games
  (``lock_games.py``: a lock only one honest validator holds, a crash right after persisting it, an
  older block re-proposed with an older proof of lock), forks and twins. Clients transfer, stake,
  delegate, redelegate and undelegate, open, settle, claim, finalize, dispute and refund escrows,
  propose and vote (no grants yet), each preceded by same-nonce variants that must never commit.
  Events are typed records (``protocol/sim/events.py``: ``Deliver``, ``TimerFires``, ``CrashNode``, ...)
  in a queue ordered by (virtual time, sequence number), so every trace hash is reproducible. The **checker**
  shares no verification with the code under test: bare Ed25519, its own stake arithmetic,
  median and evidence rules; it checks agreement, certificates, the honest-signer rules, block
  times, evidence, and money: ``model.py`` re-applies every committed transaction by the documented
  rules (nonces, antes, plain accounts' exact balances, escrows' lives, payers and grants, the
  burns, unbonding releases, tombstones; bonding and reward distribution only for plausibility)
  and checks the replica's holdings against genesis + minted - burned. Liveness: after the heal every honest node commits within 30 s (virtual). The model
  restates the ledger's rules, so a rule change must change it too, or the simulator reports the
  difference. ``bench/mutants.py`` breaks the core or the ledger on purpose and requires the
  simulator to catch every mutant. Figures (issue 12, the shared 2-core machine at load average
  9-15): ``dcent sim --seeds 1000 --validators 4 --byzantine 1``: 1,000 runs, 0 safety, liveness or
  agreement violations, 966.75 s wall (274 s CPU), 131 MB peak RSS; the negative control
  (``--byzantine 2 --heights 12 --keep-going``, half the stake or more) violates agreement in 157 of
  200 runs and exits 1; ``bench/mutants.py`` (a run in 54.6 s, the machine loaded by a test run
  beside it): 17 mutants, 17 caught by the checks, 0 crashed the simulator (a crash is counted
  apart: a detection the checker never judged), 0 survived; ``evidence_age_unchecked`` (evidence
  older than the window accepted) is caught at seed 6 since an ``invalid_blocks`` key gossips its
  private equivocation one block past the window, so an honest pool carries it into a block
  (its own stale proposals alone reached that rule in none of 200 seeds;
  tests/unit/test_sim_late_evidence.py); the slowest caught (``any_pol_unlocks`` at seed 100,
  ``lock_not_restored`` at 39) only through the lock games.
  Signature verification is memoized per run (pure, so legitimate).
"""
