"""The original API's format storage classes: every option changes the stored bytes, round trips stay exact.

Each class is used the three ways it serves: ``mem.save(obj, key, storage=...)`` (and the
``.memories`` accessor), a tier's ``format_options``, and standalone
(``storage.save(data, key=..., metadata=...)`` / ``load`` / ``list`` / ``delete``, and their
awaitable forms). The original snippets run as written but for their import line (and the
paths and database URL of this machine).
"""

from __future__ import annotations

import asyncio
import glob
import gzip
import json
import os
import textwrap
import uuid
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from geopandas.testing import assert_geodataframe_equal
from pandas.testing import assert_frame_equal
from shapely.geometry import Point, Polygon

import memories_geo as mg
from memories_geo.errors import FormatError, KeyNotFoundError, OptionError, UnsupportedObjectError
from memories_geo.formats.registry import get_format
from memories_geo.storage.formats import (
    COGStorage,
    GeoJSONStorage,
    GeoParquetStorage,
    ParquetStorage,
    PostGISStorage,
    TimescaleDBStorage,
    ZarrStorage,
)

psycopg = pytest.importorskip("psycopg")
from psycopg import sql  # noqa: E402

# -- data -------------------------------------------------------------------------------


def image(dtype: str = "int16", ny: int = 600, nx: int = 700) -> xr.DataArray:
    """A single-band image in UTM, larger than one 256 tile."""
    values = (np.arange(ny * nx).reshape(ny, nx) % 5000).astype(dtype)
    da = xr.DataArray(
        values, dims=("y", "x"), name="dem",
        coords={"y": 5_000_000.0 - 10 * np.arange(ny), "x": 400_000.0 + 10 * np.arange(nx)},
        attrs={"sensor": "s2"},
    )
    return da.rio.write_crs("EPSG:32631")


def cube() -> xr.Dataset:
    """A (time, y, x) data cube bigger than a (1, 500, 500) chunk."""
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {"t2m": (("time", "y", "x"), rng.random((3, 600, 620), dtype="float32"))},
        coords={"time": pd.date_range("2024-03-01", periods=3), "y": 50.0 - 0.01 * np.arange(600),
                "x": 5.0 + 0.01 * np.arange(620)},
    )
    return ds.rio.write_crs("EPSG:4326")


def layer(n: int = 200) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(1)
    return gpd.GeoDataFrame(
        {"name": [f"f{i}" for i in range(n)], "value": rng.random(n), "kind": ["park", "lake"] * (n // 2)},
        geometry=[Point(2 + i / 1000, 48 + i / 2000) for i in range(n)], crs="EPSG:4326",
    )


def observations(days: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    times = pd.date_range("2024-01-20", periods=days * 8, freq="3h")
    frame = pd.DataFrame({"time": np.repeat(times, 2), "sensor": np.tile(["s1", "s2"], len(times))})
    frame["temp"] = rng.normal(10, 5, len(frame)).round(3)
    return frame


BOWTIE = Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])


# -- helpers -----------------------------------------------------------------------------


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.embedded(tmp_path / "home"))


def version_root(memory: mg.Memory, key: str) -> str:
    entry = memory.info(key)
    return memory.tiers.backend(entry.tier).full_path(entry.path)


def files(root: str, suffix: str) -> list[str]:
    if os.path.isfile(root):
        return [root]
    return sorted(glob.glob(f"{root}/**/*{suffix}", recursive=True))


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _skip(data: bytes, pos: int, kind: int) -> int:
    """Skip one Thrift compact-protocol value of type ``kind`` starting at ``pos``."""
    if kind in (1, 2):
        return pos
    if kind == 3:
        return pos + 1
    if kind in (4, 5, 6):
        return _varint(data, pos)[1]
    if kind == 7:
        return pos + 8
    if kind == 8:
        size, pos = _varint(data, pos)
        return pos + size
    if kind in (9, 10):
        header = data[pos]
        pos += 1
        size, elem = header >> 4, header & 0x0F
        if size == 15:
            size, pos = _varint(data, pos)
        for _ in range(size):
            pos = _skip(data, pos, elem)
        return pos
    if kind == 12:
        return _struct(data, pos)[1]
    raise AssertionError(f"thrift type {kind} not expected in a page header")


def _struct(data: bytes, pos: int) -> tuple[dict[int, int], int]:
    """Integer fields of a Thrift compact struct at ``pos`` and the position after it."""
    fields: dict[int, int] = {}
    last = 0
    while True:
        header = data[pos]
        pos += 1
        if header == 0:
            return fields, pos
        delta, kind = header >> 4, header & 0x0F
        if delta:
            field = last + delta
        else:
            raw, pos = _varint(data, pos)
            field = (raw >> 1) ^ -(raw & 1)
        last = field
        if kind == 5:
            raw, pos = _varint(data, pos)
            fields[field] = (raw >> 1) ^ -(raw & 1)
        else:
            pos = _skip(data, pos, kind)


def data_pages(path: str, column: str) -> int:
    """Data pages of ``column`` in the first row group, counted from the page headers in the file."""
    meta = pq.ParquetFile(path).metadata.row_group(0)
    chunk = next(meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == column)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    data = Path(path).read_bytes()[start:start + chunk.total_compressed_size]
    pos = pages = 0
    while pos < len(data):
        header, pos = _struct(data, pos)
        pages += header[1] in (0, 3)  # DATA_PAGE, DATA_PAGE_V2
        pos += header[3]  # compressed_page_size
    return pages


def query(dsn: str, statement: Any, params: Any = None) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as con:
        return con.execute(statement, params).fetchall()


@pytest.fixture
def schema(postgres_dsn: str):
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    drop_schema(postgres_dsn, name)


def drop_schema(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as con:
        for (topology,) in con.execute(
            "SELECT name FROM topology.topology WHERE name LIKE 'mg_topo_%%'"
        ).fetchall() if con.execute("SELECT to_regclass('topology.topology')").fetchone() != (None,) else []:
            exists = con.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (topology,)).fetchone()
            if exists:
                con.execute("SELECT topology.DropTopology(%s)", (topology,))
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def pg_memory(tmp_path: Path, dsn: str, schema: str) -> mg.Memory:
    config = mg.StorageConfig.from_dict(
        {"home": str(tmp_path / "pghome"),
         "tiers": {"warm": {"url": dsn, "storage_options": {"schema": schema}}}}
    )
    return mg.Memory(config)


def version_table(memory: mg.Memory, key: str) -> str:
    entry = memory.info(key)
    table = memory.tiers.backend(entry.tier).table_for(entry.path)
    assert table is not None
    return table


# -- the original snippets -----------------------------------------------------------------

RASTER_SNIPPET = '''
from memories.earth.storage.raster import COGStorage, ZarrStorage

# Cloud-Optimized GeoTIFF
cog_storage = COGStorage(
    base_path="/data/rasters",
    organization="sensor/year/month",
    overviews=True,
    compression="DEFLATE",
    blocksize=(256, 256),
    predictor=2
)

# Zarr storage
zarr_storage = ZarrStorage(
    store_path="/data/zarr",
    chunks=(1, 500, 500),  # (time, y, x)
    compression="zstd",
    compression_level=3,
    dimension_separator="/"
)
'''

VECTOR_SNIPPET = '''
from memories.earth.storage.vector import PostGISStorage, GeoJSONStorage

# PostGIS for vector data
postgis_storage = PostGISStorage(
    connection_string="postgresql://user:password@localhost:5432/earth_memory",
    schema="vector_data",
    spatial_index=True,
    topology=True,
    srid=4326
)

# GeoJSON files
geojson_storage = GeoJSONStorage(
    base_path="/data/vector",
    organization="category/subcategory",
    compression="gzip",
    validation=True
)
'''

TIMESERIES_SNIPPET = '''
from memories.earth.storage.timeseries import TimescaleDBStorage, ParquetStorage

# TimescaleDB
timescaledb_storage = TimescaleDBStorage(
    connection_string="postgresql://user:password@localhost:5432/earth_memory",
    schema="timeseries",
    chunk_time_interval="1 month",
    compression_enabled=True
)

# Apache Parquet
parquet_storage = ParquetStorage(
    base_path="/data/timeseries",
    partition_cols=["year", "variable"],
    compression="snappy",
    row_group_size=10000,
    page_size=8192
)
'''

ORIGINAL_DSN = "postgresql://user:password@localhost:5432/earth_memory"


def run_snippet(
    snippet: str, tmp_path: Path, dsn: str | None = None, schema: str | None = None
) -> dict[str, Any]:
    """Run a snippet with ``import memories_geo``'s classes for its import line, here's paths and database."""
    lines = textwrap.dedent(snippet).strip().splitlines()
    assert lines[0].startswith("from memories.earth.storage")
    names = lines[0].split(" import ", 1)[1]
    code = "\n".join([f"from memories_geo.storage.formats import {names}", *lines[1:]])
    code = code.replace('"/data/', f'"{tmp_path}/')
    if dsn is not None:
        code = code.replace(ORIGINAL_DSN, dsn)
    if schema is not None:
        code = code.replace('schema="vector_data"', f'schema="{schema}"').replace(
            'schema="timeseries"', f'schema="{schema}"')
    namespace: dict[str, Any] = {}
    exec(compile(code, "snippet", "exec"), namespace)
    return namespace


def test_raster_snippet_stores_and_finds(tmp_path: Path) -> None:
    ns = run_snippet(RASTER_SNIPPET, tmp_path)
    cog, zs = ns["cog_storage"], ns["zarr_storage"]
    da = image()
    entry = cog.save(da, key="scene", metadata={"date": "2024-03-15", "cloud_cover": 3})
    assert entry.key == "s2/2024/03/scene"
    assert entry.attrs["cloud_cover"] == 3
    assert cog.list() == ["s2/2024/03/scene"]
    xr.testing.assert_identical(cog.load("scene").load(), da)
    tif = files(version_root(cog.memory, entry.key), ".tif")[0]
    assert tif.startswith(str(tmp_path / "rasters" / "hot" / "s2" / "2024" / "03" / "scene"))
    with rasterio.open(tif) as src:
        assert src.profile["compress"] == "deflate"
        assert (src.profile["blockxsize"], src.profile["blockysize"]) == (256, 256)
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        assert src.overviews(1) == [2, 4]

    ds = cube()
    entry = zs.save(ds, key="era5/t2m")
    xr.testing.assert_identical(zs.load("era5/t2m").load(), ds)
    meta = json.loads(Path(version_root(zs.memory, "era5/t2m"), "t2m", "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 500, 500]
    assert meta["chunk_key_encoding"]["configuration"]["separator"] == "/"
    assert {"name": "zstd", "configuration": {"level": 3, "checksum": False}} in meta["codecs"]
    assert str(tmp_path / "zarr") in version_root(zs.memory, "era5/t2m")
    zs.delete("era5/t2m")
    assert zs.list() == []


def test_vector_snippet_stores_and_finds(tmp_path: Path, postgres_dsn: str, schema: str) -> None:
    ns = run_snippet(VECTOR_SNIPPET, tmp_path, postgres_dsn, schema)
    pg, gj = ns["postgis_storage"], ns["geojson_storage"]
    assert "password" not in repr(pg)
    assert "password" not in pg._repr_html_()
    gdf = layer()
    pg.base_path is None or pytest.fail("the snippet gives no base_path")
    entry = pg.save(gdf, key="places")
    assert pg.list() == ["places"]
    assert_geodataframe_equal(pg.load("places"), gdf)
    table = pg.memory.tiers.backend("hot").table_for(pg.memory.info("places").path)
    assert query(postgres_dsn, "SELECT Find_SRID(%s, %s, 'geometry')", (schema, table)) == [(4326,)]
    indexes = query(postgres_dsn, "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                    (schema, table))
    assert any("USING gist" in i for (i,) in indexes)
    topology = entry.object_info["topology"]
    assert query(postgres_dsn, "SELECT srid FROM topology.topology WHERE name = %s", (topology,)) == [(4326,)]
    nodes = query(postgres_dsn, sql.SQL("SELECT count(*) FROM {}.node").format(sql.Identifier(topology)))
    assert nodes == [(len(gdf),)]
    pg.delete("places")
    left = query(postgres_dsn, "SELECT count(*) FROM topology.topology WHERE name = %s", (topology,))
    assert left == [(0,)]

    parks = layer(20)
    entry = gj.save(parks, key="paris", metadata={"category": "leisure", "subcategory": "parks"})
    assert entry.key == "leisure/parks/paris"
    stored = files(version_root(gj.memory, entry.key), ".geojson.gz")
    assert len(stored) == 1
    assert len(json.loads(gzip.decompress(Path(stored[0]).read_bytes()))["features"]) == 20
    assert_geodataframe_equal(gj.load("paris"), parks)
    with pytest.raises(UnsupportedObjectError, match=r"row 1: Self-intersection"):
        gj.save(gpd.GeoDataFrame(geometry=[Point(0, 0), BOWTIE], crs="EPSG:4326"), key="bad",
                metadata={"category": "x", "subcategory": "y"})


def test_timeseries_snippet_stores_and_finds(tmp_path: Path, postgres_dsn: str, schema: str) -> None:
    ns = run_snippet(TIMESERIES_SNIPPET, tmp_path, postgres_dsn, schema)
    ts, ps = ns["timescaledb_storage"], ns["parquet_storage"]
    frame = observations().rename(columns={"sensor": "variable"})
    with pytest.warns(UserWarning, match="native PostgreSQL range partitioning"):
        ts.save(frame, key="obs")
    assert ts.list() == ["obs"]
    assert_frame_equal(ts.load("obs"), frame)
    info = ts.memory.info("obs").object_info
    assert info["partitioning"] == "native"
    entry = ps.save(frame, key="obs", metadata={"station": "paris"})
    assert_frame_equal(ps.load("obs"), frame)
    root = version_root(ps.memory, entry.key)
    parts = sorted(os.path.relpath(p, root) for p in files(root, ".parquet"))
    assert parts[0].startswith("year=2024/variable=s1/")
    meta = pq.ParquetFile(os.path.join(root, parts[0])).metadata
    assert meta.row_group(0).column(0).compression == "SNAPPY"


# -- COG --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_cog_options_change_the_file(mem: mg.Memory, dtype: str) -> None:
    da = image(dtype)
    mem.save(da, "plain", format="cog")
    mem.save(da, "chosen", storage=COGStorage(compression="lzw", blocksize=(256, 256), predictor=1,
                                              overviews=False))
    noisy = da + (np.random.default_rng(3).random(da.shape) * 50).astype(dtype)
    mem.save(noisy, "zstd1", storage=COGStorage(compression="ZSTD", compression_level=1))
    mem.save(noisy, "zstd22", storage=COGStorage(compression="ZSTD", compression_level=22))
    with rasterio.open(files(version_root(mem, "plain"), ".tif")[0]) as src:
        assert src.profile["compress"] == "zstd"
        assert src.profile["blockxsize"] == 512
        assert src.overviews(1) == [2]
    with rasterio.open(files(version_root(mem, "chosen"), ".tif")[0]) as src:
        assert src.profile["compress"] == "lzw"
        assert (src.profile["blockxsize"], src.profile["blockysize"]) == (256, 256)
        assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR", "1") == "1"
        assert src.overviews(1) == []
    fast = Path(files(version_root(mem, "zstd1"), ".tif")[0]).stat().st_size
    small = Path(files(version_root(mem, "zstd22"), ".tif")[0]).stat().st_size
    assert small < fast
    for key in ("plain", "chosen"):
        xr.testing.assert_identical(mem.open(key).load(), da)
    xr.testing.assert_identical(mem.open("zstd22").load(), noisy)


def test_cog_bad_options_name_the_accepted_ones() -> None:
    with pytest.raises(OptionError, match=r"does not take \['tile'\]; accepted keywords: \['base_path'"):
        COGStorage(tile=256)
    with pytest.raises(TypeError):
        COGStorage(tile=256)
    with pytest.raises(OptionError, match=r"\['DEFLATE', 'ZSTD', 'LZMA', 'LZW', 'PACKBITS', 'NONE'\]"):
        COGStorage(compression="jpeg")
    with pytest.raises(OptionError, match="square"):
        COGStorage(blocksize=(256, 512))
    with pytest.raises(OptionError, match="predictor must be one of"):
        COGStorage(predictor=7)
    with pytest.raises(OptionError, match="from 1 to 12"):
        COGStorage(compression_level=40)
    with pytest.raises(OptionError, match="overviews must be True or False"):
        COGStorage(overviews="yes")
    with pytest.raises(OptionError, match="keyword arguments only"):
        COGStorage("/data")


def test_cog_through_the_accessor_and_the_default_collection(tmp_path: Path) -> None:
    memory = mg.Memory(mg.StorageConfig.embedded(tmp_path / "default"))
    mg.set_default(memory)
    try:
        da = image()
        entry = da.memories.save("via/accessor", storage=COGStorage(blocksize=256, overviews=False))
        with rasterio.open(files(version_root(memory, entry.key), ".tif")[0]) as src:
            assert src.profile["blockxsize"] == 256
            assert src.overviews(1) == []
        with pytest.raises(OptionError, match="disagrees with storage=COGStorage"):
            da.memories.save("via/zarr", format="zarr", storage=COGStorage())
    finally:
        mg.set_default(None)


def test_explicit_keywords_over_storage_over_tier_options(tmp_path: Path) -> None:
    config = mg.StorageConfig.from_dict({"home": str(tmp_path / "h"), "tiers": {
        "hot": {"format_options": {"cog": {"blocksize": 128, "overviews": False, "compression": "LZW"}}},
    }})
    memory = mg.Memory(config)
    da = image()
    memory.save(da, "tier")
    memory.save(da, "storage", storage=COGStorage(blocksize=(256, 256)))
    memory.save(da, "explicit", storage=COGStorage(blocksize=(256, 256)), blocksize=512)
    memory.save(da, "level", storage=COGStorage(blocksize=(256, 256)), compression="fast")
    seen = {}
    for key in ("tier", "storage", "explicit", "level"):
        with rasterio.open(files(version_root(memory, key), ".tif")[0]) as src:
            seen[key] = (src.profile["blockxsize"], src.profile["compress"], len(src.overviews(1)))
    assert seen == {"tier": (128, "lzw", 0), "storage": (256, "deflate", 2), "explicit": (512, "deflate", 1),
                    "level": (256, "zstd", 2)}


# -- Zarr ------------------------------------------------------------------------------------


def test_zarr_options_change_the_store(mem: mg.Memory) -> None:
    ds = cube()
    mem.save(ds, "dots", storage=ZarrStorage(chunks={"time": 1, "y": 300, "x": 310}, compression="gzip",
                                             compression_level=7, dimension_separator="."))
    mem.save(ds, "raw", storage=ZarrStorage(chunks=(3, 600, 620), compression="none"))
    root = version_root(mem, "dots")
    meta = json.loads(Path(root, "t2m", "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 300, 310]
    assert meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "."}}
    assert {"name": "gzip", "configuration": {"level": 7}} in meta["codecs"]
    assert "c.0.1.1" in os.listdir(Path(root, "t2m"))
    raw = json.loads(Path(version_root(mem, "raw"), "t2m", "zarr.json").read_text())
    assert [c["name"] for c in raw["codecs"]] == ["bytes"]
    assert raw["chunk_grid"]["configuration"]["chunk_shape"] == [3, 600, 620]
    for key in ("dots", "raw"):
        xr.testing.assert_identical(mem.open(key).load(), ds)


def test_zarr_bad_options() -> None:
    with pytest.raises(OptionError, match=r"dimension_separator must be one of \['/', '.'\]"):
        ZarrStorage(dimension_separator="_")
    with pytest.raises(OptionError, match=r"\['zstd', 'gzip', 'blosc', 'lz4', 'none'\]"):
        ZarrStorage(compression="brotli")
    with pytest.raises(OptionError, match="chunks must be a tuple of positive integers"):
        ZarrStorage(chunks=(0, 500))
    with pytest.raises(OptionError, match="not two different paths"):
        ZarrStorage(store_path="/a", base_path="/b")
    with pytest.raises(OptionError, match="needs base_path="):
        ZarrStorage().list()


# -- GeoParquet and Parquet ------------------------------------------------------------------------


def test_geoparquet_options_change_the_file(mem: mg.Memory) -> None:
    gdf = layer(4000)
    mem.save(gdf, "small_pages", storage=GeoParquetStorage(compression="snappy", row_group_size=2000,
                                                           page_size=1024))
    mem.save(gdf, "big_pages", storage=GeoParquetStorage(compression="gzip", compression_level=9,
                                                         row_group_size=2000))
    small = files(version_root(mem, "small_pages"), ".parquet")[0]
    big = files(version_root(mem, "big_pages"), ".parquet")[0]
    meta = pq.ParquetFile(small).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [2000] * 2
    assert meta.row_group(0).column(0).compression == "SNAPPY"
    assert pq.ParquetFile(big).metadata.row_group(0).column(0).compression == "GZIP"
    assert data_pages(small, "value") > data_pages(big, "value") == 1
    mem.save(gdf, "by_kind", storage=GeoParquetStorage(file_organization="kind"))
    assert sorted(os.listdir(version_root(mem, "by_kind"))) == ["kind=lake", "kind=park"]
    for key in ("small_pages", "big_pages"):
        assert_geodataframe_equal(mem.open(key), gdf)
    with pytest.raises(OptionError, match=r"\['snappy', 'zstd', 'gzip', 'brotli', 'lz4', 'none'\]"):
        GeoParquetStorage(compression="lzo")


def test_parquet_file_organization_and_pages(mem: mg.Memory) -> None:
    frame = observations(days=20)
    storage = ParquetStorage(file_organization="sensor/year/month", row_group_size=40, page_size=256)
    assert storage.save_options()["partition_cols"] == ["sensor", "year", "month"]
    mem.save(frame, "obs", storage=storage)
    root = version_root(mem, "obs")
    parts = sorted(os.path.relpath(p, root) for p in files(root, ".parquet"))
    assert {p.rsplit("/", 1)[0] for p in parts} == {
        "sensor=s1/year=2024/month=1", "sensor=s1/year=2024/month=2",
        "sensor=s2/year=2024/month=1", "sensor=s2/year=2024/month=2",
    }
    first = os.path.join(root, parts[0])
    meta = pq.ParquetFile(first).metadata
    assert meta.row_group(0).num_rows == 40
    assert meta.row_group(0).column(0).compression == "SNAPPY"
    long = observations(days=300)
    mem.save(long, "small_pages", storage=ParquetStorage(file_organization="year", page_size=256))
    mem.save(long, "default_pages", storage=ParquetStorage(file_organization="year"))
    small = files(os.path.join(version_root(mem, "small_pages"), "year=2024"), ".parquet")[0]
    default = files(os.path.join(version_root(mem, "default_pages"), "year=2024"), ".parquet")[0]
    assert data_pages(small, "temp") > data_pages(default, "temp") == 1
    assert_frame_equal(mem.open("small_pages"), long)
    assert_frame_equal(mem.open("obs"), frame)
    with pytest.raises(OptionError, match="disagree"):
        ParquetStorage(partition_cols=["year"], file_organization="sensor/year")
    with pytest.raises(OptionError, match="template of names"):
        ParquetStorage(file_organization="sensor//{year}")


# -- GeoJSON -----------------------------------------------------------------------------------


def test_geojson_validation_and_compression(mem: mg.Memory, tmp_path: Path) -> None:
    bad = gpd.GeoDataFrame({"v": [1, 2]}, geometry=[Point(0, 0), BOWTIE], crs="EPSG:4326")
    with pytest.raises(UnsupportedObjectError, match=r"row 1: Self-intersection"):
        mem.save(bad, "bad", storage=GeoJSONStorage(validation=True))
    entry = mem.save(bad, "repaired", storage=GeoJSONStorage(validation="make_valid"))
    assert mem.open(entry.key).geometry.is_valid.all()
    mem.save(bad, "as_is", storage=GeoJSONStorage())
    plain = files(version_root(mem, "as_is"), ".geojson")
    assert len(plain) == 1
    assert not mem.open("as_is").geometry.is_valid.all()
    with pytest.raises(OptionError, match="'gzip' or 'none'"):
        GeoJSONStorage(compression="zip")
    standalone = GeoJSONStorage(base_path=tmp_path / "gj", organization="kind")
    with pytest.raises(OptionError, match="needs 'kind'"):
        standalone.save(layer(10), key="mixed")
    entry = standalone.save(layer(10)[layer(10)["kind"] == "park"], key="parks")
    assert entry.key == "park/parks"


# -- PostGIS -----------------------------------------------------------------------------------


def test_postgis_srid_index_and_validation(tmp_path: Path, postgres_dsn: str, schema: str) -> None:
    memory = pg_memory(tmp_path, postgres_dsn, schema)
    gdf = layer(50)
    memory.save(gdf, "mercator", tier="warm", storage=PostGISStorage(srid=3857, spatial_index=False))
    table = version_table(memory, "mercator")
    assert query(postgres_dsn, "SELECT Find_SRID(%s, %s, 'geometry')", (schema, table)) == [(3857,)]
    indexes = query(postgres_dsn, "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                    (schema, table))
    assert indexes
    assert not any("gist" in i.lower() for (i,) in indexes)
    first = sql.SQL("SELECT ST_X(geometry), ST_Y(geometry) FROM {}.{} ORDER BY mg_row LIMIT 1")
    x, y = query(postgres_dsn, first.format(sql.Identifier(schema), sql.Identifier(table)))[0]
    expected = gdf.to_crs(3857).geometry.iloc[0]
    assert (x, y) == pytest.approx((expected.x, expected.y))
    assert_geodataframe_equal(memory.open("mercator"), gdf.to_crs(3857))

    memory.save(gdf, "indexed", tier="warm", storage=PostGISStorage())
    indexes = query(postgres_dsn, "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                    (schema, version_table(memory, "indexed")))
    assert any("USING gist" in i for (i,) in indexes)

    bad = gpd.GeoDataFrame({"v": [1, 2, 3]}, geometry=[Point(0, 0), BOWTIE, BOWTIE], crs="EPSG:4326",
                           index=["a", "b", "c"])
    with pytest.raises(UnsupportedObjectError, match=r"(?s)2 invalid geometries.*row 'b'.*row 'c'"):
        memory.save(bad, "bad", tier="warm", storage=PostGISStorage(validation=True))
    memory.save(bad, "repaired", tier="warm", storage=PostGISStorage(validation="make_valid"))
    valid = query(postgres_dsn, sql.SQL("SELECT bool_and(ST_IsValid(geometry)) FROM {}.{}").format(
        sql.Identifier(schema), sql.Identifier(version_table(memory, "repaired"))))
    assert valid == [(True,)]
    with pytest.raises(OptionError, match="srid=999999 is not an EPSG code"):
        PostGISStorage(srid=999999)
    with pytest.raises(OptionError, match="disagrees"):
        memory.save(gdf, "x", tier="warm", format="geoparquet", storage=PostGISStorage())


def test_postgis_topology_is_built_and_dropped(tmp_path: Path, postgres_dsn: str, schema: str) -> None:
    memory = pg_memory(tmp_path, postgres_dsn, schema)
    squares = gpd.GeoDataFrame(
        {"id": [1, 2]},
        geometry=[Polygon([(0, 0), (1, 0), (1, 1), (0, 1)]), Polygon([(1, 0), (2, 0), (2, 1), (1, 1)])],
        crs="EPSG:4326",
    )
    entry = memory.save(squares, "fields", tier="warm", storage=PostGISStorage(topology=True))
    name = entry.object_info["topology"]
    faces = query(postgres_dsn, sql.SQL("SELECT count(*) FROM {}.face WHERE face_id > 0").format(
        sql.Identifier(name)))
    edges = query(postgres_dsn, sql.SQL("SELECT count(*) FROM {}.edge_data").format(sql.Identifier(name)))
    assert faces == [(2,)]
    assert edges == [(3,)]  # the shared side is one edge
    assert_geodataframe_equal(memory.open("fields"), squares)
    memory.delete("fields")
    assert query(postgres_dsn, "SELECT count(*) FROM topology.topology WHERE name = %s", (name,)) == [(0,)]


def test_postgis_topology_without_the_extension_is_a_format_error(
    tmp_path: Path, postgres_dsn: str, schema: str
) -> None:
    available = query(postgres_dsn,
                      "SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis_topology'")
    if available == [(1,)]:
        pytest.skip("this server has postgis_topology: topology=True is built (see the test above)")
    memory = pg_memory(tmp_path, postgres_dsn, schema)
    with pytest.raises(FormatError, match="postgis_topology extension"):
        memory.save(layer(5), "t", tier="warm", storage=PostGISStorage(topology=True))


# -- TimescaleDB -------------------------------------------------------------------------------


def test_timescaledb_options_reach_the_hypertable(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    try:
        dsn = request.getfixturevalue("timescaledb_dsn")
    except pytest.FixtureLookupError:
        pytest.skip("the timescaledb_dsn fixture is not available here")
    name = f"t_{uuid.uuid4().hex[:12]}"
    storage = TimescaleDBStorage(connection_string=dsn, schema=name, chunk_time_interval="7 days",
                                 compression_enabled=False, base_path=tmp_path / "ts",
                                 storage_options={"min_size": 1, "max_size": 1, "prepare_threshold": None})
    try:
        frame = observations()
        storage.save(frame, key="obs")
        assert_frame_equal(storage.load("obs"), frame)
        backend = storage.memory.tiers.backend("hot")
        with backend.connection() as con:
            rows = con.execute(
                "SELECT d.time_interval, h.compression_enabled FROM timescaledb_information.dimensions d "
                "JOIN timescaledb_information.hypertables h USING (hypertable_schema, hypertable_name) "
                "WHERE d.hypertable_schema = %s", (name,)).fetchall()
        assert rows == [(pd.Timedelta(days=7).to_pytimedelta(), False)]
    finally:
        with storage.memory.tiers.backend("hot").connection() as con:
            con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        storage.memory.tiers.backend("hot").close()
    with pytest.raises(OptionError, match="chunk_time_interval"):
        TimescaleDBStorage(chunk_time_interval="fortnightly")


# -- standalone and async ------------------------------------------------------------------------


def test_standalone_async_twins(tmp_path: Path) -> None:
    storage = COGStorage(base_path=tmp_path / "async", overviews=False)
    da = image()

    async def main() -> Any:
        entry = await storage.asave(key="a/dem", data=da, metadata={"source": "test"})
        awaited = await storage.save(key="b/dem", data=da, metadata={"source": "awaited"})
        loaded = await storage.aload("a/dem")
        also = await storage.load("b/dem")
        return entry, awaited, loaded, also, await storage.alist()

    entry, awaited, loaded, also, keys = asyncio.run(main())
    assert (entry.attrs, awaited.attrs) == ({"source": "test"}, {"source": "awaited"})
    xr.testing.assert_identical(loaded.load(), da)
    xr.testing.assert_identical(also.load(), da)
    assert keys == ["a/dem", "b/dem"]
    storage.save(da, key="c/dem")
    assert storage.save(da, key="c/dem").version == 2
    with pytest.raises(KeyNotFoundError, match="ambiguous"):
        storage.load("dem")
    asyncio.run(storage.adelete("a/dem"))
    assert storage.list() == ["b/dem", "c/dem"]


def test_storage_objects_as_tier_defaults_interface() -> None:
    for storage, kinds in [
        (COGStorage(), {"raster"}), (ZarrStorage(), {"raster", "timeseries", "array"}),
        (GeoJSONStorage(), {"vector", "timeseries"}), (GeoParquetStorage(), {"vector"}),
        (ParquetStorage(), {"timeseries"}), (PostGISStorage(), {"vector"}),
        (TimescaleDBStorage(), {"timeseries"}),
    ]:
        assert storage.kinds == kinds
        accepted = get_format(storage.format_name).write_options
        assert set(storage.save_options()) <= set(accepted)
        assert storage.format_name in storage._repr_html_()
    settings = PostGISStorage(connection_string="postgresql://me:secret@db/gis", schema="v").tier_settings()
    assert settings == {"url": "postgresql://me:secret@db/gis", "storage_options": {"schema": "v"}}
    shown = repr(TimescaleDBStorage(connection_string="postgresql://me:secret@db/gis",
                                    storage_options={"password": "secret"}))
    assert "secret" not in shown
