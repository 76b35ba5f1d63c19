"""The provider's end of ``/dcent/result/2.0.0``: header, the requester's go-ahead, then the body.

(The requester's end is ``RequesterSide.handle_delivery_stream``.) Asking first costs one round
trip and spares both sides a body that would be refused: the requester checks the header against
its open contracts and the contract's output limit, and answers ``DeliveryReady`` or a refusal;
only then does the delivery frame travel.
"""

from __future__ import annotations

import trio

from node.p2p.errors import RequestTimeoutError
from node.p2p.interface import Host
from protocol.market.delivery import (
    MAX_DELIVERY_HEADER_BYTES,
    RESULT_PROTOCOL_ID,
    DeliveryAnswer,
    DeliveryHeader,
    DeliveryReady,
    decode_answer,
)
from protocol.market.errors import MalformedMessage
from protocol.market.messages import Refusal

#: An ack or a refusal: a hash, a signature, a short message.
MAX_ANSWER_BYTES = 4096
#: Dial, open the stream, send the header and read the go-ahead. A requester that is away (or a
#: connection that died without a FIN) must cost the provider seconds per attempt, not the whole
#: body's allowance: the claim on chain waits for the delivery attempts to end.
HANDSHAKE_TIMEOUT_S = 15.0


async def send_delivery(
    host: Host,
    peer_id: str,
    contract_hash: bytes,
    payload: bytes,
    *,
    timeout: float,
    handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
) -> DeliveryAnswer:
    """Deliver ``payload`` (an encoded ``ResultDelivery``) for ``contract_hash`` to ``peer_id``.

    Returns the requester's final answer (an ack or a refusal; a refusal of the header is
    returned as it is). Raises what ``open_stream`` and the frame calls raise,
    :class:`RequestTimeoutError` when the go-ahead has not come within ``handshake_timeout`` or
    the answer within ``timeout`` in all, and :class:`MalformedMessage` for an answer that is not
    one.
    """
    answer: DeliveryAnswer | None = None
    handshake_s = min(handshake_timeout, timeout)
    with trio.move_on_after(timeout):
        with trio.move_on_after(handshake_s) as opening:
            stream = await host.open_stream(peer_id, RESULT_PROTOCOL_ID)
        if opening.cancelled_caught:
            raise RequestTimeoutError(f"{peer_id} did not open {RESULT_PROTOCOL_ID} within {handshake_s} s")
        try:
            with trio.move_on_after(handshake_s):
                await stream.send_frame(DeliveryHeader(contract_hash, len(payload)).encode())
                answer = decode_answer(await stream.receive_frame(MAX_DELIVERY_HEADER_BYTES))
            if answer is None:
                raise RequestTimeoutError(
                    f"no go-ahead from {peer_id} on {RESULT_PROTOCOL_ID} within {handshake_s} s"
                )
            if not isinstance(answer, Refusal):
                ready, answer = answer, None
                if not isinstance(ready, DeliveryReady) or ready.contract_hash != contract_hash:
                    raise MalformedMessage("the requester's go-ahead is not for this delivery")
                if ready.max_bytes < len(payload):
                    raise MalformedMessage(f"the requester takes {ready.max_bytes} bytes, not {len(payload)}")
                await stream.send_frame(payload)
                await stream.close_write()
                answer = decode_answer(await stream.receive_frame(MAX_ANSWER_BYTES))
        finally:
            if answer is None:
                await stream.reset()
    if answer is None:
        raise RequestTimeoutError(f"no answer from {peer_id} on {RESULT_PROTOCOL_ID} within {timeout} s")
    await stream.close()
    return answer
