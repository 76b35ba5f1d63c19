"""The checker's own model of the ledger: what each committed block must do to the money.

The ledger's own invariants compare its running totals with its entries; a rule that is simply
wrong (a fee never charged, an escrow paid out twice, a nonce not checked) keeps them consistent
and passes. So the checker keeps an independent account, written from the rules as the docs
state them, never by calling the ledger's handlers:

* every nonce, and every transaction's ante (chain, nonce, minimum fee, signature): a committed
  transaction that fails one is reported;
* the exact balance of every *plain* account (one that never bonds, delegates or operates a
  validator: the simulator's clients), through transfers, escrows (opened, settled by outcome,
  claimed, finalized, disputed, refunded), deposits and provider rewards; an overdraft is
  reported;
* the escrows' lives: no escrow opened twice, paid twice, or paid after it closed;
* payers and grants: an escrow naming a payer is funded by the payer (and, opened by the requester,
  its fee too) only within the payer's live grant to the requester, never beyond the grant's cap;
  what the escrow returns goes to the payer;
* money: the burns it can compute (the fee share, protocol fees, slashed collateral, disputed
  pay) must be burned, anything burned beyond them needs a slash in that block (double-sign
  evidence or a downtime jailing), and the replica's holdings, summed from its entries, must
  equal genesis + minted - burned;
* unbonding: every entry is released exactly ``unbonding_period`` blocks after it was created;
* slashing: a validator accused by committed evidence is tombstoned.

Bonding, delegation and reward distribution are the ledger's richest rules; the model does not
redo them. Accounts that take part in them are followed through their nonces and the supply
equation, and what a block minted and paid in rewards is taken as the replica reports it, then
checked for plausibility (issuance under the schedule's ceiling, validator rewards summing to
their pool less dust and going to active validators, provider rewards only at an epoch's end).
Governance proposals are opened and voted on but never tallied within a run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from protocol.consensus.messages import Block
from protocol.contracts import OUTCOME_PROVIDER_ERROR, UsageReceipt
from protocol.crypto import verify
from protocol.encoding import sign_bytes
from protocol.ledger.authz import MAX_GRANTS_PER_GRANTER
from protocol.ledger.errors import LedgerError
from protocol.ledger.genesis import Genesis
from protocol.ledger.params import Params
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import (
    MAX_GRANT_BLOCKS,
    TX_DOMAIN,
    EscrowClaim,
    EscrowDispute,
    EscrowFinalize,
    GovPropose,
    GovVote,
    Grant,
    GrantRevoke,
    OpenEscrow,
    Refund,
    Settle,
    Transfer,
    Tx,
    decode_tx,
)
from protocol.units import DEC


def _ratio(amount: int, ratio: int) -> int:
    return amount * ratio // DEC


class Refused(Exception):
    """A committed transaction the rules do not accept (the model's own signal)."""


@dataclass
class _Escrow:
    requester: bytes
    provider: bytes
    requester_key: bytes
    provider_key: bytes
    price: int
    max_gpu_seconds: int
    max_cost: int
    collateral: int
    deadline: int
    #: The account that funded the maximum cost and gets back what is not paid.
    payer: bytes = b""
    #: (the claimed receipt, height of the claim), or None.
    claim: tuple[UsageReceipt, int] | None = None


@dataclass
class _Grant:
    limit: int
    spent: int
    expiry: int
    kinds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reported:
    """What a replica reported executing a block did, beyond the model's own reach."""

    minted: int
    validator_rewards: tuple[tuple[bytes, int], ...]
    provider_rewards: tuple[tuple[bytes, int], ...]
    burned: int = 0


class LedgerModel:
    """Nonces, plain balances, escrows and the money's flow, block by block."""

    def __init__(self, genesis: Genesis) -> None:
        self.chain_id = genesis.chain_id
        self.params: Params = genesis.params
        self.height = 0
        self.balances: dict[bytes, int] = {a.address: a.balance for a in genesis.accounts}
        self.nonces: dict[bytes, int] = {}
        #: Accounts that bond, delegate or operate a validator: their balances are the ledger's.
        self.staking: set[bytes] = {v.address for v in genesis.validators}
        self.escrows: dict[bytes, _Escrow] = {}
        self.closed: set[bytes] = set()
        #: (granter, grantee) -> the grant, as the rules of ``grant``/``grant_revoke`` leave it.
        self.grants: dict[tuple[bytes, bytes], _Grant] = {}
        self.deposits: dict[int, int] = {}
        self.proposal_ends: dict[int, int] = {}
        self.next_proposal = 1
        self.genesis_supply = sum(a.balance for a in genesis.accounts) + sum(
            v.stake for v in genesis.validators
        )
        self.minted = 0
        #: Burned as the replica reports it, and the part of it the model computed itself.
        self.burned = 0
        self.burned_by_rules = 0
        #: Consensus addresses accused by committed evidence, with the height it was committed.
        self.slashed_at: dict[bytes, int] = {}
        #: Blocks that burned more than the model's burns: allowed only with a slash in them.
        self.unexplained_burn: dict[int, int] = {}
        self.evidence_heights: set[int] = set()
        #: Committed transactions by kind (what the runs exercised).
        self.applied: Counter[str] = Counter()

    def supply(self) -> int:
        return self.genesis_supply + self.minted - self.burned

    # --- one block -----------------------------------------------------------------------------
    def apply(self, block: Block, reported: Reported, active: frozenset[bytes] = frozenset()) -> list[str]:
        """Apply ``block`` (already decided); returns what the rules refuse in it. ``active``:
        the operators of the validators active when it ended (who may earn its rewards)."""
        height = block.height
        if height != self.height + 1:
            return [f"model is at height {self.height}, block {height} does not follow"]
        self.height = height
        for evidence in block.evidence:
            self.slashed_at.setdefault(evidence.validator, height)
            self.evidence_heights.add(height)
        burned_before = self.burned_by_rules
        fees = 0
        for index, raw in enumerate(block.txs):
            try:
                fees += self._apply_tx(raw, height)
            except Refused as exc:
                return [f"height {height} tx {index}: committed though the rules refuse it: {exc}"]
        problems = self._end_block(height, fees, reported, active)
        self.burned += reported.burned
        extra = reported.burned - (self.burned_by_rules - burned_before)
        if extra < 0:
            problems.append(
                f"height {height}: burned {reported.burned}, less than the {self.burned_by_rules - burned_before} the rules burn"
            )
        elif extra:
            self.unexplained_burn[height] = extra
        return problems

    def _end_block(self, height: int, fees: int, reported: Reported, active: frozenset[bytes]) -> list[str]:
        problems = []
        params = self.params
        fee_burn = _ratio(fees, params.fee_burn_share)
        self.burned_by_rules += fee_burn
        supply = self.genesis_supply + self.minted - self.burned - fee_burn
        ceiling = supply * params.inflation_max // DEC // params.blocks_per_year
        if not 0 <= reported.minted <= ceiling:
            problems.append(
                f"height {height}: minted {reported.minted}, the schedule allows at most {ceiling}"
            )
        self.minted += reported.minted
        pool = _ratio(reported.minted, params.validator_reward_share) + fees - fee_burn
        paid = sum(amount for _, amount in reported.validator_rewards)
        if not pool - len(reported.validator_rewards) <= paid <= pool:
            problems.append(f"height {height}: validators earned {paid}, the rules give {pool} (less dust)")
        for operator, amount in reported.validator_rewards:
            if amount < 0 or (active and operator not in active):
                problems.append(
                    f"height {height}: reward {amount} to {operator.hex()[:8]}, not an active validator"
                )
        for address, amount in reported.provider_rewards:
            if height % params.epoch_length != 0 or amount < 0:
                problems.append(f"height {height}: provider reward {amount} outside an epoch's end")
            self._credit(address, amount)
        return problems

    # --- transactions --------------------------------------------------------------------------
    def _credit(self, address: bytes, amount: int) -> None:
        if address not in self.staking:
            self.balances[address] = self.balances.get(address, 0) + amount

    def _debit(self, address: bytes, amount: int, what: str) -> None:
        if address in self.staking:
            return
        balance = self.balances.get(address, 0)
        if amount > balance:
            raise Refused(f"{what}: {amount} from a balance of {balance}")
        self.balances[address] = balance - amount

    def _apply_tx(self, raw: bytes, height: int) -> int:
        """Apply one committed transaction; returns its fee. Raises Refused."""
        try:
            tx = decode_tx(raw)
        except LedgerError as exc:
            raise Refused(f"undecodable: {exc.message}") from None
        if tx.chain_id != self.chain_id:
            raise Refused(f"for chain {tx.chain_id!r}")
        nonce = self.nonces.get(tx.sender, 0)
        if tx.nonce != nonce + 1:
            raise Refused(f"nonce {tx.nonce}, the account's next is {nonce + 1}")
        if tx.fee < self.params.min_fee:
            raise Refused(f"fee {tx.fee} below the minimum {self.params.min_fee}")
        if not verify(tx.public_key, tx.signature, sign_bytes(tx.chain_id, TX_DOMAIN, tx.body)):
            raise Refused("bad signature")
        self._debit(self._fee_payer(tx), tx.fee, "fee")
        self.nonces[tx.sender] = tx.nonce
        self._apply_msg(tx, height)
        self.applied[tx.msg.KIND] += 1
        return tx.fee

    def _apply_msg(self, tx: Tx, height: int) -> None:
        msg = tx.msg
        if isinstance(msg, Transfer):
            self._debit(tx.sender, msg.amount, "transfer")
            self._credit(msg.to, msg.amount)
        elif isinstance(msg, OpenEscrow):
            self._open_escrow(tx, msg, height)
        elif isinstance(msg, Settle):
            receipt = msg.receipt
            escrow = self._escrow(receipt.chain_id, receipt.contract_hash)
            if tx.sender not in (escrow.requester, escrow.provider):
                raise Refused("settle by neither party")
            if not (
                receipt.verify(escrow.provider_key, msg.provider_sig)
                and receipt.verify(escrow.requester_key, msg.requester_sig)
            ):
                raise Refused("settle without both parties' receipt signatures")
            self._pay_out(receipt.contract_hash, escrow, receipt)
        elif isinstance(msg, EscrowClaim):
            self._claim(tx, msg, height)
        elif isinstance(msg, EscrowFinalize | EscrowDispute | Refund):
            self._close_unilaterally(tx, msg, height)
        elif isinstance(msg, GovPropose):
            try:
                self.params.with_value(msg.param, msg.value)
            except LedgerError as exc:
                raise Refused(f"proposal of an invalid parameter: {exc.message}") from None
            if msg.deposit < self.params.gov_min_deposit:
                raise Refused("proposal deposit below the minimum")
            self._debit(tx.sender, msg.deposit, "deposit")
            self.deposits[self.next_proposal] = msg.deposit
            self.proposal_ends[self.next_proposal] = height + self.params.gov_voting_period
            self.next_proposal += 1
        elif isinstance(msg, GovVote):
            end = self.proposal_ends.get(msg.proposal_id)
            if end is None or height > end:
                raise Refused(f"vote on proposal {msg.proposal_id}, which is not open")
        elif isinstance(msg, Grant):
            if msg.grantee == tx.sender or not height < msg.expiry_height <= height + MAX_GRANT_BLOCKS:
                raise Refused("a grant to oneself, or with an expiry out of range")
            live = [
                g
                for (granter, grantee), g in self.grants.items()
                if granter == tx.sender and grantee != msg.grantee and height <= g.expiry
            ]
            if len(live) >= MAX_GRANTS_PER_GRANTER:
                raise Refused("more live grants than a granter may hold")
            self.grants[(tx.sender, msg.grantee)] = _Grant(msg.spend_limit, 0, msg.expiry_height, msg.kinds)
        elif isinstance(msg, GrantRevoke):
            if self.grants.pop((tx.sender, msg.grantee), None) is None:
                raise Refused("revocation of a grant never given")
        else:
            # Bonding, delegating, operating a validator: the ledger's (see the docstring).
            self.staking.add(tx.sender)
            self.balances.pop(tx.sender, None)

    @staticmethod
    def _fee_payer(tx: Tx) -> bytes:
        """The payer of a contract whose requester opens its escrow under a grant pays the fee."""
        msg = tx.msg
        if isinstance(msg, OpenEscrow):
            terms = msg.contract.terms
            if terms.payer and tx.sender == terms.requester_address:
                return terms.payer
        return tx.sender

    def _open_escrow(self, tx: Tx, msg: OpenEscrow, height: int) -> None:
        terms = msg.contract.terms
        if terms.chain_id != self.chain_id:
            raise Refused("contract for another chain")
        payer = terms.payer or terms.requester_address
        if tx.sender not in (payer, terms.requester_address):
            raise Refused("escrow opened by neither the requester nor the payer")
        if terms.deadline_height <= height:
            raise Refused("contract already past its deadline")
        if terms.price_per_gpu_second < 1:
            raise Refused("a free contract")
        contract_hash = terms.contract_hash()
        if contract_hash in self.escrows or contract_hash in self.closed:
            raise Refused("contract escrowed twice")
        if not msg.contract.is_fully_signed():
            raise Refused("contract without both signatures")
        grant = None
        if tx.sender != payer:
            grant = self.grants.get((payer, tx.sender))
            if grant is None or height > grant.expiry or OpenEscrow.KIND not in grant.kinds:
                raise Refused("escrow on a payer's account without its live grant")
            if grant.spent + terms.max_cost + tx.fee > grant.limit:
                raise Refused("escrow beyond what the payer's grant has left")
        self._debit(payer, terms.max_cost, "escrow")
        self._debit(terms.provider_address, terms.collateral, "collateral")
        if grant is not None:
            grant.spent += terms.max_cost + tx.fee
        self.escrows[contract_hash] = _Escrow(
            requester=terms.requester_address,
            provider=terms.provider_address,
            requester_key=terms.requester,
            provider_key=terms.provider,
            price=terms.price_per_gpu_second,
            max_gpu_seconds=terms.max_gpu_seconds,
            max_cost=terms.max_cost,
            collateral=terms.collateral,
            deadline=terms.deadline_height,
            payer=payer,
        )

    def _escrow(self, chain_id: str, contract_hash: bytes) -> _Escrow:
        if chain_id != self.chain_id:
            raise Refused("receipt for another chain")
        escrow = self.escrows.get(contract_hash)
        if escrow is None:
            raise Refused("no open escrow (never opened, or already closed)")
        return escrow

    @staticmethod
    def _pay(escrow: _Escrow, receipt: UsageReceipt) -> int:
        """The metered time at the contract's price, rounded up, capped at the maximum cost
        (nothing for a provider error)."""
        if receipt.outcome == OUTCOME_PROVIDER_ERROR:
            return 0
        metered_ms = min(receipt.gpu_ms, escrow.max_gpu_seconds * 1000)
        return min(-(-(metered_ms * escrow.price) // 1000), escrow.max_cost)

    def _close(self, contract_hash: bytes) -> None:
        del self.escrows[contract_hash]
        self.closed.add(contract_hash)

    def _refund(self, contract_hash: bytes, escrow: _Escrow) -> None:
        slash = _ratio(escrow.collateral, self.params.collateral_slash_share)
        self._credit(escrow.payer, escrow.max_cost)
        self._credit(escrow.provider, escrow.collateral - slash)
        self.burned_by_rules += slash
        self._close(contract_hash)

    def _pay_out(self, contract_hash: bytes, escrow: _Escrow, receipt: UsageReceipt) -> None:
        if receipt.outcome == OUTCOME_PROVIDER_ERROR:
            self._refund(contract_hash, escrow)
            return
        pay = self._pay(escrow, receipt)
        protocol_fee = _ratio(pay, self.params.protocol_fee_share)
        self._credit(escrow.provider, pay - protocol_fee + escrow.collateral)
        self._credit(escrow.payer, escrow.max_cost - pay)
        self.burned_by_rules += protocol_fee
        self._close(contract_hash)

    def _claim(self, tx: Tx, msg: EscrowClaim, height: int) -> None:
        receipt = msg.receipt
        escrow = self._escrow(receipt.chain_id, receipt.contract_hash)
        if tx.sender != escrow.provider:
            raise Refused("claim by someone other than the provider")
        if escrow.claim is not None:
            raise Refused("second claim on one escrow")
        if not receipt.verify(escrow.provider_key, msg.provider_sig):
            raise Refused("claim without the provider's receipt signature")
        escrow.claim = (receipt, height)

    def _close_unilaterally(self, tx: Tx, msg: EscrowFinalize | EscrowDispute | Refund, height: int) -> None:
        contract_hash = msg.contract_hash
        escrow = self._escrow(self.chain_id, contract_hash)
        window = self.params.dispute_window_blocks
        if isinstance(msg, EscrowFinalize):
            if tx.sender != escrow.provider or escrow.claim is None:
                raise Refused("finalize without the provider's pending claim")
            if height <= escrow.claim[1] + window:
                raise Refused("finalize inside the dispute window")
            self._pay_out(contract_hash, escrow, escrow.claim[0])
        elif isinstance(msg, EscrowDispute):
            if tx.sender != escrow.requester or escrow.claim is None:
                raise Refused("dispute without the requester's pending claim")
            if height > escrow.claim[1] + window:
                raise Refused("dispute after the dispute window")
            pay = self._pay(escrow, escrow.claim[0])
            slash = _ratio(escrow.collateral, self.params.collateral_slash_share)
            self._credit(escrow.payer, escrow.max_cost - pay)
            self._credit(escrow.provider, escrow.collateral - slash)
            self.burned_by_rules += pay + slash
            self._close(contract_hash)
        else:
            if tx.sender not in (escrow.requester, escrow.payer) or escrow.claim is not None:
                raise Refused("refund by neither the requester nor the payer, or over a pending claim")
            if height <= escrow.deadline:
                raise Refused("refund before the deadline")
            self._refund(contract_hash, escrow)

    # --- comparing with a replica --------------------------------------------------------------
    def differences(self, state: LedgerState) -> list[str]:
        """Where ``state`` (a replica at the model's height) holds other than the model."""
        found = []
        for address, account in state.accounts.sorted_items():
            expected_nonce = self.nonces.get(address, 0)
            if account.nonce != expected_nonce:
                found.append(
                    f"account {address.hex()[:8]} has nonce {account.nonce}, rules say {expected_nonce}"
                )
            if address not in self.staking and account.balance != self.balances.get(address, 0):
                found.append(
                    f"account {address.hex()[:8]} holds {account.balance}, rules say {self.balances.get(address, 0)}"
                )
        for address, balance in sorted(self.balances.items()):
            if balance and address not in state.accounts:
                found.append(f"account {address.hex()[:8]} is missing, rules say it holds {balance}")
        if {c for c, _ in state.escrows.sorted_items()} != set(self.escrows):
            found.append("the open escrows differ from the rules'")
        period = self.params.unbonding_period
        for release, entries in state.unbonding.sorted_items():
            for entry in entries:
                if release != entry.creation_height + period:
                    found.append(
                        f"unbonding from height {entry.creation_height} released at {release}, not after {period}"
                    )
        for consensus_address in sorted(self.slashed_at):
            operator = state.operator_of(consensus_address)
            info = state.validators.get(operator) if operator is not None else None
            if info is not None and not info.tombstoned:
                found.append(
                    f"validator {consensus_address.hex()[:8]} was convicted by evidence but not tombstoned"
                )
        height = state.height
        extra = self.unexplained_burn.pop(height, 0)
        jailed_now = any(
            info.jailed and info.jailed_until == height + self.params.downtime_jail_blocks
            for _, info in state.validators.sorted_items()
        )
        if extra and height not in self.evidence_heights and not jailed_now:
            found.append(f"height {height} burned {extra} beyond the rules' burns with nobody slashed")
        if state.vars["burned"] != self.burned:
            found.append(
                f"the ledger's burned counter is {state.vars['burned']}, its blocks burned {self.burned}"
            )
        held = _held_by(state)
        if held != self.supply():
            found.append(f"supply: the replica holds {held}, genesis + minted - burned is {self.supply()}")
        return found


def _held_by(state: LedgerState) -> int:
    """Everything a replica holds, summed from its entries (never from its running totals)."""
    held = sum(account.balance for _, account in state.accounts.sorted_items())
    held += sum(info.tokens + info.rewards for _, info in state.validators.sorted_items())
    held += sum(entry.amount for _, entries in state.unbonding.sorted_items() for entry in entries)
    held += sum(e.max_cost + e.collateral for _, e in state.escrows.sorted_items())
    held += sum(p.deposit for _, p in state.proposals.sorted_items() if p.status == "voting")
    return held + sum(state.vars[name] for name in ("community_pool", "provider_pool", "fee_pool"))
