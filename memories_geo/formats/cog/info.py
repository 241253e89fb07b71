"""``object_info``: what a GeoTIFF cannot say exactly, recorded so ``open`` restores it.

Dimension and coordinate names, coordinate values and attributes, the ``spatial_ref``
grid mapping as rioxarray wrote it, attributes and encodings with their numpy types,
and the DataArray name are JSON-encoded with :mod:`memories_geo._jsonvalue`. ``x`` and
``y`` are recorded only when the pixel centres computed from the geotransform do not
reproduce them bit for bit.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memories_geo._jsonvalue import decode_mapping, decode_value, encode_mapping, encode_value
from memories_geo.errors import UnsupportedObjectError

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr
    from affine import Affine

    from memories_geo.backends.base import Location

__all__ = [
    "INFO_VERSION",
    "decode_coords",
    "encode_attrs",
    "encode_coords",
    "encode_encoding",
    "file_paths",
    "generated_coords",
    "recorded_values",
]

#: Layout version of ``object_info``.
INFO_VERSION = 1

#: Said after the codec's message when a value cannot be recorded.
_HINT = "Or save this object with format='zarr'."

#: Encoding entries describing the layout of the object's source, not its meaning.
_LAYOUT_ENCODINGS = frozenset(
    {
        "source", "preferred_chunks", "chunks", "chunksizes", "compressor", "compressors",
        "filters", "serializer", "shards", "zlib", "complevel", "shuffle", "fletcher32",
        "contiguous", "original_shape", "blosc_shuffle", "szip_coding", "szip_pixels_per_block",
    }
)


def encode_attrs(mapping: Mapping[Any, Any], what: str) -> dict[str, Any]:
    """JSON form of an attribute mapping, every value keeping its type.

    Raises
    ------
    UnsupportedObjectError
        For a key that is not a string or a value the codec cannot record.
    """
    for key in mapping:
        if not isinstance(key, str):
            raise UnsupportedObjectError(f"{what} must have string keys to be stored, got {key!r}")
    return encode_mapping(mapping, what, hint=_HINT)


def encode_encoding(encoding: Mapping[Any, Any]) -> dict[str, Any]:
    """Encoding entries that carry meaning (CF units, fill values...), JSON-encoded."""
    kept = {}
    for key, value in encoding.items():
        if key in _LAYOUT_ENCODINGS or not isinstance(key, str):
            continue
        with contextlib.suppress(UnsupportedObjectError):
            kept[key] = encode_value(value, f"encoding {key!r}")
    return kept


def _array_to_json(values: Any, where: str) -> dict[str, Any]:
    import numpy as np

    return encode_value(np.asarray(values), where, hint=_HINT)["ndarray"]


def _array_from_json(encoded: Mapping[str, Any]) -> np.ndarray:
    return decode_value({"ndarray": encoded})


def encode_coords(da: xr.DataArray, x_dim: Any, y_dim: Any, explicit: set[str]) -> dict[str, Any]:
    """Every coordinate of ``da``; ``x``/``y`` values only when named in ``explicit``.

    Raises
    ------
    UnsupportedObjectError
        For a coordinate name that is not a string, a 2-D coordinate spanning both
        spatial dims, or values the codec cannot record.
    """
    coords: dict[str, Any] = {}
    for name, coord in da.coords.items():
        if not isinstance(name, str):
            raise UnsupportedObjectError(f"coordinate names must be strings to be stored, got {name!r}")
        var = coord.variable
        entry: dict[str, Any] = {
            "dims": [str(d) for d in var.dims],
            "attrs": encode_attrs(var.attrs, f"attributes of coordinate {name!r}"),
            "encoding": encode_encoding(var.encoding),
        }
        if name in (x_dim, y_dim) and var.dims == (name,):
            if name in explicit:
                entry["data"] = _array_to_json(var.values, f"coordinate {name!r}")
            else:
                entry["from_transform"] = True
        elif x_dim in var.dims and y_dim in var.dims:
            raise UnsupportedObjectError(
                f"coordinate {name!r} spans both spatial dims {var.dims}; a COG cannot hold 2-D "
                "coordinates. Drop it (obj.drop_vars(...)) or save with format='zarr'"
            )
        else:
            entry["data"] = _array_to_json(var.values, f"coordinate {name!r}")
        coords[name] = entry
    return coords


def decode_coords(
    info: Mapping[str, Any], transform: Affine, shape: tuple[int, int], overview: bool
) -> dict[str, Any]:
    """The coordinates recorded by :func:`encode_coords`, as ``xarray.Variable`` objects.

    Parameters
    ----------
    info : mapping
        The stored ``object_info``.
    transform : Affine
        Geotransform of the grid read (the full image or one overview).
    shape : (int, int)
        Rows and columns of that grid.
    overview : bool
        Whether the grid is an overview: ``x``/``y`` then come from ``transform``
        and other coordinates along x or y are dropped.
    """
    import xarray as xr

    x_dim, y_dim = info["x_dim"], info["y_dim"]
    gx, gy = generated_coords(transform, shape[1], shape[0])
    coords: dict[str, Any] = {}
    for name, entry in info.get("coords", {}).items():
        dims = tuple(entry["dims"])
        if name in (x_dim, y_dim) and dims == (name,) and (overview or entry.get("from_transform")):
            values: Any = gx if name == x_dim else gy
        elif overview and (x_dim in dims or y_dim in dims):
            continue
        else:
            values = _array_from_json(entry["data"])
        coords[name] = xr.Variable(
            dims, values, attrs=decode_mapping(entry.get("attrs", {})),
            encoding=decode_mapping(entry.get("encoding", {})),
        )
    return coords


def recorded_values(info: Mapping[str, Any], name: Any) -> np.ndarray | None:
    """Values of the 1-D coordinate ``name`` along its own dim, when recorded (else ``None``)."""
    entry = info.get("coords", {}).get(name) if name is not None else None
    if entry is None or entry["dims"] != [name] or "data" not in entry:
        return None
    return _array_from_json(entry["data"])


def generated_coords(transform: Affine, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of a north-up transform, computed as rioxarray does."""
    import numpy as np

    centre = transform @ transform.translation(0.5, 0.5)
    x, _ = centre @ (np.arange(width), np.zeros(width))  # type: ignore[operator]
    _, y = centre @ (np.zeros(height), np.arange(height))  # type: ignore[operator]
    return np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")


def file_paths(location: Location, info: Mapping[str, Any]) -> list[str]:
    """Full paths of the stored files: the version itself, or one per step of a stack."""
    root = location.full_path
    if info["layout"] == "file":
        return [root]
    return [posixpath.join(root, name) for name in info["files"]]
