"""GeoDataFrame and GeoSeries factories: the matrix of vector objects every format must keep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
from shapely import wkt
from shapely.geometry import (
    GeometryCollection,
    LineString,
    MultiLineString,
    MultiPoint,
    MultiPolygon,
    Point,
    Polygon,
)

__all__ = [
    "CRS_CASES",
    "GEOMETRY_CASES",
    "GRID_BOXES",
    "LARGE_ROWS",
    "VECTOR_CASES",
    "attributes_frame",
    "make_case",
    "make_grid_layer",
    "make_large_points",
    "make_timed_layer",
]

#: Rows of the "large" cases: more than one GeoParquet row group (32,768 rows).
LARGE_ROWS = 33_000

#: A transverse Mercator centred on Paris, given as a PROJ string: no EPSG code matches it.
CUSTOM_PROJ = (
    "+proj=tmerc +lat_0=48.85 +lon_0=2.35 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80 +units=m "
    "+no_defs"
)

#: An equal-area projection given as WKT2 with no identifier anywhere.
CUSTOM_WKT = pyproj.CRS.from_proj4(
    "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m +no_defs"
).to_wkt()

SQUARE_WITH_HOLE = Polygon(
    [(0, 0), (10, 0), (10, 10), (0, 10)], holes=[[(2, 2), (2, 4), (4, 4), (4, 2)]]
)


def _points() -> list:
    return [Point(1, 2), Point(-3.5, 4.25), Point(0, 0), Point(100.125, -45.5)]


def _linestrings() -> list:
    return [
        LineString([(0, 0), (1, 1), (2, 0)]),
        LineString([(5, 5), (6, 7)]),
        LineString([(-1, -1), (-2, -3), (-4, -4), (-5, -2)]),
    ]


def _polygons() -> list:
    return [
        SQUARE_WITH_HOLE,
        Polygon([(20, 20), (25, 20), (22, 24)]),
        Polygon(
            [(30, 30), (40, 30), (40, 40), (30, 40)],
            holes=[[(31, 31), (31, 32), (32, 32)], [(35, 35), (35, 38), (38, 38), (38, 35)]],
        ),
    ]


def _multipoints() -> list:
    return [
        MultiPoint([(0, 0), (1, 1)]),
        MultiPoint([(5, 5)]),
        MultiPoint([(2, 3), (4, 5), (6, 7)]),
    ]


def _multilinestrings() -> list:
    return [
        MultiLineString([[(0, 0), (1, 1)], [(2, 2), (3, 1)]]),
        MultiLineString([[(10, 10), (11, 12), (13, 11)]]),
    ]


def _multipolygons() -> list:
    return [
        MultiPolygon([SQUARE_WITH_HOLE, Polygon([(20, 20), (25, 20), (22, 24)])]),
        MultiPolygon([Polygon([(50, 50), (51, 50), (51, 51)])]),
    ]


def _collections() -> list:
    return [
        GeometryCollection([Point(1, 1), LineString([(0, 0), (2, 2)])]),
        GeometryCollection([SQUARE_WITH_HOLE, MultiPoint([(5, 5), (6, 6)])]),
        GeometryCollection([GeometryCollection([Point(7, 7)]), Point(8, 8)]),
    ]


def _mixed() -> list:
    return [
        Point(1, 1),
        LineString([(0, 0), (3, 3)]),
        SQUARE_WITH_HOLE,
        MultiPoint([(4, 4), (5, 5)]),
        MultiPolygon([Polygon([(50, 50), (51, 50), (51, 51)])]),
        GeometryCollection([Point(9, 9)]),
    ]


def _missing_and_empty() -> list:
    return [
        Point(1, 1),
        None,
        Point(),
        LineString(),
        Polygon(),
        wkt.loads("MULTIPOLYGON EMPTY"),
        GeometryCollection(),
        SQUARE_WITH_HOLE,
    ]


def _three_d() -> list:
    return [
        Point(1, 2, 3),
        LineString([(0, 0, 0), (1, 1, 5), (2, 0, 10)]),
        Polygon(
            [(0, 0, 1), (4, 0, 2), (4, 4, 3), (0, 4, 4)],
            holes=[[(1, 1, 1), (1, 2, 1), (2, 2, 1)]],
        ),
        MultiPoint([(0, 0, -1), (3, 3, -2)]),
    ]


#: Geometry matrix: name -> factory of a list of geometries.
GEOMETRY_CASES: dict[str, Callable[[], list]] = {
    "points": _points,
    "linestrings": _linestrings,
    "polygons_with_holes": _polygons,
    "multipoints": _multipoints,
    "multilinestrings": _multilinestrings,
    "multipolygons": _multipolygons,
    "geometrycollections": _collections,
    "mixed_types": _mixed,
    "missing_and_empty": _missing_and_empty,
    "3d": _three_d,
}

#: CRSs every case is also tried in.
CRS_CASES: dict[str, str] = {
    "epsg4326": "EPSG:4326",
    "epsg32631": "EPSG:32631",
    "epsg3857": "EPSG:3857",
    "custom_proj": CUSTOM_PROJ,
    "custom_wkt": CUSTOM_WKT,
}


def _geometry_frame(geometry: str, crs: str = "EPSG:4326") -> gpd.GeoDataFrame:
    geoms = GEOMETRY_CASES[geometry]()
    return gpd.GeoDataFrame({"id": np.arange(len(geoms), dtype="int64")}, geometry=geoms, crs=crs)


def _attributes(n: int = 5) -> gpd.GeoDataFrame:
    """Every attribute dtype we keep, with missing values where the dtype allows them."""
    geoms = [Point(i, -i) for i in range(n)]
    return gpd.GeoDataFrame(
        {
            "int64": np.arange(n, dtype="int64") * 1_000_000_007,
            "int32": np.arange(n, dtype="int32"),
            "uint8": np.arange(n, dtype="uint8"),
            "nullable_int": pd.array([1, None, 3, 4, None][:n], dtype="Int64"),
            "float64": [1.5, np.nan, -2.25, np.inf, 0.0][:n],
            "float32": np.array([0.5, 1.5, np.nan, 3.5, 4.5][:n], dtype="float32"),
            "bool": [True, False, True, True, False][:n],
            "nullable_bool": pd.array([True, None, False, True, None][:n], dtype="boolean"),
            "string": ["a", "b", None, "d", ""][:n],
            "unicode": ["Zürich", "東京", "Москва", "😀 emoji", "naïve café"][:n],
            "datetime_naive": pd.to_datetime(
                ["2024-01-01", None, "2024-03-01 12:30:00.123456", "1999-12-31", "2030-06-15"][:n],
                format="ISO8601",
            ),
            "datetime_ns": pd.array(
                [
                    "2024-01-01T00:00:00.000000001", None, "1970-01-01", "2262-04-11",
                    "1677-09-22",
                ][:n],
                dtype="datetime64[ns]",
            ),
            "datetime_utc": pd.to_datetime(
                [
                    "2024-01-01T00:00:00Z", "2024-02-01T06:00:00Z", None,
                    "2024-04-01T00:00:01Z", None,
                ][:n],
                format="ISO8601",
            ),
            "datetime_paris": pd.to_datetime(
                [
                    "2024-01-01 10:00", "2024-07-01 10:00", None, "2024-10-27 02:30",
                    "2024-03-31 03:30",
                ][:n]
            ).tz_localize("Europe/Paris", ambiguous=True),
            "category": pd.Categorical(["low", "high", None, "low", "mid"][:n]),
            "ordered_category": pd.Categorical(
                ["s", "m", "l", "m", "s"][:n], categories=["s", "m", "l"], ordered=True
            ),
            "höhe_m²": np.linspace(0, 1, n),
            "名前": ["一", "二", "三", "四", "五"][:n],
        },
        geometry=geoms,
        crs="EPSG:4326",
    )


def _with_index(kind: str) -> gpd.GeoDataFrame:
    gdf = _geometry_frame("points")
    n = len(gdf)
    if kind == "range_offset":
        gdf.index = pd.RangeIndex(10, 10 + 2 * n, 2)
    elif kind == "named_range":
        gdf.index = pd.RangeIndex(n, name="fid")
    elif kind == "int64":
        gdf.index = pd.Index([7, 3, 99, -1], dtype="int64", name="feature")
    elif kind == "string":
        gdf.index = pd.Index(["a", "b", "ç", "東"], name="code")
    elif kind == "unnamed_string":
        gdf.index = pd.Index(["w", "x", "y", "z"])
    elif kind == "datetime":
        gdf.index = pd.DatetimeIndex(
            pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC"), freq=None, name="t"
        )
    elif kind == "multiindex":
        gdf.index = pd.MultiIndex.from_arrays(
            [["fr", "fr", "de", "de"], [1, 2, 1, 2]], names=["country", "n"]
        )
    else:
        raise ValueError(kind)
    return gdf


#: Boxes in EPSG:32631 over :func:`make_grid_layer`'s area, by how much of it they cover.
GRID_BOXES: dict[str, tuple[float, float, float, float]] = {
    "partial": (450_000.0, 5_050_000.0, 600_000.0, 5_250_000.0),
    "small": (500_000.0, 5_100_000.0, 520_000.0, 5_120_000.0),
    "everything": (0.0, 0.0, 1e7, 1e7),
    "nothing": (0.0, 0.0, 1.0, 1.0),
}


def make_grid_layer(n: int = 20, crs: str = "EPSG:32631") -> gpd.GeoDataFrame:
    """Squares, lines and points spread over a UTM zone 31N area (for bbox queries).

    Parameters
    ----------
    n : int
        Features per geometry type.
    crs : str
        CRS assigned to the coordinates (meant to be a metric CRS).
    """
    rng = np.random.default_rng(42)
    x = rng.uniform(400_000, 700_000, n)
    y = rng.uniform(5_000_000, 5_400_000, n)
    size = rng.uniform(1_000, 30_000, n)
    corners = list(zip(x, y, size, strict=True))
    geoms = (
        [Polygon([(a, b), (a + s, b), (a + s, b + s), (a, b + s)]) for a, b, s in corners]
        + [LineString([(a, b), (a + 3 * s, b - 2 * s)]) for a, b, s in corners]
        + [Point(a + s / 2, b + s / 2) for a, b, s in corners]
        + [None, Point()]
    )
    return gpd.GeoDataFrame(
        {
            "value": np.arange(len(geoms), dtype="float64"),
            "label": [f"f{i}" for i in range(len(geoms))],
        },
        geometry=geoms,
        crs=crs,
    )


def make_timed_layer(
    n: int = 48, crs: str = "EPSG:32631", *, tz: str | None = None, unit: str = "ns"
) -> gpd.GeoDataFrame:
    """Points with two datetime columns, for ``time=`` selection.

    The first datetime column, ``observed``, holds hourly instants from 2024-01-01
    00:00 UTC (every fifth missing), naive (UTC) or in ``tz``, at resolution
    ``unit``; ``label`` (text) comes before it, and ``other_time``, a year later,
    after it, so a selection on the wrong column returns other rows.

    Parameters
    ----------
    n : int
        Rows.
    crs : str
        CRS of the points (spread over UTM zone 31N coordinates, reprojected).
    tz : str, optional
        Time zone of ``observed`` (the same instants); default naive UTC.
    unit : str
        Resolution of ``observed``: ``"s"``, ``"ms"``, ``"us"`` or ``"ns"``.
    """
    rng = np.random.default_rng(11)
    instants = pd.Series(pd.date_range("2024-01-01", periods=n, freq="h").astype(f"datetime64[{unit}]"))
    instants[::5] = pd.NaT
    observed = instants if tz is None else instants.dt.tz_localize("UTC").dt.tz_convert(tz)
    xy = zip(rng.uniform(400_000, 700_000, n), rng.uniform(5e6, 5.4e6, n), strict=True)
    points = gpd.GeoSeries([Point(x, y) for x, y in xy], crs="EPSG:32631").to_crs(crs)
    return gpd.GeoDataFrame(
        {
            "label": [f"t{i}" for i in range(n)],
            "observed": observed.to_numpy() if tz is None else observed.array,
            "count": np.arange(n, dtype="int64"),
            "other_time": pd.date_range("2025-01-01", periods=n, freq="h"),
        },
        geometry=points.values,
        index=pd.RangeIndex(10, 10 + n, name="fid"),
        crs=crs,
    )


def make_large_points(n: int = LARGE_ROWS, seed: int = 7) -> gpd.GeoDataFrame:
    """Random points (some missing or empty) with an offset, named RangeIndex.

    Big enough that formats which lay out large layers differently (sorted,
    split in row groups) use that layout.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-5, 10, n)
    y = rng.uniform(40, 52, n)
    geoms = np.array([Point(a, b) for a, b in zip(x, y, strict=True)], dtype=object)
    geoms[::997] = None
    geoms[5::1499] = Point()
    return gpd.GeoDataFrame(
        {
            "value": rng.normal(size=n),
            "count": rng.integers(0, 1000, n).astype("int32"),
            "name": [f"p{i}" for i in range(n)],
        },
        geometry=list(geoms),
        index=pd.RangeIndex(100, 100 + 3 * n, 3, name="fid"),
        crs="EPSG:4326",
    )


def attributes_frame(n: int = 5) -> gpd.GeoDataFrame:
    """Points with one column per attribute dtype (see :data:`VECTOR_CASES` ``"attributes"``)."""
    return _attributes(n)


def _series(kind: str) -> gpd.GeoSeries:
    if kind == "unnamed":
        return gpd.GeoSeries(_points(), crs="EPSG:4326")
    if kind == "named":
        return gpd.GeoSeries(_mixed(), crs="EPSG:32631", name="shape")
    if kind == "string_index":
        return gpd.GeoSeries(
            _missing_and_empty(), crs=CUSTOM_PROJ, name="geom", index=list("abcdefgh")
        )
    raise ValueError(kind)


def _build_vector_cases() -> dict[str, Callable[[], gpd.GeoDataFrame | gpd.GeoSeries]]:
    cases: dict[str, Callable[[], gpd.GeoDataFrame | gpd.GeoSeries]] = {}
    for geometry in GEOMETRY_CASES:
        cases[f"geometry-{geometry}"] = lambda g=geometry: _geometry_frame(g)
    for crs_name, crs in CRS_CASES.items():
        cases[f"crs-{crs_name}"] = lambda c=crs: _geometry_frame("mixed_types", c)
    cases["crs-3d-custom_wkt"] = lambda: _geometry_frame("3d", CUSTOM_WKT)
    cases["attributes"] = _attributes
    cases["attributes-one-row"] = lambda: _attributes(1)
    cases["empty-frame"] = lambda: _attributes().iloc[:0].drop(
        columns=["category", "ordered_category"]
    )
    for index in (
        "range_offset", "named_range", "int64", "string", "unnamed_string", "datetime", "multiindex"
    ):
        cases[f"index-{index}"] = lambda i=index: _with_index(i)
    cases["renamed-geometry-column"] = lambda: _geometry_frame(
        "polygons_with_holes"
    ).rename_geometry("the_geom")
    cases["second-geometry-column"] = lambda: _geometry_frame("points").assign(
        centroid_3857=lambda d: d.geometry.to_crs("EPSG:3857")
    )
    cases["grid-layer-utm"] = make_grid_layer
    for kind in ("unnamed", "named", "string_index"):
        cases[f"geoseries-{kind}"] = lambda k=kind: _series(k)
    return cases


#: Every vector case: id -> factory (a fresh object each call).
VECTOR_CASES = _build_vector_cases()


def make_case(name: str) -> gpd.GeoDataFrame | gpd.GeoSeries:
    """Return a fresh object for the case called ``name`` (a key of :data:`VECTOR_CASES`)."""
    return VECTOR_CASES[name]()


def assert_same_vector(expected: Any, actual: Any) -> None:
    """Exact equality of GeoDataFrames / GeoSeries, index class included."""
    from geopandas.testing import assert_geodataframe_equal, assert_geoseries_equal

    assert type(actual) is type(expected)
    assert type(actual.index) is type(expected.index)
    if isinstance(expected, gpd.GeoSeries):
        assert actual.name == expected.name
        assert_geoseries_equal(expected, actual, check_crs=True, check_series_type=True)
    else:
        assert actual.geometry.name == expected.geometry.name
        assert_geodataframe_equal(expected, actual, check_like=False, check_crs=True)
