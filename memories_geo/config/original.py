"""The original API's ``StorageConfig(...)`` keywords, turned into the ``memories.toml`` shape.

The storage objects (``S3Storage``, ``PostgreSQLStorage``, ``COGStorage``...) live in
:mod:`memories_geo.storage`, above this module; they are read here by what they offer:
a backend object has ``tier_settings()`` (one tier's TOML settings), a format object has
``format_name``, ``kinds`` and ``save_options()``, and a cache or index object has
``cache_settings()``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from memories_geo.config.tier import CACHE_KEYS
from memories_geo.errors import ConfigError

__all__ = [
    "FORMAT_ALIASES",
    "FORMAT_KINDS",
    "MULTI_KEYS",
    "SINGLE_KEYS",
    "canonical_format",
    "default_formats",
    "original_data",
    "single_tier",
]

logger = logging.getLogger(__name__)

#: Keywords of the one-tier form, ``StorageConfig(tier="hot", primary_backend=...)``.
SINGLE_KEYS = frozenset(
    {
        "tier",
        "primary_backend",
        "vector_backend",
        "raster_backend",
        "timeseries_backend",
        "array_backend",
        "index_backend",
        "cache_settings",
        "compression",
        "access_pattern",
        "retrieval_time",
        "backup_policy",
        "max_size",
    }
)
#: Keywords of the many-tier form, ``StorageConfig(tier_configs={...}, default_vector_format=...)``.
MULTI_KEYS = frozenset(
    {
        "tier_configs",
        "default_vector_format",
        "default_raster_format",
        "default_timeseries_format",
        "encryption_enabled",
    }
)
#: Built-in formats and the kinds they store (the registry is above the configuration).
FORMAT_KINDS: Mapping[str, frozenset[str]] = {
    "zarr": frozenset({"raster", "array"}),
    "cog": frozenset({"raster"}),
    "geoparquet": frozenset({"vector"}),
    "geojson": frozenset({"vector"}),
    "parquet": frozenset({"timeseries"}),
    "postgis": frozenset({"vector"}),
    "timescaledb": frozenset({"timeseries"}),
    "spatialite": frozenset({"vector"}),
}
#: Format names of the original API -> memories_geo's.
FORMAT_ALIASES: Mapping[str, str] = {
    **{name: name for name in FORMAT_KINDS},
    "tiff": "cog",
    "geotiff": "cog",
    "cloud-optimized-geotiff": "cog",
    "cloud_optimized_geotiff": "cog",
    "csv": "parquet",
}
#: URL schemes on which each group of formats can live.
_DATABASE_FORMATS = {
    "postgis": ("postgresql", "postgres"),
    "timescaledb": ("postgresql", "postgres"),
    "spatialite": ("sqlite",),
}
_REDUNDANCY = ("locally-redundant", "zone-redundant", "geo-redundant", "geo-zone-redundant")


def canonical_format(name: Any, where: str, kind: str | None = None) -> str:
    """memories_geo's name of a format the original names (``"tiff"`` -> ``"cog"``).

    ``"csv"`` becomes ``"parquet"`` (a columnar file pandas reads the same table from),
    with a logged warning.

    Raises
    ------
    ConfigError
        An unknown name, or one that does not store ``kind``.

    Examples
    --------
    >>> canonical_format("cloud-optimized-geotiff", "format")
    'cog'
    """
    fmt = FORMAT_ALIASES.get(str(name).lower()) if isinstance(name, str) else None
    if fmt is None:
        raise ConfigError(f"{where}: unknown format {name!r}; accepted: {sorted(FORMAT_ALIASES)}")
    if name == "csv":
        logger.warning("%s: 'csv' is stored as Parquet (the same table, read with pandas)", where)
    if kind is not None and kind not in FORMAT_KINDS[fmt]:
        raise ConfigError(f"{where}: format {fmt!r} stores {sorted(FORMAT_KINDS[fmt])} data, not {kind}")
    return fmt


def _fits(fmt: str, url: str) -> bool:
    """Whether ``fmt`` can live on a tier at ``url`` (database formats on their database only)."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    schemes = _DATABASE_FORMATS.get(fmt)
    if schemes is not None:
        return scheme in schemes
    return scheme not in ("postgresql", "postgres", "sqlite")


def _settings_of(obj: Any, where: str) -> dict[str, Any]:
    settings = getattr(obj, "tier_settings", None)
    if not callable(settings):
        raise ConfigError(
            f"{where}: expected a backend object (LocalFileStorage, S3Storage, PostgreSQLStorage...), "
            f"got {type(obj).__name__}"
        )
    return dict(settings())


def _compression(value: Any, where: str) -> Any:
    if isinstance(value, bool):
        return None if value else "fast"
    if isinstance(value, str | Mapping) or value is None:
        return value
    raise ConfigError(
        f"{where}: a level ('fast', 'medium', 'high', 'maximum'), true/false, or "
        f"{{'algorithm': 'zstd', 'level': 'high'}}; got {value!r}"
    )


def _backup_policy(value: Any, where: str) -> Any:
    if not isinstance(value, Mapping) or "redundancy" not in value:
        return value
    policy = dict(value)
    redundancy = policy.pop("redundancy")
    if redundancy not in _REDUNDANCY:
        raise ConfigError(f"{where}.redundancy must be one of {list(_REDUNDANCY)}, got {redundancy!r}")
    logger.info(
        "%s.redundancy=%r is the replication of the storage account or bucket, set where it is made",
        where,
        redundancy,
    )
    return policy


def _kind_backend(
    name: str, kind: str, obj: Any, tier: dict[str, Any], out: dict[str, dict[str, Any]]
) -> None:
    """Apply ``{kind}_backend=obj`` to the tier ``name`` (settings ``tier``), adding a sub-tier to ``out``."""
    where = f"tiers.{name}.{kind}_backend"
    format_name = getattr(obj, "format_name", None)
    if format_name is not None:
        kinds = set(getattr(obj, "kinds", ())) or {kind}
        if kind not in kinds:
            raise ConfigError(f"{where}: {type(obj).__name__} stores {sorted(kinds)} data, not {kind}")
        tier.setdefault("formats", {})[kind] = str(format_name)
        options = dict(obj.save_options())
        if options:
            tier.setdefault("format_options", {})[str(format_name)] = options
        if not callable(getattr(obj, "tier_settings", None)):
            return
    sub = _settings_of(obj, where)
    if not sub.get("url"):
        if not str(tier.get("url", "")).startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"{where}: {type(obj).__name__} needs its own location (connection_string, "
                "root_path...) unless the primary backend is the same database"
            )
        sub["url"] = tier["url"]
        sub["storage_options"] = {**tier.get("storage_options", {}), **sub.get("storage_options", {})}
    if format_name is not None:
        sub.setdefault("formats", {})[kind] = str(format_name)
        if "format_options" in tier and str(format_name) in tier["format_options"]:
            sub.setdefault("format_options", {})[str(format_name)] = tier["format_options"][str(format_name)]
    file_tier = str(sub.get("url", "")).split("://", 1)[0] not in ("postgresql", "postgres", "sqlite")
    for shared in ("compression", "codec", "cache", "access_pattern", "retrieval_time"):
        if shared in tier and (shared != "cache" or file_tier):  # a read cache fronts file tiers only
            sub.setdefault(shared, tier[shared])
    sub_name = f"{name}-{kind}"
    out[sub_name] = sub
    tier.setdefault("routes", {})[kind] = sub_name


def single_tier(name: str, spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Tier tables (``{"hot": {...}, "hot-vector": {...}}``) of one original tier configuration.

    Raises
    ------
    ConfigError
        An unknown keyword (the message lists the accepted ones) or a wrong object.

    Examples
    --------
    >>> single_tier("cold", {"compression": {"algorithm": "zstd", "level": "high"}})
    {'cold': {'compression': 'high', 'codec': 'zstd'}}
    """
    unknown = set(spec) - SINGLE_KEYS
    if unknown:
        raise ConfigError(
            f"tiers.{name}: unknown settings {sorted(unknown)}; accepted: {sorted(SINGLE_KEYS)}"
        )
    tier: dict[str, Any] = {}
    if spec.get("primary_backend") is not None:
        tier.update(_settings_of(spec["primary_backend"], f"tiers.{name}.primary_backend"))
    compression = _compression(spec.get("compression"), f"tiers.{name}.compression")
    if isinstance(compression, Mapping):
        if compression.get("level") is not None:
            tier["compression"] = compression["level"]
        if compression.get("algorithm") is not None:
            tier["codec"] = compression["algorithm"]
        unknown = set(compression) - {"algorithm", "level"}
        if unknown:
            raise ConfigError(
                f"tiers.{name}.compression: unknown settings {sorted(unknown)}; "
                "accepted: ['algorithm', 'level']"
            )
    elif compression is not None:
        tier["compression"] = compression
    for key in ("access_pattern", "retrieval_time", "max_size"):
        if spec.get(key) is not None:
            tier[key] = spec[key]
    if spec.get("backup_policy"):
        tier["backup_policy"] = _backup_policy(spec["backup_policy"], f"tiers.{name}.backup_policy")
    cache = dict(spec.get("cache_settings") or {})
    index = spec.get("index_backend")
    if index is not None:
        settings = getattr(index, "cache_settings", None)
        if not callable(settings):
            raise ConfigError(
                f"tiers.{name}.index_backend: expected a cache backend (RedisStorage), "
                f"got {type(index).__name__}"
            )
        cache = {**dict(settings()), **cache}
    if cache:
        unknown = set(cache) - CACHE_KEYS
        if unknown:
            raise ConfigError(
                f"tiers.{name}.cache_settings: unknown settings {sorted(unknown)}; "
                f"accepted: {sorted(CACHE_KEYS)}"
            )
        tier["cache"] = cache
    out: dict[str, dict[str, Any]] = {name: tier}
    for kind in ("vector", "raster", "timeseries", "array"):
        if spec.get(f"{kind}_backend") is not None:
            if "url" not in tier:
                tier["url"] = None
            _kind_backend(name, kind, spec[f"{kind}_backend"], tier, out)
    if tier.get("url") is None:
        tier.pop("url", None)
    return out


def _tier_spec(name: str, value: Any) -> dict[str, dict[str, Any]]:
    """One entry of ``tier_configs``: a dict of original keywords or a one-tier StorageConfig."""
    if isinstance(value, Mapping):
        spec = dict(value)
        if spec.setdefault("tier", name) != name:
            raise ConfigError(f"tier_configs[{name!r}] says tier={spec['tier']!r}")
        return single_tier(name, {k: v for k, v in spec.items() if k != "tier"} | {"tier": name})
    original = getattr(value, "original_tiers", None)
    if callable(original):
        tiers: dict[str, dict[str, Any]] = original()
        if name not in tiers:
            raise ConfigError(f"tier_configs[{name!r}] configures tier(s) {sorted(tiers)}, not {name!r}")
        return tiers
    raise ConfigError(
        f"tier_configs[{name!r}]: a dict of tier settings or StorageConfig(tier={name!r}, ...), "
        f"got {type(value).__name__}"
    )


def original_data(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``memories.toml`` shape of the original ``StorageConfig`` keywords (``${VAR}`` not expanded).

    Raises
    ------
    ConfigError
        Keywords of both forms, or an unknown keyword (the message lists the accepted ones).

    Examples
    --------
    >>> original_data({"tier_configs": {"cold": {"access_pattern": "batch"}}})
    {'tiers': {'cold': {'access_pattern': 'batch'}}}
    """
    single, multi = set(kwargs) & SINGLE_KEYS, set(kwargs) & MULTI_KEYS
    unknown = set(kwargs) - SINGLE_KEYS - MULTI_KEYS
    if unknown:
        raise ConfigError(
            f"StorageConfig: unknown keywords {sorted(unknown)}; accepted: tiers, catalog, default_tier, "
            f"lifecycle, home, backup_enabled, monitoring_enabled, {sorted(SINGLE_KEYS | MULTI_KEYS)}"
        )
    if single and multi:
        raise ConfigError(
            f"StorageConfig: {sorted(single)} configure one tier (with tier=...), "
            f"{sorted(multi)} several; put the one-tier settings in tier_configs"
        )
    if single:
        name = kwargs.get("tier")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"StorageConfig: the one-tier form needs tier= (a tier name), got {name!r}")
        return {
            "tiers": single_tier(name, {k: v for k, v in kwargs.items() if k != "tier"}),
            "default_tier": name,
        }
    tiers: dict[str, dict[str, Any]] = {}
    for name, value in dict(kwargs.get("tier_configs") or {}).items():
        tiers.update(_tier_spec(str(name), value))
    if kwargs.get("encryption_enabled"):
        for tier in tiers.values():
            if str(tier.get("url", "")).startswith(("s3://", "s3a://")) and not tier.get("encryption"):
                tier["encryption"] = {"algorithm": "AES256"}
    data: dict[str, Any] = {"tiers": tiers}
    for kind in ("vector", "raster", "timeseries"):
        if kwargs.get(f"default_{kind}_format") is not None:
            data[f"default_{kind}_format"] = kwargs[f"default_{kind}_format"]
    return data


def default_formats(tiers: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``tiers`` (name -> TierConfig) with ``{kind: format}`` defaults set where the format fits.

    A format goes to every tier that can hold it (PostGIS and TimescaleDB on PostgreSQL
    tiers, SpatiaLite on SQLite tiers, file formats on the others) and that neither
    names a format for that kind nor routes the kind to another tier.

    Raises
    ------
    ConfigError
        An unknown format, or one that does not store that kind.
    """
    out = dict(tiers)
    for kind, asked in defaults.items():
        if asked is None:
            continue
        fmt = canonical_format(asked, f"default_{kind}_format", kind)
        for name, tier in out.items():
            if _fits(fmt, tier.url) and kind not in tier.formats and kind not in tier.routes:
                out[name] = replace(tier, formats={**tier.formats, kind: fmt})
    return out
