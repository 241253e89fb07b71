"""A cache of byte strings in Redis, shared by several machines, bounded in size.

Each entry is a Redis hash (``data``, ``digest``) under ``<prefix><key>``. The size bound
holds twice: the server's own ``maxmemory`` with an ``allkeys-lru`` or ``allkeys-lfu``
policy (set by whoever runs the server), and a client-side account (a sorted set of keys
scored by last use, or by use count, and a byte counter) from which every client evicts
the lowest-scored entries once ``max_size`` is passed. An entry whose bytes no longer
match its digest is discarded, never returned.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from memories_geo.cache.stats import CacheStats
from memories_geo.config import redact_url
from memories_geo.errors import ConfigError, TierUnavailableError
from memories_geo.integrity import hash_bytes

__all__ = ["RedisCacheStore", "redis_client"]

logger = logging.getLogger(__name__)


def redis_client(url: str, **options: Any) -> Any:
    """A ``redis.Redis`` client for ``url`` (bytes replies), checked with a ``PING``.

    Raises
    ------
    ConfigError
        When the ``redis`` package is not installed.
    TierUnavailableError
        When the server does not answer (the URL is shown without its password).

    Examples
    --------
    >>> client = redis_client("redis://127.0.0.1:6379/0")  # doctest: +SKIP
    """
    try:
        import redis
    except ImportError as exc:
        raise ConfigError("a redis cache needs the redis package: pip install 'redis>=5'") from exc
    options.setdefault("socket_connect_timeout", 5)
    client = redis.Redis.from_url(url, **options)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise TierUnavailableError(
            f"redis {redact_url(url)!r} does not answer ({type(exc).__name__}); check that the server runs"
        ) from None
    return client


class RedisCacheStore:
    """Entries (key -> bytes) in a Redis database, at most ``max_size`` bytes in all.

    Parameters
    ----------
    url : str
        ``redis://[:password@]host:port/db``. Never shown with its password.
    max_size : int
        Bytes kept at most (the client-side account; the server's ``maxmemory`` may be
        lower).
    eviction_policy : {"lru", "lfu"}
        Which entries the client evicts first.
    prefix : str
        Prefix of every Redis key this store writes.
    stats : CacheStats, optional
        Counters to add evictions and discarded entries to.
    ttl : float, optional
        Seconds an entry lives (Redis ``EXPIRE``).
    client : redis.Redis, optional
        A client to use instead of connecting to ``url``.

    Examples
    --------
    >>> store = RedisCacheStore("redis://127.0.0.1:6379/0", max_size=10**8)  # doctest: +SKIP
    >>> store.put("k", b"abc"); store.get("k")  # doctest: +SKIP
    b'abc'
    """

    def __init__(
        self, url: str, *, max_size: int, eviction_policy: str = "lru", prefix: str = "memories_geo:cache:",
        stats: CacheStats | None = None, ttl: float | None = None, client: Any = None,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.max_size = int(max_size)
        self.eviction_policy = eviction_policy
        self.prefix = prefix
        self.stats = stats if stats is not None else CacheStats()
        self.client = client if client is not None else redis_client(url)
        self._index = f"{prefix}@index"
        self._bytes = f"{prefix}@bytes"
        self._sizes = f"{prefix}@sizes"

    def _touch(self, pipe: Any, key: str) -> None:
        if self.eviction_policy == "lfu":
            pipe.zincrby(self._index, 1, key)
        else:
            pipe.zadd(self._index, {key: time.time()})

    def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None`` (missing, evicted, or damaged and discarded)."""
        found = self.client.hmget(self.prefix + key, "data", "digest")
        data, digest = found[0], found[1]
        if data is None or digest is None:
            return None
        if hash_bytes(data) != digest.decode():
            logger.warning("redis cache %s: entry %s is damaged; discarded", redact_url(self.url), key)
            self.stats.add(discarded=1)
            self.discard(key)
            return None
        pipe = self.client.pipeline(transaction=False)
        self._touch(pipe, key)
        pipe.execute()
        return bytes(data)

    def put(self, key: str, data: bytes) -> None:
        """Keep ``data`` under ``key``, evicting the lowest-scored entries past ``max_size``."""
        if len(data) > self.max_size:
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.prefix + key, mapping={"data": data, "digest": hash_bytes(data)})
        if self.ttl is not None:
            pipe.expire(self.prefix + key, max(int(self.ttl), 1))
        pipe.hget(self._sizes, key)
        pipe.hset(self._sizes, key, len(data))
        if self.eviction_policy == "lfu":
            pipe.zadd(self._index, {key: 0}, nx=True)
        else:
            pipe.zadd(self._index, {key: time.time()})
        results = pipe.execute()
        previous = int(results[1]) if results[1] is not None else 0
        total = int(self.client.incrby(self._bytes, len(data) - previous))
        if total > self.max_size:
            self._evict(total, key)

    def _evict(self, total: int, keep: str) -> None:
        evicted = 0
        while total > self.max_size:
            lowest = [k.decode() for k in self.client.zrange(self._index, 0, 15) if k.decode() != keep]
            if not lowest:
                break
            for name in lowest:
                total = self._remove(name)
                evicted += 1
                if total <= self.max_size:
                    break
        if evicted:
            self.stats.add(evictions=evicted)

    def _remove(self, key: str) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(self._sizes, key)
        pipe.hdel(self._sizes, key)
        pipe.zrem(self._index, key)
        pipe.delete(self.prefix + key)
        size = pipe.execute()[0]
        return int(self.client.decrby(self._bytes, int(size) if size is not None else 0))

    def discard(self, key: str) -> None:
        """Forget ``key`` (no error when it is not there)."""
        self._remove(key)

    def __contains__(self, key: object) -> bool:
        return bool(self.client.exists(self.prefix + str(key)))

    def keys(self) -> list[str]:
        """Keys in the client-side account, in eviction order (the next to go first)."""
        return [k.decode() for k in self.client.zrange(self._index, 0, -1)]

    @property
    def size(self) -> int:
        """Bytes in the client-side account."""
        return int(self.client.get(self._bytes) or 0)

    def clear(self) -> None:
        """Remove every entry of this store's prefix."""
        for key in self.keys():
            self._remove(key)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def __repr__(self) -> str:
        return f"RedisCacheStore({redact_url(self.url)!r}, max_size={self.max_size}, {self.eviction_policy})"
