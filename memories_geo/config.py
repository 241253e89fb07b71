"""Configuration: tiers, their backends and defaults; TOML files with ``${ENV}`` expansion."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from memories_geo.errors import ConfigError
from memories_geo.types import CompressionLevel, Kind, Tier

__all__ = ["HOME_ENV", "StorageConfig", "TierConfig", "default_home", "expand_env", "redact_url"]

HOME_ENV = "MEMORIES_GEO_HOME"
CONFIG_ENV = "MEMORIES_GEO_CONFIG"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")

#: Compression by tier when the configuration does not say.
DEFAULT_COMPRESSION = {
    Tier.HOT: CompressionLevel.FAST,
    Tier.WARM: CompressionLevel.MEDIUM,
    Tier.COLD: CompressionLevel.HIGH,
    Tier.GLACIER: CompressionLevel.MAXIMUM,
}


def redact_url(url: str) -> str:
    """Remove the password (and any query string) from a URL before showing it.

    Examples
    --------
    >>> redact_url("postgresql://me:secret@db:5432/geo")
    'postgresql://me:***@db:5432/geo'
    """
    parts = urlsplit(url)
    if parts.password is None and not parts.query:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return parts._replace(netloc=netloc, query="").geturl()


@dataclass(frozen=True)
class TierConfig:
    """One tier: where it stores and how.

    Attributes
    ----------
    url : str
        Backend root (``file://``, ``s3://``, ``gs://``, ``az://``, ``postgresql://``).
    storage_options : mapping
        fsspec options (credentials come from ``${ENV}`` references); never shown.
    compression : CompressionLevel
        Codec intent for writes on this tier.
    storage_class : str or None
        Object-store class (e.g. ``"GLACIER"``); informational for file backends.
    formats : mapping
        Default format per kind, overriding the built-in choice.
    """

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    compression: CompressionLevel = CompressionLevel.MEDIUM
    storage_class: str | None = None
    formats: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        options = "{...}" if self.storage_options else "{}"
        return (
            f"TierConfig(url={redact_url(self.url)!r}, storage_options={options}, "
            f"compression={self.compression.value!r}, storage_class={self.storage_class!r})"
        )


def default_home() -> Path:
    """``$MEMORIES_GEO_HOME`` if set, else ``./.memories`` (absolute)."""
    return Path(os.environ.get(HOME_ENV) or ".memories").expanduser().resolve()


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

    Examples
    --------
    >>> cfg = StorageConfig.embedded("/tmp/mg-demo")
    >>> sorted(cfg.tiers)
    ['cold', 'glacier', 'hot', 'warm']
    """

    tiers: Mapping[str, TierConfig]
    catalog: str
    default_tier: str = Tier.HOT.value

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ConfigError("a configuration needs at least one tier")
        if self.default_tier not in self.tiers:
            raise ConfigError(
                f"default_tier {self.default_tier!r} is not a configured tier; "
                f"tiers: {sorted(self.tiers)}"
            )

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
        unknown = set(data) - {"home", "catalog", "default_tier", "tiers"}
        if unknown:
            raise ConfigError(f"unknown configuration keys {sorted(unknown)}; expected "
                              "home, catalog, default_tier, tiers")
        home = Path(data.get("home") or default_home())
        if base is not None and not home.is_absolute():
            home = base / home
        config = cls.embedded(home)
        tiers = dict(config.tiers)
        for name, raw in (data.get("tiers") or {}).items():
            tiers[name] = _tier_from_dict(name, raw, tiers.get(name))
        return replace(
            config,
            tiers=tiers,
            catalog=str(data.get("catalog") or config.catalog),
            default_tier=str(data.get("default_tier") or config.default_tier),
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
    ) -> StorageConfig:
        """All four tiers under a remote URL (``{url}/hot`` ...), the SQLite catalog kept locally.

        The catalog lives under ``$XDG_CACHE_HOME/memories_geo`` (else
        ``~/.cache/memories_geo``), in a folder named after a hash of the URL, unless
        ``catalog=`` says where. Every version has its record on the store, so another
        machine rebuilds the same catalog with ``RecoveryManager(...).rebuild_catalog()``.

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
                url=f"{root}/{t.value}", storage_options=dict(storage_options or {}),
                compression=DEFAULT_COMPRESSION[t],
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


_TIER_KEYS = {"url", "storage_options", "compression", "storage_class", "formats"}


def _tier_from_dict(name: str, raw: Mapping[str, Any], current: TierConfig | None) -> TierConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"tiers.{name} must be a table, got {raw!r}")
    unknown = set(raw) - _TIER_KEYS
    if unknown:
        raise ConfigError(f"tiers.{name}: unknown settings {sorted(unknown)}; valid: {sorted(_TIER_KEYS)}")
    url = raw.get("url") or (current.url if current else None)
    if not url:
        raise ConfigError(f"tiers.{name} needs a url")
    try:
        compression = CompressionLevel(
            raw.get("compression") or (current.compression if current else CompressionLevel.MEDIUM)
        )
    except ValueError as exc:
        raise ConfigError(
            f"tiers.{name}.compression must be one of {[c.value for c in CompressionLevel]}, "
            f"got {raw.get('compression')!r}"
        ) from exc
    formats = dict(raw.get("formats") or {})
    bad_kinds = set(formats) - {k.value for k in Kind}
    if bad_kinds:
        raise ConfigError(f"tiers.{name}.formats: unknown kinds {sorted(bad_kinds)}")
    return TierConfig(
        url=str(url),
        storage_options=dict(raw.get("storage_options") or {}),
        compression=compression,
        storage_class=raw.get("storage_class"),
        formats=formats,
    )


def expand_env(value: Any) -> Any:
    """Replace ``${VAR}`` (or ``${VAR:-default}``) in every string of a nested structure.

    Raises
    ------
    ConfigError
        If a referenced variable is not set and has no default.
    """
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name!r} is referenced in the configuration but not set")

        return _ENV_REF.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value
