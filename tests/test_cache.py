"""Read-through caches in front of remote tiers: local directory and Redis, on a real S3 (moto)."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid

import numpy as np
import pytest
import xarray as xr
from geopandas import GeoDataFrame, points_from_xy
from geopandas.testing import assert_geodataframe_equal

import memories_geo as mg
from memories_geo.backends.files import FileBackend
from memories_geo.cache import CachedFileSystem, LocalCacheStore, check_cache_settings
from memories_geo.errors import ConfigError
from memories_geo.integrity import build_manifest
from memories_geo.records import RECORD_SUFFIX


class Requests:
    """Counts the HTTP requests an s3fs client sends (botocore ``before-send`` events)."""

    def __init__(self, fs):
        self.n = 0
        self._lock = threading.Lock()
        fs.s3.meta.events.register("before-send.s3.*", self._count)

    def _count(self, **kwargs):
        with self._lock:
            self.n += 1


def _backend(s3, tmp_path, **cache):
    url = f"{s3.url}/{uuid.uuid4().hex[:8]}/warm"
    settings = {"path": str(tmp_path / "cache"), "max_size": "100MB", **cache}
    return FileBackend(url, s3.options, cache=settings)


def _version(backend, name, files):
    """Write a committed version ``name`` (a folder of ``files``, or one file) with its record."""
    root = backend.full_path(f"k/@v/{name}")
    remote = backend.remote_fs
    if isinstance(files, bytes):
        remote.pipe_file(root, files)
    else:
        for rel, data in files.items():
            remote.pipe_file(f"{root}/{rel}", data)
    manifest = build_manifest(remote, root)
    backend.write_bytes(f"k/@v/{name}{RECORD_SUFFIX}", json.dumps({"manifest": manifest.to_json()}).encode())
    return root


def _memory(s3, home, cache):
    return mg.Memory(mg.StorageConfig.from_dict({
        "home": str(home), "default_tier": "warm",
        "tiers": {"warm": {"url": f"{s3.url}/{home.name}{uuid.uuid4().hex[:6]}/warm",
                           "storage_options": s3.options, "cache": cache}},
    }))


@pytest.fixture
def cube():
    rng = np.random.default_rng(3)
    ds = xr.Dataset(
        {"t2m": (("time", "y", "x"), rng.normal(size=(4, 64, 64)).astype("float32"))},
        coords={"time": np.arange(4).astype("datetime64[D]").astype("datetime64[ns]"),
                "y": np.linspace(50, 40, 64), "x": np.linspace(0, 10, 64)},
    )
    return ds.chunk({"time": 1, "y": 32, "x": 32})


@pytest.fixture
def points():
    rng = np.random.default_rng(4)
    return GeoDataFrame({"v": np.arange(5000)}, geometry=points_from_xy(*rng.uniform(0, 5, (2, 5000))),
                        crs="EPSG:4326")


# -- settings -----------------------------------------------------------------------------


def test_settings_parse_sizes_policies_and_types():
    settings = check_cache_settings({"max_size": "50GB", "eviction_policy": "least-frequently-used",
                                     "prefetching": False})
    assert (settings.max_size, settings.eviction_policy, settings.prefetching) == (50 * 10**9, "lfu", False)
    redis = check_cache_settings({"type": "redis", "url": "redis://:pw@127.0.0.1:1/0", "max_size": "1 GiB"})
    assert redis.max_size == 2**30
    assert "pw" not in repr(redis)


@pytest.mark.parametrize(("value", "named"), [
    ({"max_sise": "1GB"}, "eviction_policy"),
    ({"eviction_policy": "most-recently-used"}, "least-recently-used"),
    ({"max_size": "lots"}, "MB"),
    ({"type": "memcached"}, "redis"),
    ({"type": "redis"}, "redis://"),
    ({"prefetching": "yes"}, "true or false"),
])
def test_bad_settings_name_the_accepted_ones(value, named):
    with pytest.raises(ConfigError, match=named):
        check_cache_settings(value)


def test_local_tiers_are_not_cached(tmp_path):
    backend = FileBackend(str(tmp_path / "hot"), cache={"path": str(tmp_path / "cache")})
    assert not isinstance(backend.fs, CachedFileSystem)


# -- local store: eviction --------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "kept"), [("lru", {"b", "c", "d"}), ("lfu", {"a", "b", "d"})])
def test_eviction_order_lru_versus_lfu(tmp_path, policy, kept):
    store = LocalCacheStore(tmp_path, max_size=300, eviction_policy=policy)
    for key in "abc":
        store.put(key, key.encode() * 100)
    for _ in range(3):
        assert store.get("a") == b"a" * 100
    assert store.get("b") == b"b" * 100
    assert store.get("b") == b"b" * 100
    assert store.get("c") == b"c" * 100  # c: most recent, but used once
    store.put("d", b"d" * 100)
    assert set(store.keys()) == kept
    assert store.size == 300
    assert store.stats.snapshot().evictions == 1


def test_processes_writing_one_local_cache_at_once_keep_it_bounded_and_readable(tmp_path):
    script = textwrap.dedent("""
        import sys
        from memories_geo.cache import LocalCacheStore
        store = LocalCacheStore(sys.argv[1], max_size=50_000, eviction_policy=sys.argv[3])
        for i in range(150):
            store.put(f"{sys.argv[2]}-{i}", sys.argv[2].encode() * 1000)
            store.get(f"{sys.argv[2]}-{i // 2}")
    """)
    workers = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), name, policy])
               for name, policy in (("p", "lru"), ("q", "lfu"))]
    assert [w.wait(120) for w in workers] == [0, 0]
    store = LocalCacheStore(tmp_path, max_size=50_000)
    keys = store.keys()
    assert 0 < store.size <= 50_000
    assert all(store.get(k) == k[0].encode() * 1000 for k in keys)
    assert sorted(p.name for p in (tmp_path / "data").rglob("*") if p.is_file()) == sorted(keys)


def test_entry_larger_than_the_cache_is_not_kept(tmp_path):
    store = LocalCacheStore(tmp_path, max_size=10)
    store.put("big", b"x" * 11)
    assert store.get("big") is None
    assert store.size == 0


# -- reads through the cache ----------------------------------------------------------------


def test_hits_misses_and_exact_ranges(s3_service, tmp_path):
    backend = _backend(s3_service, tmp_path, block_size="64KiB", prefetching=False)
    data = np.random.default_rng(0).bytes(300_000)
    small = b"small object"
    root = _version(backend, "v1.d", {"big.bin": data, "small.bin": small})
    fs = backend.fs
    assert isinstance(fs, CachedFileSystem)
    requests = Requests(backend.remote_fs)
    ranges = [(None, None), (0, 10), (65_530, 65_540), (-100, None), (299_990, 400_000), (131_072, 196_608)]
    for start, end in ranges:
        assert fs.cat_file(f"{root}/big.bin", start, end) == data[start:end]
    assert fs.cat_file(f"{root}/small.bin") == small
    assert fs.cat_file(f"{root}/small.bin", 2, 7) == small[2:7]
    first = requests.n
    assert first > 0
    for start, end in ranges:
        assert fs.cat_file(f"{root}/big.bin", start, end) == data[start:end]
    with fs.open(f"{root}/big.bin", "rb") as f:
        f.seek(70_000)
        assert f.read(1000) == data[70_000:71_000]
    assert fs.info(f"{root}/big.bin")["size"] == len(data)
    assert fs.exists(f"{root}/small.bin")
    assert not fs.exists(f"{root}/missing.bin")
    assert requests.n == first
    counts = fs.counts()
    assert counts.hits >= len(ranges)
    assert counts.misses >= 1
    assert counts.bytes_served > 0
    assert counts.bytes_fetched >= len(data) + len(small)


def test_paths_outside_committed_versions_go_to_the_store(s3_service, tmp_path):
    backend = _backend(s3_service, tmp_path)
    backend.remote_fs.pipe_file(backend.full_path("k/@v/v9.bin"), b"staged, no record yet")
    backend.remote_fs.pipe_file(backend.full_path("journal.json"), b"{}")
    fs = backend.fs
    assert fs.cat_file(backend.full_path("k/@v/v9.bin")) == b"staged, no record yet"
    assert fs.cat_file(backend.full_path("journal.json")) == b"{}"
    assert fs.counts().hits == 0
    assert fs.counts().misses == 0


def test_damaged_cache_file_is_refetched_never_served(s3_service, tmp_path):
    backend = _backend(s3_service, tmp_path, prefetching=False)
    path = _version(backend, "v1.bin", b"the real bytes" * 100)
    fs = backend.fs
    assert fs.cat_file(path) == b"the real bytes" * 100
    store = fs.store
    damaged = [p for p in (tmp_path / "cache" / "data").rglob("*") if p.is_file() and "record" not in p.name]
    digest = build_manifest(backend.remote_fs, path).files["v1.bin"].digest
    target = next(p for p in damaged if p.name == digest)
    target.write_bytes(b"the real bytez" + b"the real bytes" * 99)
    requests = Requests(backend.remote_fs)
    assert fs.cat_file(path) == b"the real bytes" * 100
    assert requests.n == 1
    assert fs.counts().discarded == 1
    assert store.get(digest) == b"the real bytes" * 100


def test_store_bytes_not_matching_the_manifest_are_not_cached(s3_service, tmp_path):
    backend = _backend(s3_service, tmp_path)
    path = _version(backend, "v1.bin", b"as written")
    backend.remote_fs.pipe_file(path, b"overwritten")
    fs = backend.fs
    assert fs.cat_file(path) == b"overwritten"
    assert fs.store.size == len(backend.remote_fs.cat_file(path + RECORD_SUFFIX))


def test_prefetching_fetches_the_next_blocks_and_chunks(s3_service, tmp_path):
    backend = _backend(s3_service, tmp_path, block_size="16KiB", prefetch_blocks=3)
    data = np.random.default_rng(1).bytes(16_384 * 10)
    root = _version(backend, "v1.d", {"big.bin": data, **{f"c/{i}": bytes([i]) * 100 for i in range(8)}})
    fs = backend.fs
    assert fs.cat_file(f"{root}/big.bin", 0, 16_384) == data[:16_384]
    assert fs.cat_file(f"{root}/big.bin", 16_384, 32_768) == data[16_384:32_768]
    fs.wait_prefetched()
    assert fs.counts().prefetched == 3
    misses = fs.counts().misses
    assert fs.cat_file(f"{root}/big.bin", 32_768, 16_384 * 5) == data[32_768 : 16_384 * 5]
    assert fs.counts().misses == misses  # blocks 2-4 were there already
    fs.wait_prefetched()
    assert fs.counts().prefetched == 6  # and blocks 5-7 were fetched ahead
    assert fs.cat_file(f"{root}/c/0") == bytes([0]) * 100
    assert fs.cat_file(f"{root}/c/1") == bytes([1]) * 100
    fs.wait_prefetched()
    misses = fs.counts().misses
    assert [fs.cat_file(f"{root}/c/{i}") for i in (2, 3, 4)] == [bytes([i]) * 100 for i in (2, 3, 4)]
    assert fs.counts().misses == misses
    fs.wait_prefetched()
    assert fs.counts().prefetched == 6 + 6  # c/2-4, then c/5-7 as the reads went on


def test_no_prefetching_when_off(s3_service, tmp_path):
    backend = _backend(s3_service, tmp_path, block_size="16KiB", prefetching=False)
    root = _version(backend, "v1.bin", bytes(16_384 * 4))
    fs = backend.fs
    fs.cat_file(root, 0, 16_384)
    fs.cat_file(root, 16_384, 32_768)
    fs.wait_prefetched()
    assert fs.counts().prefetched == 0


# -- through Memory ---------------------------------------------------------------------------


def _opens(mem, key):
    backend = mem.tiers.backend("warm")
    requests = Requests(backend.remote_fs)
    counts = []
    for _ in range(2):
        before = requests.n
        found = mem.open(key)
        found = found.load() if hasattr(found, "load") else found
        counts.append(requests.n - before)
    return found, counts


def test_second_open_of_geoparquet_costs_a_tenth_of_the_requests(s3_service, tmp_path, points):
    mem = _memory(s3_service, tmp_path / "home", {"max_size": "1GB"})
    mem.save(points, "pts")
    found, (first, second) = _opens(mem, "pts")
    assert_geodataframe_equal(found, points)
    assert first > 0
    assert second <= first / 10


def test_second_open_of_a_zarr_cube_costs_a_tenth_of_the_requests(s3_service, tmp_path, cube):
    cache = {"max_size": "1GB", "eviction_policy": "least-frequently-used"}
    mem = _memory(s3_service, tmp_path / "home", cache)
    mem.save(cube, "cube", crs="EPSG:4326")
    found, (first, second) = _opens(mem, "cube")
    xr.testing.assert_identical(found.t2m.reset_coords(drop=True), cube.t2m.compute().reset_coords(drop=True))
    assert first > 0
    assert second <= first / 10


def test_zarr_reads_through_the_async_view(s3_service, tmp_path, cube):
    from zarr.storage import FsspecStore

    mem = _memory(s3_service, tmp_path / "home", {"max_size": "1GB"})
    entry = mem.save(cube, "cube", crs="EPSG:4326")
    backend = mem.tiers.backend("warm")
    requests = Requests(backend.remote_fs)
    counts = []
    for _ in range(2):
        before = requests.n
        store = FsspecStore(fs=backend.fs.async_view(), path=backend.full_path(entry.path), read_only=True)
        found = xr.open_zarr(store).load()
        np.testing.assert_array_equal(found.t2m.values, cube.t2m.values)
        counts.append(requests.n - before)
    assert counts[0] > 0
    assert counts[1] <= counts[0] / 10


def test_two_processes_share_the_local_cache(s3_service, tmp_path, points):
    home = tmp_path / "home"
    mem = _memory(s3_service, home, {"max_size": "1GB"})
    mem.save(points, "pts")
    url = mem.config.tiers["warm"].url
    script = textwrap.dedent(f"""
        import json, os, sys
        import memories_geo as mg
        options = json.loads(os.environ["MG_TEST_S3"])
        tier = {{"url": {url!r}, "storage_options": options, "cache": {{"max_size": "1GB"}}}}
        mem = mg.Memory(mg.StorageConfig.from_dict({{"home": {str(home)!r}, "default_tier": "warm",
                                                     "tiers": {{"warm": tier}}}}))
        print(len(mem.open("pts")), mem.tiers.backend("warm").fs.counts().misses)
    """)
    env = {**os.environ, "MG_TEST_S3": json.dumps(s3_service.options)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rows, misses = map(int, done.stdout.split())
    assert rows == len(points)
    assert misses > 0
    backend = mem.tiers.backend("warm")
    requests = Requests(backend.remote_fs)
    assert_geodataframe_equal(mem.open("pts"), points)
    assert backend.fs.counts().misses == 0
    assert requests.n == 0


# -- Redis --------------------------------------------------------------------------------------


@pytest.fixture
def redis_url(redis_service):
    pytest.importorskip("redis")
    return redis_service.url


def test_redis_cache_shared_by_two_memories(s3_service, redis_url, tmp_path, points):
    cache = {"type": "redis", "url": redis_url, "max_size": "32MB"}
    first = _memory(s3_service, tmp_path / "home", cache)
    first.save(points, "pts")
    config = first.config
    found, (cold, warm) = _opens(first, "pts")
    assert_geodataframe_equal(found, points)
    assert cold > 0
    assert warm <= cold / 10
    second = mg.Memory(config)
    backend = second.tiers.backend("warm")
    requests = Requests(backend.remote_fs)
    assert_geodataframe_equal(second.open("pts"), points)
    assert requests.n <= cold / 10
    assert backend.fs.counts().hits > 0
    assert backend.fs.counts().misses == 0
    assert backend.fs.store.keys()
    assert backend.fs.store.size <= 32 * 10**6


def test_redis_store_evicts_and_discards(redis_url):
    from memories_geo.cache import RedisCacheStore

    store = RedisCacheStore(redis_url, max_size=300, eviction_policy="lfu", prefix=f"t{uuid.uuid4().hex}:")
    for key in "abc":
        store.put(key, key.encode() * 100)
    for key in "aab":
        store.get(key)
    store.put("d", b"d" * 100)
    assert set(store.keys()) == {"a", "b", "d"}
    assert store.size == 300
    store.client.hset(store.prefix + "a", "data", b"x" * 100)
    assert store.get("a") is None
    assert store.stats.snapshot().discarded == 1


def test_redis_storage_original_api(redis_url):
    from memories_geo.storage.redis import RedisStorage

    storage = RedisStorage(redis_url, prefix=f"t{uuid.uuid4().hex}:")
    storage.save("index/run-1", {"done": True, "tiles": [1, 2]}, metadata={"by": "test"})
    storage.save("raw", b"\x00\x01")
    assert storage.load("index/run-1") == {"done": True, "tiles": [1, 2]}
    assert storage.load("raw") == b"\x00\x01"
    assert storage.metadata("index/run-1") == {"by": "test"}
    assert storage.keys("index/*") == ["index/run-1"]
    assert storage.tier_settings() == {"url": f"{redis_url.rstrip('/')}/memories_geo"}
    with pytest.raises(mg.errors.KeyNotFoundError):
        storage.load("nothing")
