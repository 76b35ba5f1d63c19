"""`dcent asset ...` and `dcent pool ...` against a node whose ledger is real: the commands read
the real RPC methods (node/rpc/liquidity_methods.py) over a real ledger state, and what they sign
is applied to it in a block, so a limit computed from a quote is checked by the pool itself."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import trio.testing

from node.cli import liquidity as liquidity_cli
from node.cli import offer as offer_cli
from node.cli import wallet as wallet_cli
from node.rpc.errors import RpcCallError
from node.rpc.liquidity_methods import LiquidityMethods
from node.rpc.offer_methods import OfferMethods
from node.wallet import runner
from node.wallet.connect import NodeTarget
from protocol.crypto import Address
from protocol.ledger.errors import LedgerError
from protocol.ledger.liquidity_state import share_denom
from protocol.ledger.pool import swap_out
from protocol.ledger.tx import PoolSwap, decode_tx
from protocol.units import DEC

from ..ledger_helpers import TEST_PARAMS, Chain, addr
from ..liquidity_helpers import SYMBOL, asset_chain, asset_of, pool_chain, shares_of
from .conftest import ALICE, BOB, Cli, FakeNode


class LedgerNode(FakeNode):
    """A fake node in front of a real ledger: transactions apply in a block each, and the
    liquidity methods are the node's own, reading that ledger."""

    def __init__(self, chain: Chain) -> None:
        super().__init__()
        self.chain = chain
        served = SimpleNamespace(
            app=SimpleNamespace(state=chain.state), identity=SimpleNamespace(key=self.node_key)
        )
        self.liquidity = LiquidityMethods(served)  # type: ignore[arg-type]
        self.offers = OfferMethods(served)  # type: ignore[arg-type]

    async def call(self, method: str, *args: object, **params: Any) -> Any:
        handler = getattr(self.liquidity, method, None)
        offer_handlers = {
            "offer_get": "offer_get",
            "offer_all": "offer_all",
            "offer_nodeKey": "offer_node_key",
        }
        offer_handlers["offer_answer"] = "offer_answer"
        if method in offer_handlers:
            handler = getattr(self.offers, offer_handlers[method])
            if "offer" in params:
                params["offer"] = bytes.fromhex(params["offer"])
        if handler is None:
            return await super().call(method, *args, **params)
        self.calls.append((method, params))
        for name in ("amount",):
            if name in params:
                params[name] = int(params[name])
        if "address" in params:
            params["address"] = Address.parse(params["address"])
        try:
            return await handler(**params)
        except LedgerError as exc:
            raise RpcCallError(exc.code, exc.message) from None

    def rpc_account_get(self, address: str) -> dict[str, Any]:
        account = self.chain.state.account(Address.parse(address).raw)
        return {
            "address": address,
            "balance": str(account.balance),
            "nonce": account.nonce,
            "bonded": "0",
            "unbonding": "0",
        }

    def rpc_tx_submit(self, tx: str) -> dict[str, Any]:
        answer = super().rpc_tx_submit(tx)
        try:
            self.chain.block([bytes.fromhex(tx)])
        except LedgerError as exc:
            self.chain.forget_reserved_nonces()
            raise RpcCallError(exc.code, exc.message) from None
        return answer

    def rpc_economics_params(self) -> dict[str, Any]:
        params = self.chain.state.params.to_wire()
        return {"params": {name: str(value) for name, value in params.items()}, "supply": "0"}

    def rpc_chain_head(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain.state.chain_id,
            "height": self.chain.height,
            "hash": "00",
            "state_hash": "00",
            "time_ms": 0,
            "validators": 3,
        }


@pytest.fixture
def ledger_cli(capsys: pytest.CaptureFixture[str], keystore: Any, password_file: Any) -> Cli:
    cli = Cli(capsys, keystore, password_file)
    parser = argparse.ArgumentParser(prog="dcent")
    commands = parser.add_subparsers()
    for module in (wallet_cli, liquidity_cli, offer_cli):
        module.register(commands)
    cli.parser = parser
    return cli


def _serve(monkeypatch: pytest.MonkeyPatch, chain: Chain) -> LedgerNode:
    node = LedgerNode(chain)

    def open_node(target: NodeTarget) -> LedgerNode:
        return node

    monkeypatch.setattr(
        runner,
        "BACKEND",
        runner.Backend(open_client=open_node, clock=trio.testing.MockClock(autojump_threshold=0)),
    )
    for name in ("DCENT_HOME", "DCENT_RPC", "DCENT_RPC_COOKIE"):
        monkeypatch.delenv(name, raising=False)
    return node


@pytest.fixture
def pooled(monkeypatch: pytest.MonkeyPatch) -> Iterator[LedgerNode]:
    yield _serve(monkeypatch, pool_chain(1_000_000, 2_000_000))


def test_pool_add_creates_the_pool_with_the_first_deposit(
    monkeypatch: pytest.MonkeyPatch, ledger_cli: Cli
) -> None:
    node = _serve(monkeypatch, asset_chain())
    ledger_cli.import_key(ALICE, "alice")
    answer = ledger_cli.json(
        "pool", "add", SYMBOL, "1000000base", "2000000base", *ledger_cli.key_args(), *ledger_cli.node_args()
    )
    assert answer["status"] == "committed" and answer["min_shares"] == "0"
    pool = node.chain.state.pools[SYMBOL]
    assert (pool.dct, pool.asset) == (1_000_000, 2_000_000)


def test_pool_add_to_an_existing_pool_sets_a_share_limit_from_the_reserves(
    pooled: LedgerNode, ledger_cli: Cli
) -> None:
    ledger_cli.import_key(BOB, "bob")
    total = pooled.chain.state.pools[SYMBOL].shares
    answer = ledger_cli.json(
        "pool",
        "add",
        SYMBOL,
        "1000base",
        "2000base",
        "--slippage",
        "2%",
        *ledger_cli.key_args(),
        *ledger_cli.node_args(),
    )
    expected = 1_000 * total // 1_000_000
    assert answer["min_shares"] == str(expected * 98 // 100)
    assert shares_of(pooled.chain, "bob") == expected


def test_pool_swap_signs_the_quote_less_the_slippage_and_a_deadline(
    pooled: LedgerNode, ledger_cli: Cli
) -> None:
    ledger_cli.import_key(BOB, "bob")
    quote = swap_out(1_000_000, 2_000_000, 10_000, TEST_PARAMS.pool_swap_fee)
    height = pooled.chain.height
    before = asset_of(pooled.chain, "bob")
    answer = ledger_cli.json(
        "pool",
        "swap",
        SYMBOL,
        "--sell",
        "DCT",
        "10000base",
        "--deadline-blocks",
        "5",
        *ledger_cli.key_args(),
        *ledger_cli.node_args(),
    )
    msg = decode_tx(pooled.submitted[-1]).msg
    assert msg == PoolSwap(SYMBOL, True, 10_000, quote * 99 // 100, height + 5)
    assert answer["quote"] == str(quote)
    assert asset_of(pooled.chain, "bob") - before == quote


def test_pool_swap_selling_the_asset_and_a_wrong_side(pooled: LedgerNode, ledger_cli: Cli) -> None:
    ledger_cli.import_key(BOB, "bob")
    before = pooled.chain.balance("bob")
    ledger_cli.json(
        "pool", "swap", SYMBOL, "--sell", SYMBOL, "20000base", *ledger_cli.key_args(), *ledger_cli.node_args()
    )
    assert pooled.chain.balance("bob") > before - 10_000  # bought more DCT than the fee
    code, _, err = ledger_cli.run(
        "pool", "swap", SYMBOL, "--sell", "EUR", "1", *ledger_cli.key_args(), *ledger_cli.node_args()
    )
    assert code != 0 and "--sell" in err


def test_pool_remove_all_redeems_every_share_within_the_limits(pooled: LedgerNode, ledger_cli: Cli) -> None:
    ledger_cli.import_key(ALICE, "alice")
    answer = ledger_cli.json("pool", "remove", SYMBOL, "all", *ledger_cli.key_args(), *ledger_cli.node_args())
    assert shares_of(pooled.chain, "alice") == 0
    assert int(answer["min_dct"]) > 0 and int(answer["min_asset"]) > 0


def test_pool_show_and_list_read_the_pool(pooled: LedgerNode, ledger_cli: Cli) -> None:
    shown = ledger_cli.json("pool", "show", SYMBOL, *ledger_cli.node_args())
    assert (shown["dct"], shown["asset"], shown["spot_price"]) == ("1000000", "2000000", str(2 * 10**9))
    assert shown["swap_fee"] == str(TEST_PARAMS.pool_swap_fee) and int(shown["swap_fee"]) < DEC
    assert [p["symbol"] for p in ledger_cli.json("pool", "list", *ledger_cli.node_args())] == [SYMBOL]
    code, out, _ = ledger_cli.run("pool", "show", SYMBOL, *ledger_cli.node_args())
    assert code == 0 and "time-weighted price" in out


def test_asset_send_and_holdings(pooled: LedgerNode, ledger_cli: Cli) -> None:
    ledger_cli.import_key(ALICE, "alice")
    ledger_cli.json(
        "asset",
        "send",
        share_denom(SYMBOL),
        str(BOB.address),
        "7",
        *ledger_cli.key_args(),
        *ledger_cli.node_args(),
    )
    assert shares_of(pooled.chain, "bob") == 7
    held = ledger_cli.json(
        "asset", "holdings", str(BOB.address), *ledger_cli.key_args(), *ledger_cli.node_args()
    )
    assert {"denom": share_denom(SYMBOL), "amount": "7"} in held
    code, _, err = ledger_cli.run(
        "asset", "send", SYMBOL, str(ALICE.address), "1000", *ledger_cli.key_args(), *ledger_cli.node_args()
    )  # 1000 TUSD is 10^12 base units: more than alice holds
    assert code == 1 and "error 2304" in err
    assert [a["symbol"] for a in ledger_cli.json("asset", "list", *ledger_cli.node_args())] == [SYMBOL]
    assert addr("alice") == ALICE.address.raw


def test_asset_propose_opens_the_registration_and_its_issuer_mints_once_it_passes(
    monkeypatch: pytest.MonkeyPatch, ledger_cli: Cli
) -> None:
    from protocol.crypto import PrivateKey
    from protocol.ledger.tx import GovVote

    from ..ledger_helpers import VALIDATOR_LABELS
    from ..ledger_helpers import key as test_key

    node = _serve(monkeypatch, Chain())
    carol = PrivateKey.from_label("carol")
    ledger_cli.import_key(carol, "carol")
    answer = ledger_cli.json("asset", "propose", "EUR", *ledger_cli.key_args(), *ledger_cli.node_args())
    assert answer["deposit"] == str(TEST_PARAMS.gov_min_deposit) and answer["proposal"] == 1
    chain = node.chain
    chain.block([chain.tx(v, GovVote(1, "yes")) for v in VALIDATOR_LABELS])
    chain.advance_to(chain.state.proposals[1].end_height)
    ledger_cli.json(
        "asset", "mint", "EUR", str(BOB.address), "2.5", *ledger_cli.key_args(), *ledger_cli.node_args()
    )
    assert asset_of(chain, "bob", "EUR") == 2_500_000_000
    assert test_key("carol").address == carol.address


def test_mining_bond_rewards_and_unbond_all(monkeypatch: pytest.MonkeyPatch, ledger_cli: Cli) -> None:
    import dataclasses

    from protocol.units import percent

    params = dataclasses.replace(TEST_PARAMS, liquidity_mining_share=percent(5), mining_unbonding_period=3)
    node = _serve(monkeypatch, pool_chain(params=params))
    chain = node.chain
    ledger_cli.import_key(ALICE, "alice")
    shares = shares_of(chain, "alice")
    answer = ledger_cli.json("mining", "bond", SYMBOL, "all", *ledger_cli.key_args(), *ledger_cli.node_args())
    assert answer["shares"] == str(shares) and shares_of(chain, "alice") == 0
    chain.block()
    chain.block()
    rewards = ledger_cli.json(
        "mining", "rewards", str(ALICE.address), *ledger_cli.key_args(), *ledger_cli.node_args()
    )
    assert rewards["bonds"][0]["shares"] == str(shares)
    assert int(rewards["bonds"][0]["estimated_reward"]) == chain.state.vars["mining_pool"] > 0
    status = ledger_cli.json("mining", "status", *ledger_cli.node_args())
    assert status["share"] == str(percent(5)) and status["bonds"] == 1
    ledger_cli.json("mining", "unbond", SYMBOL, "all", *ledger_cli.key_args(), *ledger_cli.node_args())
    rewards = ledger_cli.json(
        "mining", "rewards", str(ALICE.address), *ledger_cli.key_args(), *ledger_cli.node_args()
    )
    assert rewards["unbonding"][0]["shares"] == str(shares)
    code, _, err = ledger_cli.run(
        "mining", "unbond", SYMBOL, "5", *ledger_cli.key_args(), *ledger_cli.node_args()
    )
    assert code == 1 and "error 2310" in err


def test_offer_stand_challenge_answer_take_and_accept(
    monkeypatch: pytest.MonkeyPatch, ledger_cli: Cli
) -> None:
    from protocol.crypto import PrivateKey

    node = _serve(monkeypatch, Chain())
    chain = node.chain
    dave = PrivateKey.from_label("dave")
    for key, name in ((BOB, "bob"), (dave, "dave"), (ALICE, "alice")):
        ledger_cli.import_key(key, name)
    keys = ledger_cli.key_args()
    stood = ledger_cli.json(
        "offer",
        "stand",
        "--gpus",
        "2",
        "--model",
        "H100",
        "--price",
        "10base",
        "--period",
        "30",
        "--collateral",
        "5000base",
        "--from",
        "bob",
        *keys,
        *ledger_cli.node_args(),
    )
    offer = stood["offer"]
    record = chain.state.offers[bytes.fromhex(offer)]
    assert record.node_key == node.node_key.public_key.raw and record.gpu_count == 2
    ledger_cli.json("offer", "challenge", offer, "--from", "dave", *keys, *ledger_cli.node_args())
    assert chain.state.offers[bytes.fromhex(offer)].seed
    ledger_cli.json("offer", "answer", offer, "--from", "bob", *keys, *ledger_cli.node_args())
    assert not chain.state.offers[bytes.fromhex(offer)].seed
    ledger_cli.json(
        "offer",
        "take",
        offer,
        "--gpus",
        "1",
        "--seconds",
        "60",
        "--from",
        "alice",
        *keys,
        *ledger_cli.node_args(),
    )
    shown = ledger_cli.json("offer", "show", offer, *ledger_cli.node_args())
    assert shown["take"]["gpus"] == 1 and shown["take"]["max_cost"] == "600"
    ledger_cli.json("offer", "accept", offer, "--from", "bob", *keys, *ledger_cli.node_args())
    take_id = bytes.fromhex(shown["take"]["take"])
    assert chain.state.escrows[take_id].max_cost == 600
    listed = ledger_cli.json("offer", "list", *ledger_cli.node_args())
    assert [o["offer"] for o in listed] == [offer]
    code, _, err = ledger_cli.run("offer", "answer", offer, "--from", "bob", *keys, *ledger_cli.node_args())
    assert code == 1 and "error 2323" in err  # no open challenge: the node signs nothing
