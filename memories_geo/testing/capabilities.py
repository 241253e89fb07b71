"""Capability mixins: the ``open`` contract and appends, tested the same way for every format.

Mix them into a :class:`~memories_geo.testing.FormatRoundTripTests` subclass (they use its
``memory`` fixture, ``format_name``, ``tier`` and ``key``)::

    class TestMyVectorFormat(VectorQueryTests, FormatRoundTripTests):
        format_name = "myformat"

Expected results are computed here with pandas, shapely, pyproj and xarray directly,
never with memories_geo's own query code.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from memories_geo.errors import KeyNotFoundError, OptionError

__all__ = ["AppendTests", "RasterQueryTests", "TimeQueryTests", "VectorQueryTests"]

#: The bbox every query test asks for, in EPSG:4326: it cuts through the test data.
QUERY_BBOX = (2.05, 44.05, 6.95, 47.45)


def _to_native(bbox: tuple[float, float, float, float], crs: Any) -> tuple[float, ...]:
    import pyproj

    transformer = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return tuple(transformer.transform_bounds(*bbox, densify_pts=21))


class VectorQueryTests:
    """``bbox`` (EPSG:4326 and ``bbox_crs``), ``time``, ``columns`` and unknown keywords on a layer."""

    format_name: ClassVar[str]
    tier: ClassVar[str]
    key: ClassVar[str]
    #: CRS the query layer is saved in (projected, so ``bbox_crs`` matters).
    query_crs: ClassVar[str] = "EPSG:32631"
    #: CRS the format stores and returns it in, when it reprojects (GeoJSON: EPSG:4326).
    stored_crs: ClassVar[str | None] = None

    @pytest.fixture
    def query_layer(self) -> Any:
        """200 points over France in :attr:`query_crs`, with a value, a name and a time column."""
        import geopandas as gpd
        import pandas as pd
        import shapely

        rng = np.random.default_rng(7)
        lon, lat = rng.uniform(-1, 9, 200), rng.uniform(42, 50, 200)
        frame = gpd.GeoDataFrame(
            {
                "value": rng.normal(size=200),
                "name": [f"p{i}" for i in range(200)],
                "when": pd.date_range("2024-01-01", periods=200, freq="D"),
            },
            geometry=shapely.points(lon, lat),
            crs="EPSG:4326",
        )
        return frame.to_crs(self.query_crs)

    def _saved(self, memory: Any, layer: Any) -> None:
        memory.save(layer, self.key, format=self.format_name, tier=self.tier)

    def test_bbox_is_wgs84_by_default(self, memory: Any, query_layer: Any) -> None:
        self._saved(memory, query_layer)
        lonlat = query_layer.to_crs("EPSG:4326").geometry
        minx, miny, maxx, maxy = QUERY_BBOX
        inside = (lonlat.x >= minx) & (lonlat.x <= maxx) & (lonlat.y >= miny) & (lonlat.y <= maxy)
        got = memory.open(self.key, bbox=QUERY_BBOX)
        assert 0 < len(got) < len(query_layer)
        assert sorted(got["name"]) == sorted(query_layer.loc[inside, "name"])

    def test_a_world_bbox_keeps_every_row(self, memory: Any, query_layer: Any) -> None:
        self._saved(memory, query_layer)
        assert len(memory.open(self.key, bbox=(-180, -90, 180, 90))) == len(query_layer)

    def test_bbox_in_the_layer_crs(self, memory: Any, query_layer: Any) -> None:
        self._saved(memory, query_layer)
        crs = self.stored_crs or self.query_crs
        minx, miny, maxx, maxy = _to_native(QUERY_BBOX, crs)
        g = query_layer.to_crs(crs).geometry
        inside = (g.x >= minx) & (g.x <= maxx) & (g.y >= miny) & (g.y <= maxy)
        got = memory.open(self.key, bbox=(minx, miny, maxx, maxy), bbox_crs=crs)
        assert 0 < len(got) < len(query_layer)
        assert sorted(got["name"]) == sorted(query_layer.loc[inside, "name"])
        assert got.crs.equals(crs)

    def test_time_selects_rows_inclusively(self, memory: Any, query_layer: Any) -> None:
        self._saved(memory, query_layer)
        got = memory.open(self.key, time=("2024-02", "2024-03-10"))
        when = query_layer["when"]
        expected = query_layer.loc[(when >= "2024-02-01") & (when <= "2024-03-10"), "name"]
        assert sorted(got["name"]) == sorted(expected)
        assert len(expected) == 29 + 10

    def test_columns_keep_the_geometry(self, memory: Any, query_layer: Any) -> None:
        self._saved(memory, query_layer)
        got = memory.open(self.key, columns=["value"])
        assert list(got.columns) == ["value", query_layer.geometry.name]
        np.testing.assert_array_equal(got["value"].to_numpy(), query_layer["value"].to_numpy())

    def test_unknown_keyword_lists_the_accepted_ones(self, memory: Any, query_layer: Any) -> None:
        self._saved(memory, query_layer)
        with pytest.raises(OptionError, match=r"'bboxx'.*accepted keywords: \[.*'bbox'"):
            memory.open(self.key, bboxx=QUERY_BBOX)

    def test_time_without_a_time_column_is_refused(self, memory: Any, query_layer: Any) -> None:
        self._saved(memory, query_layer.drop(columns="when"))
        with pytest.raises(OptionError, match="time"):
            memory.open(self.key, time="2024-02")


class RasterQueryTests:
    """Lazy ``bbox`` / ``time`` subsets by label on the stored coordinates, and unknown keywords."""

    format_name: ClassVar[str]
    tier: ClassVar[str]
    key: ClassVar[str]
    query_crs: ClassVar[str] = "EPSG:32631"

    @pytest.fixture
    def query_raster(self) -> Any:
        """A (time, y, x) float32 DataArray over France in :attr:`query_crs`, 1 km pixels."""
        import pandas as pd
        import rioxarray  # noqa: F401  (registers .rio)
        import xarray as xr

        x = np.arange(300_000.0, 900_000.0, 1000.0) + 500
        y = np.arange(5_300_000.0, 4_700_000.0, -1000.0) - 500
        time = pd.date_range("2024-01-01", periods=5, freq="D")
        data = np.random.default_rng(3).normal(size=(5, y.size, x.size)).astype("float32")
        da = xr.DataArray(data, dims=("time", "y", "x"), coords={"time": time, "y": y, "x": x}, name="t2m")
        return da.rio.write_crs(self.query_crs)

    def _saved(self, memory: Any, raster: Any) -> None:
        memory.save(raster, self.key, format=self.format_name, tier=self.tier)

    @staticmethod
    def _values(obj: Any) -> Any:
        return obj[next(iter(obj.data_vars))] if hasattr(obj, "data_vars") else obj

    @staticmethod
    def _is_lazy(obj: Any) -> bool:
        import dask.array

        var = obj[next(iter(obj.data_vars))] if hasattr(obj, "data_vars") else obj
        return isinstance(var.data, dask.array.Array)

    def test_bbox_selects_by_label_lazily(self, memory: Any, query_raster: Any) -> None:
        self._saved(memory, query_raster)
        minx, miny, maxx, maxy = _to_native(QUERY_BBOX, self.query_crs)
        expected = query_raster.sel(x=slice(minx, maxx), y=slice(maxy, miny))
        got = memory.open(self.key, bbox=QUERY_BBOX)
        assert self._is_lazy(got)
        values = self._values(got)
        assert 0 < values.sizes["x"] < query_raster.sizes["x"]
        np.testing.assert_array_equal(values["x"].values, expected["x"].values)
        np.testing.assert_array_equal(values["y"].values, expected["y"].values)
        np.testing.assert_array_equal(values.values, expected.values)

    def test_bbox_in_the_raster_crs(self, memory: Any, query_raster: Any) -> None:
        self._saved(memory, query_raster)
        box = (400_000, 4_900_000, 450_000, 4_950_000)
        expected = query_raster.sel(x=slice(box[0], box[2]), y=slice(box[3], box[1]))
        values = self._values(memory.open(self.key, bbox=box, bbox_crs=self.query_crs))
        assert values.shape == expected.shape == (5, 50, 50)
        np.testing.assert_array_equal(values.values, expected.values)

    def test_time_selects_steps_by_label(self, memory: Any, query_raster: Any) -> None:
        self._saved(memory, query_raster)
        got = memory.open(self.key, time=("2024-01-02", "2024-01-04"))
        assert self._is_lazy(got)
        values = self._values(got)
        expected = query_raster.sel(time=slice("2024-01-02", "2024-01-04"))
        np.testing.assert_array_equal(values["time"].values, expected["time"].values)
        np.testing.assert_array_equal(values.values, expected.values)

    def test_bbox_outside_the_raster_is_an_error(self, memory: Any, query_raster: Any) -> None:
        self._saved(memory, query_raster)
        with pytest.raises(ValueError, match="bbox"):
            memory.open(self.key, bbox=(100, 10, 101, 11))

    def test_unknown_keyword_lists_the_accepted_ones(self, memory: Any, query_raster: Any) -> None:
        self._saved(memory, query_raster)
        with pytest.raises(OptionError, match=r"'tme'.*accepted keywords: \[.*'time'"):
            memory.open(self.key, tme="2024-01-02")


class TimeQueryTests:
    """``time=`` on a stored time series: inclusive ranges, partial dates, pushed down to storage.

    Subclasses implement :meth:`units_read`, which proves the pushdown: how many storage
    units (files, row groups, chunks, table partitions) a read opens. A ``time=`` read of
    one month must open fewer than a whole read.
    """

    format_name: ClassVar[str]
    tier: ClassVar[str]
    key: ClassVar[str]
    #: Extra ``save`` keywords for the query series (e.g. a small ``row_group_size``).
    query_save_kwargs: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def query_series(self) -> Any:
        """Four stations, every 6 hours over 2024 (UTC), sorted by (time, station), a RangeIndex."""
        import pandas as pd

        times = pd.date_range("2024-01-01", "2024-12-31 18:00", freq="6h", tz="UTC")
        stations = ["s1", "s2", "s3", "s4"]
        rng = np.random.default_rng(5)
        return pd.DataFrame({
            "time": np.repeat(times, len(stations)),
            "station": stations * len(times),
            "value": rng.normal(size=len(times) * len(stations)),
        })

    def units_read(self, memory: Any, key: str, **query: Any) -> int:
        """Storage units a read of ``key`` with ``query`` opens (override)."""
        raise NotImplementedError

    def _saved(self, memory: Any, series: Any) -> None:
        memory.save(series, self.key, format=self.format_name, tier=self.tier, **self.query_save_kwargs)

    @staticmethod
    def _rows(frame: Any) -> Any:
        return frame[["time", "station", "value"]].reset_index(drop=True)

    def test_time_selects_rows_inclusively(self, memory: Any, query_series: Any) -> None:
        import pandas as pd

        self._saved(memory, query_series)
        got = memory.open(self.key, time=("2024-02", "2024-03-10 06:00"))
        when = query_series["time"]
        expected = query_series[(when >= "2024-02-01") & (when <= "2024-03-10 06:00")]
        assert len(expected) == (29 * 4 + 9 * 4 + 2) * 4
        pd.testing.assert_frame_equal(self._rows(got), self._rows(expected), check_exact=True)

    def test_a_partial_date_is_its_whole_period(self, memory: Any, query_series: Any) -> None:
        self._saved(memory, query_series)
        got = memory.open(self.key, time="2024-02-29")
        assert len(got) == 4 * 4
        assert (got["time"].dt.strftime("%Y-%m-%d") == "2024-02-29").all()

    def test_aware_bounds_compare_instants(self, memory: Any, query_series: Any) -> None:
        import pandas as pd

        self._saved(memory, query_series)
        start = pd.Timestamp("2024-05-01 03:00", tz="Europe/Paris")
        got = memory.open(self.key, time=(start, start + pd.Timedelta(hours=6)))
        assert sorted(got["time"].unique()) == [pd.Timestamp("2024-05-01 06:00", tz="UTC")]

    def test_time_with_columns(self, memory: Any, query_series: Any) -> None:
        self._saved(memory, query_series)
        got = memory.open(self.key, time="2024-03", columns=["value"])
        assert "value" in got.columns
        assert "station" not in got.columns
        assert len(got) == 31 * 4 * 4

    def test_time_outside_the_series_selects_nothing(self, memory: Any, query_series: Any) -> None:
        self._saved(memory, query_series)
        got = memory.open(self.key, time=("1990-01-01", "1990-12-31"))
        assert len(got) == 0
        assert list(got.columns) == list(query_series.columns)
        assert got["time"].dtype == query_series["time"].dtype

    def test_time_is_pushed_down(self, memory: Any, query_series: Any) -> None:
        self._saved(memory, query_series)
        everything = self.units_read(memory, self.key)
        month = self.units_read(memory, self.key, time="2024-03")
        assert 0 < month < everything


class AppendTests:
    """``mode="a"`` makes a new version holding old + new; the old version is untouched.

    Subclasses provide :meth:`append_parts`.
    """

    format_name: ClassVar[str]
    tier: ClassVar[str]
    key: ClassVar[str]

    def append_parts(self) -> tuple[Any, Any, Any, dict[str, Any]]:
        """``(first, second, expected_combined, save_kwargs)`` for an append (override)."""
        raise NotImplementedError

    def assert_same(self, expected: Any, actual: Any) -> None:  # pragma: no cover - from the round-trip base
        raise NotImplementedError

    def test_append_makes_a_new_version(self, memory: Any) -> None:
        first, second, combined, kwargs = self.append_parts()
        memory.save(first, self.key, format=self.format_name, tier=self.tier)
        entry = memory.save(second, self.key, mode="a", **kwargs)
        assert entry.version == 2
        self.assert_same(combined, memory.open(self.key))
        self.assert_same(first, memory.open(self.key, version=1))
        memory.verify(self.key, all_versions=True)

    def test_append_to_a_missing_key_is_key_not_found(self, memory: Any) -> None:
        _, second, _, kwargs = self.append_parts()
        with pytest.raises(KeyNotFoundError):
            memory.save(second, self.key + "-missing", mode="a", format=self.format_name, **kwargs)
