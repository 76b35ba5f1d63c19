"""Answers availability challenges of the standing offers this node serves (issue 17).

A standing offer names the key of the node that serves it; anyone may challenge it on the
ledger, and the offer loses collateral unless that key signs the challenge's seed within
``challenge_window`` blocks (``protocol.ledger.availability``). This service watches each new
height for open challenges of offers naming this node's key and submits the answer through the
node's transaction lane (the node's account pays the fee). It never signs anything but the seed
of a challenge that is open on the committed ledger.

Attacks: a flood of challenges costs each challenger a deposit that the answer pays to the
provider; the service answers each open seed once (a set bounded by the offers' count, pruned
every block) and a refused answer is logged, not retried in a loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from node.market.errors import TxRefused
from protocol.consensus.ledger_app import LedgerApp
from protocol.crypto import PrivateKey
from protocol.ledger.tx import Msg, OfferAnswer, availability_bytes

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("dcent.availability")


class AvailabilityResponder:
    def __init__(
        self,
        *,
        key: PrivateKey,
        app: LedgerApp,
        submit: Callable[[Msg], Awaitable[int]],
        height: Callable[[], int],
        wait_for_height: Callable[[int], Awaitable[None]],
    ) -> None:
        self.key = key
        self.app = app
        self.submit = submit
        self.height = height
        self.wait_for_height = wait_for_height
        #: Seeds answered (or being answered) that are still open on the ledger.
        self._answered: set[bytes] = set()
        self.answers_sent = 0

    def due(self) -> list[OfferAnswer]:
        """Answers to the open, unexpired challenges of this node's offers not yet answered."""
        state = self.app.state
        mine = self.key.public_key.raw
        open_seeds = set()
        answers = []
        for offer_id, offer in state.offers.sorted_items():
            if not offer.seed:
                continue
            open_seeds.add(offer.seed)
            if offer.node_key != mine or offer.seed in self._answered or state.height + 1 > offer.deadline:
                continue
            signature = self.key.sign(availability_bytes(state.chain_id, offer_id, offer.seed))
            answers.append(OfferAnswer(offer_id, signature))
            self._answered.add(offer.seed)
        self._answered &= open_seeds
        return answers

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                for answer in self.due():
                    nursery.start_soon(self._send, answer)
                await self.wait_for_height(self.height() + 1)

    async def _send(self, answer: OfferAnswer) -> None:
        try:
            height = await self.submit(answer)
        except TxRefused as exc:
            log.warning("availability answer for offer %s refused: %s", answer.offer.hex()[:16], exc)
            return
        self.answers_sent += 1
        log.info(
            "answered the availability challenge of offer %s at height %d", answer.offer.hex()[:16], height
        )
