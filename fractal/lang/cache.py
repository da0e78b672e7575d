"""`OnceCache`: a bounded, thread-safe map whose values are made once per key.

The trace cache of an `@ft.function` and the compile layer's cache of compiled programs are
both this: several threads may make a first call at once, and each key must be traced (or
compiled) once, every caller getting that one result.  A key being made has a lock of its
own, so callers of other keys go on (tracing is per thread, `fractal.lang.tracing`), and
callers of that key wait for it rather than make it again.  A maker that raises caches
nothing: its waiters then try in turn (the error is theirs too, or the cause is gone).

Entries are kept least recently used last out: past `size` entries the oldest is dropped, so
a function called with ever new static arguments (a float per call) does not keep every
trace.  Same-thread re-entry for a key being made (a function whose trace needs its own
trace) is not a deadlock: the lock is re-entrant, and the inner call makes the key itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable


class _Hashed:
    """A key hashed once: keys hold programs, whose (dataclass) hash walks the whole IR, and a
    lookup uses the key in several dict operations."""

    __slots__ = ("key", "hash")

    def __init__(self, key):
        self.key, self.hash = key, hash(key)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other) -> bool:
        return self.hash == other.hash and self.key == other.key


class OnceCache:
    """`cache.get_or_make(key, make)`: the value for `key`, made by `make()` once."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()  # guards `_items` and `_making`, never held while making
        self._making: dict = {}  # key -> the re-entrant lock its maker holds

    def get_or_make(self, key: Hashable, make: Callable[[], object],
                    valid: Callable[[object], bool] | None = None):
        """The cached value for `key`, else `make()`'s (cached); an entry failing `valid` is
        made again."""
        key = _Hashed(key)
        found = self._lookup(key, valid)
        if found is not None:
            return found[0]
        with self._lock:
            lock = self._making.setdefault(key, threading.RLock())
        try:
            with lock:
                found = self._lookup(key, valid)  # made by another thread while this one waited
                if found is not None:
                    return found[0]
                value = make()
                with self._lock:
                    self._items[key] = value
                    self._items.move_to_end(key)
                    while len(self._items) > self.size:
                        self._items.popitem(last=False)
                return value
        finally:
            with self._lock:
                if self._making.get(key) is lock:  # (a waiter still holds it: it finds the value)
                    del self._making[key]

    def _lookup(self, key, valid) -> tuple | None:
        with self._lock:
            if key not in self._items:
                return None
            value = self._items[key]
            if valid is not None and not valid(value):
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return (value,)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return _Hashed(key) in self._items

    def keys(self):
        with self._lock:
            return [k.key for k in self._items]

    def values(self):
        with self._lock:
            return list(self._items.values())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
