"""Zarr: memories_geo save/open next to plain ``to_zarr`` / ``open_zarr`` with the same layout.

Rows:

- ``save`` / ``open+load``: ``mem.save`` (write, checksum manifest, catalog commit) and
  ``mem.open(...).load()`` against ``ds.to_zarr(zarr_format=3, consolidated=True,
  encoding=<same codec and chunks>)`` and ``xr.open_zarr(...).load()``; target <= 1.10.
- ``level <name>``: compression ratio and write/read MB/s of each tier level.
- ``append`` vs ``full rewrite``: one more time step appended as a new version against
  saving the whole extended dataset as a new version.
- ``sharded read`` vs ``unsharded read``: open+load of the same data at the ``maximum``
  level with and without shards.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks.harness import compare

SEED = 20240601


def make_dataset(nt: int, ny: int = 1024, nx: int = 1024) -> Any:
    """Seeded float32 (time, y, x) field: smooth weather-like signal plus noise, with a CRS."""
    import numpy as np
    import pandas as pd
    import rioxarray  # noqa: F401
    import xarray as xr

    rng = np.random.default_rng(SEED)
    y = np.linspace(0, 6, ny, dtype="float32")[:, None]
    x = np.linspace(0, 6, nx, dtype="float32")[None, :]
    data = np.empty((nt, ny, nx), dtype="float32")
    for t in range(nt):
        field = 280 + 15 * np.sin(x + t / 7) * np.cos(y - t / 11)
        data[t] = np.round(field + rng.normal(0, 0.5, (ny, nx)).astype("float32"), 2)
    ds = xr.Dataset(
        {"t2m": (("time", "y", "x"), data, {"units": "K"})},
        coords={
            "time": pd.date_range("2024-01-01", periods=nt, freq="h"),
            "y": 5_700_000.0 - 100.0 * np.arange(ny) - 50.0,
            "x": 500_000.0 + 100.0 * np.arange(nx) + 50.0,
        },
    )
    return ds.rio.write_crs("EPSG:32631")


def _size(path: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the Zarr benchmarks; ``quick`` uses ~32 MB instead of ~500 MB."""
    import xarray as xr
    import zarr

    import memories_geo as mg
    from memories_geo.formats.zarr import ZARR_CODECS, zarr_codec
    from memories_geo.types import CompressionLevel

    warnings.filterwarnings("ignore", message="Consolidated metadata")
    nt = 8 if quick else 125
    pairs = 3 if quick else 5
    ds = make_dataset(nt)
    nbytes = ds["t2m"].nbytes
    root = Path(tempfile.mkdtemp(prefix="bench-zarr-"))
    rows: list[dict[str, Any]] = []
    try:
        mem = mg.Memory(mg.StorageConfig.embedded(root / "memories"))

        def path_of(key: str) -> str:
            entry = mem.info(key)
            return mem.tiers.backend(entry.tier).full_path(entry.path)

        # -- save and open against the plain xarray calls, same codec and chunks --
        mem.save(ds, "bench/layout", tier="hot")
        layout = zarr.open_group(path_of("bench/layout"), mode="r")["t2m"]
        encoding = {"t2m": {"chunks": layout.chunks, "compressors": (zarr_codec("fast"),)}}

        def ours_save(i: int) -> None:
            mem.save(ds, f"bench/save{i}", tier="hot")

        def raw_save(i: int) -> None:
            ds.to_zarr(root / f"raw{i}.zarr", zarr_format=3, consolidated=True, encoding=encoding, mode="w")

        def cleanup() -> None:
            for key in mem.ls("bench/save*")["key"]:
                mem.delete(key)
            for path in root.glob("raw*.zarr"):
                shutil.rmtree(path)

        save = compare("save (hot)", ours_save, raw_save, pairs=pairs, cleanup=cleanup, target="<= 1.10")
        save.extra["MB"] = round(nbytes / 1e6)
        rows.append(save.row())

        raw_path = root / "raw-open.zarr"
        ds.to_zarr(raw_path, zarr_format=3, consolidated=True, encoding=encoding, mode="w")
        opened = compare(
            "open+load (hot)",
            lambda i: mem.open("bench/layout").load(),
            lambda i: xr.open_zarr(raw_path).load(),
            pairs=pairs,
            target="<= 1.10",
        )
        opened.extra["MB"] = round(nbytes / 1e6)
        rows.append(opened.row())

        # -- compression ratio and throughput per level, on a slice --
        sample = ds.isel(time=slice(0, 8))
        for level in CompressionLevel:
            start = time.perf_counter()
            mem.save(sample, f"bench/level-{level.value}", tier="hot", compression=level)
            written = time.perf_counter() - start
            start = time.perf_counter()
            mem.open(f"bench/level-{level.value}").load()
            read = time.perf_counter() - start
            stored = _size(path_of(f"bench/level-{level.value}"))
            name, params = ZARR_CODECS[level]
            rows.append(
                {
                    "benchmark": f"level {level.value}",
                    "codec": f"{name} {params}",
                    "compression_ratio": round(sample["t2m"].nbytes / stored, 2),
                    "write_MB/s": round(sample["t2m"].nbytes / written / 1e6, 1),
                    "read_MB/s": round(sample["t2m"].nbytes / read / 1e6, 1),
                }
            )

        # -- append one step vs rewriting everything as a new version --
        base, step = ds.isel(time=slice(0, nt - 1)), ds.isel(time=[nt - 1])
        mem.save(base, "bench/append", tier="hot")
        mem.save(base, "bench/rewrite", tier="hot")

        def ours_append(i: int) -> None:
            mem.save(step, "bench/append", mode="a", append_dim="time")

        def full_rewrite(i: int) -> None:
            mem.save(ds, "bench/rewrite", mode="w")

        def drop_new_versions() -> None:
            for key in ("bench/append", "bench/rewrite"):
                for entry in mem.versions(key)[1:]:
                    if entry.version != mem.info(key).version:
                        mem.delete(key, version=entry.version)

        append = compare(
            "append 1 step vs full rewrite",
            ours_append,
            full_rewrite,
            pairs=pairs,
            cleanup=drop_new_versions,
            target="< 1 (appends share chunks)",
        )
        rows.append(append.row())

        # -- sharded vs unsharded read at the maximum level --
        archive = ds.isel(time=slice(0, min(nt, 32)))
        mem.save(archive, "bench/sharded", tier="glacier")
        sharded = zarr.open_group(path_of("bench/sharded"), mode="r")["t2m"]
        mem.save(
            archive,
            "bench/unsharded",
            tier="glacier",
            encoding={"t2m": {"chunks": sharded.chunks}},
        )
        shard_read = compare(
            "sharded read vs unsharded (maximum)",
            lambda i: mem.open("bench/sharded").load(),
            lambda i: mem.open("bench/unsharded").load(),
            pairs=pairs,
            target="decides sharding",
        )
        shard_read.extra.update(
            shards=str(sharded.shards),
            files_sharded=sum(1 for p in Path(path_of("bench/sharded")).rglob("*") if p.is_file()),
            files_unsharded=sum(1 for p in Path(path_of("bench/unsharded")).rglob("*") if p.is_file()),
        )
        rows.append(shard_read.row())
        one_step = compare(
            "sharded vs unsharded, one time step",
            lambda i: mem.open("bench/sharded").isel(time=3).load(),
            lambda i: mem.open("bench/unsharded").isel(time=3).load(),
            pairs=pairs,
        )
        rows.append(one_step.row())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows
