"""A bounded walk over tar headers, before anything else reads a requester's tar (review 39).

Two things in a tar cost the reader far more than the tar's own size:

- **Sparse files** (GNU type ``S``, or PAX ``GNU.sparse.*`` records): the header names a size the
  tar does not hold, and the engine writes it out in full when it unpacks the layer. A 20 KiB
  archive made ``podman load`` write 1 GiB of zeros (F1). Without them, every byte a layer unpacks
  to is a byte of the layer, so the store grows by at most what the transfer cap let in.
- **Huge extended headers** (PAX ``x``/``g``, GNU long names ``L``/``K``): Python's tar reader
  reads each one whole into memory; a 300 MiB header took the node to 1.5 GiB (F4).

:class:`TarHeaderScanner` is fed the tar's bytes in order (as a layer streams through the rewrite)
and refuses either, plus more than :data:`MAX_ENTRIES` entries; :func:`scan_file` walks a tar on
disk header by header, seeking past data, before ``tarfile`` is let at it. Both raise
:class:`~node.executor.errors.ImageArchiveInvalid` (5321).
"""

from __future__ import annotations

import os
from pathlib import Path

from node.executor.errors import ImageArchiveInvalid

BLOCK = 512
#: The most bytes one extended header (PAX record set, GNU long name) may hold.
MAX_EXTENDED_HEADER = 64 * 1024
#: The most entries one tar (an archive, or one layer) may hold.
MAX_ENTRIES = 1_000_000

_EXTENDED = frozenset(b"xgLK")
#: Entries that carry data: regular files (and contiguous ones); links, devices, directories and
#: FIFOs carry none whatever their size field says, as Python's and Go's readers both have it.
_WITH_DATA = frozenset(b"07\0")
_WITHOUT_DATA = frozenset(b"123456")
_SPARSE_KEY = b"GNU.sparse."


def _field_number(field: bytes, what: str) -> int:
    """A numeric header field: octal ASCII, or base-256 when its first byte's high bit is set."""
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        if field[0] & 0x40:  # negative in base-256: no valid size or offset is
            raise ImageArchiveInvalid(f"{what}: a negative number in a tar header")
        return value
    digits = field.split(b"\0", 1)[0].strip(b" ")
    if not digits:
        return 0
    try:
        return int(digits, 8)
    except ValueError:
        raise ImageArchiveInvalid(f"{what}: a tar header's number is not octal") from None


def _pax_size(records: bytes, what: str) -> int | None:
    """The ``size`` a PAX record set gives the next entry (None: none); refuses sparse records."""
    size: int | None = None
    position = 0
    while position < len(records):
        if not records[position:].strip(b"\0"):
            break  # NUL padding after the last record, as some writers leave
        space = records.find(b" ", position)
        try:
            length = int(records[position:space]) if space > position else 0
        except ValueError:
            length = 0
        record = records[position : position + length]
        if length <= space - position or not record.endswith(b"\n") or b"=" not in record:
            raise ImageArchiveInvalid(f"{what}: a malformed PAX record in a tar header")
        key, _, value = record[space - position + 1 : -1].partition(b"=")
        if key.startswith(_SPARSE_KEY):
            raise ImageArchiveInvalid(f"{what}: a sparse file (PAX {key.decode(errors='replace')[:40]})")
        if key == b"size":
            try:
                size = int(value)
            except ValueError:
                raise ImageArchiveInvalid(f"{what}: a PAX size that is not a number") from None
            if size < 0:
                raise ImageArchiveInvalid(f"{what}: a negative PAX size")
        position += length
    return size


class TarHeaderScanner:
    """Fed a tar's bytes in order (:meth:`feed`), checks each header as it passes; :meth:`finish`
    once all are fed. Keeps at most one block and one extended header."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._pending = bytearray()  # a header block, or an extended header's payload, in progress
        self._skip = 0  # data bytes (with padding) still to pass
        self._collect = 0  # extended header payload bytes still to collect
        self._collect_padding = 0
        self._collect_kind = 0
        self._next_size: int | None = None  # from a PAX ``x`` header, for the next entry
        self._entries = 0
        self._ended = False

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._ended:
                return  # past the end-of-archive blocks: padding the engine does not read
            if self._skip:
                taken = min(self._skip, len(view))
                self._skip -= taken
                view = view[taken:]
                continue
            if self._collect:
                taken = min(self._collect, len(view))
                self._pending += view[:taken]
                self._collect -= taken
                view = view[taken:]
                if not self._collect:
                    self._extended_done()
                continue
            taken = min(BLOCK - len(self._pending), len(view))
            self._pending += view[:taken]
            view = view[taken:]
            if len(self._pending) == BLOCK:
                header, self._pending = bytes(self._pending), bytearray()
                self._header(header)

    def _header(self, header: bytes) -> None:
        if header == bytes(BLOCK):
            self._ended = True  # tarfile and the engine stop at the first zero block
            return
        self._entries += 1
        if self._entries > MAX_ENTRIES:
            raise ImageArchiveInvalid(f"{self._what}: more than {MAX_ENTRIES} tar entries")
        kind = header[156]
        if kind == ord("S"):
            raise ImageArchiveInvalid(f"{self._what}: a sparse file (GNU type S)")
        if kind not in _EXTENDED and kind not in _WITH_DATA and kind not in _WITHOUT_DATA:
            # Solaris X, GNU volume, multivolume, dump dir: readers differ on them, and no image
            # tool writes them.
            raise ImageArchiveInvalid(f"{self._what}: a tar entry of type {chr(kind)!r}")
        size = _field_number(header[124:136], self._what)
        if kind in _EXTENDED:
            if size > MAX_EXTENDED_HEADER:
                raise ImageArchiveInvalid(
                    f"{self._what}: an extended tar header of {size} bytes (at most {MAX_EXTENDED_HEADER})"
                )
            self._collect, self._collect_kind = size, kind
            self._collect_padding = -size % BLOCK
            if not size:
                self._extended_done()
            return
        if self._next_size is not None:
            size, self._next_size = self._next_size, None
        self._skip = size + (-size % BLOCK) if kind in _WITH_DATA else 0

    def _extended_done(self) -> None:
        payload, self._pending = bytes(self._pending), bytearray()
        if self._collect_kind == ord("x"):
            self._next_size = _pax_size(payload, self._what)
        elif self._collect_kind == ord("g"):
            _pax_size(payload, self._what)  # sparse keys refused; a global size is not honoured
        self._skip = self._collect_padding

    def finish(self) -> None:
        if not self._ended and (self._pending or self._skip or self._collect):
            raise ImageArchiveInvalid(f"{self._what} is not an uncompressed tar, or ends inside an entry")


def scan_file(path: Path, what: str) -> None:
    """Walk the tar at ``path`` header by header, seeking past data, with
    :class:`TarHeaderScanner`'s checks. Raises ImageArchiveInvalid, OSError."""
    scanner = TarHeaderScanner(what)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        while not scanner._ended:
            if scanner._skip:
                jump = min(scanner._skip, size - handle.tell())
                handle.seek(jump, os.SEEK_CUR)
                scanner._skip -= jump
                if scanner._skip:
                    break  # the file ends inside an entry: finish() says so
                continue
            chunk = handle.read(scanner._collect or BLOCK)
            if not chunk:
                break
            scanner.feed(chunk)
    scanner.finish()
