"""Migrations: hot (local disk) -> warm (moto S3 server) against a raw parallel ``fs.put``.

Rows:

- ``migration hot -> S3``: ``execute_migration`` of N keys (Zarr rasters and GeoParquet
  vectors, unchanged format: byte moves, each copy re-hashed against its manifest, one
  catalog transaction per key, sources deleted) against ``s3fs.put`` of the same files
  in one concurrent batch (no verification, no catalog). Issue target: within 1.2x
  (full run: 100 keys / 2 GB). Bytes and S3 requests of each side are reported.
- ``converting migration PostGIS -> GeoParquet`` (when PostgreSQL can start): a layer of
  points converted from a PostGIS tier to the local GeoParquet tier (with and without
  read-back validation) against ``read_postgis`` + ``to_parquet``; issue target 1.3x.

moto's server runs in a process of its own (``moto_server``), as a real object store
would; timings are interleaved pairs (:func:`benchmarks.harness.compare`).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import compare

SEED = 20240607


def _raster(i: int, mib: float) -> Any:
    import pandas as pd
    import rioxarray  # noqa: F401
    import xarray as xr

    rng = np.random.default_rng([SEED, i])
    side = 256
    nt = max(1, int(mib * 1024 * 1024 / (side * side * 4)))
    data = np.round(rng.normal(280, 5, (nt, side, side)).astype("float32"), 1)
    ds = xr.Dataset({"t": (("time", "y", "x"), data)},
                    coords={"time": pd.date_range("2024-01-01", periods=nt),
                            "y": 5_000_000.0 - 100.0 * np.arange(side),
                            "x": 500_000.0 + 100.0 * np.arange(side)})
    return ds.rio.write_crs("EPSG:32631")


def _vector(i: int, mib: float) -> Any:
    import geopandas as gpd

    rng = np.random.default_rng([SEED, i])
    n = max(100, int(mib * 1024 * 1024 / 40))
    return gpd.GeoDataFrame({"v": rng.normal(size=n), "k": np.arange(n)},
                            geometry=gpd.points_from_xy(*rng.uniform(0, 10, (2, n))), crs="EPSG:4326")


class _Requests:
    """Counts the HTTP requests an s3fs client sends (botocore ``before-send`` events)."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()
        self._clients: set[int] = set()

    def watch(self, fs: Any) -> None:
        client = fs.s3
        if id(client) not in self._clients:
            self._clients.add(id(client))
            client.meta.events.register("before-send.s3.*", self._count)

    def _count(self, **kwargs: Any) -> None:
        with self._lock:
            self.n += 1


def _migration(quick: bool, s3: Any, *, keys: int | None = None, mib: float | None = None) -> dict[str, Any]:
    import s3fs

    import memories_geo as mg
    from memories_geo.lifecycle import MigrationJob, execute_migration

    keys = keys or (10 if quick else 100)
    mib = mib or (2.0 if quick else 31.0)
    pairs = 3 if quick else 5
    root = Path(tempfile.mkdtemp(prefix="mg-bench-migration-"))
    template = root / "template"
    fs = s3fs.S3FileSystem(**s3.options)
    bucket = s3.url.removeprefix("s3://")
    try:
        mem = mg.Memory(mg.StorageConfig.embedded(template))
        for i in range(keys):
            obj = _vector(i, mib) if i % 5 == 4 else _raster(i, mib)
            mem.save(obj, f"tiles/{i:03d}", tier="hot")
        files = sorted(p for p in (template / "hot").rglob("*") if p.is_file())
        total_bytes = sum(p.stat().st_size for p in files)
        requests = _Requests()
        counts: dict[str, list[int]] = {"ours": [], "baseline": []}
        homes: dict[int, mg.Memory] = {}

        def prepare(i: int) -> None:
            shutil.copytree(template, root / f"run{i}")
            homes[i] = mg.Memory(mg.StorageConfig.from_dict({
                "home": str(root / f"run{i}"),
                "tiers": {"warm": {"url": f"{s3.url}/ours{i}/warm", "storage_options": s3.options}},
            }))

        def ours(i: int) -> None:
            run = homes[i]
            requests.watch(run.tiers.backend("warm").fs)
            before = requests.n
            execute_migration(run, MigrationJob(source_tier="hot", destination_tier="warm"), max_workers=8)
            counts["ours"].append(requests.n - before)

        def baseline(i: int) -> None:
            requests.watch(fs)
            before = requests.n
            remote = [f"{bucket}/base{i}/{p.relative_to(template / 'hot')}" for p in files]
            fs.put([str(p) for p in files], remote)
            counts["baseline"].append(requests.n - before)

        def cleanup() -> None:
            """Drop the runs done (local copies and S3 objects), get the next one ready."""
            done = sorted(homes)[0]
            del homes[done]
            shutil.rmtree(root / f"run{done}", ignore_errors=True)
            for prefix in (f"ours{done}", f"base{done}"):
                if fs.exists(f"{bucket}/{prefix}"):
                    fs.rm(f"{bucket}/{prefix}", recursive=True)
            fs.invalidate_cache()
            prepare(done + 1)

        prepare(-1)
        result = compare(f"migration hot -> S3 (moto), {keys} keys, verified", ours, baseline, pairs=pairs,
                         cleanup=cleanup, target="ratio <= 1.2 (full: 100 keys / 2 GB)")
        row = result.row()
        row.update(keys=keys, files=len(files), MiB=round(total_bytes / 1024**2, 1),
                   requests_ours=int(np.median(counts["ours"][1:])),
                   requests_baseline=int(np.median(counts["baseline"][1:])))
        return row
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _conversion(quick: bool) -> list[dict[str, Any]]:
    import geopandas as gpd

    import memories_geo as mg
    from memories_geo.lifecycle import MigrationJob, execute_migration
    from memories_geo.testing.services import ServiceUnavailable, start_postgres

    try:
        service = start_postgres()
    except ServiceUnavailable as exc:
        return [{"benchmark": "converting migration PostGIS -> GeoParquet", "skipped": str(exc)}]
    n = 100_000 if quick else 1_000_000
    pairs = 3 if quick else 5
    root = Path(tempfile.mkdtemp(prefix="mg-bench-convert-"))
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        gdf = _vector(0, n * 40 / 1024**2)
        mem = mg.Memory(mg.StorageConfig.from_dict({
            "home": str(root / "home"),
            "tiers": {"warm": {"url": service.url, "storage_options": {"schema": schema}}},
        }))
        for i in range(-1, pairs):
            for validation in (True, False):
                mem.save(gdf, f"layer/{validation}/{i}", tier="warm")
        from sqlalchemy import create_engine

        engine = create_engine(service.url.replace("postgresql://", "postgresql+psycopg://"))
        mem.save(gdf, "layer/base", tier="warm")
        table = mem.tiers.backend("warm").table_for(mem.info("layer/base").path)
        query = f'SELECT * FROM "{schema}"."{table}"'  # noqa: S608

        def baseline(i: int) -> None:
            gpd.read_postgis(query, engine, geom_col="geometry").to_parquet(root / f"base{i}.parquet")

        rows = []
        for validation in (True, False):
            def ours(i: int, validation: bool = validation) -> None:
                job = MigrationJob(source_tier="warm", destination_tier="hot", validation=validation,
                                   selection_criteria={"key": f"layer/{validation}/{i}"})
                execute_migration(mem, job)

            name = f"converting migration PostGIS -> GeoParquet, {n:,} rows, validation={validation}"
            result = compare(name, ours, baseline, pairs=pairs, target="ratio <= 1.3")
            rows.append(result.row())
        engine.dispose()
        mem.tiers.backend("warm").close()
        return rows
    finally:
        service.stop()
        shutil.rmtree(root, ignore_errors=True)


def _moto_server() -> Any:
    """moto's S3 server in a process of its own (its CPU is not this process's GIL), one bucket."""
    import secrets
    import socket
    import subprocess
    import sys
    import time

    import boto3

    from memories_geo.testing.services import Service, free_port

    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.2)
    endpoint = f"http://127.0.0.1:{port}"
    options = {"key": f"k{secrets.token_hex(6)}", "secret": f"s{secrets.token_hex(12)}",
               "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=options["key"],
                 aws_secret_access_key=options["secret"]).create_bucket(Bucket=bucket)

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    return Service("s3", f"s3://{bucket}", options=options, _stop=stop)


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the migration benchmarks; ``quick`` moves 10 keys / 20 MB and converts 100,000 rows."""
    warnings.filterwarnings("ignore", message="Consolidated metadata")
    s3 = _moto_server()
    try:
        rows = [_migration(quick, s3)]
    finally:
        s3.stop()
    return rows + _conversion(quick)
