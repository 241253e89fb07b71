"""The original memories-dev API end to end: its configuration objects route saves to the
right backends and formats, and what they store is found again (real servers)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import rasterio
from geopandas.testing import assert_geodataframe_equal

import memories_geo as mg
from memories_geo.examples import sample_raster, sample_vector


def _scene():
    return sample_raster().t2m.isel(time=0)


def test_one_tier_with_a_database_for_vectors_and_cog_for_rasters(tmp_path, postgres_dsn, monkeypatch):
    monkeypatch.setenv("MEMORIES_GEO_HOME", str(tmp_path / "home"))
    schema = f"orig_{uuid.uuid4().hex[:8]}"
    config = mg.StorageConfig(
        tier="hot",
        primary_backend=mg.LocalFileStorage(root_path=tmp_path / "hot"),
        vector_backend=mg.PostgreSQLStorage(connection_string=postgres_dsn, schema=schema,
                                            postgis_enabled=True, pool_size=2),
        raster_backend=mg.COGStorage(compression="DEFLATE", blocksize=(256, 256), predictor=2,
                                     overviews=False),
        cache_settings={"max_size": "1GB", "eviction_policy": "least-recently-used"},
    )
    mem = mg.Memory(config)
    fields = mem.save(sample_vector(), "fields")
    scene = mem.save(_scene(), "scene")
    assert (fields.tier, fields.format) == ("hot-vector", "postgis")
    assert (scene.tier, scene.format) == ("hot", "cog")
    with rasterio.open(scene.uri) as src:
        assert src.profile["compress"].upper() == "DEFLATE"
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        assert src.overviews(1) == []
    assert_geodataframe_equal(mem.open("fields"), sample_vector())
    found = mem.search(bbox=(0, 40, 20, 60))
    assert {"fields", "scene"} <= set(found["key"])
    assert "hot-vector" in mem.monitor.get_storage_usage()


def test_tier_configs_with_default_formats_on_object_stores(tmp_path, s3_service, monkeypatch):
    monkeypatch.setenv("MEMORIES_GEO_HOME", str(tmp_path / "home"))
    bucket = s3_service.url.removeprefix("s3://").split("/", 1)[0]
    options = s3_service.options
    config = mg.StorageConfig(
        tier_configs={
            "hot": mg.StorageConfig(tier="hot",
                                    primary_backend=mg.LocalFileStorage(root_path=tmp_path / "h")),
            "warm": mg.StorageConfig(
                tier="warm",
                primary_backend=mg.S3Storage(
                    bucket=bucket, region="us-east-1", endpoint=options["client_kwargs"]["endpoint_url"],
                    prefix=f"orig-{uuid.uuid4().hex[:6]}/",
                    credentials={"aws_access_key_id": options["key"],
                                 "aws_secret_access_key": options["secret"]},
                ),
            ),
        },
        default_vector_format="geojson",
        default_raster_format="cog",
    )
    mem = mg.Memory(config)
    vector = mem.save(sample_vector(), "fields", tier="warm")
    raster = mem.save(_scene(), "scene", tier="warm")
    assert (vector.format, raster.format) == ("geojson", "cog")
    assert vector.uri.startswith(f"s3://{bucket}/orig-")
    assert_geodataframe_equal(mem.open("fields"), sample_vector())
    assert options["secret"] not in repr(config)


def test_the_original_persistence_and_recovery_calls(tmp_path):
    mem = mg.Memory(tmp_path / "home")
    mem.save(sample_vector(), "fields")
    persistence = mg.MemoryPersistence(mem, backup_storage=str(tmp_path / "backup"))
    recovery = mg.RecoveryManager(storage=mem, backup_storage=str(tmp_path / "backup"))

    async def main():
        saved = await persistence.save_checkpoint("nightly")
        mem.delete("fields")
        listed = await recovery.list_checkpoints()
        restored = await recovery.recover_latest()
        return saved, listed, restored

    saved, listed, restored = asyncio.run(main())
    assert [cp.id for cp in listed] == [saved.id]
    assert restored.id == saved.id
    assert_geodataframe_equal(mem.open("fields"), sample_vector())
    again = recovery.recover_from_checkpoint(checkpoint_id=saved.id, validate=True)
    assert again.id == saved.id
    metrics = mg.PersistenceMonitor(mem).get_metrics()
    assert metrics.usage_gb == pytest.approx(metrics.usage_bytes / 1024**3)
    assert metrics.success_rate == 100.0


def test_a_hot_tier_in_redis_as_the_original_development_set_up(tmp_path, redis_service, monkeypatch):
    monkeypatch.setenv("MEMORIES_GEO_HOME", str(tmp_path / "home"))
    prefix = f"orig{uuid.uuid4().hex[:8]}"
    redis = mg.RedisStorage(redis_service.url)
    config = mg.StorageConfig(tier="hot", primary_backend=redis)
    hot = config.tiers["hot"]
    assert hot.url.startswith("redis://")
    assert hot.url.endswith("/memories_geo")
    config = mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"), "tiers": {"hot": {"url": f"{hot.url}/{prefix}", "max_size": "64MB"}},
    })
    mem = mg.Memory(config)
    entry = mem.save(sample_vector(), "fields")
    assert entry.uri.startswith("redis://")
    assert_geodataframe_equal(mem.open("fields"), sample_vector())
    mem.delete("fields")
