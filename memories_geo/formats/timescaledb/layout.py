"""A time series as a stored table: its time column, station columns and compression order.

The frame becomes loadable columns through the ``postgis`` format's
:class:`~memories_geo.formats.postgis.layout.Prepared` (same types, nanosecond
companions, geometries as EWKB); this module finds, and records in ``info``, which
stored column is the time axis (a datetime column or the DatetimeIndex), which columns
identify a station (``segmentby``), and the compression order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from memories_geo.errors import OptionError, UnsupportedObjectError
from memories_geo.formats.postgis.layout import Prepared, index_fields
from memories_geo.kinds import time_column
from memories_geo.query import iso_utc

if TYPE_CHECKING:
    import pandas as pd

    from memories_geo.formats.timescaledb.options import Settings

__all__ = [
    "STATION_NAMES",
    "Series",
    "entry_named",
    "frame_of",
    "key_frame",
    "resolve",
    "time_bounds",
    "time_field",
    "utc_bounds",
]

#: Column names read as the station column when ``segmentby`` is not given, in this order.
STATION_NAMES: tuple[str, ...] = ("station", "station_id", "id", "site", "sensor")


@dataclass(frozen=True)
class Series:
    """A frame resolved for storage.

    Attributes
    ----------
    frame : pandas.DataFrame or geopandas.GeoDataFrame
        The rows to load.
    base : dict
        Type of the object (``DataFrame`` or ``GeoDataFrame``) and its geometry name.
    time_label : str
        The time axis as the caller names it (a column, or the index's name).
    time : str
        Name of the stored field holding the time (the index field for a DatetimeIndex).
    settings : Settings
        The save settings, with ``segmentby``, ``orderby`` and ``time_column`` resolved.
    """

    frame: Any
    base: dict[str, Any]
    time_label: str
    time: str
    settings: Settings

    @property
    def on_index(self) -> bool:
        """Whether the time axis is the frame's DatetimeIndex."""
        return self.time == _INDEX_FIELD

    @property
    def times(self) -> pd.Series:
        """The time values of the rows (a Series, whatever holds them)."""
        import pandas as pd

        if not self.on_index:
            return self.frame[_label(self.frame, self.time_label)]
        return pd.Series(self.frame.index, index=self.frame.index)

    def prepared(self) -> Prepared:
        """The loadable columns and ``info`` of :attr:`frame` (see ``postgis`` layout)."""
        return Prepared(self.frame, self.base)

    def without(self, drop: np.ndarray) -> Series:
        """The same series without the rows where ``drop`` is true (a RangeIndex stays one)."""
        import pandas as pd

        frame = self.frame[~drop]
        if isinstance(self.frame.index, pd.RangeIndex):
            frame = frame.reset_index(drop=True)
        return replace(self, frame=frame)


_INDEX_FIELD = "\x00index"


def _label(frame: Any, name: str) -> Any:
    return next(c for c in frame.columns if str(c) == name)


def frame_of(obj: Any, crs: Any) -> tuple[Any, dict[str, Any]]:
    """The frame to store and the base of its ``info`` (type, geometry name).

    Raises
    ------
    UnsupportedObjectError
        For anything but a DataFrame or GeoDataFrame, and a GeoDataFrame without CRS.

    Examples
    --------
    >>> import pandas as pd
    >>> frame_of(pd.DataFrame({"time": pd.to_datetime(["2024-01-01"])}), None)[1]
    {'type': 'DataFrame'}
    """
    import geopandas as gpd
    import pandas as pd

    from memories_geo._jsonvalue import encode_mapping
    from memories_geo.formats._vector import as_frame, with_crs

    attrs = {"attrs": encode_mapping(obj.attrs, "the frame's attrs")} if getattr(obj, "attrs", None) else {}
    if isinstance(obj, gpd.GeoDataFrame):
        frame, base = as_frame(obj, "timescaledb")
        return with_crs(frame, crs, kind=base["type"]), {**base, **attrs}
    if isinstance(obj, pd.DataFrame):
        return obj, {"type": "DataFrame", **attrs}
    raise UnsupportedObjectError(
        f"format 'timescaledb' stores DataFrames and GeoDataFrames with a time axis, not {type(obj).__name__}"
    )


def resolve(obj: Any, crs: Any, settings: Settings) -> Series:
    """Find the time axis and station columns of ``obj`` and check the settings against it.

    Raises
    ------
    OptionError
        When ``time_column``, ``segmentby`` or ``orderby`` name columns the frame does
        not have (the message lists those it has).
    UnsupportedObjectError
        For a frame without a time axis, or missing times (a hypertable's time column
        is ``NOT NULL``).

    Examples
    --------
    >>> import pandas as pd
    >>> from memories_geo.formats.timescaledb.options import Settings
    >>> frame = pd.DataFrame({"time": pd.to_datetime(["2024-01-01"]), "station": ["a"], "v": [1.0]})
    >>> resolve(frame, None, Settings()).settings.segmentby
    ('station',)
    """
    import pandas as pd

    frame, base = frame_of(obj, crs)
    if len(set(map(str, frame.columns))) != len(frame.columns):
        raise UnsupportedObjectError("column names must be unique (as strings) to be stored in PostgreSQL")
    datetimes = [str(c) for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c].dtype)]
    index_is_time = isinstance(frame.index, pd.DatetimeIndex)
    index_label = str(frame.index.name) if frame.index.name is not None else "index"
    label = settings.time_column or time_column(frame)
    if label is None:
        raise UnsupportedObjectError(
            "format 'timescaledb' needs a datetime column or a DatetimeIndex; parse the time column "
            "with pandas.to_datetime first"
        )
    if label in datetimes:
        field = label
    elif index_is_time and label == index_label:
        field = _INDEX_FIELD
    else:
        raise OptionError(
            f"time_column={label!r} is neither a datetime column nor the DatetimeIndex; datetime columns: "
            f"{datetimes}" + (f", index: {index_label!r}" if index_is_time else "")
        )
    series = Series(frame, base, str(label), field, settings)
    times = series.times
    if times.isna().any():
        raise UnsupportedObjectError(
            f"the time column {label!r} holds {int(times.isna().sum())} missing time(s) (NaT); a time "
            "series table needs a time on every row: drop or fill them first"
        )
    others = [str(c) for c in frame.columns if str(c) != label and not _is_geometry(frame, c)]
    segmentby = settings.segmentby
    if segmentby is None:
        lower = {c.lower(): c for c in reversed(others)}
        segmentby = next(((lower[n],) for n in STATION_NAMES if n in lower), ())
    bad = [c for c in segmentby if c not in others]
    if bad:
        raise OptionError(f"segmentby names {bad}, which are not columns of this table; columns: {others}")
    orderby = settings.orderby or ((label, True),)
    stored = [*others, label]
    bad = [c for c, _ in orderby if c not in stored or c in segmentby]
    if bad:
        allowed = [c for c in stored if c not in segmentby]
        raise OptionError(
            f"orderby names {bad}; give columns (not geometry, not segmentby {list(segmentby)}) of this "
            f"table, each optionally followed by ' ASC' or ' DESC': {allowed}"
        )
    resolved = replace(settings, segmentby=tuple(segmentby), orderby=tuple(orderby), time_column=str(label))
    return replace(series, settings=resolved)


def _is_geometry(frame: Any, column: Any) -> bool:
    import geopandas as gpd

    return isinstance(frame[column].dtype, gpd.array.GeometryDtype)


def time_field(series: Series, info: Mapping[str, Any]) -> str:
    """Name of the stored field of the time axis (the index field for a DatetimeIndex).

    Examples
    --------
    >>> time_field(series, series.prepared().info)  # doctest: +SKIP
    '__index_level_0__'
    """
    if series.time != _INDEX_FIELD:
        return series.time
    (field,) = sorted(index_fields(info))
    return field


def entry_named(info: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The column entry of the stored field ``name``.

    Examples
    --------
    >>> entry_named({"columns": [{"name": "time", "column": "time", "type": "timestamptz"}]}, "time")["type"]
    'timestamptz'
    """
    return next(e for e in info["columns"] if e["name"] == name)


def key_frame(values: Mapping[str, Sequence[Any]], times: Any) -> pd.MultiIndex:
    """Rows as (station values..., time in UTC nanoseconds) keys, for duplicate detection.

    Examples
    --------
    >>> import pandas as pd
    >>> key_frame({"station": ["a"]}, pd.to_datetime(["1970-01-01T00:00:01"]))[0] == ("a", 10**9)
    True
    """
    import pandas as pd

    stamps = pd.Series(times)
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    nanos = stamps.astype("datetime64[ns]").astype("int64").to_numpy()
    arrays = [np.asarray(pd.Series(v).astype(object)) for v in values.values()]
    return pd.MultiIndex.from_arrays([*arrays, nanos])


def time_bounds(series: Series) -> tuple[str, str] | None:
    """First and last time of the rows, ISO 8601 (with the offset of a time zone-aware axis).

    Examples
    --------
    >>> time_bounds(series)  # doctest: +SKIP
    ('2024-01-01T00:00:00+01:00', '2024-01-06T21:00:00+01:00')
    """
    import pandas as pd

    times = series.times
    if not len(times):
        return None
    return pd.Timestamp(times.min()).isoformat(), pd.Timestamp(times.max()).isoformat()


def utc_bounds(bounds: Sequence[str]) -> tuple[Any, Any]:
    """``(start, end)`` of :func:`time_bounds` as naive UTC timestamps.

    Examples
    --------
    >>> utc_bounds(["2024-01-01T00:00:00+01:00", "2024-01-02T00:00:00"])
    (Timestamp('2023-12-31 23:00:00'), Timestamp('2024-01-02 00:00:00'))
    """
    import pandas as pd

    start, end = (pd.Timestamp(str(iso_utc(b))) for b in bounds)
    return start, end
