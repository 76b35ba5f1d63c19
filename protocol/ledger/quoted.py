"""The DCT price of a contract quoted in an asset, fixed when its escrow opens.

A contract may be priced in a registered asset (a stable unit): ``quote`` names it,
``quote_price_per_gpu_second`` is the provider's price in its base units, and
``price_per_gpu_second`` is the requester's signed cap in DCT base units
(``protocol.contracts.ContractTerms``). ``escrow_open`` fixes the DCT price per GPU-second from
the DCT/asset pool's time-weighted price as the escrow's block sees it, exactly as a take of a
quoted standing offer does (``protocol.ledger.availability``): ``ceil(quote x 10^9 / twap)``,
rounded up so the provider is never paid less than it quoted. The escrow stores that price and
the maximum cost it makes (fixed price x ``max_gpu_seconds``), and every payout reads them from
the escrow: later trades in the pool move neither side's amount.

Refused, with nothing changed, when the asset is not registered (``UnknownAsset``), when the pool
does not price a whole ``twap_window`` (``NoQuotePrice``), when the fixed price is above the
requester's cap (``QuoteAboveCap``: whatever the pool does, the requester never pays more DCT than
it signed for), or when the pool holds less than ``QUOTE_DEPTH`` times the DCT the escrow would
lock (``PoolTooShallow``: a thin pool's average is cheap to hold away from the market).

Attacks it was designed against
-------------------------------

- *Oracle manipulation by a one-block price move.* Someone swaps the pool hard in the block that
  opens the escrow (or the one before) to make the DCT amount large or small. The TWAP is the
  mean of the prices blocks *started* with over a whole window, and a block's own trades never
  move the average that block sees, so a same-block swap changes nothing, and a move held for
  one block shifts the average by only 1/window. Holding the price away for longer costs the
  manipulator the arbitrage every block it is held; the ``QUOTE_DEPTH`` rule makes that cost
  larger than what the escrow could gain. A pool younger than a window has no TWAP at all (its
  creator alone set the price), so the escrow is refused rather than priced by it. Whatever the
  pool does, the requester's cap bounds what it can be charged.
- *A provider inflating the quote after signing.* The quote's asset and price are part of the
  terms both parties sign, and the contract hash covers them: the escrow fixes the DCT price
  from the signed ``quote_price_per_gpu_second``, so a provider cannot raise it afterwards, and it
  cannot present different terms without the requester's signature. Before signing, the
  requester refuses a quote in another asset than the provider announced, or one whose DCT value
  at the TWAP it matched on exceeds the job's maximum (``QuoteMismatch``); the provider refuses
  jobs its quote would not fit (``PriceBelowAsk``) and any job while its asset has no TWAP
  (``QuoteNotPriced`` 4048), so neither side signs a contract the ledger would refuse.
- *A requester front-running the escrow.* A requester holding the countersigned contract chooses
  when to submit the escrow, and could wait for (or push) a pool price that makes the DCT amount
  small. But the escrow converts the provider's asset price at the TWAP of that block, so in the
  asset the provider is paid what it quoted whenever the escrow opens; the requester can gain only
  the gap between the window's average and the market, which moving costs it the arbitrage above,
  and the wait is bounded: the provider releases the GPUs it sold after ``escrow_wait_blocks``, and
  the contract's deadline ends it. Nor can anyone move the pool before the escrow to make the
  requester pay more than it agreed: above the cap the escrow is refused (``QuoteAboveCap``), no
  money moves, and both sides are free again.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.contracts import ContractTerms
from protocol.ledger import pool as pool_module
from protocol.ledger.availability import QUOTE_DEPTH, dct_price, quote_price
from protocol.ledger.liquidity_errors import NoQuotePrice, PoolTooShallow, QuoteAboveCap, UnknownAsset
from protocol.ledger.state import LedgerState


@dataclass(frozen=True, slots=True)
class EscrowPrice:
    """What an escrow locks and pays by: DCT base units per GPU-second and its maximum cost."""

    price_per_gpu_second: int
    max_cost: int


def current_quote_twap(state: LedgerState, symbol: str) -> int | None:
    """The time-weighted price (``symbol`` base units per DCT) an escrow in the next block would
    fix a contract quoted in ``symbol`` at; None while it would be refused for want of one."""
    try:
        pool_module.active_asset(state, symbol)
        return quote_price(state, symbol, state.height + 1)
    except (UnknownAsset, NoQuotePrice):
        return None


def fixed_price(state: LedgerState, terms: ContractTerms, height: int) -> int:
    """The DCT base units per GPU-second an escrow of ``terms`` opened in block ``height`` pays,
    without the refusals' checks (for views of blocks that applied). Trades in block ``height``
    do not change it. Raises NoQuotePrice."""
    if not terms.quoted:
        return terms.price_per_gpu_second
    return dct_price(terms.quote_price_per_gpu_second, quote_price(state, terms.quote, height))


def escrow_price(state: LedgerState, terms: ContractTerms, height: int) -> EscrowPrice:
    """The DCT price and maximum cost of ``terms``' escrow opened in block ``height``: the
    contract's own for one priced in DCT, else fixed from the pool (see the module doc).

    Raises UnknownAsset, NoQuotePrice, QuoteAboveCap, PoolTooShallow; changes nothing."""
    if not terms.quoted:
        return EscrowPrice(terms.price_per_gpu_second, terms.max_cost)
    pool_module.active_asset(state, terms.quote)
    price = fixed_price(state, terms, height)
    if price > terms.price_per_gpu_second:
        raise QuoteAboveCap(
            f"{terms.quote_price_per_gpu_second} {terms.quote} per GPU-second is {price} DCT base "
            f"units at the pool's average, above the requester's cap {terms.price_per_gpu_second}"
        )
    # At most the cap, so at most the contract's max_cost: in range by the contract's own check.
    max_cost = price * terms.max_gpu_seconds
    depth = state.pools[terms.quote].dct
    if depth < QUOTE_DEPTH * max_cost:
        raise PoolTooShallow(
            f"the DCT/{terms.quote} pool holds {depth} base units of DCT, less than {QUOTE_DEPTH} "
            f"times the escrow's {max_cost}"
        )
    return EscrowPrice(price, max_cost)
