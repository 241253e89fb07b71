"""Frames and Arrow tables: what a frame is made of (``object_info``), and the same frame back.

:func:`describe` records what Arrow does not give back by itself (the index kind, pandas
dtypes, categories, the column axis, ``attrs``); :func:`to_arrow` converts a frame (WKB
geometry with GeoParquet 1.1 ``geo`` metadata and a ``bbox`` covering column for a
GeoDataFrame); :func:`to_frame` rebuilds the saved type from a table read back.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from memories_geo.errors import OptionError, UnsupportedObjectError
from memories_geo.formats.parquet.options import AUTO, DEFAULT_PARTITION_COLS, DERIVED_PARTITIONS
from memories_geo.kinds import STATION_NAMES, time_column

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from memories_geo.formats.parquet.options import WriteSettings

__all__ = [
    "LAYOUT_VERSION",
    "ROW_FIELD",
    "describe",
    "index_fields",
    "is_geo",
    "restore_dtype",
    "to_arrow",
    "to_frame",
]

#: Version of the layout described by ``object_info`` (bumped on incompatible changes).
LAYOUT_VERSION = 1

#: Hidden column holding each row's position in the saved frame (renamed on a clash).
ROW_FIELD = "_mg_row"


def is_geo(frame: Any) -> bool:
    """Whether ``frame`` is a GeoDataFrame.

    Examples
    --------
    >>> import pandas as pd
    >>> is_geo(pd.DataFrame())
    False
    """
    import geopandas as gpd

    return isinstance(frame, gpd.GeoDataFrame)


def _index_field(name: Any, level: int) -> str:
    return str(name) if name is not None else f"__index_level_{level}__"


def index_fields(frame: pd.DataFrame) -> list[str]:
    """Arrow field names of the index levels of ``frame`` (none for a RangeIndex).

    Examples
    --------
    >>> import pandas as pd
    >>> index_fields(pd.DataFrame({"v": [1]}, index=pd.to_datetime(["2024-01-01"])))
    ['__index_level_0__']
    """
    import pandas as pd

    if isinstance(frame.index, pd.RangeIndex):
        return []
    return [_index_field(name, i) for i, name in enumerate(frame.index.names)]


def _time_axis(frame: pd.DataFrame, asked: str | None) -> dict[str, Any]:
    import pandas as pd

    name = asked if asked is not None else time_column(frame)
    index = frame.index
    datetime_columns = [str(c) for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c].dtype)]
    if name in frame.columns:
        if str(name) not in datetime_columns:
            raise OptionError(
                f"time_column={name!r} is not a datetime column (dtype {frame[name].dtype}); "
                f"datetime columns: {datetime_columns}; parse it with pandas.to_datetime first"
            )
        return {"name": name, "field": name, "in_index": False, "dtype": str(frame[name].dtype)}
    if isinstance(index, pd.DatetimeIndex) and name is not None and (
        index.name == name or (index.name is None and name == "index")
    ):
        field = _index_field(index.name, 0)
        return {"name": name, "field": field, "in_index": True, "dtype": str(index.dtype)}
    if name is None:
        raise UnsupportedObjectError(
            "this frame has no datetime column or DatetimeIndex, so it is not a time series; "
            "parse its time column with pandas.to_datetime, or save it in another format"
        )
    raise OptionError(
        f"time_column={name!r} is neither a datetime column nor the DatetimeIndex; datetime "
        f"columns: {datetime_columns}"
        + (f", index: {index.name or 'index'!r}" if isinstance(index, pd.DatetimeIndex) else "")
    )


def _station(frame: pd.DataFrame, asked: str | None, time_field: str, geometry: str | None) -> str | None:
    if asked is None:
        return None
    if asked == AUTO:
        others = [c for c in frame.columns if c not in (time_field, geometry)]
        found = [c for c in others if str(c).lower() in STATION_NAMES]
        return str(found[0]) if found else None
    if asked not in frame.columns or asked in (time_field, geometry):
        raise OptionError(
            f"station_column={asked!r} is not a column of the frame; columns: "
            f"{[c for c in frame.columns if c not in (time_field, geometry)]} (or station_column=None)"
        )
    return asked


def _partitions(frame: pd.DataFrame, asked: tuple[str, ...] | None, time: Mapping[str, Any],
                geometry: str | None) -> tuple[list[str], list[str]]:
    import pandas as pd

    cols = list(asked if asked is not None else DEFAULT_PARTITION_COLS)
    derived = []
    for name in cols:
        if name in frame.columns:
            dtype = frame[name].dtype
            if isinstance(dtype, pd.CategoricalDtype):
                dtype = dtype.categories.dtype
            usable = (pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
                      or pd.api.types.is_string_dtype(dtype))
            if name in (time["field"], geometry) or not usable:
                raise OptionError(
                    f"partition_cols: {name!r} (dtype {frame[name].dtype}) cannot be a partition; "
                    "partition by string, integer, boolean or categorical columns, or by "
                    f"{list(DERIVED_PARTITIONS)} derived from the time column"
                )
        elif name in DERIVED_PARTITIONS:
            derived.append(name)
        else:
            raise OptionError(
                f"partition_cols: {name!r} is neither a column of the frame nor one of "
                f"{list(DERIVED_PARTITIONS)} (derived from the time column); columns: {list(frame.columns)}"
            )
    return cols, derived


def _json_value(value: Any, what: str) -> Any:
    try:
        same = json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        same = False
    if not same:
        raise UnsupportedObjectError(
            f"{what} cannot be recorded as JSON ({value!r}); make it strings, numbers, lists or dicts"
        )
    return value


def _categories(frame: pd.DataFrame) -> dict[str, Any]:
    import pandas as pd

    out = {}
    for name in frame.columns:
        dtype = frame[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            values = [v.item() if hasattr(v, "item") else v for v in dtype.categories]
            _json_value(values, f"the categories of column {name!r}")
            out[str(name)] = {"categories": values, "ordered": bool(dtype.ordered)}
    return out


def _index(frame: pd.DataFrame) -> dict[str, Any]:
    import pandas as pd

    index = frame.index
    if isinstance(index, pd.RangeIndex):
        return {"kind": "range", "start": index.start, "step": index.step,
                "name": _json_value(index.name, "the index name")}
    names = [_json_value(n, "an index level name") for n in index.names]
    if any(n is not None and not isinstance(n, str) for n in names):
        raise UnsupportedObjectError(f"index level names must be strings, got {names}; rename them first")
    levels = [index.get_level_values(i) for i in range(index.nlevels)]
    freq = getattr(index, "freqstr", None) if isinstance(index, pd.DatetimeIndex) else None
    return {"kind": "fields", "names": names, "fields": index_fields(frame),
            "dtypes": [str(level.dtype) for level in levels], "freq": freq}


def describe(frame: pd.DataFrame, settings: WriteSettings) -> dict[str, Any]:
    """The ``object_info`` of a frame: what :func:`to_frame` needs to give it back exactly.

    Raises
    ------
    UnsupportedObjectError
        For column names that are not strings, names clashing between the index and the
        columns, a ``bbox`` column in a GeoDataFrame, values Arrow cannot hold, or
        ``attrs``/categories JSON cannot record.
    OptionError
        For ``time_column``, ``station_column`` or ``partition_cols`` that do not fit the frame.

    Examples
    --------
    >>> import pandas as pd
    >>> from memories_geo.formats.parquet.options import write_settings
    >>> frame = pd.DataFrame({"time": pd.to_datetime(["2024-01-01"]), "station": ["a"], "v": [1.0]})
    >>> info = describe(frame, write_settings({}, "fast"))
    >>> info["time"]["field"], info["station"], info["partition_cols"]
    ('time', 'station', ['year'])
    """
    from memories_geo.formats.geoparquet.checks import check_arrow_columns

    check_arrow_columns(frame)
    geometry = str(frame.geometry.name) if is_geo(frame) else None
    if geometry is not None and "bbox" in frame.columns:
        raise UnsupportedObjectError(
            "a GeoDataFrame time series keeps its GeoParquet covering column under the name "
            "'bbox'; rename the frame's own 'bbox' column first"
        )
    fields = index_fields(frame)
    clash = sorted(set(fields) & {str(c) for c in frame.columns})
    if clash:
        raise UnsupportedObjectError(f"{clash} name both an index level and a column; rename one of them")
    time = _time_axis(frame, settings.time_column)
    station = _station(frame, settings.station_column, time["field"], geometry)
    partition_cols, derived = _partitions(frame, settings.partition_cols, time, geometry)
    used = {*map(str, frame.columns), *fields}
    row_field = ROW_FIELD
    while row_field in used:
        row_field = "_" + row_field
    return {
        "type": type(frame).__name__,
        "layout": LAYOUT_VERSION,
        "columns": [str(c) for c in frame.columns],
        "columns_dtype": str(frame.columns.dtype),
        "columns_name": _json_value(frame.columns.name, "the name of the column axis"),
        "dtypes": {str(c): str(frame[c].dtype) for c in frame.columns},
        "categories": _categories(frame),
        "index": _index(frame),
        "time": time,
        "station": station,
        "partition_cols": partition_cols,
        "derived": derived,
        "row_field": row_field,
        "geometry": geometry,
        "attrs": _json_value(dict(frame.attrs), "the frame's attrs"),
    }


def to_arrow(frame: pd.DataFrame, info: Mapping[str, Any]) -> pa.Table:
    """``frame`` as an Arrow table with pandas metadata (and ``geo`` metadata for a GeoDataFrame).

    A RangeIndex is left out (``info`` records it); other indexes become columns.

    Examples
    --------
    >>> import pandas as pd
    >>> from memories_geo.formats.parquet.options import write_settings
    >>> frame = pd.DataFrame({"time": pd.to_datetime(["2024-01-01"]), "v": [1.0]})
    >>> to_arrow(frame, describe(frame, write_settings({}, "fast"))).column_names
    ['time', 'v']
    """
    import pyarrow as pa

    keep_index = info["index"]["kind"] != "range"
    if info["geometry"] is not None:
        from geopandas.io.arrow import _geopandas_to_arrow

        from memories_geo.formats.geoparquet.metadata import GEOPARQUET_VERSION

        return _geopandas_to_arrow(frame, index=keep_index, geometry_encoding="WKB",
                                   schema_version=GEOPARQUET_VERSION, write_covering_bbox=True)
    return pa.Table.from_pandas(frame, preserve_index=keep_index)


def restore_dtype(values: pd.Series, dtype: str, categories: Mapping[str, Any] | None = None) -> pd.Series:
    """``values`` back in the pandas ``dtype`` they were saved with (a no-op when it already is).

    Examples
    --------
    >>> import pandas as pd
    >>> restore_dtype(pd.Series(["a", None], dtype="str"), "object").tolist()
    ['a', None]
    """
    import pandas as pd

    if str(values.dtype) == dtype:
        return values
    if dtype == "category":
        spec = categories or {}
        wanted = pd.CategoricalDtype(spec.get("categories"), ordered=bool(spec.get("ordered", False)))
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(values.dtype.categories.dtype)
        return values.astype(wanted)
    if dtype == "object":
        out = values.astype(object)
        return out.where(out.notna(), None)
    return values.astype(pd.api.types.pandas_dtype(dtype))


def _restore_index(frame: pd.DataFrame, index: Mapping[str, Any], filtered: bool) -> pd.DataFrame:
    import pandas as pd

    if index["kind"] == "range":
        n = len(frame)
        if filtered:
            frame.index = pd.RangeIndex(n, name=index["name"])
        else:
            start, step = index["start"], index["step"]
            frame.index = pd.RangeIndex(start, start + step * n, step, name=index["name"])
        return frame
    levels = [frame.index.get_level_values(i) for i in range(frame.index.nlevels)]
    fixed = []
    for level, dtype, name in zip(levels, index["dtypes"], index["names"], strict=True):
        series = restore_dtype(pd.Series(level, copy=False), dtype)
        fixed.append(pd.Index(series, name=name))
    new = fixed[0] if len(fixed) == 1 else pd.MultiIndex.from_arrays(fixed, names=index["names"])
    if index.get("freq") and isinstance(new, pd.DatetimeIndex) and len(new):
        with contextlib.suppress(ValueError):
            new = pd.DatetimeIndex(new, freq=index["freq"])
    frame.index = new
    return frame


def to_frame(table: pa.Table, info: Mapping[str, Any], geo: Mapping[str, Any] | None,
             columns: Sequence[str], *, filtered: bool) -> pd.DataFrame:
    """Rebuild the saved type from ``table`` (rows already in the saved order).

    Parameters
    ----------
    table : pyarrow.Table
        The columns read, index fields included, hidden fields removed, with the
        pandas metadata of the stored files.
    info : mapping
        The version's ``object_info``.
    geo : mapping or None
        The ``geo`` metadata (CRS already parsed) for a GeoDataFrame.
    columns : sequence of str
        The columns to return, in order.
    filtered : bool
        Whether rows were selected (a RangeIndex is then numbered from 0).

    Examples
    --------
    >>> import pandas as pd
    >>> from memories_geo.formats.parquet.options import write_settings
    >>> frame = pd.DataFrame({"time": pd.to_datetime(["2024-01-01"]), "v": [1.0]})
    >>> info = describe(frame, write_settings({}, "fast"))
    >>> to_frame(to_arrow(frame, info), info, None, ["time", "v"], filtered=False).equals(frame)
    True
    """
    import pandas as pd

    if info["geometry"] is not None and geo is not None:
        from geopandas.io.arrow import _arrow_to_geopandas

        frame = _arrow_to_geopandas(table, geo, None, None)
        active = info["geometry"]
    else:
        frame = table.to_pandas()
        active = None
    frame = frame[list(columns)]
    dtypes, categories = info["dtypes"], info["categories"]
    for name in columns:
        if name != active and str(frame[name].dtype) != dtypes[name]:
            frame[name] = restore_dtype(frame[name], dtypes[name], categories.get(name))
    if active is not None and active in frame.columns:
        frame = frame.set_geometry(active)
    frame = _restore_index(frame, info["index"], filtered)
    frame.columns = pd.Index(list(columns), dtype=info["columns_dtype"], name=info["columns_name"])
    frame.attrs = dict(info["attrs"])
    return frame
