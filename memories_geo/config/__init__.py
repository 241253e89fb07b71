"""Configuration: tiers, their backends and defaults; TOML files with ``${ENV}`` expansion.

One model underneath every way of writing a configuration: :class:`StorageConfig` of
:class:`TierConfig` tiers, built from ``memories.toml``, from keywords, or from the
original API's forms (``StorageConfig(tier="hot", primary_backend=S3Storage(...))``,
``StorageConfig(tier_configs={...}, default_vector_format=...)``), which become the
same tiers the equivalent TOML describes.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from memories_geo.config.encryption import (
    S3_ENCRYPTION_ALGORITHMS,
    check_encryption,
    redact_text,
    redact_url,
)
from memories_geo.config.env import CONFIG_ENV, HOME_ENV, default_home, expand_env
from memories_geo.config.original import default_formats, original_data
from memories_geo.config.tier import TierConfig, tier_from_dict
from memories_geo.errors import ConfigError
from memories_geo.lifecycle_policy import LifecyclePolicy, check_policies
from memories_geo.types import CompressionLevel, Tier

__all__ = [
    "CONFIG_ENV",
    "HOME_ENV",
    "S3_ENCRYPTION_ALGORITHMS",
    "StorageConfig",
    "TierConfig",
    "check_encryption",
    "default_home",
    "expand_env",
    "redact_text",
    "redact_url",
]

#: Compression by tier when the configuration does not say.
DEFAULT_COMPRESSION = {
    Tier.HOT: CompressionLevel.FAST,
    Tier.WARM: CompressionLevel.MEDIUM,
    Tier.COLD: CompressionLevel.HIGH,
    Tier.GLACIER: CompressionLevel.MAXIMUM,
}
#: Top-level keys of ``memories.toml``.
TOP_KEYS = (
    "home",
    "catalog",
    "default_tier",
    "tiers",
    "lifecycle",
    "default_vector_format",
    "default_raster_format",
    "default_timeseries_format",
    "backup_enabled",
    "monitoring_enabled",
)


@dataclass(frozen=True)
class StorageConfig:
    """The whole configuration of one collection.

    Attributes
    ----------
    tiers : mapping of str to TierConfig
        Tier name -> configuration.
    catalog : str
        Catalog location: a SQLite file path (``sqlite:///...`` or a plain path).
    default_tier : str
        Tier used when ``save`` is not told one.
    lifecycle : tuple of LifecyclePolicy
        The ``[[lifecycle]]`` policies that move keys between tiers (:mod:`~memories_geo.lifecycle_policy`).

    Examples
    --------
    >>> cfg = StorageConfig.embedded("/tmp/mg-demo")
    >>> sorted(cfg.tiers)
    ['cold', 'glacier', 'hot', 'warm']
    """

    tiers: Mapping[str, TierConfig]
    catalog: str
    default_tier: str = Tier.HOT.value
    lifecycle: tuple[LifecyclePolicy, ...] = ()
    backup_enabled: bool = False
    monitoring_enabled: bool = True
    source: Mapping[str, Any] | None = field(default=None, init=False, compare=False, repr=False)

    def __init__(
        self,
        tiers: Mapping[str, TierConfig] | None = None,
        catalog: str | os.PathLike[str] | None = None,
        default_tier: str | None = None,
        lifecycle: tuple[LifecyclePolicy, ...] | list[Any] = (),
        backup_enabled: bool = False,
        monitoring_enabled: bool = True,
        *,
        home: str | os.PathLike[str] | None = None,
        **original: Any,
    ) -> None:
        if tiers is None:
            self._build_original(
                original,
                catalog=catalog,
                default_tier=default_tier,
                lifecycle=lifecycle,
                backup_enabled=backup_enabled,
                monitoring_enabled=monitoring_enabled,
                home=home,
            )
            return
        if original or home is not None:
            given = sorted([*original, *(["home"] if home is not None else [])])
            raise ConfigError(
                f"StorageConfig: tiers= is the whole configuration; {given} cannot be added to it"
            )
        if catalog is None:
            raise ConfigError("StorageConfig: tiers= needs catalog= (a SQLite path or a PostgreSQL URL)")
        for name, value in (("backup_enabled", backup_enabled), ("monitoring_enabled", monitoring_enabled)):
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, got {value!r}")
        object.__setattr__(self, "tiers", dict(tiers))
        object.__setattr__(self, "catalog", os.fspath(catalog))
        object.__setattr__(self, "default_tier", default_tier or Tier.HOT.value)
        object.__setattr__(self, "backup_enabled", backup_enabled)
        object.__setattr__(self, "monitoring_enabled", monitoring_enabled)
        object.__setattr__(self, "source", None)
        if not self.tiers:
            raise ConfigError("a configuration needs at least one tier")
        if self.default_tier not in self.tiers:
            raise ConfigError(
                f"default_tier {self.default_tier!r} is not a configured tier; tiers: {sorted(self.tiers)}"
            )
        for name, tier in self.tiers.items():
            missing = {k: t for k, t in tier.routes.items() if t not in self.tiers or t == name}
            if missing:
                raise ConfigError(
                    f"tiers.{name}.routes: {missing} name no other configured tier; "
                    f"tiers: {sorted(self.tiers)}"
                )
        object.__setattr__(self, "lifecycle", check_policies(
            lifecycle if isinstance(lifecycle, Mapping | str) else tuple(lifecycle), self.tiers
        ))

    def _build_original(self, original: Mapping[str, Any], **given: Any) -> None:
        """Fill this configuration from the original API's keywords (see :mod:`.original`)."""
        if not original:
            raise ConfigError(
                "StorageConfig needs tiers= and catalog=, or the original forms tier=/primary_backend= "
                "or tier_configs=; StorageConfig.embedded(home) and StorageConfig.from_toml(path) "
                "build one too"
            )
        data = original_data(original)
        tables = data["tiers"]
        for key in ("catalog", "default_tier", "home"):
            if given[key] is not None:
                data[key] = os.fspath(given[key])
        data["lifecycle"] = list(given["lifecycle"])
        data["backup_enabled"] = given["backup_enabled"]
        data["monitoring_enabled"] = given["monitoring_enabled"]
        built = type(self).from_dict(expand_env(data))
        for f in fields(self):
            object.__setattr__(self, f.name, getattr(built, f.name))
        object.__setattr__(self, "source", tables)

    def original_tiers(self) -> dict[str, dict[str, Any]]:
        """The tier tables this configuration was built from with the original API's keywords.

        Lets ``StorageConfig(tier_configs={"hot": StorageConfig(tier="hot", ...)})`` take
        the tiers of a one-tier configuration (``${VAR}`` references still unexpanded).

        Raises
        ------
        ConfigError
            The configuration was not built from the original keywords.
        """
        if self.source is None:
            raise ConfigError(
                "this StorageConfig was not built with tier=/tier_configs=; pass its TOML instead"
            )
        return {name: dict(table) for name, table in self.source.items()}

    @classmethod
    def embedded(cls, home: str | os.PathLike[str] | None = None) -> StorageConfig:
        """All four tiers as local directories under ``home`` and a SQLite catalog there."""
        root = Path(home).expanduser().resolve() if home is not None else default_home()
        tiers = {
            t.value: TierConfig(url=(root / t.value).as_uri(), compression=DEFAULT_COMPRESSION[t])
            for t in Tier
        }
        return cls(tiers=tiers, catalog=str(root / "catalog.sqlite"))

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> StorageConfig:
        """Read a ``memories.toml`` file (see the configuration docs for its layout).

        Raises
        ------
        ConfigError
            For a missing file, invalid TOML, an unknown setting or an undefined
            ``${VAR}`` reference.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"configuration file {str(path)!r} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
        return cls.from_dict(expand_env(data), base=path.parent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: Path | None = None) -> StorageConfig:
        """Build from a mapping shaped like the TOML file (``home``, ``catalog``, ``tiers``)."""
        unknown = set(data) - set(TOP_KEYS)
        if unknown:
            raise ConfigError(f"unknown configuration keys {sorted(unknown)}; expected {', '.join(TOP_KEYS)}")
        home = Path(data.get("home") or default_home())
        if base is not None and not home.is_absolute():
            home = base / home
        config = cls.embedded(home)
        tiers = dict(config.tiers)
        for name, raw in (data.get("tiers") or {}).items():
            tiers[name] = tier_from_dict(name, raw, tiers.get(name))
        tiers = default_formats(
            tiers, {k: data.get(f"default_{k}_format") for k in ("vector", "raster", "timeseries")}
        )
        return replace(
            config,
            tiers=tiers,
            catalog=str(data.get("catalog") or config.catalog),
            default_tier=str(data.get("default_tier") or config.default_tier),
            lifecycle=data.get("lifecycle") or (),
            backup_enabled=data.get("backup_enabled", False),
            monitoring_enabled=data.get("monitoring_enabled", True),
        )

    @classmethod
    def from_any(
        cls,
        config: StorageConfig | str | os.PathLike[str] | None,
        *,
        storage_options: Mapping[str, Any] | None = None,
    ) -> StorageConfig:
        """The one normaliser of "where is the collection": a configuration, a path, a URL or ``None``.

        ``None`` discovers (:meth:`discover`); a path ending in ``.toml`` is read as a
        configuration file; a URL with a scheme (``s3://bucket/home``) is a remote home
        (:meth:`remote`); ``file://`` URLs and other paths are embedded home directories.

        Raises
        ------
        ConfigError
            ``storage_options`` given with a configuration or a local path.
        """
        text = os.fspath(config) if isinstance(config, str | os.PathLike) else None
        if text is not None and "://" in text and not text.startswith("file://"):
            return cls.remote(text, storage_options=storage_options)
        if storage_options:
            raise ConfigError(
                "storage_options= applies to a remote home URL (s3://, gs://, az://...); "
                "for a configuration or a local path, put them in the tier's settings"
            )
        if config is None:
            return cls.discover()
        if isinstance(config, StorageConfig):
            return config
        path = Path(text.removeprefix("file://") if text is not None else config)
        return cls.from_toml(path) if path.suffix == ".toml" else cls.embedded(path)

    @classmethod
    def remote(
        cls,
        url: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        catalog: str | os.PathLike[str] | None = None,
        encryption: Mapping[str, str] | None = None,
    ) -> StorageConfig:
        """All four tiers under a remote URL (``{url}/hot`` ...), the SQLite catalog kept locally.

        The catalog lives under ``$XDG_CACHE_HOME/memories_geo`` (else
        ``~/.cache/memories_geo``), in a folder named after a hash of the URL, unless
        ``catalog=`` says where. Every version has its record on the store, so another
        machine rebuilds the same catalog with ``RecoveryManager(...).rebuild_catalog()``.
        ``encryption=`` applies to every tier (see :class:`TierConfig`).

        Examples
        --------
        >>> cfg = StorageConfig.remote("s3://bucket/memories", storage_options={"anon": True})
        >>> cfg.tiers["warm"].url
        's3://bucket/memories/warm'
        """
        import hashlib

        root = url.rstrip("/")
        if catalog is None:
            cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "memories_geo"
            catalog = cache / hashlib.blake2b(root.encode(), digest_size=8).hexdigest() / "catalog.sqlite"
        tiers = {
            t.value: TierConfig(
                url=f"{root}/{t.value}",
                storage_options=dict(storage_options or {}),
                compression=DEFAULT_COMPRESSION[t],
                encryption=dict(encryption or {}),
            )
            for t in Tier
        }
        return cls(tiers=tiers, catalog=os.fspath(catalog))

    @classmethod
    def discover(cls) -> StorageConfig:
        """``$MEMORIES_GEO_CONFIG``, else ``./memories.toml`` if present, else embedded."""
        explicit = os.environ.get(CONFIG_ENV)
        if explicit:
            return cls.from_toml(explicit)
        local = Path("memories.toml")
        if local.is_file():
            return cls.from_toml(local)
        return cls.embedded()
