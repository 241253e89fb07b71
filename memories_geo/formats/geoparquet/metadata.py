"""What a GeoParquet file says about itself: ``geo`` metadata, the memories_geo layout, its CRS."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from memories_geo.errors import FormatError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = [
    "COVERING_COLUMN",
    "GEOPARQUET_VERSION",
    "LAYOUT_KEY",
    "covering_column",
    "crs_from_projjson",
    "geo_metadata",
    "layer_crs",
    "layout_metadata",
    "with_parsed_crs",
]

#: GeoParquet specification version written.
GEOPARQUET_VERSION = "1.1.0"

#: Name of the covering column, as geopandas writes it.
COVERING_COLUMN = "bbox"

#: Parquet key-value metadata key describing the memories_geo layout of a file.
LAYOUT_KEY = b"memories_geo"

#: CRS of a geometry column whose ``geo`` metadata has no ``crs`` member (the specification's default).
_DEFAULT_CRS = "OGC:CRS84"


def geo_metadata(path: str, *, filesystem: AbstractFileSystem | None = None) -> dict[str, Any]:
    """Read the decoded ``geo`` metadata of a GeoParquet file.

    Raises
    ------
    FormatError
        If the file has no ``geo`` metadata (a plain Parquet file).
    """
    metadata = pq.read_metadata(path, filesystem=filesystem).metadata or {}
    if b"geo" not in metadata:
        raise FormatError(f"{path} is a Parquet file without GeoParquet 'geo' metadata")
    return json.loads(metadata[b"geo"])


def covering_column(geo: Mapping[str, Any]) -> str | None:
    """Name of the bbox covering column declared in ``geo`` metadata, if any."""
    column = geo.get("columns", {}).get(geo.get("primary_column"), {})
    bbox = column.get("covering", {}).get("bbox")
    return bbox["xmin"][0] if bbox else None


def layout_metadata(path: str, *, filesystem: AbstractFileSystem | None = None) -> dict[str, Any]:
    """The memories_geo layout recorded in a file (empty for a plain GeoParquet file).

    Returns
    -------
    dict
        ``{"version": 1, "sort": "hilbert" | "none", "row_order": column}``;
        ``row_order`` is absent when the original order was not kept.
    """
    metadata = pq.read_metadata(path, filesystem=filesystem).metadata or {}
    return json.loads(metadata[LAYOUT_KEY]) if LAYOUT_KEY in metadata else {}


def layer_crs(geo: Mapping[str, Any]) -> Any:
    """:class:`pyproj.CRS` of the primary geometry column (``None`` when declared unknown)."""
    column = geo.get("columns", {}).get(geo.get("primary_column"), {})
    if "crs" not in column:
        return _crs_from_text(_DEFAULT_CRS)
    crs = column["crs"]
    if crs is None:
        return None
    if isinstance(crs, dict):
        return crs_from_projjson(json.dumps(crs, sort_keys=True))
    return _crs_from_text(str(crs))


def with_parsed_crs(geo: Mapping[str, Any]) -> dict[str, Any]:
    """``geo`` metadata whose PROJJSON CRSs are already :class:`pyproj.CRS` objects (parsed once per process).

    Parsing PROJJSON takes tens of milliseconds, as long as a whole small ``bbox=`` read.
    """
    columns = {}
    for name, column in geo.get("columns", {}).items():
        crs = column.get("crs")
        if isinstance(crs, dict):
            column = {**column, "crs": crs_from_projjson(json.dumps(crs, sort_keys=True))}
        columns[name] = column
    return {**geo, "columns": columns}


@functools.lru_cache(maxsize=64)
def crs_from_projjson(text: str) -> Any:
    """:class:`pyproj.CRS` from PROJJSON text (sorted keys), cached per process."""
    import pyproj
    from geopandas.io.arrow import _remove_id_from_member_of_ensembles

    projjson = json.loads(text)
    _remove_id_from_member_of_ensembles(projjson)
    return pyproj.CRS.from_user_input(projjson)


@functools.lru_cache(maxsize=16)
def _crs_from_text(text: str) -> Any:
    import pyproj

    return pyproj.CRS.from_user_input(text)
