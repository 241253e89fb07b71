"""The resolver: key + object + options -> tier, backend, format and write options, once per save.

:class:`TierRouter` maps tier names to backends (one instance each, created on first use);
:class:`Resolver` turns what a caller passed to ``save`` into a :class:`SavePlan` that the
commit protocol (:mod:`memories_geo.versions`) runs without deciding anything again.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from memories_geo.backends.base import Capability, Location
from memories_geo.backends.registry import known_schemes, make_backend
from memories_geo.config import default_home, redact_url
from memories_geo.errors import (
    ConfigError,
    FormatError,
    KeyExistsError,
    KeyNotFoundError,
    OptionError,
    TierUnavailableError,
    UnsupportedObjectError,
)
from memories_geo.formats.base import WriteOptions
from memories_geo.formats.registry import available_formats, default_format, get_format
from memories_geo.keys import VERSIONS_DIR, generate_key, new_id, validate_key
from memories_geo.kinds import detect_kind
from memories_geo.query import check_options
from memories_geo.types import CompressionLevel, Kind, Mode

if TYPE_CHECKING:
    from memories_geo.backends.base import Backend
    from memories_geo.catalog import Catalog
    from memories_geo.config import StorageConfig, TierConfig
    from memories_geo.entry import Entry
    from memories_geo.formats.base import Format

__all__ = ["MODES", "Resolver", "SavePlan", "TierRouter"]

#: Save modes, as in xarray: fail if the key exists, new version, append.
MODES: tuple[Mode, ...] = ("w-", "w", "a")


class TierRouter:
    """Maps tier names to their configuration and backends (one backend instance per tier)."""

    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        self._backends: dict[str, Backend] = {}
        for name, tier in config.tiers.items():
            scheme = urlsplit(tier.url).scheme or "file"
            if scheme not in known_schemes():
                raise ConfigError(
                    f"tier {name!r}: no backend for URL scheme {scheme!r} in {redact_url(tier.url)!r}; "
                    f"known schemes: {known_schemes()}"
                )

    @cached_property
    def names(self) -> list[str]:
        """Configured tier names."""
        return list(self.config.tiers)

    def primary_store(self) -> Backend | None:
        """The store of the journal and checkpoint manifests: the first file tier, default first.

        ``None`` when no tier stores files (only database tiers).
        """
        for name in [self.config.default_tier, *self.names]:
            backend = self.backend(name)
            if Capability.FILES in backend.capabilities:
                return backend
        return None

    def tier_config(self, tier: str) -> TierConfig:
        """Configuration of ``tier``.

        Raises
        ------
        TierUnavailableError
            If the tier is not configured (the message lists the ones that are).
        """
        try:
            return self.config.tiers[str(tier)]
        except KeyError:
            raise TierUnavailableError(f"unknown tier {tier!r}; configured tiers: {self.names}") from None

    def backend(self, tier: str) -> Backend:
        """Backend of ``tier`` (created on first use)."""
        cfg = self.tier_config(tier)
        if tier not in self._backends:
            self._backends[tier] = make_backend(
                cfg.url, cfg.storage_options, encryption=cfg.encryption or None,
                storage_class=cfg.storage_class,
            )
            if cache := getattr(cfg, "cache", None):
                self._use_cache(tier, self._backends[tier], cache)
        return self._backends[tier]

    def _use_cache(self, tier: str, backend: Backend, settings: Any) -> None:
        """Put ``tier``'s read cache in front of its backend.

        A local cache's default directory is ``cache/<tier>`` beside a SQLite catalog,
        else under ``$MEMORIES_GEO_HOME`` (``./.memories``).
        """
        from memories_geo.cache import check_cache_settings

        catalog = str(self.config.catalog)
        home = Path(catalog).parent if "://" not in catalog else default_home()
        default = home / "cache" / tier
        use = getattr(backend, "use_cache", None)
        if use is None:
            raise ConfigError(f"tier {tier!r}: a cache applies to file tiers only ({backend.url_for('')!r})")
        use(check_cache_settings(settings, default_path=default))

    def compression(self, tier: str) -> CompressionLevel:
        """Compression level configured for ``tier``."""
        return self.tier_config(tier).compression

    def format_for(self, tier: str, kind: Kind, obj: Any) -> str:
        """Format for ``obj`` of ``kind`` on ``tier`` when the caller names none.

        The tier's configured default for the kind wins; otherwise the installed format
        that declares itself the default for this kind on a backend with these
        capabilities.

        Raises
        ------
        TierUnavailableError
            No format is the default for this kind on this tier.
        """
        configured = self.tier_config(tier).formats.get(kind.value)
        if configured:
            return configured
        capabilities = self.backend(tier).capabilities
        name = default_format(kind, capabilities, obj)
        if name is None:
            raise TierUnavailableError(
                f"no installed format stores {kind.value} data on tier {tier!r} "
                f"({sorted(c.value for c in capabilities)}); save it on another tier or pass format="
            )
        return name


@dataclass(frozen=True)
class SavePlan:
    """Everything a save decided, once: the protocol runs it as it is.

    Attributes
    ----------
    key, version_id, path : str
        The key, the new version's id and its path relative to the tier root.
    kind : Kind
        What the object is.
    tier : str
        Tier name, with its ``backend``.
    format : Format
        The format instance that writes.
    mode : {"w-", "w", "a"}
        The resolved mode.
    options : WriteOptions
        What the format is told.
    previous : Entry or None
        The current version (appends extend it).
    """

    key: str
    version_id: str
    path: str
    kind: Kind
    tier: str
    backend: Backend
    format: Format
    mode: Mode
    options: WriteOptions
    previous: Entry | None = None


class Resolver:
    """Resolves saves against one collection's catalog and tiers."""

    def __init__(self, catalog: Catalog, tiers: TierRouter) -> None:
        self.catalog = catalog
        self.tiers = tiers

    def plan_save(
        self,
        obj: Any,
        key: str | None,
        *,
        tier: str | None = None,
        format: str | None = None,
        mode: Mode | None = None,
        crs: Any = None,
        encoding: Mapping[str, Any] | None = None,
        append_dim: str | None = None,
        compression: str | CompressionLevel | None = None,
        compute: bool = True,
        source_key: str | None = None,
        format_options: Mapping[str, Any] | None = None,
        storage: Any = None,
    ) -> SavePlan:
        """Decide tier, backend, format and options for saving ``obj``; see ``Memory.save``.

        ``source_key`` is the key ``obj`` was opened from: it is the default key, and
        makes the default mode ``"w"``. ``storage`` is a format storage object
        (``format_name`` and ``save_options()``, e.g. ``COGStorage``): its format is
        used unless ``format=`` names another (an :class:`OptionError`). Format options
        come from, by precedence: the keywords given, ``storage``, then the tier's
        ``format_options`` for the format (not for appends, which keep the stored
        layout); an explicit ``compression=`` also replaces the codec they name.

        Raises
        ------
        KeyExistsError, InvalidKeyError, UnsupportedObjectError, TierUnavailableError,
        FormatError, OptionError
            As documented on ``Memory.save``.
        """
        extra = dict(format_options or {})
        stored_options: dict[str, Any] = {}
        if storage is not None:
            format, stored_options = _storage_format(storage, format)
        if key is None and source_key is not None:
            key = source_key
            mode = mode or "w"
        mode = mode or "w-"
        if mode not in MODES:
            raise OptionError(f"mode must be one of {list(MODES)}, got {mode!r}")
        kind = detect_kind(obj)
        if mode == "a" and append_dim is None and kind is Kind.RASTER and "region" not in extra:
            raise ValueError("mode='a' needs append_dim= (or region=) for rasters")
        key = validate_key(key if key is not None else generate_key(_name_hint(obj), kind.value))
        previous = self._current(key)
        if mode == "w-" and previous is not None:
            raise KeyExistsError(
                f"key {key!r} already exists; pass mode='w' to save a new version, or choose another key"
            )
        if mode == "a" and previous is None:
            raise KeyNotFoundError(f"mode='a' appends to an existing key, and {key!r} does not exist")
        extended = previous if mode == "a" else None
        tier_name = str(tier or (extended.tier if extended else self.tiers.config.default_tier))
        routed = self.tiers.tier_config(tier_name).routes.get(kind.value) if not extended else None
        if routed:
            tier_name = routed
        backend = self.tiers.backend(tier_name)
        fmt_name = format or (
            extended.format if extended else self.tiers.format_for(tier_name, kind, obj)
        )
        fmt = _checked_format(fmt_name, kind, obj)
        tier_config = self.tiers.tier_config(tier_name)
        tier_options = {} if mode == "a" else tier_config.format_options  # an append keeps the stored layout
        inherited = {**dict(tier_options.get(fmt.name) or {}), **stored_options}
        if tier_config.codec and mode != "a" and "compression" in getattr(fmt, "write_options", {}):
            inherited.setdefault("compression", tier_config.codec)
        if compression is not None:
            inherited.pop("compression", None)
            inherited.pop("compression_level", None)
        extra = {**inherited, **extra}
        if compression is None and _is_level(extra.get("compression")):
            compression = extra.pop("compression")
        check_options(extra, getattr(fmt, "write_options", {}), f"save() in format {fmt.name!r}")
        if _is_codec(compression, fmt):
            extra["compression"], compression = compression, None
        options = WriteOptions(
            mode=mode,
            compression=_compression(compression, self.tiers.tier_config(tier_name).compression),
            encoding=encoding,
            append_dim=append_dim,
            crs=crs,
            previous=self._location(previous) if mode == "a" and previous else None,
            compute=compute,
            extra=extra,
        )
        version_id = new_id()
        extension_for = getattr(fmt, "extension_for", None)
        extension = extension_for(options) if extension_for is not None else fmt.extension
        return SavePlan(
            key=key, version_id=version_id, path=posixpath.join(key, VERSIONS_DIR, version_id + extension),
            kind=kind, tier=tier_name, backend=backend, format=fmt, mode=mode, options=options,
            previous=previous if mode == "a" else None,
        )

    def _current(self, key: str) -> Entry | None:
        try:
            return self.catalog.current(key)
        except KeyNotFoundError:
            return None

    def _location(self, entry: Entry) -> Location:
        return Location(self.tiers.backend(entry.tier), entry.path)


def _storage_format(storage: Any, format: str | None) -> tuple[str, dict[str, Any]]:
    """The format and save options a format storage object stands for, checked against ``format``."""
    name = getattr(storage, "format_name", None)
    save_options = getattr(storage, "save_options", None)
    if not isinstance(name, str) or save_options is None:
        raise OptionError(
            f"storage= takes a format storage object (COGStorage, ZarrStorage, GeoJSONStorage, "
            f"GeoParquetStorage, ParquetStorage, PostGISStorage, TimescaleDBStorage...), got "
            f"{type(storage).__name__}"
        )
    if format is not None and format != name:
        raise OptionError(
            f"format={format!r} disagrees with storage={type(storage).__name__} (format {name!r}); "
            "leave format= unset or pass a storage object of that format"
        )
    return name, dict(save_options())


def _is_level(value: Any) -> bool:
    return isinstance(value, CompressionLevel) or (
        isinstance(value, str) and value in {c.value for c in CompressionLevel}
    )


def _is_codec(asked: Any, fmt: Format) -> bool:
    """Whether ``compression=`` names a codec of a format that takes one (``"snappy"`` for Parquet)."""
    if asked is None or isinstance(asked, CompressionLevel) or asked in {c.value for c in CompressionLevel}:
        return False
    return "compression" in getattr(fmt, "write_options", {})


def _compression(asked: str | CompressionLevel | None, tier_level: CompressionLevel) -> CompressionLevel:
    if asked is None:
        return tier_level
    try:
        return CompressionLevel(asked)
    except ValueError:
        raise OptionError(
            f"compression must be one of {[c.value for c in CompressionLevel]}, got {asked!r}; "
            "format-specific codecs go in the format's options (e.g. encoding= for Zarr)"
        ) from None


def _checked_format(name: str, kind: Kind, obj: Any) -> Format:
    fmt = get_format(name)
    if kind not in fmt.kinds:
        raise UnsupportedObjectError(
            f"format {name!r} stores {sorted(k.value for k in fmt.kinds)} data, "
            f"not {kind.value}; leave format= unset to use the default for {kind.value}"
        )
    if not fmt.can_store(obj):
        able = [n for n in available_formats() if n != name and _stores(n, kind, obj)]
        raise UnsupportedObjectError(
            f"format {name!r} cannot store a {type(obj).__name__}; formats that can: {able} "
            "(or leave format= unset for the tier's default)"
        )
    return fmt


def _stores(name: str, kind: Kind, obj: Any) -> bool:
    try:
        fmt = get_format(name)
    except FormatError:
        return False
    return kind in fmt.kinds and bool(fmt.can_store(obj))


def _name_hint(obj: Any) -> str | None:
    name = getattr(obj, "name", None)
    if isinstance(name, str):
        return name
    geometry = getattr(obj, "geometry", None)
    return getattr(geometry, "name", None) if geometry is not None and name is None else None
