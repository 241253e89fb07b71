"""CF attributes and GeoZarr metadata: make a Dataset storable by ``to_zarr``, and undo it on open.

What plain ``to_zarr`` cannot round-trip is made reversible and recorded in
``object_info`` (and in the group attribute :data:`INFO_ATTR`):

- attributes the CF coders would interpret on read or refuse on write
  (``_FillValue``, ``scale_factor``, ``add_offset``... in ``attrs``, as rioxarray
  leaves them with ``mask_and_scale=False``) are taken out of the stored attributes
  and put back, with their numpy type, on open;
- CF references kept in ``encoding`` (``grid_mapping``, ``bounds``) go back to
  ``encoding`` instead of appearing in ``attrs``;
- non-index coordinates (the ``spatial_ref`` grid mapping) stay coordinates;
- dtypes xarray does not read back as written (datetimes at a resolution other than
  nanoseconds, object strings, which come back as numpy ``StringDType``) are cast back,
  and missing values of object strings, which Zarr cannot mark, are stored as
  :data:`MISSING_STRING` and read back as ``None`` (or ``NaN``).

What other readers see stays standard: data variables list their coordinates in the
CF ``coordinates`` attribute, a nodata value kept in ``attrs`` becomes the Zarr
``fill_value`` (GDAL's nodata), and the group carries GeoZarr-style ``proj:`` /
``spatial:`` attributes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memories_geo._jsonvalue import decode_mapping, encode_mapping
from memories_geo.crs import explicit_crs
from memories_geo.errors import UnsupportedObjectError
from memories_geo.kinds import spatial_dims

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "DATAARRAY_VARIABLE",
    "INFO_ATTR",
    "INFO_VERSION",
    "MISSING_STRING",
    "check_object_dtypes",
    "geo_attrs",
    "prepare",
    "restore",
    "to_dataset",
]

#: Variable name of an unnamed DataArray, as xarray's own ``DataArray.to_zarr`` uses.
DATAARRAY_VARIABLE = "__xarray_dataarray_variable__"

#: Group attribute holding what ``open`` needs to undo (stripped on open).
INFO_ATTR = "_memories_geo"

#: Layout version of ``object_info`` / :data:`INFO_ATTR`.
INFO_VERSION = 1

#: What a missing value of an object string variable is stored as (Zarr strings have
#: no fill value); a variable holding this string is refused.
MISSING_STRING = "\u241fmissing\u241f"
_MISSING_BYTES = MISSING_STRING.encode()

#: Attributes the CF decoder acts on (or the encoder refuses to overwrite).
_CF_CODER_ATTRS = frozenset(
    {"_FillValue", "missing_value", "scale_factor", "add_offset", "_Unsigned", "dtype", "coordinates"}
)
#: Encoding entries xarray writes as attributes and reads back as attributes.
CF_REFERENCE_ENCODINGS = (
    "grid_mapping",
    "bounds",
    "climatology",
    "cell_measures",
    "formula_terms",
    "geometry",
)
#: Encoding entries describing a previous store's layout, replaced on every write.
_LAYOUT_ENCODINGS = frozenset(
    {"compressor", "compressors", "filters", "serializer", "fill_value", "preferred_chunks"}
)
_NODATA_BLOCKERS = ("_FillValue", "missing_value", "scale_factor", "add_offset")


def to_dataset(obj: Any, variable: str | None = None) -> tuple[xr.Dataset, dict[str, Any]]:
    """The Dataset to store for ``obj`` and the start of its ``object_info``.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        What is saved.
    variable : str, optional
        Stored variable name of a DataArray (an append reuses the stored one).

    Raises
    ------
    UnsupportedObjectError
        For a DataArray whose name is not a string.
    """
    import xarray as xr

    if isinstance(obj, xr.Dataset):
        return obj, {"version": INFO_VERSION, "type": "Dataset"}
    name = obj.name
    if name is not None and not isinstance(name, str):
        raise UnsupportedObjectError(
            f"DataArray names must be strings to be stored in Zarr, got {name!r}; "
            "rename it with da.rename('name')"
        )
    if variable is None:
        variable = name if name is not None and name not in obj.coords else DATAARRAY_VARIABLE
    ds = obj.to_dataset(name=variable, promote_attrs=False)
    return ds, {"version": INFO_VERSION, "type": "DataArray", "name": name, "variable": variable}


def prepare(ds: xr.Dataset) -> tuple[xr.Dataset, dict[str, Any]]:
    """A shallow copy of ``ds`` that ``to_zarr`` stores faithfully, and how to undo it.

    A ``_FillValue`` found in ``attrs`` (rioxarray's nodata) also becomes the Zarr
    array's ``fill_value``, which GDAL reports as nodata; the CF attribute itself is
    not written, so plain xarray readers get the raw values.

    Returns
    -------
    tuple
        ``(dataset, node_info)``; ``node_info`` (JSON) is what :func:`restore` needs.

    Raises
    ------
    UnsupportedObjectError
        For an object-dtype variable whose values Zarr cannot hold in one array
        (see :func:`check_object_dtypes`).
    """
    check_object_dtypes(ds)
    ds, nulls = _fill_missing_strings(ds.copy(deep=False))
    dtypes = {str(n): v.dtype.str for n, v in ds.variables.items() if v.dtype.kind in "OMm"}
    moved: dict[str, dict[str, Any]] = {}
    from_encoding: dict[str, list[str]] = {}
    non_index = [str(c) for c in ds.coords if c not in ds.dims]
    for name, var in ds.variables.items():
        attrs = dict(var.attrs)
        take = {k: attrs.pop(k) for k in list(attrs) if _cf_coder_would_touch(k, attrs[k], var.dtype)}
        encoding = {k: v for k, v in var.encoding.items() if k not in _LAYOUT_ENCODINGS}
        if take:
            moved[str(name)] = encode_mapping(take, f"variable {str(name)!r}")
            if _exposable_nodata(take.get("_FillValue"), var.dtype, encoding):
                encoding["fill_value"] = take["_FillValue"]
        if var.chunks is not None:
            encoding.pop("chunks", None)
            encoding.pop("shards", None)
        if var.dtype.kind in "fc":
            encoding.setdefault("_FillValue", None)
        references = [k for k in CF_REFERENCE_ENCODINGS if k in encoding and k not in attrs]
        if references:
            from_encoding[str(name)] = references
        if name in ds.data_vars and "coordinates" not in encoding:
            listed = [c for c in non_index if set(ds[c].dims) <= set(var.dims) and " " not in c]
            if listed:
                encoding["coordinates"] = " ".join(sorted(listed))
        var.attrs = attrs
        var.encoding = encoding
    info: dict[str, Any] = {"coords": sorted(non_index)}
    if dtypes:
        info["dtypes"] = dtypes
    if nulls:
        info["nulls"] = nulls
    if moved:
        info["attrs"] = moved
    if from_encoding:
        info["encoding"] = from_encoding
    return ds, info


def _fill_missing_strings(ds: xr.Dataset) -> tuple[xr.Dataset, dict[str, str]]:
    """``ds`` with missing values of string variables set to :data:`MISSING_STRING`.

    Returns the variables whose missing values were ``NaN`` (the others were ``None``).

    Raises
    ------
    UnsupportedObjectError
        For a string variable holding :data:`MISSING_STRING` itself.
    """
    import numpy as np
    import pandas as pd

    nulls: dict[str, str] = {}
    filled: dict[str, Any] = {}
    for name, var in ds.variables.items():
        if var.dtype.kind != "O" or var.size == 0:
            continue
        values = np.asarray(var.values)
        missing = np.asarray(pd.isnull(values))
        present = values[~missing]
        if not present.size or not isinstance(present.flat[0], str | bytes):
            continue
        if any(v in (MISSING_STRING, _MISSING_BYTES) for v in present.ravel()):
            raise UnsupportedObjectError(
                f"variable {str(name)!r} holds the string {MISSING_STRING!r}, which marks missing "
                "strings in Zarr; replace it before saving"
            )
        if not missing.any():
            continue
        sentinel: str | bytes = MISSING_STRING
        if all(isinstance(v, bytes) for v in present.ravel()):
            sentinel = _MISSING_BYTES
        if any(isinstance(v, float) for v in values[missing].ravel()):
            nulls[str(name)] = "nan"
        data: Any = np.where(missing, np.array(sentinel, dtype=object), values).astype(object)
        if var.chunks is not None:
            import dask.array

            data = dask.array.from_array(data, chunks=var.chunks)
        filled[str(name)] = var.copy(data=data)
    if not filled:
        return ds, nulls
    coords = {k: v for k, v in filled.items() if k in ds.coords}
    return ds.assign_coords(coords).assign({k: v for k, v in filled.items() if k not in coords}), nulls


def _restore_dtypes(ds: xr.Dataset, node: Mapping[str, Any]) -> xr.Dataset:
    """Cast variables back to the dtypes recorded by :func:`prepare`, and missing strings back."""
    import numpy as np

    nulls = node.get("nulls", {})
    replaced: dict[str, Any] = {}
    for name, recorded in node.get("dtypes", {}).items():
        if name not in ds.variables:
            continue
        var = ds.variables[name]
        wanted = np.dtype(recorded)
        new = var if var.dtype == wanted else var.astype(wanted)
        if wanted.kind == "O" and var.dtype.kind in "OTUS":
            null = np.nan if nulls.get(name) == "nan" else None
            keep = (new != MISSING_STRING) & (new != _MISSING_BYTES)
            new = new.where(keep, np.array(null, dtype=object))
        if new is not var:
            new.attrs, new.encoding = var.attrs, var.encoding
            replaced[name] = new
    if not replaced:
        return ds
    coords = {k: v for k, v in replaced.items() if k in ds.coords}
    return ds.assign_coords(coords).assign({k: v for k, v in replaced.items() if k not in coords})


def check_object_dtypes(ds: xr.Dataset) -> None:
    """Refuse object-dtype variables that xarray cannot turn into one Zarr data type.

    Such a variable is storable when its present values are all strings (or bytes),
    or all of one numeric or boolean type; mixed types and arbitrary Python objects
    are refused before anything is written, naming the variable. Dask-backed object
    variables are computed to be checked (``to_zarr`` would compute them anyway).

    Raises
    ------
    UnsupportedObjectError
        Naming the variable, its dtype and the types of values found.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> check_object_dtypes(xr.Dataset({"v": ("x", np.array(["a", "b"], dtype=object))}))
    """
    import numpy as np
    import pandas as pd

    for name, var in ds.variables.items():
        if var.dtype.kind != "O" or var.size == 0:
            continue
        values = np.asarray(var.values).ravel()
        present = values[~pd.isnull(values)]
        types = {type(v) for v in present}
        if (len(types) <= 1 and (not types or _one_storable_type(present[0]))) or types == {bytes, str}:
            continue
        found = ", ".join(sorted(t.__name__ for t in types))
        role = "coordinate" if name in ds.coords else "variable"
        what = "mixes values of types" if len(types) > 1 else "holds Python objects of type"
        subject, fix = f"{role} {str(name)!r}", f"ds[{str(name)!r}]"
        if name == DATAARRAY_VARIABLE:
            subject, fix = "the DataArray", "da"
        raise UnsupportedObjectError(
            f"{subject} (dtype object) {what} {found}, which Zarr cannot store in one array; "
            f"convert it to one type first, e.g. {fix}.astype(str) or {fix}.astype(float)"
        )


def _one_storable_type(element: Any) -> bool:
    import numpy as np

    return isinstance(element, str | bytes) or np.array(element).dtype.kind != "O"


def restore(ds: xr.Dataset, node: Mapping[str, Any]) -> xr.Dataset:
    """Undo :func:`prepare` on a freshly opened Dataset (``node`` is its ``node_info``)."""
    ds.attrs.pop(INFO_ATTR, None)
    ds = _restore_dtypes(ds, node)
    coords = set(node.get("coords", []))
    to_coords = [n for n in ds.data_vars if str(n) in coords]
    to_vars = [n for n in ds.coords if n not in ds.dims and str(n) not in coords]
    if to_coords:
        ds = ds.set_coords(to_coords)
    if to_vars and "coords" in node:
        ds = ds.reset_coords(to_vars)
    for name, attrs in node.get("attrs", {}).items():
        if name in ds.variables:
            ds.variables[name].attrs.update(decode_mapping(attrs))
    for name, keys in node.get("encoding", {}).items():
        if name in ds.variables:
            var = ds.variables[name]
            for key in keys:
                if key in var.attrs:
                    var.encoding[key] = var.attrs.pop(key)
    return ds


def geo_attrs(ds: xr.Dataset) -> dict[str, Any]:
    """GeoZarr-style group attributes: CRS (``proj:``) and affine grid (``spatial:``).

    Only attributes ``ds`` does not already have are returned.
    """
    import numpy as np

    crs = explicit_crs(ds)
    dims = spatial_dims(ds)
    if crs is None or dims is None:
        return {}
    attrs: dict[str, Any] = {"proj:wkt2": crs.to_wkt()}
    authority = crs.to_authority()
    if authority is not None:
        attrs["proj:code"] = ":".join(authority)
    x_dim, y_dim = dims
    if x_dim in ds.indexes and y_dim in ds.indexes and ds.sizes[x_dim] > 1 and ds.sizes[y_dim] > 1:
        x = np.asarray(ds[x_dim].values, dtype="float64")
        y = np.asarray(ds[y_dim].values, dtype="float64")
        dx, dy = np.diff(x), np.diff(y)
        if np.allclose(dx, dx[0], rtol=1e-9, atol=0) and np.allclose(dy, dy[0], rtol=1e-9, atol=0):
            attrs["spatial:dimensions"] = [y_dim, x_dim]
            attrs["spatial:transform"] = [
                float(dx[0]), 0.0, float(x[0] - dx[0] / 2), 0.0, float(dy[0]), float(y[0] - dy[0] / 2)
            ]
            attrs["spatial:shape"] = [int(ds.sizes[y_dim]), int(ds.sizes[x_dim])]
    return {k: v for k, v in attrs.items() if k not in ds.attrs}


def _exposable_nodata(value: Any, dtype: Any, encoding: Mapping[str, Any]) -> bool:
    """Whether ``value`` can be the Zarr ``fill_value`` of an array of ``dtype``."""
    import numpy as np

    if value is None or dtype.kind not in "iuf":
        return False
    if any(encoding.get(k) is not None for k in _NODATA_BLOCKERS) or any(
        k in encoding for k in ("_Unsigned", "dtype")
    ):
        return False
    if not isinstance(value, np.generic | int | float) or isinstance(value, bool | np.bool_):
        return False
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cast = np.array(value).astype(dtype)
    if dtype.kind == "f":
        return bool(cast == value or (np.isnan(cast) and np.isnan(value)))
    return bool(cast == value) and float(value).is_integer()


def _cf_coder_would_touch(key: str, value: Any, dtype: Any) -> bool:
    if key in _CF_CODER_ATTRS:
        return True
    if key in ("units", "calendar"):
        if dtype.kind in "mM":
            return True
        return isinstance(value, str) and " since " in value
    return False
