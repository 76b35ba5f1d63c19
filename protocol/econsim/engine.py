"""Running a scenario: agents decide once per step, the ledger applies what they do.

Each step (``agents.step_days`` days of blocks) is one agent block followed by empty blocks:

1. The agent block carries real signed transactions, applied by ``apply_block``: refunds of last
   step's failed jobs (collateral slashed), the provider selling its earnings to buyers, holders
   topping up the buyers, an escrow opened and settled for the compute sold (the protocol fee
   burned, the GPU-seconds credited to the provider's epoch work), an escrow for the failed
   share of demand (left to expire), one transaction carrying the step's other fees, and the
   holders' stake or unstake, split equally over the validators.
2. The empty blocks run through :class:`SimChain` (the kernel, plus ``apply_block`` for the
   provider payout at the epoch boundary and the unbonding releases).
3. At the step's last block the engine measures what the agents react to (the staking yield,
   the provider's income per GPU-hour, utilization) and records one :class:`Row`.

Entry points: :func:`simulate` runs a scenario from its own start; :func:`run_from` runs from any
:class:`EconomyStart` (a real chain's totals); :func:`preview` runs from one start twice, with and
without one parameter change, for ``gov propose ... --preview``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from protocol import economics
from protocol.contracts import OUTCOME_COMPLETED, ContractTerms, SignedContract, UsageReceipt
from protocol.crypto import PrivateKey
from protocol.econsim import agents as model
from protocol.econsim.chain import SimChain
from protocol.econsim.economy import CHAIN_ID, EconomyStart, actor_key, build_state, validator_labels
from protocol.econsim.errors import ScenarioError, SimulationError
from protocol.econsim.liquidity import LiquidityAgents
from protocol.econsim.scenario import Scenario
from protocol.ledger.errors import LedgerError
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import Msg, OpenEscrow, Refund, Settle, Stake, Transfer, Unstake, decode_tx, sign_tx
from protocol.sim.rng import SplitMix64
from protocol.units import DEC

_GPU = ("GPU-econsim-0000-0000-0000-000000000000",)


@dataclass(frozen=True, slots=True)
class Row:
    """The economy at the end of one step. Ledger amounts are base units, ratios DEC-scaled."""

    step: int
    day: int
    height: int
    supply: int
    minted: int
    burned: int
    inflation: int
    bonded: int
    bonded_ratio: int
    community_pool: int
    provider_pool: int
    issued: int  # minted during the step
    burned_step: int  # burned during the step (fees, protocol fee, slashes)
    fees: int  # transaction fees paid during the step
    staking_yield: float  # annualized validator income / bonded
    providers: int
    gpus: int
    utilization: float
    price_per_gpu_hour: int  # the integer price per GPU-second x 3600
    demand_gpu_hours: float
    served_gpu_hours: float
    provider_income_per_gpu_hour: float  # base units
    # Liquidity (protocol.econsim.liquidity); zeros when the scenario has none.
    pool_dct: int = 0
    pool_price: int = 0  # TUSD base units per DCT, spot at the step's end
    mining_rewards: int = 0  # paid to liquidity mining during the step
    availability_rewards: int = 0  # paid to the standing offer during the step
    standing_gpus: int = 0


@dataclass(frozen=True, slots=True)
class Run:
    scenario: Scenario
    seed: int
    rows: tuple[Row, ...]
    kernel_blocks: int
    ledger_blocks: int
    #: Spans the kernel computed through the economics functions because its fast path
    #: disagreed with them (exact either way; non-zero means kernel.py must follow a rule change).
    fallback_spans: int = 0


@dataclass(frozen=True, slots=True)
class Preview:
    """Two runs from one start: the parameters as they are, and with ``param`` set to ``value``."""

    param: str
    value: int
    base: Run
    changed: Run


class _Economy:
    """The mutable run: the chain, the agents' state, and transaction building."""

    def __init__(self, scenario: Scenario, state: LedgerState, seed: int) -> None:
        self.scenario = scenario
        self.agents = scenario.agents
        self.chain = SimChain(state, prune_closed_contracts=True)
        self.rng = SplitMix64(seed)
        self.validators = [actor_key(label) for label in validator_labels(scenario.start.validators)]
        self.requester = actor_key("requester")
        self.provider = actor_key("provider")
        self.providers = self.agents.providers
        self.base_demand = self.agents.demand_gpu_hours_per_day
        self.utilization = 0.5
        self.price_hour = model.price_per_gpu_hour(scenario.agents, self.utilization)
        #: Last step's failed contracts, to refund: (hash, max cost, collateral).
        self.failed: list[tuple[bytes, int, int]] = []
        self.locked_collateral = 0
        self.staking_yield = scenario.agents.outside_rate
        self.nonces: dict[bytes, int] = {}
        self.step_blocks = max(1, state.params.blocks_per_year * self.agents.step_days * 100 // 36_525)
        self.liquidity = LiquidityAgents(self.agents, state, self.step_blocks)

    @property
    def state(self) -> LedgerState:
        return self.chain.state

    def tx(self, key: PrivateKey, msg: Msg) -> bytes:
        """``msg`` signed by ``key`` with its next nonce in the block being built."""
        address = key.address.raw
        nonce = self.nonces.get(address, self.state.account(address).nonce) + 1
        self.nonces[address] = nonce
        return sign_tx(key, CHAIN_ID, nonce, self.state.params.min_fee, msg)

    def holdings(self) -> int:
        """Everything the holders own: validators' balances, bonded and unbonding stake, and the
        validators' rewards not yet compounded."""
        state = self.state
        return (
            sum(state.balance(k.address.raw) for k in self.validators)
            + state.vars["total_bonded"]
            + state.vars["total_unbonding"]
            + state.vars["total_rewards"]
        )

    def contract(
        self, step: int, tag: bytes, price: int, gpu_seconds: int, collateral: int, deadline: int
    ) -> ContractTerms:
        return ContractTerms(
            chain_id=CHAIN_ID,
            requester=self.requester.public_key.raw,
            provider=self.provider.public_key.raw,
            job_hash=hashlib.sha256(b"econsim/job/" + tag + step.to_bytes(8, "big")).digest(),
            gpu_uuids=_GPU,
            price_per_gpu_second=price,
            max_gpu_seconds=gpu_seconds,
            collateral=collateral,
            deadline_height=deadline,
            salt=tag + step.to_bytes(8, "big"),
        )

    def step(self, step: int) -> Row:
        agents, state = self.agents, self.state
        fee = state.params.min_fee
        height = state.height + 1
        year = step * agents.step_days / model.DAYS_PER_YEAR
        capacity = self.providers * agents.gpus_per_provider * 24.0 * agents.step_days
        self.price_hour = model.next_price(agents, self.price_hour, self.utilization)
        price = max(1, model.floor_amount(self.price_hour / model.SECONDS_PER_HOUR))
        demand = (
            self.base_demand
            * agents.step_days
            * model.demand_factor(agents, price * model.SECONDS_PER_HOUR)
            * model.shock_factor(self.scenario.shocks, year)
            * model.noise_factor(agents, self.rng)
        )
        served = min(demand, capacity)
        failed_seconds = model.floor_amount(served * agents.failed_job_share * model.SECONDS_PER_HOUR)
        settled_seconds = model.floor_amount(served * model.SECONDS_PER_HOUR) - failed_seconds
        self.nonces.clear()
        flows = _Flows()
        requester, provider = self.requester.address.raw, self.provider.address.raw
        # Last step's failed jobs are refunded: the buyers get their deposit back, the provider
        # its collateral less the slash (the ledger computes it; here only what comes back).
        txs = [self.tx(self.requester, Refund(contract_hash)) for contract_hash, _, _ in self.failed]
        requester_funds = state.balance(requester) + sum(max_cost for _, max_cost, _ in self.failed)
        provider_funds = state.balance(provider)
        standing = self.liquidity.provider_moves(state, height, price, provider_funds, self.tx)
        txs.extend(standing.txs)
        provider_funds -= standing.locked + len(standing.txs) * fee
        flows.provider += standing.locked + len(standing.txs) * fee
        self.failed = []
        locked_before = self.locked_collateral
        self.locked_collateral = 0
        share = agents.collateral_share
        collateral_ok = model.floor_amount(price * settled_seconds * share)
        collateral_failed = model.floor_amount(price * failed_seconds * share)
        # The provider sells what it earned above its working balance (and this step's
        # collateral) to the buyers; it posts no more collateral than it holds.
        keep = max(self.scenario.start.provider_balance, collateral_ok + collateral_failed) + 10 * fee
        surplus = provider_funds - keep
        if surplus > 0:
            txs.append(self.tx(self.provider, Transfer(requester, surplus)))
            flows.provider += surplus + fee
            requester_funds += surplus
        available = min(provider_funds, keep) - 10 * fee
        collateral_ok = max(0, min(collateral_ok, available))
        collateral_failed = max(0, min(collateral_failed, available))
        other_fees = max(agents.fee_per_tx, fee) * agents.tx_per_day * agents.step_days
        spend = price * (settled_seconds + failed_seconds)
        # Buyers buy from the holders when the step's spending would leave them short.
        topups: dict[bytes, int] = {}
        shortfall = 2 * (spend + other_fees) + 10 * fee - requester_funds
        if shortfall > 0:
            # Each holder sells its share, or what it has left when that is less.
            wanted = shortfall // len(self.validators) + 1
            for key in self.validators:
                topup = min(wanted, state.balance(key.address.raw) - 5 * fee)
                if topup > 0:
                    txs.append(self.tx(key, Transfer(requester, topup)))
                    topups[key.address.raw] = topup + fee
                    flows.holders += topup + fee
                    requester_funds += topup
        # Buyers never spend more than they hold: the fees first, then compute, scaled down.
        other_fees = min(other_fees, max(0, requester_funds // 2))
        budget = requester_funds - other_fees - 10 * fee
        if spend > budget:
            scale = max(budget, 0) / spend
            settled_seconds = model.floor_amount(settled_seconds * scale)
            failed_seconds = model.floor_amount(failed_seconds * scale)
            collateral_ok = min(collateral_ok, model.floor_amount(price * settled_seconds * share))
            collateral_failed = min(collateral_failed, model.floor_amount(price * failed_seconds * share))
            served = (settled_seconds + failed_seconds) / model.SECONDS_PER_HOUR
        if settled_seconds > 0:
            terms = self.contract(step, b"ok", price, settled_seconds, collateral_ok, height + 2)
            txs.append(self.tx(self.requester, OpenEscrow(_signed(terms, self))))
            receipt = UsageReceipt(
                chain_id=CHAIN_ID,
                contract_hash=terms.contract_hash(),
                outcome=OUTCOME_COMPLETED,
                gpu_ms=settled_seconds * 1000,
                exit_status=0,
                output_hash=bytes(32),
            )
            settle = Settle(receipt, receipt.sign(self.provider), receipt.sign(self.requester))
            txs.append(self.tx(self.provider, settle))
            flows.provider += fee
        if failed_seconds > 0:
            terms = self.contract(step, b"failed", price, failed_seconds, collateral_failed, height + 1)
            txs.append(self.tx(self.requester, OpenEscrow(_signed(terms, self))))
            self.failed.append((terms.contract_hash(), terms.max_cost, terms.collateral))
            self.locked_collateral += terms.collateral
        if other_fees >= fee:
            # One transaction carries the step's other fees: the ledger splits a block's summed
            # fees, so this burns exactly what many smaller transactions in one block would.
            nonce = self.nonces.get(requester, state.account(requester).nonce) + 1
            self.nonces[requester] = nonce
            txs.append(sign_tx(self.requester, CHAIN_ID, nonce, other_fees, Transfer(provider, 1)))
            flows.provider -= 1
        self._stake_txs(txs, topups, flows)
        liquidity_txs = self.liquidity.market_txs(state, step, height, self.validators[0], self.tx)
        # The holders' DCT that buys into the pool is a purchase, not a loss of their income.
        flows.holders += sum(
            decoded.msg.amount + decoded.fee
            for decoded in map(decode_tx, liquidity_txs)
            if decoded.sender == self.validators[0].address.raw and isinstance(decoded.msg, Transfer)
        )
        txs.extend(liquidity_txs)
        paid_before = dict(self.chain.liquidity_paid)
        holdings_before = self.holdings()
        provider_before = state.balance(provider) + locked_before
        minted, burned = state.vars["minted"], state.vars["burned"]
        # Every transaction here was signed a moment ago by the simulator's own keys: checking
        # those signatures again tells nothing about the economy (contracts and receipts inside
        # them are still verified by the ledger), and was a sixth of a simulated day's cost.
        own = {hashlib.sha256(raw).digest() for raw in txs}
        try:
            result = self.chain.apply(txs, verified=lambda tx: tx.hash in own)
        except LedgerError as exc:
            raise SimulationError(f"step {step}: the ledger refused the agents' block: {exc!r}") from None
        self.chain.advance_to(height - 1 + self.step_blocks)
        # What the agents observe at the end of the step.
        bonded = state.vars["total_bonded"]
        per_year = model.DAYS_PER_YEAR / agents.step_days
        validator_income = self.holdings() - holdings_before + flows.holders
        staking_yield = validator_income / bonded * per_year if bonded > 0 else 0.0
        gpus = self.providers * agents.gpus_per_provider
        provider_income = state.balance(provider) + self.locked_collateral - provider_before + flows.provider
        income_per_gpu_hour = provider_income / (gpus * 24.0 * agents.step_days)
        supply = state.total_supply()
        pool_dct, pool_price = self.liquidity.pool_figures(state)
        row = Row(
            step=step,
            day=(step + 1) * agents.step_days,
            height=state.height,
            supply=supply,
            minted=state.vars["minted"],
            burned=state.vars["burned"],
            inflation=state.vars["inflation"],
            bonded=bonded,
            bonded_ratio=economics.bonded_ratio(bonded, supply),
            community_pool=state.vars["community_pool"],
            provider_pool=state.vars["provider_pool"],
            issued=state.vars["minted"] - minted,
            burned_step=state.vars["burned"] - burned,
            fees=result.fees,
            staking_yield=staking_yield,
            providers=self.providers,
            gpus=gpus,
            utilization=served / capacity if capacity > 0 else 0.0,
            price_per_gpu_hour=price * model.SECONDS_PER_HOUR,
            demand_gpu_hours=demand,
            served_gpu_hours=served,
            provider_income_per_gpu_hour=income_per_gpu_hour,
            pool_dct=pool_dct,
            pool_price=pool_price,
            mining_rewards=self._paid_since(paid_before, self.liquidity.lp.address.raw),
            availability_rewards=self._paid_since(paid_before, provider),
            standing_gpus=self.liquidity.standing_gpus(state),
        )
        # Decisions for the next step.
        self.utilization = row.utilization
        self.staking_yield = staking_yield
        growth = model.demand_growth(agents, self.scenario.shocks, year)
        self.base_demand *= 1.0 + growth * agents.step_days / model.DAYS_PER_YEAR
        self.providers = model.provider_change(
            agents,
            providers=self.providers,
            income_per_gpu_hour=income_per_gpu_hour,
            step_days=agents.step_days,
            rng=self.rng,
        )
        return row

    def _paid_since(self, before: dict[bytes, int], address: bytes) -> int:
        return self.chain.liquidity_paid.get(address, 0) - before.get(address, 0)

    def _stake_txs(self, txs: list[bytes], topups: dict[bytes, int], flows: _Flows) -> None:
        """Append the holders' stake or unstake, equal for every validator."""
        state = self.state
        fee = state.params.min_fee
        liquid = sum(
            max(0, state.balance(key.address.raw) - topups.get(key.address.raw, 0) - 4 * fee)
            for key in self.validators
        )
        decision = model.staking_decision(
            self.agents,
            staking_yield=self.staking_yield,
            bonded=state.vars["total_bonded"],
            liquid=liquid,
            supply=state.total_supply(),
            step_days=self.agents.step_days,
        )
        per_validator = abs(decision.amount) // len(self.validators)
        if decision.amount > 0:
            per_validator = min(
                [per_validator]
                + [
                    state.balance(key.address.raw) - topups.get(key.address.raw, 0) - 4 * fee
                    for key in self.validators
                ]
            )
        if per_validator <= 0:
            return
        for key in self.validators:
            txs.append(self.tx(key, Stake(per_validator) if decision.amount > 0 else Unstake(per_validator)))
            flows.holders += fee


@dataclass(slots=True)
class _Flows:
    """What left the holders and the provider in the agent block other than as a loss."""

    holders: int = 0
    provider: int = 0


def _signed(terms: ContractTerms, economy: _Economy) -> SignedContract:
    return SignedContract(terms, terms.sign(economy.requester), terms.sign(economy.provider))


def run_from(
    origin: EconomyStart, scenario: Scenario, *, years: float | None = None, seed: int | None = None
) -> Run:
    """Simulate ``years`` (default: the scenario's) from ``origin``. Raises ScenarioError,
    SimulationError, KernelMismatch."""
    chosen_seed = scenario.seed if seed is None else seed
    state = build_state(origin, scenario.start)
    economy = _Economy(scenario, state, chosen_seed)
    total_years = scenario.years if years is None else years
    if not 0 <= total_years <= 100:
        raise ScenarioError(f"years: {total_years} is outside [0, 100]")
    steps = int(total_years * model.DAYS_PER_YEAR) // scenario.agents.step_days
    rows = tuple(economy.step(index) for index in range(steps))
    chain = economy.chain
    return Run(scenario, chosen_seed, rows, chain.kernel_blocks, chain.ledger_blocks, chain.functions_spans)


def simulate(scenario: Scenario, *, years: float | None = None, seed: int | None = None) -> Run:
    """Run a scenario from its own start (a fresh genesis)."""
    return run_from(
        EconomyStart.from_start(scenario.start, scenario.params), scenario, years=years, seed=seed
    )


def preview(
    origin: EconomyStart, scenario: Scenario, param: str, value: int, *, years: float, seed: int | None = None
) -> Preview:
    """Run from ``origin`` with its parameters, and again with ``param`` set to ``value``
    (same seed, same agents): the two series a governance vote chooses between.

    Raises ScenarioError (an unknown parameter or a value the ledger would refuse), and what
    :func:`run_from` raises."""
    try:
        changed_params = origin.params.with_value(param, value)
    except LedgerError as exc:
        raise ScenarioError(f"params.{param}: {exc.message}") from None
    base = run_from(origin, scenario, years=years, seed=seed)
    changed = run_from(dataclasses.replace(origin, params=changed_params), scenario, years=years, seed=seed)
    return Preview(param, value, base, changed)


__all__ = ["DEC", "Preview", "Row", "Run", "preview", "run_from", "simulate"]
