"""Random ledger scenarios for the property tests: blocks mixing every transaction kind, valid
and invalid, drawn by hypothesis or by a seed, and the checks run after each block
(``test_ledger_properties``)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
from hypothesis import event
from hypothesis import strategies as st

from protocol.contracts import ContractTerms
from protocol.ledger.block import BlockContext, BlockResult, Misbehaviour, apply_block, select_txs
from protocol.ledger.errors import BadBlockHeight, LedgerError
from protocol.ledger.liquidity_state import share_denom
from protocol.ledger.pool import holding
from protocol.ledger.staking import delegation_value
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import (
    VOTE_OPTIONS,
    AssetMint,
    AssetPropose,
    AssetSend,
    Delegate,
    EscrowDispute,
    EscrowFinalize,
    GovPropose,
    GovVote,
    Grant,
    GrantRevoke,
    MiningBond,
    MiningUnbond,
    Msg,
    OfferAccept,
    OfferAnswer,
    OfferChallenge,
    OfferMiss,
    OfferRefused,
    OfferStand,
    OfferTake,
    OfferWithdraw,
    OpenEscrow,
    PoolAdd,
    PoolRemove,
    PoolSwap,
    Redelegate,
    Refund,
    Stake,
    Transfer,
    Undelegate,
    Unjail,
    Unstake,
    ValidatorCreate,
    ValidatorEdit,
    availability_bytes,
    prove_consensus_key,
    sign_tx,
)
from protocol.units import DEC, percent

from .ledger_helpers import (
    ACTOR_LABELS,
    CHAIN_ID,
    GENESIS_BALANCE,
    OTHER_CHAIN_ID,
    OUTSIDER_LABELS,
    VALIDATOR_LABELS,
    Chain,
    addr,
    claim_msg,
    flip_signature_bit,
    key,
    make_genesis,
    make_terms,
    senders_and_nonces,
    settle_msg,
    sign_contract,
)

T = TypeVar("T")


def label_of_address(address: bytes) -> str:
    return next((label for label in ACTOR_LABELS + OUTSIDER_LABELS if addr(label) == address), "mallory")


NODE = key("node-of-a-new-validator")
REPO_ROOT = Path(__file__).resolve().parents[2]
#: val-0 holds half the stake: its vote alone makes quorum, so proposals often pass.
SCENARIO_STAKES = [("val-0", 2_000_000), ("val-1", 1_000_000), ("val-2", 1_000_000)]


def scenario_chain() -> Chain:
    return Chain(make_genesis(stakes=SCENARIO_STAKES))


KINDS = (
    "transfer",
    "transfer",
    "stake",
    "unstake",
    "validator_create",
    "validator_edit",
    "delegate",
    "delegate",
    "undelegate",
    "redelegate",
    "unjail",
    "escrow_open",
    "escrow_open",
    "escrow_open",
    "escrow_settle",
    "escrow_settle",
    "escrow_refund",
    "escrow_claim",
    "escrow_claim",
    "escrow_finalize",
    "escrow_finalize",
    "escrow_dispute",
    "gov_propose",
    "gov_vote",
    "gov_vote",
    "gov_vote",
    "grant",
    "grant_revoke",
    "asset_propose",
    "asset_mint",
    "asset_send",
    "pool_add",
    "pool_remove",
    "pool_swap",
    "mining_bond",
    "mining_unbond",
    "offer_stand",
    "offer_challenge",
    "offer_answer",
    "offer_miss",
    "offer_withdraw",
    "offer_take",
    "offer_accept",
    "offer_refused",
)
SYMBOLS = ("TUSD", "EUR")
#: Values a proposal may ask for, in and out of each parameter's range.
PROPOSAL_VALUES: dict[str, tuple[int, ...]] = {
    "fee_burn_share": (0, percent(25), percent(90), DEC, DEC + 1),
    "min_fee": (0, 5, 20, -1),
    "protocol_fee_share": (0, percent(10), DEC),
    "collateral_slash_share": (0, DEC),
    "double_sign_slash": (percent(1), percent(50)),
    "gov_quorum": (percent(10), percent(90)),
    "unbonding_period": (0, 1, 2, 5),
    "gov_voting_period": (1, 2, 4),
    "epoch_length": (1, 3, 5),
    "dispute_window_blocks": (0, 1, 2, 5),
    "inflation_min": (percent(1), percent(30)),
    "validator_reward_share": (percent(10), percent(80)),
    "no_such_param": (1,),
}


class Chooser(Protocol):
    """Where the scenario's choices come from: Hypothesis (shrinkable) or a seeded PRNG."""

    def integer(self, low: int, high: int) -> int: ...

    def pick(self, options: Sequence[T]) -> T: ...


class DataChooser:
    def __init__(self, data: st.DataObject) -> None:
        self._data = data

    def integer(self, low: int, high: int) -> int:
        return self._data.draw(st.integers(low, high))

    def pick(self, options: Sequence[T]) -> T:
        return self._data.draw(st.sampled_from(options))


class RandomChooser:
    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return self._rng.randint(low, high)

    def pick(self, options: Sequence[T]) -> T:
        return self._rng.choice(options)


@dataclasses.dataclass(frozen=True)
class KnownContract:
    terms: ContractTerms
    requester: str
    provider: str
    #: The wallet that pays for it (a label), when not the requester.
    payer: str | None = None


class ScenarioBuilder:
    """Builds random blocks against the current state: mostly plausible transactions (right
    nonces, affordable amounts, parties of real contracts) so that blocks often apply, with
    deliberate flaws mixed in (bad nonce, wrong chain, low fee, forged signatures, garbage)."""

    def __init__(self, chain: Chain, chooser: Chooser) -> None:
        self.chain = chain
        self.c = chooser
        self.contracts: list[KnownContract] = []

    def next_block(self) -> tuple[BlockContext, list[bytes]]:
        c = self.c
        height = self.chain.height + 1
        next_nonce: dict[str, int] = {}
        txs = [self._tx(next_nonce, height) for _ in range(c.integer(0, 6))]
        voters = tuple(v.address for v in self.chain.state.validator_set()) if c.integer(0, 3) else ()
        # val-2 (and any node key) signs rarely: downtime jailing and unjail happen too.
        signers = tuple(
            address
            for address in (*voters, addr("alice"))
            if c.integer(0, 9 if address in (addr("val-2"), NODE.address.raw) else 2) > 0
        ) or (addr("val-0"),)
        misbehaviour: tuple[Misbehaviour, ...] = ()
        if c.integer(0, 24) == 0:
            culprit = addr(c.pick((*VALIDATOR_LABELS, "alice", "mallory")))
            misbehaviour = (Misbehaviour(culprit, height=max(0, height - c.integer(1, 4))),)
        return BlockContext(height, addr(VALIDATOR_LABELS[0]), signers, misbehaviour, voters), txs

    def _tx(self, next_nonce: dict[str, int], height: int) -> bytes:
        c = self.c
        state = self.chain.state
        label, msg = self._msg(c.pick(KINDS), height)
        nonce = next_nonce.get(label, state.account(addr(label)).nonce + 1)
        fee = state.params.min_fee + c.integer(0, 5)
        chain_id = CHAIN_ID
        flaw = c.integer(0, 29)
        if flaw == 0:
            nonce += c.pick((-1, 1, 2))
        elif flaw == 1:
            chain_id = OTHER_CHAIN_ID
        elif flaw == 2:
            fee = state.params.min_fee - 1
        raw = sign_tx(key(label), chain_id, nonce, fee, msg)
        if flaw == 3:
            raw = flip_signature_bit(raw)
        elif flaw == 4:
            raw = raw[: c.integer(0, len(raw) - 1)]
        else:
            next_nonce[label] = nonce + 1
        return raw

    def _msg(self, kind: str, height: int) -> tuple[str, Msg]:
        c = self.c
        state = self.chain.state
        label = c.pick(ACTOR_LABELS)
        if kind == "transfer":
            to = addr(c.pick(ACTOR_LABELS + OUTSIDER_LABELS))
            mode = c.integer(0, 2)
            if mode == 0:
                return label, Transfer(to, c.integer(1, 10_000))
            if mode == 1:
                return label, Transfer(to, max(1, state.balance(addr(label)) - c.integer(0, 40)))
            return label, Transfer(to, 1)
        if kind == "stake":
            return label, Stake(c.pick((1, 99, 100, 5_000, GENESIS_BALANCE * 2)))
        if kind == "unstake":
            bonded = delegation_value(state, addr(label), addr(label))
            amount = max(1, bonded + c.integer(-3, 1)) if c.integer(0, 1) else c.integer(1, 5_000)
            return label, Unstake(amount)
        if kind == "validator_create":
            node = c.pick((NODE, key("val-1")))
            amount = c.pick((99, 100, 5_000, GENESIS_BALANCE * 2))
            proof = prove_consensus_key(node, CHAIN_ID, addr(label) if c.integer(0, 5) else addr("mallory"))
            return label, ValidatorCreate(
                node.public_key.raw, proof, "n", percent(5), percent(20), percent(1), amount
            )
        if kind == "validator_edit":
            return label, ValidatorEdit("e", c.pick((0, percent(5), percent(6), percent(10))))
        if kind in ("delegate", "undelegate", "redelegate"):
            validator = addr(c.pick((*VALIDATOR_LABELS, "alice", "bob")))
            worth = delegation_value(state, addr(label), validator)
            if kind == "delegate":
                return label, Delegate(validator, c.pick((1, 77, 5_000, GENESIS_BALANCE * 2)))
            amount = max(1, worth - c.integer(0, 2)) if worth and c.integer(0, 2) else c.integer(1, 3_000)
            if kind == "undelegate":
                return label, Undelegate(validator, amount)
            other = addr(c.pick([v for v in (*VALIDATOR_LABELS, "alice") if addr(v) != validator]))
            return label, Redelegate(validator, other, amount)
        if kind == "unjail":
            # Mostly a validator whose jail time is over, when there is one (a rare state).
            due = [
                label_of_address(operator)
                for operator, info in state.validators.sorted_items()
                if info.jailed and not info.tombstoned and info.jailed_until <= height
            ]
            if due and c.integer(0, 3):
                return c.pick(due), Unjail()
            return c.pick((*VALIDATOR_LABELS, label)), Unjail()
        if kind == "escrow_open":
            granted = [
                (g, info.grantee)
                for g, infos in state.grants.sorted_items()
                for info in infos
                if not info.expired_at(height) and info.remaining
            ]
            if granted and c.integer(0, 1) == 0:
                # A node spending under a wallet's grant: a contract of the grantee that the
                # granter pays for, sent by the grantee.
                granter, grantee = c.pick(granted)
                known = self._new_contract(height, label_of_address(grantee), label_of_address(granter))
                return known.requester, OpenEscrow(sign_contract(known.terms))
            if self.contracts and c.integer(0, 4) == 0:
                known = c.pick(self.contracts)
            else:
                known = self._new_contract(height)
            sender = known.requester if c.integer(0, 7) else label
            if known.payer is not None and c.integer(0, 1) == 0:
                sender = known.payer  # the wallet signs the escrow itself
            forged = c.integer(0, 9) == 0
            return sender, OpenEscrow(
                sign_contract(known.terms, provider_signer="mallory" if forged else None)
            )
        if kind == "escrow_settle":
            known = self._some_contract(height)
            sender = c.pick((known.requester, known.provider)) if c.integer(0, 7) else label
            flaw = c.integer(0, 11)
            msg = settle_msg(
                known.terms,
                c.integer(0, 250),
                chain_id=OTHER_CHAIN_ID if flaw == 0 else None,
                provider_signer=known.requester if flaw == 1 else None,
                requester_signer=known.provider if flaw == 2 else None,
            )
            return sender, msg
        if kind == "escrow_refund":
            if self.contracts and c.integer(0, 5):
                known = self._some_contract(height)
                sender = known.requester if c.integer(0, 7) else label
                if known.payer is not None and c.integer(0, 2) == 0:
                    sender = known.payer
                return sender, Refund(known.terms.contract_hash())
            return label, Refund(bytes(32))
        if kind == "escrow_claim":
            known = self._some_contract(height)
            sender = known.provider if c.integer(0, 7) else label
            flaw = c.integer(0, 11)
            return sender, claim_msg(
                known.terms,
                c.integer(0, 250),
                chain_id=OTHER_CHAIN_ID if flaw == 0 else None,
                provider_signer=known.requester if flaw == 1 else None,
            )
        if kind == "escrow_finalize":
            window = state.params.dispute_window_blocks
            due = [
                k
                for k in self.contracts
                if (e := state.escrows.get(k.terms.contract_hash())) is not None
                and e.has_claim
                and height > e.claimed_height + window
            ]
            known = c.pick(due) if due and c.integer(0, 3) else self._some_claimed(height)
            sender = known.provider if c.integer(0, 7) else label
            return sender, EscrowFinalize(known.terms.contract_hash())
        if kind == "escrow_dispute":
            known = self._some_claimed(height)
            sender = known.requester if c.integer(0, 7) else label
            return sender, EscrowDispute(known.terms.contract_hash())
        if kind == "grant":
            # Mostly a wallet granting a requester of a known contract that it pays for.
            payers = [k for k in self.contracts if k.payer is not None]
            if payers and c.integer(0, 3):
                known = c.pick(payers)
                granter, grantee = known.payer, addr(known.requester)
            else:
                granter, grantee = label, addr(c.pick(ACTOR_LABELS + OUTSIDER_LABELS))
            limit = c.pick((1, c.integer(1, 5_000), GENESIS_BALANCE))
            expiry = max(1, height + c.pick((-1, 0, 1, 3, 20, 200, 200, 10_000_001)))
            return granter, Grant(grantee, limit, expiry, ("escrow_open",))
        if kind == "grant_revoke":
            granted = [(g, info.grantee) for g, infos in state.grants.sorted_items() for info in infos]
            if granted and c.integer(0, 3):
                granter_address, grantee = c.pick(granted)
                return label_of_address(granter_address), GrantRevoke(grantee)
            return label, GrantRevoke(addr(c.pick(ACTOR_LABELS)))
        if kind == "gov_propose":
            param = c.pick(sorted(PROPOSAL_VALUES))
            deposit = max(1, state.params.gov_min_deposit + c.integer(-1, 50))
            return label, GovPropose(param, c.pick(PROPOSAL_VALUES[param]), deposit)
        if kind.startswith(("asset_", "pool_", "mining_")):
            return self._liquidity_msg(kind, label, height)
        if kind.startswith("offer_"):
            return self._offer_msg(kind, label, height)
        assert kind == "gov_vote"
        voter = c.pick(VALIDATOR_LABELS) if c.integer(0, 3) else label
        # Mostly a proposal still open; otherwise a recent or the next (yet unknown) id.
        open_ids = [p.id for _, p in state.proposals.sorted_items() if p.status == "voting"]
        if open_ids and c.integer(0, 3):
            proposal_id = c.pick(open_ids)
        else:
            proposal_id = max(1, state.vars["next_proposal_id"] - c.integer(0, 3))
        option = c.pick(("yes", "yes", *VOTE_OPTIONS))
        return voter, GovVote(proposal_id, option)

    def _liquidity_msg(self, kind: str, label: str, height: int) -> tuple[str, Msg]:
        c = self.c
        state = self.chain.state
        active = [symbol for symbol, asset in state.assets.sorted_items() if asset.active]
        if not active and c.integer(0, 5):
            # Nothing to trade yet: get an asset registered (val-0's yes alone passes it).
            pending = [a.proposal for _, a in state.assets.sorted_items()]
            if pending:
                return "val-0", GovVote(c.pick(pending), "yes")
            kind = "asset_propose"
        symbol = c.pick(active) if active and c.integer(0, 7) else c.pick(SYMBOLS)
        asset = state.assets.get(symbol)
        # Mostly the step a later kind needs first: bonds before unbonds, shares before bonds,
        # the asset before deposits, so every kind gets committed within a few scenarios.
        if c.integer(0, 4):
            held_denoms = {d for (_, d), _ in state.holdings.sorted_items()}
            if kind == "mining_unbond" and not any(m.shares for _, m in state.mining.sorted_items()):
                kind = "mining_bond"
            if kind in ("mining_bond", "pool_remove") and share_denom(symbol) not in held_denoms:
                kind = "pool_add"
            if kind in ("pool_add", "pool_swap", "asset_send") and symbol not in held_denoms:
                kind = "asset_mint"
        # Mostly someone who holds the asset (or, to withdraw, the pool's shares).
        denom = share_denom(symbol) if kind in ("pool_remove", "mining_bond") else symbol
        holders = [label_of_address(a) for (a, d), _ in state.holdings.sorted_items() if d == denom]
        if holders and kind != "asset_mint" and c.integer(0, 4):
            label = c.pick(holders)
        held = holding(state, addr(label), symbol)
        if kind == "asset_propose":
            return label, AssetPropose(symbol, max(1, state.params.gov_min_deposit + c.integer(-1, 50)))
        if kind == "asset_mint":
            issuer = label_of_address(asset.issuer) if asset is not None and c.integer(0, 7) else label
            return issuer, AssetMint(symbol, addr(c.pick(ACTOR_LABELS)), c.integer(1, 3_000_000))
        if kind == "asset_send":
            denom = c.pick((symbol, share_denom(symbol)))
            have = holding(state, addr(label), denom)
            amount = c.integer(1, have) if have and c.integer(0, 3) else c.integer(1, 5_000)
            return label, AssetSend(denom, addr(c.pick(ACTOR_LABELS + OUTSIDER_LABELS)), amount)
        if kind == "pool_add":
            return label, PoolAdd(
                symbol, c.integer(1, 300_000), max(1, held // c.integer(1, 4)), c.pick((0, 0, 10**12))
            )
        if kind == "pool_remove":
            shares = holding(state, addr(label), share_denom(symbol))
            return label, PoolRemove(symbol, max(1, shares // c.integer(1, 3)), 0, c.pick((0, 0, 10**12)))
        if kind == "mining_bond":
            shares = holding(state, addr(label), share_denom(symbol))
            return label, MiningBond(symbol, max(1, shares // c.integer(1, 3)))
        if kind == "mining_unbond":
            bonds = [key for key, _ in state.mining.sorted_items() if state.mining[key].shares]
            if bonds and c.integer(0, 4):
                owner, symbol = c.pick(bonds)
                label = label_of_address(owner)
            stake = state.mining.get((addr(label), symbol))
            return label, MiningUnbond(symbol, max(1, (stake.shares if stake else 0) // c.integer(1, 2)))
        assert kind == "pool_swap"
        sell_dct = bool(c.integer(0, 1))
        amount = c.integer(1, 100_000) if sell_dct or not held else c.integer(1, held)
        return label, PoolSwap(
            symbol, sell_dct, amount, c.pick((1, 1, 10**12)), max(1, height + c.integer(-1, 2))
        )

    def _offer_msg(self, kind: str, label: str, height: int) -> tuple[str, Msg]:
        c = self.c
        state = self.chain.state
        offers = state.offers.sorted_items()
        if c.integer(0, 4):  # mostly the step a later kind needs first
            challenged = [o for o, x in offers if x.seed]
            taken = [o for o, _ in state.takes.sorted_items()]
            if kind in ("offer_answer", "offer_miss") and not challenged:
                kind = "offer_challenge"
            if kind in ("offer_accept", "offer_refused") and not taken:
                kind = "offer_take"
            if kind != "offer_stand" and not offers:
                kind = "offer_stand"
        if kind == "offer_stand":
            node = key(f"{label}-node")
            gpus = c.integer(1, 4)
            collateral = gpus * state.params.standing_collateral_per_gpu + c.integer(-1, 5_000)
            return label, OfferStand(
                node.public_key.raw, "H100", gpus, c.integer(1, 60), c.integer(1, 12), max(1, collateral)
            )
        if not offers:
            return label, OfferChallenge(bytes(32))
        offer_id, offer = c.pick(offers)
        provider = label_of_address(offer.provider)
        if kind == "offer_challenge":
            return (label if c.integer(0, 5) else provider), OfferChallenge(offer_id)
        if kind == "offer_answer":
            challenged = [(o, x) for o, x in offers if x.seed]
            if challenged:
                offer_id, offer = c.pick(challenged)
            signer = key(f"{label_of_address(offer.provider)}-node") if c.integer(0, 5) else key(label)
            signature = signer.sign(availability_bytes(CHAIN_ID, offer_id, offer.seed or bytes(32)))
            return label, OfferAnswer(offer_id, signature)
        if kind == "offer_miss":
            challenged = [o for o, x in offers if x.seed]
            return label, OfferMiss(c.pick(challenged) if challenged else offer_id)
        if kind == "offer_withdraw":
            return (provider if c.integer(0, 5) else label), OfferWithdraw(offer_id)
        if kind == "offer_take":
            return label, OfferTake(offer_id, c.integer(1, 4), c.integer(1, 300))
        taken = state.takes.sorted_items()
        if taken:
            offer_id, pending = c.pick(taken)
            provider = label_of_address(state.offers[offer_id].provider)
            requester = label_of_address(pending.requester)
        else:
            requester = label
        if kind == "offer_accept":
            return (provider if c.integer(0, 5) else label), OfferAccept(offer_id)
        assert kind == "offer_refused"
        return (requester if c.integer(0, 5) else label), OfferRefused(offer_id)

    def _some_contract(self, height: int) -> KnownContract:
        """Mostly one with an open escrow; otherwise any contract built so far, or a new one."""
        c = self.c
        escrows = self.chain.state.escrows
        open_ones = [k for k in self.contracts if k.terms.contract_hash() in escrows]
        if open_ones and c.integer(0, 3):
            return c.pick(open_ones)
        return c.pick(self.contracts) if self.contracts else self._new_contract(height)

    def _some_claimed(self, height: int) -> KnownContract:
        """Mostly one whose escrow carries a pending claim; otherwise as :meth:`_some_contract`."""
        escrows = self.chain.state.escrows
        claimed = [
            k
            for k in self.contracts
            if (escrow := escrows.get(k.terms.contract_hash())) is not None and escrow.has_claim
        ]
        if claimed and self.c.integer(0, 3):
            return self.c.pick(claimed)
        return self._some_contract(height)

    def _new_contract(
        self, height: int, requester: str | None = None, payer: str | None = None
    ) -> KnownContract:
        c = self.c
        if requester is None:
            requester = c.pick(ACTOR_LABELS)
            if c.integer(0, 3) == 0:
                payer = c.pick([label for label in ACTOR_LABELS if label != requester])
        provider = c.pick([label for label in ACTOR_LABELS if label != requester])
        terms = make_terms(
            requester,
            provider,
            price=c.integer(0 if payer is None else 1, 30),
            max_gpu_seconds=c.integer(1, 200),
            collateral=c.pick((0, c.integer(1, 3_000), GENESIS_BALANCE * 2 if payer is None else 0)),
            deadline=max(0, height + c.integer(-1 if payer is None else 2, 6)),
            salt=len(self.contracts).to_bytes(4, "big"),
            chain_id=OTHER_CHAIN_ID if c.integer(0, 14) == 0 else CHAIN_ID,
            payer=payer,
        )
        known = KnownContract(terms, requester, provider, payer)
        self.contracts.append(known)
        return known


# --- the checks after every block -------------------------------------------------------------


def held_supply(state: LedgerState) -> int:
    """Everything the ledger holds, summed from the entries (not from the running totals)."""
    balances = sum(account.balance for _, account in state.accounts.sorted_items())
    bonded = sum(info.tokens + info.rewards for _, info in state.validators.sorted_items())
    unbonding = sum(u.amount for _, entries in state.unbonding.sorted_items() for u in entries)
    escrowed = sum(e.max_cost + e.collateral for _, e in state.escrows.sorted_items())
    deposits = sum(p.deposit for _, p in state.proposals.sorted_items() if p.status == "voting")
    pools = state.vars["community_pool"] + state.vars["provider_pool"] + state.vars["fee_pool"]
    liquidity = sum(p.dct for _, p in state.pools.sorted_items()) + state.vars["mining_pool"]
    liquidity += state.vars["availability_pool"] + sum(t.max_cost for _, t in state.takes.sorted_items())
    liquidity += sum(o.collateral + o.deposit for _, o in state.offers.sorted_items())
    return balances + bonded + unbonding + escrowed + deposits + pools + liquidity


def check_block(
    state: LedgerState, result: BlockResult, txs: list[bytes], nonces_before: dict[bytes, int]
) -> None:
    assert result.state_hash == state.state_hash()
    state.check_invariants()
    v = state.vars
    assert held_supply(state) == v["genesis_supply"] + v["minted"] - v["burned"]
    assert all(account.balance >= 0 for _, account in state.accounts.sorted_items())
    assert all(info.bonded >= 0 for _, info in state.validators.sorted_items())
    assert all(u.amount >= 0 for _, entries in state.unbonding.sorted_items() for u in entries)

    sent: dict[bytes, list[int]] = {}
    for sender, nonce in senders_and_nonces(txs):
        sent.setdefault(sender, []).append(nonce)
    for address, account in state.accounts.sorted_items():
        before = nonces_before.get(address, 0)
        nonces = sent.pop(address, [])
        assert nonces == list(range(before + 1, before + 1 + len(nonces)))  # strictly increasing
        assert account.nonce == before + len(nonces)
    assert not sent  # every sender has an account


def play_block(chain: Chain, builder: ScenarioBuilder) -> tuple[BlockContext, list[bytes]]:
    """Build, check and commit one block (the proposer's selection if the block is invalid)."""
    state = chain.state
    ctx, txs = builder.next_block()
    before = state.state_hash()
    nonces_before = {address: account.nonce for address, account in state.accounts.sorted_items()}

    if builder.c.integer(0, 9) == 0:
        wrong = dataclasses.replace(ctx, height=ctx.height + builder.c.pick((-1, 1, 2)))
        with pytest.raises(BadBlockHeight):
            apply_block(state, wrong, txs)
        assert state.state_hash() == before

    chosen = select_txs(state, ctx, txs, max_txs=len(txs))
    assert state.state_hash() == before
    try:
        result = apply_block(state, ctx, txs)
    except LedgerError as exc:
        event(f"block rejected: {type(exc).__name__}")
        assert state.state_hash() == before  # an invalid block changes nothing
        assert exc.tx_index is not None and 0 <= exc.tx_index < len(txs)
        assert 2000 <= exc.code < 3000
        assert chosen != txs
        result = apply_block(state, ctx, chosen)  # what a proposer would have proposed applies
        txs = chosen
    else:
        event("block accepted")
        assert chosen == txs
    check_block(state, result, txs, nonces_before)
    return ctx, txs
