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

What other readers see is kept standard: data variables list their coordinates
(grid mapping included) in the CF ``coordinates`` attribute, a nodata value kept in
``attrs`` becomes the Zarr ``fill_value`` (GDAL's nodata), and the group carries
GeoZarr-style ``proj:`` / ``spatial:`` attributes. memories_geo strips or un-decodes
these on open, so its own round trips stay exact.

Layout: chunks of about 1-8 MiB are chosen from the data when the caller gives none
(aligned with dask chunks, full spatial tiles before long time series), and appends
or region writes make a new version that hard-links (local) or server-side copies
(object stores) every chunk file they do not rewrite. See ``docs/formats-zarr.md``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import posixpath
import shutil
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from memories_geo.crs import assign_crs, explicit_crs, xarray_crs
from memories_geo.errors import FormatError, UnsupportedObjectError
from memories_geo.footprint import Footprint, bbox_to_wgs84, raster_footprint
from memories_geo.formats.base import FileFormat, WriteOptions, WriteResult
from memories_geo.integrity import Manifest
from memories_geo.kinds import spatial_dims
from memories_geo.types import CompressionLevel, Kind

if TYPE_CHECKING:
    import xarray as xr
    from zarr.abc.codec import BytesBytesCodec

    from memories_geo.backends.base import Location

__all__ = [
    "CHUNK_BYTES",
    "DATAARRAY_VARIABLE",
    "INFO_ATTR",
    "SHARDED_LEVELS",
    "SHARD_BYTES",
    "ZARR_CODECS",
    "ZarrFormat",
    "choose_chunks",
    "zarr_codec",
]

#: Variable name of an unnamed DataArray, as xarray's own ``DataArray.to_zarr`` uses.
DATAARRAY_VARIABLE = "__xarray_dataarray_variable__"

#: Group attribute holding what :meth:`ZarrFormat.open` needs to undo (stripped on open).
INFO_ATTR = "_memories_geo"

#: Layout version of ``object_info`` / :data:`INFO_ATTR`.
INFO_VERSION = 1

#: Compression level -> (codec, parameters): ``"blosc"`` is ``zarr.codecs.BloscCodec``,
#: ``"zstd"`` is ``zarr.codecs.ZstdCodec``. Build one with :func:`zarr_codec`. Zstd runs
#: inside Blosc with byte shuffling: on float rasters that compresses better than plain
#: Zstd at the same speed, and plain Zstd level 19 wrote at about 1 MB/s
#: (``docs/formats-zarr.md`` has the measurements).
ZARR_CODECS: dict[CompressionLevel, tuple[str, dict[str, Any]]] = {
    CompressionLevel.FAST: ("blosc", {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"}),
    CompressionLevel.MEDIUM: ("blosc", {"cname": "zstd", "clevel": 3, "shuffle": "shuffle"}),
    CompressionLevel.HIGH: ("blosc", {"cname": "zstd", "clevel": 5, "shuffle": "shuffle"}),
    CompressionLevel.MAXIMUM: ("blosc", {"cname": "zstd", "clevel": 7, "shuffle": "shuffle"}),
}

#: (smallest, aimed-for, largest) uncompressed chunk size chosen when the caller gives none.
CHUNK_BYTES: tuple[int, int, int] = (1 << 20, 4 << 20, 8 << 20)

#: Compression levels whose arrays are sharded (several chunks per stored object).
SHARDED_LEVELS: frozenset[CompressionLevel] = frozenset({CompressionLevel.MAXIMUM})

#: Aimed-for uncompressed size of one shard on a sharded level.
SHARD_BYTES = 64 << 20

#: Dtype kinds whose chunks are chosen by size (strings and objects keep zarr's defaults).
_SIZED_KINDS = frozenset("biufcmM")

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
    BloscCodec(typesize=None, cname=<BloscCname.zstd: 'zstd'>, clevel=5, ...)
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

    def write(self, obj: Any, location: Location, options: WriteOptions) -> WriteResult:
        """Write ``obj`` as a new version at ``location``.

        Parameters
        ----------
        obj : xarray.Dataset, DataArray or DataTree
            What to store.
        location : Location
            Where the version goes (it does not exist yet).
        options : WriteOptions
            Mode, compression level, encoding, append dimension and CRS. With
            ``compute=False`` the metadata is written now and the chunk writes are
            returned as ``WriteResult.pending`` (a ``dask.delayed`` object). Format
            keyword ``region=`` (a mapping of dimension to slice, or ``"auto"``)
            with ``mode="a"`` overwrites that region of the previous version.

        Returns
        -------
        WriteResult
            Manifest (empty while a write is pending), footprint and ``object_info``.
        """
        footprint, info, pending = self._write_version(obj, location, options)
        if not options.compute and pending is not None:
            return WriteResult(manifest=Manifest(), footprint=footprint, object_info=info, pending=pending)
        return WriteResult(manifest=self.manifest(location), footprint=footprint, object_info=info)

    def _write_version(
        self, obj: Any, location: Location, options: WriteOptions
    ) -> tuple[Footprint, Mapping[str, Any], Any]:
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
        region = extra.pop("region", None)
        if region is not None and options.mode != "a":
            raise FormatError(
                "region= overwrites part of the current version; pass mode='a' with it"
            )
        if options.mode == "a":
            if isinstance(obj, xr.DataTree):
                raise UnsupportedObjectError(
                    "appending (mode='a') is supported for Dataset and DataArray, not DataTree; "
                    "save the combined tree with mode='w'"
                )
            if region is not None:
                return self._write_region(obj, location, options, region, extra)
            return self._append(obj, location, options, extra)
        if isinstance(obj, xr.DataTree):
            return self._write_tree(obj, location, options, extra)
        obj = assign_crs(obj, options.crs)
        footprint = raster_footprint(obj, crs=_effective_crs(obj, options.crs))
        ds, info = _to_dataset(obj)
        prepared, node = _prepare(ds)
        info["nodes"] = {"/": node}
        geo = _geo_attrs(prepared)
        if geo:
            info["geo_attrs"] = sorted(geo)
            prepared.attrs.update(geo)
        prepared.attrs[INFO_ATTR] = info
        encoding = _merge_encoding(prepared, options.compression, _user_encoding(obj, options.encoding, info))
        prepared = _layout(prepared, encoding, options.compression)
        with _quiet_consolidation():
            pending = prepared.to_zarr(
                _store(location),
                mode="w-",
                zarr_format=3,
                consolidated=True,
                encoding=encoding,
                compute=options.compute,
                **extra,
            )
        return footprint, info, pending

    def _write_tree(
        self, tree: xr.DataTree, location: Location, options: WriteOptions, extra: dict[str, Any]
    ) -> tuple[Footprint, Mapping[str, Any], Any]:
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
                checked = assign_crs(full, options.crs)
                if checked is not full:
                    ds = assign_crs(ds, options.crs)
                crs = _effective_crs(checked, options.crs)
                footprints.append(raster_footprint(checked, crs=crs))
            prepared, node_info = _prepare(ds)
            node_encoding = _merge_encoding(
                prepared, options.compression, _validate_encoding(prepared, user.get(node.path))
            )
            datasets[node.path] = _layout(prepared, node_encoding, options.compression)
            nodes[node.path] = node_info
            encoding[node.path] = node_encoding
        info: dict[str, Any] = {"version": INFO_VERSION, "type": "DataTree", "name": tree.name}
        info["nodes"] = nodes
        datasets["/"].attrs[INFO_ATTR] = info
        prepared_tree = xr.DataTree.from_dict(datasets)
        with _quiet_consolidation():
            pending = prepared_tree.to_zarr(
                _store(location),
                mode="w-",
                zarr_format=3,
                consolidated=True,
                encoding=encoding,
                compute=options.compute,
                **extra,
            )
        return _union_footprints(footprints, tree), info, pending

    def _previous_info(self, obj: Any, options: WriteOptions) -> tuple[Location, dict[str, Any], Any]:
        """Location, group attributes and ``object_info`` of the version being extended."""
        import zarr

        previous = options.previous
        if previous is None:
            raise ValueError("mode='a' needs the previous version")
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
        return previous, old_attrs, old_info

    def _append(
        self, obj: Any, location: Location, options: WriteOptions, extra: dict[str, Any]
    ) -> tuple[Footprint, Mapping[str, Any], Any]:
        import zarr

        if options.append_dim is None:
            raise ValueError("mode='a' needs append_dim= (or region= to overwrite part of the data)")
        previous, old_attrs, old_info = self._previous_info(obj, options)
        obj = assign_crs(obj, options.crs)
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
        group = zarr.open_group(_store(previous, read_only=True), mode="r")
        rewritten, skipped = _append_targets(group, prepared, options.append_dim)
        _copy_version(previous, location, rewritten=rewritten, skipped=skipped)
        existing = set(group.array_keys())
        user = _user_encoding(obj, options.encoding, info)
        defaults = _merge_encoding(prepared, options.compression, {})
        encoding = {name: enc for name, enc in defaults.items() if name not in existing}
        for name, enc in user.items():
            encoding[name] = {**encoding.get(name, {}), **enc}
        prepared = _layout(prepared, encoding, options.compression, stored=group)
        with _quiet_consolidation():
            pending = prepared.to_zarr(
                _store(location),
                mode="a",
                append_dim=options.append_dim,
                zarr_format=3,
                consolidated=True,
                encoding=encoding,
                compute=options.compute,
                **extra,
            )
        combined = self.open(location, info)
        return raster_footprint(combined, crs=_effective_crs(combined, None)), info, pending

    def _write_region(
        self,
        obj: Any,
        location: Location,
        options: WriteOptions,
        region: Mapping[str, Any] | str,
        extra: dict[str, Any],
    ) -> tuple[Footprint, Mapping[str, Any], Any]:
        import zarr

        previous, _, old_info = self._previous_info(obj, options)
        obj = assign_crs(obj, options.crs)
        ds, _ = _to_dataset(obj, variable=old_info.get("variable"))
        if options.encoding:
            raise FormatError(
                "encoding= cannot change a stored array in a region write; the region takes "
                "the stored chunks and codecs"
            )
        group = zarr.open_group(_store(previous, read_only=True), mode="r")
        stored = self.open(previous, old_info)
        slices = _resolve_region(ds, stored, region)
        prepared, _ = _prepare(ds)
        outside = [
            n for n, v in prepared.variables.items() if n in prepared.dims or not set(v.dims) & set(slices)
        ]
        prepared = prepared.drop_vars(outside)
        missing = sorted(str(n) for n in prepared.variables if str(n) not in group)
        if missing:
            raise FormatError(
                f"region writes overwrite stored arrays; {missing} are not stored "
                f"(stored: {sorted(group.array_keys())})"
            )
        for var in prepared.variables.values():
            var.encoding = {}
            var.attrs = {}
        prepared.attrs = {}
        prepared = _align_to_region(prepared, group, slices)
        rewritten, skipped = _region_targets(group, prepared, slices)
        _copy_version(previous, location, rewritten=rewritten, skipped=skipped)
        extra.setdefault("safe_chunks", False)
        pending = prepared.to_zarr(
            _store(location),
            mode="r+",
            region=slices,
            zarr_format=3,
            consolidated=False,
            compute=options.compute,
            **extra,
        )
        combined = self.open(location, old_info)
        return raster_footprint(combined, crs=_effective_crs(combined, None)), old_info, pending

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
        node = nodes.get("/", {})
        ds = xr.open_zarr(_store(location, read_only=True), chunks=chunks, consolidated=True)
        for key in object_info.get("geo_attrs", []):
            ds.attrs.pop(key, None)
        ds = _restore(ds, node)
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



def _effective_crs(obj: xr.Dataset | xr.DataArray, crs: Any) -> Any:
    return crs if crs is not None else xarray_crs(obj)



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
    """Return a shallow copy of ``ds`` that ``to_zarr`` stores faithfully, and how to undo it.

    A ``_FillValue`` found in ``attrs`` (rioxarray's nodata) also
    becomes the Zarr array's ``fill_value``, which GDAL reports as nodata; the CF
    attribute itself is not written, so plain xarray readers get the raw values.
    """
    ds = ds.copy(deep=False)
    moved: dict[str, dict[str, Any]] = {}
    from_encoding: dict[str, list[str]] = {}
    non_index = [str(c) for c in ds.coords if c not in ds.dims]
    for name, var in ds.variables.items():
        attrs = dict(var.attrs)
        take = [k for k in attrs if _cf_coder_would_touch(k, attrs[k], var.dtype)]
        encoding = {k: v for k, v in var.encoding.items() if k not in _LAYOUT_ENCODINGS}
        if take:
            moved[str(name)] = {k: _encode_value(attrs.pop(k), str(name), k) for k in take}
            nodata = var.attrs.get("_FillValue")
            if _exposable_nodata(nodata, var.dtype, encoding):
                encoding["fill_value"] = nodata
        if var.chunks is not None:
            encoding.pop("chunks", None)
            encoding.pop("shards", None)
        if var.dtype.kind in "fc":
            encoding.setdefault("_FillValue", None)
        references = [k for k in _CF_REFERENCE_ENCODINGS if k in encoding and k not in attrs]
        if references:
            from_encoding[str(name)] = references
        if name in ds.data_vars and "coordinates" not in encoding:
            listed = [
                c for c in non_index if set(ds[c].dims) <= set(var.dims) and " " not in c
            ]
            if listed:
                encoding["coordinates"] = " ".join(sorted(listed))
        var.attrs = attrs
        var.encoding = encoding
    info: dict[str, Any] = {"coords": sorted(non_index)}
    if moved:
        info["attrs"] = moved
    if from_encoding:
        info["encoding"] = from_encoding
    return ds, info


def _exposable_nodata(value: Any, dtype: Any, encoding: Mapping[str, Any]) -> bool:
    """Whether ``value`` can be the Zarr ``fill_value`` of an array of ``dtype``."""
    import numpy as np

    if dtype.kind not in "iuf" or any(
        encoding.get(k) is not None for k in ("_FillValue", "missing_value", "scale_factor", "add_offset")
    ):
        return False
    if any(k in encoding for k in ("_Unsigned", "dtype")):
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


# -- chunk layout ------------------------------------------------------------------------


def choose_chunks(
    shape: Sequence[int],
    itemsize: int,
    dims: Sequence[str],
    *,
    spatial: Iterable[str] = (),
    dask_chunks: Sequence[Sequence[int]] | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Zarr chunks for an array, and the dask chunks to write it with.

    Chunks hold about :data:`CHUNK_BYTES` (1-8 MiB, aiming at 4 MiB). Non-spatial
    dimensions (time, band) are cut first, so a chunk is a full spatial plane (or a
    large square tile of it) before it spans many time steps.

    With dask chunks: regular chunks already in range are kept as they are; larger
    ones are cut into divisors of themselves (each dask task writes whole zarr
    chunks); smaller or irregular ones are merged into the chosen zarr chunks. An
    array smaller than the lower bound keeps regular dask chunks as they are.

    Parameters
    ----------
    shape : sequence of int
        Array shape.
    itemsize : int
        Bytes per element.
    dims : sequence of str
        Dimension names, in order.
    spatial : iterable of str
        The spatial dimension names among ``dims`` (x/y, lon/lat).
    dask_chunks : sequence of sequence of int, optional
        The array's dask chunks, if it is dask-backed.

    Returns
    -------
    tuple
        ``(zarr_chunks, dask_chunks)``; the second item is ``None`` when the dask
        chunks (if any) can be written as they are, else the regular chunk shape to
        rechunk to.

    Examples
    --------
    >>> choose_chunks((365, 2048, 2048), 4, ("time", "y", "x"), spatial=("x", "y"))
    ((1, 1024, 1024), None)
    >>> choose_chunks((365, 256, 256), 4, ("time", "y", "x"), spatial=("x", "y"))
    ((16, 256, 256), None)
    """
    low, _, high = CHUNK_BYTES
    shape = tuple(int(n) for n in shape)
    spatial = set(spatial)
    outer = [i for i, d in enumerate(dims) if d not in spatial]
    plane = [i for i, d in enumerate(dims) if d in spatial]
    if not plane and outer:
        plane = [outer.pop()]
    if dask_chunks is None:
        return _ideal_chunks(shape, itemsize, outer, plane), None
    regular = all(len(set(c[:-1])) <= 1 and (len(c) < 2 or c[-1] <= c[0]) for c in dask_chunks)
    if not regular:
        ideal = _ideal_chunks(shape, itemsize, outer, plane)
        return ideal, ideal
    current = tuple(max(1, int(c[0])) for c in dask_chunks)
    size = itemsize * math.prod(current)
    if low <= size <= high or itemsize * math.prod(shape) <= low:
        return current, None
    if size > high:
        ideal = _ideal_chunks(current, itemsize, outer, plane)
        zarr_chunks, dask_target, rechunk = [], [], False
        for have, want in zip(current, ideal, strict=True):
            divisor = _largest_divisor(have, want)
            if 2 * divisor >= want:
                zarr_chunks.append(divisor)
                dask_target.append(have)
            else:
                zarr_chunks.append(want)
                dask_target.append(want * max(1, have // want))
                rechunk = True
        return tuple(zarr_chunks), (tuple(dask_target) if rechunk else None)
    ideal = _ideal_chunks(shape, itemsize, outer, plane)
    grown = tuple(
        min(n, max(1, want // have) * have) for n, want, have in zip(shape, ideal, current, strict=True)
    )
    return grown, grown


def _ideal_chunks(
    shape: Sequence[int], itemsize: int, outer: Sequence[int], plane: Sequence[int]
) -> tuple[int, ...]:
    """Chunk shape of about the aimed-for size: cut ``outer`` dims first, then tile ``plane``."""
    _, target, high = CHUNK_BYTES
    chunks = [max(1, int(n)) for n in shape]
    for i in outer:
        if itemsize * math.prod(chunks) <= high:
            return tuple(chunks)
        rest = itemsize * math.prod(chunks) // chunks[i]
        chunks[i] = max(1, min(chunks[i], target // rest))
    if itemsize * math.prod(chunks) <= high:
        return tuple(chunks)
    remaining = max(1, target // (itemsize * math.prod(chunks[i] for i in outer)))
    by_size = sorted(plane, key=lambda i: chunks[i])
    for n, i in enumerate(by_size):
        side = max(1, int(remaining ** (1 / (len(by_size) - n))))
        if side >= 256:
            side -= side % 256
        chunks[i] = min(chunks[i], side)
        remaining = max(1, remaining // chunks[i])
    return tuple(chunks)


def _largest_divisor(n: int, limit: int) -> int:
    """Largest divisor of ``n`` that is at most ``limit``."""
    best = 1
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            for candidate in (d, n // d):
                if best < candidate <= limit:
                    best = candidate
    return best


def _shards(
    chunks: Sequence[int], shape: Sequence[int], itemsize: int, dims: Sequence[str], spatial: Iterable[str]
) -> tuple[int, ...] | None:
    """Shard shape of about :data:`SHARD_BYTES`, a multiple of ``chunks``; ``None`` for one chunk."""
    spatial = set(spatial)
    order = [i for i, d in enumerate(dims) if d not in spatial] + [
        i for i, d in enumerate(dims) if d in spatial
    ]
    shard = [int(c) for c in chunks]
    for i in order:
        size = itemsize * math.prod(shard)
        if size >= SHARD_BYTES:
            break
        room = SHARD_BYTES // (size // shard[i])
        whole = -(-int(shape[i]) // shard[i]) * shard[i]
        shard[i] = min(whole, max(1, room // shard[i]) * shard[i])
    if tuple(shard) == tuple(chunks):
        return None
    return tuple(shard)


def _layout(
    ds: xr.Dataset,
    encoding: dict[str, dict[str, Any]],
    level: CompressionLevel | str,
    *,
    stored: Any = None,
) -> xr.Dataset:
    """Fill in ``chunks`` (and ``shards``) in ``encoding``; rechunk dask data to match them.

    Arrays already in ``stored`` (the zarr group appended to) keep their layout, and
    the new data is aligned with it.
    """
    dims_xy = spatial_dims(ds)
    spatial = set(dims_xy or ())
    sharded = CompressionLevel(level) in SHARDED_LEVELS
    rechunked: dict[str, Any] = {}
    for name, var in ds.variables.items():
        key = str(name)
        if var.ndim == 0 or name in ds.dims or var.dtype.kind not in _SIZED_KINDS:
            continue
        target: tuple[int, ...] | None = None
        if stored is not None and key in stored:
            array = stored[key]
            grid = tuple(array.shards or array.chunks)
        elif "chunks" in encoding.get(key, {}):
            enc = encoding[key]
            grid = tuple(enc.get("shards") or enc["chunks"])
        else:
            enc = encoding.setdefault(key, {})
            chunks, target = choose_chunks(
                var.shape, var.dtype.itemsize, [str(d) for d in var.dims],
                spatial=spatial, dask_chunks=var.chunks,
            )
            enc["chunks"] = chunks
            grid = chunks
            if sharded and "shards" not in enc:
                shards = _shards(chunks, var.shape, var.dtype.itemsize, [str(d) for d in var.dims], spatial)
                if shards is not None:
                    enc["shards"] = shards
                    grid, target = shards, shards
        if var.chunks is None:
            continue
        wanted = {}
        for axis, (dim, have) in enumerate(zip(var.dims, var.chunks, strict=True)):
            step = grid[axis]
            if target is not None and target[axis] != have[0]:
                wanted[dim] = target[axis]
            elif any(c % step for c in have[:-1]):
                wanted[dim] = step
        if wanted:
            rechunked[key] = var.chunk(wanted)
    if not rechunked:
        return ds
    coords = {k: v for k, v in rechunked.items() if k in ds.coords}
    data = {k: v for k, v in rechunked.items() if k not in ds.coords}
    return ds.assign_coords(coords).assign(data)


def _chunk_index_ranges(array: Any, bounds: Mapping[int, tuple[int, int]]) -> list[range]:
    """Per axis, the stored-object (shard or chunk) indices overlapping ``bounds`` (all if absent)."""
    grid = tuple(array.shards or array.chunks)
    ranges = []
    for axis, (size, step) in enumerate(zip(array.shape, grid, strict=True)):
        if axis in bounds:
            start, stop = bounds[axis]
            ranges.append(range(start // step, -(-stop // step)) if stop > start else range(0))
        else:
            ranges.append(range(-(-size // step)))
    return ranges


def _object_keys(array: Any, ranges: Sequence[range]) -> set[str]:
    """Store keys (relative to the group) of the stored objects in the index ``ranges``."""
    return {
        f"{array.path}/{array.metadata.encode_chunk_key(coords)}"
        for coords in itertools.product(*ranges)
    }


def _append_targets(group: Any, ds: xr.Dataset, append_dim: str) -> tuple[set[str], set[str]]:
    """Files an append rewrites in place (copied) and files it replaces entirely (not carried)."""
    rewritten: set[str] = set()
    replaced: set[str] = set()
    for name, array in group.arrays():
        dims = tuple(array.metadata.dimension_names or ())
        if name not in ds.variables:
            continue
        if append_dim not in dims:
            replaced |= _object_keys(array, _chunk_index_ranges(array, {}))
            continue
        axis = dims.index(append_dim)
        size = array.shape[axis]
        step = tuple(array.shards or array.chunks)[axis]
        if size % step:
            rewritten |= _object_keys(array, _chunk_index_ranges(array, {axis: (size, size + 1)}))
    return rewritten, replaced


def _region_targets(group: Any, ds: xr.Dataset, slices: Mapping[str, slice]) -> tuple[set[str], set[str]]:
    """Files a region write changes in part (copied) and covers entirely (not carried)."""
    rewritten: set[str] = set()
    replaced: set[str] = set()
    for name in ds.variables:
        array = group[str(name)]
        dims = tuple(array.metadata.dimension_names or ())
        grid = tuple(array.shards or array.chunks)
        bounds = {dims.index(d): (s.start, s.stop) for d, s in slices.items() if d in dims}
        touched = _object_keys(array, _chunk_index_ranges(array, bounds))
        inner: dict[int, tuple[int, int]] = {}
        for axis, (start, stop) in bounds.items():
            step = grid[axis]
            end = stop if stop == array.shape[axis] else stop // step * step
            inner[axis] = (-(-start // step) * step, end)
        full_ranges = [
            range(-(-inner[a][0] // grid[a]), -(-inner[a][1] // grid[a])) if a in inner else r
            for a, r in enumerate(_chunk_index_ranges(array, {}))
        ]
        covered = _object_keys(array, full_ranges)
        replaced |= covered
        rewritten |= touched - covered
    return rewritten, replaced


def _resolve_region(ds: xr.Dataset, stored: Any, region: Mapping[str, Any] | str) -> dict[str, slice]:
    """Integer slices of the stored version that ``ds`` overwrites."""
    import numpy as np

    stored_ds = stored if hasattr(stored, "data_vars") else stored.to_dataset(name="_")
    if region == "auto":
        region = {}
        for dim in ds.dims:
            if dim in ds.indexes and dim in stored_ds.indexes:
                region[str(dim)] = "auto"
    if not isinstance(region, Mapping) or not region:
        raise FormatError(
            f"region= must map dimension names to slices or 'auto', or be 'auto'; got {region!r}"
        )
    slices: dict[str, slice] = {}
    for dim, spec in region.items():
        if dim not in ds.dims or dim not in stored_ds.dims:
            raise FormatError(f"region dimension {dim!r} is not a dimension of both the data and the store")
        size = stored_ds.sizes[dim]
        if spec == "auto":
            positions = stored_ds.indexes[dim].get_indexer(ds.indexes[dim])
            if (positions < 0).any() or not (np.diff(positions) == 1).all():
                raise FormatError(
                    f"region {dim!r}='auto': the coordinates of {dim!r} are not a contiguous "
                    "run of the stored ones"
                )
            spec = slice(int(positions[0]), int(positions[-1]) + 1)
        if not isinstance(spec, slice) or spec.step not in (None, 1):
            raise FormatError(f"region[{dim!r}] must be a slice with step 1 or 'auto', got {spec!r}")
        start, stop, _ = spec.indices(size)
        if stop - start != ds.sizes[dim]:
            raise FormatError(
                f"region[{dim!r}] covers {stop - start} positions but the data has {ds.sizes[dim]}"
            )
        slices[str(dim)] = slice(start, stop)
    return slices


def _align_to_region(ds: xr.Dataset, group: Any, slices: Mapping[str, slice]) -> xr.Dataset:
    """Rechunk dask data so each dask chunk covers whole stored objects of the region."""
    changed: dict[str, Any] = {}
    for name, var in ds.variables.items():
        if var.chunks is None:
            continue
        array = group[str(name)]
        grid = tuple(array.shards or array.chunks)
        dims = tuple(array.metadata.dimension_names or ())
        wanted: dict[Any, tuple[int, ...]] = {}
        for dim, have in zip(var.dims, var.chunks, strict=True):
            step = grid[dims.index(dim)]
            offset = slices[dim].start if dim in slices else 0
            size = sum(have)
            first = min(size, (step - offset % step) % step or step)
            sizes = [first] + [step] * ((size - first) // step)
            if sum(sizes) < size:
                sizes.append(size - sum(sizes))
            if tuple(sizes) != tuple(have):
                wanted[dim] = tuple(sizes)
        if wanted:
            changed[str(name)] = var.chunk(wanted)
    if not changed:
        return ds
    coords = {k: v for k, v in changed.items() if k in ds.coords}
    data = {k: v for k, v in changed.items() if k not in ds.coords}
    return ds.assign_coords(coords).assign(data)


# -- what other readers see ----------------------------------------------------------------


def _geo_attrs(ds: xr.Dataset) -> dict[str, Any]:
    """GeoZarr-style group attributes: CRS (``proj:``) and affine grid (``spatial:``)."""
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


def _copy_version(
    source: Location, target: Location, *, rewritten: set[str], skipped: set[str]
) -> None:
    """Carry the files of ``source`` into the new version ``target``.

    Files in ``skipped`` are about to be replaced entirely and are not carried. Files
    in ``rewritten`` and every metadata document (``zarr.json``) are real copies;
    every other file is shared: a hard link on a local filesystem (versions are
    immutable, and zarr replaces files by rename, never in place), a server-side copy
    on the same object store, else a streamed copy.
    """
    src_root = source.full_path.rstrip("/")
    dst_root = target.full_path.rstrip("/")
    relative = [
        posixpath.relpath(p, src_root)
        for p, detail in source.fs.find(src_root, detail=True).items()
        if detail["type"] == "file"
    ]
    carried = [r for r in relative if r not in skipped]
    if source.is_local and target.is_local:
        for rel in carried:
            src, dst = os.path.join(src_root, rel), os.path.join(dst_root, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if rel in rewritten or posixpath.basename(rel) == "zarr.json":
                shutil.copyfile(src, dst)
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        return
    same_store = source.fs is target.fs or (
        source.fs.protocol == target.fs.protocol and source.storage_options == target.storage_options
    )
    if same_store and carried:
        source.fs.copy(
            [posixpath.join(src_root, r) for r in carried],
            [posixpath.join(dst_root, r) for r in carried],
        )
        return
    for rel in carried:
        target.fs.pipe_file(posixpath.join(dst_root, rel), source.fs.cat_file(posixpath.join(src_root, rel)))


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
