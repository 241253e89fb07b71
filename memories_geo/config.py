"""Configuration: tiers, their backends and defaults; TOML files with ``${ENV}`` expansion."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from memories_geo.errors import ConfigError, OptionError
from memories_geo.lifecycle_policy import LifecyclePolicy, check_policies
from memories_geo.storage_policy import Retention, check_retention, check_storage_class
from memories_geo.types import CompressionLevel, Kind, Tier
from memories_geo.units import parse_size

__all__ = [
    "HOME_ENV", "S3_ENCRYPTION_ALGORITHMS", "StorageConfig", "TierConfig", "check_encryption", "default_home",
    "expand_env", "redact_text", "redact_url",
]

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


#: Server-side encryption algorithms an S3 tier takes (``encryption={"algorithm": ...}``).
S3_ENCRYPTION_ALGORITHMS = ("AES256", "aws:kms")
_S3_SCHEMES = frozenset({"s3", "s3a"})
_GCS_SCHEMES = frozenset({"gs", "gcs"})
_AZURE_SCHEMES = frozenset({"az", "abfs", "abfss"})
#: Settings of ``encryption`` per kind of store, and an example of each.
_ENCRYPTION_SETTINGS: dict[frozenset[str], tuple[frozenset[str], str]] = {
    _S3_SCHEMES: (
        frozenset({"algorithm", "kms_key_id"}),
        '{"algorithm": "AES256"} or {"algorithm": "aws:kms", "kms_key_id": "<key id, ARN or alias>"}',
    ),
    _GCS_SCHEMES: (
        frozenset({"kms_key_name"}),
        '{"kms_key_name": "projects/P/locations/L/keyRings/R/cryptoKeys/K"}',
    ),
    _AZURE_SCHEMES: (frozenset({"encryption_scope"}), '{"encryption_scope": "<scope name>"}'),
}
_KMS_KEY_NAME = re.compile(r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+")


def check_encryption(
    url: str, encryption: Mapping[str, Any] | None, *, where: str = "encryption"
) -> dict[str, str]:
    """Validate a tier's ``encryption`` setting against its URL; return it as a plain dict.

    S3 tiers take ``{"algorithm": "AES256"}`` or ``{"algorithm": "aws:kms", "kms_key_id":
    ...}`` (server-side encryption of every object); GCS tiers ``{"kms_key_name": ...}``
    and Azure tiers ``{"encryption_scope": ...}`` (the bucket's default key or the
    container's default scope, checked when the tier is first used). Any other tier
    (local files, memory, PostgreSQL) refuses it: its storage is encrypted, if at all,
    below memories_geo.

    Parameters
    ----------
    url : str
        The tier's URL (its scheme decides which settings apply).
    encryption : mapping or None
        The setting; ``None`` or empty means none.
    where : str
        Name of the setting in error messages (``"tiers.warm.encryption"``).

    Returns
    -------
    dict
        The setting, empty when there is none.

    Raises
    ------
    ConfigError
        An unknown or missing setting, an algorithm that is not accepted, or encryption
        on a tier that cannot take it; the message names the accepted values.

    Examples
    --------
    >>> check_encryption("s3://bucket/warm", {"algorithm": "AES256"})
    {'algorithm': 'AES256'}
    >>> check_encryption("/data/hot", None)
    {}
    """
    if not encryption:
        return {}
    if not isinstance(encryption, Mapping):
        raise ConfigError(f"{where}: must be a table of settings, got {encryption!r}")
    scheme = urlsplit(url).scheme if "://" in url else "file"
    group = next((g for g in _ENCRYPTION_SETTINGS if scheme in g), None)
    if group is None:
        raise ConfigError(
            f"{where}: tier {redact_url(url)!r} cannot take an encryption setting; memories_geo "
            "sets encryption at rest on s3://, gs:// and az:// tiers only. A local (file://) or "
            "PostgreSQL tier is encrypted by its disk or database server: remove 'encryption'"
        )
    accepted, example = _ENCRYPTION_SETTINGS[group]
    settings = dict(encryption)
    unknown = set(settings) - accepted
    if unknown:
        raise ConfigError(
            f"{where}: unknown settings {sorted(unknown)} for a {scheme}:// tier; "
            f"accepted: {sorted(accepted)}, e.g. {example}"
        )
    bad = {k: v for k, v in settings.items() if not isinstance(v, str) or not v}
    if bad:
        raise ConfigError(f"{where}: {sorted(bad)} must be non-empty strings, got {bad!r}")
    if group is _S3_SCHEMES:
        _check_s3_encryption(settings, where)
    elif group is _GCS_SCHEMES and not _KMS_KEY_NAME.fullmatch(settings.get("kms_key_name", "")):
        raise ConfigError(
            f"{where}: a gs:// tier needs kms_key_name, the full name of a Cloud KMS key "
            f"(projects/P/locations/L/keyRings/R/cryptoKeys/K), got {settings.get('kms_key_name')!r}"
        )
    elif group is _AZURE_SCHEMES and "encryption_scope" not in settings:
        raise ConfigError(f"{where}: an az:// tier needs encryption_scope, e.g. {example}")
    return settings


def _check_s3_encryption(settings: Mapping[str, str], where: str) -> None:
    algorithm = settings.get("algorithm")
    if algorithm not in S3_ENCRYPTION_ALGORITHMS:
        raise ConfigError(
            f"{where}: algorithm must be one of {list(S3_ENCRYPTION_ALGORITHMS)}, got {algorithm!r}"
        )
    if algorithm == "aws:kms" and "kms_key_id" not in settings:
        raise ConfigError(
            f"{where}: algorithm 'aws:kms' needs kms_key_id (a KMS key id, ARN or alias; "
            "'alias/aws/s3' is the AWS-managed key)"
        )
    if algorithm == "AES256" and "kms_key_id" in settings:
        raise ConfigError(f"{where}: kms_key_id applies to 'aws:kms' only, not 'AES256'")


def _encryption_label(encryption: Mapping[str, str]) -> str | None:
    """A short name of an encryption setting for reprs (no key ids)."""
    if not encryption:
        return None
    if "algorithm" in encryption:
        return encryption["algorithm"]
    return "kms_key_name" if "kms_key_name" in encryption else "encryption_scope"


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


_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`.

    Examples
    --------
    >>> redact_text("cannot reach postgresql://me:secret@db/geo: refused")
    'cannot reach postgresql://me:***@db/geo: refused'
    """
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


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
        Storage class of every object written on the tier: on S3 ``STANDARD``,
        ``STANDARD_IA``, ``ONEZONE_IA``, ``INTELLIGENT_TIERING``, ``GLACIER_IR``,
        ``GLACIER`` or ``DEEP_ARCHIVE``; on GCS ``STANDARD``, ``NEARLINE``, ``COLDLINE``
        or ``ARCHIVE``; on Azure the access tier ``hot``, ``cool``, ``cold`` or
        ``archive`` (any case; kept as the store spells it). Refused on other tiers.
    formats : mapping
        Default format per kind, overriding the built-in choice.
    encryption : mapping
        Encryption at rest: on S3 ``{"algorithm": "AES256"}`` or ``{"algorithm":
        "aws:kms", "kms_key_id": ...}`` (set on every object written); on GCS
        ``{"kms_key_name": ...}`` and on Azure ``{"encryption_scope": ...}`` (the bucket's
        default key or the container's default scope, checked on first use). Refused on
        other tiers.
    retention : Retention or None
        How long each version is kept after it is saved (``retention_period``) and the
        lock mode (``retention_mode``: ``"governance"``, the default, or
        ``"compliance"``): deleting or moving a version away is refused before then, and
        on S3 its objects are locked (Object Lock) until then. In ``memories.toml``:
        ``retention = {period = "10 years", mode = "compliance"}``, or the original
        ``backup_policy = {immutable = true, retention_period = "10years"}``.
    max_size : int or None
        Quota in bytes (``max_size = "50GB"`` in ``memories.toml``): every version stored
        on the tier (current, older and retired) counts; a save that would take the tier
        past it fails with :class:`~memories_geo.errors.QuotaExceededError` and keeps
        nothing. ``None``: no quota.
    """

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    compression: CompressionLevel = CompressionLevel.MEDIUM
    storage_class: str | None = None
    formats: Mapping[str, str] = field(default_factory=dict)
    encryption: Mapping[str, str] = field(default_factory=dict)
    retention: Retention | None = None
    max_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "encryption", check_encryption(self.url, self.encryption))
        if self.max_size is not None:
            object.__setattr__(self, "max_size", _quota(self.max_size, "max_size"))
        object.__setattr__(self, "storage_class", check_storage_class(self.url, self.storage_class))
        object.__setattr__(self, "retention", check_retention(self.retention))

    @property
    def retention_period(self) -> timedelta | None:
        """How long each version is kept after it is saved (``None``: no retention)."""
        return self.retention.period if self.retention else None

    @property
    def retention_mode(self) -> str | None:
        """``"governance"`` or ``"compliance"`` (``None``: no retention)."""
        return self.retention.mode if self.retention else None

    def __repr__(self) -> str:
        options = "{...}" if self.storage_options else "{}"
        label = _encryption_label(self.encryption)
        encryption = f", encryption={label!r}" if label else ""
        retention = f", retention={str(self.retention)!r}" if self.retention else ""
        return (
            f"TierConfig(url={redact_url(self.url)!r}, storage_options={options}, "
            f"compression={self.compression.value!r}, storage_class={self.storage_class!r}"
            f"{encryption}{retention})"
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

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ConfigError("a configuration needs at least one tier")
        if self.default_tier not in self.tiers:
            raise ConfigError(
                f"default_tier {self.default_tier!r} is not a configured tier; "
                f"tiers: {sorted(self.tiers)}"
            )
        object.__setattr__(self, "lifecycle", check_policies(self.lifecycle, self.tiers))

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
        unknown = set(data) - {"home", "catalog", "default_tier", "tiers", "lifecycle"}
        if unknown:
            raise ConfigError(f"unknown configuration keys {sorted(unknown)}; expected "
                              "home, catalog, default_tier, tiers, lifecycle")
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
            lifecycle=data.get("lifecycle") or (),
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
                url=f"{root}/{t.value}", storage_options=dict(storage_options or {}),
                compression=DEFAULT_COMPRESSION[t], encryption=dict(encryption or {}),
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


_TIER_KEYS = {
    "url", "storage_options", "compression", "storage_class", "formats", "encryption",
    "retention", "backup_policy", "max_size",
}


def _quota(value: Any, where: str) -> int:
    """A tier quota in bytes from ``"50GB"``, ``"1.5 TiB"`` or a number of bytes."""
    try:
        size = parse_size(value, name=where)
    except OptionError as exc:
        raise ConfigError(str(exc)) from None
    if size <= 0:
        raise ConfigError(f"{where} must be a positive size such as '50GB'; got {value!r}")
    return size


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
    retention = check_retention(raw.get("retention"), raw.get("backup_policy"), where=f"tiers.{name}")
    return TierConfig(
        url=str(url),
        storage_options=dict(raw.get("storage_options") or {}),
        compression=compression,
        storage_class=check_storage_class(
            str(url), raw.get("storage_class"), where=f"tiers.{name}.storage_class"
        ),
        formats=formats,
        encryption=check_encryption(str(url), raw.get("encryption"), where=f"tiers.{name}.encryption"),
        retention=retention,
        max_size=None if raw.get("max_size") is None else _quota(raw["max_size"], f"tiers.{name}.max_size"),
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
