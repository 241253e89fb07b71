"""Read cache in front of an S3 tier (moto): requests and bytes of a first and a second open, and time.

For a GeoParquet layer and a Zarr cube on S3, each with a local cache and (when the
``redis`` package and ``redis-server`` are there) a Redis cache:

- ``requests_first`` / ``requests_second``: HTTP requests of a cold open (empty cache)
  and of the next open (botocore ``before-send`` events), target second <= 10% of first;
- ``MiB_first`` / ``MiB_second``: bytes fetched from S3 by each;
- time: a warm-cache open (ours) against the same open with no cache (baseline), in
  interleaved pairs.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any

from benchmarks.harness import compare


class _Requests:
    """Counts the HTTP requests an s3fs client sends (botocore ``before-send`` events)."""

    def __init__(self, fs: Any) -> None:
        self.n = 0
        self._lock = threading.Lock()
        fs.s3.meta.events.register("before-send.s3.*", self._count)

    def _count(self, **kwargs: Any) -> None:
        with self._lock:
            self.n += 1


def _data(quick: bool) -> dict[str, Any]:
    import geopandas as gpd
    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(0)
    n = 200_000 if quick else 2_000_000
    points = gpd.GeoDataFrame({"v": rng.normal(size=n), "k": np.arange(n)},
                              geometry=gpd.points_from_xy(*rng.uniform(0, 10, (2, n))), crs="EPSG:4326")
    side = 256 if quick else 1024
    cube = xr.Dataset(
        {"t2m": (("time", "y", "x"), rng.normal(size=(8, side, side)).astype("float32"))},
        coords={"time": np.arange(8).astype("datetime64[D]").astype("datetime64[ns]"),
                "y": np.linspace(50, 40, side), "x": np.linspace(0, 10, side)},
    ).chunk({"time": 1, "y": 128, "x": 128})
    return {"points": points, "cube": cube}


def _open(mem: Any, key: str) -> Any:
    found = mem.open(key)
    return found.load() if hasattr(found, "load") else found


def _case(
    s3: Any, root: Path, kind: str, cache: dict[str, Any], data: dict[str, Any], pairs: int
) -> dict[str, Any]:
    import memories_geo as mg

    url = f"{s3.url}/{uuid.uuid4().hex[:8]}/warm"

    def memory(with_cache: bool) -> Any:
        tier: dict[str, Any] = {"url": url, "storage_options": s3.options}
        if with_cache:
            tier["cache"] = dict(cache)
        return mg.Memory(mg.StorageConfig.from_dict({"home": str(root / kind), "default_tier": "warm",
                                                      "tiers": {"warm": tier}}))

    plain = memory(False)
    for key, obj in data.items():
        plain.save(obj, key, **({"crs": "EPSG:4326"} if key == "cube" else {}))
    rows = []
    for key in data:
        cached = memory(True)
        backend = cached.tiers.backend("warm")
        requests = _Requests(backend.remote_fs)
        figures = []
        for _ in range(2):
            before, fetched = requests.n, backend.fs.counts().bytes_fetched
            _open(cached, key)
            figures.append((requests.n - before, backend.fs.counts().bytes_fetched - fetched))
        baseline_mem = memory(False)
        result = compare(f"open {key} from S3 (moto), {kind} cache warm vs no cache",
                         lambda i, key=key, cached=cached: _open(cached, key),
                         lambda i, key=key, plain=baseline_mem: _open(plain, key), pairs=pairs,
                         target="requests_second <= 10% of requests_first")
        row = result.row()
        row.update(requests_first=figures[0][0], requests_second=figures[1][0],
                   MiB_first=round(figures[0][1] / 1024**2, 2), MiB_second=round(figures[1][1] / 1024**2, 2))
        rows.append(row)
    return {"rows": rows}


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the cache benchmarks (``quick``: 200,000 points and a 8 x 256 x 256 cube)."""
    from memories_geo.testing.services import start_moto

    warnings.filterwarnings("ignore", message="Consolidated metadata")
    pairs = 3 if quick else 5
    data = _data(quick)
    s3 = start_moto()
    root = Path(tempfile.mkdtemp(prefix="mg-bench-cache-"))
    rows: list[dict[str, Any]] = []
    try:
        rows += _case(s3, root, "local", {"max_size": "2GB"}, data, pairs)["rows"]
        try:
            import redis  # noqa: F401

            from memories_geo.testing.redis_service import start_redis
        except ImportError as exc:
            rows.append({"benchmark": "redis cache", "skipped": f"redis package missing ({exc})"})
            return rows
        service = start_redis(maxmemory="1gb")
        try:
            rows += _case(s3, root, "redis", {"type": "redis", "url": service.url, "max_size": "900MB"},
                          data, pairs)["rows"]
        finally:
            service.stop()
    finally:
        s3.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rows
