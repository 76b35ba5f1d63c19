"""Genesis: the chain id, initial allocations, initial validators and stakes, and parameters.

Genesis files are TOML or JSON. Amounts are integers in base units or strings such as
``"1000 DCT"``; ratio parameters accept ``"33.4%"``. Every problem is a :class:`GenesisError` whose
message starts with the path of the field that is wrong, e.g. ``accounts[2].balance: ...``.

Format
------

TOML or JSON; amounts as base units or ``"1000 DCT"``, ratios as ``"33.4%"``. Every error names the
field path (``accounts[2].address: address checksum does not match: mistyped?``). The local testnet
genesis uses development keys derived from public labels; ``dcent genesis validate FILE`` checks a
file.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

from protocol.crypto import Address, InvalidAddressError, address_of
from protocol.encoding import encode
from protocol.errors import ProtocolError
from protocol.ledger.errors import GenesisError
from protocol.ledger.liquidity_state import Asset
from protocol.ledger.params import AMOUNT_PARAMS, RATIO_PARAMS, Params
from protocol.ledger.pool import MAX_ASSETS
from protocol.ledger.state import Account, LedgerState, SigningInfo, ValidatorInfo
from protocol.ledger.tx import MAX_MONIKER, AssetPropose
from protocol.units import DEC, MAX_AMOUNT, AmountError, format_ratio, parse_amount, percent

DEFAULT_INFLATION = percent(13)


@dataclass(frozen=True, slots=True)
class GenesisAccount:
    address: bytes
    balance: int


#: Commission terms of a genesis validator unless its entry says otherwise.
GENESIS_COMMISSION = percent(10)
GENESIS_MAX_COMMISSION = percent(20)
GENESIS_MAX_COMMISSION_CHANGE = percent(1)


@dataclass(frozen=True, slots=True)
class GenesisValidator:
    """A validator at height 0: its operator is the account of ``public_key``, which is also its
    consensus key, and ``stake`` is its operator's self-delegation."""

    public_key: bytes
    stake: int
    commission: int = GENESIS_COMMISSION
    moniker: str = ""

    @property
    def address(self) -> bytes:
        return address_of(self.public_key)


@dataclass(frozen=True, slots=True)
class GenesisAsset:
    """An asset registered from height 0 (issue 17): a testnet's stable unit, issued (minted) by
    ``issuer`` alone, e.g. the faucet's account. Later assets are registered by governance."""

    symbol: str
    issuer: bytes


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    accounts: tuple[GenesisAccount, ...]
    validators: tuple[GenesisValidator, ...]
    params: Params = field(default_factory=Params)
    inflation: int = DEFAULT_INFLATION
    assets: tuple[GenesisAsset, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready document that :meth:`from_dict` reads back unchanged."""
        return {
            "chain_id": self.chain_id,
            "inflation": self.inflation,
            "params": self.params.to_wire(),
            "accounts": [{"address": str(Address(a.address)), "balance": a.balance} for a in self.accounts],
            "validators": [
                {
                    "commission": v.commission,
                    "moniker": v.moniker,
                    "public_key": v.public_key.hex(),
                    "stake": v.stake,
                }
                for v in self.validators
            ],
        } | self._assets_dict()

    def _assets_dict(self) -> dict[str, object]:
        # Only when there are any: the hash of every genesis without assets stays what it was.
        if not self.assets:
            return {}
        return {"assets": [{"issuer": str(Address(a.issuer)), "symbol": a.symbol} for a in self.assets]}

    def genesis_hash(self) -> bytes:
        return hashlib.sha256(encode(self.to_dict())).digest()

    @classmethod
    def from_dict(cls, doc: Mapping[str, object]) -> Genesis:
        """Validate a parsed genesis document. Raises :class:`GenesisError` naming the field."""
        return _parse(doc)

    @classmethod
    def from_text(cls, text: str, *, fmt: str) -> Genesis:
        """Parse TOML (``fmt="toml"``) or JSON (``fmt="json"``) text."""
        try:
            doc = tomllib.loads(text) if fmt == "toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise GenesisError(f"genesis: not valid {fmt.upper()}: {exc}") from None
        if not isinstance(doc, dict):
            raise GenesisError("genesis: the document must be a table/object")
        return _parse(doc)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _fail(path: str, message: str) -> GenesisError:
    return GenesisError(f"{path}: {message}")


def _amount(value: object, path: str) -> int:
    if isinstance(value, bool):
        raise _fail(path, "expected an amount")
    if isinstance(value, int):
        if not 0 <= value < 2**63:
            raise _fail(path, "amount out of range")
        return value
    if isinstance(value, str):
        try:
            return parse_amount(value)
        except AmountError as exc:
            raise _fail(path, exc.message) from None
    raise _fail(path, f"expected an amount, got {type(value).__name__}")


def _param_value(name: str, value: object, path: str) -> int:
    if isinstance(value, str) and name in RATIO_PARAMS and value.strip().endswith("%"):
        try:
            return percent(value.strip()[:-1])
        except (ArithmeticError, ValueError):  # int(Decimal("NaN")) is a ValueError
            raise _fail(path, f"not a percentage: {value!r}") from None
    if isinstance(value, str) and name in AMOUNT_PARAMS:
        return _amount(value, path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"expected an integer, got {value!r}")
    return value


def _table_list(doc: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _fail(key, "expected a list of tables")
    return value


def _parse(doc: Mapping[str, object]) -> Genesis:
    known = {"chain_id", "accounts", "validators", "params", "inflation", "assets"}
    for key in sorted(doc):
        if key not in known:
            raise _fail(key, "unknown field")
    chain_id = doc.get("chain_id")
    if not isinstance(chain_id, str) or not 1 <= len(chain_id) <= 64 or not chain_id.isprintable():
        raise _fail("chain_id", "a non-empty printable string of at most 64 characters")

    accounts = []
    for i, item in enumerate(_table_list(doc, "accounts")):
        path = f"accounts[{i}]"
        extra = sorted(set(item) - {"address", "balance"})
        if extra:
            raise _fail(f"{path}.{extra[0]}", "unknown field")
        address_text = item.get("address")
        if not isinstance(address_text, str):
            raise _fail(f"{path}.address", "missing or not a string")
        try:
            address = Address.parse(address_text).raw
        except InvalidAddressError as exc:
            raise _fail(f"{path}.address", exc.message) from None
        accounts.append(GenesisAccount(address, _amount(item.get("balance"), f"{path}.balance")))
    if len({a.address for a in accounts}) != len(accounts):
        raise _fail("accounts", "an address appears twice")

    validators = []
    for i, item in enumerate(_table_list(doc, "validators")):
        path = f"validators[{i}]"
        extra = sorted(set(item) - {"public_key", "stake", "commission", "moniker"})
        if extra:
            raise _fail(f"{path}.{extra[0]}", "unknown field")
        commission = _param_value(
            "inflation_min", item.get("commission", GENESIS_COMMISSION), f"{path}.commission"
        )
        if not 0 <= commission <= GENESIS_MAX_COMMISSION:
            raise _fail(f"{path}.commission", f"a ratio between 0 and {format_ratio(GENESIS_MAX_COMMISSION)}")
        moniker = item.get("moniker", "")
        if not isinstance(moniker, str) or len(moniker) > MAX_MONIKER or not moniker.isprintable():
            raise _fail(f"{path}.moniker", f"at most {MAX_MONIKER} printable characters")
        key_hex = item.get("public_key")
        try:
            public_key = bytes.fromhex(key_hex) if isinstance(key_hex, str) else b""
        except ValueError:
            public_key = b""
        if len(public_key) != 32:
            raise _fail(f"{path}.public_key", "expected 64 hex characters (an Ed25519 public key)")
        stake = _amount(item.get("stake"), f"{path}.stake")
        if stake <= 0:
            raise _fail(f"{path}.stake", "must be positive")
        validators.append(GenesisValidator(public_key, stake, commission, moniker))
    if not validators:
        raise _fail("validators", "at least one validator is needed to produce blocks")
    if len({v.public_key for v in validators}) != len(validators):
        raise _fail("validators", "a public key appears twice")

    raw_params = doc.get("params", {})
    if not isinstance(raw_params, dict):
        raise _fail("params", "expected a table")
    names = {f.name for f in fields(Params)}
    values = {}
    for name in sorted(raw_params):
        if name not in names:
            raise _fail(f"params.{name}", "unknown parameter")
        values[name] = _param_value(name, raw_params[name], f"params.{name}")
    try:
        params = Params(**values)
    except ProtocolError as exc:
        raise GenesisError(exc.message) from None
    for i, v in enumerate(validators):
        if v.stake < params.min_validator_stake:
            raise _fail(f"validators[{i}].stake", f"{v.stake} is below params.min_validator_stake")
    supply = sum(a.balance for a in accounts) + sum(v.stake for v in validators)
    if supply > MAX_AMOUNT:
        # Every balance fits in 64 bits only while the whole supply does.
        raise _fail("accounts", f"total supply {supply} exceeds {MAX_AMOUNT} base units")

    inflation = doc.get("inflation", DEFAULT_INFLATION)
    if isinstance(inflation, str) and inflation.strip().endswith("%"):
        inflation = _param_value("inflation_min", inflation, "inflation")
    if isinstance(inflation, bool) or not isinstance(inflation, int) or not 0 <= inflation <= DEC:
        raise _fail("inflation", "a ratio between 0 and 100%")
    return Genesis(chain_id, tuple(accounts), tuple(validators), params, inflation, _parse_assets(doc))


def _parse_assets(doc: Mapping[str, object]) -> tuple[GenesisAsset, ...]:
    assets = []
    for i, item in enumerate(_table_list(doc, "assets")):
        path = f"assets[{i}]"
        extra = sorted(set(item) - {"symbol", "issuer"})
        if extra:
            raise _fail(f"{path}.{extra[0]}", "unknown field")
        symbol = item.get("symbol")
        try:
            AssetPropose(symbol if isinstance(symbol, str) else "", 1)  # the symbol rules
        except ProtocolError as exc:
            raise _fail(f"{path}.symbol", exc.message) from None
        issuer = item.get("issuer")
        try:
            address = Address.parse(issuer if isinstance(issuer, str) else "").raw
        except InvalidAddressError as exc:
            raise _fail(f"{path}.issuer", exc.message) from None
        assets.append(GenesisAsset(str(symbol), address))
    if len({a.symbol for a in assets}) != len(assets):
        raise _fail("assets", "a symbol appears twice")
    if len(assets) > MAX_ASSETS:
        raise _fail("assets", f"at most {MAX_ASSETS}")
    return tuple(assets)


def genesis_state(genesis: Genesis) -> LedgerState:
    """The ledger state at height 0. Raises GenesisError if the supply passes 2^63 - 1."""
    supply = sum(a.balance for a in genesis.accounts) + sum(v.stake for v in genesis.validators)
    if supply > MAX_AMOUNT:
        raise GenesisError(f"accounts: total supply {supply} exceeds {MAX_AMOUNT} base units")
    state = LedgerState(genesis.chain_id, genesis.params)
    for account in genesis.accounts:
        state.accounts.set(account.address, Account(account.balance, 0))
    for validator in genesis.validators:
        bond_genesis_validator(
            state, validator.public_key, validator.stake, validator.commission, validator.moniker
        )
    for asset in genesis.assets:
        state.assets.set(asset.symbol, Asset(issuer=asset.issuer, supply=0, proposal=0, active=True))
    state.vars.set("genesis_supply", supply)
    state.vars.set("inflation", genesis.inflation)
    state.check_invariants()
    return state


def bond_genesis_validator(
    state: LedgerState, public_key: bytes, stake: int, commission: int = GENESIS_COMMISSION, moniker: str = ""
) -> None:
    """Register a validator whose operator and consensus key are ``public_key``'s, self-bonded
    with ``stake`` (which the caller counts in the supply)."""
    operator = address_of(public_key)
    state.validators.set(
        operator,
        ValidatorInfo(
            consensus_key=public_key,
            tokens=stake,
            shares=stake,
            commission=commission,
            max_commission=max(commission, GENESIS_MAX_COMMISSION),
            max_commission_change=GENESIS_MAX_COMMISSION_CHANGE,
            moniker=moniker,
        ),
    )
    state.delegations.set((operator, operator), stake)
    state.delegated_to.set(operator, (operator,))
    state.consensus_index.set(operator, operator)
    state.signing.set(operator, SigningInfo(state.height))
    state.add("total_bonded", stake)


def dev_genesis(
    chain_id: str,
    validators: Sequence[tuple[bytes, int]],
    allocations: Sequence[tuple[bytes, int]],
    params: Params | None = None,
    assets: Sequence[tuple[str, bytes]] = (),
) -> Genesis:
    """Build a genesis in code: ``validators`` as (public key, stake), ``allocations`` as
    (address, balance), ``assets`` as (symbol, issuer address)."""
    return Genesis(
        chain_id=chain_id,
        accounts=tuple(GenesisAccount(address, balance) for address, balance in allocations),
        validators=tuple(GenesisValidator(public_key, stake) for public_key, stake in validators),
        params=params or Params(),
        assets=tuple(GenesisAsset(symbol, issuer) for symbol, issuer in assets),
    )
