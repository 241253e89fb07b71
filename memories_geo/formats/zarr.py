"""Zarr v3 stores for xarray rasters: Dataset, DataArray and DataTree, read back lazily.

A version is one Zarr v3 group with consolidated metadata. What plain ``to_zarr``
cannot round-trip is made reversible and recorded in ``object_info`` (and, for
appends, in the group attribute ``_memories_geo``):

- attributes the CF coders would interpret on read or refuse on write
  (``_FillValue``, ``scale_factor``, ``add_offset``... in ``attrs``, as rioxarray
  leaves them with ``mask_and_scale=False``) are taken out of the stored
  attributes and put back, with their numpy type, on open;
- CF references kept in ``encoding`` (``grid_mapping``, ``bounds``) go back to
  ``encoding`` instead of appearing in ``attrs``;
- non-index coordinates (the ``spatial_ref`` grid mapping) stay coordinates.
"""

from __future__ import annotations

import contextlib
import math
import posixpath
import shutil
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from memories_geo.crs import crs_to_string, grid_mapping_name, xarray_crs
from memories_geo.errors import FormatError, UnsupportedObjectError
from memories_geo.footprint import Footprint, bbox_to_wgs84, raster_footprint
from memories_geo.formats.base import FileFormat, WriteOptions
from memories_geo.kinds import spatial_dims
from memories_geo.types import CompressionLevel, Kind

if TYPE_CHECKING:
    import pyproj
    import xarray as xr
    from zarr.abc.codec import BytesBytesCodec

    from memories_geo.backends.base import Location

__all__ = ["DATAARRAY_VARIABLE", "INFO_ATTR", "ZARR_CODECS", "ZarrFormat", "zarr_codec"]

#: Variable name of an unnamed DataArray, as xarray's own ``DataArray.to_zarr`` uses.
DATAARRAY_VARIABLE = "__xarray_dataarray_variable__"

#: Group attribute holding what :meth:`ZarrFormat.open` needs to undo (stripped on open).
INFO_ATTR = "_memories_geo"

#: Layout version of ``object_info`` / :data:`INFO_ATTR`.
INFO_VERSION = 1

#: Compression level -> (codec, parameters): ``"blosc"`` is ``zarr.codecs.BloscCodec``,
#: ``"zstd"`` is ``zarr.codecs.ZstdCodec``. Build one with :func:`zarr_codec`.
ZARR_CODECS: dict[CompressionLevel, tuple[str, dict[str, Any]]] = {
    CompressionLevel.FAST: ("blosc", {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"}),
    CompressionLevel.MEDIUM: ("zstd", {"level": 3}),
    CompressionLevel.HIGH: ("zstd", {"level": 9}),
    CompressionLevel.MAXIMUM: ("zstd", {"level": 19}),
}

#: Attributes the CF decoder acts on (or the encoder refuses to overwrite).
_CF_CODER_ATTRS = frozenset(
    {"_FillValue", "missing_value", "scale_factor", "add_offset", "_Unsigned", "dtype", "coordinates"}
)
#: Encoding entries xarray writes as attributes and reads back as attributes.
_CF_REFERENCE_ENCODINGS = (
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
#: Encoding keys accepted in ``encoding=`` (CF coder keys plus Zarr array keys).
VALID_ENCODINGS = frozenset(
    {
        "_FillValue",
        "dtype",
        "scale_factor",
        "add_offset",
        "units",
        "calendar",
        "chunks",
        "shards",
        "compressors",
        "filters",
        "serializer",
        "fill_value",
        "write_empty_chunks",
        "cache_metadata",
        "chunk_key_encoding",
        "preferred_chunks",
    }
)
#: Encoding entries of the object handed to ``to_zarr(encoding=...)``, which replaces them.
_PASSED_ENCODINGS = VALID_ENCODINGS | {"missing_value", *_CF_REFERENCE_ENCODINGS}
#: ``to_zarr`` arguments this format sets itself.
_RESERVED_WRITE_KWARGS = frozenset(
    {"mode", "zarr_format", "consolidated", "append_dim", "encoding", "compute", "store"}
)
_QUERY_KEYS = ("chunks", "variables")


def zarr_codec(level: CompressionLevel | str) -> BytesBytesCodec:
    """Build the compressor configured for ``level`` in :data:`ZARR_CODECS`.

    Parameters
    ----------
    level : CompressionLevel or str
        ``"fast"``, ``"medium"``, ``"high"`` or ``"maximum"``.

    Returns
    -------
    zarr.codecs.BloscCodec or zarr.codecs.ZstdCodec
        A new codec instance, usable in ``encoding={"var": {"compressors": (codec,)}}``.

    Examples
    --------
    >>> zarr_codec("high")  # doctest: +SKIP
    ZstdCodec(level=9, checksum=False)
    """
    import zarr.codecs

    name, params = ZARR_CODECS[CompressionLevel(level)]
    classes = {"blosc": zarr.codecs.BloscCodec, "zstd": zarr.codecs.ZstdCodec}
    return classes[name](**params)


class ZarrFormat(FileFormat):
    """Zarr v3 with consolidated metadata, for xarray Dataset, DataArray and DataTree.

    Writes keep dask chunks as they are; opening is lazy (dask-backed) and gives
    back the type that was saved, identical to it (values, dtypes, attributes,
    encodings that carry meaning, coordinates, CRS).

    Examples
    --------
    >>> import memories_geo as mg
    >>> mem = mg.Memory("/tmp/mg-doc")  # doctest: +SKIP
    >>> mem.save(ds, "era5/t2m", format="zarr", compression="high")  # doctest: +SKIP
    >>> mem.open("era5/t2m", variables=["t2m"], chunks={"time": 24})  # doctest: +SKIP
    """

    name: ClassVar[str] = "zarr"
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.RASTER})
    extension: ClassVar[str] = ".zarr"

    def can_store(self, obj: Any) -> bool:
        """Whether ``obj`` is an xarray Dataset, DataArray or DataTree."""
        import xarray as xr

        return isinstance(obj, xr.Dataset | xr.DataArray | xr.DataTree)

    # -- writing -----------------------------------------------------------------------

    def _write(
        self, obj: Any, location: Location, options: WriteOptions
    ) -> tuple[Footprint, Mapping[str, Any]]:
        import xarray as xr

        if not self.can_store(obj):
            raise UnsupportedObjectError(
                f"the zarr format stores xarray Dataset, DataArray or DataTree objects, "
                f"not {type(obj).__name__}"
            )
        extra = dict(options.extra)
        reserved = sorted(_RESERVED_WRITE_KWARGS & set(extra))
        if reserved:
            raise FormatError(
                f"the zarr format sets {reserved} itself; pass mode=, append_dim= and "
                "encoding= to save() instead"
            )
        if options.mode == "a":
            if isinstance(obj, xr.DataTree):
                raise UnsupportedObjectError(
                    "appending (mode='a') is supported for Dataset and DataArray, not DataTree; "
                    "save the combined tree with mode='w'"
                )
            return self._append(obj, location, options, extra)
        if isinstance(obj, xr.DataTree):
            return self._write_tree(obj, location, options, extra)
        obj = _with_crs(obj, options.crs)
        footprint = raster_footprint(obj, crs=_effective_crs(obj, options.crs))
        ds, info = _to_dataset(obj)
        prepared, node = _prepare(ds)
        info["nodes"] = {"/": node}
        prepared.attrs[INFO_ATTR] = info
        encoding = _merge_encoding(prepared, options.compression, _user_encoding(obj, options.encoding, info))
        with _quiet_consolidation():
            prepared.to_zarr(
                _store(location),
                mode="w-",
                zarr_format=3,
                consolidated=True,
                encoding=encoding,
                **extra,
            )
        return footprint, info

    def _write_tree(
        self, tree: xr.DataTree, location: Location, options: WriteOptions, extra: dict[str, Any]
    ) -> tuple[Footprint, Mapping[str, Any]]:
        import xarray as xr

        datasets: dict[str, xr.Dataset] = {}
        nodes: dict[str, Any] = {}
        encoding: dict[str, Any] = {}
        footprints: list[Footprint] = []
        user = dict(options.encoding or {})
        unknown = sorted(set(user) - {n.path for n in tree.subtree})
        if unknown:
            raise FormatError(
                f"encoding= for a DataTree is keyed by node path; unknown paths {unknown}, "
                f"nodes: {sorted(n.path for n in tree.subtree)}"
            )
        for node in tree.subtree:
            ds = node.to_dataset(inherit=False)
            full = node.to_dataset(inherit=True)
            if spatial_dims(full) is not None and full.data_vars:
                checked = _with_crs(full, options.crs)
                if checked is not full:
                    ds = _with_crs(ds, options.crs)
                crs = _effective_crs(checked, options.crs)
                footprints.append(raster_footprint(checked, crs=crs))
            prepared, node_info = _prepare(ds)
            datasets[node.path] = prepared
            nodes[node.path] = node_info
            encoding[node.path] = _merge_encoding(
                prepared, options.compression, _validate_encoding(prepared, user.get(node.path))
            )
        info: dict[str, Any] = {"version": INFO_VERSION, "type": "DataTree", "name": tree.name}
        info["nodes"] = nodes
        datasets["/"].attrs[INFO_ATTR] = info
        prepared_tree = xr.DataTree.from_dict(datasets)
        with _quiet_consolidation():
            prepared_tree.to_zarr(
                _store(location),
                mode="w-",
                zarr_format=3,
                consolidated=True,
                encoding=encoding,
                **extra,
            )
        return _union_footprints(footprints, tree), info

    def _append(
        self, obj: Any, location: Location, options: WriteOptions, extra: dict[str, Any]
    ) -> tuple[Footprint, Mapping[str, Any]]:
        import zarr

        previous = options.previous
        if previous is None or options.append_dim is None:
            raise ValueError("mode='a' needs the previous version and append_dim=")
        old_attrs: dict[str, Any] = dict(
            zarr.open_group(_store(previous, read_only=True), mode="r").attrs.asdict()
        )
        old_info: Any = old_attrs.get(INFO_ATTR)
        if not isinstance(old_info, Mapping) or old_info.get("type") == "DataTree":
            raise UnsupportedObjectError(
                "the previous version cannot be appended to (it is a DataTree or was not "
                "written by memories_geo); save the combined object with mode='w'"
            )
        if old_info["type"] != type(obj).__name__:
            raise UnsupportedObjectError(
                f"cannot append a {type(obj).__name__} to a stored {old_info['type']}"
            )
        obj = _with_crs(obj, options.crs)
        ds, info = _to_dataset(obj, variable=old_info.get("variable"))
        if options.append_dim not in ds.dims:
            raise ValueError(
                f"append_dim={options.append_dim!r} is not a dimension of the object (dims: {tuple(ds.dims)})"
            )
        prepared, node = _prepare(ds)
        old_node = old_info["nodes"]["/"]
        merged = {
            "coords": sorted({*old_node.get("coords", []), *node["coords"]}),
            "attrs": {**node.get("attrs", {}), **old_node.get("attrs", {})},
            "encoding": {**node.get("encoding", {}), **old_node.get("encoding", {})},
        }
        info = {**dict(old_info), "nodes": {"/": {k: v for k, v in merged.items() if v}}}
        prepared.attrs = {**old_attrs, INFO_ATTR: info}
        _copy_store(previous, location)
        existing = set(zarr.open_group(_store(location, read_only=True), mode="r").array_keys())
        user = _user_encoding(obj, options.encoding, info)
        defaults = _merge_encoding(prepared, options.compression, {})
        encoding = {name: enc for name, enc in defaults.items() if name not in existing}
        for name, enc in user.items():
            encoding[name] = {**encoding.get(name, {}), **enc}
        with _quiet_consolidation():
            prepared.to_zarr(
                _store(location),
                mode="a",
                append_dim=options.append_dim,
                zarr_format=3,
                consolidated=True,
                encoding=encoding,
                **extra,
            )
        combined = self.open(location, info)
        return raster_footprint(combined, crs=_effective_crs(combined, None)), info

    # -- reading -----------------------------------------------------------------------

    def open(self, location: Location, object_info: Mapping[str, Any], **query: Any) -> Any:
        """Open a stored version lazily (dask-backed), as the type that was saved.

        Parameters
        ----------
        location : Location
            Where the version is stored.
        object_info : mapping
            What :meth:`write` returned as ``object_info``.
        **query
            ``chunks=`` (dask chunks; default ``{}``, the stored Zarr chunks) and
            ``variables=`` (a name or list of data variables to keep, Datasets only).

        Returns
        -------
        xarray.Dataset, xarray.DataArray or xarray.DataTree
            Identical to the object saved.

        Raises
        ------
        FormatError
            For an unknown query keyword or variable name.
        """
        import xarray as xr

        unknown = sorted(set(query) - set(_QUERY_KEYS))
        if unknown:
            raise FormatError(
                f"unsupported query {unknown} for the zarr format; supported: {list(_QUERY_KEYS)}"
            )
        chunks = query.get("chunks", {})
        kind = object_info.get("type", "Dataset")
        nodes = object_info.get("nodes", {})
        if kind == "DataTree":
            if "variables" in query:
                raise FormatError("variables= is not supported for a DataTree; select nodes instead")
            tree = xr.open_datatree(
                _store(location, read_only=True), engine="zarr", chunks=chunks, consolidated=True
            )
            datasets = {
                node.path: _restore(node.to_dataset(inherit=False), nodes.get(node.path, {}))
                for node in tree.subtree
            }
            return xr.DataTree.from_dict(datasets, name=object_info.get("name"))
        ds = xr.open_zarr(_store(location, read_only=True), chunks=chunks, consolidated=True)
        ds = _restore(ds, nodes.get("/", {}))
        if kind == "DataArray":
            if "variables" in query:
                raise FormatError("variables= selects data variables of a Dataset; this is a DataArray")
            da = ds[object_info.get("variable", DATAARRAY_VARIABLE)]
            da.name = object_info.get("name")
            return da
        if "variables" in query:
            wanted = query["variables"]
            names = [wanted] if isinstance(wanted, str) else list(wanted)
            missing = [n for n in names if n not in ds.data_vars]
            if missing:
                raise FormatError(f"variables {missing} are not stored; data variables: {list(ds.data_vars)}")
            ds = ds[names]
        return ds


# -- CRS ---------------------------------------------------------------------------------


def _explicit_crs(obj: xr.Dataset | xr.DataArray) -> pyproj.CRS | None:
    """CRS written on a grid mapping (the lon/lat-implies-EPSG:4326 guess does not count)."""
    return xarray_crs(obj) if grid_mapping_name(obj) is not None else None


def _effective_crs(obj: xr.Dataset | xr.DataArray, crs: Any) -> Any:
    return crs if crs is not None else xarray_crs(obj)


def _with_crs(obj: Any, crs: Any) -> Any:
    """``obj`` with ``crs`` written as a ``spatial_ref`` grid mapping if it has no CRS."""
    if crs is None:
        return obj
    import pyproj

    wanted = pyproj.CRS.from_user_input(crs)
    current = _explicit_crs(obj)
    if current is not None:
        if current.equals(wanted, ignore_axis_order=True):
            return obj
        raise UnsupportedObjectError(
            f"this {type(obj).__name__} already has the CRS {crs_to_string(current)!r}, which "
            f"differs from crs={crs_to_string(wanted)!r}; reproject it first "
            f"(obj.rio.reproject({crs_to_string(wanted)!r})) or leave crs= unset"
        )
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    return obj.rio.write_crs(crs)


# -- preparing a Dataset for to_zarr and undoing it on open ---------------------------


def _to_dataset(obj: Any, variable: str | None = None) -> tuple[xr.Dataset, dict[str, Any]]:
    """The Dataset to store and the start of ``object_info``."""
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


def _prepare(ds: xr.Dataset) -> tuple[xr.Dataset, dict[str, Any]]:
    """Return a shallow copy of ``ds`` that ``to_zarr`` stores faithfully, and how to undo it."""
    ds = ds.copy(deep=False)
    moved: dict[str, dict[str, Any]] = {}
    from_encoding: dict[str, list[str]] = {}
    for name, var in ds.variables.items():
        attrs = dict(var.attrs)
        take = [k for k in attrs if _cf_coder_would_touch(k, attrs[k], var.dtype)]
        if take:
            moved[str(name)] = {k: _encode_value(attrs.pop(k), str(name), k) for k in take}
        encoding = {k: v for k, v in var.encoding.items() if k not in _LAYOUT_ENCODINGS}
        if var.chunks is not None:
            encoding.pop("chunks", None)
            encoding.pop("shards", None)
        if var.dtype.kind in "fc":
            encoding.setdefault("_FillValue", None)
        references = [k for k in _CF_REFERENCE_ENCODINGS if k in encoding and k not in attrs]
        if references:
            from_encoding[str(name)] = references
        var.attrs = attrs
        var.encoding = encoding
    coords = sorted(str(c) for c in ds.coords if c not in ds.dims)
    info: dict[str, Any] = {"coords": coords}
    if moved:
        info["attrs"] = moved
    if from_encoding:
        info["encoding"] = from_encoding
    return ds, info


def _cf_coder_would_touch(key: str, value: Any, dtype: Any) -> bool:
    if key in _CF_CODER_ATTRS:
        return True
    if key in ("units", "calendar"):
        if dtype.kind in "mM":
            return True
        return isinstance(value, str) and " since " in value
    return False


def _restore(ds: xr.Dataset, node: Mapping[str, Any]) -> xr.Dataset:
    """Undo :func:`_prepare` on a freshly opened Dataset."""
    ds.attrs.pop(INFO_ATTR, None)
    coords = set(node.get("coords", []))
    to_coords = [n for n in ds.data_vars if str(n) in coords]
    to_vars = [n for n in ds.coords if n not in ds.dims and str(n) not in coords]
    if to_coords:
        ds = ds.set_coords(to_coords)
    if to_vars and "coords" in node:
        ds = ds.reset_coords(to_vars)
    for name, attrs in node.get("attrs", {}).items():
        if name in ds.variables:
            ds.variables[name].attrs.update({k: _decode_value(v) for k, v in attrs.items()})
    for name, keys in node.get("encoding", {}).items():
        if name in ds.variables:
            var = ds.variables[name]
            for key in keys:
                if key in var.attrs:
                    var.encoding[key] = var.attrs.pop(key)
    return ds


def _encode_value(value: Any, variable: str, key: str) -> dict[str, Any]:
    """JSON form of an attribute value that keeps its numpy type and non-finite floats."""
    import numpy as np

    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return {
            "dtype": value.dtype.str,
            "shape": list(value.shape),
            "array": [_json_number(v) for v in value.ravel().tolist()],
        }
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return {"dtype": value.dtype.str, "value": _json_number(value.item())}
    if isinstance(value, list | tuple) and all(_is_plain(v) for v in value):
        return {"list": [_json_number(v) for v in value], "tuple": isinstance(value, tuple)}
    if _is_plain(value):
        return {"value": _json_number(value)}
    raise UnsupportedObjectError(
        f"attribute {key!r} of variable {variable!r} is a {type(value).__name__}; Zarr can "
        "store it only as a number, string, list or numeric numpy value"
    )


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    return value


def _from_json_number(value: Any) -> Any:
    if isinstance(value, Mapping) and "float" in value:
        return float(value["float"])
    return value


def _decode_value(encoded: Mapping[str, Any]) -> Any:
    import numpy as np

    if "array" in encoded:
        values = [_from_json_number(v) for v in encoded["array"]]
        return np.array(values, dtype=encoded["dtype"]).reshape(encoded["shape"])
    if "list" in encoded:
        items = [_from_json_number(v) for v in encoded["list"]]
        return tuple(items) if encoded.get("tuple") else items
    value = _from_json_number(encoded.get("value"))
    if "dtype" in encoded:
        return np.dtype(encoded["dtype"]).type(value)
    return value


# -- encoding --------------------------------------------------------------------------


def _user_encoding(
    obj: Any, encoding: Mapping[str, Any] | None, info: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """``encoding=`` keyed by stored variable name (a DataArray may give its own directly)."""
    import xarray as xr

    encoding = dict(encoding or {})
    if isinstance(obj, xr.DataArray) and encoding:
        variable = info["variable"]
        if obj.name is not None and obj.name in encoding and variable != obj.name:
            encoding[variable] = encoding.pop(obj.name)
        elif not all(isinstance(v, Mapping) for v in encoding.values()):
            encoding = {variable: encoding}
    ds = obj if isinstance(obj, xr.Dataset) else obj.to_dataset(name=info["variable"])
    return _validate_encoding(ds, encoding)


def _validate_encoding(ds: xr.Dataset, encoding: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    encoding = dict(encoding or {})
    unknown_vars = sorted(str(n) for n in encoding if n not in ds.variables)
    if unknown_vars:
        raise FormatError(
            f"encoding= names variables that are not in the object: {unknown_vars}; "
            f"variables: {sorted(str(n) for n in ds.variables)}"
        )
    for name, enc in encoding.items():
        if not isinstance(enc, Mapping):
            raise FormatError(f"encoding[{name!r}] must be a dict of encoding parameters, got {enc!r}")
        bad = sorted(set(enc) - VALID_ENCODINGS)
        if bad:
            raise FormatError(
                f"unknown encoding parameters {bad} for variable {name!r}; "
                f"the zarr format accepts {sorted(VALID_ENCODINGS)}"
            )
    return {str(k): dict(v) for k, v in encoding.items()}


def _merge_encoding(
    ds: xr.Dataset, level: CompressionLevel | str, user: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Encoding of every variable with the tier's compressor, overridden by ``user``.

    ``to_zarr(encoding=...)`` replaces a variable's own encoding, so that is included.
    """
    codec = zarr_codec(level)
    merged = {
        str(name): {
            **{k: v for k, v in var.encoding.items() if k in _PASSED_ENCODINGS},
            "compressors": (codec,),
        }
        for name, var in ds.variables.items()
    }
    for name, enc in user.items():
        merged[name] = {**merged.get(name, {}), **enc}
    return merged


# -- stores ------------------------------------------------------------------------------


def _store(location: Location, *, read_only: bool = False) -> Any:
    """Return a plain path for local directories (zarr's LocalStore), else an FsspecStore."""
    if location.is_local:
        return location.full_path
    from zarr.storage import FsspecStore

    return FsspecStore.from_url(
        location.fs.unstrip_protocol(location.full_path),
        storage_options=dict(location.storage_options),
        read_only=read_only,
    )


def _copy_store(source: Location, target: Location) -> None:
    """Copy every file of ``source`` to ``target`` (which does not exist yet)."""
    if source.is_local and target.is_local:
        shutil.copytree(source.full_path, target.full_path)
        return
    src_root = source.full_path.rstrip("/")
    dst_root = target.full_path.rstrip("/")
    for path in source.fs.find(src_root):
        relative = posixpath.relpath(path, src_root)
        target.fs.pipe_file(posixpath.join(dst_root, relative), source.fs.cat_file(path))


@contextlib.contextmanager
def _quiet_consolidation() -> Iterator[None]:
    """Silence zarr's notice that consolidated metadata is not in the v3 spec (we ask for it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", module="zarr")
        yield


# -- footprints of trees -----------------------------------------------------------------


def _union_footprints(footprints: list[Footprint], tree: xr.DataTree) -> Footprint:
    if not footprints:
        raise UnsupportedObjectError(
            "no node of this DataTree has data variables on spatial dims (x/y, lon/lat)"
        )
    crss = {f.crs for f in footprints}
    native = None
    if len(crss) == 1 and all(f.native_bbox for f in footprints):
        boxes = [f.native_bbox for f in footprints if f.native_bbox]
        native = (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
    boxes = [f.bbox for f in footprints if f.bbox]
    bbox = (
        (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        if boxes
        else None
    )
    if native is not None and bbox is None:
        bbox = bbox_to_wgs84(native, next(iter(crss)))
    starts = [f.time_start for f in footprints if f.time_start is not None]
    ends = [f.time_end for f in footprints if f.time_end is not None]
    variables: list[str] = []
    for node in tree.subtree:
        prefix = node.path.rstrip("/")
        variables += [f"{prefix}/{v}" for v in node.to_dataset(inherit=False).data_vars]
    return Footprint(
        bbox=bbox,
        native_bbox=native,
        crs=next(iter(crss)) if len(crss) == 1 else None,
        time_start=min(starts) if starts else None,
        time_end=max(ends) if ends else None,
        variables=tuple(variables),
        shape={k: v for f in reversed(footprints) for k, v in f.shape.items()},
    )
