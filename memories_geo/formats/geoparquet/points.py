"""Point layers as Arrow tables with GeoArrow point geometries, without walking the geometries twice.

:func:`geopandas.io.arrow._geopandas_to_arrow` checks each geometry's type and
dimensions three times (GeoArrow encoding, ``geometry_types`` metadata, the choice of
encoding made before it) and computes the bounds once more for the ``bbox`` metadata.
For a layer whose geometries are all present, non-empty points (all 2D or all 3D), one
pass over the types and one read of the coordinates give everything: the ``x``/``y``
(``z``) columns, the geometry types and the bbox. The table is the one geopandas
builds, schema metadata included (``tests/test_geoparquet_upload.py`` compares them).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from memories_geo.formats.geoparquet.metadata import GEOPARQUET_VERSION

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["point_table"]


def point_table(gdf: gpd.GeoDataFrame) -> Any:
    """``gdf`` as an Arrow table with GeoArrow (separated) points, or ``None`` if it is not such a layer.

    Parameters
    ----------
    gdf : geopandas.GeoDataFrame
        A layer with one geometry column.

    Returns
    -------
    pyarrow.Table or None
        What ``_geopandas_to_arrow(gdf, geometry_encoding="geoarrow",
        schema_version="1.1.0")`` returns; ``None`` when the layer has several
        geometry columns, no rows, or a geometry that is missing, empty, not a point,
        with a NaN coordinate, or of other dimensions than the rest.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> gdf = gpd.GeoDataFrame({"v": [1]}, geometry=[Point(0, 1)], crs="EPSG:4326")
    >>> point_table(gdf).column("geometry").type
    StructType(struct<x: double not null, y: double not null>)
    """
    import geopandas
    import pandas as pd
    import pyarrow as pa
    import shapely
    from geopandas.io.arrow import _remove_id_from_member_of_ensembles, _validate_dataframe

    column = gdf.geometry.name
    geometry_columns = list(gdf.columns[gdf.dtypes == "geometry"])
    if geometry_columns != [column] or len(gdf) == 0:
        return None
    data = np.asarray(gdf.geometry.array, dtype=object)
    if not (shapely.get_type_id(data) == 0).all():
        return None
    has_z = shapely.has_z(data)
    z = bool(has_z[0])
    if not (has_z == z).all():
        return None
    coords = shapely.get_coordinates(data, include_z=z)
    if len(coords) != len(data):
        return None
    columns = [np.ascontiguousarray(coords[:, i]) for i in range(coords.shape[1])]
    # min and max are NaN or infinite when any value is: a finite bbox means finite points
    x, y = columns[0], columns[1]
    bbox = [float(x.min()), float(y.min()), float(x.max()), float(y.max())]
    if not np.isfinite(bbox).all():
        return None
    _validate_dataframe(gdf)
    attributes = pd.DataFrame(gdf.copy(deep=False))
    attributes[column] = None
    table = pa.Table.from_pandas(attributes, preserve_index=None)

    names = ("x", "y", "z") if z else ("x", "y")
    points = pa.StructArray.from_arrays(
        columns,
        fields=[pa.field(name, pa.float64(), nullable=False) for name in names],
    )
    crs = gdf.crs.to_json_dict() if gdf.crs is not None else None
    extension = {"ARROW:extension:metadata": json.dumps({"crs": crs}) if crs is not None else "{}",
                 "ARROW:extension:name": "geoarrow.point"}
    field = pa.field(column, points.type, nullable=True, metadata=extension)
    table = table.set_column(list(gdf.columns).index(column), field, points)

    if crs is not None:
        _remove_id_from_member_of_ensembles(crs)
    entry: dict[str, Any] = {"encoding": "point", "crs": crs, "geometry_types": ["Point Z" if z else "Point"]}
    entry["bbox"] = bbox
    geo = {"primary_column": column, "columns": {column: entry}, "version": GEOPARQUET_VERSION,
           "creator": {"library": "geopandas", "version": geopandas.__version__}}
    metadata = dict(table.schema.metadata or {})
    metadata[b"geo"] = json.dumps(geo).encode("utf-8")
    if gdf.attrs:
        metadata["PANDAS_ATTRS"] = json.dumps(gdf.attrs)
    return table.replace_schema_metadata(metadata)
