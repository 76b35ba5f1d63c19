"""File primitives of the blob store: sparse-aware writes, atomic small files, the chunk bitmap.

Blob data files are created at their full size with ``ftruncate`` (a hole) and filled chunk by
chunk with positional writes, so chunks may arrive in any order and from several peers.
:func:`write_sparse` skips 64 KiB blocks of zeros, leaving them as holes: zero-padded model files,
disk images and sparse datasets then cost no disk, and a write of non-zero data costs one
comparison that fails at its first byte. It is only used on regions that are holes or already
hold the same verified bytes (a chunk is written only after it verified), so a skipped block
always reads back as the zeros it should.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

#: Granularity of hole detection; chunk offsets are multiples of it (chunk sizes are powers of two >= 64 KiB).
SPARSE_BLOCK = 1 << 16
_ZEROS = bytes(SPARSE_BLOCK)


def write_sparse(fd: int, offset: int, data: bytes | bytearray) -> int:
    """Write ``data`` at ``offset``, skipping all-zero 64 KiB blocks. Returns the bytes written.

    Raises :class:`OSError` as ``pwrite`` does.
    """
    view = memoryview(data)
    length = len(data)
    written = 0
    run_start = -1  # start of the current run of non-zero blocks
    position = 0
    while position < length:
        end = min(position + SPARSE_BLOCK, length)
        zeros = _ZEROS if end - position == SPARSE_BLOCK else _ZEROS[: end - position]
        # startswith with a prefix of the block's own length is a memcmp that stops at the first
        # non-zero byte: nearly free for real data.
        if data.startswith(zeros, position, end):
            if run_start >= 0:
                written += _pwrite_all(fd, view[run_start:position], offset + run_start)
                run_start = -1
        elif run_start < 0:
            run_start = position
        position = end
    if run_start >= 0:
        written += _pwrite_all(fd, view[run_start:length], offset + run_start)
    return written


def _pwrite_all(fd: int, view: memoryview, offset: int) -> int:
    total = len(view)
    done = 0
    while done < total:
        done += os.pwrite(fd, view[done:], offset + done)
    return total


def read_sparse(fd: int, length: int, offset: int) -> bytearray:
    """Read exactly ``length`` bytes at ``offset``, skipping the file's holes (see
    :func:`read_sparse_into`). Raises :class:`OSError`, and ``EOFError`` when the file is shorter
    than the range."""
    buffer = bytearray(length)
    read_sparse_into(fd, memoryview(buffer), offset)
    return buffer


def read_sparse_into(fd: int, view: memoryview, offset: int) -> None:
    """Fill ``view`` (zeroed by the caller) with the file's ``len(view)`` bytes at ``offset``,
    reading only its data extents, straight into ``view``.

    Reading a hole makes the kernel allocate, zero and cache a page for every 4 KiB of it (about
    as costly as the network per byte); ``SEEK_DATA``/``SEEK_HOLE`` find the data extents, so
    only those are read and the holes stay the caller's zeros. A dense range is one ``preadv``.
    Raises :class:`OSError`, and ``EOFError`` when the file is shorter than the range.
    """
    end = offset + len(view)
    position = offset
    skipped = False  # a hole was left to the caller's zeros: the file's size is checked
    while position < end:
        try:
            start = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # no hole support here: read it all
                _preadv_exact(fd, view[position - offset :], position)
                return
            if exc.errno != errno.ENXIO:  # ENXIO: no data at or after position, only a hole
                raise
            start = end
        if start >= end:
            skipped = True
            break
        skipped = skipped or start > position
        stop = min(os.lseek(fd, start, os.SEEK_HOLE), end)
        _preadv_exact(fd, view[start - offset : stop - offset], start)
        position = stop
    if skipped and os.fstat(fd).st_size < end:
        raise EOFError(f"file ends before offset {end}")


def _preadv_exact(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if not got:
            raise EOFError(f"file ends {len(view) - done} bytes short of offset {offset + len(view)}")
        done += got


def pread_exact(fd: int, length: int, offset: int) -> bytes:
    """Read exactly ``length`` bytes at ``offset``. Raises :class:`OSError`, and ``EOFError`` when
    the file is shorter (it was truncated under us)."""
    data = os.pread(fd, length, offset)
    if len(data) == length:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            raise EOFError(f"file ends {length - got} bytes short of offset {offset + length}")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def write_atomically(path: Path, content: bytes) -> None:
    """Replace ``path`` with ``content`` so a reader (or a crash) sees the old or the new file,
    never a mix: write a temporary file beside it, fsync, rename. Raises :class:`OSError`."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(content)
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def fsync_directory(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Bitmap:
    """One bit per chunk: set once the chunk is verified and written."""

    def __init__(self, count: int, raw: bytes | None = None) -> None:
        size = (count + 7) // 8
        if raw is not None and len(raw) != size:
            raise ValueError(f"a bitmap of {count} bits is {size} bytes, not {len(raw)}")
        self.count = count
        self._bits = bytearray(raw) if raw is not None else bytearray(size)
        if count % 8 and self._bits:
            self._bits[-1] &= (1 << (count % 8)) - 1  # no stray bits past the last chunk
        self.set_count = sum(bin(byte).count("1") for byte in self._bits)

    def __contains__(self, index: int) -> bool:
        return bool(self._bits[index >> 3] & (1 << (index & 7)))

    def add(self, index: int) -> bool:
        """Set bit ``index``; returns whether it was newly set."""
        if not 0 <= index < self.count:
            raise IndexError(f"bit {index} is outside a bitmap of {self.count}")
        mask = 1 << (index & 7)
        if self._bits[index >> 3] & mask:
            return False
        self._bits[index >> 3] |= mask
        self.set_count += 1
        return True

    @property
    def complete(self) -> bool:
        return self.set_count == self.count

    def missing(self) -> list[int]:
        """The unset indices, ascending. Full bytes are skipped whole: a resumed fetch of 2^20
        chunks with most of them in costs a scan of 128 KiB, not a million bit tests."""
        missing: list[int] = []
        for byte_index, byte in enumerate(self._bits):
            if byte == 0xFF:
                continue
            base = byte_index << 3
            missing.extend(base + bit for bit in range(min(8, self.count - base)) if not byte >> bit & 1)
        return missing

    def to_bytes(self) -> bytes:
        return bytes(self._bits)
