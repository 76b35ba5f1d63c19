"""Builders for the liquidity tests: a chain with a registered asset (TUSD, issued by carol) that
alice, bob and dave hold, and a pool seeded by alice."""

from __future__ import annotations

from protocol.ledger.liquidity_state import share_denom
from protocol.ledger.params import Params
from protocol.ledger.pool import holding
from protocol.ledger.tx import AssetMint, AssetPropose, GovVote, PoolAdd

from .ledger_helpers import TEST_PARAMS, VALIDATOR_LABELS, Chain, addr, make_genesis

SYMBOL = "TUSD"
ISSUER = "carol"
ASSET_BALANCE = 5_000_000


def register(chain: Chain, symbol: str = SYMBOL, issuer: str = ISSUER, *, votes: str = "yes") -> int:
    """Propose ``symbol`` (issued by ``issuer``), vote ``votes`` with every validator and close
    the vote; returns the proposal id."""
    chain.block([chain.tx(issuer, AssetPropose(symbol, TEST_PARAMS.gov_min_deposit))])
    proposal_id = chain.state.vars["next_proposal_id"] - 1
    chain.block([chain.tx(v, GovVote(proposal_id, votes)) for v in VALIDATOR_LABELS])
    chain.advance_to(chain.state.proposals[proposal_id].end_height)
    return proposal_id


def asset_chain(holders: tuple[str, ...] = ("alice", "bob", "dave"), params: Params = TEST_PARAMS) -> Chain:
    chain = Chain(make_genesis(params))
    register(chain)
    chain.block([chain.tx(ISSUER, AssetMint(SYMBOL, addr(h), ASSET_BALANCE)) for h in holders])
    return chain


def pool_chain(dct: int = 1_000_000, asset: int = 2_000_000, params: Params = TEST_PARAMS) -> Chain:
    """An asset chain whose pool alice seeded with ``dct`` and ``asset`` (2 TUSD base units per
    DCT base unit by default)."""
    chain = asset_chain(params=params)
    chain.block([chain.tx("alice", PoolAdd(SYMBOL, dct, asset, 1))])
    return chain


def asset_of(chain: Chain, label: str, denom: str = SYMBOL) -> int:
    return holding(chain.state, addr(label), denom)


def shares_of(chain: Chain, label: str) -> int:
    return asset_of(chain, label, share_denom(SYMBOL))
