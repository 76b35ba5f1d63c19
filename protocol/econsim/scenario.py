"""Scenarios: the starting economy, the ledger parameters, and the agents' explicit assumptions.

A scenario is TOML (``configs/economics/*.toml``)::

    name = "baseline"
    description = "..."
    years = 10
    seed = 1
    [start]    supply, bonded_ratio, inflation, validators, requester_balance, provider_balance
    [params]   any ledger parameter, in the genesis units: "7%", "10 DCT", whole numbers
    [agents]   the behavioural assumptions (see :class:`Agents`)
    [[shocks]] at_year = 3, demand_factor = 0.3   (multiply demand from then on)

Every value is checked; every error is a :class:`ScenarioError` whose message starts with the
path of the field (``agents.outside_rate: ...``). ``--set NAME=VALUE`` overrides use the same
parser: NAME is a ledger parameter or a ``start``/``agents`` setting, VALUE is written as in the
file ("7%", "10 DCT", "0.5").

Floats appear only in the agents' behaviour (rates, speeds, elasticities); amounts are integers
of base units and reach the ledger only through the rounding rules in :mod:`protocol.econsim.agents`.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation

from protocol.econsim.errors import ScenarioError, UnknownSetting
from protocol.errors import ProtocolError
from protocol.ledger.params import AMOUNT_PARAMS, PARAM_BOUNDS, RATIO_PARAMS, Params
from protocol.units import DCT, DEC, AmountError, parse_amount, percent

#: Upper bounds that keep every simulated quantity far inside the ledger's 64-bit amounts.
MAX_YEARS = 100
MAX_SUPPLY = 10**18  # base units: 10^9 DCT
MAX_COUNT = 1_000_000


@dataclass(frozen=True, slots=True)
class Start:
    """The economy at the first block (or a real chain's totals, see ``EconomyStart``)."""

    supply: int = 100_000_000 * DCT
    bonded_ratio: int = percent(30)
    inflation: int = percent(13)
    #: Validators the bonded stake is spread over, equally (the kernel's one-division path).
    validators: int = 4
    requester_balance: int = 2_000_000 * DCT
    provider_balance: int = 200_000 * DCT


@dataclass(frozen=True, slots=True)
class Agents:
    """The behavioural assumptions, each an explicit parameter. Rates are per year."""

    #: Blocks between two agent decisions, in days of blocks (``blocks_per_year / 365.25``).
    step_days: int = 1
    # Staking: holders bond while the staking yield beats the outside rate, unbond when not.
    outside_rate: float = 0.05
    #: Share of liquid holdings bonded per year per unit of relative yield gap.
    bond_speed: float = 2.0
    #: Share of the bonded stake unbonded per year per unit of relative yield shortfall.
    unbond_speed: float = 2.0
    #: Holders never bond more than this share of the supply (they keep liquidity).
    max_bonded_ratio: float = 0.9
    # Providers: join while earnings per GPU-hour beat their cost, leave while they do not.
    providers: int = 200
    gpus_per_provider: int = 8
    max_providers: int = 20_000
    provider_cost_per_gpu_hour: int = DCT // 2
    #: Share of providers joining (leaving) per year per unit of relative margin (loss).
    provider_join_speed: float = 1.5
    provider_leave_speed: float = 3.0
    # Requesters: demand grows, reacts to price (elasticity at the reference price), has noise.
    demand_gpu_hours_per_day: float = 20_000.0
    #: Yearly growth rate of demand, compounded each step (0.3: about 35% a year).
    demand_growth: float = 0.3
    demand_elasticity: float = 1.0
    reference_price_per_gpu_hour: int = DCT
    #: Uniform noise of each step's demand: a factor in [1 - noise, 1 + noise], from the seed.
    demand_noise: float = 0.1
    # Pricing: price = floor * (1 + slope * utilization ** exponent), from last step's utilization.
    price_floor_per_gpu_hour: int = 6 * DCT // 10
    price_slope: float = 1.5
    price_exponent: int = 2
    #: Share of the gap to the curve's price closed each step (providers anchor on the recent
    #: price rather than jumping; 1.0 jumps at once and oscillates with demand).
    price_adjustment: float = 0.25
    # Other transactions and market risk.
    tx_per_day: int = 100_000
    fee_per_tx: int = 100_000
    #: Share of demand whose jobs fail: the escrow is refunded and collateral slashed.
    failed_job_share: float = 0.01
    #: Provider collateral as a share of a contract's maximum cost.
    collateral_share: float = 0.1
    # Liquidity (issue 17): a DCT/TUSD pool, liquidity mining and standing offers, all off by
    # default. The shares of issuance they earn are the ledger parameters
    # ``liquidity_mining_share`` and ``availability_share``; every epoch's end while shares are
    # bonded or an offer stands is a block ``apply_block`` applies (the payouts walk them), so a
    # scenario with them on wants a longer ``epoch_length`` than one block-minute.
    #: DCT the liquidity providers (bought from the holders) deposit into the pool in the first
    #: step, with ``pool_asset_per_dct`` TUSD per DCT minted by the stable unit's issuer.
    pool_dct: int = 0
    pool_asset_per_dct: float = 1.0
    #: Share of the liquidity providers' pool shares bonded to liquidity mining (from step 1).
    mining_bonded_share: float = 1.0
    #: DCT a trader swaps through the pool per day, alternately selling DCT and buying it back.
    swap_dct_per_day: float = 0.0
    #: GPUs the provider keeps in a standing offer (re-posted when it ends), at the step's price,
    #: with ``standing_collateral_per_gpu`` each; it earns the availability share.
    standing_gpus: int = 0


@dataclass(frozen=True, slots=True)
class Shock:
    """From ``at_year`` on, demand is multiplied by ``demand_factor`` and, when given, grows at
    ``demand_growth`` a year instead of the scenario's rate."""

    at_year: float
    demand_factor: float = 1.0
    demand_growth: float | None = None


#: One-second blocks, as the testnet genesis (configs/genesis.toml).
ONE_SECOND_BLOCKS = 31_557_600


@dataclass(frozen=True, slots=True)
class Scenario:
    """Defaults: the baseline (configs/economics/baseline.toml says the same, value by value)."""

    name: str = "baseline"
    description: str = ""
    years: float = 10.0
    seed: int = 1
    start: Start = field(default_factory=Start)
    params: Params = field(default_factory=lambda: Params(blocks_per_year=ONE_SECOND_BLOCKS))
    agents: Agents = field(default_factory=Agents)
    shocks: tuple[Shock, ...] = ()

    def with_setting(self, name: str, text: str) -> Scenario:
        """A copy with one ``--set NAME=VALUE`` applied. Raises UnknownSetting, ScenarioError."""
        bare = name.removeprefix("params.").removeprefix("start.").removeprefix("agents.")
        if name.startswith("params.") or (bare in PARAM_BOUNDS and "." not in name):
            if bare not in PARAM_BOUNDS:
                raise UnknownSetting(f"{name}: not a ledger parameter")
            value = ledger_value(bare, text, f"params.{bare}")
            return dataclasses.replace(self, params=_checked_params(self.params, {bare: value}))
        if bare in _START_RULES and name in (bare, f"start.{bare}"):
            start = _section(Start, {bare: text}, "start", base=self.start)
            assert isinstance(start, Start)
            return dataclasses.replace(self, start=start)
        if bare in _AGENT_RULES and name in (bare, f"agents.{bare}"):
            agents = _section(Agents, {bare: text}, "agents", base=self.agents)
            assert isinstance(agents, Agents)
            return dataclasses.replace(self, agents=agents)
        known = sorted({*PARAM_BOUNDS, *(f.name for f in fields(Start)), *(f.name for f in fields(Agents))})
        raise UnknownSetting(f"{name}: unknown setting; one of: {', '.join(known)}")


def ledger_value(name: str, value: object, path: str) -> int:
    """A ledger parameter's value in the genesis units. Raises ScenarioError."""
    if isinstance(value, str):
        text = value.strip()
        if name in RATIO_PARAMS and text.endswith("%"):
            return _percent(text, path)
        if name in AMOUNT_PARAMS:
            return _amount(text, path)
        if text.isascii() and text.isdigit() and len(text) <= 40:
            return int(text)
        raise ScenarioError(f"{path}: {value!r} is not a value for {name}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"{path}: expected an integer or a string, got {value!r}")
    return value


def _percent(text: str, path: str) -> int:
    try:
        number = Decimal(text[:-1].strip())
    except InvalidOperation:
        raise ScenarioError(f"{path}: {text!r} is not a percentage") from None
    if not number.is_finite() or not 0 <= number <= 100:
        raise ScenarioError(f"{path}: {text!r} is not a percentage between 0% and 100%")
    return percent(str(number))


def _amount(text: str, path: str) -> int:
    try:
        return parse_amount(text)
    except AmountError as exc:
        raise ScenarioError(f"{path}: {exc.message}") from None


def _checked_params(params: Params, changes: Mapping[str, int]) -> Params:
    try:
        return dataclasses.replace(params, **changes)
    except ProtocolError as exc:
        raise ScenarioError(exc.message) from None


def _float(value: object, path: str, low: float, high: float) -> float:
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(Decimal(text[:-1]) / 100) if text.endswith("%") else float(Decimal(text))
        except InvalidOperation:
            raise ScenarioError(f"{path}: {value!r} is not a number") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ScenarioError(f"{path}: expected a number, got {value!r}")
    if not math.isfinite(number) or not low <= number <= high:
        raise ScenarioError(f"{path}: {number} is outside [{low}, {high}]")
    return number


def _int(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 40):
            raise ScenarioError(f"{path}: expected a whole number, got {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"{path}: expected a whole number, got {value!r}")
    if not low <= value <= high:
        raise ScenarioError(f"{path}: {value} is outside [{low}, {high}]")
    return value


def _amount_value(value: object, path: str, low: int, high: int) -> int:
    amount = _amount(value, path) if isinstance(value, str) else _int(value, path, low, high)
    if not low <= amount <= high:
        raise ScenarioError(f"{path}: {amount} base units is outside [{low}, {high}]")
    return amount


#: (kind, low, high) per field: "amount" (DCT strings or base units), "ratio" (a DEC ratio,
#: "30%"), "int", "float" (plain or "5%").
_START_RULES: dict[str, tuple[str, int | float, int | float]] = {
    "supply": ("amount", DCT, MAX_SUPPLY),
    "bonded_ratio": ("ratio", 0, DEC),
    "inflation": ("ratio", 0, DEC),
    "validators": ("int", 1, 100),
    "requester_balance": ("amount", 0, MAX_SUPPLY),
    "provider_balance": ("amount", 0, MAX_SUPPLY),
}
_AGENT_RULES: dict[str, tuple[str, int | float, int | float]] = {
    "step_days": ("int", 1, 365),
    "outside_rate": ("float", 0.0, 10.0),
    "bond_speed": ("float", 0.0, 365.0),
    "unbond_speed": ("float", 0.0, 365.0),
    "max_bonded_ratio": ("float", 0.0, 1.0),
    "providers": ("int", 1, MAX_COUNT),
    "gpus_per_provider": ("int", 1, 1_000),
    "max_providers": ("int", 1, MAX_COUNT),
    "provider_cost_per_gpu_hour": ("amount", 0, 10**6 * DCT),
    "provider_join_speed": ("float", 0.0, 365.0),
    "provider_leave_speed": ("float", 0.0, 365.0),
    "demand_gpu_hours_per_day": ("float", 0.0, 1e9),
    "demand_growth": ("float", -0.99, 100.0),
    "demand_elasticity": ("float", 0.0, 100.0),
    "reference_price_per_gpu_hour": ("amount", 1, 10**6 * DCT),
    "demand_noise": ("float", 0.0, 0.99),
    "price_floor_per_gpu_hour": ("amount", 0, 10**6 * DCT),
    "price_slope": ("float", 0.0, 1_000.0),
    "price_exponent": ("int", 0, 16),
    "price_adjustment": ("float", 0.01, 1.0),
    "tx_per_day": ("int", 0, 10**9),
    "fee_per_tx": ("amount", 0, 10**6 * DCT),
    "failed_job_share": ("float", 0.0, 1.0),
    "collateral_share": ("float", 0.0, 10.0),
    "pool_dct": ("amount", 0, MAX_SUPPLY),
    "pool_asset_per_dct": ("float", 1e-6, 1e6),
    "mining_bonded_share": ("float", 0.0, 1.0),
    "swap_dct_per_day": ("float", 0.0, 1e9),
    "standing_gpus": ("int", 0, 1_024),
}


def _section(kind: type[Start] | type[Agents], raw: Mapping[str, object], path: str, base: object) -> object:
    rules = _START_RULES if kind is Start else _AGENT_RULES
    values: dict[str, object] = {}
    for name in sorted(raw):
        if name not in rules:
            raise ScenarioError(f"{path}.{name}: unknown setting")
        rule, low, high = rules[name]
        where = f"{path}.{name}"
        value = raw[name]
        if rule == "amount":
            values[name] = _amount_value(value, where, int(low), int(high))
        elif rule == "ratio":
            if isinstance(value, str) and value.strip().endswith("%"):
                values[name] = _percent(value.strip(), where)
            else:
                values[name] = _int(value, where, int(low), int(high))
        elif rule == "int":
            values[name] = _int(value, where, int(low), int(high))
        else:
            values[name] = _float(value, where, float(low), float(high))
    return dataclasses.replace(base, **values)  # type: ignore[type-var]


def parse_scenario(text: str, *, source: str = "scenario") -> Scenario:
    """Parse a scenario's TOML text. Raises ScenarioError naming the field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    return scenario_from_dict(doc)


def scenario_from_dict(doc: Mapping[str, object]) -> Scenario:
    """Validate a parsed scenario document. Raises ScenarioError naming the field."""
    known = {"name", "description", "years", "seed", "start", "params", "agents", "shocks"}
    for key in sorted(doc):
        if key not in known:
            raise ScenarioError(f"{key}: unknown field")
    name = doc.get("name", "custom")
    description = doc.get("description", "")
    if not isinstance(name, str) or not 0 < len(name) <= 64 or not name.isprintable():
        raise ScenarioError("name: a printable string of 1 to 64 characters")
    if not isinstance(description, str) or len(description) > 2_000:
        raise ScenarioError("description: a string of at most 2000 characters")
    years = _float(doc.get("years", 10), "years", 0.0, MAX_YEARS)
    seed = _int(doc.get("seed", 1), "seed", 0, 2**64 - 1)
    tables = {}
    for section in ("start", "params", "agents"):
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise ScenarioError(f"{section}: expected a table")
        tables[section] = table
    start = _section(Start, tables["start"], "start", Start())
    agents = _section(Agents, tables["agents"], "agents", Agents())
    param_values = {}
    for param in sorted(tables["params"]):
        if param not in PARAM_BOUNDS:
            raise ScenarioError(f"params.{param}: unknown parameter")
        param_values[param] = ledger_value(param, tables["params"][param], f"params.{param}")
    params = _checked_params(Scenario().params, param_values)
    raw_shocks = doc.get("shocks", [])
    if not isinstance(raw_shocks, list) or len(raw_shocks) > 100:
        raise ScenarioError("shocks: a list of at most 100 tables")
    shocks = []
    for index, item in enumerate(raw_shocks):
        where = f"shocks[{index}]"
        if not isinstance(item, dict) or "at_year" not in item:
            raise ScenarioError(f"{where}: a table with at_year (and demand_factor, demand_growth)")
        for key in sorted(item):
            if key not in ("at_year", "demand_factor", "demand_growth"):
                raise ScenarioError(f"{where}.{key}: unknown field")
        growth = item.get("demand_growth")
        shocks.append(
            Shock(
                _float(item["at_year"], f"{where}.at_year", 0.0, MAX_YEARS),
                _float(item.get("demand_factor", 1.0), f"{where}.demand_factor", 0.0, 1_000.0),
                None if growth is None else _float(growth, f"{where}.demand_growth", -0.99, 100.0),
            )
        )
    assert isinstance(start, Start) and isinstance(agents, Agents)
    return Scenario(
        name, description, years, seed, start, params, agents, tuple(sorted(shocks, key=lambda s: s.at_year))
    )
