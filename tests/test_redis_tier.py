"""A tier in Redis (``redis://host:port/db/prefix``): the filesystem, then every format through ``mg.Memory``.

Everything runs against a real ``redis-server`` (the ``redis_service`` fixture).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import geopandas as gpd
import numpy as np
import pytest
import shapely
import xarray as xr
from geopandas.testing import assert_geodataframe_equal

import memories_geo as mg
from memories_geo.backends.redisfs import MAX_VALUE_BYTES, RedisFileSystem, register_protocols
from memories_geo.backends.registry import make_backend
from memories_geo.errors import ChecksumMismatchError, ConfigError, QuotaExceededError, TierUnavailableError
from memories_geo.examples import sample_raster, sample_vector
from memories_geo.lifecycle import MigrationJob, execute_migration
from memories_geo.testing import (
    TIMESERIES_CASES,
    AppendTests,
    BackendTests,
    FormatRoundTripTests,
    RasterQueryTests,
    VectorQueryTests,
    assert_same_timeseries,
    timeseries_case,
)

import raster_cases as rc  # isort: skip
from vector_cases import assert_same_vector, make_case  # isort: skip

pytest.importorskip("redis")

PASSWORD = "s3cret-tier-pw"
USER = "mgtier"


@pytest.fixture
def redis_root(redis_service: Any) -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0/<fresh prefix>``; every key under the prefix is deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    yield f"{redis_service.url}/{prefix}"
    client = _client(redis_service)
    for key in [*client.scan_iter(match=f"{prefix}/*"), *client.scan_iter(match=f"{prefix}")]:
        client.delete(key)
    client.srem("/", f"{prefix}/")


def _client(service: Any) -> Any:
    import redis

    return redis.Redis.from_url(service.url)


@pytest.fixture
def fs(redis_root: str) -> tuple[RedisFileSystem, str]:
    register_protocols()
    found, root = fsspec.core.url_to_fs(redis_root)
    assert isinstance(found, RedisFileSystem)
    return found, root


def redis_memory(tmp_path: Path, root: str, **hot: Any) -> mg.Memory:
    """``hot`` in Redis, ``warm`` on the local disk."""
    config = mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "default_tier": "hot",
        "tiers": {"hot": {"url": f"{root}/hot", **hot}, "warm": {"url": (tmp_path / "warm").as_uri()}},
    })
    return mg.Memory(config)


@pytest.fixture
def mem(tmp_path: Path, redis_root: str) -> mg.Memory:
    return redis_memory(tmp_path, redis_root)


# -- the filesystem ----------------------------------------------------------------------------


def test_files_directories_and_byte_ranges(fs: tuple[RedisFileSystem, str]) -> None:
    rfs, root = fs
    data = bytes(range(256)) * 4
    rfs.pipe_file(f"{root}/a/b/c.bin", data)
    rfs.pipe_file(f"{root}/a/d.txt", b"hello")
    assert rfs.cat_file(f"{root}/a/b/c.bin") == data
    for start, end in [(0, 10), (100, 300), (-16, None), (10, -10), (None, 5), (1000, 2000), (5, 5), (7, 3)]:
        assert rfs.cat_file(f"{root}/a/b/c.bin", start, end) == data[start:end], (start, end)
    assert rfs.info(f"{root}/a/b/c.bin") == {"name": f"{root}/a/b/c.bin", "size": 1024, "type": "file"}
    assert rfs.info(f"{root}/a")["type"] == "directory"
    assert rfs.ls(f"{root}/a", detail=False) == [f"{root}/a/b", f"{root}/a/d.txt"]
    assert rfs.ls(f"{root}/a") == [
        {"name": f"{root}/a/b", "size": 0, "type": "directory"},
        {"name": f"{root}/a/d.txt", "size": 5, "type": "file"},
    ]
    assert rfs.ls(f"{root}/a/d.txt", detail=False) == [f"{root}/a/d.txt"]
    assert sorted(rfs.find(root)) == [f"{root}/a/b/c.bin", f"{root}/a/d.txt"]
    assert rfs.isdir(root)
    assert rfs.isfile(f"{root}/a/d.txt")
    assert not rfs.exists(f"{root}/zz")
    with pytest.raises(FileNotFoundError):
        rfs.ls(f"{root}/missing")
    with pytest.raises(FileNotFoundError):
        rfs.cat_file(f"{root}/missing")
    with pytest.raises(FileNotFoundError):
        rfs.cat_file(f"{root}/missing", 0, 0)
    assert rfs.unstrip_protocol(f"{root}/a/d.txt") == f"{rfs.server}/{root}/a/d.txt"


def test_listing_reads_a_set_never_scans_the_keyspace(fs: tuple[RedisFileSystem, str]) -> None:
    rfs, root = fs
    for i in range(20):
        rfs.pipe_file(f"{root}/d/{i:02d}", b"x" * i)

    def scans() -> int:
        stats = rfs.client.info("commandstats")
        return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("scan", "keys"))

    before = scans()
    assert len(rfs.ls(f"{root}/d", detail=True)) == 20
    assert rfs.find(root, detail=True)[f"{root}/d/07"]["size"] == 7
    assert scans() == before
    assert rfs.client.smembers(f"{root}/d/") == {f"{i:02d}".encode() for i in range(20)}
    assert rfs.client.smembers(f"{root}/") == {b"d/"}


def test_deleting_the_last_file_removes_its_empty_directories(fs: tuple[RedisFileSystem, str]) -> None:
    rfs, root = fs
    rfs.pipe_file(f"{root}/x/y/z/1", b"1")
    rfs.pipe_file(f"{root}/x/2", b"2")
    rfs.rm_file(f"{root}/x/y/z/1")
    assert not rfs.exists(f"{root}/x/y")
    assert rfs.ls(f"{root}/x", detail=False) == [f"{root}/x/2"]
    assert not rfs.client.exists(f"{root}/x/y/", f"{root}/x/y/z/")
    rfs.pipe_file(f"{root}/x/y/3", b"3")
    rfs.rm(f"{root}/x", recursive=True)
    assert not rfs.exists(f"{root}/x")
    assert list(rfs.client.scan_iter(match=f"{root}*")) == []
    with pytest.raises(FileNotFoundError):
        rfs.rm(f"{root}/x", recursive=True)


def _write(rfs: RedisFileSystem, path: str, parts: list[bytes], mode: str = "wb", fail: bool = False) -> None:
    with rfs.open(path, mode) as f:
        for part in parts:
            f.write(part)
        if fail:
            raise RuntimeError("boom")


def test_open_reads_ranges_and_writes_whole_values(fs: tuple[RedisFileSystem, str]) -> None:
    rfs, root = fs
    payload = np.random.default_rng(0).bytes(3_000_000)
    with rfs.open(f"{root}/big.bin", "wb", block_size=2**20) as f:
        for i in range(0, len(payload), 700_000):
            f.write(payload[i:i + 700_000])
            assert not rfs.exists(f"{root}/big.bin")
    with rfs.open(f"{root}/big.bin", "rb", block_size=2**16) as f:
        f.seek(1_234_567)
        assert f.read(1000) == payload[1_234_567:1_235_567]
        assert f.size == len(payload)
    with pytest.raises(RuntimeError, match="boom"):
        _write(rfs, f"{root}/half.bin", [b"half of it"], fail=True)
    assert not rfs.exists(f"{root}/half.bin")
    with pytest.raises(FileExistsError):
        _write(rfs, f"{root}/big.bin", [b"no"], mode="xb")
    assert rfs.cat_file(f"{root}/big.bin") == payload
    with pytest.raises(ValueError, match="'ab'"):
        rfs.open(f"{root}/big.bin", "ab")


def test_copy_and_move_inside_the_server(fs: tuple[RedisFileSystem, str]) -> None:
    rfs, root = fs
    rfs.pipe_file(f"{root}/src/a", b"A")
    rfs.pipe_file(f"{root}/src/sub/b", b"B")
    rfs.copy(f"{root}/src", f"{root}/dst", recursive=True)
    assert rfs.cat_file(f"{root}/dst/sub/b") == b"B"
    assert sorted(rfs.find(f"{root}/dst")) == [f"{root}/dst/a", f"{root}/dst/sub/b"]
    rfs.mv(f"{root}/dst/a", f"{root}/moved/a")
    assert rfs.cat_file(f"{root}/moved/a") == b"A"
    assert not rfs.exists(f"{root}/dst/a")
    with pytest.raises(FileNotFoundError):
        rfs.cp_file(f"{root}/nothing", f"{root}/else")


def test_values_past_the_size_bound_are_refused_before_sending(redis_root: str) -> None:
    register_protocols()
    rfs, root = fsspec.core.url_to_fs(redis_root, max_value_bytes=1000, skip_instance_cache=True)
    with pytest.raises(QuotaExceededError, match=r"1,001 bytes.*1,000 bytes"):
        rfs.pipe_file(f"{root}/v", b"x" * 1001)
    with pytest.raises(QuotaExceededError):
        _write(rfs, f"{root}/w", [b"x" * 600, b"x" * 600])
    assert not rfs.exists(f"{root}/v")
    assert not rfs.exists(f"{root}/w")
    rfs.pipe_file(f"{root}/ok", b"x" * 1000)
    with pytest.raises(ConfigError, match="512 MiB"):
        RedisFileSystem(max_value_bytes=MAX_VALUE_BYTES + 1)


def test_unpickled_in_another_process_it_reconnects(fs: tuple[RedisFileSystem, str]) -> None:
    rfs, root = fs
    rfs.pipe_file(f"{root}/p", b"from the parent")
    assert rfs.client is not None
    code = (
        "import pickle, sys; fs = pickle.loads(sys.stdin.buffer.read()); "
        f"sys.stdout.buffer.write(fs.cat_file({root + '/p'!r})); fs.pipe_file({root + '/q'!r}, b'child')"
    )
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(rfs), capture_output=True,
                          check=True, timeout=60)
    assert done.stdout == b"from the parent"
    assert rfs.cat_file(f"{root}/q") == b"child"


def test_the_async_view_serves_zarr(fs: tuple[RedisFileSystem, str]) -> None:
    rfs, root = fs
    rfs.pipe_file(f"{root}/k", b"0123456789")
    view = rfs.async_view()

    async def read() -> tuple[bytes, list[str]]:
        return await view._cat_file(f"{root}/k", start=2, end=5), await view._ls(root, detail=False)

    assert asyncio.run(read()) == (b"234", [f"{root}/k"])


@pytest.fixture
def acl_user(redis_service: Any) -> Iterator[str]:
    """A Redis ACL user ``mgtier`` with password :data:`PASSWORD`."""
    client = _client(redis_service)
    client.acl_setuser(USER, enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"], commands=["+@all"])
    yield USER
    client.acl_deluser(USER)


def test_credentials_never_shown(redis_service: Any, acl_user: str, tmp_path: Path, caplog: Any) -> None:
    port = redis_service.options["port"]
    url = f"redis://{acl_user}:{PASSWORD}@127.0.0.1:{port}/0/creds{uuid.uuid4().hex[:6]}"
    caplog.set_level(logging.DEBUG)
    backend = make_backend(url)
    backend.write_bytes("k/@v/1.record.json", b"{}")
    assert backend.read_bytes("k/@v/1.record.json") == b"{}"
    shown = [repr(backend), backend.url_for("k/@v/1"), repr(backend.fs), backend.fs.unstrip_protocol("x")]
    assert backend.url_for("k/@v/1").startswith(f"redis://127.0.0.1:{port}/0/creds")
    wrong = make_backend(url.replace(PASSWORD, "not-the-pw"))
    with pytest.raises(TierUnavailableError) as info:
        wrong.exists("k")
    shown.append(str(info.value))
    mem = redis_memory(tmp_path, url)
    mem.save(sample_vector(), "fields")
    shown += [str(mem.info("fields")), repr(mem.tiers.backend("hot")), caplog.text]
    assert all(PASSWORD not in text and "not-the-pw" not in text for text in shown)
    backend.remove("k")


def test_unreachable_server_is_tier_unavailable(redis_service: Any) -> None:
    from memories_geo.testing.services import free_port

    backend = make_backend(f"redis://127.0.0.1:{free_port()}/0/nowhere")
    with pytest.raises(TierUnavailableError, match="unreachable"):
        backend.exists("k")


def test_a_url_without_a_database_number_is_refused() -> None:
    with pytest.raises(TierUnavailableError, match="database number"):
        _ = make_backend("redis://127.0.0.1:6379/hot").root


def test_a_server_that_evicts_keys_is_warned_about(redis_root: str, caplog: Any) -> None:
    register_protocols()
    rfs, _ = fsspec.core.url_to_fs(redis_root, skip_instance_cache=True)
    with caplog.at_level(logging.WARNING, logger="memories_geo.backends.redisfs"):
        _ = rfs.client
    assert "maxmemory-policy allkeys-lru" in caplog.text
    assert "noeviction" in caplog.text


# -- the shipped test kit ----------------------------------------------------------------------


class TestRedisBackend(BackendTests):
    @pytest.fixture
    def backend(self, redis_service: Any, acl_user: str) -> Iterator[Any]:
        port = redis_service.options["port"]
        prefix = f"kit{uuid.uuid4().hex[:8]}"
        found = make_backend(f"redis://{acl_user}@127.0.0.1:{port}/0/{prefix}/hot",
                             {"password": PASSWORD})
        yield found
        found.fs.rm(prefix, recursive=True) if found.fs.exists(prefix) else None


class _OnRedis:
    tier = "hot"

    @pytest.fixture
    def memory(self, tmp_path: Path, redis_root: str) -> mg.Memory:
        return redis_memory(tmp_path, redis_root)


class TestZarrOnRedis(_OnRedis, FormatRoundTripTests):
    format_name = "zarr"

    @pytest.fixture(params=["cf_coder_attrs", "dataarray_unnamed", "chunked", "datatree", "datetime_nat"])
    def case(self, request: pytest.FixtureRequest) -> Any:
        return rc.CASES[request.param]()

    def assert_same(self, expected: Any, actual: Any) -> None:
        rc.assert_same_raster(expected, actual)
        assert rc.is_lazy(actual)


def _terrain() -> xr.DataArray:
    y, x = np.linspace(0, 3, 60)[:, None], np.linspace(0, 4, 80)[None, :]
    values = np.round(500 * np.sin(x) * np.cos(y)).astype("int16")
    coords = {"y": 5_000_000.0 - 10 * np.arange(60) - 5, "x": 400_000.0 + 10 * np.arange(80) + 5}
    return rc.with_crs(xr.DataArray(values, dims=("y", "x"), coords=coords, name="elevation"))


COG_CASES = {
    "terrain_int16": _terrain,
    "float32_nan_dataset": rc.float32_nan,
    "float64_unnamed": lambda: rc.float64_nan()["v"].rename(None),
    "int8": lambda: rc.integers()["i1"],
}


class TestCOGOnRedis(_OnRedis, FormatRoundTripTests):
    """Staged on the local disk, uploaded to Redis, read back with range reads."""

    format_name = "cog"

    @pytest.fixture(params=list(COG_CASES))
    def case(self, request: pytest.FixtureRequest) -> Any:
        return COG_CASES[request.param]()

    def assert_same(self, expected: Any, actual: Any) -> None:
        rc.assert_same_raster(expected, actual)


class TestGeoParquetOnRedis(_OnRedis, FormatRoundTripTests):
    format_name = "geoparquet"

    @pytest.fixture(params=[
        "geometry-points", "geometry-polygons_with_holes", "geometry-mixed_types",
        "geometry-missing_and_empty", "geometry-3d", "crs-custom_wkt", "index-datetime", "index-multiindex",
    ])
    def case(self, request: pytest.FixtureRequest) -> Any:
        return make_case(request.param)

    def assert_same(self, expected: Any, actual: Any) -> None:
        assert_same_vector(expected, actual)


class TestGeoJSONOnRedis(_OnRedis, FormatRoundTripTests):
    format_name = "geojson"

    @pytest.fixture(params=["geometry-points", "geometry-polygons_with_holes", "crs-epsg4326"])
    def case(self, request: pytest.FixtureRequest) -> Any:
        return make_case(request.param)

    def assert_same(self, expected: Any, actual: Any) -> None:
        assert_same_vector(expected, actual)


class TestParquetOnRedis(_OnRedis, FormatRoundTripTests):
    format_name = "parquet"

    @pytest.fixture(params=TIMESERIES_CASES)
    def case(self, request: pytest.FixtureRequest) -> Any:
        return timeseries_case(request.param)

    def assert_same(self, expected: Any, actual: Any) -> None:
        assert_same_timeseries(expected, actual)


class TestGeoParquetQueriesOnRedis(_OnRedis, VectorQueryTests):
    format_name = "geoparquet"
    key = "contract/layer"


class TestZarrQueriesOnRedis(_OnRedis, RasterQueryTests, AppendTests):
    format_name = "zarr"
    key = "contract/raster"

    def append_parts(self) -> tuple[Any, Any, Any, dict[str, Any]]:
        import pandas as pd

        def steps(start: int, n: int) -> xr.DataArray:
            time = pd.date_range("2024-01-01", periods=start + n, freq="D")[start:]
            data = np.arange(start * 12, (start + n) * 12, dtype="float32").reshape(n, 3, 4)
            coords = {"time": time, "y": 95.0 - 10 * np.arange(3), "x": 5.0 + 10 * np.arange(4)}
            return rc.with_crs(xr.DataArray(data, dims=("time", "y", "x"), coords=coords, name="t"))

        first, second = steps(0, 3), steps(3, 2)
        return first, second, xr.concat([first, second], dim="time"), {"append_dim": "time"}

    def assert_same(self, expected: Any, actual: Any) -> None:
        xr.testing.assert_identical(expected, actual)


class TestCOGQueriesOnRedis(_OnRedis, RasterQueryTests):
    format_name = "cog"
    key = "contract/cog"


# -- through mg.Memory -------------------------------------------------------------------------


def test_verify_finds_a_value_damaged_in_redis(mem: mg.Memory) -> None:
    entry = mem.save(sample_vector(), "fields")
    mem.verify("fields")
    backend = mem.tiers.backend("hot")
    client = backend.fs.client
    key = backend.full_path(entry.path)
    middle = client.strlen(key) // 2
    byte = client.getrange(key, middle, middle)
    client.setrange(key, middle, bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumMismatchError, match="checksum changed"):
        mem.verify("fields")


def test_versions_delete_and_checkpoints(mem: mg.Memory) -> None:
    gdf = sample_vector()
    first = mem.save(gdf, "fields")
    mem.save(gdf.iloc[:5], "fields", mode="w")
    mem.checkpoints.save("two-versions")
    assert_geodataframe_equal(mem.open("fields", version=1), gdf)
    mem.delete("fields", version=1)
    backend = mem.tiers.backend("hot")
    assert not backend.exists(first.path)
    mem.save(gdf.iloc[:2], "fields", mode="w")
    mem.checkpoints.restore("two-versions")
    assert_geodataframe_equal(mem.open("fields"), gdf.iloc[:5])
    mem.checkpoints.verify("two-versions")
    mem.delete("fields")
    assert mem.recover() == []
    with pytest.raises(mg.KeyNotFoundError):
        mem.open("fields")


def test_migration_from_redis_to_disk_and_back_is_exact(mem: mg.Memory) -> None:
    ds, gdf = sample_raster(), sample_vector()
    mem.save(ds, "era5/t2m")
    mem.save(gdf, "fields")
    hot = mem.tiers.backend("hot")
    down = execute_migration(mem, MigrationJob(source_tier="hot", destination_tier="warm"))
    assert down.state == "completed"
    assert sorted(down.keys_done) == ["era5/t2m", "fields"]
    assert {mem.info(k).tier for k in ("era5/t2m", "fields")} == {"warm"}
    assert [p for p in hot.version_paths() if not p.startswith("@")] == []
    xr.testing.assert_identical(mem.open("era5/t2m"), ds)
    up = execute_migration(mem, MigrationJob(source_tier="warm", destination_tier="hot"))
    assert up.state == "completed"
    assert mem.info("fields").uri.startswith("redis://")
    xr.testing.assert_identical(mem.open("era5/t2m"), ds)
    assert_geodataframe_equal(mem.open("fields"), gdf)
    mem.verify()


def test_a_max_size_quota_refuses_saves_before_writing(tmp_path: Path, redis_root: str) -> None:
    mem = redis_memory(tmp_path, redis_root, max_size="200KB")
    client = mem.tiers.backend("hot").fs.client
    small = gpd.GeoDataFrame({"v": [1.0]}, geometry=shapely.points([0], [0]), crs="EPSG:4326")
    mem.save(small, "small")
    keys = set(client.scan_iter(match=f"{redis_root.rsplit('/', 1)[1]}/*"))
    big = xr.Dataset({"v": (("y", "x"), np.zeros((300, 300)))},
                     coords={"y": np.arange(300.0), "x": np.arange(300.0)})
    with pytest.raises(QuotaExceededError, match="max_size"):
        mem.save(rc.with_crs(big), "big")
    assert set(client.scan_iter(match=f"{redis_root.rsplit('/', 1)[1]}/*")) == keys
    assert "big" not in set(mem.search().key)


def test_a_file_past_the_value_bound_fails_the_save(tmp_path: Path, redis_root: str) -> None:
    mem = redis_memory(tmp_path, redis_root, storage_options={"max_value_bytes": 4096})
    client = mem.tiers.backend("hot").fs.client
    prefix = redis_root.rsplit("/", 1)[1]
    noise = _terrain().copy(data=np.random.default_rng(1).integers(-999, 999, (60, 80)).astype("int16"))
    with pytest.raises(QuotaExceededError, match="Redis values stop at 512 MiB"):
        mem.save(noise, "dem", format="cog")
    assert list(client.scan_iter(match=f"{prefix}/hot/dem*")) == []
    with pytest.raises(mg.KeyNotFoundError):
        mem.open("dem")
    small = _terrain().isel(x=slice(0, 8), y=slice(0, 8))
    mem.save(small, "dem", format="cog")
    xr.testing.assert_identical(mem.open("dem"), small)


def test_migration_between_two_redis_databases(tmp_path: Path, redis_service: Any, redis_root: str) -> None:
    prefix = redis_root.rsplit("/", 1)[1]
    other = f"{redis_service.url.rsplit('/', 1)[0]}/1/{prefix}/other"
    config = mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"), "default_tier": "hot",
        "tiers": {"hot": {"url": f"{redis_root}/hot"}, "other": {"url": other}},
    })
    mem = mg.Memory(config)
    gdf = sample_vector()
    mem.save(gdf, "fields")
    status = execute_migration(mem, MigrationJob(source_tier="hot", destination_tier="other"))
    assert status.state == "completed"
    moved = mem.info("fields")
    target = mem.tiers.backend("other")
    assert target.fs.db == 1
    assert target.fs.client.exists(target.full_path(moved.path))
    assert_geodataframe_equal(mem.open("fields"), gdf)
    mem.verify()
    target.fs.rm(prefix, recursive=True)


def _write_many(rfs: RedisFileSystem, count: int, size: int) -> None:
    for i in range(count):
        rfs.pipe_file(f"full/{i}", b"x" * size)


def test_a_full_server_refuses_writes_as_quota_exceeded(redis_service: Any) -> None:
    """A server of its own (``noeviction``, 4 MB): the shared one evicts instead of refusing."""
    import redis

    from memories_geo.testing.redis_service import start_redis

    service = start_redis(maxmemory="4mb")
    try:
        redis.Redis.from_url(service.url).config_set("maxmemory-policy", "noeviction")
        rfs = RedisFileSystem(port=service.options["port"], skip_instance_cache=True)
        with pytest.raises(QuotaExceededError, match="out of memory") as info:
            _write_many(rfs, 20, 1_000_000)
        assert len(str(info.value)) < 600
        assert rfs.cat_file("full/0") == b"x" * 1_000_000
    finally:
        service.stop()
