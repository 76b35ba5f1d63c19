"""What a provider's quote asks: its DCT price and transfer surcharge, or a price in a registered
asset (a stable unit).

A provider may name its price in an asset ("TUSD") instead of DCT. Its quote's contract then
carries the asset and the price in its base units (``ContractTerms.quote``,
``quote_price_per_gpu_second``), and ``price_per_gpu_second`` becomes the requester's cap: the
job's ``max_price_per_gpu_second``, the most DCT it pays per GPU-second. The escrow fixes the DCT
price from the DCT/asset pool's time-weighted price when it opens and refuses to open above the
cap (``protocol.ledger.quoted``), so neither side's amount moves with DCT's price during the job.

Both sides price the quote at the time-weighted price the next block would see (the host reads it
from its ledger), as the escrow will: the provider refuses a job whose maximum its quote exceeds
(:class:`PriceBelowAsk`), or any job while its asset has no such price (:class:`QuoteNotPriced`);
the requester refuses a quote in another asset than announced, or one whose DCT value at the
price it matched on is above the job's maximum (:class:`QuoteMismatch`). A transfer surcharge
(``transfer_price_per_gib``, in DCT) is added in the asset at the same price, rounded up.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.contracts import ContractTerms
from protocol.ledger.availability import dct_price
from protocol.market.errors import PriceBelowAsk, QuoteMismatch, QuoteNotPriced
from protocol.market.jobspec import JobSpec
from protocol.market.matching import Offer
from protocol.units import DCT


@dataclass(frozen=True, slots=True)
class QuotedPrice:
    """A quote's price fields: ``price_per_gpu_second`` (the DCT price, or for a quote in an
    asset the requester's cap) and the asset and its price ("" and 0 for DCT)."""

    cap: int
    quote: str
    quote_price_per_gpu_second: int


def asset_surcharge(surcharge_dct: int, twap: int) -> int:
    """A DCT surcharge per GPU-second in the asset's base units at ``twap``, rounded up."""
    return -(-surcharge_dct * twap // DCT)


def transfer_surcharge(spec: JobSpec, price_per_gib: int) -> int:
    """What a provider adds to its price per GPU-second for fetching the job's inputs: the
    transfer's cost (``price_per_gib`` per GiB started) spread over the job's maximum
    GPU-seconds, rounded up. A contract has one price, so the transfer is paid in proportion to
    the metered time: a job that ends early pays that share of it (the surcharge is a price, not
    a fee; the ledger knows no other kind)."""
    gib = -(-spec.transfer_bytes // 2**30)
    return -(-(gib * price_per_gib) // spec.max_gpu_seconds) if gib and price_per_gib else 0


def terms_price(
    spec: JobSpec,
    *,
    price_per_gpu_second: int,
    transfer_price_per_gib: int,
    quote: str,
    quote_price: int,
    twap: int | None,
) -> QuotedPrice:
    """The price fields a provider offers ``spec``: its DCT ask plus the transfer surcharge, or,
    quoting ``quote_price`` of ``quote``, the asset price at ``twap`` (the pool's time-weighted
    price the next block sees) under the job's maximum as the cap. Raises PriceBelowAsk,
    QuoteNotPriced."""
    max_price = spec.max_price_per_gpu_second
    surcharge = transfer_surcharge(spec, transfer_price_per_gib)
    if not quote:
        price = price_per_gpu_second + surcharge
        if max_price < price:
            raise PriceBelowAsk(
                f"the job pays at most {max_price} per GPU-second, this provider asks {price}"
                + (" (with the transfer of its inputs)" if surcharge else "")
            )
        return QuotedPrice(cap=price, quote="", quote_price_per_gpu_second=0)
    if twap is None or twap <= 0:
        raise QuoteNotPriced(
            f"this provider quotes in {quote}, whose DCT pool has no time-weighted price now"
        )
    asked = quote_price + asset_surcharge(surcharge, twap)
    value = dct_price(asked, twap)
    if value > max_price:
        raise PriceBelowAsk(
            f"the job pays at most {max_price} per GPU-second, this provider asks {asked} {quote} "
            f"({value} at the pool's average price)"
        )
    return QuotedPrice(cap=max_price, quote=quote, quote_price_per_gpu_second=asked)


def check_quoted_terms(terms: ContractTerms, offer: Offer, max_price: int) -> None:
    """The requester's check of a quote's asset and price against the offer it matched.
    Raises QuoteMismatch."""
    if terms.quote != offer.quote:
        raise QuoteMismatch(
            f"quote.terms.quote: {terms.quote or 'DCT'}, the provider announced {offer.quote or 'DCT'}"
        )
    if not terms.quoted:
        return
    value = dct_price(terms.quote_price_per_gpu_second, offer.quote_twap)
    if value > max_price:
        raise QuoteMismatch(
            f"quote.terms.quote_price_per_gpu_second: {terms.quote_price_per_gpu_second} {terms.quote} "
            f"is {value} per GPU-second at the pool's average, above the job's maximum {max_price}"
        )
