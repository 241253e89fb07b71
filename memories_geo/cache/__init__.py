"""Read-through caches in front of remote tiers: a local directory or a Redis server.

A tier's ``cache`` setting (``{"max_size": "50GB", "eviction_policy":
"least-recently-used", "prefetching": True}``, or ``{"type": "redis", "url": ...,
"max_size": ...}``) makes its file backend hand formats a :class:`CachedFileSystem`:
reads of stored versions come from the cache after the first time, verified against
the versions' manifests; everything else goes to the store unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memories_geo.cache.settings import (
    CACHE_KEYS,
    CACHE_TYPES,
    EVICTION_POLICIES,
    CacheSettings,
    check_cache_settings,
)
from memories_geo.cache.stats import CacheCounts, CacheStats

__all__ = [
    "CACHE_KEYS", "CACHE_TYPES", "EVICTION_POLICIES", "CacheCounts", "CacheSettings", "CacheStats",
    "CachedFileSystem", "LocalCacheStore", "RedisCacheStore", "cached_filesystem", "check_cache_settings",
    "open_store",
]


def __getattr__(name: str) -> Any:
    if name == "CachedFileSystem":
        from memories_geo.cache.filesystem import CachedFileSystem

        return CachedFileSystem
    if name == "LocalCacheStore":
        from memories_geo.cache.local import LocalCacheStore

        return LocalCacheStore
    if name == "RedisCacheStore":
        from memories_geo.cache.redis_store import RedisCacheStore

        return RedisCacheStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(settings: CacheSettings, *, stats: CacheStats | None = None) -> Any:
    """The cache store ``settings`` describe: a :class:`LocalCacheStore` or a :class:`RedisCacheStore`.

    Examples
    --------
    >>> store = open_store(check_cache_settings({"path": "/tmp/mg-cache", "max_size": "1GB"}))
    >>> type(store).__name__
    'LocalCacheStore'
    """
    if settings.type == "redis":
        from memories_geo.cache.redis_store import RedisCacheStore

        return RedisCacheStore(str(settings.url), max_size=settings.max_size,
                               eviction_policy=settings.eviction_policy, stats=stats, ttl=settings.ttl)
    from memories_geo.cache.local import LocalCacheStore

    directory = settings.path if settings.path is not None else Path(".memories") / "cache"
    return LocalCacheStore(directory, max_size=settings.max_size, eviction_policy=settings.eviction_policy,
                           stats=stats, ttl=settings.ttl)


def cached_filesystem(remote: Any, settings: CacheSettings) -> Any:
    """``remote`` behind a cache, or ``remote`` itself when it is not an asynchronous object store.

    Local and in-memory filesystems are returned as they are (a cache would only copy
    them).

    Examples
    --------
    >>> import fsspec
    >>> fs = fsspec.filesystem("memory")
    >>> cached_filesystem(fs, CacheSettings()) is fs
    True
    """
    if not getattr(remote, "async_impl", False):
        return remote
    from memories_geo.cache.filesystem import CachedFileSystem

    stats = CacheStats()
    return CachedFileSystem(remote, open_store(settings, stats=stats), settings, stats=stats)
