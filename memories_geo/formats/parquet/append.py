"""Appends: a new version made of the previous version's files plus files for the new rows.

The previous version's files are shared, not rewritten (hard links on a local filesystem,
server-side copies on the same object store, see
:func:`memories_geo.formats.zarr.copy_on_write.copy_version`), and their digests are taken
from its file index, so an append costs the new rows only. Rows whose time (and station,
and real partition values) are already stored are refused, skipped or replaced as
``on_duplicate=`` says; a replace rewrites only the files holding the replaced rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from memories_geo.crs import crs_to_string
from memories_geo.errors import DuplicateTimesError, OptionError, UnsupportedObjectError
from memories_geo.formats.parquet.files import COMMON_METADATA, StoredIndex, read_index, write_index
from memories_geo.formats.parquet.frame import describe
from memories_geo.formats.parquet.layout import NAT, iso_time, time_ints
from memories_geo.formats.parquet.read import plan_read
from memories_geo.formats.parquet.write import (
    Rows,
    arrow_rows,
    footprint,
    lay_out,
    manifest_of,
    summary,
    write_rows,
)
from memories_geo.query import OpenRequest

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from memories_geo.backends.base import Location
    from memories_geo.footprint import Footprint
    from memories_geo.formats.parquet.options import WriteSettings
    from memories_geo.integrity import Manifest

__all__ = ["append", "duplicate_keys"]


def _fixed_layout(old: Mapping[str, Any], settings: WriteSettings) -> WriteSettings:
    """``settings`` with the stored layout, refusing layout keywords that would change it."""
    stored = {
        "partition_cols": tuple(old["partition_cols"]),
        "time_column": old["time"]["name"],
        "station_column": old["station"],
    }
    given = {
        "partition_cols": settings.partition_cols,
        "time_column": settings.time_column,
        "station_column": settings.station_column,
    }
    changed = [k for k in stored if k in settings.given and given[k] != stored[k]]
    if changed:
        raise OptionError(
            f"{changed} cannot change in an append: the version stores {({k: stored[k] for k in changed})}; "
            "leave them out, or save the combined frame with mode='w'"
        )
    return replace(settings, partition_cols=stored["partition_cols"],
                   time_column=stored["time_column"], station_column=stored["station_column"])


def _checked(frame: pd.DataFrame, old: Mapping[str, Any], settings: WriteSettings) -> pd.DataFrame:
    """``frame`` with its columns in the stored order, after checking it fits the stored version."""
    if type(frame).__name__ != old["type"]:
        raise UnsupportedObjectError(f"cannot append a {type(frame).__name__} to a stored {old['type']}")
    missing = [c for c in old["columns"] if c not in frame.columns]
    extra = [c for c in frame.columns if c not in old["columns"]]
    if missing or extra:
        raise UnsupportedObjectError(
            f"cannot append: columns differ from the stored ones (missing: {missing}, unexpected: "
            f"{extra}); appended rows need exactly the columns {old['columns']}"
        )
    frame = frame[list(old["columns"])]
    new = describe(frame, settings)
    changed = [f"{c!r}: stored {old['dtypes'][c]}, new {new['dtypes'][c]}"
               for c in old["columns"] if old["dtypes"][c] != new["dtypes"][c]]
    changed += [f"{c!r}: categories differ" for c in old["categories"]
                if c in new["categories"] and new["categories"][c] != old["categories"][c]]
    if changed:
        raise UnsupportedObjectError(
            f"cannot append: column types would change ({', '.join(changed)}); cast the new rows "
            "to the stored types first (df.astype(...))"
        )
    old_index, new_index = old["index"], new["index"]
    if old_index["kind"] == "range" and _unnamed_integers(frame.index):
        new_index = old_index
    if old_index["kind"] != new_index["kind"] or (
        old_index["kind"] == "fields"
        and (old_index["names"] != new_index["names"] or old_index["dtypes"] != new_index["dtypes"])
    ):
        raise UnsupportedObjectError(
            f"cannot append: the index ({_index_text(new_index)}) differs from the stored one "
            f"({_index_text(old_index)})"
        )
    if old["geometry"] is not None:
        if str(frame.geometry.name) != old["geometry"]:
            raise UnsupportedObjectError(
                f"cannot append: the geometry column is {frame.geometry.name!r}, the stored one "
                f"{old['geometry']!r}; rename it with gdf.rename_geometry({old['geometry']!r})"
            )
        if crs_to_string(frame.crs) != old["crs"]:
            raise UnsupportedObjectError(
                f"cannot append rows in CRS {crs_to_string(frame.crs)!r} to a series stored in "
                f"{old['crs']!r}; reproject them first with gdf.to_crs(...)"
            )
    return frame


def _unnamed_integers(index: Any) -> bool:
    """Whether ``index`` holds row numbers only (a slice of a RangeIndex frame): not stored, renumbered."""
    import pandas as pd

    return index.nlevels == 1 and index.name is None and pd.api.types.is_integer_dtype(index.dtype)


def _index_text(index: Mapping[str, Any]) -> str:
    if index["kind"] == "range":
        return "a RangeIndex"
    return f"levels {index['names']} of dtypes {index['dtypes']}"


def _key_names(info: Mapping[str, Any]) -> list[str]:
    real = [c for c in info["partition_cols"] if c not in info["derived"]]
    station = [info["station"]] if info["station"] else []
    return station + [c for c in real if c not in station]


def _keys(table: pa.Table, info: Mapping[str, Any], partition: Mapping[str, Any]) -> list[Any]:
    """Key arrays of ``table``'s rows: time integers, then station and real partition values."""
    keys: list[Any] = [time_ints(table.column(info["time"]["field"]))]
    for name in _key_names(info):
        if name in table.column_names:
            keys.append(table.column(name).to_pandas().to_numpy(dtype=object))
        else:
            keys.append(np.full(table.num_rows, partition.get(name), dtype=object))
    return keys


def _key_index(keys: Sequence[Any]) -> Any:
    import pandas as pd

    return pd.MultiIndex.from_arrays(list(keys)) if len(keys) > 1 else pd.Index(keys[0])


def duplicate_keys(table: pa.Table, previous: Location,
                   stored: StoredIndex) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Stored row with the same key as each row of ``table``, and the stored files holding them.

    Keys are the time, the station (when there is a station column) and the real
    partition columns; a missing time matches nothing. Only files whose time range meets
    the new rows' are read, and only their key columns, pruned to that time range by
    row-group statistics.

    Returns
    -------
    positions : numpy.ndarray of int64
        For each row of ``table``, the position (hidden row field) of the stored row with
        the same key, or -1.
    stored_rows : dict
        Relative path of each stored file holding such rows -> their positions.

    Examples
    --------
    >>> stored = read_index(previous.fs, previous.full_path)  # doctest: +SKIP
    >>> positions, files = duplicate_keys(new_rows, previous, stored)  # doctest: +SKIP
    >>> (positions >= 0).sum()  # doctest: +SKIP
    24
    """
    import pandas as pd

    info = stored.info
    keys = _keys(table, info, {})
    present = keys[0][keys[0] != NAT]
    positions = np.full(table.num_rows, -1, dtype=np.int64)
    found: dict[str, np.ndarray] = {}
    if not present.size:
        return positions, found
    unit = table.schema.field(info["time"]["field"]).type.unit
    span = (pd.Timestamp(int(present.min()), unit=unit), pd.Timestamp(int(present.max()), unit=unit))
    fields = [info["time"]["field"], *_key_names(info), info["row_field"]]
    wanted = _key_index(keys)
    for entry in stored.files:
        single = StoredIndex(stored.schema, info, [entry])
        plan = plan_read(previous.full_path, info, OpenRequest(time=span), filesystem=previous.fs,
                         stored=single)
        if not plan.files:
            continue
        theirs_table = plan.dataset.to_table(columns=fields, filter=plan.filter)
        if not theirs_table.num_rows:
            continue
        theirs = _key_index(_keys(theirs_table, info, entry["partition"]))
        hit = np.asarray(theirs.isin(wanted))
        if not hit.any():
            continue
        rows = theirs_table.column(info["row_field"]).to_numpy()[hit]
        found[entry["path"]] = rows
        unique = ~theirs[hit].duplicated()
        at = theirs[hit][unique].get_indexer(wanted)
        fresh = (at >= 0) & (positions < 0)
        positions[fresh] = rows[unique][at[fresh]]
    return positions, found


def _refuse(table: pa.Table, info: Mapping[str, Any], incoming: np.ndarray) -> None:
    times = time_ints(table.column(info["time"]["field"]))[incoming]
    unit = table.schema.field(info["time"]["field"]).type.unit
    what = "times"
    if info["station"]:
        stations = table.column(info["station"]).to_pandas().to_numpy(dtype=object)[incoming]
        what = f"times for {len(set(stations.tolist()))} station(s) of column {info['station']!r}"
    low, high = iso_time(int(times.min()), unit), iso_time(int(times.max()), unit)
    raise DuplicateTimesError(
        f"{int(incoming.sum())} of the {table.num_rows} rows to append are already stored ({what} "
        f"from {low} to {high}); pass on_duplicate='skip' to leave them out, "
        "on_duplicate='replace' to overwrite the stored rows, or keep on_duplicate='error' "
        "(the default) and remove them yourself"
    )


def _rewrite(previous: Location, location: Location, stored: StoredIndex, path: str,
             drop: np.ndarray, settings: WriteSettings) -> list[dict[str, Any]]:
    """Write file ``path`` again without the rows at positions ``drop``; return its new entries."""
    import pyarrow as pa
    import pyarrow.compute as pc

    info = stored.info
    entry = next(f for f in stored.files if f["path"] == path)
    plan = plan_read(previous.full_path, info, OpenRequest(), filesystem=previous.fs,
                     stored=StoredIndex(stored.schema, info, [entry]))
    table = plan.dataset.to_table(columns=stored.schema.names)
    kept = pc.invert(pc.is_in(table.column(info["row_field"]), value_set=pa.array(drop)))
    table = table.filter(kept).cast(stored.schema.remove_metadata())
    table = table.replace_schema_metadata(stored.schema.metadata)
    rows = Rows(table, [(0, table.num_rows)], [dict(entry["partition"])])
    return write_rows(location, rows, info, settings)


def _positions(matched: np.ndarray, first_row: int) -> tuple[np.ndarray, int]:
    """Positions of appended rows: a replaced row takes the place of the row it replaces.

    Rows with no stored twin (and all but the first of several rows replacing the same
    stored row) go after the stored rows, from ``first_row`` on.
    """
    import pandas as pd

    taken = matched >= 0
    taken &= ~pd.Series(np.where(taken, matched, -1 - np.arange(len(matched)))).duplicated().to_numpy()
    positions = matched.copy()
    new = ~taken
    positions[new] = first_row + np.arange(int(new.sum()), dtype=np.int64)
    return positions, int(new.sum())


def append(frame: pd.DataFrame, location: Location, previous: Location,
           settings: WriteSettings) -> tuple[Footprint, dict[str, Any], Manifest]:
    """Write the version at ``location``: the one at ``previous`` plus the rows of ``frame``.

    Raises
    ------
    UnsupportedObjectError
        When ``frame`` does not fit the stored series (type, columns, dtypes, index, CRS).
    OptionError
        When layout keywords (``partition_cols``, ``time_column``, ``station_column``)
        differ from the stored ones.
    DuplicateTimesError
        With ``on_duplicate="error"``, when rows with stored times (per station) are
        appended; the message gives their time range and the three choices.

    Examples
    --------
    >>> footprint, info, manifest = append(day, location, previous, settings)  # doctest: +SKIP
    >>> info["rows"]  # doctest: +SKIP
    26328
    """
    import pyarrow as pa

    from memories_geo.formats.zarr.copy_on_write import copy_version

    stored = read_index(previous.fs, previous.full_path)
    old = stored.info
    settings = _fixed_layout(old, settings)
    frame = _checked(frame, old, settings)
    table = arrow_rows(frame, old, stored.schema)
    matched, found = duplicate_keys(table, previous, stored)
    incoming = matched >= 0
    if incoming.any() and settings.on_duplicate == "error":
        _refuse(table, old, incoming)
    if settings.on_duplicate == "skip":
        table, matched, found = table.filter(pa.array(~incoming)), matched[~incoming], {}
    first_row = int(old["next_row"])
    positions, added = _positions(matched, first_row)
    copy_version(previous, location, rewritten=set(), skipped={*found, COMMON_METADATA})
    files = [f for f in stored.files if f["path"] not in found]
    for path, replaced in found.items():
        files += _rewrite(previous, location, stored, path, replaced, settings)
    files += write_rows(location, lay_out(table, old, positions), old, settings)
    info = summary({**old, "next_row": first_row + added,
                    "attrs": {**dict(frame.attrs), **old["attrs"]}}, files)
    digest = write_index(location, stored.schema, info, files)
    return footprint(info), info, manifest_of(location, files, digest)
