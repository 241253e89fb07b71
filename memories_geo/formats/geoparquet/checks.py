"""Checks of a layer and of the layout keywords, run before anything is written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from memories_geo.errors import OptionError, UnsupportedObjectError

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["CODECS", "ENCODINGS", "SORTS", "check_arrow_columns", "check_codec", "check_layout_options"]

#: Parquet codecs accepted by ``compression=`` (``"none"``: uncompressed pages).
CODECS = ("snappy", "zstd", "gzip", "brotli", "lz4", "none")
#: Codecs taking ``compression_level=``.
_LEVELLED = ("zstd", "gzip", "brotli")

#: Accepted ``sort=`` values.
SORTS = ("auto", "hilbert", "none")
#: Accepted ``geometry_encoding=`` values.
ENCODINGS = ("auto", "WKB", "geoarrow")
_OBJECT = np.dtype("O")


def check_arrow_columns(gdf: gpd.GeoDataFrame) -> None:
    """Refuse, before anything is written, columns and index levels Arrow cannot hold.

    Column names must be strings; an object column (or index level, or the categories of
    a categorical) must convert to one Arrow type: mixed types (``["x", 3]``, dicts and
    ints) and arbitrary Python objects cannot.

    Raises
    ------
    UnsupportedObjectError
        Naming the column or index level, its dtype, the types of values found and
        Arrow's reason.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> gdf = gpd.GeoDataFrame({"a": ["x", 3]}, geometry=[Point(0, 0)] * 2, crs="EPSG:4326")
    >>> check_arrow_columns(gdf)
    Traceback (most recent call last):
    ...
    memories_geo.errors.UnsupportedObjectError: column 'a' (dtype object) mixes values of types int, str, ...
    """
    import pandas as pd

    names = [c for c in gdf.columns if not isinstance(c, str)]
    if names:
        raise UnsupportedObjectError(
            f"Parquet column names are strings; rename the columns {names} first "
            "(gdf.columns = gdf.columns.map(str))"
        )
    for name in gdf.columns:
        dtype = gdf[name].dtype
        if isinstance(dtype, pd.CategoricalDtype) and dtype.categories.dtype == _OBJECT:
            _check_arrow_values(dtype.categories.to_numpy(), f"the categories of column {name!r}", dtype)
        elif dtype == _OBJECT:
            _check_arrow_values(gdf[name].to_numpy(), f"column {name!r}", dtype)
    for level, name in enumerate(gdf.index.names):
        values = gdf.index.get_level_values(level)
        if values.dtype == _OBJECT:
            label = f"index level {name!r}" if name is not None else f"index level {level}"
            _check_arrow_values(values.to_numpy(), label, values.dtype)


def _check_arrow_values(values: np.ndarray, what: str, dtype: Any) -> None:
    import pandas as pd
    import pyarrow as pa

    try:
        pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        present = values[~pd.isnull(values)]
        types = sorted({type(v).__name__ for v in present})
        found = f"mixes values of types {', '.join(types)}" if len(types) > 1 else (
            f"holds values of type {types[0] if types else 'unknown'}"
        )
        reason = exc.args[0] if exc.args else exc
        raise UnsupportedObjectError(
            f"{what} (dtype {dtype}) {found}, which Parquet cannot store in one column "
            f"(Arrow: {reason}); convert it to one type first, e.g. with .astype(str)"
        ) from exc


def check_layout_options(
    gdf: gpd.GeoDataFrame,
    *,
    sort: Any = "auto",
    geometry_encoding: Any = "auto",
    row_group_size: Any = None,
    partition_cols: Any = None,
    **_: Any,
) -> None:
    """Check the layout keywords of :func:`write_geoparquet` for ``gdf`` (other keywords are ignored).

    Raises
    ------
    OptionError
        For an unknown ``sort`` or ``geometry_encoding``, a ``row_group_size`` that is
        not a positive integer, or ``partition_cols`` that are not attribute columns.

    Examples
    --------
    >>> check_layout_options(gdf, sort="zorder")  # doctest: +SKIP
    Traceback (most recent call last):
    ...
    memories_geo.errors.OptionError: sort must be one of ('auto', 'hilbert', 'none'), got 'zorder'
    """
    if sort not in SORTS:
        raise OptionError(f"sort must be one of {SORTS}, got {sort!r}")
    if geometry_encoding not in ENCODINGS:
        raise OptionError(f"geometry_encoding must be one of {ENCODINGS}, got {geometry_encoding!r}")
    if row_group_size is not None and (
        isinstance(row_group_size, bool) or not isinstance(row_group_size, int) or row_group_size < 1
    ):
        raise OptionError(f"row_group_size must be a positive integer, got {row_group_size!r}")
    if partition_cols:
        missing = [c for c in partition_cols if c not in gdf.columns]
        if missing or gdf.geometry.name in partition_cols:
            raise OptionError(
                f"partition_cols must name attribute columns of the layer; "
                f"{missing or [gdf.geometry.name]} cannot be used "
                f"(columns: {[c for c in gdf.columns if c != gdf.geometry.name]})"
            )


def check_codec(extra: dict[str, Any]) -> dict[str, Any]:
    """``compression`` and ``compression_level`` of ``extra`` as pyarrow takes them.

    A codec given without a level gets the codec's own default level (``None``).

    Raises
    ------
    OptionError
        For a codec outside :data:`CODECS` or a level that is not an integer, or
        with a codec that takes none.

    Examples
    --------
    >>> check_codec({"compression": "SNAPPY"})
    {'compression': 'snappy', 'compression_level': None}
    """
    found: dict[str, Any] = {}
    codec = "zstd"
    if "compression" in extra:
        asked = extra["compression"]
        codec = asked.lower() if isinstance(asked, str) else asked
        if codec not in CODECS:
            raise OptionError(f"compression for the geoparquet format must be one of {list(CODECS)}, "
                              f"got {asked!r}")
        found["compression"] = codec
        found["compression_level"] = None
    level = extra.get("compression_level")
    if level is not None:
        if isinstance(level, bool) or not isinstance(level, int):
            raise OptionError(f"compression_level must be an integer, got {level!r}")
        if codec not in _LEVELLED:
            raise OptionError(f"compression_level applies to {list(_LEVELLED)}, not to {codec!r}")
        found["compression_level"] = level
    return found
