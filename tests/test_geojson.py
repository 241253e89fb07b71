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
from vector_cases import (
    VECTOR_CASES,
    assert_same_vector,
    attributes_frame,
    make_case,
    make_grid_layer,
    make_timed_layer,
)

import memories_geo as mg
from memories_geo.errors import OptionError, UnsupportedObjectError
from memories_geo.formats.base import WriteOptions
from memories_geo.formats.geojson import GeoJSONFormat, invalid_geometries, is_rfc7946
from memories_geo.formats.registry import get_format
from memories_geo.query import open_request
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


def test_bbox_in_another_crs_gives_the_same_rows(mem: mg.Memory) -> None:
    gdf = make_grid_layer(40)
    mem.save(gdf, KEY, format="geojson")
    utm_box = (450_000.0, 5_050_000.0, 600_000.0, 5_250_000.0)
    box = pyproj.Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform_bounds(
        *utm_box, densify_pts=21
    )
    stored = mem.open(KEY)
    expected = stored[stored.intersects(shapely.box(*box))].reset_index(drop=True)
    assert 0 < len(expected) < len(gdf) - 2
    assert_same_vector(expected, mem.open(KEY, bbox=utm_box, bbox_crs="EPSG:32631"))
    assert_same_vector(expected, mem.open(KEY, bbox=box))
    assert len(mem.open(KEY, bbox=utm_box)) == 0
    in_original = mem.open(KEY, bbox=utm_box, bbox_crs="EPSG:32631", crs="original")
    assert in_original.crs.equals(gdf.crs)
    assert list(in_original["label"]) == list(expected["label"])


def expected_in_time(gdf: gpd.GeoDataFrame, start: Any, end: Any) -> gpd.GeoDataFrame:
    """Rows of ``observed`` (compared in UTC) in ``[start, end]``, numbered from 0."""
    observed = gdf["observed"]
    if observed.dt.tz is not None:
        observed = observed.dt.tz_convert("UTC").dt.tz_localize(None)
    keep = observed.notna() & (observed >= pd.Timestamp(start)) & (observed <= pd.Timestamp(end))
    return gdf[keep.to_numpy()].reset_index(drop=True)


@pytest.mark.parametrize("tz", [None, "Europe/Paris"])
def test_time_selects_rows_on_the_first_datetime_column(mem: mg.Memory, tz: str | None) -> None:
    gdf = make_timed_layer(tz=tz, crs="EPSG:4326")
    mem.save(gdf, KEY, format="geojson")
    entry = mem.info(KEY)
    assert pd.Timestamp(entry.time_start) == pd.Timestamp("2024-01-01T01:00")
    start, end = pd.Timestamp("2024-01-01T05:00:00.5"), pd.Timestamp("2024-01-01T21:00")
    expected = expected_in_time(gdf, start, end)
    assert list(expected["count"]) == [6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19, 21]
    assert_same_vector(expected, mem.open(KEY, time=(start, end)))
    only_label = mem.open(KEY, time=(start, end), columns=["label"])
    assert_same_vector(expected[["label", "geometry"]], only_label)
    assert len(mem.open(KEY, time="2025")) == 0


def test_time_on_a_layer_without_datetimes_is_an_option_error(mem: mg.Memory) -> None:
    mem.save(make_grid_layer(5), KEY, format="geojson")
    with pytest.raises(OptionError, match="this layer has none") as info:
        mem.open(KEY, time="2024")
    assert "'label'" in str(info.value)


def test_footprint_ignores_the_index(mem: mg.Memory) -> None:
    gdf = make_case("index-datetime")
    entry = mem.save(gdf, KEY, format="geojson")
    assert entry.variables == ("id",)
    assert entry.time_start is None
    with pytest.raises(OptionError, match="time="):
        mem.open(KEY, time="2024")


def test_columns_on_a_geoseries_is_an_option_error(mem: mg.Memory) -> None:
    mem.save(make_case("geoseries-named"), KEY, format="geojson")
    with pytest.raises(OptionError, match="GeoSeries"):
        mem.open(KEY, columns=["shape"])


def test_format_open_takes_a_request(tmp_path: Path) -> None:
    from memories_geo.backends.base import Location
    from memories_geo.backends.files import FileBackend

    fmt = GeoJSONFormat()
    location = Location(FileBackend(str(tmp_path)), "layer.geojson")
    gdf = make_timed_layer(10, crs="EPSG:4326")
    result = fmt.write(gdf, location, WriteOptions(mode="w"))
    assert_same_vector(gdf, fmt.open(location, result.object_info, open_request()))
    utm = fmt.open(location, result.object_info, open_request(options={"crs": "EPSG:32631"}))
    assert utm.crs.equals(pyproj.CRS.from_epsg(32631))
    box = tuple(utm.iloc[[2, 7]].total_bounds + np.array([-1, -1, 1, 1]))
    later = utm["observed"] >= pd.Timestamp("2024-01-01T03:00")
    expected = utm[utm.intersects(shapely.box(*box)) & later]
    assert 7 in list(expected["count"])
    assert 2 not in list(expected["count"])
    request = open_request(bbox=box, bbox_crs="EPSG:32631", time=("2024-01-01T03:00", None))
    got = fmt.open(location, result.object_info, request)
    assert list(got["count"]) == list(expected["count"])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [({"precision": -1}, ValueError, "precision"), ({"indent": 2}, OptionError, "indent")],
)
def test_write_options_are_validated(mem: mg.Memory, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        mem.save(make_case("geometry-points"), KEY, format="geojson", **kwargs)


def test_unknown_keyword_and_append_are_refused(mem: mg.Memory) -> None:
    gdf = make_case("geometry-points")
    mem.save(gdf, KEY, format="geojson")
    with pytest.raises(OptionError, match="filters") as info:
        mem.open(KEY, filters=[("id", "=", 1)])
    for accepted in ("bbox", "bbox_crs", "time", "columns", "crs"):
        assert repr(accepted) in str(info.value)
    assert set(GeoJSONFormat.open_options) == {"crs"}
    with pytest.raises(UnsupportedObjectError, match="cannot append"):
        mem.save(gdf, KEY, mode="a")


# -- issue 15: delayed saves (defect 13) and properties GeoJSON cannot keep (defect 5) -----------


def _tier_files(mem: mg.Memory) -> list[str]:
    root = Path(mem.tiers.backend("hot").full_path(""))
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.relative_to(root).parts[0].startswith("@"))


def test_compute_false_writes_and_commits_only_when_computed(mem: mg.Memory) -> None:
    gdf = make_case("geometry-points")
    delayed = mem.save(gdf, KEY, format="geojson", compute=False, compress=True)
    assert mem.ls().empty
    assert mem.search().empty
    assert _tier_files(mem) == []
    entry = delayed.compute()
    assert entry.uri.endswith(".geojson.gz")
    assert list(mem.ls().key) == [KEY]
    assert_same_vector(gdf, mem.open(KEY))
    mem.verify(KEY)


_MIXED_PROPERTIES = {
    "str-and-int": (["x", 3, None], ("str", "int")),
    "int-and-dict": ([3, {"k": 1}, None], ("int", "dict")),
    "dict-and-list": ([{"k": 1}, [1], None], ("dict", "list")),
    "bool-and-int": ([True, 1, None], ("bool", "int")),
    "numbers-as-objects": ([1, 2.5, None], ("float", "int", "Float64")),
    "booleans-as-objects": ([True, None, False], ("bool", "'boolean'")),
    "bytes": ([b"x", b"y", None], ("bytes",)),
    "arbitrary-objects": ([object(), object(), None], ("object",)),
}


@pytest.mark.parametrize("case", list(_MIXED_PROPERTIES))
def test_a_property_column_geojson_cannot_keep_is_refused(mem: mg.Memory, case: str) -> None:
    values, types = _MIXED_PROPERTIES[case]
    gdf = gpd.GeoDataFrame({"fine": ["a", "b", "c"], "bad": pd.Series(values, dtype=object)},
                           geometry=[Point(i, i) for i in range(3)], crs="EPSG:4326")
    with pytest.raises(UnsupportedObjectError, match=r"column 'bad' \(dtype object\)") as raised:
        mem.save(gdf, KEY, format="geojson")
    assert isinstance(raised.value, TypeError)
    assert all(t in str(raised.value) for t in types)
    assert mem.ls().empty
    assert _tier_files(mem) == []


def test_object_columns_of_one_json_type_are_kept(mem: mg.Memory) -> None:
    gdf = gpd.GeoDataFrame(
        {"dicts": [{"k": 1}, None, {"k": [1, 2]}], "lists": [[1, 2], [3], None],
         "text": pd.Series(["a", None, "c"], dtype=object)},
        geometry=[Point(i, i) for i in range(3)], crs="EPSG:4326",
    )
    mem.save(gdf, KEY, format="geojson")
    back = mem.open(KEY)
    assert back["dicts"][0] == {"k": 1}
    assert back["dicts"][2] == {"k": [1, 2]}
    assert list(back["lists"][0]) == [1, 2]
    assert back["text"][0] == "a"


def test_coordinates_gdal_would_round_read_back_unchanged(tmp_path):
    """GDAL's writer turns -16.639150000000004 into -16.63915 even with 17 significant figures."""
    import shapely
    from geopandas.testing import assert_geodataframe_equal

    from memories_geo.examples import sample_vector

    mem = mg.Memory(tmp_path)
    noisy = gpd.GeoDataFrame(
        {"v": [1, 2]},
        geometry=[shapely.Point(178.59683859511713, -16.639150000000004),
                  shapely.LineString([(0.1 + 0.2, 1e-300), (-0.30000000000000004, 2.0)])],
        crs="EPSG:4326",
    )
    mem.save(noisy, "noisy", format="geojson")
    back = mem.open("noisy")
    assert back.geometry.iloc[0].y == -16.639150000000004
    assert_geodataframe_equal(back, noisy)
    countries = sample_vector()
    mem.save(countries, "countries", format="geojson")
    back = mem.open("countries")
    assert bool(back.geometry.normalize().geom_equals_exact(countries.geometry.normalize(), 0).all())
