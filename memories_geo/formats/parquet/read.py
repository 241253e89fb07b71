"""Reading a version: files pruned from the index, row groups by statistics, rows in saved order.

``time=`` and ``bbox=`` first drop the files whose recorded time range or bounding box
misses the request (nothing is opened for them), then become a pyarrow filter that
skips row groups by their statistics; ``filters=`` prune partitions by their values and
row groups likewise. Rows come back in the order they were saved.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from memories_geo.errors import OptionError
from memories_geo.formats.arrow_time import time_filter
from memories_geo.formats.parquet.files import StoredIndex, read_index
from memories_geo.formats.parquet.frame import to_frame
from memories_geo.query import OpenRequest

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from fsspec import AbstractFileSystem

    from memories_geo.operations import ReadTally

__all__ = ["ReadPlan", "plan_read", "read_timeseries"]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ReadPlan:
    """What a read will open, and how it filters.

    Attributes
    ----------
    files : list of str
        Paths (on the filesystem) of the data files left after pruning by the file
        index; only these can be opened.
    dataset : pyarrow.dataset.FileSystemDataset
        Those files, with their partition values.
    filter : pyarrow.dataset.Expression or None
        Row filter (time, bbox candidates, ``filters=``), pushed to partitions and
        row-group statistics.
    fields : list of str
        Fields read.
    columns : list of str
        Columns of the frame returned, in order.
    box : tuple or None
        Bbox in the layer's CRS, for the exact geometry test after reading.
    filtered : bool
        Whether rows are selected (``time``, ``bbox`` or ``filters`` given).

    Examples
    --------
    >>> plan = plan_read(root, info, open_request(time="2024-03"))  # doctest: +SKIP
    >>> plan.row_groups()  # doctest: +SKIP
    2
    """

    files: list[str]
    dataset: Any
    filter: Any
    fields: list[str]
    columns: list[str]
    box: Box | None
    filtered: bool
    stored: StoredIndex = field(repr=False)
    #: Bytes of the files left after pruning by the file index (what the read may fetch).
    nbytes: int = 0

    def fragments(self) -> list[str]:
        """Paths of the files the scan opens (partition values pruned by ``filter`` too)."""
        return [f.path for f in self.dataset.get_fragments(filter=self.filter)]

    def row_groups(self) -> int:
        """Number of row groups the scan reads once statistics have pruned the rest."""
        return sum(
            len(f.split_by_row_group(self.filter)) for f in self.dataset.get_fragments(filter=self.filter)
        )


def _user_filter(filters: Any) -> Any:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    if filters is None or isinstance(filters, ds.Expression):
        return filters
    try:
        return pq.filters_to_expression(filters)
    except (TypeError, ValueError) as exc:
        raise OptionError(
            f"filters= takes pyarrow filters: a list of (column, op, value) tuples, a list of such "
            f"lists (OR of ANDs), or a pyarrow.dataset expression; got {filters!r} ({exc})"
        ) from exc


def _dataset_schema(stored: StoredIndex) -> pa.Schema:
    """The stored schema with derived partitions added and partition dictionaries decoded."""
    import pyarrow as pa

    info = stored.info
    schema = stored.schema
    for name in info["partition_cols"]:
        if name in info["derived"]:
            schema = schema.append(pa.field(name, pa.int32()))
        else:
            i = schema.get_field_index(name)
            kind = schema.field(i).type
            if pa.types.is_dictionary(kind):
                schema = schema.set(i, pa.field(name, kind.value_type))
    return schema


def _partition_expression(schema: pa.Schema, partition: Mapping[str, Any]) -> Any:
    import pyarrow as pa
    import pyarrow.dataset as ds

    expression = ds.scalar(True)
    for name, value in partition.items():
        column = ds.field(name)
        if value is None:
            expression = expression & column.is_null()
        else:
            expression = expression & (column == pa.scalar(value, type=schema.field(name).type))
    return expression


def _overlaps(span: Sequence[str] | None, time: tuple[Any, Any]) -> bool:
    import pandas as pd

    if span is None:
        return False
    start, end = time
    return not ((start is not None and pd.Timestamp(span[1]) < start)
                or (end is not None and pd.Timestamp(span[0]) > end))


def _intersects(box: Sequence[float] | None, wanted: Box) -> bool:
    if box is None:
        return False
    return not (box[0] > wanted[2] or box[1] > wanted[3] or box[2] < wanted[0] or box[3] < wanted[1])


def _arrow_filesystem(filesystem: AbstractFileSystem | None) -> Any:
    """The pyarrow local filesystem for a plain local fsspec one (fast path), else ``filesystem`` wrapped."""
    import pyarrow.fs

    if filesystem is None:
        return pyarrow.fs.LocalFileSystem()
    from fsspec.implementations.local import LocalFileSystem

    if type(filesystem) is LocalFileSystem:
        return pyarrow.fs.LocalFileSystem()
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(filesystem))


def _columns(info: Mapping[str, Any], asked: Sequence[str] | None) -> list[str]:
    stored = list(info["columns"])
    if asked is None:
        return stored
    missing = [c for c in asked if c not in stored]
    if missing:
        raise OptionError(f"columns {missing} are not stored; columns: {stored}")
    out = list(dict.fromkeys(asked))
    time = info["time"]
    if not time["in_index"] and time["name"] not in out:
        out.append(time["name"])
    if info["geometry"] is not None and info["geometry"] not in out:
        out.append(info["geometry"])
    return out


def plan_read(root: str, info: Mapping[str, Any], request: OpenRequest, *,
              filesystem: AbstractFileSystem | None = None, stored: StoredIndex | None = None) -> ReadPlan:
    """Decide which files, fields and filter a read of the version at ``root`` needs.

    Parameters
    ----------
    root : str
        The version's directory on ``filesystem``.
    info : mapping
        The version's ``object_info``.
    request : OpenRequest
        ``time``, ``bbox``/``bbox_crs``, ``columns`` and ``options["filters"]``.
    filesystem : fsspec.AbstractFileSystem, optional
        Where ``root`` is (default: the local filesystem).
    stored : StoredIndex, optional
        The version's index, when already read.

    Raises
    ------
    OptionError
        ``bbox=`` on a frame without geometry, unknown ``columns``, or malformed ``filters``.

    Examples
    --------
    >>> plan = plan_read(root, info, open_request(time="2024-03"))  # doctest: +SKIP
    >>> plan.fragments()  # doctest: +SKIP
    ['.../year=2024/part-3f2a9c1d0e4b.parquet']
    """
    import pyarrow.dataset as ds

    if stored is None:
        from fsspec.implementations.local import LocalFileSystem

        stored = read_index(filesystem or LocalFileSystem(), root)
    schema = _dataset_schema(stored)
    files = sorted(stored.files, key=lambda f: int(f["first_row"]))
    expression = _user_filter(request.options.get("filters"))
    filtered = expression is not None
    if request.time is not None:
        files = [f for f in files if _overlaps(f["time"], request.time)]
        span = time_filter(schema.field(info["time"]["field"]), request.time)
        expression = span if expression is None else expression & span
        filtered = True
    box = None
    if request.bbox is not None:
        if info["geometry"] is None:
            raise OptionError(
                "bbox= selects rows by their geometry, and this time series has none "
                f"(columns: {list(info['columns'])}); open it without bbox=, or save a GeoDataFrame"
            )
        box = cast(Box, request.bbox_in(info["crs"]))
        files = [f for f in files if _intersects(f["bbox"], box)]
        covering = info.get("covering")
        if covering:
            candidates = ~((ds.field(covering, "xmin") > box[2]) | (ds.field(covering, "ymin") > box[3])
                           | (ds.field(covering, "xmax") < box[0]) | (ds.field(covering, "ymax") < box[1]))
            expression = candidates if expression is None else expression & candidates
        filtered = True
    columns = _columns(info, request.columns)
    index = info["index"]
    fields = list(columns)
    fields += [f for f in (index.get("fields") or []) if f not in fields]
    fields.append(info["row_field"])
    paths = [posixpath.join(root, f["path"]) for f in files]
    dataset = ds.FileSystemDataset.from_paths(
        paths, schema=schema, format=ds.ParquetFileFormat(), filesystem=_arrow_filesystem(filesystem),
        partitions=[_partition_expression(schema, f["partition"]) for f in files],
    )
    return ReadPlan(paths, dataset, expression, fields, columns, box, filtered, stored,
                    nbytes=sum(int(f.get("size", 0)) for f in files))


def _in_saved_order(table: pa.Table, row_field: str) -> pa.Table:
    import pyarrow as pa

    positions = table.column(row_field).to_numpy()
    table = table.drop_columns([row_field])
    if positions.size < 2 or bool((np.diff(positions) > 0).all()):
        return table
    low = int(positions.min())
    if int(positions.max()) - low + 1 == positions.size:
        order = np.empty(positions.size, dtype=np.int64)
        order[positions - low] = np.arange(positions.size)
    else:
        order = np.argsort(positions, kind="stable")
    return table.take(pa.array(order))


def _refined(frame: Any, box: Box, info: Mapping[str, Any]) -> Any:
    import pandas as pd
    import shapely

    mask = frame.geometry.intersects(shapely.box(*box)).to_numpy()
    if mask.all():
        return frame
    frame = frame[mask]
    if info["index"]["kind"] == "range":
        frame.index = pd.RangeIndex(len(frame), name=info["index"]["name"])
    return frame


def read_timeseries(root: str, info: Mapping[str, Any], request: OpenRequest | None = None, *,
                    filesystem: AbstractFileSystem | None = None,
                    stored: StoredIndex | None = None, reads: ReadTally | None = None) -> pd.DataFrame:
    """Read the version at ``root`` as the DataFrame or GeoDataFrame that was saved.

    Parameters are those of :func:`plan_read`; ``reads`` counts the files the read
    opens and their bytes (row groups pruned inside a file are not subtracted).

    Returns
    -------
    pandas.DataFrame or geopandas.GeoDataFrame
        The saved frame (same columns, dtypes, index, time zones, CRS, ``attrs``), or the
        rows and columns asked for. With ``columns=`` the time column and the geometry
        are kept, after the columns asked for. A RangeIndex of a filtered read is
        numbered from 0.

    Raises
    ------
    OptionError
        As :func:`plan_read`, or ``filters=`` naming fields that are not stored.

    Examples
    --------
    >>> read_timeseries(root, info, open_request(time=("2024-01", "2024-03")))  # doctest: +SKIP
    """
    import pyarrow as pa

    request = request if request is not None else OpenRequest()
    plan = plan_read(root, info, request, filesystem=filesystem, stored=stored)
    started = time.perf_counter()
    try:
        table = plan.dataset.to_table(columns=plan.fields, filter=plan.filter)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        if request.options.get("filters") is None:
            raise
        raise OptionError(
            f"filters= could not be applied ({exc}); stored fields: {plan.dataset.schema.names}"
        ) from exc
    if reads is not None:
        elapsed = time.perf_counter() - started
        reads.add(plan.nbytes, elapsed, requests=len(plan.files), chunks=len(plan.files))
    table = _in_saved_order(table, info["row_field"])
    table = table.replace_schema_metadata(plan.stored.schema.metadata)
    geo = None
    if info["geometry"] is not None:
        import json

        from memories_geo.formats.geoparquet.metadata import with_parsed_crs

        geo = with_parsed_crs(json.loads(plan.stored.schema.metadata[b"geo"]))
    frame = to_frame(table, info, geo, plan.columns, filtered=plan.filtered)
    if plan.box is not None:
        frame = _refined(frame, plan.box, info)
    return frame
