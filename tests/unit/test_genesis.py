"""Genesis documents: the shipped testnet file, round trips, and every bad field named by its path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.crypto import Address, PrivateKey
from protocol.ledger.errors import GenesisError
from protocol.ledger.genesis import DEFAULT_INFLATION, Genesis, genesis_state
from protocol.ledger.params import Params
from protocol.units import DCT, MAX_AMOUNT, percent

from .ledger_helpers import addr, key

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "genesis.toml"
ALICE = str(Address(addr("alice")))
BOB = str(Address(addr("bob")))
VAL_0 = key("val-0").public_key.raw.hex()
VAL_1 = key("val-1").public_key.raw.hex()

MINIMAL = f"""
chain_id = "dcent-unit-1"
inflation = "10%"

[params]
fee_burn_share = "40%"
gov_quorum = "33.4%"
min_fee = "0.000001 DCT"
unbonding_period = 50

[[accounts]]
address = "{ALICE}"
balance = "1000 DCT"

[[accounts]]
address = "{BOB}"
balance = 123

[[validators]]
public_key = "{VAL_0}"
stake = "10 DCT"
"""


def _document() -> dict[str, object]:
    """A valid document as parsed JSON/TOML, to break one field at a time."""
    return {
        "chain_id": "dcent-unit-1",
        "accounts": [{"address": ALICE, "balance": 1_000}, {"address": BOB, "balance": "2 DCT"}],
        "validators": [{"public_key": VAL_0, "stake": "10 DCT"}, {"public_key": VAL_1, "stake": 5 * DCT}],
        "params": {"gov_quorum": "40%"},
    }


def test_shipped_testnet_genesis_is_valid() -> None:
    genesis = Genesis.from_text(SHIPPED.read_text(), fmt="toml")
    assert genesis.chain_id == "dcent-local-1"
    assert len(genesis.validators) == 4
    faucet = PrivateKey.from_label("faucet").address.raw
    assert genesis.accounts[0].address == faucet
    assert [v.public_key for v in genesis.validators] == [
        PrivateKey.from_label(f"validator-{i}").public_key.raw for i in range(4)
    ]
    assert genesis.params.gov_quorum == percent("33.4")
    state = genesis_state(genesis)
    state.check_invariants()
    assert state.total_supply() == (100_000_000 + 4 * 1_000 + 4 * 100_000) * DCT


def test_minimal_toml() -> None:
    genesis = Genesis.from_text(MINIMAL, fmt="toml")
    assert genesis.chain_id == "dcent-unit-1"
    assert genesis.inflation == percent(10)
    assert [(a.address, a.balance) for a in genesis.accounts] == [
        (addr("alice"), 1_000 * DCT),
        (addr("bob"), 123),
    ]
    assert genesis.validators[0].stake == 10 * DCT
    assert genesis.validators[0].address == addr("val-0")
    assert genesis.params == Params(
        fee_burn_share=percent(40), gov_quorum=percent("33.4"), min_fee=1_000, unbonding_period=50
    )


def test_genesis_state_holds_the_allocations_and_stakes() -> None:
    state = genesis_state(Genesis.from_text(MINIMAL, fmt="toml"))
    assert state.height == 0
    assert state.balance(addr("alice")) == 1_000 * DCT
    assert state.validators[addr("val-0")].bonded == 10 * DCT
    assert state.vars["total_bonded"] == 10 * DCT
    assert state.total_supply() == 1_000 * DCT + 123 + 10 * DCT
    assert state.vars["inflation"] == percent(10)
    assert [v.address for v in state.validator_set()] == [addr("val-0")]


def test_json_round_trip_and_hash() -> None:
    genesis = Genesis.from_dict(_document())
    again = Genesis.from_text(genesis.to_json(), fmt="json")
    assert again == genesis
    assert again.genesis_hash() == genesis.genesis_hash()
    assert genesis.inflation == DEFAULT_INFLATION
    changed = Genesis.from_dict({**_document(), "chain_id": "dcent-unit-2"})
    assert changed.genesis_hash() != genesis.genesis_hash()


def _bad(doc: dict[str, object], path: str) -> GenesisError:
    with pytest.raises(GenesisError) as caught:
        Genesis.from_dict(doc)
    assert caught.value.code == 2090
    assert caught.value.message.startswith(f"{path}:"), caught.value.message
    return caught.value


def _with(path: str, value: object) -> dict[str, object]:
    """The valid document with the field at ``path`` (``a.b`` or ``a[1].b``) set to ``value``;
    the sentinel ``DELETE`` removes it."""
    doc = json.loads(json.dumps(_document()))
    target = doc
    parts = path.replace("[", ".").replace("]", "").split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is DELETE:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return doc  # type: ignore[no-any-return]


DELETE = object()
LONG_STRING_AMOUNT = "10000000000 DCT"  # 10^19 base units: more than a signed 64-bit amount


@pytest.mark.parametrize(
    ("path", "value", "reported"),
    [
        ("chain_id", DELETE, "chain_id"),
        ("chain_id", "", "chain_id"),
        ("chain_id", "x" * 65, "chain_id"),
        ("chain_id", "tab\there", "chain_id"),
        ("chain_id", 7, "chain_id"),
        ("surprise", 1, "surprise"),
        ("accounts", {"address": ALICE}, "accounts"),
        ("accounts[1].address", ALICE[:-1] + ("q" if ALICE[-1] != "q" else "p"), "accounts[1].address"),
        ("accounts[1].address", ALICE.upper()[:10] + ALICE[10:], "accounts[1].address"),
        ("accounts[1].address", 12, "accounts[1].address"),
        ("accounts[1].address", DELETE, "accounts[1].address"),
        ("accounts[1].address", ALICE, "accounts"),  # the same address twice
        ("accounts[0].balance", -1, "accounts[0].balance"),
        ("accounts[0].balance", 2**63, "accounts[0].balance"),
        ("accounts[0].balance", True, "accounts[0].balance"),
        ("accounts[0].balance", 1.5, "accounts[0].balance"),
        ("accounts[0].balance", "1.0000000001", "accounts[0].balance"),
        ("accounts[0].balance", "lots", "accounts[0].balance"),
        ("accounts[0].balance", LONG_STRING_AMOUNT, "accounts[0].balance"),
        ("accounts[0].balance", DELETE, "accounts[0].balance"),
        ("accounts[0].nickname", "al", "accounts[0].nickname"),
        ("validators", [], "validators"),
        ("validators", "val-0", "validators"),
        ("validators[0].public_key", "zz" * 32, "validators[0].public_key"),
        ("validators[0].public_key", VAL_0[:-2], "validators[0].public_key"),
        ("validators[0].public_key", DELETE, "validators[0].public_key"),
        ("validators[1].public_key", VAL_0, "validators"),  # the same key twice
        ("validators[0].stake", 0, "validators[0].stake"),
        ("validators[0].stake", "-5", "validators[0].stake"),
        ("validators[1].stake", 1, "validators[1].stake"),  # below params.min_validator_stake
        ("validators[0].power", 1, "validators[0].power"),
        ("params", [], "params"),
        ("params.gov_quorum", "140%", "params.gov_quorum"),
        ("params.gov_quorum", "NaN%", "params.gov_quorum"),
        ("params.gov_quorum", "a lot%", "params.gov_quorum"),
        ("params.gov_quorum", 0.4, "params.gov_quorum"),
        ("params.gov_threshold", -1, "params.gov_threshold"),
        ("params.unbonding_period", 0, "params.unbonding_period"),
        ("params.unbonding_period", "100", "params.unbonding_period"),
        ("params.min_fee", "cheap", "params.min_fee"),
        ("params.inflation_min", "25%", "params.inflation_min"),  # above inflation_max
        ("params.block_reward", 1, "params.block_reward"),
        ("inflation", "120%", "inflation"),
        ("inflation", 0.13, "inflation"),
    ],
)
def test_each_bad_field_is_reported_with_its_path(path: str, value: object, reported: str) -> None:
    _bad(_with(path, value), reported)


def test_a_supply_beyond_64_bits_is_refused() -> None:
    doc = _document()
    doc["accounts"] = [
        {"address": str(PrivateKey.from_label(f"rich-{i}").address), "balance": MAX_AMOUNT} for i in range(3)
    ]
    _bad(doc, "accounts")


def test_invalid_toml_and_json() -> None:
    with pytest.raises(GenesisError, match=r"^genesis: not valid TOML"):
        Genesis.from_text("chain_id = ", fmt="toml")
    with pytest.raises(GenesisError, match=r"^genesis: not valid JSON"):
        Genesis.from_text("{", fmt="json")
    with pytest.raises(GenesisError, match=r"^genesis: the document must be"):
        Genesis.from_text("[1, 2]", fmt="json")


def test_a_bad_field_in_toml_is_named_by_its_path() -> None:
    text = MINIMAL.replace('balance = "1000 DCT"', 'balance = "1000 DCX"')
    with pytest.raises(GenesisError, match=r"^accounts\[0\]\.balance: "):
        Genesis.from_text(text, fmt="toml")


# --- assets (issue 17) ----------------------------------------------------------------------------
def test_a_genesis_asset_is_registered_from_height_0_and_its_issuer_mints_it() -> None:
    from protocol.crypto import PrivateKey
    from protocol.ledger.block import BlockContext, apply_block
    from protocol.ledger.genesis import GenesisAsset, dev_genesis, genesis_state
    from protocol.ledger.pool import holding
    from protocol.ledger.tx import AssetMint, sign_tx

    faucet, validator = PrivateKey.from_label("faucet"), PrivateKey.from_label("v")
    genesis = dev_genesis(
        "dcent-assets",
        [(validator.public_key.raw, 10**9)],
        [(faucet.address.raw, 10**9)],
        assets=[("TUSD", faucet.address.raw)],
    )
    assert genesis.assets == (GenesisAsset("TUSD", faucet.address.raw),)
    again = Genesis.from_text(genesis.to_json(), fmt="json")
    assert again == genesis and again.genesis_hash() == genesis.genesis_hash()
    state = genesis_state(again)
    assert state.assets["TUSD"].active and state.assets["TUSD"].issuer == faucet.address.raw
    mint = sign_tx(
        faucet, "dcent-assets", 1, state.params.min_fee, AssetMint("TUSD", validator.address.raw, 5)
    )
    apply_block(state, BlockContext(1, validator.address.raw), [mint])
    assert holding(state, validator.address.raw, "TUSD") == 5


def test_a_genesis_without_assets_keeps_its_document_and_hash() -> None:
    from protocol.ledger.genesis import dev_genesis

    genesis = dev_genesis("dcent-plain", [(bytes(range(32)), 10**9)], [])
    assert "assets" not in genesis.to_dict()


@pytest.mark.parametrize(
    ("asset", "path"),
    [
        ({"symbol": "dct", "issuer": "x"}, "assets[0].symbol"),
        ({"symbol": "TUSD", "issuer": "nope"}, "assets[0].issuer"),
        ({"symbol": "TUSD", "issuer": "x", "decimals": 6}, "assets[0].decimals"),
    ],
)
def test_a_bad_genesis_asset_is_refused_naming_its_field(asset: dict[str, object], path: str) -> None:
    from protocol.crypto import PrivateKey
    from protocol.ledger.genesis import dev_genesis

    doc = dev_genesis("dcent-bad", [(PrivateKey.from_label("v").public_key.raw, 10**9)], []).to_dict()
    if asset.get("issuer") == "x":
        asset = {**asset, "issuer": str(PrivateKey.from_label("faucet").address)}
    doc["assets"] = [asset]
    with pytest.raises(GenesisError) as caught:
        Genesis.from_dict(doc)
    assert caught.value.message.startswith(path)
