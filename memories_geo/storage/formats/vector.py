"""``GeoJSONStorage``, ``GeoParquetStorage``, ``PostGISStorage``: the original API's vector classes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from memories_geo.config import StorageConfig
from memories_geo.errors import OptionError
from memories_geo.formats.geoparquet.checks import check_codec
from memories_geo.formats.postgis.options import VALIDATIONS, save_settings
from memories_geo.storage.formats.base import (
    FormatStorage,
    check_dsn,
    checked_keywords,
    database_config,
    database_tier_settings,
    organization_parts,
)

__all__ = ["GeoJSONStorage", "GeoParquetStorage", "PostGISStorage"]

#: ``GeoJSONStorage(compression=...)`` values: gzip the file, or not.
GEOJSON_COMPRESSIONS: tuple[Any, ...] = ("gzip", "none", None, True, False)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _validation(value: Any) -> bool | str:
    if value is None:
        return False
    if not any(value is v or (isinstance(v, str) and value == v) for v in VALIDATIONS):
        raise OptionError(f"validation must be one of {list(VALIDATIONS)}, got {value!r}")
    return "make_valid" if value == "make_valid" else bool(value)


def _positive(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise OptionError(f"{name} must be a positive integer, got {value!r}")


def _columns(name: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(
        isinstance(c, str) for c in value
    ):
        raise OptionError(f"{name} must be a list of column names, e.g. ['year', 'variable'], got {value!r}")
    return tuple(value)


@checked_keywords
@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class GeoJSONStorage(FormatStorage):
    """GeoJSON (RFC 7946) options (the original ``GeoJSONStorage``).

    Parameters
    ----------
    base_path : str or Path, optional
        Home of the private collection of standalone saves.
    organization : str, optional
        Key template of standalone saves, e.g. ``"category/subcategory"``: each part
        from the metadata or a column holding one value (see :meth:`key_for`).
    compression : {"gzip", "none"}, optional
        ``"gzip"`` writes ``.geojson.gz`` (level from the tier's compression).
    validation : bool or "make_valid"
        ``True`` refuses invalid geometries naming the rows; ``"make_valid"``
        repairs them; ``False`` (default) stores them as they are.
    precision : int, optional
        Decimal digits of coordinates (default: 17 significant digits, exact).

    Raises
    ------
    OptionError
        For an unknown keyword or a value outside the accepted ones.

    Examples
    --------
    >>> import memories_geo as mg
    >>> gj = mg.GeoJSONStorage(base_path="/data/vector", organization="category/subcategory",
    ...                        compression="gzip", validation=True)
    >>> gj.save_options()
    {'compress': True, 'validate': True}
    """

    format_name: ClassVar[str] = "geojson"
    kinds: ClassVar[frozenset[str]] = frozenset({"vector", "timeseries"})

    base_path: Any = None
    organization: str | None = None
    compression: str | None = None
    validation: bool | str = False
    precision: int | None = None

    def __post_init__(self) -> None:
        organization_parts(self.organization, "organization")
        value = self.compression.lower() if isinstance(self.compression, str) else self.compression
        if value not in GEOJSON_COMPRESSIONS:
            raise OptionError(f"compression for GeoJSON must be 'gzip' or 'none', got {self.compression!r}")
        _set(self, "compression", "gzip" if value in ("gzip", True) else None)
        _set(self, "validation", _validation(self.validation))
        if self.precision is not None and (
            isinstance(self.precision, bool) or not isinstance(self.precision, int)
            or not 0 <= self.precision <= 17
        ):
            raise OptionError(f"precision must be an integer from 0 to 17, got {self.precision!r}")

    @property
    def organization_template(self) -> tuple[str, ...]:
        """Parts of :attr:`organization`."""
        return organization_parts(self.organization, "organization")

    def save_options(self) -> dict[str, Any]:
        """``Memory.save`` keywords of the ``geojson`` format."""
        options: dict[str, Any] = {"compress": self.compression == "gzip", "validate": self.validation}
        if self.precision is not None:
            options["precision"] = self.precision
        return options


@checked_keywords
@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class GeoParquetStorage(FormatStorage):
    """GeoParquet 1.1 options, for vector layers.

    Parameters
    ----------
    base_path : str or Path, optional
        Home of the private collection of standalone saves.
    compression : str, optional
        Parquet codec: ``"snappy"``, ``"zstd"``, ``"gzip"``, ``"brotli"``, ``"lz4"`` or
        ``"none"`` (default: zstd at the tier's level).
    compression_level : int, optional
        The codec's level (zstd, gzip, brotli).
    row_group_size : int, optional
        Rows per row group.
    page_size : int, optional
        Data page size in bytes.
    partition_cols : list of str, optional
        Attribute columns to partition by (a directory of files).
    file_organization : str, optional
        ``partition_cols`` as a template, ``"region/kind"``.
    sort : {"auto", "hilbert", "none"}
        Row order (Hilbert-sorted row groups for large layers by default).

    Raises
    ------
    OptionError
        For an unknown keyword or a value outside the accepted ones.

    Examples
    --------
    >>> import memories_geo as mg
    >>> mg.GeoParquetStorage(compression="snappy", row_group_size=10000).save_options()
    {'compression': 'snappy', 'row_group_size': 10000}
    """

    format_name: ClassVar[str] = "geoparquet"
    kinds: ClassVar[frozenset[str]] = frozenset({"vector"})

    base_path: Any = None
    compression: str | None = None
    compression_level: int | None = None
    row_group_size: int | None = None
    page_size: int | None = None
    partition_cols: Sequence[str] | None = None
    file_organization: str | None = None
    sort: str | None = None

    def __post_init__(self) -> None:
        asked = {k: v for k, v in (("compression", self.compression),
                                   ("compression_level", self.compression_level)) if v is not None}
        codec = check_codec(asked)
        _set(self, "compression", codec.get("compression"))
        _positive("row_group_size", self.row_group_size)
        _positive("page_size", self.page_size)
        partition = _columns("partition_cols", self.partition_cols)
        template = organization_parts(self.file_organization, "file_organization") or None
        if partition and template and partition != template:
            raise OptionError(f"partition_cols={list(partition)} and file_organization="
                              f"{self.file_organization!r} disagree; give one of them")
        _set(self, "partition_cols", partition or template)
        if self.sort not in (None, "auto", "hilbert", "none"):
            raise OptionError(f"sort must be one of ['auto', 'hilbert', 'none'], got {self.sort!r}")

    def save_options(self) -> dict[str, Any]:
        """``Memory.save`` keywords of the ``geoparquet`` format."""
        options: dict[str, Any] = {}
        for name in ("compression", "compression_level", "row_group_size", "page_size", "sort"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        if self.partition_cols:
            options["partition_cols"] = list(self.partition_cols)
        return options


@checked_keywords
@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class PostGISStorage(FormatStorage):
    """PostGIS options (the original ``PostGISStorage``): one table per version, a view per key.

    Parameters
    ----------
    connection_string : str, optional
        ``postgresql://user:password@host:5432/db`` (``${VAR}`` references are
        expanded by the configuration; the password is never shown). Needed for
        standalone use and as a tier backend of its own; as ``storage=`` the tier's
        database is used.
    schema : str
        Schema of the tables and views (default ``"public"``).
    srid : int, optional
        EPSG code every geometry column is reprojected to before loading.
    topology : bool
        Also build a PostGIS topology of the layer (``postgis_topology``; a
        :class:`~memories_geo.errors.FormatError` if the server lacks it).
    spatial_index : bool
        GiST index per geometry column (default ``True``).
    validation : bool or "make_valid"
        ``True`` refuses invalid geometries naming the rows; ``"make_valid"`` repairs them.
    base_path : str or Path, optional
        Where standalone use keeps its catalog (default under ``$MEMORIES_GEO_HOME``).
    storage_options : mapping, optional
        Further settings of the PostgreSQL backend of standalone use (``min_size``,
        ``max_size`` of the connection pool...). Never shown.

    Raises
    ------
    OptionError
        For an unknown keyword or a value outside the accepted ones.

    Examples
    --------
    >>> import memories_geo as mg
    >>> pg = mg.PostGISStorage(connection_string="postgresql://me:secret@db:5432/gis",
    ...                        schema="vector_data", spatial_index=True, topology=True, srid=4326)
    >>> pg.connection_string in repr(pg)
    False
    >>> "me:***@db" in repr(pg)
    True
    """

    format_name: ClassVar[str] = "postgis"
    kinds: ClassVar[frozenset[str]] = frozenset({"vector"})
    _secret_fields: ClassVar[tuple[str, ...]] = ("connection_string", "storage_options")

    connection_string: str | None = None
    schema: str = "public"
    spatial_index: bool = True
    topology: bool = False
    srid: int | None = None
    validation: bool | str = False
    base_path: Any = None
    storage_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        check_dsn(self.connection_string)
        if not isinstance(self.schema, str) or not self.schema:
            raise OptionError(f"schema must be a schema name, got {self.schema!r}")
        _set(self, "validation", _validation(self.validation))
        settings = save_settings({"srid": self.srid, "spatial_index": self.spatial_index,
                                  "topology": self.topology, "validate": self.validation})
        _set(self, "srid", settings.srid)

    def save_options(self) -> dict[str, Any]:
        """``Memory.save`` keywords of the ``postgis`` format."""
        options: dict[str, Any] = {"spatial_index": self.spatial_index, "topology": self.topology,
                                   "validate": self.validation}
        if self.srid is not None:
            options["srid"] = self.srid
        return options

    def tier_settings(self) -> dict[str, Any]:
        """Settings of a tier on this database and schema (no ``url`` without ``connection_string``)."""
        return database_tier_settings(self.connection_string, self.schema, self.storage_options)

    def _config(self) -> StorageConfig:
        return database_config(self, self.connection_string, self.schema, self.base_path,
                               self.storage_options)
