"""The one ``open`` contract and appends, tested by capability across every built-in format.

Each class mixes the shipped capability tests (``memories_geo.testing``) into one format;
the format files test only what is particular to their format.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from psycopg import sql
from vector_cases import assert_same_vector

import memories_geo as mg
from memories_geo.testing import AppendTests, RasterQueryTests, VectorQueryTests


class _Embedded:
    tier = "hot"
    key = "contract/layer"

    @pytest.fixture
    def memory(self, tmp_path: Path) -> mg.Memory:
        return mg.Memory(tmp_path / "memories")


class _OnPostgres:
    tier = "warm"
    key = "contract/layer"

    @pytest.fixture
    def memory(self, tmp_path: Path, postgres_dsn: str):
        import psycopg

        schema = f"c_{uuid.uuid4().hex[:12]}"
        config = mg.StorageConfig.from_dict({
            "home": str(tmp_path / "home"),
            "tiers": {"warm": {"url": postgres_dsn, "storage_options": {"schema": schema}}},
        })
        memory = mg.Memory(config)
        yield memory
        memory.tiers.backend("warm").close()
        with psycopg.connect(postgres_dsn, autocommit=True) as con:
            con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _points(n: int, start: int = 0) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(start)
    return gpd.GeoDataFrame(
        {
            "v": rng.normal(size=n),
            "when": pd.date_range("2024-01-01", periods=n, freq="h") + pd.Timedelta(hours=start),
        },
        geometry=shapely.points(rng.uniform(0, 5, n), rng.uniform(40, 45, n)),
        crs="EPSG:4326",
        index=pd.RangeIndex(start, start + n),
    )


class _VectorAppend(AppendTests):
    def append_parts(self):
        first, second = _points(20), _points(7, start=20)
        return first, second, pd.concat([first, second]), {}

    def assert_same(self, expected, actual):
        assert_same_vector(expected, actual)


class TestGeoParquet(_Embedded, VectorQueryTests, _VectorAppend):
    format_name = "geoparquet"


class TestGeoJSON(_Embedded, VectorQueryTests):
    format_name = "geojson"
    stored_crs = "EPSG:4326"


@pytest.mark.postgres
class TestPostGIS(_OnPostgres, VectorQueryTests, _VectorAppend):
    format_name = "postgis"


def _steps(start: int, n: int) -> xr.DataArray:
    import rioxarray  # noqa: F401

    x = np.arange(4) * 10.0 + 5
    y = 100.0 - np.arange(3) * 10.0 - 5
    time = pd.date_range("2024-01-01", periods=start + n, freq="D")[start:]
    data = np.arange(start * 12, (start + n) * 12, dtype="float32").reshape(n, 3, 4)
    da = xr.DataArray(data, dims=("time", "y", "x"), coords={"time": time, "y": y, "x": x}, name="t")
    return da.rio.write_crs("EPSG:32631")


class TestZarr(_Embedded, RasterQueryTests, AppendTests):
    format_name = "zarr"

    def append_parts(self):
        first, second = _steps(0, 3), _steps(3, 2)
        return first, second, xr.concat([first, second], dim="time"), {"append_dim": "time"}

    def assert_same(self, expected, actual):
        xr.testing.assert_identical(expected, actual)


class TestCOG(_Embedded, RasterQueryTests):
    format_name = "cog"


@pytest.mark.parametrize(("given", "expected"), [
    ("2024-01-02T00:00+01:00", ("2024-01-01T23:00:00.000000", "2024-01-01T23:00:00.000000")),
    (("2024-01-02T00:00Z", None), ("2024-01-02T00:00:00.000000", None)),
    (("2024-01-02T06:30-05:00", "2024-01-03"), ("2024-01-02T11:30:00.000000", "2024-01-03T23:59:59.999999")),
    ("2024-03", ("2024-03-01T00:00:00.000000", "2024-03-31T23:59:59.999999")),
])
def test_time_strings_with_offsets_are_read_in_utc(given, expected) -> None:
    from memories_geo.query import normalize_time

    assert normalize_time(given) == expected
