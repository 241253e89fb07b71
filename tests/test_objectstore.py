"""Zarr on object stores through obstore: round trips, upload settings, retries, atomic uploads, fallbacks.

Real servers: moto (S3), Azurite (Azure Blob), gcp-storage-emulator (GCS), with a
counting reverse proxy (``benchmarks/s3proxy.py``) in front of moto to count requests,
inject transient errors and hold requests while a writer is killed.
"""

import copy
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest
import xarray as xr
from zarr.storage import FsspecStore

import memories_geo as mg
from memories_geo.backends.base import Location
from memories_geo.backends.objectstore import RETRY, object_store_settings
from memories_geo.examples import sample_raster
from memories_geo.formats.zarr.store import AttributedObjectStore, zarr_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.s3proxy import CountingProxy

BUCKET = "memories-test"


def _memory(tmp_path, service, *, options=None, **tier):
    prefix = uuid.uuid4().hex[:8]
    config = mg.StorageConfig.from_dict({
        "home": str(tmp_path / f"home-{prefix}"),
        "default_tier": "warm",
        "tiers": {"warm": {"url": f"{service.url}/{prefix}/warm",
                           "storage_options": options or service.options, **tier}},
    })
    return mg.Memory(config)


def _store_of(mem, key):
    entry = mem.info(key)
    return zarr_store(Location(mem.tiers.backend(entry.tier), entry.path))


def _s3(service):
    o = service.options
    return boto3.client("s3", endpoint_url=o["client_kwargs"]["endpoint_url"], region_name="us-east-1",
                        aws_access_key_id=o["key"], aws_secret_access_key=o["secret"])


def _keys(service, prefix):
    found = _s3(service).list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return [item["Key"] for item in found]


@pytest.fixture
def proxy(s3_service):
    proxy = CountingProxy(s3_service.options["client_kwargs"]["endpoint_url"])
    yield proxy
    proxy.stop()


def _through(service, proxy):
    options = copy.deepcopy(service.options)
    options["client_kwargs"]["endpoint_url"] = proxy.url
    return options


def _cube(nt=6):
    return sample_raster().isel(time=slice(0, nt))


# -- settings ------------------------------------------------------------------------------------


def test_s3_options_become_obstore_settings():
    settings = object_store_settings("s3://b/warm", {
        "key": "k", "secret": "S3CRET-VALUE",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"},
        "s3_additional_kwargs": {
            "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "key-1", "StorageClass": "STANDARD_IA",
        },
        "config_kwargs": {"connect_timeout": 5, "retries": {"max_attempts": 2, "mode": "standard"}},
        "use_listings_cache": False,
    })
    assert settings.kind == "s3"
    assert settings.config["server_side_encryption"] == "aws:kms"
    assert settings.config["sse_kms_key_id"] == "key-1"
    assert settings.config["region"] == "eu-west-1"
    assert settings.attributes == {"Storage-Class": "STANDARD_IA"}
    assert settings.client_options["allow_http"] is True
    assert settings.retry["max_retries"] == RETRY["max_retries"] > 0
    assert settings.config["secret_access_key"] == "S3CRET-VALUE"
    assert "S3CRET" not in repr(settings)


@pytest.mark.parametrize(("url", "options", "reason"), [
    ("s3://b", {"key": "k", "secret": "s", "region_name": "us-east-1",
                "s3_additional_kwargs": {"ACL": "bucket-owner-full-control"}}, "ACL"),
    ("s3://b", {"profile": "dev", "region_name": "us-east-1"}, "profile"),
    ("gs://b", {"token": "anon"}, "GCS"),
    ("az://c", {"account_name": "a", "credential": object()}, "credential"),
    ("memory://x", {}, "not an object store"),
])
def test_settings_obstore_cannot_honour_keep_fsspec(url, options, reason):
    settings = object_store_settings(url, options)
    assert not settings.usable
    assert reason in settings.reason


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("service_name", ["s3_service", "azure_service"])
def test_zarr_round_trips_through_obstore(request, tmp_path, service_name):
    service = request.getfixturevalue(service_name)
    mem = _memory(tmp_path, service)
    ds = sample_raster()
    mem.save(ds, "era5/t2m")
    assert isinstance(_store_of(mem, "era5/t2m"), AttributedObjectStore)
    xr.testing.assert_identical(mem.open("era5/t2m").load(), ds)
    assert mem.verify("era5/t2m") is not None


def test_append_and_region_write_round_trip_on_s3(tmp_path, s3_service):
    mem = _memory(tmp_path, s3_service)
    cube = _cube()
    mem.save(cube.isel(time=slice(0, 4)), "cube")
    mem.save(cube.isel(time=slice(4, 6)), "cube", mode="a", append_dim="time")
    xr.testing.assert_identical(mem.open("cube").load(), cube)
    changed = cube.isel(time=[2]).copy(deep=True)
    changed["t2m"].values[:] = 7.0
    mem.save(changed, "cube", mode="a", region="auto")
    expected = cube.copy(deep=True)
    expected["t2m"].values[2] = 7.0
    xr.testing.assert_identical(mem.open("cube").load(), expected)
    xr.testing.assert_identical(mem.open("cube", version=2).load(), cube)


def test_a_lost_chunk_still_raises_through_obstore(tmp_path, s3_service):
    mem = _memory(tmp_path, s3_service)
    ds = sample_raster()
    entry = mem.save(ds, "r")
    backend = mem.tiers.backend("warm")
    chunk = next(p for p in backend.remote_fs.find(backend.full_path(entry.path)) if "/t2m/c/" in p)
    backend.remote_fs.rm(chunk)
    with pytest.raises(mg.ChecksumMismatchError, match="is missing"):
        mem.open("r").load()


# -- settings applied to every object -----------------------------------------------------------


def test_encryption_and_storage_class_on_every_object(tmp_path, s3_service):
    mem = _memory(tmp_path, s3_service, encryption={"algorithm": "AES256"}, storage_class="STANDARD_IA")
    cube = _cube()
    mem.save(cube.isel(time=slice(0, 4)), "cube")
    mem.save(cube.isel(time=slice(4, 6)), "cube", mode="a", append_dim="time")
    assert isinstance(_store_of(mem, "cube"), AttributedObjectStore)
    prefix = mem.tiers.backend("warm").full_path("cube").split("/", 1)[1]
    keys = _keys(s3_service, prefix)
    assert len(keys) > 10
    client = _s3(s3_service)
    for key in keys:
        head = client.head_object(Bucket=BUCKET, Key=key)
        assert head.get("ServerSideEncryption") == "AES256", key
        assert head.get("StorageClass") == "STANDARD_IA", key


def test_unsupported_upload_setting_falls_back_to_fsspec(tmp_path, s3_service):
    options = copy.deepcopy(s3_service.options)
    options["s3_additional_kwargs"] = {"Metadata": {"owner": "team-a"}}
    mem = _memory(tmp_path, s3_service, options=options)
    ds = sample_raster()
    entry = mem.save(ds, "r")
    assert isinstance(_store_of(mem, "r"), FsspecStore)
    xr.testing.assert_identical(mem.open("r").load(), ds)
    key = mem.tiers.backend("warm").full_path(entry.path).split("/", 1)[1] + "/zarr.json"
    assert _s3(s3_service).head_object(Bucket=BUCKET, Key=key)["Metadata"] == {"owner": "team-a"}


def test_gcs_tier_keeps_gcsfs(tmp_path, gcs_service):
    mem = _memory(tmp_path, gcs_service)
    ds = sample_raster()
    mem.save(ds, "r")
    assert isinstance(_store_of(mem, "r"), FsspecStore)
    xr.testing.assert_identical(mem.open("r").load(), ds)


# -- transient errors and interrupted uploads ------------------------------------------------------


def test_transient_errors_are_retried(tmp_path, s3_service, proxy):
    mem = _memory(tmp_path, s3_service, options=_through(s3_service, proxy))
    ds = sample_raster()
    proxy.fail(2, 503, method="PUT")
    mem.save(ds, "r")
    failed = [entry for entry in proxy.log if entry[0] == "PUT" and entry[2] == len(proxy.FAILURE)]
    assert len(failed) >= 2
    proxy.fail(2, 503, method="GET")
    xr.testing.assert_identical(mem.open("r").load(), ds)
    assert proxy.pending_failures() == 0


def test_requests_and_bytes_are_counted_per_operation(tmp_path, s3_service, proxy):
    mem = _memory(tmp_path, s3_service, options=_through(s3_service, proxy))
    ds = sample_raster()
    proxy.reset()
    mem.save(ds, "r")
    requests, sent, _ = proxy.reset()
    assert requests > 0
    assert sent >= ds["t2m"].nbytes // 4
    mem.open("r").load()
    requests, sent, received = proxy.reset()
    assert 0 < requests < 40
    assert sent == 0
    assert received > 0



@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_a_save_reads_nothing_back_and_its_digests_match_the_stored_bytes(tmp_path, s3_service, proxy, lazy):
    from memories_geo.integrity import build_manifest

    mem = _memory(tmp_path, s3_service, options=_through(s3_service, proxy))
    ds = _cube(12)
    if lazy:
        ds = ds.chunk({"time": 1})
    proxy.reset()
    entry = mem.save(ds, "r")
    chunk_reads = [path for method, path, _ in proxy.log if method == "GET" and "/c/" in path]
    _, sent, received = proxy.reset()
    assert sent > 100_000
    assert chunk_reads == []
    assert received < sent / 5
    location = mem.version_store.location(entry)
    read_back = build_manifest(location.fs, location.full_path)
    assert dict(mem.catalog.manifest(entry).files) == dict(read_back.files)
    mem.verify("r")
    xr.testing.assert_identical(mem.open("r").load(), ds.load())


_WRITER = textwrap.dedent("""
    import asyncio, sys
    from obstore.store import S3Store
    from zarr.core.buffer import default_buffer_prototype
    from memories_geo.formats.zarr.store import AttributedObjectStore
    endpoint, key, secret, prefix, size = sys.argv[1:6]
    store = S3Store("memories-test", prefix=prefix, config={
        "endpoint": endpoint, "access_key_id": key, "secret_access_key": secret, "region": "us-east-1"},
        client_options={"allow_http": True})
    data = default_buffer_prototype().buffer.from_bytes(b"x" * int(size))
    asyncio.run(AttributedObjectStore(store).set("big/c/0", data))
    print("completed")
""")


@pytest.mark.parametrize(("size", "held"), [
    (12 * 2**20, lambda method, path: method == "POST" and "uploadId=" in path),
    (1 * 2**20, lambda method, path: method == "PUT"),
])
def test_an_upload_killed_mid_way_leaves_nothing_visible(s3_service, proxy, size, held):
    prefix = f"killed-{uuid.uuid4().hex[:8]}"
    proxy.hold(held)
    o = s3_service.options
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, proxy.url, o["key"], o["secret"], prefix, str(size)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert proxy.held.wait(60), child.stderr.read().decode() if child.poll() is not None else "not held"
        if size > 5 * 2**20:
            assert any(method == "PUT" and "partNumber=" in path for method, path, _ in proxy.log)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        proxy.release()
        if child.poll() is None:
            child.kill()
    assert b"completed" not in child.stdout.read()
    assert _keys(s3_service, prefix) == []
    with pytest.raises(Exception, match=r"404|Not Found"):
        _s3(s3_service).head_object(Bucket=BUCKET, Key=f"{prefix}/big/c/0")


# -- GeoParquet bbox reads fetch only the row groups they need ------------------------------------


def test_a_bbox_read_fetches_a_small_fraction_of_the_file(tmp_path, s3_service, proxy):
    import geopandas as gpd

    rng = np.random.default_rng(3)
    n = 200_000
    gdf = gpd.GeoDataFrame({"v": rng.normal(size=n)}, geometry=gpd.points_from_xy(
        rng.uniform(-50, 50, n), rng.uniform(-40, 60, n)), crs="EPSG:4326")
    mem = _memory(tmp_path, s3_service, options=_through(s3_service, proxy))
    entry = mem.save(gdf, "points")
    backend = mem.tiers.backend("warm")
    size = backend.remote_fs.size(backend.full_path(entry.path))
    proxy.reset()
    part = mem.open("points", bbox=(0, 0, 10, 10))
    _, _, received = proxy.reset()
    expected = gdf.cx[0:10, 0:10]
    assert sorted(part["v"]) == sorted(expected["v"])
    assert received < 0.15 * size, f"{received} of {size} bytes"
    mem.open("points")
    assert proxy.reset()[2] >= size
