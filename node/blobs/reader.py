"""Reading one complete blob from the store's files: chunks and leaves at their offsets."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from node.blobs.files import pread_exact
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

    def read_chunk(self, index: int) -> bytes:
        """Chunk ``index``'s bytes as stored (not re-verified). Raises IndexError, OSError, EOFError."""
        return pread_exact(
            self._data_fd, self.manifest.chunk_length(index), self.manifest.chunk_offset(index)
        )

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
