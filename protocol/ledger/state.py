"""The ledger state: accounts, validators, unbonding queue, escrows, proposals, pools, totals.

Values in the maps are frozen records replaced on write, so the journal only needs to remember
one old value per key. Running totals (bonded, unbonding, escrowed, ...) make the bonded ratio and
the supply equation O(1); :meth:`LedgerState.check_invariants` recomputes every one of them from the
entries, so a drifting total is caught rather than trusted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgpack

from protocol.ledger.errors import AmountOverflow, InvariantError
from protocol.ledger.journal import JMap, Journal
from protocol.ledger.params import Params
from protocol.units import MAX_AMOUNT


@dataclass(frozen=True, slots=True)
class Account:
    balance: int = 0
    nonce: int = 0


@dataclass(frozen=True, slots=True)
class ValidatorInfo:
    public_key: bytes
    bonded: int
    tombstoned: bool = False


@dataclass(frozen=True, slots=True)
class Validator:
    """A member of the active set, as consensus sees it."""

    address: bytes
    public_key: bytes
    power: int


@dataclass(frozen=True, slots=True)
class Unbonding:
    address: bytes
    amount: int


@dataclass(frozen=True, slots=True)
class Escrow:
    requester_key: bytes
    provider_key: bytes
    requester: bytes
    provider: bytes
    price_per_gpu_second: int
    max_gpu_seconds: int
    max_cost: int
    collateral: int
    deadline_height: int
    opened_height: int
    #: The provider's pending unilateral claim: its receipt's canonical bytes, empty when none.
    claim: bytes = b""
    #: The provider's signature over ``claim`` (kept so any replica can re-verify the claim).
    claim_provider_sig: bytes = b""
    #: Height of the block that recorded the claim; 0 while none is pending.
    claimed_height: int = 0

    @property
    def has_claim(self) -> bool:
        return bool(self.claim)


@dataclass(frozen=True, slots=True)
class Proposal:
    id: int
    proposer: bytes
    param: str
    value: int
    deposit: int
    submit_height: int
    end_height: int
    status: str = "voting"  # then "passed", "rejected", "vetoed" or "no_quorum"
    yes: int = 0
    no: int = 0
    abstain: int = 0
    veto: int = 0


#: Scalar state, all integers. ``fee_pool`` only holds the current block's fees until end-block.
SCALARS = (
    "height",
    "genesis_supply",
    "minted",
    "burned",
    "inflation",
    "community_pool",
    "provider_pool",
    "fee_pool",
    "total_bonded",
    "total_unbonding",
    "total_escrowed",
    "total_deposits",
    "next_proposal_id",
)

EMPTY_ACCOUNT = Account()


class LedgerState:
    """One replica's ledger. Mutated only by ``protocol.ledger.block`` and the module handlers."""

    def __init__(self, chain_id: str, params: Params) -> None:
        self.chain_id = chain_id
        self.journal = Journal()
        j = self.journal
        self.vars: JMap[str, int] = JMap(j, dict.fromkeys(SCALARS, 0))
        self.vars.set("next_proposal_id", 1)
        self._params: JMap[str, Params] = JMap(j, {"params": params})
        self.accounts: JMap[bytes, Account] = JMap(j)
        self.validators: JMap[bytes, ValidatorInfo] = JMap(j)
        #: release height -> entries maturing then
        self.unbonding: JMap[int, tuple[Unbonding, ...]] = JMap(j)
        #: contract hash -> open escrow
        self.escrows: JMap[bytes, Escrow] = JMap(j)
        #: contract hash -> "settled" | "refunded" | "disputed"; closed contracts never reopen
        self.closed_contracts: JMap[bytes, str] = JMap(j)
        self.proposals: JMap[int, Proposal] = JMap(j)
        #: (proposal id, voter address) -> option
        self.votes: JMap[tuple[int, bytes], str] = JMap(j)
        #: provider address -> protocol fees its contracts burned in the current epoch (its
        #: weight in the epoch's provider rewards)
        self.epoch_work: JMap[bytes, int] = JMap(j)

    # --- convenience accessors -------------------------------------------------------------
    @property
    def height(self) -> int:
        return self.vars["height"]

    @property
    def params(self) -> Params:
        return self._params["params"]

    def set_params(self, params: Params) -> None:
        self._params.set("params", params)

    def account(self, address: bytes) -> Account:
        return self.accounts.get(address) or EMPTY_ACCOUNT

    def balance(self, address: bytes) -> int:
        return self.account(address).balance

    def add(self, name: str, delta: int) -> None:
        """Add ``delta`` to a scalar. Raises AmountOverflow past 2^63 - 1 (the issuance cap makes
        that impossible; the check keeps a bug typed)."""
        value = self.vars[name] + delta
        if value > MAX_AMOUNT:
            raise AmountOverflow(f"{name} would exceed {MAX_AMOUNT}")
        self.vars.set(name, value)

    def credit(self, address: bytes, amount: int) -> None:
        """Add ``amount`` to a balance. Raises AmountOverflow past 2^63 - 1 (see :meth:`add`)."""
        account = self.account(address)
        balance = account.balance + amount
        if balance > MAX_AMOUNT:
            raise AmountOverflow(f"a balance would exceed {MAX_AMOUNT} base units")
        self.accounts.set(address, Account(balance, account.nonce))

    def total_supply(self) -> int:
        v = self.vars
        return v["genesis_supply"] + v["minted"] - v["burned"]

    def is_tombstoned(self, address: bytes) -> bool:
        info = self.validators.get(address)
        return info is not None and info.tombstoned

    def validator_set(self) -> tuple[Validator, ...]:
        """The active set: bonded at least the minimum, not tombstoned, the largest
        ``max_validators`` by stake (ties by address), returned sorted by address."""
        params = self.params
        candidates = [
            (info.bonded, address, info.public_key)
            for address, info in self.validators.sorted_items()
            if not info.tombstoned and info.bonded >= params.min_validator_stake
        ]
        candidates.sort(key=lambda c: (-c[0], c[1]))
        chosen = sorted(candidates[: params.max_validators], key=lambda c: c[1])
        return tuple(Validator(address, public_key, power) for power, address, public_key in chosen)

    # --- replicas and hashing --------------------------------------------------------------
    def copy(self) -> LedgerState:
        """An independent replica (for speculative execution and simulators)."""
        if self.journal.active:
            raise RuntimeError("cannot copy a state in the middle of an atomic update")
        other = LedgerState.__new__(LedgerState)
        other.chain_id = self.chain_id
        other.journal = Journal()
        for name in (
            "vars",
            "_params",
            "accounts",
            "validators",
            "unbonding",
            "escrows",
            "closed_contracts",
            "proposals",
            "votes",
            "epoch_work",
        ):
            setattr(other, name, getattr(self, name).clone(other.journal))
        return other

    def state_hash(self) -> bytes:
        """sha256 over every section in key order: identical on every replica at every height."""
        h = hashlib.sha256()
        pack = msgpack.packb

        def section(name: str, rows: list[list[object]]) -> None:
            h.update(pack([name, len(rows)], use_bin_type=True))
            for row in rows:
                h.update(pack(row, use_bin_type=True))

        section("chain", [[self.chain_id]])
        section("vars", [[k, v] for k, v in self.vars.sorted_items()])
        section("params", [[k, v] for k, v in sorted(self.params.to_wire().items())])
        section("accounts", [[a, x.balance, x.nonce] for a, x in self.accounts.sorted_items()])
        section(
            "validators",
            [[a, x.public_key, x.bonded, x.tombstoned] for a, x in self.validators.sorted_items()],
        )
        section(
            "unbonding",
            [[h_, [[u.address, u.amount] for u in us]] for h_, us in self.unbonding.sorted_items()],
        )
        section(
            "escrows",
            [
                [
                    c,
                    e.requester_key,
                    e.provider_key,
                    e.price_per_gpu_second,
                    e.max_gpu_seconds,
                    e.max_cost,
                    e.collateral,
                    e.deadline_height,
                    e.opened_height,
                    e.claim,
                    e.claim_provider_sig,
                    e.claimed_height,
                ]
                for c, e in self.escrows.sorted_items()
            ],
        )
        section("closed", [[c, s] for c, s in self.closed_contracts.sorted_items()])
        section(
            "proposals",
            [
                [i, p.proposer, p.param, p.value, p.deposit, p.submit_height, p.end_height]
                + [p.status, p.yes, p.no, p.abstain, p.veto]
                for i, p in self.proposals.sorted_items()
            ],
        )
        section("votes", [[i, voter, option] for (i, voter), option in self.votes.sorted_items()])
        section("epoch_work", [[a, s] for a, s in self.epoch_work.sorted_items()])
        return h.digest()

    # --- invariants ------------------------------------------------------------------------
    def check_invariants(self) -> None:
        """Raise :class:`InvariantError` unless every total matches its entries and
        ``balances + bonded + unbonding + escrowed + deposits + pools == genesis + minted - burned``."""
        v = self.vars
        balances = 0
        for account in self.accounts.values():
            if account.balance < 0 or account.nonce < 0:
                raise InvariantError("negative balance or nonce")
            balances += account.balance
        bonded = sum(info.bonded for info in self.validators.values())
        unbonding = sum(u.amount for entries in self.unbonding.values() for u in entries)
        escrowed = 0
        for escrow in self.escrows.values():
            escrowed += escrow.max_cost + escrow.collateral
            if escrow.has_claim:
                if not escrow.opened_height <= escrow.claimed_height <= v["height"]:
                    raise InvariantError("an escrow's claim is dated outside its open life")
            elif escrow.claim_provider_sig or escrow.claimed_height:
                raise InvariantError("an escrow without a claim carries claim fields")
        deposits = sum(p.deposit for p in self.proposals.values() if p.status == "voting")
        for name, actual in (
            ("total_bonded", bonded),
            ("total_unbonding", unbonding),
            ("total_escrowed", escrowed),
            ("total_deposits", deposits),
        ):
            if v[name] != actual:
                raise InvariantError(f"{name} is {v[name]} but its entries sum to {actual}")
        for name in SCALARS:
            if v[name] < 0:
                raise InvariantError(f"{name} is negative: {v[name]}")
        held = balances + bonded + unbonding + escrowed + deposits
        held += v["community_pool"] + v["provider_pool"] + v["fee_pool"]
        if held != self.total_supply():
            raise InvariantError(
                f"supply mismatch: held {held} != genesis {v['genesis_supply']} + minted "
                f"{v['minted']} - burned {v['burned']}"
            )
