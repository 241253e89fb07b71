"""Save and open keywords of the Parquet time-series format, checked before anything is written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from memories_geo.errors import OptionError
from memories_geo.types import CompressionLevel

__all__ = [
    "AUTO",
    "CODECS",
    "DEFAULT_PARTITION_COLS",
    "DERIVED_PARTITIONS",
    "LEVEL_CODECS",
    "ON_DUPLICATE",
    "OPEN_OPTIONS",
    "ROW_GROUP_SIZE",
    "WRITE_OPTIONS",
    "WriteSettings",
    "write_settings",
]

#: Parquet codecs accepted by ``compression=`` (``"none"`` writes uncompressed pages).
CODECS: tuple[str, ...] = ("snappy", "zstd", "lz4", "gzip", "brotli", "none")

#: Compression level of the tier -> (codec, codec level).
LEVEL_CODECS: dict[CompressionLevel, tuple[str, int | None]] = {
    CompressionLevel.FAST: ("snappy", None),
    CompressionLevel.MEDIUM: ("zstd", 3),
    CompressionLevel.HIGH: ("zstd", 9),
    CompressionLevel.MAXIMUM: ("zstd", 19),
}

#: Rows per row group unless ``row_group_size=`` says otherwise.
ROW_GROUP_SIZE = 131_072

#: Partition names computed from the time column when the frame has no column of that name.
DERIVED_PARTITIONS: tuple[str, ...] = ("year", "month", "day")

#: ``partition_cols`` unless the caller gives them.
DEFAULT_PARTITION_COLS: tuple[str, ...] = ("year",)

#: Accepted ``on_duplicate=`` values.
ON_DUPLICATE: tuple[str, ...] = ("error", "skip", "replace")

#: Marker of an option left to detection (``station_column``).
AUTO = "auto"

#: Save keywords -> one-line description (``Format.write_options``).
WRITE_OPTIONS: Mapping[str, str] = {
    "partition_cols": "columns to partition by: 'year', 'month', 'day' (derived from the time column) "
    "and any string, integer, boolean or categorical column (default ['year'])",
    "compression": f"Parquet codec, one of {list(CODECS)} (default: from the tier's compression level)",
    "compression_level": "codec level (zstd, gzip, brotli)",
    "row_group_size": f"rows per row group (default {ROW_GROUP_SIZE})",
    "page_size": "Parquet data page size in bytes",
    "data_page_size": "alias of page_size",
    "time_column": "the time axis: a datetime column, or the name of a DatetimeIndex (default: detected)",
    "station_column": "column identifying the station (default: a column named station, station_id, "
    "id, site or sensor; None for none)",
    "on_duplicate": "with mode='a', what to do with rows whose time (and station) is already stored: "
    f"one of {list(ON_DUPLICATE)} (default 'error')",
}

#: Format-specific open keywords -> one-line description (``Format.open_options``).
OPEN_OPTIONS: Mapping[str, str] = {
    "filters": "pyarrow row filters (list of tuples, DNF, or a pyarrow.dataset expression), "
    "pushed down to partitions and row-group statistics with time and bbox",
}


@dataclass(frozen=True)
class WriteSettings:
    """How the files of one write are encoded, and how the rows are laid out.

    Attributes
    ----------
    compression : str
        Parquet codec (one of :data:`CODECS`).
    compression_level : int or None
        Codec level, ``None`` for the codec's default.
    row_group_size : int
        Rows per row group.
    data_page_size : int or None
        Data page size in bytes, ``None`` for pyarrow's default.
    partition_cols : tuple of str or None
        Partition columns asked for, ``None`` when not given.
    time_column : str or None
        Time axis asked for, ``None`` to detect it.
    station_column : str or None
        Station column asked for, :data:`AUTO` to detect it, ``None`` for none.
    on_duplicate : str
        One of :data:`ON_DUPLICATE`.
    given : frozenset of str
        The keywords the caller passed.

    Examples
    --------
    >>> write_settings({"row_group_size": 10000}, "fast").parquet_kwargs()
    {'compression': 'snappy'}
    """

    compression: str
    compression_level: int | None
    row_group_size: int
    data_page_size: int | None
    partition_cols: tuple[str, ...] | None
    time_column: str | None
    station_column: str | None
    on_duplicate: str
    given: frozenset[str]

    def parquet_kwargs(self) -> dict[str, Any]:
        """Keywords for :class:`pyarrow.parquet.ParquetWriter` (codec, level, page size)."""
        kwargs: dict[str, Any] = {"compression": self.compression}
        if self.compression_level is not None:
            kwargs["compression_level"] = self.compression_level
        if self.data_page_size is not None:
            kwargs["data_page_size"] = self.data_page_size
        return kwargs


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"{name} must be a positive integer, got {value!r}")
    return value


def _name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise OptionError(f"{name} must be a column name (a non-empty string), got {value!r}")
    return value


def write_settings(extra: Mapping[str, Any], level: CompressionLevel) -> WriteSettings:
    """Check the save keywords of the format and fill in the defaults.

    Parameters
    ----------
    extra : mapping
        The format keywords given to ``save`` (already limited to :data:`WRITE_OPTIONS`).
    level : CompressionLevel
        The tier's (or the caller's) compression level, mapped by :data:`LEVEL_CODECS`
        when ``compression=`` is not given.

    Returns
    -------
    WriteSettings

    Raises
    ------
    OptionError
        For a value outside the accepted ones (the message names them).

    Examples
    --------
    >>> write_settings({"compression": "snappy", "row_group_size": 10000}, CompressionLevel.HIGH).compression
    'snappy'
    >>> write_settings({}, CompressionLevel.HIGH).compression_level
    9
    """
    unknown = sorted(set(extra) - set(WRITE_OPTIONS))
    if unknown:
        raise OptionError(
            f"the parquet format does not take {unknown}; accepted keywords: {list(WRITE_OPTIONS)}"
        )
    codec, codec_level = LEVEL_CODECS[CompressionLevel(level)]
    if "compression" in extra:
        asked = extra["compression"]
        codec = str(asked).lower() if isinstance(asked, str) else asked
        if codec in ("uncompressed", None):
            codec = "none"
        if codec not in CODECS:
            raise OptionError(f"compression must be one of {list(CODECS)}, got {asked!r}")
        codec_level = None
    if extra.get("compression_level") is not None:
        value = extra["compression_level"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptionError(f"compression_level must be an integer, got {value!r}")
        if codec not in ("zstd", "gzip", "brotli"):
            raise OptionError(f"compression_level applies to zstd, gzip and brotli, not to {codec!r}")
        codec_level = value
    if "page_size" in extra and "data_page_size" in extra:
        raise OptionError("give page_size or its alias data_page_size, not both")
    page = extra.get("page_size", extra.get("data_page_size"))
    partition_cols = extra.get("partition_cols")
    if partition_cols is not None:
        if isinstance(partition_cols, str) or not all(isinstance(c, str) for c in partition_cols):
            raise OptionError(
                "partition_cols must be a list of column names (e.g. ['year', 'variable']), "
                f"got {partition_cols!r}"
            )
        if len(set(partition_cols)) != len(partition_cols):
            raise OptionError(f"partition_cols names a column twice: {list(partition_cols)}")
        partition_cols = tuple(partition_cols)
    on_duplicate = extra.get("on_duplicate", "error")
    if on_duplicate not in ON_DUPLICATE:
        raise OptionError(f"on_duplicate must be one of {list(ON_DUPLICATE)}, got {on_duplicate!r}")
    station = extra.get("station_column", AUTO)
    if station is not None and station != AUTO:
        station = _name("station_column", station)
    time_column = extra.get("time_column")
    return WriteSettings(
        compression=codec,
        compression_level=codec_level,
        row_group_size=_positive_int("row_group_size", extra.get("row_group_size", ROW_GROUP_SIZE)),
        data_page_size=None if page is None else _positive_int("page_size", page),
        partition_cols=partition_cols,
        time_column=None if time_column is None else _name("time_column", time_column),
        station_column=station,
        on_duplicate=on_duplicate,
        given=frozenset(extra),
    )
