"""Block sync as pure logic: catching up with blocks that carry their commit certificates.

A node that sees the network ahead of it (messages from f+1 of the power at a later height, a
commit quorum for a block it never received, or a block from the future) emits
:class:`~protocol.consensus.effects.RequestSync`. The node layer sends a :class:`SyncRequest`
to a peer, which answers with :func:`serve_sync_request` from its block store. Each returned
:class:`CommittedBlock` is fed back to the core one at a time; the core accepts it only when
:func:`verify_committed_block` proves the commit (more than 2/3 of that height's power signed
precommits for exactly this block) and the application re-executes it to the same state
hash. A peer can therefore waste our time but never make us apply a block the validators did
not decide.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol.consensus.certificate import verify_certificate
from protocol.consensus.errors import SyncError
from protocol.consensus.messages import CommittedBlock, SyncRequest, SyncResponse, block_size
from protocol.consensus.validators import ValidatorSet
from protocol.consensus.verifier import SignatureVerifier

DEFAULT_SYNC_BATCH = 32


def verify_committed_block(
    committed: CommittedBlock,
    *,
    chain_id: str,
    height: int,
    validators: ValidatorSet,
    verifier: SignatureVerifier,
) -> None:
    """Check that ``committed`` is the decided block of ``height``.

    Raises :class:`SyncError` for another height or chain, or an InvalidCertificate subclass.
    Whether the block executes is the application's check, done after this one.
    """
    block = committed.block
    if block.height != height:
        raise SyncError(f"sync block is for height {block.height}, we need {height}")
    if block.chain_id != chain_id:
        raise SyncError(f"sync block is for chain {block.chain_id!r}")
    verify_certificate(
        committed.certificate,
        chain_id=chain_id,
        height=height,
        block_hash=block.hash,
        validators=validators,
        verifier=verifier,
    )


def serve_sync_request(
    request: SyncRequest,
    *,
    last_height: int,
    load: Callable[[int], CommittedBlock | None],
    max_blocks: int = DEFAULT_SYNC_BATCH,
    max_bytes: int | None = None,
) -> SyncResponse:
    """Answer ``request`` from a block store: consecutive blocks from ``from_height``, up to our
    ``last_height`` and ``min(request.max_blocks, max_blocks)``; stops at the first gap, and
    before the blocks' encodings would pass ``max_bytes`` (the requester's response limit: 32
    full blocks are 128 MiB), though always with the first block."""
    count = min(request.max_blocks, max_blocks, max(0, last_height - request.from_height + 1))
    blocks: list[CommittedBlock] = []
    spent = 0
    for height in range(request.from_height, request.from_height + count):
        committed = load(height)
        if committed is None:
            break
        if max_bytes is not None:
            spent += block_size(committed.block) + len(committed.certificate.encode()) + _ENTRY_OVERHEAD
            if blocks and spent > max_bytes:
                break
        blocks.append(committed)
    return SyncResponse(tuple(blocks))


#: Bytes a committed block's envelope adds in a response, beyond its block and certificate.
_ENTRY_OVERHEAD = 64
