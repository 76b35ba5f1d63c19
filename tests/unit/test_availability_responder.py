"""The node's availability responder: answers each open challenge of the offers naming its key,
once, and nothing else; its answers apply on the real ledger."""

from __future__ import annotations

from types import SimpleNamespace

import trio
import trio.testing

from node.services.availability import AvailabilityResponder
from protocol.ledger.tx import Msg, OfferChallenge, OfferStand, Transfer, decode_tx, sign_tx

from .ledger_helpers import CHAIN_ID, TEST_PARAMS, Chain, addr, key

NODE = key("bob-node")


def served_chain() -> tuple[Chain, bytes, bytes]:
    """bob's offer served by NODE and carol's served by another node; both challenged by dave."""
    chain = Chain()
    chain.block([chain.tx("alice", Transfer(NODE.address.raw, 100_000))])
    mine = chain.tx("bob", OfferStand(NODE.public_key.raw, "H100", 1, 5, 50, 1_000))
    other = chain.tx("carol", OfferStand(key("carol-node").public_key.raw, "H100", 1, 5, 50, 1_000))
    chain.block([mine, other])
    ids = decode_tx(mine).hash, decode_tx(other).hash
    chain.block([chain.tx("dave", OfferChallenge(ids[0])), chain.tx("dave", OfferChallenge(ids[1]))])
    return chain, ids[0], ids[1]


def responder(chain: Chain, submit=None) -> AvailabilityResponder:  # type: ignore[no-untyped-def]
    async def never(height: int) -> None:
        await trio.sleep_forever()

    async def apply(msg: Msg) -> int:
        nonce = chain.state.account(NODE.address.raw).nonce + 1
        chain.block([sign_tx(NODE, CHAIN_ID, nonce, TEST_PARAMS.min_fee, msg)])
        return chain.height

    return AvailabilityResponder(
        key=NODE,
        app=SimpleNamespace(state=chain.state),  # type: ignore[arg-type]
        submit=submit or apply,
        height=lambda: chain.height,
        wait_for_height=never,
    )


def test_it_answers_the_open_challenge_of_its_own_offer_once() -> None:
    chain, mine, _ = served_chain()
    service = responder(chain)
    answers = service.due()
    assert [a.offer for a in answers] == [mine]
    assert service.due() == []  # not twice


def test_an_expired_challenge_is_not_answered() -> None:
    chain, _, _ = served_chain()
    chain.advance_to(chain.state.offers[next(iter(o for o, _ in chain.state.offers.sorted_items()))].deadline)
    assert responder(chain).due() == []


def test_its_answer_applies_and_pays_the_provider_the_deposit() -> None:
    chain, mine, other = served_chain()
    bob = chain.balance("bob")
    service = responder(chain)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert service.answers_sent == 1
    assert not chain.state.offers[mine].seed and chain.state.offers[other].seed
    assert chain.balance("bob") == bob + TEST_PARAMS.challenge_deposit
    assert addr("bob") != NODE.address.raw
