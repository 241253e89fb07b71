"""Geometry columns: their type summary, the ``geometry(<type>[Z], <srid>)`` typmod, EWKB encoding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ewkb", "merge_summaries", "summarize", "typmod"]

_WKB_TYPES = {
    0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
    6: "MultiPolygon", 7: "GeometryCollection",
}
_EWKB_SRID_FLAG = 0x20


def summarize(values: np.ndarray) -> dict[str, Any]:
    """Geometry type names and dimensionality (``"all"``, ``"none"`` or ``"mixed"`` Z) of a column.

    ``None`` values are ignored; empty geometries count as 2D.
    """
    import shapely

    ids = shapely.get_type_id(values)  # -1 for None
    counts = np.bincount(ids + 1, minlength=len(_WKB_TYPES) + 2)
    present = ids >= 0
    nonempty = present & ~shapely.is_empty(values)
    n_present, n_nonempty = int(present.sum()), int(nonempty.sum())
    n_z = int((shapely.has_z(values) & nonempty).sum())
    return {
        "types": sorted(_WKB_TYPES[int(i) - 1] for i in np.flatnonzero(counts) if i > 0),
        "z": "all" if n_nonempty and n_z == n_nonempty == n_present else ("none" if not n_z else "mixed"),
    }


def typmod(summary: Mapping[str, Any], srid: int) -> str:
    """Column type of a geometry column: typed when it holds one geometry type and one dimensionality.

    Examples
    --------
    >>> typmod({"types": ["Point"], "z": "all"}, 4979)
    'geometry(PointZ, 4979)'
    >>> typmod({"types": ["Point", "Polygon"], "z": "none"}, 4326)
    'geometry(Geometry, 4326)'
    """
    types = summary["types"]
    base = types[0] if len(types) == 1 else "Geometry"
    if summary["z"] == "mixed":
        return "geometry"
    return f"geometry({base}{'Z' if summary['z'] == 'all' else ''}, {int(srid)})"


def merge_summaries(a: Mapping[str, Any], b: Mapping[str, Any], b_rows: int) -> dict[str, Any]:
    """Summary of a column holding the geometries of ``a`` then ``b_rows`` rows summarised by ``b``."""
    if not b_rows:
        return dict(a)
    z = a["z"] if a["z"] == b["z"] else "mixed"
    if not a["types"]:
        z = b["z"]
    return {"types": sorted(set(a["types"]) | set(b["types"])), "z": z}


def ewkb(values: np.ndarray, srid: int) -> pa.Array:
    """Little-endian EWKB carrying ``srid`` of each geometry (null for ``None``), as PostGIS sends it.

    ISO WKB from shapely gets the SRID flag and the four SRID bytes inserted after its
    type, with numpy over the whole chunk; plain points are laid out directly.
    """
    import pyarrow as pa
    import shapely

    n = len(values)
    if n and (shapely.get_type_id(values) == 0).all() and not shapely.is_empty(values).any():
        has_z = shapely.has_z(values)
        if has_z.all() or not has_z.any():
            return _ewkb_points(values, srid, bool(has_z.all()))
    wkb = pa.array(shapely.to_wkb(values, byte_order=1, flavor="extended"), type=pa.binary())
    valid = np.asarray(wkb.is_valid())
    offsets = np.frombuffer(wkb.buffers()[1], dtype=np.int32)[wkb.offset: wkb.offset + n + 1].astype(np.int64)
    data = np.frombuffer(wkb.buffers()[2], dtype=np.uint8) if n else np.empty(0, np.uint8)
    lengths = np.diff(offsets)
    new_lengths = lengths + 4 * valid
    new_offsets = np.concatenate([[0], np.cumsum(new_lengths)])
    out = np.empty(int(new_offsets[-1]), dtype=np.uint8)
    total = int(offsets[-1] - offsets[0])
    if total:
        starts = np.repeat(offsets[:-1], lengths)
        position = np.arange(offsets[0], offsets[-1]) - starts
        destination = position + np.repeat(new_offsets[:-1], lengths) + 4 * (position >= 5)
        out[destination] = data[offsets[0]: offsets[-1]]
        heads = new_offsets[:-1][valid]
        out[heads[:, None] + 5 + np.arange(4)] = np.frombuffer(np.uint32(srid).tobytes(), np.uint8)
        out[heads + 4] |= _EWKB_SRID_FLAG
    validity = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes()) if not valid.all() else None
    return pa.Array.from_buffers(
        pa.binary(), n, [validity, pa.py_buffer(new_offsets.astype(np.int32).tobytes()), pa.py_buffer(out)]
    )


def _ewkb_points(values: np.ndarray, srid: int, has_z: bool) -> pa.Array:
    import pyarrow as pa
    import shapely

    coords = shapely.get_coordinates(values, include_z=has_z)
    axes = ["x", "y", "z"] if has_z else ["x", "y"]
    dtype = np.dtype([("order", "u1"), ("type", "<u4"), ("srid", "<u4")] + [(a, "<f8") for a in axes])
    records = np.empty(len(values), dtype=dtype)
    records["order"] = 1
    records["type"] = 0x20000001 | (0x80000000 if has_z else 0)
    records["srid"] = srid
    for i, axis in enumerate(axes):
        records[axis] = coords[:, i]
    width = dtype.itemsize
    offsets = np.arange(0, width * (len(values) + 1), width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.binary(), len(values), [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(records.tobytes())]
    )
