"""Counters of what a cache served and fetched."""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields

__all__ = ["CacheCounts", "CacheStats"]


@dataclass(frozen=True)
class CacheCounts:
    """A snapshot of a cache's counters.

    Attributes
    ----------
    hits, misses : int
        Reads served from the cache, and reads that had to fetch from the store.
    bytes_served, bytes_fetched : int
        Bytes returned from the cache, and bytes fetched from the store.
    requests : int
        Fetches sent to the store (one per batch of blocks or object).
    prefetched : int
        Blocks or objects fetched ahead of a sequential read.
    evictions, discarded : int
        Entries evicted to stay within ``max_size``, and damaged entries thrown away.
    """

    hits: int = 0
    misses: int = 0
    bytes_served: int = 0
    bytes_fetched: int = 0
    requests: int = 0
    prefetched: int = 0
    evictions: int = 0
    discarded: int = 0

    @property
    def hit_ratio(self) -> float:
        """Hits over all reads (0.0 before any read)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class CacheStats:
    """Thread-safe counters, read as a :class:`CacheCounts` snapshot.

    Examples
    --------
    >>> stats = CacheStats()
    >>> stats.add(hits=2, bytes_served=10)
    >>> stats.snapshot().hits
    2
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys((f.name for f in fields(CacheCounts)), 0)

    def add(self, **counts: int) -> None:
        """Add to the named counters."""
        with self._lock:
            for name, value in counts.items():
                self._values[name] += value

    def snapshot(self) -> CacheCounts:
        """The counters now."""
        with self._lock:
            return CacheCounts(**self._values)

    def __repr__(self) -> str:
        return f"CacheStats({self.snapshot()})"
