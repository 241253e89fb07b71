"""GeoParquet on S3 (moto on loopback): memories_geo next to raw geopandas calls.

Rows:

- ``save (S3)`` / ``open (S3)``: ``mem.save`` / ``mem.open`` of 1M points (100k in
  quick runs) against ``gdf.to_parquet`` / ``gpd.read_parquet`` through the fastest
  filesystem (pyarrow's own S3 client or s3fs, whichever the ``filesystems`` row
  measures faster); target within 1.05.
- ``bbox read``: a bbox covering 1% of the layer's extent, read through a counting
  proxy: requests and bytes fetched against the file's size; target <= 5%.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.bench_s3_zarr import counted, s3_memory
from benchmarks.harness import compare
from benchmarks.s3proxy import CountingProxy

SEED = 20240602


def make_points(n: int) -> Any:
    """``n`` seeded points over a 100 x 100 degree box, with a few attribute columns."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    x, y = rng.uniform(-50, 50, n), rng.uniform(-40, 60, n)
    return gpd.GeoDataFrame(
        {
            "value": rng.normal(size=n),
            "count": rng.integers(0, 1000, n),
            "name": pd.Series([f"p{i % 5000}" for i in range(n)], dtype="string"),
        },
        geometry=gpd.points_from_xy(x, y),
        crs="EPSG:4326",
    )


def _arrow_s3(options: dict[str, Any]) -> Any:
    from pyarrow.fs import S3FileSystem

    endpoint = options["client_kwargs"]["endpoint_url"]
    return S3FileSystem(
        access_key=options["key"], secret_key=options["secret"], region="us-east-1",
        endpoint_override=endpoint.split("://", 1)[1], scheme="http",
    )


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the S3 GeoParquet benchmarks; ``quick`` uses 100k rows instead of 1M."""
    import geopandas as gpd
    import s3fs

    from memories_geo.testing.services import start_moto

    n = 100_000 if quick else 1_000_000
    pairs = 3 if quick else 5
    gdf = make_points(n)
    root = Path(tempfile.mkdtemp(prefix="bench-s3-gpq-"))
    service = start_moto()
    proxy = CountingProxy(service.options["client_kwargs"]["endpoint_url"])
    rows: list[dict[str, Any]] = []
    try:
        mem = s3_memory(service, root)
        bucket = service.url.removeprefix("s3://")
        raw = f"{bucket}/raw-{uuid.uuid4().hex[:6]}"
        options = copy.deepcopy(service.options)
        filesystems = {
            "s3fs": s3fs.S3FileSystem(**options, skip_instance_cache=True), "pyarrow": _arrow_s3(options),
        }
        speed = {}
        for name, fs in filesystems.items():
            start = time.perf_counter()
            gdf.to_parquet(f"{raw}/probe-{name}.parquet", filesystem=fs)
            gpd.read_parquet(f"{raw}/probe-{name}.parquet", filesystem=fs)
            speed[name] = time.perf_counter() - start
        fastest = min(speed, key=speed.__getitem__)
        rows.append({"benchmark": "filesystems (raw save+open)", **{k: round(v, 3) for k, v in speed.items()},
                     "fastest": fastest})
        fs = filesystems[fastest]

        def cleanup() -> None:
            for key in mem.ls("bench/save*")["key"]:
                mem.delete(key)

        save = compare(
            "save (S3)",
            lambda i: mem.save(gdf, f"bench/save{i}"),
            lambda i: gdf.to_parquet(f"{raw}/save{i}.parquet", filesystem=fs),
            pairs=pairs, cleanup=cleanup, target="<= 1.05",
        )
        save.extra.update(rows=n, baseline=f"to_parquet via {fastest}")
        rows.append(save.row())

        mem.save(gdf, "bench/layer")
        gdf.to_parquet(f"{raw}/open.parquet", filesystem=fs)
        opened = compare(
            "open (S3)",
            lambda i: mem.open("bench/layer"),
            lambda i: gpd.read_parquet(f"{raw}/open.parquet", filesystem=fs),
            pairs=pairs, target="<= 1.05",
        )
        opened.extra.update(rows=n, baseline=f"read_parquet via {fastest}")
        rows.append(opened.row())

        counting = s3_memory(service, root, proxy.url)
        entry = counting.save(gdf, "bench/counted")
        backend = counting.tiers.backend("warm")
        size = backend.remote_fs.size(backend.full_path(entry.path))
        box = (0.0, 0.0, 10.0, 10.0)
        figures = [
            ("GeoParquet save", lambda: counting.save(gdf, "bench/counted", mode="w")),
            ("GeoParquet open", lambda: counting.open("bench/counted")),
            ("GeoParquet 1% bbox read", lambda: counting.open("bench/counted", bbox=box)),
        ]
        for operation, fn in figures:
            row = {"benchmark": f"bytes and requests: {operation}", "client": "memories_geo",
                   **counted(proxy, fn), "file_MB": round(size / 1e6, 2)}
            if "bbox" in operation:
                row["fraction_of_file"] = round(row["MB_received"] * 1e6 / size, 4)
                row["target"] = "<= 0.05"
                row["rows_read"] = len(counting.open("bench/counted", bbox=box))
            rows.append(row)
    finally:
        proxy.stop()
        service.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rows
