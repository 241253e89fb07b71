import subprocess
import sys


def test_import_does_not_load_heavy_backends():
    code = (
        "import sys, memories_geo\n"
        "heavy = ['zarr', 'rasterio', 'rioxarray', 'psycopg', 's3fs', 'gcsfs', 'adlfs', "
        "'boto3', 'botocore', 'azure', 'dask.distributed', 'adbc_driver_postgresql']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_accessors_are_registered_on_import():
    code = (
        "import xarray as xr, geopandas as gpd, memories_geo\n"
        "assert hasattr(xr.Dataset(), 'memories')\n"
        "assert hasattr(xr.DataArray(1), 'memories')\n"
        "assert hasattr(gpd.GeoDataFrame(geometry=[]), 'memories')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
