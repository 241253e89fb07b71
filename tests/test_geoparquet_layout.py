"""GeoParquet spatial layout: Hilbert sort, row groups, hidden row order, partitions."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely
from shapely.geometry import Point
from vector_cases import (
    GRID_BOXES,
    VECTOR_CASES,
    assert_same_vector,
    make_case,
    make_grid_layer,
    make_large_points,
)

import memories_geo as mg
from memories_geo.backends.base import Location
from memories_geo.backends.files import FileBackend
from memories_geo.formats.base import WriteOptions
from memories_geo.formats.geoparquet import (
    ROW_GROUP_SIZE,
    GeoParquetFormat,
    hilbert_key,
    hilbert_order,
    layout_metadata,
    write_settings,
)
from memories_geo.query import open_request

KEY = "tests/layer"
UTM = "EPSG:32631"


def stored_file(mem: mg.Memory, key: str, version: int | None = None) -> str:
    entry = mem.info(key, version=version)
    return mem.tiers.backend(entry.tier).full_path(entry.path)


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.embedded(tmp_path / "memories"))


# -- spatial layout: Hilbert sort, row groups, hidden row order, partitions ------------------


def test_hilbert_key_walks_a_hilbert_curve() -> None:
    for level in (1, 2, 3, 5):
        side = 1 << level
        xs, ys = (a.ravel() for a in np.meshgrid(np.arange(side), np.arange(side)))
        keys = hilbert_key(xs, ys, level=level)
        assert sorted(keys.tolist()) == list(range(side * side))
        order = np.argsort(keys)
        steps = np.abs(np.diff(xs[order])) + np.abs(np.diff(ys[order]))
        assert set(steps.tolist()) == {1}


def test_hilbert_order_is_stable_and_puts_missing_last() -> None:
    geoms = [Point(9, 9), None, Point(0, 0), Point(), Point(0, 0), Point(9, 9)]
    order = hilbert_order(gpd.GeoSeries(geoms)).tolist()
    assert order[-2:] == [1, 3]
    assert order[:4] in ([2, 4, 0, 5], [0, 5, 2, 4])


def test_large_layer_is_laid_out_and_round_trips_exactly(mem: mg.Memory) -> None:
    gdf = make_large_points()
    assert len(gdf) > ROW_GROUP_SIZE
    mem.save(gdf, KEY, format="geoparquet")
    path = stored_file(mem, KEY)
    layout = layout_metadata(path)
    assert layout["sort"] == "hilbert"
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_row_groups == -(-len(gdf) // ROW_GROUP_SIZE)
    geo = json.loads(metadata.metadata[b"geo"])
    assert geo["columns"]["geometry"]["encoding"] == "point"
    stored_x = pq.read_table(path, columns=["geometry"]).column("geometry").combine_chunks().field("x")
    assert not np.array_equal(stored_x.to_numpy(zero_copy_only=False)[:50], gdf.geometry.x.to_numpy()[:50])
    assert_same_vector(gdf, mem.open(KEY))


def test_row_groups_keep_the_original_order_inside_and_delta_encode_ids(mem: mg.Memory) -> None:
    gdf = make_large_points()
    gdf["serial"] = np.arange(len(gdf), dtype="int64") * 3 + 7
    mem.save(gdf, KEY, format="geoparquet", row_group_size=4096)
    path = stored_file(mem, KEY)
    parquet = pq.ParquetFile(path)
    positions = [
        parquet.read_row_group(i, columns=["_mg_row"]).column(0).to_numpy().astype(np.int64)
        for i in range(parquet.metadata.num_row_groups)
    ]
    assert sorted(np.concatenate(positions).tolist()) == list(range(len(gdf)))
    assert all((np.diff(p) > 0).all() for p in positions)
    assert not all(np.diff([p[0] for p in positions]) > 0)
    group = parquet.metadata.row_group(0)
    serial = next(i for i in range(group.num_columns) if group.column(i).path_in_schema == "serial")
    encodings = group.column(serial).encodings
    assert "DELTA_BINARY_PACKED" in encodings
    assert_same_vector(gdf, mem.open(KEY))


@pytest.mark.parametrize("name", list(VECTOR_CASES))
def test_every_case_round_trips_in_the_sorted_layout(mem: mg.Memory, name: str) -> None:
    obj = make_case(name)
    mem.save(obj, KEY, format="geoparquet", sort="hilbert", row_group_size=2)
    path = stored_file(mem, KEY)
    assert layout_metadata(path)["sort"] == "hilbert"
    assert_same_vector(obj, mem.open(KEY))


def test_bbox_on_a_sorted_point_layer_prunes_and_keeps_the_original_order(mem: mg.Memory) -> None:
    import pyarrow.dataset as ds

    gdf = make_large_points()
    mem.save(gdf, KEY, format="geoparquet", row_group_size=2048)
    box = (0.0, 44.0, 1.5, 45.0)
    path = stored_file(mem, KEY)
    fragment = next(iter(ds.dataset(path, format="parquet").get_fragments()))
    x, y = ds.field("geometry", "x"), ds.field("geometry", "y")
    kept = fragment.split_by_row_group(filter=(x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3]))
    assert 0 < len(kept) <= pq.ParquetFile(path).metadata.num_row_groups // 4
    expected = gdf[gdf.intersects(shapely.box(*box))].reset_index(drop=True)
    assert len(expected) > 10
    assert_same_vector(expected, mem.open(KEY, bbox=box))


def test_filters_and_columns_on_a_sorted_layer(mem: mg.Memory) -> None:
    gdf = make_large_points()
    mem.save(gdf, KEY, format="geoparquet")
    back = mem.open(KEY, filters=[("count", "<", 10)], columns=["name"])
    expected = gdf[gdf["count"] < 10][["name", "geometry"]].reset_index(drop=True)
    assert_same_vector(expected, back)


def test_keep_order_false_returns_the_stored_spatial_order(mem: mg.Memory) -> None:
    gdf = make_grid_layer(30)
    gdf.index = pd.Index([f"r{i}" for i in range(len(gdf))], name="code")
    mem.save(gdf, KEY, format="geoparquet", sort="hilbert", keep_order=False)
    assert "row_order" not in layout_metadata(stored_file(mem, KEY))
    back = mem.open(KEY)
    assert list(back.columns) == list(gdf.columns)
    assert list(back["label"]) != list(gdf["label"])
    assert sorted(back["label"]) == sorted(gdf["label"])
    assert_same_vector(gdf.loc[back.index], back)


def test_sort_none_writes_what_to_parquet_writes(mem: mg.Memory, tmp_path: Path) -> None:
    gdf = make_large_points()
    mem.save(gdf, KEY, format="geoparquet", sort="none")
    target = tmp_path / "raw.parquet"
    gdf.to_parquet(target, **write_settings(mem.tiers.tier_config(mem.info(KEY).tier).compression))
    assert Path(stored_file(mem, KEY)).read_bytes() == target.read_bytes()


def test_mode_a_on_a_sorted_layer(mem: mg.Memory) -> None:
    first = make_grid_layer(20)
    second = make_grid_layer(5)
    mem.save(first, KEY, format="geoparquet", sort="hilbert", row_group_size=16)
    mem.save(second, KEY, mode="a", sort="hilbert", row_group_size=16)
    assert_same_vector(pd.concat([first, second], ignore_index=True), mem.open(KEY))


def test_partition_cols_write_a_directory_that_round_trips(mem: mg.Memory) -> None:
    gdf = make_grid_layer(50)
    gdf["zone"] = np.where(gdf["value"] % 3 == 0, "a/b", np.where(gdf["value"] % 3 == 1, "c", None))
    entry = mem.save(gdf, KEY, format="geoparquet", partition_cols=["zone"], row_group_size=16)
    root = Path(stored_file(mem, KEY))
    assert root.is_dir()
    parts = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    assert parts == [
        "zone=__HIVE_DEFAULT_PARTITION__/part-0.parquet", "zone=a%2Fb/part-0.parquet",
        "zone=c/part-0.parquet",
    ]
    assert set(mem.catalog.manifest(entry).files) == set(parts)
    assert_same_vector(gdf, mem.open(KEY))
    box = GRID_BOXES["partial"]
    expected = gdf[gdf.intersects(shapely.box(*box))].reset_index(drop=True)
    assert_same_vector(expected, mem.open(KEY, bbox=box, bbox_crs=UTM))
    only_c = mem.open(KEY, filters=[("zone", "=", "c")], columns=["label"])
    assert_same_vector(gdf[gdf["zone"] == "c"][["label", "geometry"]].reset_index(drop=True), only_c)
    mem.verify(KEY)


def test_partition_cols_must_be_attribute_columns(mem: mg.Memory) -> None:
    with pytest.raises(ValueError, match="partition_cols"):
        mem.save(make_grid_layer(5), KEY, format="geoparquet", partition_cols=["nope"])
    with pytest.raises(mg.KeyNotFoundError):
        mem.info(KEY)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"sort": "zorder"}, "sort must be"), ({"geometry_encoding": "wkt"}, "geometry_encoding"),
     ({"row_group_size": 0}, "row_group_size")],
)
def test_layout_options_are_validated(mem: mg.Memory, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mem.save(make_grid_layer(5), KEY, format="geoparquet", **kwargs)


def test_sorted_layout_through_a_non_local_filesystem() -> None:
    backend = FileBackend("memory://mg-geoparquet-sorted")
    location = Location(backend, "layer/@v/1.parquet")
    fmt = GeoParquetFormat()
    gdf = make_grid_layer(30)
    try:
        result = fmt.write(
            gdf, location, WriteOptions(mode="w", extra={"sort": "hilbert", "row_group_size": 8})
        )
        assert_same_vector(gdf, fmt.open(location, result.object_info, open_request()))
        box = GRID_BOXES["partial"]
        expected = gdf[gdf.intersects(shapely.box(*box))].reset_index(drop=True)
        request = open_request(bbox=box, bbox_crs=UTM)
        assert_same_vector(expected, fmt.open(location, result.object_info, request))
    finally:
        fmt.delete(location)
