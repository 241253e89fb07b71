"""Backend objects and persistence names against real servers (moto, GCS emulator, Azurite, PostgreSQL)."""

from __future__ import annotations

import asyncio

import geopandas as gpd
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from shapely.geometry import Point

from memories_geo.checkpoints import MemoryPersistence, RecoveryManager
from memories_geo.config import StorageConfig
from memories_geo.memory import Memory
from memories_geo.storage.backends import (
    AzureBlobStorage,
    GCSStorage,
    LocalFileStorage,
    PostgreSQLStorage,
    S3Storage,
)
from memories_geo.storage.persistence import CloudStorage, FileSystemStorage


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMORIES_GEO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _points() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"name": ["a", "b"], "value": [1.5, 2.5]}, geometry=[Point(1, 2), Point(3, 4)], crs="EPSG:4326"
    )


def _raster() -> xr.Dataset:
    data = np.arange(12, dtype="float32").reshape(3, 4)
    ds = xr.Dataset(
        {"t2m": (("lat", "lon"), data)}, coords={"lat": [10.0, 11.0, 12.0], "lon": [1.0, 2.0, 3.0, 4.0]}
    )
    return ds.rio.write_crs("EPSG:4326")


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    return url.split("://", 1)[1].split("/", 1)[0], "mg-" + url.rsplit("/", 1)[-1][:6]


def test_s3_storage_on_moto(s3_service, tmp_path):
    bucket, _ = _bucket_and_prefix(s3_service.url)
    opts = s3_service.options
    cfg = StorageConfig(
        tier="warm",
        primary_backend=S3Storage(
            bucket=bucket,
            region="us-east-1",
            endpoint=opts["client_kwargs"]["endpoint_url"],
            prefix="data/",
            credentials={"aws_access_key_id": opts["key"], "aws_secret_access_key": opts["secret"]},
            storage_class="STANDARD",
            encryption={"algorithm": "AES256", "kms_key_id": None},
        ),
        compression={"algorithm": "lz4", "level": "medium"},
    )
    mem = Memory(cfg)
    entry = mem.save(_points(), "orig/s3-points", tier="warm")
    assert entry.tier == "warm"
    assert entry.uri.startswith(f"s3://{bucket}/data/")
    assert mem.open("orig/s3-points").equals(_points())
    assert opts["secret"] not in repr(cfg)


def test_gcs_storage_on_emulator(gcs_service):
    bucket, _ = _bucket_and_prefix(gcs_service.url)
    opts = gcs_service.options
    cfg = StorageConfig(
        tier="cold",
        primary_backend=GCSStorage(
            bucket=bucket,
            project=opts["project"],
            prefix="raster/",
            credentials=opts["token"],
            endpoint=opts["endpoint_url"],
        ),
        compression={"algorithm": "zstd", "level": "high"},
        access_pattern="batch",
        retrieval_time="hours",
    )
    mem = Memory(cfg)
    mem.save(_raster(), "orig/gcs-raster", tier="cold")
    xr.testing.assert_equal(mem.open("orig/gcs-raster").load(), _raster())


def test_azure_storage_on_azurite(azure_service):
    container = azure_service.url.split("://", 1)[1].split("/", 1)[0]
    opts = azure_service.options
    cfg = StorageConfig(
        tier="warm",
        primary_backend=AzureBlobStorage(
            account=opts["account_name"],
            container=container,
            prefix="sentinel/",
            access_tier="hot",
            connection_string=opts["connection_string"],
        ),
    )
    mem = Memory(cfg)
    mem.save(_points(), "orig/az-points", tier="warm")
    assert mem.open("orig/az-points").equals(_points())
    assert opts["connection_string"] not in repr(cfg.tiers["warm"])


def test_postgresql_storage_with_vector_sub_tier(postgres_dsn, tmp_path):
    cfg = StorageConfig(
        tier="hot",
        primary_backend=PostgreSQLStorage(
            connection_string=postgres_dsn,
            schema="public",
            postgis_enabled=True,
            timescaledb_enabled=False,
            pool_size=1,
            max_overflow=2,
        ),
        vector_backend=PostgreSQLStorage(schema="vector_data", spatial_index=True),
        raster_backend=LocalFileStorage(base_path=tmp_path / "rasters", format="zarr"),
    )
    mem = Memory(cfg)
    assert mem.save(_points(), "orig/pg-points", tier="hot", mode="w").tier in ("hot", "hot-vector")
    assert (
        mem.open("orig/pg-points")
        .reset_index(drop=True)[["name", "value"]]
        .equals(_points()[["name", "value"]])
    )


def test_filesystem_storage_as_written(tmp_path):
    storage = FileSystemStorage(root_path=tmp_path / "memories", max_size="1TB", compression=True)
    results = _raster()

    async def main():
        await storage.save(key="analysis_results", data=results, metadata={"timestamp": "2024-03-15"})
        return await storage.load("analysis_results")

    xr.testing.assert_equal(asyncio.run(main()).load(), results)
    assert storage.memory.info("analysis_results").attrs["timestamp"] == "2024-03-15"
    assert storage.memory.config.tiers["hot"].max_size == 10**12


def test_cloud_storage_and_recovery_as_written(s3_service, tmp_path):
    bucket, prefix = _bucket_and_prefix(s3_service.url)
    opts = s3_service.options
    storage = FileSystemStorage(root_path=tmp_path / "memories")
    cloud = CloudStorage(
        provider="aws",
        bucket=bucket,
        region="us-east-1",
        credentials={"access_key": opts["key"], "secret_key": opts["secret"]},
        endpoint=opts["client_kwargs"]["endpoint_url"],
        prefix=prefix,
    )

    async def main():
        await cloud.save_dataset(
            key="satellite_imagery_2024", data=_raster(), metadata={"source": "sentinel-2"}
        )
        await storage.save(key="obs", data=_points())
        persistence = MemoryPersistence(primary_storage=storage, backup_storage=tmp_path / "backup")
        persistence.save_checkpoint(name="2024-03-15-backup")
        await storage.save(key="obs", data=_points().iloc[:1])
        recovery = RecoveryManager(storage=storage, max_attempts=3, timeout=30)
        recovery.recover_from_checkpoint(checkpoint_id="2024-03-15-backup", validate=True)
        return await cloud.load_dataset("satellite_imagery_2024"), await storage.load("obs")

    raster, obs = asyncio.run(main())
    xr.testing.assert_equal(raster.load(), _raster())
    assert len(obs) == 2
    assert opts["secret"] not in repr(cloud)
