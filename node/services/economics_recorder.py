"""Recording each committed block's economics (``protocol/econview/record.py``) as it commits.

:class:`RecordingLedgerApp` is the node's :class:`LedgerApp`: its ``commit`` still adopts the
executed state, and also builds the block's record from the state the block was applied to, the
state it produced and ``apply_block``'s result. This has to happen inside ``commit``: the consensus
core may decide more than one height before the driver performs the first ``Commit`` effect (a
commit quorum for the next height can arrive with the decision), so by then the application's
state can be past the block being stored. The driver takes the record with
:meth:`RecordingLedgerApp.take_record` and stores it in the same SQLite transaction as the block.

Records wait in a small map until taken; at most :data:`MAX_PENDING` are kept (a record that no
one takes, such as those of blocks replayed at start that already have theirs, is dropped).
"""

from __future__ import annotations

from typing import Any

from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import Block, CommitCertificate
from protocol.econview.record import record_block

#: Records kept until the driver stores them: heights decided ahead of the store are few.
MAX_PENDING = 64


class RecordingLedgerApp(LedgerApp):
    """A LedgerApp that records every block it commits. The states it compares are never
    mutated after commit (blocks execute on copies), so holding the previous one is safe."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._records: dict[int, bytes] = {}

    def commit(self, block: Block, certificate: CommitCertificate) -> bytes:
        """As :meth:`LedgerApp.commit`, and record the block's economics."""
        before = self.state
        state_hash = super().commit(block, certificate)
        result = self.last_result
        assert result is not None and result.height == block.height
        record = record_block(before, self.state, block.txs, result, block.time_ms)
        self._records[block.height] = record.encode()
        while len(self._records) > MAX_PENDING:
            del self._records[min(self._records)]
        return state_hash

    def take_record(self, height: int) -> bytes | None:
        """The encoded record of the committed block at ``height``, once; None if not kept."""
        return self._records.pop(height, None)
