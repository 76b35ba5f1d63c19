"""The mempool: admitted transactions waiting for a block, bounded and ordered by fee per byte.

Admission (:meth:`Mempool.add`), cheap checks first so that refusing costs less than accepting:

1. decode; refuse a duplicate, another chain, a fee under ``min_fee``;
2. nonces in order per sender: the nonce is the committed one + 1 + the number of the sender's
   waiting transactions (appending), or one of theirs (replacing); a used nonce is the ledger's
   ``BadNonce``, a skipped one ``NonceGap``. With no gaps every waiting transaction could be in
   the next blocks, and the sender's "pending state" is well defined;
3. per-sender bounds (count, bytes);
4. the sender can pay (:mod:`.spend`): the fee plus what the kind takes (transfer amount, stake,
   escrow deposit and the provider's collateral, proposal deposit, unstaked bond) must fit in the
   committed balance (else the ledger's ``InsufficientFunds``/``InsufficientStake``: it can never
   apply) and, together with what the account's waiting transactions already commit, in that
   balance too (else ``PendingSpendExceedsBalance``: retry once they are in);
5. a replacement (same sender and nonce) pays ``replace_bump_percent`` more fee and no less per
   byte, unless the waiting one is the sender's next and can no longer apply (its escrow was
   closed by the other party, say): then any valid transaction takes the nonce;
6. a dry run (apply, then roll back) on top of the sender's waiting transactions, for the
   sender's next transaction and for kinds whose failures the claims do not capture; so "unstake
   with nothing bonded", a vote without power or a settle of an unknown contract is refused at
   once instead of waiting forever;
7. room: the hard bounds (``max_txs``, ``max_bytes``: ``MempoolFull``) and admission control
   (``busy_blocks`` blocks' worth: ``MempoolBusy``, retry; a block's worth is the most any of
   the last ``CARRIED_WINDOW`` committed blocks carried, between ``busy_floor_txs`` and
   ``max_block_txs``, so the wait of an admitted transaction stays near ``busy_blocks`` blocks
   however slowly blocks are actually built under load; a block that takes all that waits
   raises the bound for the next, so it climbs to what proposers can carry), and, given block
   times, at most what the window's blocks finalized per ``busy_wait_ms`` (so the wait stays near
   that many milliseconds even where bigger blocks would be slower ones). When over
   either, the new transaction goes in only by evicting waiting ones that pay strictly less per
   byte, cheapest first (the newest among equals), and only a sender's *last* transaction is
   ever evicted, never a lower nonce while a higher one stays; never the new one's own sender's;
8. the signature, once per node: checked last, and the hash is remembered for as long as the
   transaction waits and, after it leaves other than by a commit, in a bounded ring; so
   ``apply_block(verified=mempool.was_verified)`` re-verifies nothing a validator admitted, from
   RPC or relay alike.

Nothing changes when ``add`` raises (except that the sender's transactions the given state shows
committed are forgotten, which :meth:`Mempool.remove_committed` would do anyway).

After each commit, :meth:`Mempool.remove_committed` drops what the block included, what its new
nonces made stale, what waited more than ``expiry_blocks`` (with the sender's later ones), and,
newest first, what no longer fits its account's balance (a slash, another node's conflicting
transaction, an escrow locking a provider's collateral). So at every moment each account's
waiting commitments fit its committed balance.

:meth:`Mempool.reap` gives a proposer the best transactions first: senders' next transactions
merged by fee per byte (ties by arrival), each sender's in nonce order. O(senders + n log
senders) per call, nothing sorted per sender.

Attacks this is designed against:
- unfunded keys flooding the pool (issue 12: 20,000 transfers from 313 keys): refused at step 4
  before the signature is checked, never relayed, the pool untouched;
- a funded key parking more than it owns: step 4 covers all its waiting transactions at once;
- transactions that can never apply held "pending" forever: step 6, and expiry;
- a flood of valid, funded, low-fee transactions: admission control refuses beyond what the next
  blocks carry, so admitted transactions keep a bounded wait and a higher fee per byte still gets
  in (and is reaped first) by evicting the cheapest;
- eviction used to make a sender's later nonces unusable: only a sender's last transaction goes;
- replace-by-fee spam re-sending one nonce for free: each replacement pays a 10% bump;
- one sender filling the pool: per-sender count and byte bounds;
- forged signatures: verified before anything is kept, and a verified hash vouches only for the
  exact bytes (the hash covers the signature).
"""

from __future__ import annotations

import hashlib
import heapq
from collections import OrderedDict, deque
from collections.abc import Set
from dataclasses import dataclass, field

from node.services.mempool.errors import (
    BlockedByPendingTx,
    DuplicateTx,
    MempoolBusy,
    MempoolFull,
    NonceGap,
    NonceTaken,
    PendingSpendExceedsBalance,
    SenderLimit,
)
from node.services.mempool.settings import MempoolSettings
from node.services.mempool.spend import (
    BALANCE,
    READERS,
    Resource,
    available,
    commitments,
    never_enough,
    rule_for,
)
from protocol.crypto import Address
from protocol.ledger.block import apply_tx
from protocol.ledger.errors import BadNonce, BadSignature, FeeTooLow, LedgerError, WrongChainId
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import Tx, decode_tx
from protocol.units import format_amount

#: Fee per byte is compared as ``(fee << RATE_SHIFT) // size``: exact integers, no floats.
RATE_SHIFT = 32

_Key = tuple[bytes, Resource]
_NOTHING: frozenset[bytes] = frozenset()


def fee_rate(fee: int, size: int) -> int:
    """The priority of a transaction: its fee per byte, scaled to an integer."""
    return (fee << RATE_SHIFT) // size


@dataclass(slots=True, eq=False)
class _Entry:
    tx: Tx
    #: Arrival order, unique: breaks every tie, so ordering never depends on hashing.
    seq: int
    rate: int
    #: Committed height when admitted (expiry counts from it).
    height: int
    commits: tuple[tuple[_Key, int], ...]
    size: int
    #: A tuple for this entry sits in the eviction heap.
    in_tail_heap: bool = False


@dataclass(slots=True, eq=False)
class _Queue:
    """One sender's waiting transactions, consecutive nonces in order."""

    entries: list[_Entry] = field(default_factory=list)
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class MempoolStats:
    count: int
    bytes: int
    #: Hashes vouched for as verified: the waiting ones plus the kept ring.
    verified_cache: int
    senders: int = 0
    busy_limit: int = 0
    evicted: int = 0
    expired: int = 0
    replaced: int = 0
    #: Dropped after a commit because their account could no longer pay them.
    unpayable: int = 0
    #: Dropped after a commit because another transaction of their sender took their nonce.
    conflicted: int = 0
    refused_busy: int = 0
    refused_full: int = 0


#: Committed blocks whose largest transaction count sets admission control's block's worth.
CARRIED_WINDOW = 8


class _RollBack(Exception):
    """Ends a dry run: the journal undoes everything it applied."""


class Mempool:
    def __init__(self, settings: MempoolSettings | None = None) -> None:
        self.settings = settings or MempoolSettings()
        self._entries: dict[bytes, _Entry] = {}
        self._queues: dict[bytes, _Queue] = {}
        self._bytes = 0
        self._seq = 0
        #: Per (account, resource): the sum every waiting transaction commits, and which do.
        self._totals: dict[_Key, int] = {}
        self._claimants: dict[_Key, dict[bytes, None]] = {}
        #: Admission height -> hashes admitted then (expiry).
        self._by_height: dict[int, dict[bytes, None]] = {}
        #: Min-heap of senders' last transactions, (rate, -seq, hash): eviction candidates.
        #: Stale tuples are skipped when popped and the heap is rebuilt when they pile up.
        self._tails: list[tuple[int, int, bytes]] = []
        #: Verified hashes that left the pool other than by a commit.
        self._recent: OrderedDict[bytes, None] = OrderedDict()
        self._evicted = self._expired = self._replaced = self._unpayable = self._conflicted = 0
        self._refused_busy = self._refused_full = 0
        #: Transaction counts of the last CARRIED_WINDOW committed blocks (none seen yet: the
        #: static bound, ``max_block_txs``).
        self._carried: deque[int] = deque(maxlen=CARRIED_WINDOW)
        #: Their block times (ms), when given: the finalized rate over the window.
        self._carried_at: deque[int] = deque(maxlen=CARRIED_WINDOW)

    # --- views -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._entries

    def get(self, tx_hash: bytes) -> Tx | None:
        entry = self._entries.get(tx_hash)
        return entry.tx if entry is not None else None

    @property
    def busy_limit(self) -> int:
        """Waiting transactions beyond which a newcomer is refused busy (see step 7)."""
        if not self._carried:
            return self.settings.busy_limit
        rate = None
        if len(self._carried_at) == len(self._carried) >= 2:
            # What the blocks after the first carried, over the time since the first.
            rate = (sum(self._carried) - self._carried[0], self._carried_at[-1] - self._carried_at[0])
        return self.settings.busy_limit_for(max(self._carried), rate)

    def stats(self) -> MempoolStats:
        return MempoolStats(
            count=len(self._entries),
            bytes=self._bytes,
            verified_cache=len(self._entries) + len(self._recent),
            senders=len(self._queues),
            busy_limit=self.busy_limit,
            evicted=self._evicted,
            expired=self._expired,
            replaced=self._replaced,
            unpayable=self._unpayable,
            conflicted=self._conflicted,
            refused_busy=self._refused_busy,
            refused_full=self._refused_full,
        )

    def waiting(self, sender: bytes) -> list[Tx]:
        """The sender's waiting transactions, in nonce order."""
        queue = self._queues.get(sender)
        return [entry.tx for entry in queue.entries] if queue is not None else []

    def next_nonce(self, sender: bytes, state: LedgerState) -> int:
        """The nonce this pool admits next from ``sender`` (a wallet's "pending nonce")."""
        committed = state.account(sender).nonce
        queue = self._queues.get(sender)
        if queue is None:
            return committed + 1
        return max(committed, queue.entries[-1].tx.nonce) + 1

    def committed_spend(self, account: bytes, resource: Resource = BALANCE) -> int:
        """What the waiting transactions commit of ``account``'s ``resource`` (its balance)."""
        return self._totals.get((account, resource), 0)

    def all_commitments(self) -> list[tuple[bytes, Resource, int]]:
        """Every (account, resource, committed amount), in first-commitment order (for checks)."""
        return [(account, resource, total) for (account, resource), total in self._totals.items()]

    def decoded(self, raw: bytes) -> Tx | None:
        """The waiting transaction with exactly these bytes, already decoded (and verified), so
        executing a block that carries it need not decode it again; None if not waiting."""
        entry = self._entries.get(hashlib.sha256(raw).digest())
        return entry.tx if entry is not None else None

    def was_verified(self, tx: Tx) -> bool:
        """For ``apply_block(verified=...)``: this exact transaction's signature was checked here."""
        return tx.hash in self._entries or tx.hash in self._recent

    # --- admission ---------------------------------------------------------------------------
    def add(self, raw: bytes, state: LedgerState, *, local: bool = False) -> Tx:
        """Admit one transaction against the committed ``state``. ``local``: the node's own
        transaction (its market lane); exempt from admission control, not from the bounds.

        Raises the ledger's MalformedTx, UnknownTxKind, WrongChainId, FeeTooLow, BadNonce,
        InsufficientFunds, InsufficientStake, BadSignature or whatever the dry run fails with;
        or DuplicateTx, NonceGap, SenderLimit, NonceTaken, PendingSpendExceedsBalance,
        BlockedByPendingTx, MempoolBusy, MempoolFull. Nothing changes when it raises.
        """
        # Before decoding (~0.1 ms): every relaying peer sends each transaction once, so with
        # N peers most arrivals are duplicates, and they cost a hash, not a decode.
        if hashlib.sha256(raw).digest() in self._entries:
            raise DuplicateTx("transaction already in the mempool")
        tx = decode_tx(raw)
        if tx.chain_id != state.chain_id:
            raise WrongChainId(f"transaction is for chain {tx.chain_id!r}, this is {state.chain_id!r}")
        if tx.fee < state.params.min_fee:
            raise FeeTooLow(
                f"fee {format_amount(tx.fee)} is below the minimum {format_amount(state.params.min_fee)}"
            )
        committed = state.account(tx.sender).nonce
        queue = self._queues.get(tx.sender)
        if queue is not None:
            self._drop_committed_nonces(tx.sender, queue, committed, _NOTHING)
            queue = self._queues.get(tx.sender)
        waiting = queue.entries if queue is not None else []
        next_nonce = committed + 1 + len(waiting)
        if tx.nonce <= committed:
            raise BadNonce(f"nonce {tx.nonce} is used: the account's next nonce is {committed + 1}")
        if tx.nonce > next_nonce:
            raise NonceGap(
                f"nonce {tx.nonce} skips ahead: this node admits nonce {next_nonce} next from this sender "
                f"({committed} committed, {len(waiting)} waiting)"
            )
        position = tx.nonce - committed - 1
        old = waiting[position] if position < len(waiting) else None
        rule = rule_for(tx)
        commits = commitments(tx, rule)
        rate = fee_rate(tx.fee, len(raw))
        self._check_sender_bounds(queue, old, len(raw))
        self._check_funds(commits, old, state)
        if old is not None:
            self._check_replacement(old, tx, rate, state, is_next=position == 0)
        if rule.dry_run or position == 0:
            self._dry_run(state, waiting[:position], tx)
        victims = self._make_room(tx.sender, rate, len(raw), old, local)
        if tx.hash not in self._recent and not tx.verify_signature():
            self._requeue(victims)
            raise BadSignature("transaction signature does not verify")
        for victim in victims:
            self._evicted += self._drop_from(victim, keep_verified=True)
        if old is not None:
            self._replace(old, tx, rate, state.height, commits)
        else:
            self._append(tx, rate, state.height, commits)
        return tx

    def _check_sender_bounds(self, queue: _Queue | None, old: _Entry | None, size: int) -> None:
        settings = self.settings
        count = len(queue.entries) if queue is not None else 0
        if old is None and count >= settings.max_per_sender:
            raise SenderLimit(f"this sender already has {count} transactions waiting (the most allowed)")
        sender_bytes = (queue.bytes if queue is not None else 0) + size - (old.size if old else 0)
        if sender_bytes > settings.max_sender_bytes:
            raise SenderLimit(
                f"this sender's waiting transactions would take {sender_bytes} bytes "
                f"(at most {settings.max_sender_bytes})"
            )

    def _check_funds(
        self, commits: tuple[tuple[_Key, int], ...], old: _Entry | None, state: LedgerState
    ) -> None:
        replaced = dict(old.commits) if old is not None else {}
        for key, amount in commits:
            account, resource = key
            held = available(state, account, resource)
            if amount > held:
                raise never_enough(account, resource, amount, held)
            pending = self._totals.get(key, 0) - replaced.get(key, 0)
            if pending + amount > held:
                raise PendingSpendExceedsBalance(
                    f"{READERS[resource.name].what} of {Address(account)} is {format_amount(held)}, its "
                    f"waiting transactions commit {format_amount(pending)} and this one needs "
                    f"{format_amount(amount)}: retry once they are committed"
                )

    def _check_replacement(
        self, old: _Entry, tx: Tx, rate: int, state: LedgerState, *, is_next: bool
    ) -> None:
        bump = self.settings.replace_bump_percent
        needed = old.tx.fee + max(1, old.tx.fee * bump // 100)
        if tx.fee >= needed and rate >= old.rate:
            return
        # A waiting next transaction that can no longer apply would hold every later nonce of its
        # sender for good: then any valid transaction takes its nonce.
        if is_next and not self._applies(state, old.tx):
            return
        raise NonceTaken(
            f"a transaction with nonce {tx.nonce} from this sender is already waiting; replacing it "
            f"takes a fee of at least {format_amount(needed)} and no less per byte"
        )

    @staticmethod
    def _applies(state: LedgerState, tx: Tx) -> bool:
        try:
            Mempool._dry_run(state, [], tx)
        except LedgerError:
            return False
        return True

    @staticmethod
    def _dry_run(state: LedgerState, before: list[_Entry], tx: Tx) -> None:
        """Apply the sender's waiting ``before`` and then ``tx`` at the next height, and undo it
        all. Signatures are not checked here (``before`` were, ``tx`` is next). Raises the
        LedgerError ``tx`` fails with, or BlockedByPendingTx."""
        height = state.height + 1
        try:
            with state.journal.atomic():
                for entry in before:
                    try:
                        apply_tx(state, entry.tx, height, verify_signature=False)
                    except LedgerError as exc:
                        raise BlockedByPendingTx(
                            f"this sender's waiting transaction with nonce {entry.tx.nonce} no longer "
                            f"applies ({exc.code}: {exc.message}); replace it first"
                        ) from None
                apply_tx(state, tx, height, verify_signature=False)
                raise _RollBack
        except _RollBack:
            pass

    def _make_room(
        self, sender: bytes, rate: int, size: int, old: _Entry | None, local: bool
    ) -> list[_Entry]:
        """The waiting transactions to evict for this one (popped from the tail heap; hand them
        back with :meth:`_requeue` if admission fails later). Raises MempoolFull, MempoolBusy."""
        settings = self.settings
        count = len(self._entries)
        grows = old is None
        over_count = grows and count >= settings.max_txs
        busy_limit = self.busy_limit
        over_busy = grows and not local and count >= busy_limit
        bytes_needed = self._bytes + size - (old.size if old is not None else 0) - settings.max_bytes
        need_count = 1 if over_count or over_busy else 0
        if need_count == 0 and bytes_needed <= 0:
            return []
        victims = self._cheapest_tails(rate, sender, need_count, bytes_needed)
        if victims is not None:
            return victims
        if over_count or bytes_needed > 0:
            self._refused_full += 1
            raise MempoolFull(
                f"the mempool holds {count} transactions / {self._bytes} bytes (at most "
                f"{settings.max_txs} / {settings.max_bytes}) and none pays less per byte than this one"
            )
        self._refused_busy += 1
        raise MempoolBusy(
            f"busy: {count} transactions are waiting (at most {busy_limit}, {settings.busy_blocks} blocks' "
            "worth); retry after "
            "the next block, or pay more per byte than the cheapest waiting one"
        )

    def _cheapest_tails(self, below: int, sender: bytes, count: int, size: int) -> list[_Entry] | None:
        """Senders' last transactions paying less per byte than ``below``, cheapest first, enough
        to free ``count`` slots and ``size`` bytes; None when there are not enough (nothing is
        taken then). One per sender, never ``sender``'s."""
        chosen: list[_Entry] = []
        aside: list[_Entry] = []
        freed_count = freed_bytes = 0
        while (freed_count < count or freed_bytes < size) and self._tails:
            entry = self._pop_tail()
            if entry is None:
                continue
            if entry.rate >= below:
                aside.append(entry)
                break
            if entry.tx.sender == sender:
                aside.append(entry)
                continue
            chosen.append(entry)
            freed_count += 1
            freed_bytes += entry.size
        if freed_count < count or freed_bytes < size:
            self._requeue(chosen + aside)
            return None
        self._requeue(aside)
        return chosen

    def _pop_tail(self) -> _Entry | None:
        """The cheapest tuple of the tail heap, as its entry when it still is a sender's last."""
        _, neg_seq, tx_hash = heapq.heappop(self._tails)
        entry = self._entries.get(tx_hash)
        if entry is None or entry.seq != -neg_seq:
            return None
        entry.in_tail_heap = False
        queue = self._queues[entry.tx.sender]
        return entry if queue.entries[-1] is entry else None

    def _requeue(self, entries: list[_Entry]) -> None:
        for entry in entries:
            queue = self._queues.get(entry.tx.sender)
            if queue is not None and queue.entries and queue.entries[-1] is entry:
                self._push_tail(entry)

    def _push_tail(self, entry: _Entry) -> None:
        if entry.in_tail_heap:
            return
        entry.in_tail_heap = True
        heapq.heappush(self._tails, (entry.rate, -entry.seq, entry.tx.hash))
        if len(self._tails) > 2 * len(self._queues) + 1024:
            self._rebuild_tails()

    def _rebuild_tails(self) -> None:
        for _, neg_seq, tx_hash in self._tails:
            entry = self._entries.get(tx_hash)
            if entry is not None and entry.seq == -neg_seq:
                entry.in_tail_heap = False
        tails = [queue.entries[-1] for queue in self._queues.values()]
        for entry in tails:
            entry.in_tail_heap = True
        self._tails = [(entry.rate, -entry.seq, entry.tx.hash) for entry in tails]
        heapq.heapify(self._tails)

    # --- bookkeeping -------------------------------------------------------------------------
    def _new_entry(self, tx: Tx, rate: int, height: int, commits: tuple[tuple[_Key, int], ...]) -> _Entry:
        self._seq += 1
        entry = _Entry(tx, self._seq, rate, height, commits, len(tx.raw))
        self._entries[tx.hash] = entry
        self._bytes += entry.size
        for key, amount in commits:
            self._totals[key] = self._totals.get(key, 0) + amount
            self._claimants.setdefault(key, {})[tx.hash] = None
        self._by_height.setdefault(height, {})[tx.hash] = None
        return entry

    def _append(self, tx: Tx, rate: int, height: int, commits: tuple[tuple[_Key, int], ...]) -> None:
        entry = self._new_entry(tx, rate, height, commits)
        queue = self._queues.setdefault(tx.sender, _Queue())
        queue.entries.append(entry)
        queue.bytes += entry.size
        self._push_tail(entry)

    def _replace(
        self, old: _Entry, tx: Tx, rate: int, height: int, commits: tuple[tuple[_Key, int], ...]
    ) -> None:
        queue = self._queues[tx.sender]
        index = queue.entries.index(old)
        self._forget(old, keep_verified=True)
        queue.bytes -= old.size
        entry = self._new_entry(tx, rate, height, commits)
        queue.entries[index] = entry
        queue.bytes += entry.size
        self._replaced += 1
        if index == len(queue.entries) - 1:
            self._push_tail(entry)

    def _forget(self, entry: _Entry, *, keep_verified: bool) -> None:
        """Remove ``entry`` from every index but its sender's queue."""
        tx_hash = entry.tx.hash
        del self._entries[tx_hash]
        self._bytes -= entry.size
        for key, amount in entry.commits:
            total = self._totals[key] - amount
            claimants = self._claimants[key]
            del claimants[tx_hash]
            if total:
                self._totals[key] = total
            else:
                del self._totals[key]
                del self._claimants[key]
        bucket = self._by_height[entry.height]
        del bucket[tx_hash]
        if not bucket:
            del self._by_height[entry.height]
        if keep_verified:
            self._recent[tx_hash] = None
            self._recent.move_to_end(tx_hash)
            while len(self._recent) > self.settings.verified_keep:
                self._recent.popitem(last=False)

    def _drop_from(self, entry: _Entry, *, keep_verified: bool) -> int:
        """Drop ``entry`` and every later transaction of its sender, last first. Returns how many."""
        sender = entry.tx.sender
        queue = self._queues[sender]
        index = queue.entries.index(entry)
        dropped = queue.entries[index:]
        for gone in reversed(dropped):
            self._forget(gone, keep_verified=keep_verified)
            queue.bytes -= gone.size
        del queue.entries[index:]
        if queue.entries:
            self._push_tail(queue.entries[-1])
        else:
            del self._queues[sender]
        return len(dropped)

    def _drop_committed_nonces(
        self, sender: bytes, queue: _Queue, committed: int, included: Set[bytes]
    ) -> int:
        """Forget the sender's transactions at or below its committed nonce. Returns how many."""
        stale = committed - queue.entries[0].tx.nonce + 1
        if stale <= 0:
            return 0
        gone = queue.entries[:stale]
        for entry in gone:
            # Ours made it into a block: its signature is not needed again. A conflicting one that
            # lost its nonce to another transaction will not be in any block either.
            self._forget(entry, keep_verified=False)
            queue.bytes -= entry.size
            if entry.tx.hash not in included:
                self._conflicted += 1
        del queue.entries[:stale]
        if not queue.entries:
            del self._queues[sender]
        return len(gone)

    def discard(self, tx_hash: bytes) -> bool:
        """Drop a waiting transaction (its sender found it can no longer apply), with the
        sender's later ones, which could not apply without it. False if it is not waiting."""
        entry = self._entries.get(tx_hash)
        if entry is None:
            return False
        self._drop_from(entry, keep_verified=True)
        return True

    # --- blocks ------------------------------------------------------------------------------
    def reap(self, max_txs: int) -> list[Tx]:
        """Up to ``max_txs`` transactions for a block, best fee per byte first: the senders' next
        transactions merged by rate (ties by arrival), each sender's in nonce order. Deterministic
        for a given pool."""
        heap = [
            (-queue.entries[0].rate, queue.entries[0].seq, sender) for sender, queue in self._queues.items()
        ]
        heapq.heapify(heap)
        taken: dict[bytes, int] = {}
        out: list[Tx] = []
        while heap and len(out) < max_txs:
            _, _, sender = heapq.heappop(heap)
            entries = self._queues[sender].entries
            index = taken.get(sender, 0)
            out.append(entries[index].tx)
            index += 1
            if index < len(entries):
                taken[sender] = index
                following = entries[index]
                heapq.heappush(heap, (-following.rate, following.seq, sender))
        return out

    def remove_committed(
        self, state: LedgerState, included: set[bytes] | None = None, block_time_ms: int | None = None
    ) -> int:
        """After a commit (``state`` is the new committed state, ``included`` the block's
        transaction hashes, used only to count conflicts): drop what is included or made stale by
        the new nonces (another node's transaction took the nonce), what waited
        longer than ``expiry_blocks`` (with its sender's later ones), and, newest first, what its
        account can no longer pay. Returns how many were dropped. ``included``'s size is also what
        the block carried, for admission control's block's worth."""
        chosen = included if included is not None else _NOTHING
        if included is not None:
            self._carried.append(len(included))
            if block_time_ms is not None:
                self._carried_at.append(block_time_ms)
            else:
                self._carried_at.clear()
        dropped = 0
        for sender in list(self._queues):
            dropped += self._drop_committed_nonces(
                sender, self._queues[sender], state.account(sender).nonce, chosen
            )
        dropped += self._expire(state.height)
        dropped += self._drop_unpayable(state)
        return dropped

    def _expire(self, height: int) -> int:
        cutoff = height - self.settings.expiry_blocks
        dropped = 0
        for admitted in sorted(h for h in self._by_height if h < cutoff):
            while admitted in self._by_height:
                oldest = next(iter(self._by_height[admitted]))
                count = self._drop_from(self._entries[oldest], keep_verified=True)
                self._expired += count
                dropped += count
        return dropped

    def _drop_unpayable(self, state: LedgerState) -> int:
        dropped = 0
        for key in list(self._totals):
            held = available(state, *key)
            while self._totals.get(key, 0) > held:
                newest = next(reversed(self._claimants[key]))
                count = self._drop_from(self._entries[newest], keep_verified=True)
                self._unpayable += count
                dropped += count
        return dropped
