"""`dcent market offers` with the ledger's standing offers beside the gossiped ones, and
`dcent market standing post|list|take|withdraw`, against a real ledger behind the wallet's fake
transport (test_liquidity_commands.LedgerNode): what the commands sign is applied in a block, so
a take's price limit is checked by the ledger itself."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import pytest
import trio.testing

from node.cli import market as market_cli
from node.cli import wallet as wallet_cli
from node.wallet import runner
from node.wallet.connect import NodeTarget
from protocol.ledger.tx import OfferTake, decode_tx

from ..ledger_helpers import TEST_PARAMS, Chain
from ..liquidity_helpers import SYMBOL, pool_chain
from .conftest import ALICE, BOB, Cli
from .test_liquidity_commands import LedgerNode

WINDOW = 10
PARAMS = dataclasses.replace(TEST_PARAMS, twap_window=WINDOW)
GOSSIPED = {
    "provider": "dct1gossip",
    "gpus": 2,
    "free_gpus": 2,
    "models": ["NVIDIA A100"],
    "simulated": True,
    "memory_bytes": 40 * 2**30,
    "compute_capability": "8.0",
    "cuda_version": 12010,
    "price_per_gpu_second": "12",
    "collateral": "0",
    "stake": "100000000000",
    "executors": ["bubblewrap"],
    "age_ms": 3000,
}


class MarketNode(LedgerNode):
    """The ledger node, also answering ``market_offers`` with one gossiped offer."""

    def __init__(self, chain: Chain) -> None:
        super().__init__(chain)
        self.gossip_queries: list[dict[str, Any]] = []

    def rpc_market_offers(self, **query: Any) -> list[dict[str, Any]]:
        self.gossip_queries.append(query)
        return [dict(GOSSIPED)]


@pytest.fixture
def market(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], keystore: Any, password_file: Any
) -> tuple[Cli, MarketNode]:
    chain = pool_chain(params=PARAMS)  # 2 TUSD base units per DCT base unit
    chain.advance_to(chain.height + WINDOW)
    node = MarketNode(chain)

    def open_node(target: NodeTarget) -> MarketNode:
        return node

    monkeypatch.setattr(
        runner,
        "BACKEND",
        runner.Backend(open_client=open_node, clock=trio.testing.MockClock(autojump_threshold=0)),
    )
    for name in ("DCENT_HOME", "DCENT_RPC", "DCENT_RPC_COOKIE"):
        monkeypatch.delenv(name, raising=False)
    cli = Cli(capsys, keystore, password_file)
    parser = argparse.ArgumentParser(prog="dcent")
    commands = parser.add_subparsers()
    for module in (wallet_cli, market_cli):
        module.register(commands)
    cli.parser = parser
    for key, name in ((BOB, "bob"), (ALICE, "alice")):
        cli.import_key(key, name)
    return cli, node


def _post(cli: Cli, price: str, *quote: str, gpus: str = "2", period: str = "30") -> str:
    posted = cli.json(
        "market", "standing", "post", "--gpus", gpus, "--model", "H100", "--price", price, *quote,
        "--period", period, "--collateral", "5000base", "--from", "bob", *cli.key_args(), *cli.node_args(),
    )  # fmt: skip
    return str(posted["offer"])


def test_market_offers_lists_standing_offers_after_the_gossiped_ones(market: tuple[Cli, MarketNode]) -> None:
    cli, node = market
    dct_offer = _post(cli, "15base")
    # 20 TUSD base units per GPU-second: 10 DCT base units at the pool's average.
    quoted = _post(cli, "0.00000002 TUSD", "--quote", SYMBOL, gpus="4")
    offers = cli.json("market", "offers", *cli.node_args())
    assert [o["source"] for o in offers] == ["gossip", "standing", "standing"]
    assert [o.get("offer") for o in offers[1:]] == [quoted, dct_offer]  # the cheaper first
    cheap = offers[1]
    assert (cheap["guaranteed"], cheap["quote"], cheap["quoted_price"]) == (True, SYMBOL, "20")
    assert (cheap["price_per_gpu_second"], cheap["gpus"], cheap["free_gpus"]) == ("10", 4, 4)
    assert cheap["price_per_gpu_hour_dct"] == "0.000036" and cheap["models"] == ["H100"]
    assert not offers[0]["guaranteed"]

    def standing_ids(*flags: str) -> list[str]:
        return [
            o.get("offer")
            for o in cli.json("market", "offers", *flags, *cli.node_args())
            if o["source"] == "standing"
        ]

    assert standing_ids("--gpus", "3") == [quoted]
    assert standing_ids("--max-price", "12base") == [quoted]
    assert standing_ids("--model", "*a100*") == []
    assert standing_ids("--model", "h1*") == [quoted, dct_offer]
    # Filters on what a standing offer does not state leave it out.
    assert standing_ids("--min-memory", "40 GiB") == []
    assert standing_ids("--executor", "docker") == []
    asked = len(node.gossip_queries)
    only = cli.json("market", "offers", "--source", "standing", *cli.node_args())
    assert [o["source"] for o in only] == ["standing", "standing"]
    assert len(node.gossip_queries) == asked  # the gossiped offers were not even asked for
    gossip = cli.json("market", "offers", "--source", "gossip", *cli.node_args())
    assert [o["source"] for o in gossip] == ["gossip"]
    code, out, err = cli.run("market", "offers", *cli.node_args())
    assert code == 0, err
    assert "standing offers (guaranteed prices)" in out and "TUSD" in out and "DCT/GPU-H" in out


def test_a_requester_takes_a_quoted_standing_offer_at_its_guaranteed_price(
    market: tuple[Cli, MarketNode],
) -> None:
    cli, node = market
    chain = node.chain
    offer = _post(cli, "0.00000002 TUSD", "--quote", SYMBOL)
    take = ("market", "standing", "take", offer, "--gpus", "2", "--seconds", "60", "--from", "alice")
    code, _, err = cli.run(*take, "--max-price", "9base", *cli.key_args(), *cli.node_args())
    assert code == 1 and "error 2305" in err  # the ledger refused: above the requester's limit
    done = cli.json(*take, *cli.key_args(), *cli.node_args())
    assert (done["price_now"], done["max_price"]) == ("10", "10")  # 1% of 10 rounds to nothing
    pending = chain.state.takes[bytes.fromhex(offer)]
    assert (pending.price, pending.max_cost) == (10, 2 * 60 * 10)
    assert cli.json("market", "standing", "list", *cli.node_args()) == []  # taken: nothing to buy
    everything = cli.json("market", "standing", "list", "--all", *cli.node_args())
    assert [(o["offer"], o["taken"]) for o in everything] == [(offer, True)]


def test_the_default_limit_follows_the_nodes_price_plus_the_slippage(market: tuple[Cli, MarketNode]) -> None:
    cli, node = market
    offer = _post(cli, "0.000000039 TUSD", "--quote", SYMBOL)  # 19.5 DCT base units: 20
    done = cli.json(
        "market", "standing", "take", offer, "--gpus", "1", "--seconds", "5", "--slippage", "10%",
        "--from", "alice", *cli.key_args(), *cli.node_args(),
    )  # fmt: skip
    assert (done["price_now"], done["max_price"]) == ("20", "22")
    sent = [decode_tx(raw).msg for raw in node.submitted]
    assert isinstance(sent[-1], OfferTake) and sent[-1].max_price == 22


def test_standing_list_filters_and_withdraw_returns_the_collateral(market: tuple[Cli, MarketNode]) -> None:
    cli, node = market
    chain = node.chain
    offer = _post(cli, "15base", period="5")
    listed = cli.json("market", "standing", "list", "--model", "*H100*", *cli.node_args())
    assert [o["offer"] for o in listed] == [offer]
    assert cli.json("market", "standing", "list", "--gpus", "3", *cli.node_args()) == []
    code, _, err = cli.run(
        "market", "standing", "withdraw", offer, "--from", "bob", *cli.key_args(), *cli.node_args()
    )
    assert code == 1 and "error 2321" in err  # still standing
    chain.advance_to(chain.state.offers[bytes.fromhex(offer)].end)
    bob = chain.balance("bob")
    cli.json("market", "standing", "withdraw", offer, "--from", "bob", *cli.key_args(), *cli.node_args())
    assert bytes.fromhex(offer) not in chain.state.offers
    assert chain.balance("bob") == bob + 5_000 - PARAMS.min_fee


def test_a_quote_unit_that_is_not_a_symbol_or_a_price_in_the_wrong_unit_is_refused_before_signing(
    market: tuple[Cli, MarketNode],
) -> None:
    cli, node = market
    code, _, err = cli.run(
        "market", "standing", "post", "--gpus", "1", "--model", "H100", "--price", "1", "--quote", "tu$d",
        "--period", "5", "--collateral", "1", "--from", "bob", *cli.key_args(), *cli.node_args(),
    )  # fmt: skip
    assert code == 1 and "--quote" in err
    code, _, err = cli.run(
        "market", "standing", "post", "--gpus", "1", "--model", "H100", "--price", "1 DCT", "--quote", SYMBOL,
        "--period", "5", "--collateral", "1", "--from", "bob", *cli.key_args(), *cli.node_args(),
    )  # fmt: skip
    assert code == 1 and "write the price in TUSD" in err
    assert not node.submitted
