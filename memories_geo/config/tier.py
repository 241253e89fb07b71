"""One tier's configuration (:class:`TierConfig`) and its ``[tiers.NAME]`` table."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from memories_geo.config.encryption import check_encryption, encryption_label, redact_url
from memories_geo.config.mounts import check_mount, nfs_location
from memories_geo.errors import ConfigError, OptionError
from memories_geo.storage_policy import Retention, check_retention, check_storage_class
from memories_geo.types import CompressionLevel, Kind
from memories_geo.units import parse_duration, parse_size

__all__ = ["CACHE_KEYS", "TIER_KEYS", "TierConfig", "check_compression", "quota", "tier_from_dict"]

#: Keys of a tier's ``cache`` table (the original ``cache_settings``); values are checked by the cache.
CACHE_KEYS = frozenset({
    "max_size", "eviction_policy", "prefetching", "type", "url", "ttl", "path", "block_size",
    "prefetch_blocks",
})
#: Settings of a ``[tiers.NAME]`` table.
TIER_KEYS = frozenset(
    {
        "url",
        "storage_options",
        "compression",
        "storage_class",
        "formats",
        "encryption",
        "retention",
        "backup_policy",
        "max_size",
        "format_options",
        "cache",
        "cache_settings",
        "access_pattern",
        "retrieval_time",
        "codec",
        "routes",
        "mount",
    }
)
#: Restore speed per retrieval time: up to an hour, up to 12 hours, longer.
_SPEEDS = {
    "s3": ("expedited", "standard", "bulk"),
    "s3a": ("expedited", "standard", "bulk"),
    "az": ("high", "standard", "standard"),
    "abfs": ("high", "standard", "standard"),
    "abfss": ("high", "standard", "standard"),
}
_WORDS = {
    "minute": timedelta(minutes=5),
    "minutes": timedelta(minutes=5),
    "hour": timedelta(hours=5),
    "hours": timedelta(hours=5),
    "day": timedelta(days=2),
    "days": timedelta(days=2),
}
_RANGE = re.compile(r"^\s*\d+(?:\.\d+)?\s*-\s*(\d+(?:\.\d+)?\s*[A-Za-z ]+)$")


def quota(value: Any, where: str) -> int:
    """A tier quota in bytes from ``"50GB"``, ``"1.5 TiB"`` or a number of bytes.

    Examples
    --------
    >>> quota("1KiB", "max_size")
    1024
    """
    try:
        size = parse_size(value, name=where)
    except OptionError as exc:
        raise ConfigError(str(exc)) from None
    if size <= 0:
        raise ConfigError(f"{where} must be a positive size such as '50GB'; got {value!r}")
    return size


def retrieval_delay(text: str, where: str) -> timedelta:
    """How long a retrieval may take: ``"hours"``, ``"12 hours"``, ``"3-5 hours"``, ``"2 days"``.

    Examples
    --------
    >>> retrieval_delay("3-5 hours", "retrieval_time")
    datetime.timedelta(seconds=18000)
    """
    word = text.strip().lower()
    if word in _WORDS:
        return _WORDS[word]
    match = _RANGE.match(word)
    try:
        return parse_duration(match.group(1) if match else word, name=where)
    except (OptionError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}; e.g. 'minutes', 'hours', 'days', '12 hours'") from None


def check_compression(
    value: Any, current: CompressionLevel, where: str
) -> tuple[CompressionLevel, str | None]:
    """``(level, codec)`` from a level name or the original ``{"algorithm": ..., "level": ...}``.

    Examples
    --------
    >>> check_compression({"algorithm": "zstd", "level": "high"}, CompressionLevel.MEDIUM, "c")
    (<CompressionLevel.HIGH: 'high'>, 'zstd')
    """
    codec = None
    if isinstance(value, Mapping):
        unknown = set(value) - {"algorithm", "level"}
        if unknown:
            raise ConfigError(
                f"{where}: unknown settings {sorted(unknown)}; accepted: ['algorithm', 'level']"
            )
        codec = value.get("algorithm")
        if codec is not None and (not isinstance(codec, str) or not codec):
            raise ConfigError(f"{where}.algorithm must be a codec name such as 'zstd', got {codec!r}")
        value = value.get("level")
    if value is None:
        return current, codec
    try:
        return CompressionLevel(value), codec
    except ValueError:
        raise ConfigError(
            f"{where} must be one of {[c.value for c in CompressionLevel]}, got {value!r}"
        ) from None


def _check_nested(value: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ConfigError(
            f"{where}: a table per format of its save options, e.g. {{cog = {{blocksize = 256}}}}"
        )
    return {str(k): dict(v) for k, v in value.items()}


def _check_cache(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a table, got {value!r}")
    unknown = set(value) - CACHE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown settings {sorted(unknown)}; accepted: {sorted(CACHE_KEYS)}")
    return dict(value)


def _check_kinds(value: Mapping[str, Any], where: str) -> dict[str, str]:
    bad = set(value) - {k.value for k in Kind}
    if bad:
        raise ConfigError(f"{where}: unknown kinds {sorted(bad)}; kinds: {[k.value for k in Kind]}")
    return {str(k): str(v) for k, v in value.items()}


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class TierConfig:
    """One tier: where it stores and how.

    Attributes
    ----------
    url : str
        Backend root (``file://``, ``s3://``, ``gs://``, ``az://``, ``postgresql://``,
        ``sqlite:///``). ``nfs://host/export/path`` is accepted when the export is
        mounted here: it becomes the local directory, with :attr:`mount` recorded.
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
    format_options : mapping
        Format name -> default save options on this tier (``[tiers.hot.format_options.cog]
        blocksize = 256``); explicit save keywords win. Checked against the format's
        options when a save uses them.
    cache : mapping
        The read cache in front of the tier (the original ``cache_settings``): keys
        ``max_size``, ``eviction_policy``, ``prefetching``, ``type``, ``url``, ``ttl``.
    access_pattern : str or None
        How the tier is read (``"batch"``, ``"rare"``...), as the original records it.
    retrieval_time : str or None
        How long a read may wait (``"minutes"``, ``"12 hours"``, ``"days"``); on an
        archive tier it chooses the restore speed (:attr:`restore_tier`).
    codec : str or None
        Codec for formats that take one (``"zstd"``, ``"lz4"``, ``"snappy"``), from the
        original ``compression={"algorithm": ...}``.
    routes : mapping
        Kind -> tier: saves of that kind aimed at this tier land on the named tier (the
        original ``vector_backend=`` and ``raster_backend=``).
    mount : mapping
        For a directory on a mounted (network) file system: ``mount_point``, ``fstype``,
        ``source`` and ``options`` of its mount, read from ``/proc/self/mounts``. In
        ``memories.toml`` ``mount = "/mnt/geo"`` (the url defaults to that directory).

    Examples
    --------
    >>> TierConfig(url="s3://bucket/cold", compression="high", codec="zstd").codec
    'zstd'
    """

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    compression: CompressionLevel = CompressionLevel.MEDIUM
    storage_class: str | None = None
    formats: Mapping[str, str] = field(default_factory=dict)
    encryption: Mapping[str, str] = field(default_factory=dict)
    retention: Retention | None = None
    max_size: int | None = None
    format_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    cache: Mapping[str, Any] = field(default_factory=dict)
    access_pattern: str | None = None
    retrieval_time: str | None = None
    codec: str | None = None
    routes: Mapping[str, str] = field(default_factory=dict)
    mount: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        url = str(self.url)
        if urlsplit(url).scheme == "nfs":
            local, facts = nfs_location(url)
            url = Path(local).as_uri()
            object.__setattr__(self, "mount", facts)
        elif self.mount:
            object.__setattr__(self, "mount", check_mount(self.mount, "mount"))
        object.__setattr__(self, "url", url)
        object.__setattr__(
            self,
            "compression",
            check_compression(self.compression, CompressionLevel.MEDIUM, "compression")[0],
        )
        object.__setattr__(self, "encryption", check_encryption(url, self.encryption))
        if self.max_size is not None:
            object.__setattr__(self, "max_size", quota(self.max_size, "max_size"))
        object.__setattr__(self, "storage_class", check_storage_class(url, self.storage_class))
        object.__setattr__(self, "retention", check_retention(self.retention))
        object.__setattr__(self, "formats", _check_kinds(self.formats, "formats"))
        object.__setattr__(self, "routes", _check_kinds(self.routes, "routes"))
        object.__setattr__(self, "format_options", _check_nested(self.format_options, "format_options"))
        object.__setattr__(self, "cache", _check_cache(self.cache, "cache"))
        object.__setattr__(self, "access_pattern", _text(self.access_pattern, "access_pattern"))
        object.__setattr__(self, "codec", _text(self.codec, "codec"))
        if _text(self.retrieval_time, "retrieval_time") is not None:
            retrieval_delay(str(self.retrieval_time), "retrieval_time")

    @property
    def retention_period(self) -> timedelta | None:
        """How long each version is kept after it is saved (``None``: no retention)."""
        return self.retention.period if self.retention else None

    @property
    def retention_mode(self) -> str | None:
        """``"governance"`` or ``"compliance"`` (``None``: no retention)."""
        return self.retention.mode if self.retention else None

    @property
    def restore_tier(self) -> str | None:
        """Restore speed matching :attr:`retrieval_time` on an archive store, else ``None``.

        S3: ``"expedited"`` (up to an hour), ``"standard"`` (up to 12 hours), ``"bulk"``
        (longer); Azure: ``"high"`` (up to an hour) or ``"standard"``.

        Examples
        --------
        >>> TierConfig(url="s3://b/glacier", retrieval_time="12 hours").restore_tier
        'standard'
        """
        speeds = _SPEEDS.get(urlsplit(self.url).scheme)
        if speeds is None or self.retrieval_time is None:
            return None
        delay = retrieval_delay(self.retrieval_time, "retrieval_time")
        return (
            speeds[0]
            if delay <= timedelta(hours=1)
            else speeds[1]
            if delay <= timedelta(hours=12)
            else speeds[2]
        )

    def __repr__(self) -> str:
        options = "{...}" if self.storage_options else "{}"
        label = encryption_label(self.encryption)
        encryption = f", encryption={label!r}" if label else ""
        retention = f", retention={str(self.retention)!r}" if self.retention else ""
        return (
            f"TierConfig(url={redact_url(self.url)!r}, storage_options={options}, "
            f"compression={self.compression.value!r}, storage_class={self.storage_class!r}"
            f"{encryption}{retention})"
        )


def tier_from_dict(name: str, raw: Mapping[str, Any], current: TierConfig | None) -> TierConfig:
    """A :class:`TierConfig` from a ``[tiers.NAME]`` table, over the built-in tier of that name.

    Raises
    ------
    ConfigError
        An unknown or invalid setting (the message names the accepted ones).

    Examples
    --------
    >>> tier_from_dict("cold", {"url": "s3://b/cold", "compression": "high"}, None).compression.value
    'high'
    """
    where = f"tiers.{name}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table, got {raw!r}")
    unknown = set(raw) - TIER_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown settings {sorted(unknown)}; valid: {sorted(TIER_KEYS)}")
    if raw.get("cache") and raw.get("cache_settings"):
        raise ConfigError(f"{where}: set the cache once; got both 'cache' and 'cache_settings'")
    mount = check_mount(raw["mount"], f"{where}.mount") if raw.get("mount") else {}
    mounted = raw.get("mount")
    directory = (
        Path(mounted).expanduser().resolve().as_uri() if isinstance(mounted, str) and mounted else None
    )
    url = raw.get("url") or directory or (Path(mount["mount_point"]).as_uri() if mount else None)
    url = url or (current.url if current else None)
    if not url:
        raise ConfigError(f"{where} needs a url")
    level, codec = check_compression(
        raw.get("compression"),
        current.compression if current else CompressionLevel.MEDIUM,
        f"{where}.compression",
    )
    try:
        return TierConfig(
            url=str(url),
            storage_options=dict(raw.get("storage_options") or {}),
            compression=level,
            storage_class=check_storage_class(
                str(url), raw.get("storage_class"), where=f"{where}.storage_class"
            ),
            formats=_check_kinds(raw.get("formats") or {}, f"{where}.formats"),
            encryption=check_encryption(str(url), raw.get("encryption"), where=f"{where}.encryption"),
            retention=check_retention(raw.get("retention"), raw.get("backup_policy"), where=where),
            max_size=None if raw.get("max_size") is None else quota(raw["max_size"], f"{where}.max_size"),
            format_options=_check_nested(raw.get("format_options") or {}, f"{where}.format_options"),
            cache=_check_cache(raw.get("cache") or raw.get("cache_settings") or {}, f"{where}.cache"),
            access_pattern=_text(raw.get("access_pattern"), f"{where}.access_pattern"),
            retrieval_time=_text(raw.get("retrieval_time"), f"{where}.retrieval_time"),
            codec=_text(raw.get("codec"), f"{where}.codec") or codec,
            routes=_check_kinds(raw.get("routes") or {}, f"{where}.routes"),
            mount=mount,
        )
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None
