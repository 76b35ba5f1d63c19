"""Standing offers over RPC: ``offer_get``, ``offer_all`` (the market view of standing capacity),
``offer_nodeKey`` and ``offer_answer`` (this node signs the answer to a challenge of an offer it
serves; what ``dcent offer stand`` and ``dcent offer answer`` ask for).

``offer_answer`` signs with this node's key, only the seed of a challenge open on the ledger for an
offer that names this node's key: the RPC is authenticated (the cookie file), and even so it
cannot be used to sign anything else.
"""

from __future__ import annotations

from node.rpc.methods import MethodSpec
from node.rpc.params import HexBytes, Param
from node.rpc.views import SigningLedgerReads
from protocol.crypto import Address
from protocol.ledger.availability import MAX_OFFERS, offer_dct_price
from protocol.ledger.liquidity_errors import NoChallenge, NoQuotePrice, UnknownOffer
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import availability_bytes

_OFFER = Param("offer", HexBytes(32), "the offer's id (hex): the hash of its offer_stand")


def offer_json(state: LedgerState, offer_id: bytes) -> dict[str, object]:
    offer = state.offers.get(offer_id)
    if offer is None:
        raise UnknownOffer("no standing offer with that id")
    take = state.takes.get(offer_id)
    try:
        price_now: str | None = str(offer_dct_price(state, offer, state.height + 1))
    except NoQuotePrice:
        price_now = None
    return {
        "offer": offer_id.hex(),
        "provider": str(Address(offer.provider)),
        "node_key": offer.node_key.hex(),
        "gpu_model": offer.gpu_model,
        "gpu_count": offer.gpu_count,
        "quote": offer.quote or "DCT",
        "quoted_price": str(offer.price),
        "price_per_gpu_second": price_now,
        "collateral": str(offer.collateral),
        "start": offer.start,
        "end": offer.end,
        "standing": state.height <= offer.end,
        "forfeited": offer.forfeited,
        "challenge": None
        if not offer.seed
        else {
            "seed": offer.seed.hex(),
            "deadline": offer.deadline,
            "challenger": str(Address(offer.challenger)),
        },
        "take": None
        if take is None
        else {
            "take": take.take_id.hex(),
            "requester": str(Address(take.requester)),
            "gpus": take.gpus,
            "gpu_seconds": take.gpu_seconds,
            "max_cost": str(take.max_cost),
            "price_per_gpu_second": str(take.price),
            "deadline": take.deadline,
        },
    }


_SHAPE = (
    "`offer` (id, hex), `provider`, `node_key` (hex), `gpu_model`, `gpu_count`, "
    "`quote` (`DCT` or the asset the price is quoted in), `quoted_price` (per GPU-second, in base "
    "units of `quote`), `price_per_gpu_second` (DCT base units a take in the next block locks per "
    "GPU-second: the quoted price at the pool's time-weighted price; null while the pool has none), "
    "`collateral`, `start`, `end` (heights), `standing`, `forfeited` (a "
    "miss or refusal this epoch), `challenge` (null or `{seed, deadline, challenger}`), `take` "
    "(null or `{take, requester, gpus, gpu_seconds, max_cost, price_per_gpu_second, deadline}`)"
)

OFFER_METHODS = (
    MethodSpec(
        "offer_get", "One standing offer.", (_OFFER,), errors=(UnknownOffer,), returns=f"object: {_SHAPE}"
    ),
    MethodSpec(
        "offer_all",
        "Every standing offer (and those whose period ended but are not withdrawn).",
        returns=f"array of every standing offer (at most {MAX_OFFERS}), by id: {_SHAPE}",
    ),
    MethodSpec(
        "offer_nodeKey",
        "This node's key: what an offer it serves names as its ``node_key``.",
        returns="object: `node_key` (this node's public key, hex)",
    ),
    MethodSpec(
        "offer_answer",
        "This node's signature over the seed of the open challenge of ``offer``.",
        (_OFFER,),
        errors=(UnknownOffer, NoChallenge),
        returns="object: `signature` (hex): this node's answer to the offer's open challenge, for `offer_answer`",
    ),
)


class OfferMethods:
    """The handlers of :data:`OFFER_METHODS`."""

    def __init__(self, reads: SigningLedgerReads) -> None:
        self._reads = reads

    def _state(self) -> LedgerState:
        return self._reads.app.state

    async def offer_get(self, offer: bytes) -> dict[str, object]:
        return offer_json(self._state(), offer)

    async def offer_all(self) -> list[dict[str, object]]:
        state = self._state()
        return [offer_json(state, offer_id) for offer_id, _ in state.offers.sorted_items()]

    async def offer_node_key(self) -> dict[str, object]:
        return {"node_key": self._reads.identity.key.public_key.raw.hex()}

    async def offer_answer(self, offer: bytes) -> dict[str, object]:
        state = self._state()
        record = state.offers.get(offer)
        key = self._reads.identity.key
        if record is None or record.node_key != key.public_key.raw:
            raise UnknownOffer("no standing offer served by this node with that id")
        if not record.seed:
            raise NoChallenge("the offer has no open challenge")
        return {"signature": key.sign(availability_bytes(state.chain_id, offer, record.seed)).hex()}
