from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon
from vector_cases import VECTOR_CASES, assert_same_vector, attributes_frame, make_case, make_grid_layer

import memories_geo as mg
from memories_geo.errors import UnsupportedObjectError
from memories_geo.formats.base import WriteOptions
from memories_geo.formats.geojson import GeoJSONFormat, invalid_geometries, is_rfc7946
from memories_geo.formats.registry import get_format
from memories_geo.testing import FormatRoundTripTests

pytest.importorskip("pyogrio")

KEY = "tests/layer"

#: Cases already in EPSG:4326 whose every value GeoJSON keeps exactly.
EXACT_CASES = [
    name
    for name in VECTOR_CASES
    if name.startswith(("geometry-", "index-"))
    and name != "geometry-missing_and_empty"
] + ["crs-epsg4326", "renamed-geometry-column", "geoseries-unnamed"]

#: Cases in another CRS: stored reprojected to EPSG:4326.
REPROJECTED_CASES = [
    "crs-epsg32631", "crs-epsg3857", "crs-custom_proj", "crs-custom_wkt", "crs-3d-custom_wkt",
    "grid-layer-utm", "geoseries-named", "geoseries-string_index",
]



def assert_close_geometries(expected: gpd.GeoSeries, actual: gpd.GeoSeries, tolerance: float) -> None:
    """Same shapes up to ``tolerance`` (Hausdorff distance; ring orientation may differ)."""
    assert expected.crs.equals(actual.crs, ignore_axis_order=True)
    left = np.asarray(expected.values, dtype=object)
    right = np.asarray(actual.values, dtype=object)
    missing = shapely.is_missing(left) | shapely.is_empty(left)
    assert (shapely.is_missing(right) | shapely.is_empty(right))[missing].all()
    left, right = left[~missing], right[~missing]
    assert (shapely.get_type_id(left) == shapely.get_type_id(right)).all()
    assert (shapely.hausdorff_distance(left, right) <= tolerance).all()


def stored_file(mem: mg.Memory, key: str) -> Path:
    entry = mem.info(key)
    return Path(mem.tiers.backend(entry.tier).full_path(entry.path))


def stored_document(mem: mg.Memory, key: str) -> dict[str, Any]:
    data = stored_file(mem, key).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return json.loads(data)


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.embedded(tmp_path / "memories"))


class TestGeoJSONRoundTrip(FormatRoundTripTests):
    format_name = "geojson"
    tier = "warm"

    @pytest.fixture(params=EXACT_CASES)
    def case(self, request: pytest.FixtureRequest) -> Any:
        return make_case(request.param)

    def assert_same(self, expected: Any, actual: Any) -> None:
        assert_same_vector(expected, actual)


def test_registry_returns_this_format() -> None:
    fmt = get_format("geojson")
    assert isinstance(fmt, GeoJSONFormat)
    assert fmt.extension == ".geojson"
    assert fmt.extension_for(WriteOptions(extra={"compress": True})) == ".geojson.gz"
    assert fmt.extension_for(WriteOptions()) == ".geojson"
    assert not fmt.can_store(pd.DataFrame({"a": [1]}))


@pytest.mark.parametrize("name", REPROJECTED_CASES)
def test_other_crs_is_stored_in_epsg4326_and_original_comes_back_on_request(
    mem: mg.Memory, name: str
) -> None:
    obj = make_case(name)
    entry = mem.save(obj, KEY, format="geojson")
    assert entry.crs == "EPSG:4326"
    assert "crs" not in stored_document(mem, KEY)
    stored = mem.open(KEY)
    assert stored.crs.equals(pyproj.CRS.from_epsg(4326))
    as_4326 = obj.to_crs("EPSG:4326")

    def geometry(o: Any) -> gpd.GeoSeries:
        return o if isinstance(o, gpd.GeoSeries) else o.geometry

    assert_close_geometries(geometry(as_4326), geometry(stored), tolerance=1e-9)
    original = mem.open(KEY, crs="original")
    assert original.crs.equals(obj.crs)
    assert_close_geometries(geometry(as_4326.to_crs(obj.crs)), geometry(original), tolerance=1e-9)
    assert_close_geometries(geometry(obj), geometry(original), tolerance=1e-2)
    assert list(original.index) == list(obj.index)
    if isinstance(obj, gpd.GeoDataFrame):
        attributes = [c for c in obj.columns if c != obj.geometry.name]
        pd.testing.assert_frame_equal(
            pd.DataFrame(obj[attributes]), pd.DataFrame(original[attributes])
        )
    to_3857 = mem.open(KEY, crs="EPSG:3857")
    assert to_3857.crs.equals(pyproj.CRS.from_epsg(3857))


def test_file_follows_rfc7946(mem: mg.Memory) -> None:
    clockwise = Polygon([(0, 0), (0, 1), (1, 1), (1, 0)], holes=[[(0.2, 0.2), (0.4, 0.2), (0.4, 0.4)]])
    assert not clockwise.exterior.is_ccw
    utm = gpd.GeoDataFrame(
        {"name": ["cw", "line"]},
        geometry=[
            shapely.affinity.translate(shapely.affinity.scale(clockwise, 1000, 1000), 500_000, 5_000_000),
            LineString([(500_000, 5_000_000), (501_000, 5_001_000)]),
        ],
        crs="EPSG:32631",
    )
    mem.save(utm, KEY, format="geojson")
    document = stored_document(mem, KEY)
    assert is_rfc7946(document) == []
    lon, lat = document["features"][1]["geometry"]["coordinates"][0]
    assert lon == pytest.approx(3.0, abs=1e-9)
    assert lat == pytest.approx(45.153, abs=0.001)


def test_rfc7946_checker_reports_each_departure() -> None:
    document = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "EPSG:4326"}},
        "features": [
            {"type": "Feature", "properties": {}, "geometry": {
                "type": "Polygon", "coordinates": [[[0, 0], [0, 1], [1, 1], [0, 0]]]}},
            {"type": "Feature", "properties": {}, "geometry": {
                "type": "Point", "coordinates": [45.0, 200.0]}},
        ],
    }
    problems = is_rfc7946(document)
    assert any("crs" in p for p in problems)
    assert any("feature 0" in p and "clockwise" in p for p in problems)
    assert any("feature 1" in p and "outside" in p for p in problems)


def test_attribute_dtypes_kept_or_changed_as_documented(mem: mg.Memory) -> None:
    gdf = attributes_frame()
    mem.save(gdf, KEY, format="geojson")
    back = mem.open(KEY)
    expected = gdf.copy()
    expected["float64"] = expected["float64"].replace(np.inf, np.nan)
    for column in ("datetime_naive", "datetime_ns"):
        expected[column] = expected[column].dt.floor("ms")
    assert_same_vector(expected, back)
    assert back["datetime_paris"].dt.tz is not None
    assert str(back["datetime_paris"].dt.tz) == "Europe/Paris"
    assert back["ordered_category"].cat.ordered


def test_empty_point_comes_back_missing_other_empties_stay(mem: mg.Memory) -> None:
    gdf = make_case("geometry-missing_and_empty")
    mem.save(gdf, KEY, format="geojson")
    back = mem.open(KEY)
    expected = gdf.copy()
    empty_point = (gdf.geom_type == "Point") & gdf.geometry.is_empty
    assert empty_point.sum() == 1
    expected.loc[empty_point, "geometry"] = None
    assert back.geometry[empty_point].isna().all()
    assert_same_vector(expected, back)


def test_empty_frame_round_trips(mem: mg.Memory) -> None:
    gdf = make_case("empty-frame")
    mem.save(gdf, KEY, format="geojson")
    back = mem.open(KEY)
    assert len(back) == 0
    assert list(back.columns) == list(gdf.columns)


def test_second_geometry_column_is_refused_with_the_fix(mem: mg.Memory) -> None:
    with pytest.raises(UnsupportedObjectError, match=r"to_wkt\(\)"):
        mem.save(make_case("second-geometry-column"), KEY, format="geojson")
    with pytest.raises(mg.KeyNotFoundError):
        mem.info(KEY)


def test_validate_reports_invalid_features(mem: mg.Memory) -> None:
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    gdf = gpd.GeoDataFrame(
        {"v": [1, 2, 3]},
        geometry=[bowtie, Point(0, 0), Polygon([(0, 0), (2, 0), (2, 2), (0, 2)], [[(1, 1), (3, 1), (3, 3)]])],
        index=pd.Index(["bow", "ok", "hole"], name="id"),
        crs="EPSG:4326",
    )
    assert set(invalid_geometries(gdf.geometry)) == {"bow", "hole"}
    with pytest.raises(UnsupportedObjectError) as info:
        mem.save(gdf, KEY, format="geojson", validate=True)
    message = str(info.value)
    assert "2 invalid geometries" in message
    assert "row 'bow': Self-intersection" in message
    assert "row 'hole'" in message
    assert "'ok'" not in message
    assert "make_valid" in message
    with pytest.raises(mg.KeyNotFoundError):
        mem.info(KEY)
    mem.save(gdf, KEY, format="geojson")
    assert len(mem.open(KEY)) == 3


def test_compress_writes_gzip_and_round_trips(mem: mg.Memory) -> None:
    gdf = make_case("index-string")
    entry = mem.save(gdf, KEY, format="geojson", compress=True)
    assert stored_file(mem, KEY).read_bytes()[:2] == b"\x1f\x8b"
    assert entry.object_info["compression"] == "gzip"
    assert_same_vector(gdf, mem.open(KEY))
    plain = mem.save(gdf, "tests/plain", format="geojson")
    assert entry.size_bytes < plain.size_bytes


def test_precision_rounds_coordinates(mem: mg.Memory) -> None:
    gdf = gpd.GeoDataFrame(
        {"v": [1, 2]},
        geometry=[Point(1.23456789, 2.3456789), LineString([(0.1111111, 0.2222222), (3.3333333, 4.4444444)])],
        crs="EPSG:4326",
    )
    mem.save(gdf, KEY, format="geojson", precision=3)
    document = stored_document(mem, KEY)
    assert document["features"][0]["geometry"]["coordinates"] == [1.235, 2.346]
    back = mem.open(KEY)
    assert_close_geometries(gdf.geometry, back.geometry, tolerance=5e-4 * 2**0.5)
    assert not shapely.equals_exact(back.geometry.iloc[0], gdf.geometry.iloc[0], tolerance=1e-6)


def test_bbox_and_columns(mem: mg.Memory) -> None:
    gdf = make_grid_layer(40).to_crs("EPSG:4326")
    mem.save(gdf, KEY, format="geojson")
    box = (2.0, 45.5, 3.5, 47.0)
    expected = gdf[gdf.intersects(shapely.box(*box))][["label", "geometry"]].reset_index(drop=True)
    assert 0 < len(expected) < len(gdf)
    back = mem.open(KEY, bbox=box, columns=["label"])
    assert list(back.columns) == ["label", "geometry"]
    assert_same_vector(expected, back)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [({"precision": -1}, ValueError, "precision"), ({"indent": 2}, TypeError, "indent")],
)
def test_write_options_are_validated(mem: mg.Memory, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        mem.save(make_case("geometry-points"), KEY, format="geojson", **kwargs)


def test_unknown_query_keyword_and_append_are_refused(mem: mg.Memory) -> None:
    gdf = make_case("geometry-points")
    mem.save(gdf, KEY, format="geojson")
    with pytest.raises(TypeError, match="filters"):
        mem.open(KEY, filters=[("id", "=", 1)])
    with pytest.raises(UnsupportedObjectError, match="cannot append"):
        mem.save(gdf, KEY, mode="a")
