"""The transactions of a simulated run: every kind, extreme values, and the variants that must fail.

Each tick one actor sends what it means to do next, judged on the most advanced replica's state:
clients transfer, open escrows with each other (the market's transactions: prices from 1 to
2**40 per GPU-second), settle them with receipts of every outcome metering up to 2**63 - 1
GPU-milliseconds, claim, finalize, dispute, refund after the deadline, propose parameter changes;
validators bond more and unbond it again and vote on proposals; the joiner registers a validator
(proving its consensus key), bonds into the set and leaves it; one client runs no node and
delegates to validators instead, moves its delegation and takes it back.

Before what it means, the actor sends variants that must never commit, with the same nonce: an
overdraft, a fee below the minimum, a second settlement of a closed escrow, a free contract, an
unbond or undelegation of more than is bonded, a proposal of an out-of-range value, a vote
without stake. After it, a small transfer to itself that always
applies, so a step that no longer applies never blocks the actor's later nonces. Honest
proposers take the first candidate that applies; the checker's model flags any variant that
commits.
"""

from __future__ import annotations

import functools

from protocol.contracts import (
    OUTCOME_JOB_FAILED,
    OUTCOME_LIMIT_EXCEEDED,
    OUTCOME_PROVIDER_ERROR,
    OUTCOMES,
    ContractTerms,
    SignedContract,
    UsageReceipt,
)
from protocol.crypto import PrivateKey
from protocol.ledger.staking import delegation_value
from protocol.ledger.state import Escrow, LedgerState
from protocol.ledger.tx import (
    Delegate,
    EscrowClaim,
    EscrowDispute,
    EscrowFinalize,
    GovPropose,
    GovVote,
    Msg,
    OpenEscrow,
    Redelegate,
    Refund,
    Settle,
    Stake,
    Transfer,
    Undelegate,
    Unstake,
    ValidatorCreate,
    prove_consensus_key,
    sign_tx,
)
from protocol.sim.rng import SplitMix64
from protocol.sim.setup import CHAIN_ID, SIM_PARAMS, STAKE_UNIT, Cast, client_key, validator_key
from protocol.units import DCT, percent

MAX_AMOUNT = 2**63 - 1
FEE = SIM_PARAMS.min_fee
_PRICES = (1, 1_000, 10**9, 2**40)


@functools.cache
def _key_by_address(clients: int, validators: int) -> dict[bytes, PrivateKey]:
    keys = [client_key(i) for i in range(clients)] + [validator_key(i) for i in range(validators + 1)]
    return {key.address.raw: key for key in keys}


class Workload:
    """Draws each tick's transactions from the run's seed (and the state it is shown)."""

    def __init__(self, cast: Cast, rng: SplitMix64, *, honest_keys: tuple[int, ...], extremes: bool) -> None:
        self.cast = cast
        self.rng = rng
        self.extremes = extremes
        self.keys = _key_by_address(cast.clients, cast.validators)
        self._clients = [client_key(i) for i in range(cast.clients)]
        self._validators = [validator_key(i) for i in honest_keys]
        self._joiner = validator_key(cast.joiner)
        self._genesis_bond = {
            validator_key(i).address.raw: units * STAKE_UNIT for i, units in enumerate(cast.stakes)
        }
        self._salt = 0
        #: Settlements that committed or may have: sent again later, they must fail.
        self._settlements: list[Settle] = []

    def next_transactions(self, state: LedgerState) -> list[bytes]:
        """One actor's next transactions, all with its next nonce, in the order to offer them."""
        rng = self.rng
        roll = rng.below(10)
        if roll < 6 and len(self._clients) >= 2:
            key = self._clients[rng.below(len(self._clients))]
            messages = self._client_step(key, state)
        elif roll < 8 and self._validators:
            key = self._validators[rng.below(len(self._validators))]
            messages = self._validator_step(key, state)
        else:
            key = self._joiner
            messages = self._joiner_step(key, state)
        nonce = state.account(key.address.raw).nonce + 1
        raws = [sign_tx(key, CHAIN_ID, nonce, fee, msg) for msg, fee in messages]
        raws.append(sign_tx(key, CHAIN_ID, nonce, FEE, Transfer(key.address.raw, 1)))
        return raws

    # --- steps ---------------------------------------------------------------------------------
    def _client_step(self, key: PrivateKey, state: LedgerState) -> list[tuple[Msg, int]]:
        rng, me = self.rng, key.address.raw
        height = state.height + 1
        bad: list[tuple[Msg, int]] = []
        if rng.chance(300):
            bad.append(self._bad_variant(key, state))
        for contract_hash, escrow in state.escrows.sorted_items():
            if me not in (escrow.requester, escrow.provider):
                continue
            step = self._escrow_step(me, contract_hash, escrow, height)
            if step is not None:
                return [*bad, (step, FEE)]
        roll = rng.below(10)
        if roll < 3:
            amount = 1 + rng.below(10**6)
            if self.extremes and rng.chance(100):
                amount = max(1, state.balance(me) - FEE)  # everything it has
            return [*bad, (Transfer(self._other_client(me).address.raw, amount), FEE)]
        if roll < 7:
            return [*bad, (self._open_escrow(key, state, height), FEE)]
        if roll < 8 and key is self._clients[0]:
            return [*bad, *self._delegator_step(me, state)]
        if roll < 9:
            param_value = ("dispute_window_blocks", 3 + rng.below(5))
            return [*bad, (GovPropose(*param_value, SIM_PARAMS.gov_min_deposit), FEE)]
        return [*bad, (Transfer(me, 1 + rng.below(1000)), FEE * (1 + rng.below(3)))]

    def _escrow_step(self, me: bytes, contract_hash: bytes, escrow: Escrow, height: int) -> Msg | None:
        rng = self.rng
        window = SIM_PARAMS.dispute_window_blocks
        if escrow.requester == me and not escrow.has_claim and height > escrow.deadline_height:
            return Refund(contract_hash)
        if escrow.provider == me and escrow.has_claim and height > escrow.claimed_height + window:
            return EscrowFinalize(contract_hash)
        if escrow.requester == me and escrow.has_claim and rng.chance(400):
            return EscrowDispute(contract_hash)
        if escrow.provider == me and not escrow.has_claim and rng.chance(300):
            receipt = self._receipt(contract_hash, escrow)
            return EscrowClaim(receipt, receipt.sign(self.keys[escrow.provider]))
        if rng.chance(500):
            receipt = self._receipt(contract_hash, escrow)
            settle = Settle(
                receipt,
                receipt.sign(self.keys[escrow.provider]),
                receipt.sign(self.keys[escrow.requester]),
            )
            self._settlements.append(settle)
            del self._settlements[:-16]
            return settle
        return None

    def _delegator_step(self, me: bytes, state: LedgerState) -> list[tuple[Msg, int]]:
        """The holder who runs no node delegates to honest validators instead (and moves or
        takes back its stake later)."""
        validators = [v for v in self._validators if v.address.raw in state.validators]
        if not validators:
            return []
        held = [v.address.raw for v in validators if delegation_value(state, me, v.address.raw) > 0]
        roll = self.rng.below(3)
        if held and roll == 0:
            source = self.rng.choice(held)
            return [(Undelegate(source, delegation_value(state, me, source) // 2 or 1), FEE)]
        if held and roll == 1:
            source = self.rng.choice(held)
            others = [v.address.raw for v in validators if v.address.raw != source]
            if others:
                amount = delegation_value(state, me, source) // 2 or 1
                return [(Redelegate(source, self.rng.choice(others), amount), FEE)]
        target = self.rng.choice(validators).address.raw
        return [(Delegate(target, STAKE_UNIT // 10), FEE)]

    def _receipt(self, contract_hash: bytes, escrow: Escrow) -> UsageReceipt:
        """A receipt of any outcome, metering anything from nothing to 2**63 - 1 GPU-ms."""
        rng = self.rng
        outcome = rng.choice(OUTCOMES)
        gpu_ms = rng.below(escrow.max_gpu_seconds * 1000 + 1)
        if self.extremes and rng.chance(200):
            gpu_ms = MAX_AMOUNT  # capped by the terms when paid
        if outcome == OUTCOME_PROVIDER_ERROR:
            gpu_ms = 0
        exit_status = 1 if outcome == OUTCOME_JOB_FAILED else 0
        limit = "memory" if outcome == OUTCOME_LIMIT_EXCEEDED else ""
        return UsageReceipt(CHAIN_ID, contract_hash, outcome, gpu_ms, exit_status, bytes(32), limit)

    def _open_escrow(self, key: PrivateKey, state: LedgerState, height: int) -> OpenEscrow:
        rng = self.rng
        provider = self._other_client(key.address.raw)
        price = rng.choice(_PRICES)
        gpu_seconds = 1 + rng.below(3600)
        if self.extremes and rng.chance(300):
            price, gpu_seconds = 1, 1_000 * DCT  # the cheapest price, the most GPU-seconds
        if price * gpu_seconds > 1_000 * DCT:
            gpu_seconds = max(1, 1_000 * DCT // price)
        self._salt += 1
        terms = ContractTerms(
            chain_id=CHAIN_ID,
            requester=key.public_key.raw,
            provider=provider.public_key.raw,
            job_hash=bytes(32),
            gpu_uuids=("GPU-sim",),
            price_per_gpu_second=price,
            max_gpu_seconds=gpu_seconds,
            collateral=rng.below(DCT),
            deadline_height=height + 1 + rng.below(6),
            salt=self._salt.to_bytes(8, "big"),
        )
        return OpenEscrow(SignedContract(terms, terms.sign(key), terms.sign(provider)))

    def _bad_variant(self, key: PrivateKey, state: LedgerState) -> tuple[Msg, int]:
        """Something the rules must refuse, though the mempool lets it in."""
        rng, me = self.rng, key.address.raw
        balance = state.balance(me)
        choice = rng.below(9)
        if choice == 0:
            return Transfer(me, min(MAX_AMOUNT, balance + 1)), FEE  # overdraft
        if choice == 1:
            return Transfer(self._other_client(me).address.raw, MAX_AMOUNT), FEE
        if choice == 2 and SIM_PARAMS.min_fee > 0:
            return Transfer(me, 1), SIM_PARAMS.min_fee - 1
        if choice == 3 and self._settlements:
            return rng.choice(self._settlements), FEE  # settled already, or about to be
        if choice == 4:
            return Unstake(MAX_AMOUNT), FEE
        if choice == 5:
            return GovPropose("unbonding_period", 0, SIM_PARAMS.gov_min_deposit), FEE
        if choice == 6:
            return self._free_contract(key), FEE  # price 0: refused (no fee, no provider reward)
        if choice == 7 and self._validators:
            return Undelegate(self._validators[0].address.raw, MAX_AMOUNT), FEE
        return GovVote(1, "yes"), FEE  # a client without stake

    def _free_contract(self, key: PrivateKey) -> OpenEscrow:
        provider = self._other_client(key.address.raw)
        self._salt += 1
        terms = ContractTerms(
            chain_id=CHAIN_ID,
            requester=key.public_key.raw,
            provider=provider.public_key.raw,
            job_hash=bytes(32),
            gpu_uuids=("GPU-sim",),
            price_per_gpu_second=0,
            max_gpu_seconds=MAX_AMOUNT,
            collateral=0,
            deadline_height=10**6,
            salt=self._salt.to_bytes(8, "big"),
        )
        return OpenEscrow(SignedContract(terms, terms.sign(key), terms.sign(provider)))

    def _validator_step(self, key: PrivateKey, state: LedgerState) -> list[tuple[Msg, int]]:
        me = key.address.raw
        info = state.validators.get(me)
        proposals = [p.id for _, p in state.proposals.sorted_items() if p.status == "voting"]
        roll = self.rng.below(3)
        if roll == 0 and proposals:
            return [
                (GovVote(self.rng.choice(proposals), self.rng.choice(("yes", "no", "abstain", "veto"))), FEE)
            ]
        if info is None or info.tombstoned:
            return []
        genesis = self._genesis_bond.get(me, 0)
        if info.bonded > genesis:
            return [(Unstake(info.bonded - genesis), FEE)]
        return [(Stake(STAKE_UNIT), FEE)]

    def _joiner_step(self, key: PrivateKey, state: LedgerState) -> list[tuple[Msg, int]]:
        """The joiner registers its validator (proving its consensus key), bonds, and leaves."""
        me = key.address.raw
        info = state.validators.get(me)
        if info is None:
            if state.height < 3:
                return []
            proof = prove_consensus_key(key, CHAIN_ID, me)
            create = ValidatorCreate(
                key.public_key.raw, proof, "joiner", percent(5), percent(20), percent(1), 5 * STAKE_UNIT
            )
            return [(create, FEE)]
        value = delegation_value(state, me, me)
        if state.height < 10 and value < 5 * STAKE_UNIT:
            return [(Stake(STAKE_UNIT), FEE)]
        if state.height >= 12 and value > 0:
            return [(Unstake(value), FEE)]
        return []

    def _other_client(self, me: bytes) -> PrivateKey:
        others = [key for key in self._clients if key.address.raw != me]
        return others[self.rng.below(len(others))]
