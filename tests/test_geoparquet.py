from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyproj
import pytest
import shapely
from shapely.geometry import Point, Polygon
from vector_cases import (
    GRID_BOXES,
    VECTOR_CASES,
    assert_same_vector,
    attributes_frame,
    make_case,
    make_grid_layer,
    make_large_points,
)

import memories_geo as mg
from memories_geo.backends.base import Location
from memories_geo.backends.files import FileBackend
from memories_geo.errors import UnsupportedObjectError
from memories_geo.formats.base import WriteOptions
from memories_geo.formats.geoparquet import (
    PARQUET_COMPRESSION,
    GeoParquetFormat,
    covering_column,
    write_settings,
)
from memories_geo.formats.registry import get_format
from memories_geo.query import open_request
from memories_geo.testing import FormatRoundTripTests
from memories_geo.types import CompressionLevel

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GEOPARQUET_DATA = SHARED_DATA / "geoparquet"
PROJJSON_SCHEMA_URL = "https://proj.org/schemas/v0.7/projjson.schema.json"
CONFORMANCE_TYPES = (
    "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon"
)
KEY = "tests/layer"
UTM = "EPSG:32631"


def shared_file(name: str) -> Path:
    """Path of a file in ../shared/data/geoparquet: skipped when absent, failed in CI."""
    path = GEOPARQUET_DATA / name
    if not path.exists():
        message = f"{path} is absent: the shared GeoParquet test data lives beside the repository"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def stored_file(mem: mg.Memory, key: str, version: int | None = None) -> str:
    entry = mem.info(key, version=version)
    return mem.tiers.backend(entry.tier).full_path(entry.path)


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.embedded(tmp_path / "memories"))


@pytest.fixture(scope="module")
def geo_validator() -> Any:
    """Validator of ``geo`` metadata against the official 1.1.0 schema, offline."""
    jsonschema = pytest.importorskip("jsonschema")
    from referencing import Registry
    from referencing.jsonschema import DRAFT7

    schema = json.loads(shared_file("schema-1.1.0.json").read_text())
    registry = Registry().with_resource(
        PROJJSON_SCHEMA_URL, DRAFT7.create_resource({"type": "object"})
    )
    return jsonschema.Draft7Validator(schema, registry=registry)


# -- the shared round-trip contract ------------------------------------------------------


class TestGeoParquetRoundTrip(FormatRoundTripTests):
    format_name = "geoparquet"
    tier = "warm"

    @pytest.fixture(params=list(VECTOR_CASES))
    def case(self, request: pytest.FixtureRequest) -> Any:
        return make_case(request.param)

    def assert_same(self, expected: Any, actual: Any) -> None:
        assert_same_vector(expected, actual)

    def test_input_is_not_modified(self, memory: mg.Memory, case: Any) -> None:
        before = case.copy(deep=True)
        memory.save(case, self.key, format=self.format_name, tier=self.tier)
        assert_same_vector(before, case)


def test_registry_returns_this_format() -> None:
    fmt = get_format("geoparquet")
    assert isinstance(fmt, GeoParquetFormat)
    assert fmt.extension == ".parquet"
    assert fmt.can_store(make_case("geometry-points"))
    assert fmt.can_store(make_case("geoseries-named"))
    assert not fmt.can_store(pd.DataFrame({"a": [1]}))


# -- what geopandas/pyarrow cannot keep (documented, strict so a fix is noticed) -----------


@pytest.mark.xfail(
    strict=True,
    reason="pyarrow writes no dictionary for a zero-row categorical: its categories are lost",
)
def test_limitation_empty_categorical_keeps_categories(mem: mg.Memory) -> None:
    gdf = attributes_frame().iloc[:0][["category", "geometry"]]
    mem.save(gdf, KEY, format="geoparquet")
    assert_same_vector(gdf, mem.open(KEY))


@pytest.mark.xfail(
    strict=True, reason="pandas' Parquet metadata does not record a DatetimeIndex freq"
)
def test_limitation_datetime_index_freq(mem: mg.Memory) -> None:
    gdf = make_case("geometry-points")
    gdf.index = pd.date_range("2024-01-01", periods=len(gdf), freq="D", name="t")
    mem.save(gdf, KEY, format="geoparquet")
    assert_same_vector(gdf, mem.open(KEY))


# -- CRS --------------------------------------------------------------------------------


def test_missing_crs_is_refused_with_the_fix(mem: mg.Memory) -> None:
    gdf = make_case("geometry-points").set_crs(None, allow_override=True)
    assert gdf.crs is None
    with pytest.raises(UnsupportedObjectError, match=r"no CRS") as info:
        mem.save(gdf, KEY, format="geoparquet")
    assert "crs=" in str(info.value)
    assert "gdf.set_crs(" in str(info.value)
    with pytest.raises(mg.KeyNotFoundError):
        mem.info(KEY)


def test_missing_crs_on_a_geoseries_is_refused(mem: mg.Memory) -> None:
    with pytest.raises(UnsupportedObjectError, match=r"crs="):
        mem.save(gpd.GeoSeries([Point(0, 0)]), KEY, format="geoparquet")


def test_crs_keyword_assigns_a_crs_without_touching_the_input(mem: mg.Memory) -> None:
    gdf = make_case("grid-layer-utm").set_crs(None, allow_override=True)
    entry = mem.save(gdf, KEY, format="geoparquet", crs="EPSG:32631")
    assert gdf.crs is None
    assert gdf.geometry.crs is None
    back = mem.open(KEY)
    assert back.crs == pyproj.CRS.from_epsg(32631)
    assert entry.crs == "EPSG:32631"
    assert_same_vector(gdf.set_crs("EPSG:32631"), back)


def test_crs_keyword_matching_the_data_is_accepted(mem: mg.Memory) -> None:
    gdf = make_case("crs-epsg3857")
    mem.save(gdf, KEY, format="geoparquet", crs="EPSG:3857")
    assert_same_vector(gdf, mem.open(KEY))


def test_conflicting_crs_is_refused(mem: mg.Memory) -> None:
    gdf = make_case("crs-epsg32631")
    with pytest.raises(UnsupportedObjectError, match=r"to_crs") as info:
        mem.save(gdf, KEY, format="geoparquet", crs="EPSG:4326")
    assert "EPSG:32631" in str(info.value)
    assert gdf.crs == pyproj.CRS.from_epsg(32631)


# -- appending -----------------------------------------------------------------------------


def test_mode_a_appends_rows_and_keeps_v1(mem: mg.Memory) -> None:
    first = make_grid_layer(10)
    second = make_grid_layer(10).iloc[:7].reset_index(drop=True)
    second["value"] += 1000
    v1 = mem.save(first, KEY, format="geoparquet")
    v1_bytes = Path(stored_file(mem, KEY)).read_bytes()
    v2 = mem.save(second, KEY, mode="a")
    assert (v1.version, v2.version) == (1, 2)
    expected = pd.concat([first, second], ignore_index=True)
    assert_same_vector(expected, mem.open(KEY))
    assert_same_vector(first, mem.open(KEY, version=1))
    assert Path(stored_file(mem, KEY, version=1)).read_bytes() == v1_bytes
    assert v2.shape == {"rows": len(first) + len(second)}
    mem.verify(KEY, all_versions=True)


def test_mode_a_keeps_labelled_indexes(mem: mg.Memory) -> None:
    first = make_case("index-string")
    second = first.iloc[:2].copy()
    second.index = pd.Index(["new1", "new2"], name="code")
    mem.save(first, KEY, format="geoparquet")
    mem.save(second, KEY, mode="a")
    assert_same_vector(pd.concat([first, second]), mem.open(KEY))


def test_mode_a_on_a_geoseries(mem: mg.Memory) -> None:
    first = make_case("geoseries-named")
    mem.save(first, KEY, format="geoparquet")
    mem.save(first.iloc[:2], KEY, mode="a")
    back = mem.open(KEY)
    assert_same_vector(pd.concat([first, first.iloc[:2]], ignore_index=True), back)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("drop_column", "columns differ"),
        ("extra_column", "columns differ"),
        ("crs", "reproject"),
        ("dtype", "column types would change"),
    ],
)
def test_mode_a_refuses_incompatible_rows(mem: mg.Memory, change: str, message: str) -> None:
    first = make_grid_layer(5)
    mem.save(first, KEY, format="geoparquet")
    other = first.copy()
    if change == "drop_column":
        other = other.drop(columns="label")
    elif change == "extra_column":
        other["extra"] = 1
    elif change == "crs":
        other = other.to_crs("EPSG:4326")
    else:
        other["label"] = np.arange(len(other))
    with pytest.raises(UnsupportedObjectError, match=message):
        mem.save(other, KEY, mode="a")
    assert [e.version for e in mem.versions(KEY)] == [1]
    assert_same_vector(first, mem.open(KEY))


# -- footprint, compression, file contents ---------------------------------------------------


def test_footprint_of_a_utm_layer(mem: mg.Memory) -> None:
    gdf = make_grid_layer(30)
    entry = mem.save(gdf, KEY, format="geoparquet")
    valid = gdf[~(gdf.geometry.isna() | gdf.geometry.is_empty)]
    native = tuple(valid.total_bounds)
    transformer = pyproj.Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
    expected = transformer.transform_bounds(*native, densify_pts=21)
    assert entry.bbox == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert entry.native_bbox == pytest.approx(native)
    assert entry.crs == "EPSG:32631"
    assert entry.shape == {"rows": len(gdf)}
    assert set(entry.variables) == {"value", "label"}
    assert 0 < entry.bbox[0] < entry.bbox[2] < 9
    assert 44 < entry.bbox[1] < entry.bbox[3] < 50


ZSTD_LEVELS = {
    CompressionLevel.FAST: 1,
    CompressionLevel.MEDIUM: 3,
    CompressionLevel.HIGH: 9,
    CompressionLevel.MAXIMUM: 19,
}


@pytest.mark.parametrize("level", list(CompressionLevel))
def test_compression_level_is_applied(
    mem: mg.Memory, tmp_path: Path, level: CompressionLevel
) -> None:
    gdf = make_grid_layer(50)
    mem.save(gdf, KEY, format="geoparquet", compression=level)
    path = stored_file(mem, KEY)
    metadata = pq.ParquetFile(path).metadata
    codecs = {
        metadata.row_group(r).column(c).compression
        for r in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    }
    assert codecs == {"ZSTD"}
    assert PARQUET_COMPRESSION[level] == {
        "compression": "zstd", "compression_level": ZSTD_LEVELS[level]
    }
    raw = {}
    for other in CompressionLevel:
        target = tmp_path / f"raw-{other.value}.parquet"
        gdf.to_parquet(
            target,
            schema_version="1.1.0",
            write_covering_bbox=True,
            compression="zstd",
            compression_level=ZSTD_LEVELS[other],
        )
        raw[other] = target.read_bytes()
    assert len(set(raw.values())) > 1
    stored = Path(path).read_bytes()
    assert [other for other, data in raw.items() if data == stored] == [level]


def test_tier_compression_is_the_default(mem: mg.Memory, tmp_path: Path) -> None:
    gdf = make_grid_layer(50)
    for tier in ("hot", "cold"):
        key = f"{KEY}-{tier}"
        mem.save(gdf, key, format="geoparquet", tier=tier)
        target = tmp_path / f"{tier}.parquet"
        gdf.to_parquet(target, **write_settings(mem.tiers.tier_config(tier).compression))
        assert Path(stored_file(mem, key)).read_bytes() == target.read_bytes()
    assert write_settings("maximum")["compression_level"] == 19


def test_user_bbox_column_is_kept_and_covering_renamed(
    mem: mg.Memory, geo_validator: Any
) -> None:
    gdf = make_grid_layer(20)
    gdf["bbox"] = [f"user value {i}" for i in range(len(gdf))]
    mem.save(gdf, KEY, format="geoparquet", compression="high")
    assert_same_vector(gdf, mem.open(KEY))
    path = stored_file(mem, KEY)
    geo = json.loads(pq.read_metadata(path).metadata[b"geo"])
    geo_validator.validate(geo)
    name = covering_column(geo)
    assert name not in (None, "bbox")
    schema = pq.read_schema(path)
    assert pa.types.is_string(schema.field("bbox").type) or pa.types.is_large_string(
        schema.field("bbox").type
    )
    assert schema.field(name).type.num_fields == 4
    box = GRID_BOXES["partial"]
    expected = gdf[gdf.intersects(shapely.box(*box))].reset_index(drop=True)
    assert_same_vector(expected, mem.open(KEY, bbox=box, bbox_crs=UTM))
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_writes_through_a_non_local_filesystem() -> None:
    pytest.importorskip("fsspec")
    backend = FileBackend("memory://mg-geoparquet-tests")
    location = Location(backend, "layer/@v/1.parquet")
    fmt = GeoParquetFormat()
    gdf = make_case("attributes")
    try:
        result = fmt.write(gdf, location, WriteOptions(mode="w"))
        assert not location.is_local
        assert result.size_bytes == backend.fs.size(location.full_path)
        assert_same_vector(gdf, fmt.open(location, result.object_info, open_request()))
        assert fmt.verify(location, result.manifest) == []
    finally:
        fmt.delete(location)
    assert not backend.exists(location.path)


# -- GeoSeries ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, "shape", 7])
def test_geoseries_round_trip_keeps_type_and_name(mem: mg.Memory, name: Any) -> None:
    series = gpd.GeoSeries(
        [Point(0, 0), None, Polygon([(0, 0), (1, 0), (1, 1)])],
        index=pd.Index([5, 6, 9], name="fid"),
        crs="EPSG:4326",
        name=name,
    )
    entry = mem.save(series, KEY, format="geoparquet")
    assert entry.object_info["type"] == "GeoSeries"
    back = mem.open(KEY)
    assert isinstance(back, gpd.GeoSeries)
    assert back.name == name
    assert_same_vector(series, back)
    subset = mem.open(KEY, bbox=(0.5, 0.1, 2, 2))
    assert isinstance(subset, gpd.GeoSeries)
    assert list(subset.index) == [9]


# -- conformance with the GeoParquet 1.1.0 specification ------------------------------------


def test_schema_validator_rejects_bad_metadata(geo_validator: Any) -> None:
    good = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": []}},
    }
    geo_validator.validate(good)
    assert not geo_validator.is_valid({**good, "version": "1.0.0"})
    assert not geo_validator.is_valid(
        {**good, "columns": {"geometry": {"encoding": "WKB", "geometry_types": [], "crs": 3}}}
    )


@pytest.mark.parametrize("name", list(VECTOR_CASES))
def test_written_geo_metadata_conforms_to_1_1_0(
    mem: mg.Memory, geo_validator: Any, name: str
) -> None:
    obj = make_case(name)
    mem.save(obj, KEY, format="geoparquet")
    path = stored_file(mem, KEY)
    geo = json.loads(pq.read_metadata(path).metadata[b"geo"])
    geo_validator.validate(geo)
    assert geo["version"] == "1.1.0"
    gdf = obj.to_frame("geometry") if isinstance(obj, gpd.GeoSeries) else obj
    assert geo["primary_column"] == gdf.geometry.name
    primary = geo["columns"][gdf.geometry.name]
    covering = primary["covering"]["bbox"]
    assert covering == {axis: ["bbox", axis] for axis in ("xmin", "ymin", "xmax", "ymax")}
    bbox_type = pq.read_schema(path).field("bbox").type
    assert sorted(bbox_type.field(i).name for i in range(bbox_type.num_fields)) == [
        "xmax", "xmin", "ymax", "ymin"
    ]
    assert pyproj.CRS.from_json_dict(primary["crs"]) == gdf.crs


def _expected_geometries(csv: Path) -> pd.DataFrame:
    frame = pd.read_csv(csv, dtype={"geometry": "object"}, keep_default_na=False)
    frame["geometry"] = [shapely.from_wkt(w) if w else None for w in frame["geometry"]]
    return frame


def _normalized_wkt(geom: Any) -> str | None:
    return None if geom is None else shapely.normalize(geom).wkt


@pytest.mark.parametrize("encoding", ["wkb", "native"])
@pytest.mark.parametrize("geometry_type", CONFORMANCE_TYPES)
def test_reads_official_conformance_files(geometry_type: str, encoding: str) -> None:
    path = shared_file(f"data-{geometry_type}-encoding_{encoding}.parquet")
    expected = _expected_geometries(shared_file(f"data-{geometry_type}-wkt.csv"))
    location = Location(FileBackend(str(path.parent)), path.name)
    got = GeoParquetFormat().open(location, {}, open_request())
    assert isinstance(got, gpd.GeoDataFrame)
    assert list(got["col"]) == list(expected["col"])
    assert len(got) == len(expected)
    for want, have in zip(expected["geometry"], got.geometry, strict=True):
        assert _normalized_wkt(have) == _normalized_wkt(want)
        if want is not None:
            assert shapely.equals(have, want) or (want.is_empty and have.is_empty)
            assert have.geom_type == want.geom_type


@pytest.mark.parametrize("encoding", ["wkb", "native"])
def test_bbox_on_conformance_files_without_a_covering(encoding: str) -> None:
    path = shared_file(f"data-polygon-encoding_{encoding}.parquet")
    location = Location(FileBackend(str(path.parent)), path.name)
    box = (12.0, 30.0, 13.0, 31.0)
    got = GeoParquetFormat().open(location, {}, open_request(bbox=box))
    full = GeoParquetFormat().open(location, {}, open_request())
    expected = full[full.intersects(shapely.box(*box))].reset_index(drop=True)
    assert len(expected) == 1
    assert_same_vector(expected, got)


def test_reads_the_specification_example() -> None:
    path = shared_file("example.parquet")
    location = Location(FileBackend(str(path.parent)), path.name)
    got = GeoParquetFormat().open(location, {}, open_request())
    assert got.crs == pyproj.CRS.from_user_input("OGC:CRS84")
    assert "bbox" not in got.columns
    assert {"pop_est", "continent", "name", "iso_a3", "gdp_md_est"} <= set(got.columns)
    assert list(got["iso_a3"]) == ["FJI", "TZA", "ESH", "CAN", "USA"]
    assert got.geom_type.isin(["Polygon", "MultiPolygon"]).all()
    africa = (-20.0, -5.0, 35.0, 25.0)
    subset = GeoParquetFormat().open(
        location, {}, open_request(bbox=africa, columns=["name", "geometry"])
    )
    expected = got[got.intersects(shapely.box(*africa))][["name", "geometry"]]
    assert list(subset["name"]) == ["Tanzania", "W. Sahara"]
    assert_same_vector(expected.reset_index(drop=True), subset)


def test_sorted_layout_writes_a_valid_geo_metadata(mem: mg.Memory, geo_validator: Any) -> None:
    mem.save(make_large_points(), KEY, format="geoparquet")
    geo_validator.validate(json.loads(pq.read_metadata(stored_file(mem, KEY)).metadata[b"geo"]))
    mem.save(make_grid_layer(40), "tests/grid", format="geoparquet", sort="hilbert", row_group_size=8)
    geo = json.loads(pq.read_metadata(stored_file(mem, "tests/grid")).metadata[b"geo"])
    geo_validator.validate(geo)
    assert covering_column(geo) == "bbox"


# -- issue 15: delayed saves (defect 13) and columns Arrow cannot hold (defect 5) -------------


def _tier_files(mem: mg.Memory, tier: str = "hot") -> list[str]:
    """Files under a tier's root, leaving out the store's own ``@``-folders (journal)."""
    root = Path(mem.tiers.backend(tier).full_path(""))
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.relative_to(root).parts[0].startswith("@"))


@pytest.mark.parametrize("mode", ["w-", "a"])
def test_compute_false_writes_and_commits_only_when_computed(mem: mg.Memory, mode: str) -> None:
    gdf = make_grid_layer()
    committed = [KEY] if mode == "a" else []
    if mode == "a":
        mem.save(gdf.iloc[:5], KEY)
    before = _tier_files(mem)
    delayed = mem.save(gdf.iloc[5:] if mode == "a" else gdf, KEY, format="geoparquet", mode=mode,
                       compute=False)
    assert list(mem.ls().key) == committed
    assert list(mem.search(bbox=(-180, -90, 180, 90)).key) == committed
    assert _tier_files(mem) == before
    entry = delayed.compute()
    assert (entry.key, entry.version) == (KEY, 2 if mode == "a" else 1)
    assert list(mem.ls().key) == [KEY]
    assert list(mem.search(bbox=(-180, -90, 180, 90)).key) == [KEY]
    assert_same_vector(gdf, mem.open(KEY))
    mem.verify(KEY)


_BAD_COLUMNS = {
    "dicts-and-ints": ([{"k": 1}, 3, None], ("dict", "int")),
    "str-and-int": (["x", 3, "y"], ("str", "int")),
    "bool-and-int": ([True, 1, None], ("bool", "int")),
    "arbitrary-objects": ([object(), object(), None], ("object",)),
}


@pytest.mark.parametrize("case", list(_BAD_COLUMNS))
def test_an_object_column_arrow_cannot_hold_is_refused_before_writing(mem: mg.Memory, case: str) -> None:
    values, types = _BAD_COLUMNS[case]
    gdf = gpd.GeoDataFrame({"fine": [1, 2, 3], "bad": values},
                           geometry=[Point(i, i) for i in range(3)], crs="EPSG:4326")
    with pytest.raises(UnsupportedObjectError, match=r"column 'bad' \(dtype object\)") as raised:
        mem.save(gdf, KEY, format="geoparquet")
    assert isinstance(raised.value, TypeError)
    assert all(t in str(raised.value) for t in types)
    assert "fine" not in str(raised.value)
    assert mem.ls().empty
    assert _tier_files(mem) == []


def test_an_index_arrow_cannot_hold_is_refused(mem: mg.Memory) -> None:
    gdf = gpd.GeoDataFrame({"v": [1, 2]}, geometry=[Point(0, 0), Point(1, 1)], crs="EPSG:4326",
                           index=pd.Index(["x", 3], dtype=object, name="id"))
    with pytest.raises(UnsupportedObjectError, match=r"index level 'id' \(dtype object\)"):
        mem.save(gdf, KEY, format="geoparquet")
    assert mem.ls().empty


@pytest.mark.parametrize("codec", ["snappy", "zstd", "gzip", "none"])
def test_a_codec_is_written_for_a_small_unsorted_layer(tmp_path, codec):
    import pyarrow.parquet as pq

    from memories_geo.examples import sample_vector

    mem = mg.Memory(tmp_path)
    gdf = sample_vector()
    entry = mem.save(gdf, "small", compression=codec)
    stored = pq.ParquetFile(entry.uri.removeprefix("file://")).metadata.row_group(0).column(0).compression
    assert stored == ("UNCOMPRESSED" if codec == "none" else codec.upper())
    from geopandas.testing import assert_geodataframe_equal

    assert_geodataframe_equal(mem.open("small"), gdf)
