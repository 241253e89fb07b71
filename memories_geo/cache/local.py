"""A cache of byte strings in a local directory, bounded in size, shared by the processes of a machine.

Each entry is one file named after its key; a SQLite index (WAL mode, so several
processes read and write it at once) holds its size, digest, hit count and last use,
which order the evictions. Files are written under a temporary name and renamed, so a
reader never sees half an entry; an entry whose bytes no longer match the digest
recorded with it (a damaged disk, a file edited by hand) is discarded, never returned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from memories_geo.cache.stats import CacheStats
from memories_geo.integrity import hash_bytes
from memories_geo.sqlite_wal import use_wal

__all__ = ["LocalCacheStore"]

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    digest TEXT NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0,
    used REAL NOT NULL,
    created REAL NOT NULL
)
"""
_ORDER = {
    "lru": "SELECT key, size FROM entries ORDER BY used ASC",
    "lfu": "SELECT key, size FROM entries ORDER BY hits ASC, used ASC",
}


class LocalCacheStore:
    """Entries (key -> bytes) in ``directory``, at most ``max_size`` bytes in all.

    Parameters
    ----------
    directory : str or pathlib.Path
        Where entries and the index (``index.sqlite``) live; created when missing.
    max_size : int
        Bytes kept at most; a ``put`` past it evicts entries by ``eviction_policy``.
        An entry larger than ``max_size`` is not kept.
    eviction_policy : {"lru", "lfu"}
        Least recently used first, or least frequently used (ties: least recent) first.
    stats : CacheStats, optional
        Counters to add evictions and discarded entries to.
    ttl : float, optional
        Seconds an entry is served after it was cached; older ones are discarded.

    Examples
    --------
    >>> store = LocalCacheStore(tmp_path, max_size=1000)  # doctest: +SKIP
    >>> store.put("k", b"abc"); store.get("k")  # doctest: +SKIP
    b'abc'
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, max_size: int, eviction_policy: str = "lru",
        stats: CacheStats | None = None, ttl: float | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.ttl = ttl
        self.max_size = int(max_size)
        self.eviction_policy = eviction_policy
        self.stats = stats if stats is not None else CacheStats()
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.directory / "index.sqlite", timeout=30, isolation_level=None, check_same_thread=False
        )
        use_wal(self._db)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def _file(self, key: str) -> Path:
        return self.directory / "data" / key[:2] / key

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None`` (missing, or damaged and discarded)."""
        with self._lock:
            row = self._db.execute("SELECT digest, created FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        if self.ttl is not None and time.time() - row[1] > self.ttl:
            self.discard(key)
            return None
        try:
            data = self._file(key).read_bytes()
        except FileNotFoundError:  # evicted by another process since the lookup
            return None
        if hash_bytes(data) != row[0]:
            logger.warning("cache %s: entry %s is damaged; discarded", self.directory, key)
            self.stats.add(discarded=1)
            self.discard(key)
            return None
        with self._lock:
            self._db.execute("UPDATE entries SET hits = hits + 1, used = ? WHERE key = ?", (time.time(), key))
        return data

    def put(self, key: str, data: bytes) -> None:
        """Keep ``data`` under ``key``, evicting other entries to stay within ``max_size``."""
        if len(data) > self.max_size:
            return
        target = self._file(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        staged.write_bytes(data)
        os.replace(staged, target)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO entries (key, size, digest, hits, used, created) VALUES (?, ?, ?, 0, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET size = excluded.size, digest = excluded.digest, "
                "used = excluded.used, created = excluded.created",
                (key, len(data), hash_bytes(data), time.time(), time.time()),
            )
            evicted = self._evict(db, key)
        for name in evicted:
            self._unlink(name)
        if evicted:
            self.stats.add(evictions=len(evicted))

    def _evict(self, db: sqlite3.Connection, keep: str) -> list[str]:
        """Delete index rows by the policy, never ``keep`` (the entry just added), until within bounds."""
        total = db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
        evicted: list[str] = []
        if total <= self.max_size:
            return evicted
        for key, size in db.execute(_ORDER[self.eviction_policy]):
            if key == keep:
                continue
            evicted.append(key)
            total -= size
            if total <= self.max_size:
                break
        db.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in evicted])
        return evicted

    def _unlink(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._file(key).unlink()

    def discard(self, key: str) -> None:
        """Forget ``key`` (no error when it is not there)."""
        with self._transaction() as db:
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
        self._unlink(key)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone() is not None

    def keys(self) -> list[str]:
        """Keys held, in eviction order (the next to go first)."""
        with self._lock:
            return [r[0] for r in self._db.execute(_ORDER[self.eviction_policy])]

    @property
    def size(self) -> int:
        """Bytes held."""
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0])

    def clear(self) -> None:
        """Remove every entry."""
        for key in self.keys():
            self.discard(key)

    def close(self) -> None:
        """Close the index."""
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"LocalCacheStore({str(self.directory)!r}, max_size={self.max_size}, {self.eviction_policy})"
