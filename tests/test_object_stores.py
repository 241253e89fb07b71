"""Tiers on S3 (moto), Google Cloud Storage (emulator) and Azure Blob (Azurite), over HTTP."""

import uuid

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from geopandas import GeoDataFrame
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import Point

import memories_geo as mg
from memories_geo.examples import sample_raster


@pytest.fixture(params=["s3", "gcs", "azure"])
def store(request):
    service = request.getfixturevalue(f"{request.param}_service")
    return service


@pytest.fixture
def mem(tmp_path, store):
    prefix = uuid.uuid4().hex[:8]
    config = mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "default_tier": "warm",
        "tiers": {"warm": {"url": f"{store.url}/{prefix}/warm", "storage_options": store.options}},
    })
    return mg.Memory(config)


@pytest.fixture
def gdf():
    rng = np.random.default_rng(1)
    return GeoDataFrame(
        {"v": rng.normal(size=50), "name": [f"n{i}" for i in range(50)]},
        geometry=[Point(x, y) for x, y in rng.uniform(0, 5, (50, 2))],
        crs="EPSG:4326",
    )


def test_zarr_and_geoparquet_round_trip(mem, gdf):
    ds = sample_raster()
    raster = mem.save(ds, "era5/t2m")
    vector = mem.save(gdf, "fields")
    assert raster.uri.startswith(("s3://", "gs://", "gcs://", "az://", "abfs://"))
    assert vector.tier == "warm"
    xr.testing.assert_identical(mem.open("era5/t2m"), ds)
    assert_geodataframe_equal(mem.open("fields"), gdf)
    mem.verify()
    assert list(mem.search(bbox=(0, 0, 1, 1)).key) == ["fields"]


def test_versions_delete_and_recover(mem, gdf):
    first = mem.save(gdf, "fields")
    mem.save(gdf.iloc[:10], "fields", mode="w")
    backend = mem.tiers.backend("warm")
    assert backend.exists(first.path)
    mem.delete("fields", version=1)
    assert not backend.exists(first.path)
    backend.fs.pipe_file(backend.full_path("stray/@v/orphan.parquet"), b"partial")
    removed = mem.recover()
    assert any("orphan.parquet" in url for url in removed)
    assert_geodataframe_equal(mem.open("fields"), gdf.iloc[:10])


def test_verify_detects_a_changed_object(mem, gdf):
    entry = mem.save(gdf, "fields")
    backend = mem.tiers.backend("warm")
    data = bytearray(backend.fs.cat_file(backend.full_path(entry.path)))
    data[len(data) // 2] ^= 0xFF
    backend.fs.pipe_file(backend.full_path(entry.path), bytes(data))
    with pytest.raises(mg.ChecksumMismatchError, match="checksum changed"):
        mem.verify("fields")


def test_checkpoint_backup_to_object_store_and_rebuild(tmp_path, store, gdf):
    mem = mg.Memory(tmp_path / "home")
    mem.save(gdf, "fields")
    backup = f"{store.url}/{uuid.uuid4().hex[:8]}/backup"
    from memories_geo.backends import make_backend

    persistence = mg.MemoryPersistence(mem, backup_storage=make_backend(backup, store.options))
    cp = persistence.checkpoints.save("nightly")
    assert cp.backed_up
    import shutil

    shutil.rmtree(tmp_path / "home")
    recovery = mg.RecoveryManager(storage=tmp_path / "home",
                                  backup_storage=make_backend(backup, store.options))
    assert recovery.rebuild_catalog()["keys"] == 1
    assert_geodataframe_equal(mg.Memory(tmp_path / "home").open("fields"), gdf)


def test_credentials_never_reach_the_catalog(tmp_path, gdf, store, caplog):
    """Storage option values (the real credentials; a canary option where the client takes one) stay out.

    s3fs passes unknown options on to botocore, which refuses them; moto's key and secret
    are random per session, so S3 is checked with its real credentials.
    """
    canary = f"canary-{uuid.uuid4().hex}"
    options = dict(store.options) if store.name == "s3" else {**store.options, "mg_canary_credential": canary}
    config = mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "default_tier": "warm",
        "tiers": {"warm": {"url": f"{store.url}/{uuid.uuid4().hex[:8]}/warm", "storage_options": options}},
    })
    caplog.set_level("DEBUG", logger="memories_geo")
    mem = mg.Memory(config)
    entry = mem.save(gdf, "fields")
    mem.open("fields")
    real = [str(v) for k, v in store.options.items() if k in ("secret", "key", "connection_string")]
    assert real if store.name in ("s3", "azure") else not real
    raw = mem.catalog.path.read_bytes().decode("latin-1")
    record = mem.tiers.backend("warm").read_bytes(entry.path + ".record.json").decode()
    shown = [repr(mem), mem._repr_html_(), repr(entry), entry._repr_html_(), caplog.text, raw, record]
    for secret in [*real, *([] if store.name == "s3" else [canary])]:
        for text in shown:
            assert secret not in text


def test_a_remote_home_url(tmp_path, store, gdf, monkeypatch):
    """``Memory(url, storage_options=)``: tiers under the URL, a local catalog another machine can rebuild."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-a"))
    home = f"{store.url}/{uuid.uuid4().hex[:8]}/home"
    mem = mg.Memory(home, storage_options=store.options)
    assert mem.tiers.tier_config("hot").url == f"{home}/hot"
    assert str(mem.catalog.path).startswith(str(tmp_path / "cache-a"))
    entry = mem.save(gdf, "fields", tier="warm")
    assert "/home/warm/fields/@v/" in entry.uri
    assert_geodataframe_equal(mem.open("fields"), gdf)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-b"))
    other = mg.Memory(home, storage_options=store.options)
    assert other.catalog.path != mem.catalog.path
    report = mg.RecoveryManager(other).rebuild_catalog(force=True)
    assert report["keys"] == 1
    assert_geodataframe_equal(other.open("fields"), gdf)


def _cog_image(ny: int = 300, nx: int = 400, dtype: str = "float32", seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    coords = {"y": 5e6 - 10 * np.arange(ny) - 5.0, "x": 4e5 + 10 * np.arange(nx) + 5.0}
    values = rng.normal(500, 100, (ny, nx)).astype(dtype)
    da = xr.DataArray(values, dims=("y", "x"), coords=coords, name="elevation", attrs={"units": "m"})
    return da.rio.write_crs("EPSG:32631")


def test_cog_reads_back_from_the_object_store(mem):
    """An image and a time stack saved as COGs open identical, whole and by bbox (defect 8 of issue 15)."""
    pytest.importorskip("rioxarray")
    image = _cog_image()
    entry = mem.save(image, "dem", format="cog")
    assert entry.uri.endswith(".tif")
    xr.testing.assert_identical(mem.open("dem"), image)

    box = (400_500.0, 4_998_000.0, 401_500.0, 4_999_000.0)
    part = mem.open("dem", bbox=box, bbox_crs="EPSG:32631")
    expected = image.sel(x=slice(box[0], box[2]), y=slice(box[3], box[1]))
    assert 0 < part.size < image.size
    np.testing.assert_array_equal(part.values, expected.values)
    np.testing.assert_array_equal(part.x.values, expected.x.values)

    stack = xr.concat([image.isel(y=slice(0, 40), x=slice(0, 50)) + i for i in range(3)],
                      dim=pd.Index(pd.date_range("2024-01-01", periods=3), name="time"))
    stack = stack.assign_attrs(image.attrs)
    mem.save(stack, "dem/stack", format="cog")
    xr.testing.assert_identical(mem.open("dem/stack"), stack)
    one = mem.open("dem/stack", time=("2024-01-02", "2024-01-02"))
    xr.testing.assert_identical(one, stack.sel(time=["2024-01-02"]))
    mem.verify()


def test_a_cog_bbox_read_fetches_a_fraction_of_the_file(mem, monkeypatch):
    """A bbox read of one tile of a large COG fetches byte ranges, far less than the file.

    Every byte fetched goes through the filesystem's ``cat_file`` (``cat_ranges`` calls
    ``_cat_file``), counted here on the tier's filesystem instance.
    """
    pytest.importorskip("rioxarray")
    image = _cog_image(2048, 2048, seed=1)
    entry = mem.save(image, "big", format="cog", blocksize=256)
    backend = mem.tiers.backend("warm")
    size = backend.fs.size(backend.full_path(entry.path))
    fs = backend.fs
    fetched: list[int] = []
    real_cat_file, real_async_cat_file = fs.cat_file, fs._cat_file

    def counting_cat_file(path, start=None, end=None, **kwargs):
        data = real_cat_file(path, start=start, end=end, **kwargs)
        fetched.append(len(data))
        return data

    async def counting_async_cat_file(path, start=None, end=None, **kwargs):
        data = await real_async_cat_file(path, start=start, end=end, **kwargs)
        fetched.append(len(data))
        return data

    monkeypatch.setattr(fs, "cat_file", counting_cat_file)
    monkeypatch.setattr(fs, "_cat_file", counting_async_cat_file)
    box = (400_010.0, 4_999_700.0, 400_100.0, 4_999_990.0)
    part = mem.open("big", bbox=box, bbox_crs="EPSG:32631").load()
    expected = image.sel(x=slice(box[0], box[2]), y=slice(box[3], box[1]))
    np.testing.assert_array_equal(part.values, expected.values)
    assert 0 < sum(fetched) < size / 4, f"fetched {sum(fetched)} of {size} bytes"


def test_a_missing_zarr_chunk_raises_on_the_object_store(mem):
    """A chunk the manifest lists, deleted from the bucket, fails the read instead of reading as NaN."""
    ds = sample_raster().chunk({"time": 1})
    entry = mem.save(ds, "era5/t2m", format="zarr")
    backend = mem.tiers.backend("warm")
    root = backend.full_path(entry.path)
    chunk = next(p for p in sorted(backend.fs.find(root)) if "/t2m/c/" in p)
    backend.fs.rm(chunk)
    with pytest.raises(mg.ChecksumMismatchError, match="t2m/c/"):
        mem.open("era5/t2m").t2m.mean().compute()
