"""``ParquetStorage`` and ``TimescaleDBStorage``: the original API's time-series storage classes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from memories_geo.config import StorageConfig
from memories_geo.errors import OptionError
from memories_geo.formats.parquet.options import write_settings
from memories_geo.formats.timescaledb.options import parse_interval
from memories_geo.storage.formats.base import (
    FormatStorage,
    check_dsn,
    checked_keywords,
    database_config,
    database_tier_settings,
    organization_parts,
)
from memories_geo.types import CompressionLevel

__all__ = ["ParquetStorage", "TimescaleDBStorage"]


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


@checked_keywords
@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class ParquetStorage(FormatStorage):
    """Parquet time-series options (the original ``ParquetStorage``).

    Parameters
    ----------
    base_path : str or Path, optional
        Home of the private collection of standalone saves.
    partition_cols : list of str, optional
        Columns to partition by: ``"year"``, ``"month"``, ``"day"`` (derived from the
        time column when the frame has no such column) and any string, integer,
        boolean or categorical column. Default ``["year"]``.
    file_organization : str, optional
        The same as a template: ``"sensor/year/month"`` is
        ``partition_cols=["sensor", "year", "month"]`` (directories
        ``sensor=s1/year=2024/month=3/``).
    compression : str
        ``"snappy"`` (default), ``"zstd"``, ``"lz4"``, ``"gzip"``, ``"brotli"`` or ``"none"``.
    compression_level : int, optional
        The codec's level (zstd, gzip, brotli).
    row_group_size : int, optional
        Rows per row group (default 131072).
    page_size : int, optional
        Data page size in bytes (default pyarrow's, 1 MiB).
    time_column : str, optional
        The time axis (default: detected).

    Raises
    ------
    OptionError
        For an unknown keyword or a value outside the accepted ones.

    Examples
    --------
    >>> import memories_geo as mg
    >>> ps = mg.ParquetStorage(base_path="/data/timeseries", partition_cols=["year", "variable"],
    ...                        compression="snappy", row_group_size=10000, page_size=8192)
    >>> ps.save_options()["partition_cols"]
    ['year', 'variable']
    """

    format_name: ClassVar[str] = "parquet"
    kinds: ClassVar[frozenset[str]] = frozenset({"timeseries"})

    base_path: Any = None
    partition_cols: Sequence[str] | None = None
    file_organization: str | None = None
    compression: str = "snappy"
    compression_level: int | None = None
    row_group_size: int | None = None
    page_size: int | None = None
    time_column: str | None = None

    def __post_init__(self) -> None:
        template = organization_parts(self.file_organization, "file_organization") or None
        if self.partition_cols is not None and (
            isinstance(self.partition_cols, str) or not isinstance(self.partition_cols, Sequence)
        ):
            raise OptionError(f"partition_cols must be a list of column names, got {self.partition_cols!r}")
        partition = tuple(self.partition_cols) if self.partition_cols is not None else None
        if partition and template and partition != template:
            raise OptionError(f"partition_cols={list(partition)} and file_organization="
                              f"{self.file_organization!r} disagree; give one of them")
        _set(self, "partition_cols", partition or template)
        settings = write_settings(self._given(), CompressionLevel.MEDIUM)
        _set(self, "compression", settings.compression)

    def _given(self) -> dict[str, Any]:
        given: dict[str, Any] = {"compression": self.compression}
        for name in ("compression_level", "row_group_size", "page_size", "time_column"):
            if getattr(self, name) is not None:
                given[name] = getattr(self, name)
        if self.partition_cols is not None:
            given["partition_cols"] = list(self.partition_cols)
        return given

    def save_options(self) -> dict[str, Any]:
        """``Memory.save`` keywords of the ``parquet`` format.

        Examples
        --------
        >>> ParquetStorage(file_organization="sensor/year/month").save_options()
        {'compression': 'snappy', 'partition_cols': ['sensor', 'year', 'month']}
        """
        return self._given()


@checked_keywords
@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class TimescaleDBStorage(FormatStorage):
    """TimescaleDB options (the original ``TimescaleDBStorage``): hypertables, compressed chunks.

    Parameters
    ----------
    connection_string : str, optional
        ``postgresql://...`` of a database with TimescaleDB (the password is never
        shown); needed for standalone use.
    schema : str
        Schema of the tables and views (default ``"public"``).
    chunk_time_interval : str or timedelta
        Chunk width: ``"1 month"`` (default), ``"7 days"``, ``"1D"``...
    compression_enabled : bool
        Compress the loaded chunks (default ``True``).
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
    >>> ts = mg.TimescaleDBStorage(connection_string="postgresql://me:secret@db/earth",
    ...                            schema="timeseries", chunk_time_interval="1 month",
    ...                            compression_enabled=True)
    >>> ts.save_options()
    {'chunk_time_interval': '1 month', 'compression_enabled': True}
    """

    format_name: ClassVar[str] = "timescaledb"
    kinds: ClassVar[frozenset[str]] = frozenset({"timeseries"})
    _secret_fields: ClassVar[tuple[str, ...]] = ("connection_string", "storage_options")

    connection_string: str | None = None
    schema: str = "public"
    chunk_time_interval: Any = "1 month"
    compression_enabled: bool = True
    base_path: Any = None
    storage_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        check_dsn(self.connection_string)
        if not isinstance(self.schema, str) or not self.schema:
            raise OptionError(f"schema must be a schema name, got {self.schema!r}")
        parse_interval(self.chunk_time_interval, "chunk_time_interval")
        if not isinstance(self.compression_enabled, bool):
            raise OptionError(f"compression_enabled must be True or False, got {self.compression_enabled!r}")

    def save_options(self) -> dict[str, Any]:
        """``Memory.save`` keywords of the ``timescaledb`` format."""
        return {"chunk_time_interval": self.chunk_time_interval,
                "compression_enabled": self.compression_enabled}

    def tier_settings(self) -> dict[str, Any]:
        """Settings of a tier on this database and schema (no ``url`` without ``connection_string``)."""
        return database_tier_settings(self.connection_string, self.schema, self.storage_options)

    def _config(self) -> StorageConfig:
        return database_config(self, self.connection_string, self.schema, self.base_path,
                               self.storage_options)
