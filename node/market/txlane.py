"""The job service's own transactions (escrow, settle, claim, refund, ...), one at a time.

The node's account signs them. They go through one lane, each waiting for its block before the
next is signed, for two reasons: the next nonce is then simply the committed nonce + 1, and a
transaction that can no longer apply (the other party closed the escrow first) is found, dropped
from the mempool and reported, instead of holding every later nonce behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from node.market.errors import TxRefused
from node.services.mempool import Mempool, MempoolError
from protocol.consensus.ledger_app import LedgerApp
from protocol.crypto import PrivateKey
from protocol.ledger.block import check_tx
from protocol.ledger.errors import LedgerError
from protocol.ledger.tx import Msg, sign_tx

log = logging.getLogger("dcent.market.tx")

#: Re-send a waiting transaction to peers this often (in blocks): a peer that missed the first
#: relay would otherwise never include it when it proposes.
RELAY_EVERY_BLOCKS = 3


class TxLane:
    def __init__(
        self,
        *,
        key: PrivateKey,
        app: LedgerApp,
        mempool: Mempool,
        relay: Callable[[list[bytes]], Awaitable[None]],
        height: Callable[[], int],
        wait_for_height: Callable[[int], Awaitable[None]],
    ) -> None:
        self.key = key
        self.app = app
        self.mempool = mempool
        self.relay = relay
        self.height = height
        self.wait_for_height = wait_for_height
        self._lock = trio.Lock()

    async def submit(self, msg: Msg) -> int:
        """Sign ``msg``, submit it and wait for the block that includes it; returns its height.

        Raises :class:`TxRefused` (with the ledger's code in its message) when the mempool refuses
        it or it stops applying before a block takes it.
        """
        async with self._lock:
            address = self.key.address.raw
            state = self.app.state
            nonce = state.account(address).nonce + 1
            raw = sign_tx(self.key, state.chain_id, nonce, state.params.min_fee, msg)
            try:
                # The node's own transaction: exempt from admission control (a flood of others'
                # cannot refuse the market's escrow and settlement), not from the pool's bounds.
                tx = self.mempool.add(raw, state, local=True)
            except (LedgerError, MempoolError) as exc:
                raise TxRefused(f"{msg.KIND}: refused ({exc.code}): {exc.message}") from None
            await self.relay([raw])
            waited = 0
            while True:
                await self.wait_for_height(self.height() + 1)
                state = self.app.state
                if state.account(address).nonce >= nonce:
                    log.debug("%s included by height %d", msg.KIND, state.height)
                    return state.height
                try:
                    check_tx(state, raw)
                except LedgerError as exc:
                    self.mempool.discard(tx.hash)
                    raise TxRefused(f"{msg.KIND}: no longer applies ({exc.code}): {exc.message}") from None
                waited += 1
                if tx.hash not in self.mempool:
                    try:
                        self.mempool.add(raw, state, local=True)
                    except (LedgerError, MempoolError) as exc:
                        raise TxRefused(
                            f"{msg.KIND}: dropped and refused again ({exc.code}): {exc.message}"
                        ) from None
                if waited % RELAY_EVERY_BLOCKS == 0:
                    await self.relay([raw])
