"""The original API's ``RedisStorage``: a Redis server as a shared cache and key-value index.

A ``RedisStorage`` is used as a tier's read cache (``StorageConfig(cache_settings=
RedisStorage(...))`` or ``tier.cache_settings()``), as a small key-value store for what
several machines share (indexes, status, small documents) with ``save`` / ``load``, which
can be awaited when called from a running event loop, as the original wrote them, and as a
tier of its own (``primary_backend=RedisStorage(...)``: a ``redis://`` tier whose files are
Redis values).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from memories_geo.awaitable import awaitable_when_in_loop
from memories_geo.cache import check_cache_settings
from memories_geo.config import expand_env, redact_url
from memories_geo.errors import KeyNotFoundError, OptionError
from memories_geo.units import parse_size

__all__ = ["RedisStorage"]

_KINDS = ("bytes", "text", "json")


class RedisStorage:
    """A Redis server as a cache and key-value index, as in the original API.

    Parameters
    ----------
    url : str
        ``redis://[:password@]host:port/db`` (``${VAR}`` references are expanded).
        Never shown with its password.
    max_size : int or str, optional
        Bytes the cache may hold (``"1GB"``); default 10 GB.
    eviction_policy : {"least-recently-used", "least-frequently-used"}
        Which cached entries go first when ``max_size`` is reached.
    prefix : str
        Prefix of the Redis keys written by :meth:`save`.
    ttl : int, optional
        Seconds a saved value lives (default: until deleted).

    Examples
    --------
    >>> redis_store = RedisStorage("redis://127.0.0.1:6379/0", max_size="1GB")
    >>> redis_store.cache_settings()["type"]
    'redis'
    >>> redis_store.save("status/run-1", {"done": True})  # doctest: +SKIP
    >>> redis_store.load("status/run-1")  # doctest: +SKIP
    {'done': True}
    """

    def __init__(
        self, url: str = "redis://127.0.0.1:6379/0", *, max_size: int | str = "10GB",
        eviction_policy: str = "least-recently-used", prefix: str = "memories_geo:kv:",
        ttl: int | None = None,
    ) -> None:
        self.url = expand_env(url)
        self.max_size = parse_size(max_size, name="max_size")
        self.eviction_policy = eviction_policy
        self.prefix = prefix
        self.ttl = ttl
        check_cache_settings(self.cache_settings())
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
            raise OptionError(f"ttl must be a positive number of seconds or None; got {ttl!r}")
        self._client: Any = None

    def cache_settings(self) -> dict[str, Any]:
        """A tier's ``cache`` mapping using this server (see :mod:`memories_geo.cache`)."""
        return {"type": "redis", "url": self.url, "max_size": self.max_size,
                "eviction_policy": self.eviction_policy}

    def tier_settings(self) -> dict[str, Any]:
        """Settings of a ``redis://`` tier on this server and database (its files are Redis values).

        Examples
        --------
        >>> RedisStorage("redis://cache:6379/2").tier_settings()
        {'url': 'redis://cache:6379/2/memories_geo'}
        >>> RedisStorage("redis://cache:6379").tier_settings()
        {'url': 'redis://cache:6379/0/memories_geo'}
        """
        base = self.url.split("?", 1)[0].rstrip("/")
        database = base.split("://", 1)[-1].partition("/")[2]
        return {"url": f"{base}/memories_geo" if database else f"{base}/0/memories_geo"}

    @property
    def client(self) -> Any:
        """The ``redis.Redis`` client (connected on first use)."""
        if self._client is None:
            from memories_geo.cache.redis_store import redis_client

            self._client = redis_client(self.url)
        return self._client

    def _save(self, key: str, data: Any, metadata: Mapping[str, Any] | None = None) -> None:
        if isinstance(data, bytes | bytearray | memoryview):
            kind, payload = "bytes", bytes(data)
        elif isinstance(data, str):
            kind, payload = "text", data.encode()
        else:
            try:
                kind, payload = "json", json.dumps(data, sort_keys=True, default=str).encode()
            except (TypeError, ValueError) as exc:
                raise OptionError(
                    f"RedisStorage stores bytes, text and JSON values; got {type(data).__name__} ({exc}); "
                    "store datasets and frames with a tier (mg.Memory.save)"
                ) from None
        fields = {"kind": kind, "data": payload, "metadata": json.dumps(dict(metadata or {}), default=str)}
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.prefix + key, mapping=fields)
        if self.ttl is not None:
            pipe.expire(self.prefix + key, self.ttl)
        pipe.execute()

    def _load(self, key: str) -> Any:
        kind, data = self.client.hmget(self.prefix + key, "kind", "data")
        if kind is None:
            raise KeyNotFoundError(f"no value saved under {key!r} in {redact_url(self.url)!r}")
        kind = kind.decode()
        if kind == "bytes":
            return bytes(data)
        return data.decode() if kind == "text" else json.loads(data)

    save = awaitable_when_in_loop(_save)
    load = awaitable_when_in_loop(_load)

    def metadata(self, key: str) -> dict[str, Any]:
        """The metadata saved with ``key``.

        Raises
        ------
        KeyNotFoundError
            When nothing is saved under ``key``.
        """
        found = self.client.hget(self.prefix + key, "metadata")
        if found is None:
            raise KeyNotFoundError(f"no value saved under {key!r} in {redact_url(self.url)!r}")
        return dict(json.loads(found))

    def exists(self, key: str) -> bool:
        """Whether a value is saved under ``key``."""
        return bool(self.client.exists(self.prefix + key))

    def delete(self, key: str) -> None:
        """Delete the value under ``key`` (no error when there is none)."""
        self.client.delete(self.prefix + key)

    def keys(self, pattern: str = "*") -> list[str]:
        """Saved keys matching the glob ``pattern``, sorted."""
        found = self.client.scan_iter(match=self.prefix + pattern, count=500)
        return sorted(k.decode().removeprefix(self.prefix) for k in found)

    def close(self) -> None:
        """Close the connection."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"RedisStorage({redact_url(self.url)!r}, max_size={self.max_size}, {self.eviction_policy!r})"
