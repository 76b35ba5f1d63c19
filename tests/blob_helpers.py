"""Inputs for the blob tests: generated files of real bytes, sparse-friendly, and their hashes."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

MIB = 1 << 20
BLOCK = 64 * 1024


def write_sparse_input(path: Path, size: int, *, seed: int, block_every: int = MIB) -> str:
    """A file of ``size`` bytes: in every ``block_every`` bytes one seeded random 4 KiB piece at a
    seeded 64 KiB-aligned offset, zeros (holes) elsewhere. Every chunk differs from every other.
    Returns the file's SHA-256 (hex), computed without reading it back."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        out.truncate(size)
        for offset in range(0, size, block_every):
            length = min(block_every, size - offset)
            at = rng.randrange(0, max(1, length // BLOCK)) * BLOCK
            piece = rng.randbytes(min(4096, length - at))
            out.seek(offset + at)
            out.write(piece)
            digest.update(bytes(at) + piece + bytes(length - at - len(piece)))
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def flip_byte(path: Path, offset: int) -> None:
    """Corrupt one byte of a file in place."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
