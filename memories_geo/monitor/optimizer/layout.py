"""The stored layout of a version: Zarr chunks, COG overviews, GeoParquet row order and row groups.

Read from the catalog entry (``object_info``) where it says enough, else from the
stored files' own metadata (a Zarr array's ``zarr.json``, a Parquet footer); never
from the data.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memories_geo.entry import Entry

__all__ = ["ParquetLayout", "ZarrArray", "cog_overviews", "parquet_layout", "zarr_arrays"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZarrArray:
    """One stored Zarr array: its dims, shape, chunks (inner chunks when sharded) and item size."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    itemsize: int

    @property
    def chunk_bytes(self) -> int:
        """Uncompressed bytes of one chunk."""
        n = self.itemsize
        for c in self.chunks:
            n *= c
        return n


_ITEMSIZE = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2, "int32": 4,
             "uint32": 4, "float32": 4, "int64": 8, "uint64": 8, "float64": 8, "complex64": 8,
             "complex128": 16}


def _location(store: Any, entry: Entry) -> tuple[Any, str] | None:
    try:
        location = store.location(entry)
        return location.fs, location.full_path
    except Exception:
        logger.debug("no file location for %s v%s", entry.key, entry.version, exc_info=True)
        return None


def zarr_arrays(store: Any, entry: Entry) -> dict[str, ZarrArray]:
    """The data variables of a Zarr version as :class:`ZarrArray`, from each array's ``zarr.json``.

    ``store`` is the collection's version store (``mem.version_store``). Variables
    whose metadata cannot be read (another backend, Zarr 2 metadata) are left out.
    """
    where = _location(store, entry)
    if where is None:
        return {}
    fs, root = where
    out: dict[str, ZarrArray] = {}
    for name in entry.variables:
        try:
            meta = json.loads(fs.cat_file(posixpath.join(root, name, "zarr.json")))
        except (OSError, ValueError):
            continue
        array = _zarr_array(name, meta)
        if array is not None:
            out[name] = array
    return out


def _zarr_array(name: str, meta: Mapping[str, Any]) -> ZarrArray | None:
    if meta.get("node_type") != "array" or not isinstance(meta.get("data_type"), str):
        return None
    shape = tuple(int(n) for n in meta["shape"])
    grid_config = meta.get("chunk_grid", {}).get("configuration", {})
    grid = tuple(int(n) for n in grid_config.get("chunk_shape", shape))
    chunks, shards = grid, None
    for codec in meta.get("codecs", []):
        if codec.get("name") == "sharding_indexed":
            shards = grid
            chunks = tuple(int(n) for n in codec["configuration"]["chunk_shape"])
    dims = tuple(meta.get("dimension_names") or [f"dim_{i}" for i in range(len(shape))])
    itemsize = _ITEMSIZE.get(meta["data_type"])
    if itemsize is None or len(chunks) != len(shape):
        return None
    return ZarrArray(name, dims, shape, chunks, shards, itemsize)


def cog_overviews(entry: Entry) -> list[int]:
    """Decimation factors of the internal overviews of a COG version (``[]``: none).

    The writer builds overviews halving until the image fits in one tile, so they
    follow from the image size and the ``blocksize`` recorded in ``object_info``.
    """
    from memories_geo.formats.cog.plan import overview_factors
    from memories_geo.formats.cog.profile import DEFAULT_BLOCKSIZE

    info = entry.object_info
    x_dim, y_dim = str(info.get("x_dim")), str(info.get("y_dim"))
    if x_dim not in entry.shape or y_dim not in entry.shape:
        return []
    return overview_factors(int(entry.shape[x_dim]), int(entry.shape[y_dim]),
                            int(info.get("blocksize", DEFAULT_BLOCKSIZE)))


@dataclass(frozen=True)
class ParquetLayout:
    """Row order, row groups and partitioning of a (Geo)Parquet version."""

    sort: str
    rows: int
    row_groups: int
    partition_cols: tuple[str, ...]


def parquet_layout(store: Any, entry: Entry) -> ParquetLayout | None:
    """The layout of a GeoParquet or Parquet version (``None`` when its files cannot be read).

    A GeoParquet file keeps its row order (``"hilbert"`` or ``"none"``) in its footer;
    a Parquet time series keeps its partition columns in ``object_info``.
    """
    info = entry.object_info
    partition_cols = tuple(str(c) for c in info.get("partition_cols") or ())
    where = _location(store, entry)
    if where is None:
        return None
    fs, root = where
    try:
        files = [f for f in fs.find(root) if f.endswith(".parquet")] if fs.isdir(root) else [root]
        return _footer_layout(fs, files, partition_cols)
    except (OSError, ValueError):
        logger.debug("cannot read the parquet footers of %s", entry.key, exc_info=True)
        return None


def _footer_layout(fs: Any, files: list[str], partition_cols: tuple[str, ...]) -> ParquetLayout:
    import pyarrow.parquet as pq

    from memories_geo.formats.geoparquet.metadata import LAYOUT_KEY

    rows = groups = 0
    sort = "none"
    for path in files:
        with fs.open(path, "rb") as handle:
            meta = pq.ParquetFile(handle).metadata
            rows += meta.num_rows
            groups += meta.num_row_groups
            layout = (meta.metadata or {}).get(LAYOUT_KEY)
            if layout:
                sort = str(json.loads(layout).get("sort", sort))
    return ParquetLayout(sort=sort, rows=rows, row_groups=groups, partition_cols=partition_cols)
