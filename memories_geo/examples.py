"""Small sample objects for the quickstart and the docs (no download needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = ["sample_raster", "sample_vector"]


def sample_raster(seed: int = 0) -> xr.Dataset:
    """Monthly 2 m temperature over Western Europe, 2024 (a smooth synthetic field).

    A 0.25° grid (lat 35-60 N, lon 10 W - 20 E), EPSG:4326, CF attributes, 12 months.

    Examples
    --------
    >>> ds = sample_raster()
    >>> dict(ds.sizes)
    {'time': 12, 'lat': 100, 'lon': 120}
    """
    import pandas as pd
    import xarray as xr

    rng = np.random.default_rng(seed)
    lat = np.arange(59.875, 34.875, -0.25)
    lon = np.arange(-9.875, 20.0, 0.25)
    time = pd.date_range("2024-01-01", periods=12, freq="MS")
    month = np.arange(12)[:, None, None]
    base = 288.0 - 0.6 * (lat[None, :, None] - 35.0)
    season = 9.0 * np.sin((month - 3.5) / 12 * 2 * np.pi)
    noise = rng.normal(0.0, 0.5, (12, lat.size, lon.size))
    t2m = (base + season + noise + 0 * lon[None, None, :]).astype("float32")
    ds = xr.Dataset(
        {"t2m": (("time", "lat", "lon"), t2m, {
            "units": "K", "long_name": "2 metre temperature", "standard_name": "air_temperature",
        })},
        coords={
            "time": time,
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={"title": "memories_geo sample: synthetic monthly 2 m temperature",
               "Conventions": "CF-1.8"},
    )
    return ds


def sample_vector() -> gpd.GeoDataFrame:
    """Country polygons (Natural Earth 1:110m, shipped with pyogrio), EPSG:4326.

    Falls back to a small synthetic grid of polygons when pyogrio's fixtures are absent.
    """
    import geopandas as gpd
    from shapely.geometry import box

    try:
        import pyogrio

        path = Path(pyogrio.__file__).parent / "tests/fixtures/naturalearth_lowres/naturalearth_lowres.shp"
        if path.exists():
            return gpd.read_file(path)
    except ImportError:
        pass
    cells = [box(x, y, x + 5, y + 5) for x in range(-10, 20, 5) for y in range(35, 60, 5)]
    return gpd.GeoDataFrame(
        {"name": [f"cell-{i}" for i in range(len(cells))], "value": np.arange(len(cells))},
        geometry=cells,
        crs="EPSG:4326",
    )
