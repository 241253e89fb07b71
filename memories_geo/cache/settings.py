"""A tier's cache settings: parsed and checked once, from the configuration's mapping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memories_geo.config import redact_url
from memories_geo.errors import ConfigError, OptionError
from memories_geo.units import parse_duration, parse_size

__all__ = ["CACHE_KEYS", "CACHE_TYPES", "EVICTION_POLICIES", "CacheSettings", "check_cache_settings"]

#: Eviction policy names as the configuration spells them -> the short name used inside.
EVICTION_POLICIES: Mapping[str, str] = {
    "least-recently-used": "lru", "lru": "lru",
    "least-frequently-used": "lfu", "lfu": "lfu",
}
#: Where cached bytes live.
CACHE_TYPES = ("local", "redis")
#: Every key a tier's ``cache`` mapping accepts.
CACHE_KEYS = (
    "type", "max_size", "eviction_policy", "prefetching", "path", "url", "block_size", "prefetch_blocks",
    "ttl",
)
_DEFAULT_MAX_SIZE = 10 * 1000**3
_DEFAULT_BLOCK_SIZE = 2 * 1024**2


@dataclass(frozen=True)
class CacheSettings:
    """How one tier caches what it reads.

    Attributes
    ----------
    type : {"local", "redis"}
        ``"local"``: files in a directory of this machine (shared by its processes);
        ``"redis"``: a Redis server shared by several machines.
    max_size : int
        Bytes the cache may hold; past it, entries are evicted by ``eviction_policy``.
    eviction_policy : {"lru", "lfu"}
        Least recently used first, or least frequently used first.
    prefetching : bool
        Whether a sequential read fetches the next blocks (and the next chunk files of
        a version) in a background thread before they are asked for.
    path : pathlib.Path or None
        Directory of a local cache (default ``<home>/cache/<tier>``).
    url : str or None
        ``redis://host:port/db`` of a Redis cache. Never shown with its password.
    block_size : int
        Objects up to this size are cached whole; larger ones in blocks of this size.
    prefetch_blocks : int
        How many blocks (or chunk files) ahead a sequential read prefetches.
    ttl : float or None
        Seconds an entry is kept after it was cached (``"7 days"`` in the mapping);
        ``None``: until evicted. Cached bytes never go stale, so this only bounds age.

    Examples
    --------
    >>> check_cache_settings({"max_size": "50GB", "eviction_policy": "least-frequently-used"}).eviction_policy
    'lfu'
    """

    type: str = "local"
    max_size: int = _DEFAULT_MAX_SIZE
    eviction_policy: str = "lru"
    prefetching: bool = True
    path: Path | None = None
    url: str | None = None
    block_size: int = _DEFAULT_BLOCK_SIZE
    prefetch_blocks: int = 4
    ttl: float | None = None

    def __repr__(self) -> str:
        where = f"url={redact_url(self.url)!r}" if self.url else f"path={str(self.path)!r}"
        return (f"CacheSettings(type={self.type!r}, max_size={self.max_size}, "
                f"eviction_policy={self.eviction_policy!r}, prefetching={self.prefetching}, {where})")


def _choice(name: str, value: Any, accepted: Mapping[str, str] | tuple[str, ...]) -> str:
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text is None or text not in accepted:
        names = [k for k in accepted if len(k) > 3] if isinstance(accepted, Mapping) else list(accepted)
        raise ConfigError(f"cache {name} must be one of {names}; got {value!r}")
    return accepted[text] if isinstance(accepted, Mapping) else text


def _size(name: str, value: Any) -> int:
    try:
        found = parse_size(value, name=f"cache {name}")
    except OptionError as exc:
        raise ConfigError(str(exc)) from None
    if found <= 0:
        raise ConfigError(f"cache {name} must be positive; got {value!r}")
    return found


def check_cache_settings(
    value: CacheSettings | Mapping[str, Any], *, default_path: Path | None = None
) -> CacheSettings:
    """Check a tier's ``cache`` mapping and return its :class:`CacheSettings`.

    Parameters
    ----------
    value : mapping or CacheSettings
        ``{"max_size": "50GB", "eviction_policy": "least-recently-used", "prefetching":
        True}`` for a local cache, or ``{"type": "redis", "url": "redis://host:6379/0",
        "max_size": "1GB"}``; optional ``path`` (local), ``block_size`` and
        ``prefetch_blocks``, ``ttl``.
    default_path : pathlib.Path, optional
        Directory of a local cache that names no ``path``.

    Raises
    ------
    ConfigError
        For an unknown key or value (the message lists the accepted ones), a Redis
        cache without ``url`` or a local one with one.

    Examples
    --------
    >>> check_cache_settings({"type": "redis", "url": "redis://127.0.0.1:6379/0"}).type
    'redis'
    >>> check_cache_settings({"eviction": "lru"})
    Traceback (most recent call last):
    ...
    memories_geo.errors.ConfigError: unknown cache setting(s) ['eviction']; accepted: ...
    """
    if isinstance(value, CacheSettings):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"cache settings must be a mapping of {list(CACHE_KEYS)}; "
                          f"got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in CACHE_KEYS)
    if unknown:
        raise ConfigError(f"unknown cache setting(s) {unknown}; accepted: {list(CACHE_KEYS)}")
    kind = _choice("type", value.get("type", "local"), CACHE_TYPES)
    url = value.get("url")
    if kind == "redis" and not (isinstance(url, str) and url.startswith(("redis://", "rediss://", "unix://"))):
        raise ConfigError("a redis cache needs url='redis://host:port/db' (or rediss://, unix://)")
    if kind == "local" and url is not None:
        raise ConfigError("cache url applies to type='redis' only; a local cache takes path=")
    if kind == "redis" and value.get("path") is not None:
        raise ConfigError("cache path applies to type='local' only; a redis cache takes url=")
    prefetching = value.get("prefetching", True)
    if not isinstance(prefetching, bool):
        raise ConfigError(f"cache prefetching must be true or false; got {prefetching!r}")
    ahead = value.get("prefetch_blocks", 4)
    if isinstance(ahead, bool) or not isinstance(ahead, int) or ahead < 0:
        raise ConfigError(f"cache prefetch_blocks must be a whole number >= 0; got {ahead!r}")
    path = value.get("path")
    ttl = value.get("ttl")
    if ttl is not None:
        try:
            ttl = parse_duration(ttl, name="cache ttl").total_seconds()
        except OptionError as exc:
            raise ConfigError(str(exc)) from None
    return CacheSettings(
        type=kind,
        max_size=_size("max_size", value.get("max_size", _DEFAULT_MAX_SIZE)),
        eviction_policy=_choice("eviction_policy", value.get("eviction_policy", "lru"), EVICTION_POLICIES),
        prefetching=prefetching,
        path=Path(path).expanduser() if path is not None else default_path,
        url=url if kind == "redis" else None,
        block_size=_size("block_size", value.get("block_size", _DEFAULT_BLOCK_SIZE)),
        prefetch_blocks=ahead,
        ttl=ttl,
    )
