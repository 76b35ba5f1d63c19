"""Journaled maps: every write can be undone, so a failed transaction or block changes nothing.

All maps of one ledger state share a :class:`Journal`. ``with journal.atomic():`` records the old
value of every key written inside it and restores them, newest first, if the block raises. Nested
scopes (a block, then each transaction in it) unwind only their own writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING = object()


class Journal:
    __slots__ = ("_depth", "_entries")

    def __init__(self) -> None:
        self._entries: list[tuple[dict[object, object], object, object]] = []
        self._depth = 0

    @property
    def active(self) -> bool:
        return self._depth > 0

    def record(self, data: dict[object, object], key: object) -> None:
        self._entries.append((data, key, data.get(key, _MISSING)))

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Undo every write made inside the block if it raises; keep them otherwise."""
        mark = len(self._entries)
        self._depth += 1
        try:
            yield
        except BaseException:
            self._rollback(mark)
            raise
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._entries.clear()

    def _rollback(self, mark: int) -> None:
        entries = self._entries
        while len(entries) > mark:
            data, key, old = entries.pop()
            if old is _MISSING:
                data.pop(key, None)
            else:
                data[key] = old


class JMap(Generic[K, V]):
    """A dict whose writes are recorded in a shared journal while one is active."""

    __slots__ = ("_data", "_journal")

    def __init__(self, journal: Journal, data: dict[K, V] | None = None) -> None:
        self._journal = journal
        self._data: dict[K, V] = dict(data) if data else {}

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def set(self, key: K, value: V) -> None:
        if self._journal._depth:
            self._journal.record(self._data, key)  # type: ignore[arg-type]
        self._data[key] = value

    def delete(self, key: K) -> None:
        if key in self._data:
            if self._journal._depth:
                self._journal.record(self._data, key)  # type: ignore[arg-type]
            del self._data[key]

    def sorted_items(self) -> list[tuple[K, V]]:
        """Items in key order: the only way to iterate where order can matter."""
        return sorted(self._data.items(), key=lambda item: item[0])  # type: ignore[arg-type,return-value]

    def values(self) -> Iterator[V]:
        """Values in arbitrary order: for order-independent folds such as sums only."""
        return iter(self._data.values())

    def clone(self, journal: Journal) -> JMap[K, V]:
        return JMap(journal, self._data)
