"""GeoParquet reads: bbox (in any CRS), time, columns and filters pushed down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyproj
import pytest
import shapely
from shapely.geometry import LineString, Point
from vector_cases import (
    GRID_BOXES,
    assert_same_vector,
    attributes_frame,
    make_case,
    make_grid_layer,
    make_large_points,
    make_timed_layer,
)

import memories_geo as mg
from memories_geo.errors import OptionError
from memories_geo.formats.geoparquet import (
    GeoParquetFormat,
    covering_column,
    read_geoparquet,
    time_column,
)

KEY = "tests/layer"
UTM = "EPSG:32631"


def stored_file(mem: mg.Memory, key: str, version: int | None = None) -> str:
    entry = mem.info(key, version=version)
    return mem.tiers.backend(entry.tier).full_path(entry.path)


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.embedded(tmp_path / "memories"))


# -- reading with pushdown ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(GRID_BOXES))
def test_bbox_returns_exactly_the_intersecting_rows(mem: mg.Memory, name: str) -> None:
    gdf = make_grid_layer(60)
    mem.save(gdf, KEY, format="geoparquet")
    box = GRID_BOXES[name]
    expected = gdf[shapely.intersects(gdf.geometry.values._data, shapely.box(*box))]
    if name == "partial":
        assert 0 < len(expected) < len(gdf) - 2
    expected = expected.reset_index(drop=True)
    assert_same_vector(expected, mem.open(KEY, bbox=box, bbox_crs=UTM))


def test_bbox_excludes_geometries_whose_envelope_alone_intersects(mem: mg.Memory) -> None:
    gdf = gpd.GeoDataFrame(
        {"name": ["diagonal", "far", "inside"]},
        geometry=[LineString([(0, 0), (10, 10)]), Point(50, 50), Point(9, 1)],
        index=pd.Index(["d", "f", "i"], name="id"),
        crs="EPSG:3857",
    )
    mem.save(gdf, KEY, format="geoparquet")
    back = mem.open(KEY, bbox=(8, 0, 10, 2), bbox_crs="EPSG:3857")
    assert list(back.index) == ["i"]
    assert_same_vector(gdf.loc[["i"]], back)


def test_bbox_is_validated(mem: mg.Memory) -> None:
    mem.save(make_grid_layer(5), KEY, format="geoparquet")
    with pytest.raises(ValueError, match="min <= max"):
        mem.open(KEY, bbox=(10, 0, 0, 10))
    with pytest.raises(ValueError, match="four finite numbers"):
        mem.open(KEY, bbox=(0, 0, 1))
    with pytest.raises(ValueError, match="bbox_crs= needs bbox="):
        mem.open(KEY, bbox_crs=UTM)


def test_bbox_prunes_row_groups_on_the_covering_column(mem: mg.Memory) -> None:
    gdf = make_grid_layer(200).sort_values("value").reset_index(drop=True)
    gdf = gdf.iloc[np.argsort(gdf.geometry.bounds["minx"].fillna(np.inf).to_numpy())]
    gdf = gdf.reset_index(drop=True)
    mem.save(gdf, KEY, format="geoparquet", row_group_size=50)
    path = stored_file(mem, KEY)
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_row_groups > 1
    geo = json.loads(metadata.metadata[b"geo"])
    import pyarrow.dataset as ds

    box = (400_000.0, 0.0, 420_000.0, 1e7)
    dataset = ds.dataset(path, format="parquet")
    xmin = ds.field(covering_column(geo), "xmin")
    pruned = next(iter(dataset.get_fragments())).split_by_row_group(filter=xmin <= box[2])
    assert 0 < len(pruned) < metadata.num_row_groups
    expected = gdf[gdf.intersects(shapely.box(*box))].reset_index(drop=True)
    assert_same_vector(expected, mem.open(KEY, bbox=box, bbox_crs=UTM))


def test_columns_reads_only_those_columns(mem: mg.Memory) -> None:
    gdf = attributes_frame()
    gdf.index = pd.Index(list("vwxyz"), name="code")
    mem.save(gdf, KEY, format="geoparquet")
    back = mem.open(KEY, columns=["unicode", "datetime_paris", "geometry"])
    assert list(back.columns) == ["unicode", "datetime_paris", "geometry"]
    assert_same_vector(gdf[["unicode", "datetime_paris", "geometry"]], back)
    without_geometry = mem.open(KEY, columns=["int64"])
    assert list(without_geometry.columns) == ["int64", "geometry"]


def test_columns_and_bbox_together(mem: mg.Memory) -> None:
    gdf = make_grid_layer(40)
    mem.save(gdf, KEY, format="geoparquet")
    box = GRID_BOXES["partial"]
    expected = gdf[gdf.intersects(shapely.box(*box))][["label", "geometry"]].reset_index(drop=True)
    assert_same_vector(expected, mem.open(KEY, bbox=box, bbox_crs=UTM, columns=["label", "geometry"]))


def test_filters_are_passed_to_pyarrow(mem: mg.Memory) -> None:
    gdf = make_grid_layer(20)
    mem.save(gdf, KEY, format="geoparquet")
    back = mem.open(KEY, filters=[("value", ">=", 50.0)])
    assert_same_vector(gdf[gdf["value"] >= 50].reset_index(drop=True), back)


def test_unknown_keyword_is_refused_listing_the_accepted_ones(mem: mg.Memory) -> None:
    mem.save(make_grid_layer(5), KEY, format="geoparquet")
    with pytest.raises(OptionError, match="chunks") as info:
        mem.open(KEY, chunks={})
    for accepted in ("bbox", "bbox_crs", "time", "columns", "filters"):
        assert repr(accepted) in str(info.value)
    assert set(GeoParquetFormat.open_options) == {"filters"}


# -- the open contract: bbox CRS, time, columns ---------------------------------------------

LAYOUTS = {"plain": {}, "hilbert": {"sort": "hilbert", "row_group_size": 8}}


def native_box(box: tuple[float, ...], crs: str) -> tuple[float, ...]:
    transformer = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return transformer.transform_bounds(*box, densify_pts=21)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_bbox_defaults_to_epsg4326_and_bbox_crs_gives_the_same_rows(mem: mg.Memory, layout: str) -> None:
    gdf = make_grid_layer(60)
    mem.save(gdf, KEY, format="geoparquet", **LAYOUTS[layout])
    box = (1.0, 45.5, 3.0, 47.5)
    native = native_box(box, UTM)
    expected = gdf[gdf.intersects(shapely.box(*native))].reset_index(drop=True)
    assert 0 < len(expected) < len(gdf) - 2
    by_default = mem.open(KEY, bbox=box)
    assert_same_vector(expected, by_default)
    assert_same_vector(expected, mem.open(KEY, bbox=native, bbox_crs=UTM))
    assert_same_vector(expected, mem.open(KEY, bbox=box, bbox_crs="EPSG:4326"))
    assert len(mem.open(KEY, bbox=box, bbox_crs=UTM)) == 0


def test_bbox_crs_on_a_layer_in_epsg4326(mem: mg.Memory) -> None:
    gdf = make_large_points(2_000)
    mem.save(gdf, KEY, format="geoparquet", sort="hilbert", row_group_size=128)
    box = (0.0, 44.0, 3.0, 47.0)
    web = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    in_3857 = web.transform_bounds(*box)
    expected = gdf[gdf.intersects(shapely.box(*box))].reset_index(drop=True)
    assert 0 < len(expected) < len(gdf)
    assert_same_vector(expected, mem.open(KEY, bbox=box))
    back = mem.open(KEY, bbox=in_3857, bbox_crs="EPSG:3857")
    assert list(back["name"]) == list(expected["name"])


def expected_in_time(gdf: gpd.GeoDataFrame, start: Any, end: Any) -> gpd.GeoDataFrame:
    """Rows of ``observed`` (compared in UTC) in ``[start, end]``, numbered from 0."""
    observed = gdf["observed"]
    if observed.dt.tz is not None:
        observed = observed.dt.tz_convert("UTC").dt.tz_localize(None)
    keep = observed.notna()
    if start is not None:
        keep &= observed >= pd.Timestamp(start)
    if end is not None:
        keep &= observed <= pd.Timestamp(end)
    return gdf[keep.to_numpy()].reset_index(drop=True)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(("tz", "unit"), [(None, "ns"), (None, "s"), ("Europe/Paris", "ms"), ("UTC", "us")])
def test_time_selects_rows_on_the_first_datetime_column(
    mem: mg.Memory, layout: str, tz: str | None, unit: str
) -> None:
    gdf = make_timed_layer(tz=tz, unit=unit)
    mem.save(gdf, KEY, format="geoparquet", **LAYOUTS[layout])
    start, end = "2024-01-01T05:00:00.5", "2024-01-01T21:00"
    expected = expected_in_time(gdf, start, "2024-01-01T21:00:59.999999")
    assert expected["count"].min() == 6
    assert expected["count"].max() == 21
    assert_same_vector(expected, mem.open(KEY, time=(start, end)))
    whole_day = expected_in_time(gdf, "2024-01-01", "2024-01-01T23:59:59.999999")
    assert_same_vector(whole_day, mem.open(KEY, time="2024-01-01"))
    assert_same_vector(expected_in_time(gdf, "2024-01-02", None), mem.open(KEY, time=("2024-01-02", None)))
    assert len(mem.open(KEY, time="2025")) == 0


def test_time_bounds_outside_the_nanosecond_range(mem: mg.Memory) -> None:
    gdf = make_timed_layer()
    mem.save(gdf, KEY, format="geoparquet")
    assert_same_vector(expected_in_time(gdf, None, None), mem.open(KEY, time=("1500", "2500")))
    assert len(mem.open(KEY, time=("2300", None))) == 0


def test_time_with_bbox_columns_and_filters(mem: mg.Memory) -> None:
    gdf = make_timed_layer(200, crs="EPSG:4326")
    mem.save(gdf, KEY, format="geoparquet", sort="hilbert", row_group_size=16)
    box = (1.0, 45.5, 3.0, 47.5)
    start, end = pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-06")
    expected = expected_in_time(gdf, start, end)
    expected = expected[expected.intersects(shapely.box(*box)) & (expected["count"] % 2 == 0)]
    expected = expected[["label", "geometry"]].reset_index(drop=True)
    assert 0 < len(expected) < 50
    back = mem.open(
        KEY, bbox=box, time=(start, end), columns=["label"],
        filters=pc.equal(pc.bit_wise_and(pc.field("count"), 1), 0),
    )
    assert list(back.columns) == ["label", "geometry"]
    assert_same_vector(expected, back)


def test_time_is_pushed_down_to_row_groups(mem: mg.Memory) -> None:
    gdf = make_timed_layer(400, crs="EPSG:4326", unit="us")
    gdf = gdf[gdf["observed"].notna()].reset_index(drop=True)
    mem.save(gdf, KEY, format="geoparquet", sort="none", row_group_size=24)
    path = Path(stored_file(mem, KEY))
    assert time_column(pq.read_schema(path)) == "observed"
    day = ("2024-01-03", "2024-01-03T23:00")
    selected = mem.open(KEY, time=day)
    assert_same_vector(expected_in_time(gdf, *day), selected)
    data = bytearray(path.read_bytes())
    metadata = pq.read_metadata(path)
    assert metadata.num_row_groups > 10
    last = metadata.row_group(metadata.num_row_groups - 1).column(0)
    start = last.dictionary_page_offset or last.data_page_offset
    data[start:start + last.total_compressed_size] = b"\xff" * last.total_compressed_size
    path.write_bytes(bytes(data))
    with pytest.raises(OSError):
        mem.open(KEY)
    assert_same_vector(selected, mem.open(KEY, time=day))
    again = read_geoparquet(str(path), time=(pd.Timestamp(day[0]), pd.Timestamp(day[1])))
    assert_same_vector(selected, again)


def test_second_resolution_datetimes_round_trip(mem: mg.Memory) -> None:
    gdf = make_timed_layer(20, unit="s")
    gdf["paris_s"] = gdf["other_time"].astype("datetime64[s]").dt.tz_localize("Europe/Paris")
    gdf.index = pd.MultiIndex.from_arrays(
        [gdf["other_time"].astype("datetime64[s]"), np.arange(len(gdf))], names=["t", "n"]
    )
    for layout in LAYOUTS:
        mem.save(gdf, KEY, format="geoparquet", mode="w", **LAYOUTS[layout])
        back = mem.open(KEY)
        assert str(back["observed"].dtype) == "datetime64[s]"
        assert_same_vector(gdf, back)


def test_time_on_a_layer_without_datetimes_is_an_option_error(mem: mg.Memory) -> None:
    mem.save(make_grid_layer(5), KEY, format="geoparquet")
    with pytest.raises(OptionError, match="this layer has none") as info:
        mem.open(KEY, time="2024")
    assert "'label'" in str(info.value)
    mem.save(make_case("index-datetime"), "tests/indexed", format="geoparquet")
    with pytest.raises(OptionError, match="time="):
        mem.open("tests/indexed", time="2024")


def test_columns_errors(mem: mg.Memory) -> None:
    mem.save(make_grid_layer(5), KEY, format="geoparquet")
    with pytest.raises(ValueError, match=r"\['nope'\] are not in the stored layer") as info:
        mem.open(KEY, columns=["label", "nope"])
    assert "'value'" in str(info.value)
    assert_same_vector(make_grid_layer(5)[["label", "geometry"]], mem.open(KEY, columns="label"))
    mem.save(make_case("geoseries-named"), "tests/series", format="geoparquet")
    with pytest.raises(OptionError, match="GeoSeries"):
        mem.open("tests/series", columns=["shape"])
