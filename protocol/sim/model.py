"""The checker's own model of the ledger: what each committed block must do to the money.

The ledger's own invariants compare its running totals with its entries; a rule that is simply
wrong (a fee never charged, an escrow paid out twice, a nonce not checked) keeps them consistent
and passes. So the checker keeps an independent account of every balance, nonce, bond, unbonding
entry, escrow and deposit, written from the rules as the docs state them, not by calling the
ledger's handlers: each committed transaction must be one these rules accept, and afterwards the
replica's state must hold exactly what the model holds. Money enters only through issuance (the
replica reports what it minted, which must stay under the schedule's ceiling) and leaves only
through burns the model computes itself, so ``held == genesis + minted - burned`` is checked with
the model's burns.

Two things are taken from the replica as reported effects and then checked for plausibility
rather than recomputed: what each block minted, and the reward payouts (validators by signed
commits, providers by epoch). Governance proposals are opened and voted on during runs but never
tallied (their voting period is longer than a run), so parameters stay those of the genesis.

Everything here is pure and deterministic; ``problems`` are returned as text for the checker.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from protocol.consensus.messages import Block
from protocol.contracts import UsageReceipt
from protocol.crypto import address_of, verify
from protocol.encoding import sign_bytes
from protocol.ledger.errors import LedgerError
from protocol.ledger.genesis import Genesis
from protocol.ledger.params import Params
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import (
    TX_DOMAIN,
    EscrowClaim,
    EscrowDispute,
    EscrowFinalize,
    GovPropose,
    GovVote,
    OpenEscrow,
    Refund,
    Settle,
    Stake,
    Transfer,
    Tx,
    Unstake,
    decode_tx,
)
from protocol.units import DEC

#: Heights between a block changing the bonds and the set it produces voting (CometBFT's H+2).
SET_DELAY = 2


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
    #: (claimed GPU-seconds, height of the claim), or None.
    claim: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Reported:
    """What a replica reported executing a block did, beyond the model's own reach."""

    minted: int
    validator_rewards: tuple[tuple[bytes, int], ...]
    provider_rewards: tuple[tuple[bytes, int], ...]


class LedgerModel:
    """Balances, bonds and escrows as the rules say they must be, block by block."""

    def __init__(self, genesis: Genesis) -> None:
        self.chain_id = genesis.chain_id
        self.params: Params = genesis.params
        self.height = 0
        self.balances: dict[bytes, int] = {}
        self.nonces: dict[bytes, int] = {}
        self.bonded: dict[bytes, int] = {}
        self.keys: dict[bytes, bytes] = {}
        self.tombstoned: set[bytes] = set()
        self.unbonding: dict[int, list[tuple[bytes, int]]] = {}
        self.escrows: dict[bytes, _Escrow] = {}
        self.closed: set[bytes] = set()
        self.deposits: dict[int, int] = {}
        self.proposal_ends: dict[int, int] = {}
        self.next_proposal = 1
        self.genesis_supply = 0
        self.minted = 0
        self.burned = 0
        self.slashed_at: dict[bytes, int] = {}
        #: Committed transactions by kind (what the runs exercised).
        self.applied: Counter[str] = Counter()
        for account in genesis.accounts:
            self.balances[account.address] = account.balance
            self.genesis_supply += account.balance
        for validator in genesis.validators:
            address = address_of(validator.public_key)
            self.bonded[address] = validator.stake
            self.keys[address] = validator.public_key
            self.genesis_supply += validator.stake
        genesis_set = self.active_set()
        #: The voting set of each height, address -> power (see ``SET_DELAY``).
        self.sets: dict[int, dict[bytes, int]] = {h: genesis_set for h in range(1, SET_DELAY + 1)}

    # --- views ---------------------------------------------------------------------------------
    def active_set(self) -> dict[bytes, int]:
        """Bonded at least the minimum, not tombstoned, the largest ``max_validators``."""
        eligible = sorted(
            (-bonded, address)
            for address, bonded in self.bonded.items()
            if address not in self.tombstoned and bonded >= self.params.min_validator_stake
        )
        chosen = eligible[: self.params.max_validators]
        return {address: -negative for negative, address in sorted(chosen, key=lambda item: item[1])}

    def held(self) -> int:
        """Everything the model says is held somewhere except the pools."""
        unbonding = sum(amount for entries in self.unbonding.values() for _, amount in entries)
        escrowed = sum(e.max_cost + e.collateral for e in self.escrows.values())
        return (
            sum(self.balances.values())
            + sum(self.bonded.values())
            + unbonding
            + escrowed
            + sum(self.deposits.values())
        )

    def supply(self) -> int:
        return self.genesis_supply + self.minted - self.burned

    # --- one block -----------------------------------------------------------------------------
    def apply(self, block: Block, reported: Reported) -> list[str]:
        """Apply ``block`` (already decided); returns what the rules refuse in it."""
        height = block.height
        if height != self.height + 1:
            return [f"model is at height {self.height}, block {height} does not follow"]
        self.height = height
        problems: list[str] = []
        for evidence in sorted(block.evidence, key=lambda e: e.validator):
            self._slash_double_sign(evidence.validator, height)
        for address, amount in self.unbonding.pop(height, []):
            self._credit(address, amount)
        fees = 0
        for index, raw in enumerate(block.txs):
            try:
                fees += self._apply_tx(raw, height)
            except Refused as exc:
                problems.append(f"height {height} tx {index}: committed though the rules refuse it: {exc}")
                return problems
        problems += self._end_block(height, fees, reported)
        active = self.active_set()
        previous = self.sets[height + SET_DELAY - 1]
        self.sets[height + SET_DELAY] = active or previous
        return problems

    def _slash_double_sign(self, validator: bytes, height: int) -> None:
        if validator not in self.bonded or validator in self.tombstoned:
            return
        fraction = self.params.double_sign_slash
        cut = _ratio(self.bonded[validator], fraction)
        self.bonded[validator] -= cut
        burned = cut
        for release, entries in self.unbonding.items():
            updated = []
            for address, amount in entries:
                if address == validator:
                    entry_cut = _ratio(amount, fraction)
                    burned += entry_cut
                    amount -= entry_cut
                updated.append((address, amount))
            self.unbonding[release] = updated
        self.tombstoned.add(validator)
        self.slashed_at[validator] = height
        self.burned += burned

    def _end_block(self, height: int, fees: int, reported: Reported) -> list[str]:
        problems = []
        fee_burn = _ratio(fees, self.params.fee_burn_share)
        self.burned += fee_burn
        params = self.params
        ceiling = self.supply() * params.inflation_max // DEC // params.blocks_per_year
        if not 0 <= reported.minted <= ceiling:
            problems.append(
                f"height {height}: minted {reported.minted}, the schedule allows at most {ceiling}"
            )
        self.minted += reported.minted
        pool = _ratio(reported.minted, params.validator_reward_share) + fees - fee_burn
        active = self.active_set()
        paid = 0
        for address, amount in reported.validator_rewards:
            if address not in active or amount < 0:
                problems.append(
                    f"height {height}: reward {amount} to {address.hex()}, not an active validator"
                )
            paid += amount
            self._credit(address, amount)
        if not pool - len(reported.validator_rewards) <= paid <= pool:
            problems.append(
                f"height {height}: validators were paid {paid}, the rules give {pool} (less dust)"
            )
        for address, amount in reported.provider_rewards:
            if height % params.epoch_length != 0 or amount < 0:
                problems.append(f"height {height}: provider reward {amount} outside an epoch's end")
            self._credit(address, amount)
        return problems

    # --- transactions --------------------------------------------------------------------------
    def _credit(self, address: bytes, amount: int) -> None:
        self.balances[address] = self.balances.get(address, 0) + amount

    def _debit(self, address: bytes, amount: int, what: str) -> None:
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
        self._debit(tx.sender, tx.fee, "fee")
        self.nonces[tx.sender] = tx.nonce
        self._apply_msg(tx, height)
        self.applied[tx.msg.KIND] += 1
        return tx.fee

    def _apply_msg(self, tx: Tx, height: int) -> None:
        msg = tx.msg
        if isinstance(msg, Transfer):
            self._debit(tx.sender, msg.amount, "transfer")
            self._credit(msg.to, msg.amount)
        elif isinstance(msg, Stake):
            if tx.sender in self.tombstoned:
                raise Refused("stake by a tombstoned validator")
            self._debit(tx.sender, msg.amount, "stake")
            self.bonded[tx.sender] = self.bonded.get(tx.sender, 0) + msg.amount
            self.keys[tx.sender] = tx.public_key
        elif isinstance(msg, Unstake):
            bonded = self.bonded.get(tx.sender)
            if bonded is None or bonded < msg.amount:
                raise Refused(f"unstake {msg.amount} of a bond of {bonded}")
            self.bonded[tx.sender] = bonded - msg.amount
            release = height + self.params.unbonding_period
            self.unbonding.setdefault(release, []).append((tx.sender, msg.amount))
        elif isinstance(msg, OpenEscrow):
            self._open(tx, msg, height)
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
            self._pay_out(receipt.contract_hash, escrow, receipt.gpu_seconds)
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
            if self.bonded.get(tx.sender, 0) == 0 or tx.sender in self.tombstoned:
                raise Refused("vote without bonded stake")
        else:
            raise Refused(f"unknown kind {type(msg).__name__}")

    def _open(self, tx: Tx, msg: OpenEscrow, height: int) -> None:
        terms = msg.contract.terms
        if terms.chain_id != self.chain_id:
            raise Refused("contract for another chain")
        if tx.sender != terms.requester_address:
            raise Refused("escrow opened by someone other than the requester")
        if terms.deadline_height <= height:
            raise Refused("contract already past its deadline")
        contract_hash = terms.contract_hash()
        if contract_hash in self.escrows or contract_hash in self.closed:
            raise Refused("contract escrowed twice")
        if not msg.contract.is_fully_signed():
            raise Refused("contract without both signatures")
        self._debit(tx.sender, terms.max_cost, "escrow")
        self._debit(terms.provider_address, terms.collateral, "collateral")
        self.escrows[contract_hash] = _Escrow(
            requester=tx.sender,
            provider=terms.provider_address,
            requester_key=terms.requester,
            provider_key=terms.provider,
            price=terms.price_per_gpu_second,
            max_gpu_seconds=terms.max_gpu_seconds,
            max_cost=terms.max_cost,
            collateral=terms.collateral,
            deadline=terms.deadline_height,
        )

    def _escrow(self, chain_id: str, contract_hash: bytes) -> _Escrow:
        if chain_id != self.chain_id:
            raise Refused("receipt for another chain")
        escrow = self.escrows.get(contract_hash)
        if escrow is None:
            raise Refused("no open escrow (never opened, or already closed)")
        return escrow

    def _pay(self, escrow: _Escrow, gpu_seconds: int) -> int:
        return min(min(gpu_seconds, escrow.max_gpu_seconds) * escrow.price, escrow.max_cost)

    def _close(self, contract_hash: bytes) -> None:
        del self.escrows[contract_hash]
        self.closed.add(contract_hash)

    def _pay_out(self, contract_hash: bytes, escrow: _Escrow, gpu_seconds: int) -> None:
        pay = self._pay(escrow, gpu_seconds)
        protocol_fee = _ratio(pay, self.params.protocol_fee_share)
        self._credit(escrow.provider, pay - protocol_fee + escrow.collateral)
        self._credit(escrow.requester, escrow.max_cost - pay)
        self.burned += protocol_fee
        self._close(contract_hash)

    def _claim(self, tx: Tx, msg: EscrowClaim, height: int) -> None:
        receipt: UsageReceipt = msg.receipt
        escrow = self._escrow(receipt.chain_id, receipt.contract_hash)
        if tx.sender != escrow.provider:
            raise Refused("claim by someone other than the provider")
        if escrow.claim is not None:
            raise Refused("second claim on one escrow")
        if not receipt.verify(escrow.provider_key, msg.provider_sig):
            raise Refused("claim without the provider's receipt signature")
        escrow.claim = (receipt.gpu_seconds, height)

    def _close_unilaterally(self, tx: Tx, msg: EscrowFinalize | EscrowDispute | Refund, height: int) -> None:
        contract_hash = msg.contract_hash
        escrow = self._escrow(self.chain_id, contract_hash)
        window = self.params.dispute_window_blocks
        slash = _ratio(escrow.collateral, self.params.collateral_slash_share)
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
            self._credit(escrow.requester, escrow.max_cost - pay)
            self._credit(escrow.provider, escrow.collateral - slash)
            self.burned += pay + slash
            self._close(contract_hash)
        else:
            if tx.sender != escrow.requester or escrow.claim is not None:
                raise Refused("refund by someone other than the requester, or over a pending claim")
            if height <= escrow.deadline:
                raise Refused("refund before the deadline")
            self._credit(escrow.requester, escrow.max_cost)
            self._credit(escrow.provider, escrow.collateral - slash)
            self.burned += slash
            self._close(contract_hash)

    # --- comparing with a replica --------------------------------------------------------------
    def differences(self, state: LedgerState) -> list[str]:
        """Where ``state`` (a replica at the model's height) holds other than the model."""
        found = []
        accounts = {
            address: (account.balance, account.nonce) for address, account in state.accounts.sorted_items()
        }
        for address in sorted(set(accounts) | set(self.balances)):
            expected = (self.balances.get(address, 0), self.nonces.get(address, 0))
            if accounts.get(address, (0, 0)) != expected:
                found.append(
                    f"account {address.hex()[:8]} is {accounts.get(address)} (balance, nonce), rules say {expected}"
                )
        validators = {a: (v.bonded, v.tombstoned) for a, v in state.validators.sorted_items()}
        for address in sorted(set(validators) | set(self.bonded)):
            expected_bond = (self.bonded.get(address, 0), address in self.tombstoned)
            if validators.get(address, (0, False)) != expected_bond:
                found.append(
                    f"validator {address.hex()[:8]} is {validators.get(address)} (bonded, tombstoned), rules say {expected_bond}"
                )
        unbonding = sorted((h, a, x) for h, entries in self.unbonding.items() for a, x in entries)
        actual_unbonding = sorted(
            (h, u.address, u.amount) for h, us in state.unbonding.sorted_items() for u in us
        )
        if actual_unbonding != unbonding:
            found.append(
                f"unbonding queue (release, address, amount) is {actual_unbonding}, rules say {unbonding}"
            )
        if {c for c, _ in state.escrows.sorted_items()} != set(self.escrows):
            found.append("the open escrows differ from the rules'")
        held = _held_by(state)
        if held != self.supply():
            found.append(
                f"supply: the replica holds {held}, genesis + minted - burned (by the rules) is {self.supply()}"
            )
        if state.vars["burned"] != self.burned:
            found.append(f"the ledger burned {state.vars['burned']}, the rules {self.burned}")
        return found


def _held_by(state: LedgerState) -> int:
    """Everything a replica holds, summed from its entries (never from its running totals)."""
    held = sum(account.balance for _, account in state.accounts.sorted_items())
    held += sum(info.bonded for _, info in state.validators.sorted_items())
    held += sum(entry.amount for _, entries in state.unbonding.sorted_items() for entry in entries)
    held += sum(e.max_cost + e.collateral for _, e in state.escrows.sorted_items())
    held += sum(p.deposit for _, p in state.proposals.sorted_items() if p.status == "voting")
    return held + sum(state.vars[name] for name in ("community_pool", "provider_pool", "fee_pool"))
