"""Extend the previous version into a new one: appends along a dimension and region writes.

The previous version's files are carried into the new one (see
:mod:`memories_geo.formats.zarr.copy_on_write`), then ``to_zarr`` writes only what changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.errors import FormatError, UnsupportedObjectError
from memories_geo.footprint import Footprint, xarray_footprint
from memories_geo.formats.zarr.cf import INFO_ATTR, prepare, to_dataset
from memories_geo.formats.zarr.copy_on_write import (
    append_targets,
    copy_version,
    region_targets,
    resolve_region,
)
from memories_geo.formats.zarr.encoding import merge_encoding, user_encoding
from memories_geo.formats.zarr.layout import align_to_region, apply_layout
from memories_geo.formats.zarr.reader import open_version
from memories_geo.formats.zarr.shared import SHARES_FILES
from memories_geo.formats.zarr.store import Written, open_group, write_zarr
from memories_geo.formats.zarr.writer import checked_crs
from memories_geo.integrity import Manifest
from memories_geo.query import OpenRequest

if TYPE_CHECKING:
    from memories_geo.backends.base import Location
    from memories_geo.formats.base import WriteOptions
    from memories_geo.integrity import FileDigest

__all__ = ["append", "write_region"]


def append(
    obj: Any, location: Location, options: WriteOptions, extra: Mapping[str, Any], *,
    digests: dict[str, FileDigest] | None = None,
) -> Written:
    """New version at ``location``: the previous one plus ``obj`` along ``options.append_dim``.

    Raises
    ------
    ValueError
        Without ``append_dim``, or when it is not a dimension of ``obj``.
    UnsupportedObjectError
        When the previous version is of another type or cannot be appended to.
    """
    if options.append_dim is None:
        raise ValueError("mode='a' needs append_dim= (or region= to overwrite part of the data)")
    previous, old_attrs, old_info = _previous(obj, options)
    obj = checked_crs(obj, options.crs)
    ds, _ = to_dataset(obj, variable=old_info.get("variable"))
    if options.append_dim not in ds.dims:
        raise ValueError(
            f"append_dim={options.append_dim!r} is not a dimension of the object (dims: {tuple(ds.dims)})"
        )
    prepared, node = prepare(ds)
    old_node = old_info["nodes"]["/"]
    merged = {
        "coords": sorted({*old_node.get("coords", []), *node["coords"]}),
        "attrs": {**node.get("attrs", {}), **old_node.get("attrs", {})},
        "encoding": {**node.get("encoding", {}), **old_node.get("encoding", {})},
        "dtypes": {**node.get("dtypes", {}), **old_node.get("dtypes", {})},
        "nulls": {**node.get("nulls", {}), **old_node.get("nulls", {})},
    }
    info = {**dict(old_info), "nodes": {"/": {k: v for k, v in merged.items() if v}}}
    prepared.attrs = {**old_attrs, INFO_ATTR: info}
    group = open_group(previous)
    rewritten, skipped = append_targets(group, prepared, options.append_dim)
    carried = copy_version(previous, location, rewritten=rewritten, skipped=skipped, share=True)
    existing = set(group.array_keys())
    user = user_encoding(obj, options.encoding, info)
    defaults = merge_encoding(prepared, options.compression, {})
    encoding = {name: enc for name, enc in defaults.items() if name not in existing}
    for name, enc in user.items():
        encoding[name] = {**encoding.get(name, {}), **enc}
    prepared = apply_layout(prepared, encoding, options.compression, stored=group)
    pending = write_zarr(
        prepared,
        location,
        mode="a",
        compute=options.compute,
        encoding=encoding,
        extra=extra,
        append_dim=options.append_dim,
        digests=digests,
    )
    return Written(_footprint(location, info, carried), _with_sharing(info, carried), pending, carried)


def write_region(
    obj: Any,
    location: Location,
    options: WriteOptions,
    region: Mapping[str, Any] | str,
    extra: Mapping[str, Any],
    *,
    digests: dict[str, FileDigest] | None = None,
) -> Written:
    """New version at ``location``: the previous one with ``region`` overwritten by ``obj``.

    Raises
    ------
    FormatError
        With ``encoding=``, for a region that does not fit the stored data, or for
        variables that are not stored.
    """
    previous, _, old_info = _previous(obj, options)
    obj = checked_crs(obj, options.crs)
    ds, _ = to_dataset(obj, variable=old_info.get("variable"))
    if options.encoding:
        raise FormatError(
            "encoding= cannot change a stored array in a region write; the region takes "
            "the stored chunks and codecs"
        )
    group = open_group(previous)
    stored = open_version(previous, {**old_info, SHARES_FILES: True}, OpenRequest())
    slices = resolve_region(ds, stored, region)
    prepared, _ = prepare(ds)
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
    prepared = align_to_region(prepared, group, slices)
    rewritten, skipped = region_targets(group, prepared, slices)
    carried = copy_version(previous, location, rewritten=rewritten, skipped=skipped, share=True)
    pending = write_zarr(
        prepared,
        location,
        mode="r+",
        compute=options.compute,
        extra={"safe_chunks": False, **extra},
        region=slices,
        digests=digests,
    )
    footprint = _footprint(location, old_info, carried)
    return Written(footprint, _with_sharing(old_info, carried), pending, carried)


def _previous(obj: Any, options: WriteOptions) -> tuple[Location, dict[str, Any], Mapping[str, Any]]:
    """Location, group attributes and ``object_info`` of the version being extended."""
    previous = options.previous
    if previous is None:
        raise ValueError("mode='a' needs the previous version")
    old_attrs: dict[str, Any] = dict(open_group(previous).attrs.asdict())
    old_info: Any = old_attrs.get(INFO_ATTR)
    if not isinstance(old_info, Mapping) or old_info.get("type") == "DataTree":
        raise UnsupportedObjectError(
            "the previous version cannot be appended to (it is a DataTree or was not "
            "written by memories_geo); save the combined object with mode='w'"
        )
    if old_info["type"] != type(obj).__name__:
        raise UnsupportedObjectError(f"cannot append a {type(obj).__name__} to a stored {old_info['type']}")
    return previous, old_attrs, old_info


def _footprint(location: Location, info: Mapping[str, Any], carried: Manifest) -> Footprint:
    """Footprint of the combined version, from its coordinates."""
    combined = open_version(location, info, OpenRequest(), checked=False, shared=carried.shared)
    return xarray_footprint(combined)


def _with_sharing(info: Mapping[str, Any], carried: Manifest) -> dict[str, Any]:
    """``info`` flagged when the version shares files with the one it extends."""
    flagged = {k: v for k, v in info.items() if k != SHARES_FILES}
    if carried.shared:
        flagged[SHARES_FILES] = True
    return flagged
