"""What the vector formats share: frames and back, CRS assignment, the open contract's checks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np

from memories_geo.errors import OptionError, UnsupportedObjectError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from memories_geo.query import OpenRequest

__all__ = [
    "PlainTable",
    "as_frame",
    "check_series_request",
    "invalid_geometries",
    "no_time_column",
    "plain_table",
    "raise_for_invalid",
    "refuse_json_changed_columns",
    "refuse_other_geometries",
    "series_name",
    "time_mask",
    "with_crs",
]

#: Invalid geometries listed at most in an error message.
_MAX_REPORTED = 20


def as_frame(obj: Any, format_name: str) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """Frame to write, and the ``object_info`` that rebuilds ``obj``'s type on open.

    Raises
    ------
    UnsupportedObjectError
        For objects other than GeoDataFrame/GeoSeries, a GeoDataFrame without an
        active geometry, or a GeoSeries name that JSON cannot record.
    """
    if isinstance(obj, gpd.GeoSeries):
        name = obj.name.item() if hasattr(obj.name, "item") else obj.name
        if isinstance(name, tuple):
            name = {"tuple": list(name)}
        if not _json_safe(name):
            raise UnsupportedObjectError(
                f"cannot record the GeoSeries name {obj.name!r}; rename it to a string "
                "first (gs.rename('geometry'))"
            )
        return obj.to_frame(name="geometry"), {"type": "GeoSeries", "name": name}
    if isinstance(obj, gpd.GeoDataFrame):
        try:
            geometry_name = obj.geometry.name
        except AttributeError as exc:
            raise UnsupportedObjectError(
                "this GeoDataFrame has no active geometry column; set one with "
                "gdf.set_geometry('column_name')"
            ) from exc
        return obj, {"type": "GeoDataFrame", "geometry": str(geometry_name)}
    raise UnsupportedObjectError(
        f"format {format_name!r} stores GeoDataFrame and GeoSeries objects, not {type(obj).__name__}"
    )


def _json_safe(value: Any) -> bool:
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False


def series_name(stored: Any) -> Any:
    """The GeoSeries name recorded by :func:`as_frame` (tuples come back as tuples)."""
    if isinstance(stored, dict) and "tuple" in stored:
        return tuple(stored["tuple"])
    return stored


def with_crs(gdf: gpd.GeoDataFrame, crs: Any, *, kind: str) -> gpd.GeoDataFrame:
    """``gdf`` with ``crs`` assigned when it has none; never modifies ``gdf`` itself."""
    import pyproj

    var = "gs" if kind == "GeoSeries" else "gdf"
    if crs is None:
        if gdf.crs is None:
            raise UnsupportedObjectError(
                f"this {kind} has no CRS. Pass crs= to save() (e.g. crs='EPSG:4326'), "
                f"or set it with {var}.set_crs(...) first (gdf.set_crs('EPSG:4326') "
                "for longitude/latitude)."
            )
        return gdf
    wanted = pyproj.CRS.from_user_input(crs)
    if gdf.crs is None:
        out = gdf.copy(deep=False)
        out[gdf.geometry.name] = gdf.geometry.set_crs(wanted)
        return out
    if not gdf.crs.equals(wanted, ignore_axis_order=True):
        raise UnsupportedObjectError(
            f"crs={crs!r} conflicts with the {kind}'s own CRS {gdf.crs.to_string()!r}; "
            f"crs= only assigns a CRS to data that has none. To store it in {crs!r}, "
            f"reproject first with {var}.to_crs({crs!r})."
        )
    return gdf


def check_series_request(object_info: Mapping[str, Any], request: OpenRequest) -> bool:
    """Whether the stored object is a GeoSeries; ``columns=`` on one is an :class:`OptionError`."""
    is_series = object_info.get("type") == "GeoSeries"
    if is_series and request.columns is not None:
        raise OptionError(
            "columns= does not apply to a stored GeoSeries (it has one column, its geometry); "
            "open it without columns="
        )
    return is_series


def no_time_column(columns: Iterable[str]) -> OptionError:
    """The error for ``time=`` on a layer without a datetime column (to raise)."""
    return OptionError(
        "time= selects rows on the layer's first datetime column, and this layer has none "
        f"(columns: {list(columns)}); open it without time="
    )


def time_mask(values: pd.Series, time: tuple[pd.Timestamp | None, pd.Timestamp | None]) -> np.ndarray:
    """Rows of ``values`` (datetimes) inside the inclusive naive-UTC ``time`` bounds.

    Time-zone-aware values compare in UTC; missing values never match.
    """
    import pandas as pd

    column = values
    if not pd.api.types.is_datetime64_any_dtype(column.dtype):
        column = pd.to_datetime(column, errors="coerce", utc=True)
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    start, end = time
    mask = column.notna()
    if start is not None:
        mask &= column >= start
    if end is not None:
        mask &= column <= end
    return mask.to_numpy(dtype=bool)


# -- a frame as Arrow, without its geometries ---------------------------------------------


@dataclass(frozen=True)
class PlainTable:
    """A frame as an Arrow table whose geometry columns are placeholders (made by :func:`plain_table`).

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        The frame converted.
    table : pyarrow.Table
        Its columns (index levels as pandas records them), geometries as null objects.
    fields : list of pyarrow.Field
        The table's fields, geometry fields typed as binary.
    schema : pyarrow.Schema
        ``fields`` with the table's metadata: the schema the frame is saved with.
    geometry_fields : frozenset of int
        Positions of the geometry columns in ``fields``.
    """

    frame: gpd.GeoDataFrame
    table: pa.Table
    fields: list[pa.Field]
    schema: pa.Schema
    geometry_fields: frozenset[int]

    def geometry(self, name: str) -> tuple[gpd.GeoSeries, np.ndarray]:
        """The geometry column named ``name`` (as a string) and its shapely geometries.

        Raises
        ------
        UnsupportedObjectError
            When the column has no CRS.
        """
        series = self.frame[next(
            c for c in self.frame.columns
            if str(c) == name and isinstance(self.frame[c].dtype, gpd.array.GeometryDtype)
        )]
        if series.crs is None:
            raise UnsupportedObjectError(f"geometry column {name!r} has no CRS; set one first")
        return series, np.asarray(series.values._data)


def plain_table(
    frame: gpd.GeoDataFrame, format_name: str, *, store: str, keep_attrs: bool = False
) -> PlainTable:
    """``frame`` as Arrow without its geometries, for the formats that store them apart.

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        The layer.
    format_name : str
        The format writing it (named in errors).
    store : str
        What it is stored in (named in errors: ``"PostGIS"``, ``"SQLite"``).
    keep_attrs : bool, default False
        Whether ``frame.attrs`` goes into the schema's pandas metadata.

    Raises
    ------
    UnsupportedObjectError
        For column names that are not unique as strings, or a column Arrow cannot convert.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> gdf = gpd.GeoDataFrame({"v": [1]}, geometry=[Point(0, 0)], crs="EPSG:4326")
    >>> plain = plain_table(gdf, "postgis", store="PostGIS")
    >>> [str(f.type) for f in plain.fields], sorted(plain.geometry_fields)
    (['int64', 'binary'], [1])
    """
    import pandas as pd
    import pyarrow as pa

    geometry_names = [c for c in frame.columns if isinstance(frame[c].dtype, gpd.array.GeometryDtype)]
    if len(set(map(str, frame.columns))) != len(frame.columns):
        raise UnsupportedObjectError(f"column names must be unique (as strings) to be stored in {store}")
    plain = pd.DataFrame(
        {c: (pd.Series([None] * len(frame), index=frame.index, dtype=object)
             if c in geometry_names else frame[c]) for c in frame.columns},
        index=frame.index,
    )
    plain.columns = frame.columns
    if keep_attrs:
        plain.attrs = dict(frame.attrs)
    try:
        table = pa.Table.from_pandas(plain, preserve_index=None)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise UnsupportedObjectError(f"format {format_name!r} cannot convert this layer: {exc}") from exc
    geometry_fields = frozenset(table.schema.get_field_index(str(c)) for c in geometry_names)
    fields = list(table.schema)
    for i in geometry_fields:
        fields[i] = pa.field(fields[i].name, pa.binary())
    schema = pa.schema(fields, metadata=table.schema.metadata)
    return PlainTable(frame, table, fields, schema, geometry_fields)


# -- checks a format runs before writing -------------------------------------------------


def invalid_geometries(geometry: gpd.GeoSeries) -> dict[Any, str]:
    """Row label -> shapely's ``is_valid_reason`` for every invalid geometry.

    Missing and empty geometries are valid.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Polygon
    >>> bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    >>> invalid_geometries(gpd.GeoSeries([bowtie], index=["b"]))
    {'b': 'Self-intersection[0.5 0.5]'}
    """
    import shapely

    data = np.asarray(geometry.values, dtype=object)
    bad = ~shapely.is_valid(data) & ~shapely.is_missing(data)
    return {
        label: str(reason)
        for label, reason in zip(geometry.index[bad], shapely.is_valid_reason(data[bad]), strict=True)
    }


def refuse_other_geometries(frame: gpd.GeoDataFrame) -> None:
    """Refuse geometry columns besides the active one (GeoJSON holds one per feature).

    Raises
    ------
    UnsupportedObjectError
        Naming the further geometry columns and how to keep them (as WKT).
    """
    others = [
        c for c in frame.columns
        if c != frame.geometry.name and isinstance(frame[c].dtype, gpd.array.GeometryDtype)
    ]
    if others:
        raise UnsupportedObjectError(
            f"GeoJSON holds one geometry per feature; {others} are further geometry columns. "
            f"Drop them, or store them as text first (gdf[{others[0]!r}] = gdf[{others[0]!r}].to_wkt())"
        )


#: ``pandas.api.types.infer_dtype`` results of object columns GeoJSON keeps (dicts or lists
#: alone are kept too); numbers and booleans in an object column would come back as strings.
_JSON_KEPT_KINDS = frozenset({"string", "empty", "date", "datetime", "datetime64", "time"})
_JSON_NUMERIC_KINDS = frozenset({"integer", "floating", "mixed-integer-float", "decimal", "boolean"})


def refuse_json_changed_columns(stored: gpd.GeoDataFrame, layout: Mapping[str, Any]) -> None:
    """Refuse object columns whose values do not come back as they were.

    An object column is written as strings, dates, or JSON objects or arrays (dicts
    or lists, each column one of them). Mixed types would come back converted (``3``
    next to ``"x"`` reads as ``"3"``), numbers and booleans as strings, and bytes or
    other Python objects as their ``repr``; numeric and boolean dtypes are kept.

    Raises
    ------
    UnsupportedObjectError
        Naming the column (or index level), its dtype, the types of values found and
        the fix.
    """
    import pandas as pd

    index = layout["index"]
    index_names = dict(zip(index.get("columns", []), index.get("names", []), strict=False))
    for name in stored.columns:
        if name == "geometry" or stored[name].dtype != object:
            continue
        values = stored[name].to_numpy()
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind in _JSON_KEPT_KINDS:
            continue
        present = values[~pd.isnull(values)]
        types = sorted({type(v).__name__ for v in present})
        if kind == "mixed" and (types == ["dict"] or set(types) <= {"list", "ndarray"}):
            continue
        what = f"index level {index_names[name]!r}" if name in index_names else f"column {name!r}"
        found = (f"mixes values of types {', '.join(types)}" if len(types) > 1
                 else f"holds values of type {types[0]}")
        fix = ("give it a numeric or boolean dtype first (.astype('Int64'), 'Float64' or 'boolean')"
               if kind in _JSON_NUMERIC_KINDS else
               "convert it to one type first (e.g. .astype(str)), or save with format='geoparquet'")
        raise UnsupportedObjectError(
            f"{what} (dtype object) {found}, which GeoJSON would give back changed: an object "
            f"column keeps strings, dates, or dicts or lists (one of them per column); {fix}"
        )


def raise_for_invalid(geometry: gpd.GeoSeries) -> None:
    """Refuse invalid geometries, listing up to 20 by row label with shapely's reason.

    Raises
    ------
    UnsupportedObjectError
        When any geometry of ``geometry`` is invalid.
    """
    found = invalid_geometries(geometry)
    if not found:
        return
    lines = [f"  row {label!r}: {reason}" for label, reason in list(found.items())[:_MAX_REPORTED]]
    if len(found) > _MAX_REPORTED:
        lines.append(f"  ... and {len(found) - _MAX_REPORTED} more")
    raise UnsupportedObjectError(
        f"{len(found)} invalid geometr{'y' if len(found) == 1 else 'ies'} (validate=True):\n"
        + "\n".join(lines)
        + "\nRepair them with gdf.make_valid(), or save with validate=False to store them as they are."
    )
