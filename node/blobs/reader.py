"""Reading one complete blob from the store's files: chunks and leaves at their offsets."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from node.blobs.files import pread_exact, read_sparse, read_sparse_into
from node.p2p.framing import FRAME_HEADER, frame_buffer
from protocol.blobs.merkle import HASH_LEN

if TYPE_CHECKING:
    from node.blobs.store import BlobInfo


class BlobReader:
    """Open files of one complete blob, for the server and for exports. Close it (or use ``with``)."""

    def __init__(self, info: BlobInfo, data_fd: int, leaves_fd: int) -> None:
        self.info = info
        self.manifest = info.manifest
        self._data_fd = data_fd
        self._leaves_fd = leaves_fd

    def read_chunk(self, index: int) -> bytearray:
        """Chunk ``index``'s bytes as stored (not re-verified); its holes are not read (see
        :func:`read_sparse`). Raises IndexError, OSError, EOFError."""
        return read_sparse(
            self._data_fd, self.manifest.chunk_length(index), self.manifest.chunk_offset(index)
        )

    def read_chunk_frame(self, index: int) -> bytearray:
        """:meth:`read_chunk` read straight into a frame buffer, ready for
        :meth:`~node.p2p.framing.Stream.send_frame_buffer`: no copy between disk and wire."""
        buffer = frame_buffer(self.manifest.chunk_length(index))
        read_sparse_into(
            self._data_fd, memoryview(buffer)[FRAME_HEADER.size :], self.manifest.chunk_offset(index)
        )
        return buffer

    def read_leaves(self, start: int, count: int) -> bytes:
        """Leaves ``start`` .. ``start + count - 1``, concatenated. Raises IndexError, OSError."""
        if not (start >= 0 and count >= 0 and start + count <= self.manifest.chunks):
            raise IndexError(f"leaves {start}+{count} are outside a blob of {self.manifest.chunks} chunks")
        return pread_exact(self._leaves_fd, count * HASH_LEN, start * HASH_LEN)

    def close(self) -> None:
        for fd in (self._data_fd, self._leaves_fd):
            if fd >= 0:
                os.close(fd)
        self._data_fd = self._leaves_fd = -1

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
