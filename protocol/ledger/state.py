"""The ledger state: accounts, validators, unbonding queue, escrows, proposals, pools, totals.

Values in the maps are frozen records replaced on write, so the journal only needs to remember
one old value per key. Running totals (bonded, unbonding, escrowed, ...) make the bonded ratio and
the supply equation O(1); :meth:`LedgerState.check_invariants` recomputes every one of them from the
entries, so a drifting total is caught rather than trusted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgpack

from protocol.crypto import address_of
from protocol.ledger import liquidity_state
from protocol.ledger.errors import AmountOverflow, InvariantError
from protocol.ledger.journal import JMap, Journal
from protocol.ledger.liquidity_state import Asset, MiningRelease, MiningStake, Pool, StandingOffer, Take
from protocol.ledger.params import Params
from protocol.units import MAX_AMOUNT


@dataclass(frozen=True, slots=True)
class Account:
    balance: int = 0
    nonce: int = 0


@dataclass(frozen=True, slots=True)
class ValidatorInfo:
    """A registered validator, keyed by its operator's address (Cosmos x/staking's Validator).

    The operator's account key signs its transactions; ``consensus_key`` signs its votes, and
    consensus knows it by the address of that key. ``tokens`` is everything bonded to it (its
    operator's self-delegation included), ``shares`` what its delegators' shares add up to: a
    share is worth ``tokens / shares``, so rewards and slashes reach every delegator pro rata.
    """

    consensus_key: bytes
    tokens: int
    shares: int
    commission: int = 0
    max_commission: int = 0
    max_commission_change: int = 0
    #: Height of the last commission change (0: never changed since creation at genesis).
    commission_height: int = 0
    moniker: str = ""
    #: Block rewards earned and not yet split into commission and delegators' part (see
    #: ``protocol.ledger.distribution``).
    rewards: int = 0
    jailed: bool = False
    #: The first height at which ``unjail`` applies (meaningful while jailed).
    jailed_until: int = 0
    tombstoned: bool = False

    @property
    def bonded(self) -> int:
        """What is bonded to this validator: its tokens."""
        return self.tokens

    @property
    def public_key(self) -> bytes:
        """The key consensus verifies this validator's votes with."""
        return self.consensus_key


@dataclass(frozen=True, slots=True)
class ActiveValidator:
    """A member of the active set, as consensus sees it: by consensus address and key."""

    address: bytes
    public_key: bytes
    power: int


@dataclass(frozen=True, slots=True)
class Unbonding:
    """Tokens leaving ``validator`` for ``delegator``; slashable for the validator's infractions
    from ``creation_height - VALIDATOR_SET_DELAY`` on, until released."""

    delegator: bytes
    validator: bytes
    creation_height: int
    amount: int

    @property
    def address(self) -> bytes:
        """Who receives the tokens when they are released."""
        return self.delegator


@dataclass(frozen=True, slots=True)
class Redelegation:
    """Shares moved from ``source`` to ``destination`` at once; until ``completion`` (the key of
    its queue) the tokens stay slashable for the source's infractions (Cosmos x/staking)."""

    delegator: bytes
    source: bytes
    destination: bytes
    creation_height: int
    #: Tokens moved (what a slash of the source cuts a fraction of).
    amount: int


@dataclass(frozen=True, slots=True)
class SigningInfo:
    """Liveness of one validator (Cosmos x/slashing): the heights it missed in the current
    window, counted from ``start_height`` (when it was created or last unjailed)."""

    start_height: int
    missed: tuple[int, ...] = ()


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
    #: The account that funded ``max_cost`` and gets back what is not paid (the contract's
    #: payer: a wallet paying through a grant, or the requester itself).
    payer: bytes = b""

    @property
    def funder(self) -> bytes:
        """Who gets the requester's side of the deposit back: the payer, else the requester."""
        return self.payer or self.requester

    @property
    def has_claim(self) -> bool:
        return bool(self.claim)


@dataclass(frozen=True, slots=True)
class GrantInfo:
    """One grant as the ledger keeps it, under its granter's address."""

    grantee: bytes
    spend_limit: int
    #: What escrows opened under this grant have locked so far.
    spent: int
    #: The last height at which the grant may be used.
    expiry_height: int
    kinds: tuple[str, ...]

    @property
    def remaining(self) -> int:
        return self.spend_limit - self.spent

    def expired_at(self, height: int) -> bool:
        return height > self.expiry_height


@dataclass(frozen=True, slots=True)
class GovProposal:
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
    "total_rewards",
    "total_unbonding",
    "total_escrowed",
    "total_deposits",
    "next_proposal_id",
    # DCT the liquidity mining programme earned this epoch (protocol.ledger.mining)
    "mining_pool",
    # DCT set aside this epoch for standing offers (protocol.ledger.availability)
    "availability_pool",
)

EMPTY_ACCOUNT = Account()
#: Every journaled map of a state, in the order :meth:`LedgerState.copy` clones them.
_MAPS = (
    "vars",
    "_params",
    "accounts",
    "validators",
    "delegations",
    "unbonding",
    "redelegations",
    "signing",
    "consensus_index",
    "delegated_to",
    "redelegating_into",
    "escrows",
    "closed_contracts",
    "proposals",
    "votes",
    "epoch_work",
    "grants",
    # Liquidity (protocol.ledger.liquidity_state)
    "assets",
    "holdings",
    "pools",
    "mining",
    "mining_unbonding",
    "offers",
    "takes",
)


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
        #: operator address -> validator
        self.validators: JMap[bytes, ValidatorInfo] = JMap(j)
        #: (delegator, operator) -> shares
        self.delegations: JMap[tuple[bytes, bytes], int] = JMap(j)
        #: release height -> entries maturing then
        self.unbonding: JMap[int, tuple[Unbonding, ...]] = JMap(j)
        #: completion height -> redelegations that stop being slashable for their source then
        self.redelegations: JMap[int, tuple[Redelegation, ...]] = JMap(j)
        #: operator address -> liveness record
        self.signing: JMap[bytes, SigningInfo] = JMap(j)
        # Indexes, rebuilt from the entries above (not hashed, not in snapshots):
        #: consensus address -> operator address
        self.consensus_index: JMap[bytes, bytes] = JMap(j)
        #: delegator -> operators it holds shares of, sorted
        self.delegated_to: JMap[bytes, tuple[bytes, ...]] = JMap(j)
        #: (delegator, destination) -> the latest completion height of its redelegations there
        self.redelegating_into: JMap[tuple[bytes, bytes], int] = JMap(j)
        #: contract hash -> open escrow
        self.escrows: JMap[bytes, Escrow] = JMap(j)
        #: contract hash -> "settled" | "refunded" | "disputed"; closed contracts never reopen
        self.closed_contracts: JMap[bytes, str] = JMap(j)
        self.proposals: JMap[int, GovProposal] = JMap(j)
        #: (proposal id, voter address) -> option
        self.votes: JMap[tuple[int, bytes], str] = JMap(j)
        #: provider address -> protocol fees its contracts burned in the current epoch (its
        #: weight in the epoch's provider rewards)
        self.epoch_work: JMap[bytes, int] = JMap(j)
        #: granter address -> its grants, sorted by grantee (see ``protocol.ledger.authz``)
        self.grants: JMap[bytes, tuple[GrantInfo, ...]] = JMap(j)
        # Liquidity (see protocol.ledger.liquidity_state):
        #: symbol -> registered or proposed asset
        self.assets: JMap[str, Asset] = JMap(j)
        #: (address, denomination) -> amount of a registered asset or of pool shares
        self.holdings: JMap[tuple[bytes, str], int] = JMap(j)
        #: asset symbol -> the DCT/asset pool
        self.pools: JMap[str, Pool] = JMap(j)
        #: (address, symbol) -> pool shares bonded to liquidity mining
        self.mining: JMap[tuple[bytes, str], MiningStake] = JMap(j)
        #: release height -> shares leaving the mining programme then
        self.mining_unbonding: JMap[int, tuple[MiningRelease, ...]] = JMap(j)
        #: offer id (hash of its offer_stand) -> standing offer
        self.offers: JMap[bytes, StandingOffer] = JMap(j)
        #: offer id -> the take waiting for the provider's acceptance (one at a time)
        self.takes: JMap[bytes, Take] = JMap(j)

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

    def operator_of(self, consensus_address: bytes) -> bytes | None:
        """The operator address of the validator that votes with ``consensus_address``."""
        return self.consensus_index.get(consensus_address)

    def is_tombstoned(self, consensus_address: bytes) -> bool:
        """Whether the validator voting as ``consensus_address`` is tombstoned (already punished
        for double-signing); consensus asks this before it accepts evidence."""
        operator = self.consensus_index.get(consensus_address)
        info = self.validators.get(operator) if operator is not None else None
        return info is not None and info.tombstoned

    def validator_set(self, params: Params | None = None) -> tuple[ActiveValidator, ...]:
        """The active set: not jailed, not tombstoned, at least ``min_validator_stake`` bonded,
        the largest ``max_validators`` by tokens (ties by consensus address); returned sorted by
        consensus address, which is how consensus knows its members. ``params``: what the set
        would be under other parameters (a governance change being checked)."""
        params = params or self.params
        candidates = [
            (info.tokens, address_of(info.consensus_key), info.consensus_key)
            for _, info in self.validators.sorted_items()
            if not info.jailed and not info.tombstoned and info.tokens >= params.min_validator_stake
        ]
        candidates.sort(key=lambda c: (-c[0], c[1]))
        chosen = sorted(candidates[: params.max_validators], key=lambda c: c[1])
        return tuple(ActiveValidator(address, key, power) for power, address, key in chosen)

    # --- replicas and hashing --------------------------------------------------------------
    def copy(self) -> LedgerState:
        """An independent replica (for speculative execution and simulators)."""
        if self.journal.active:
            raise RuntimeError("cannot copy a state in the middle of an atomic update")
        other = LedgerState.__new__(LedgerState)
        other.chain_id = self.chain_id
        other.journal = Journal()
        for name in _MAPS:
            setattr(other, name, getattr(self, name).clone(other.journal))
        return other

    def sections(self) -> list[tuple[str, list[list[Any]]]]:
        """The whole state as named lists of rows, in key order (indexes left out: they follow
        from the rows). What :meth:`state_hash` hashes and snapshots store."""
        return [
            ("vars", [[k, v] for k, v in self.vars.sorted_items()]),
            ("accounts", [[a, x.balance, x.nonce] for a, x in self.accounts.sorted_items()]),
            (
                "validators",
                [
                    [a, x.consensus_key, x.tokens, x.shares, x.commission, x.max_commission]
                    + [x.max_commission_change, x.commission_height, x.moniker, x.rewards]
                    + [x.jailed, x.jailed_until, x.tombstoned]
                    for a, x in self.validators.sorted_items()
                ],
            ),
            ("delegations", [[d, v, shares] for (d, v), shares in self.delegations.sorted_items()]),
            (
                "unbonding",
                [
                    [h, [[u.delegator, u.validator, u.creation_height, u.amount] for u in us]]
                    for h, us in self.unbonding.sorted_items()
                ],
            ),
            (
                "redelegations",
                [
                    [h, [[r.delegator, r.source, r.destination, r.creation_height, r.amount] for r in rs]]
                    for h, rs in self.redelegations.sorted_items()
                ],
            ),
            ("signing", [[a, x.start_height, list(x.missed)] for a, x in self.signing.sorted_items()]),
            (
                "escrows",
                [
                    [c, e.requester_key, e.provider_key, e.requester, e.provider]
                    + [e.price_per_gpu_second, e.max_gpu_seconds, e.max_cost, e.collateral]
                    + [e.deadline_height, e.opened_height, e.claim, e.claim_provider_sig, e.claimed_height]
                    + [e.payer]
                    for c, e in self.escrows.sorted_items()
                ],
            ),
            ("closed", [[c, outcome] for c, outcome in self.closed_contracts.sorted_items()]),
            (
                "proposals",
                [
                    [i, p.proposer, p.param, p.value, p.deposit, p.submit_height, p.end_height]
                    + [p.status, p.yes, p.no, p.abstain, p.veto]
                    for i, p in self.proposals.sorted_items()
                ],
            ),
            ("votes", [[i, voter, option] for (i, voter), option in self.votes.sorted_items()]),
            ("epoch_work", [[a, w] for a, w in self.epoch_work.sorted_items()]),
            (
                "grants",
                [
                    [
                        granter,
                        [[g.grantee, g.spend_limit, g.spent, g.expiry_height, list(g.kinds)] for g in gs],
                    ]
                    for granter, gs in self.grants.sorted_items()
                ],
            ),
            *liquidity_state.sections(self),
        ]

    def state_hash(self) -> bytes:
        """sha256 over every section in key order: identical on every replica at every height."""
        h = hashlib.sha256()
        pack = msgpack.packb
        h.update(pack(["chain", 1], use_bin_type=True))
        h.update(pack([self.chain_id], use_bin_type=True))
        h.update(pack(["params", len(self.params.to_wire())], use_bin_type=True))
        for item in sorted(self.params.to_wire().items()):
            h.update(pack(list(item), use_bin_type=True))
        for name, rows in self.sections():
            h.update(pack([name, len(rows)], use_bin_type=True))
            for row in rows:
                h.update(pack(row, use_bin_type=True))
        return h.digest()

    # --- invariants ------------------------------------------------------------------------
    def check_invariants(self) -> None:
        """Raise :class:`InvariantError` unless every total matches its entries, the indexes
        match what they index, and ``balances + bonded + rewards + unbonding + escrowed + deposits
        + pools == genesis + minted - burned``."""
        v = self.vars
        balances = 0
        for account in self.accounts.values():
            if account.balance < 0 or account.nonce < 0:
                raise InvariantError("negative balance or nonce")
            balances += account.balance
        bonded, rewards = self._check_staking()
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
        self._check_grants()
        for name, actual in (
            ("total_bonded", bonded),
            ("total_rewards", rewards),
            ("total_unbonding", unbonding),
            ("total_escrowed", escrowed),
            ("total_deposits", deposits),
        ):
            if v[name] != actual:
                raise InvariantError(f"{name} is {v[name]} but its entries sum to {actual}")
        for name in SCALARS:
            if not 0 <= v[name] <= MAX_AMOUNT:
                raise InvariantError(f"{name} is out of range: {v[name]}")
        held = balances + bonded + rewards + unbonding + escrowed + deposits
        held += v["community_pool"] + v["provider_pool"] + v["fee_pool"]
        held += liquidity_state.check_invariants(self).dct
        if held != self.total_supply():
            raise InvariantError(
                f"supply mismatch: held {held} != genesis {v['genesis_supply']} + minted "
                f"{v['minted']} - burned {v['burned']}"
            )

    def _check_grants(self) -> None:
        """Grants hold no money (they only authorize), so they add nothing to the supply; each is
        within its own bounds and a granter's are sorted, unique and few."""
        from protocol.ledger.authz import MAX_GRANTS_PER_GRANTER  # authz imports this module
        from protocol.ledger.tx import GRANTABLE_KINDS

        for granter, grants in self.grants.sorted_items():
            grantees = [g.grantee for g in grants]
            if not grants or len(grants) > MAX_GRANTS_PER_GRANTER or grantees != sorted(set(grantees)):
                raise InvariantError("a granter's grants are empty, too many, unsorted or repeated")
            for g in grants:
                if g.grantee == granter or not 0 <= g.spent <= g.spend_limit <= MAX_AMOUNT:
                    raise InvariantError("a grant to its granter, or spent beyond its limit")
                if not g.kinds or any(kind not in GRANTABLE_KINDS for kind in g.kinds):
                    raise InvariantError("a grant of a kind that cannot be granted")

    def _check_staking(self) -> tuple[int, int]:
        """Shares and indexes against the entries; returns (bonded tokens, pending rewards)."""
        shares: dict[bytes, int] = {}
        held_by: dict[bytes, list[bytes]] = {}
        for (delegator, operator), amount in self.delegations.sorted_items():
            if amount <= 0 or operator not in self.validators:
                raise InvariantError("a delegation without shares or without its validator")
            shares[operator] = shares.get(operator, 0) + amount
            held_by.setdefault(delegator, []).append(operator)
        if {d: tuple(ops) for d, ops in held_by.items()} != dict(self.delegated_to.sorted_items()):
            raise InvariantError("the delegated_to index does not match the delegations")
        bonded = rewards = 0
        consensus: dict[bytes, bytes] = {}
        for operator, info in self.validators.sorted_items():
            if info.shares != shares.get(operator, 0):
                raise InvariantError("a validator's shares differ from its delegations'")
            if info.tokens < 0 or info.rewards < 0 or (info.shares == 0 and info.tokens != 0):
                raise InvariantError("a validator holds tokens nobody has shares of")
            bonded += info.tokens
            rewards += info.rewards
            consensus[address_of(info.consensus_key)] = operator
        if len(consensus) != len(self.validators) or consensus != dict(self.consensus_index.sorted_items()):
            raise InvariantError("the consensus index does not match the validators")
        into: dict[tuple[bytes, bytes], int] = {}
        for height, entries in self.redelegations.sorted_items():
            for entry in entries:
                into[(entry.delegator, entry.destination)] = height
        if into != dict(self.redelegating_into.sorted_items()):
            raise InvariantError("the redelegating_into index does not match the redelegations")
        return bonded, rewards
