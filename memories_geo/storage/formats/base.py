"""What every format storage class shares: keyword checks, the key template, standalone use, reprs.

A format storage object (:class:`FormatStorage` subclasses) is a typed, frozen set of save
options for one format. It serves three ways:

1. ``mem.save(obj, key, storage=COGStorage(...))`` (and ``obj.memories.save(key,
   storage=...)``): the resolver takes :attr:`~FormatStorage.format_name` and
   :meth:`~FormatStorage.save_options`;
2. a tier's default (``StorageConfig(..., raster_backend=COGStorage(...))`` or
   ``[tiers.hot.format_options.cog]`` in ``memories.toml``);
3. standalone: ``COGStorage(base_path=...).save(data, key=..., metadata=...)``,
   ``.load(key)``, ``.list()``, ``.delete(key)`` run a private :class:`~memories_geo.Memory`
   (the embedded layout under ``base_path``).
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import hashlib
import html
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from memories_geo.awaitable import awaitable_twin, awaitable_when_in_loop
from memories_geo.config import StorageConfig, default_home, redact_url
from memories_geo.errors import KeyNotFoundError, OptionError
from memories_geo.memory import Memory

if TYPE_CHECKING:
    from memories_geo.entry import Entry

__all__ = [
    "TIME_PARTS", "FormatStorage", "check_dsn", "checked_keywords", "database_config", "database_home",
    "database_tier_settings", "organization_parts",
]

#: Parts of an organization template computed from the data's (or metadata's) time.
TIME_PARTS = ("year", "month", "day")

_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TIME_KEYS = ("date", "time", "timestamp", "datetime", "acquired", "start")

S = TypeVar("S", bound=type)


def checked_keywords(cls: S) -> S:
    """Make unknown constructor keywords an :class:`OptionError` listing the accepted ones.

    (``OptionError`` is a ``TypeError``, as Python raises for an unexpected keyword.)
    """
    init: Callable[..., None] = cls.__init__  # type: ignore[misc]
    accepted = [f.name for f in dataclasses.fields(cls) if f.init]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if args:
            raise OptionError(f"{cls.__name__} takes keyword arguments only ({', '.join(accepted)})")
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise OptionError(f"{cls.__name__} does not take {unknown}; accepted keywords: {accepted}")
        init(self, **kwargs)

    __init__.__doc__ = init.__doc__
    cls.__init__ = __init__  # type: ignore[misc]
    return cls


def organization_parts(template: Any, what: str) -> tuple[str, ...]:
    """The parts of an organization template (``"sensor/year/month"`` -> ``("sensor", "year", "month")``).

    Raises
    ------
    OptionError
        For anything but a ``/``-separated string of names (a list of names is fine too).

    Examples
    --------
    >>> organization_parts("sensor/year/month", "organization")
    ('sensor', 'year', 'month')
    """
    if template is None:
        return ()
    parts = template.strip("/").split("/") if isinstance(template, str) else template
    if not isinstance(parts, list | tuple) or not parts or not all(
        isinstance(p, str) and _PART.match(p) for p in parts
    ):
        raise OptionError(
            f"{what} must be a template of names separated by '/', such as 'sensor/year/month' "
            f"(each a letter or _ then letters, digits or _), got {template!r}"
        )
    return tuple(parts)


def _time_of(data: Any, metadata: Mapping[str, Any]) -> dt.datetime | None:
    """The time the key template's ``year``/``month``/``day`` come from: metadata first, then the data."""
    import pandas as pd

    for name in _TIME_KEYS:
        if metadata.get(name) is not None:
            try:
                return pd.Timestamp(metadata[name]).to_pydatetime()
            except (TypeError, ValueError):
                continue
    coords = getattr(data, "coords", None)
    if coords is not None and "time" in coords and coords["time"].size:
        return pd.Timestamp(coords["time"].values.ravel()[0]).to_pydatetime()
    if isinstance(data, pd.DataFrame):
        from memories_geo.kinds import time_column

        column = time_column(data)
        if column is not None:
            values = data[column] if column in data.columns else data.index
            if len(values):
                return pd.Timestamp(min(values)).to_pydatetime()
    return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class FormatStorage:
    """Base of the format storage classes (see :mod:`memories_geo.storage.formats`).

    Subclasses are frozen dataclasses with keyword-only fields, checked in
    ``__post_init__``; they define :attr:`format_name`, :attr:`kinds` and
    :meth:`save_options`.

    Examples
    --------
    >>> from memories_geo.storage.formats import COGStorage
    >>> COGStorage(compression="DEFLATE").save_options()["compression"]
    'DEFLATE'
    """

    #: Registry name of the format (``"cog"``, ``"zarr"``...).
    format_name: ClassVar[str]
    #: Kinds of data the format stores (``"raster"``, ``"vector"``, ``"timeseries"``, ``"array"``).
    kinds: ClassVar[frozenset[str]]
    #: Fields never shown as they are (connection strings: password masked).
    _secret_fields: ClassVar[tuple[str, ...]] = ()

    def save_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Memory.save`` this object stands for (the library's option names)."""
        raise NotImplementedError

    # -- key template ------------------------------------------------------------

    @property
    def organization_template(self) -> tuple[str, ...]:
        """Parts of the key template standalone saves put before the key (empty: none)."""
        return ()

    def key_for(self, key: str, data: Any = None, metadata: Mapping[str, Any] | None = None) -> str:
        """The key a standalone :meth:`save` stores ``data`` under: the template's values, then ``key``.

        Each part of the template is taken from ``metadata``, else the data's
        attributes (``attrs``) or columns holding one value; ``year``, ``month`` and
        ``day`` may also come from the time in ``metadata`` (``date``, ``time``,
        ``timestamp``...) or the data's first time.

        Raises
        ------
        OptionError
            When a part of the template is found nowhere (the message says where it
            was looked for).

        Examples
        --------
        >>> from memories_geo.storage.formats import COGStorage
        >>> COGStorage(organization="sensor/year/month").key_for(
        ...     "scene", metadata={"sensor": "s2", "date": "2024-03-15"})
        's2/2024/03/scene'
        """
        metadata = dict(metadata or {})
        parts: list[str] = []
        when: dt.datetime | None = None
        for part in self.organization_template:
            value = metadata.get(part)
            if value is None:
                value = _attribute(data, part)
            if value is None and part in TIME_PARTS:
                when = when or _time_of(data, metadata)
                if when is not None:
                    value = {"year": f"{when.year:04d}", "month": f"{when.month:02d}",
                             "day": f"{when.day:02d}"}[part]
            if value is None:
                raise OptionError(
                    f"the key template {'/'.join(self.organization_template)!r} needs {part!r}: pass "
                    f"metadata={{{part!r}: ...}}, or give the data an attribute or a one-valued column "
                    f"{part!r}" + (" or a time" if part in TIME_PARTS else "")
                )
            parts.append(str(value).strip("/").replace("/", "_"))
        return "/".join([*parts, key])

    # -- standalone use ---------------------------------------------------------

    @property
    def location(self) -> str | None:
        """Where standalone saves go (``base_path``), ``None`` when unset."""
        value = getattr(self, "base_path", None)
        return None if value is None else str(value)

    def _config(self) -> StorageConfig:
        if self.location is None:
            raise OptionError(
                f"{type(self).__name__} needs base_path= to save, load, list or delete on its own; "
                "or pass it as storage= to Memory.save"
            )
        return StorageConfig.embedded(self.location)

    @cached_property
    def memory(self) -> Memory:
        """The private :class:`~memories_geo.Memory` behind standalone saves (created on first use)."""
        return Memory(self._config())

    @awaitable_when_in_loop
    def save(
        self,
        data: Any,
        key: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        tier: str | None = None,
        tags: Sequence[str] = (),
        **options: Any,
    ) -> Entry:
        """Store ``data`` under ``key`` (after the key template), as a new version if the key exists.

        Parameters
        ----------
        data : xarray or (geo)pandas object
            What to store.
        key : str
            Its key (the template's values go before it, see :meth:`key_for`).
        metadata : mapping, optional
            Kept in the catalog with the version (``entry.attrs``).
        tier : str, optional
            Tier of the private collection (default ``"hot"``).
        tags : sequence of str
            Labels to search by.
        **options
            Further ``Memory.save`` keywords, over this object's options.

        Returns
        -------
        Entry
            The new version (``entry.key`` is the full key). Called from a running
            event loop, a :class:`~memories_geo.awaitable.Deferred` to ``await``.

        Examples
        --------
        >>> from memories_geo.storage.formats import COGStorage
        >>> entry = COGStorage(base_path="/tmp/rasters").save(dem, key="alps/dem")  # doctest: +SKIP
        """
        full = self.key_for(key, data, metadata)
        return self.memory.save(data, full, mode="w", attrs=dict(metadata or {}), tags=tuple(tags), tier=tier,
                                storage=self, **options)

    def find(self, key: str) -> str:
        """The stored key ``key`` stands for: itself, or the one key ending in ``/key`` (a template's).

        Raises
        ------
        KeyNotFoundError
            No such key, or several keys end with it (the message lists them).
        """
        catalog = self.memory.catalog
        try:
            catalog.current(key)
            return key
        except KeyNotFoundError:
            pass
        matches = sorted(e.key for e in catalog.search(key=f"*/{key}"))
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise KeyNotFoundError(f"{key!r} is ambiguous: {matches}; pass the full key")
        raise KeyNotFoundError(f"no key {key!r} in {type(self).__name__}; keys: {self.list()[:20]}")

    @awaitable_when_in_loop
    def load(self, key: str, **open_options: Any) -> Any:
        """Open what :meth:`save` stored under ``key`` (the full key, or the one given to ``save``).

        ``open_options`` are those of ``Memory.open`` (``bbox=``, ``time=``,
        ``columns=``, ``version=``...).

        Examples
        --------
        >>> ds = COGStorage(base_path="/tmp/rasters").load("alps/dem")  # doctest: +SKIP
        """
        return self.memory.open(self.find(key), **open_options)

    @awaitable_when_in_loop
    def list(self, pattern: str | None = None) -> builtins.list[str]:
        """Keys stored, optionally matching a glob (``"s2/2024/*"``).

        Examples
        --------
        >>> COGStorage(base_path="/tmp/rasters").list()  # doctest: +SKIP
        ['s2/2024/03/scene']
        """
        return sorted(e.key for e in self.memory.catalog.search(key=pattern))

    @awaitable_when_in_loop
    def delete(self, key: str) -> None:
        """Delete ``key`` (every version of it).

        Examples
        --------
        >>> COGStorage(base_path="/tmp/rasters").delete("alps/dem")  # doctest: +SKIP
        """
        self.memory.delete(self.find(key))

    asave = awaitable_twin(save.__wrapped__)  # type: ignore[attr-defined]
    aload = awaitable_twin(load.__wrapped__)  # type: ignore[attr-defined]
    alist = awaitable_twin(list.__wrapped__)  # type: ignore[attr-defined]
    adelete = awaitable_twin(delete.__wrapped__)  # type: ignore[attr-defined]

    # -- display ----------------------------------------------------------------

    def _shown(self) -> builtins.list[tuple[str, Any]]:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if f.name in self._secret_fields:
                value = redact_url(value) if isinstance(value, str) else "***"
            shown.append((f.name, value))
        return shown

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in self._shown())
        return f"{type(self).__name__}({inner})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
            f"<td>{html.escape(repr(value))}</td></tr>"
            for name, value in [*self._shown(), ("save options", self.save_options())]
        )
        return (f"<div><strong>{type(self).__name__}</strong> (format {html.escape(self.format_name)!s})"
                f"<table>{rows}</table></div>")


def database_home(base_path: Any, connection_string: str, schema: str) -> Path:
    """Where a database storage's private catalog lives: ``base_path``, else under the default home."""
    if base_path is not None:
        return Path(base_path)
    digest = hashlib.blake2b(f"{connection_string}#{schema}".encode(), digest_size=8).hexdigest()
    return default_home() / "storage" / digest


def _attribute(data: Any, name: str) -> Any:
    attrs = getattr(data, "attrs", None)
    if isinstance(attrs, Mapping) and attrs.get(name) is not None:
        return attrs[name]
    columns = getattr(data, "columns", None)
    if columns is not None and name in columns:
        values = data[name].dropna().unique()
        if len(values) == 1:
            return values[0]
    return None


def check_dsn(dsn: Any) -> None:
    """Refuse a ``connection_string`` that is not a ``postgresql://`` URL (without showing it)."""
    if dsn is not None and (not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://"))):
        raise OptionError("connection_string must be a postgresql:// URL, got "
                          f"{type(dsn).__name__ if not isinstance(dsn, str) else 'another scheme'}")


def database_tier_settings(
    dsn: str | None, schema: str, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Tier settings of a database storage: its URL (when given), schema and backend options."""
    settings: dict[str, Any] = {"storage_options": {**dict(storage_options or {}), "schema": schema}}
    if dsn is not None:
        settings["url"] = dsn
    return settings


def database_config(
    storage: FormatStorage, dsn: str | None, schema: str, base_path: Any,
    storage_options: Mapping[str, Any] | None = None,
) -> StorageConfig:
    """A private collection whose default tier is the database (its catalog under ``base_path``)."""
    if dsn is None:
        raise OptionError(f"{type(storage).__name__} needs connection_string= to save, load, list or "
                          "delete on its own; or pass it as storage= to Memory.save on a database tier")
    home = database_home(base_path, dsn, schema)
    tier = database_tier_settings(dsn, schema, storage_options)
    return StorageConfig.from_dict({"home": str(home), "tiers": {"hot": tier}})
