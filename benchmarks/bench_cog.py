"""COG writes and reads: memories_geo next to rioxarray's ``to_raster`` and rio-cogeo.

- save: ``Memory.save(da, format="cog")`` on the hot tier (ZSTD 1 + predictor, all
  CPUs, overviews, checksums and catalog included) vs ``da.rio.to_raster(path,
  driver="COG")`` with GDAL's defaults (LZW, no predictor, one thread, cubic overviews);
  target at least 2.5x faster with a file no larger;
- save vs ``rio_cogeo.cog_translate`` from a temporary GeoTIFF written beforehand
  (its default ``deflate`` profile; writing that GeoTIFF is not timed); target 1.5x;
- compression ratio and throughput per tier level (:data:`COG_PROFILES`);
- reading a 512x512 window (``bbox=``) of a large COG vs reading all of it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import compare

SEED = 20240601


def terrain(ny: int, nx: int, dtype: str, seed: int = SEED) -> Any:
    """Smooth relief (a few sinusoids) plus sensor-like noise, as int16 metres or float32."""
    import rioxarray  # noqa: F401
    import xarray as xr

    rng = np.random.default_rng(seed)
    y = (np.arange(ny, dtype="float32") / 4096)[:, None]
    x = (np.arange(nx, dtype="float32") / 4096)[None, :]
    z = np.zeros((ny, nx), dtype="float32")
    for k in range(6):
        fx, fy, phase = rng.uniform(1, 3 * 2**k, 3)
        z += np.float32(800 / (k + 1)) * np.sin(np.float32(2 * np.pi) * (fx * x + phase)) * np.cos(
            np.float32(2 * np.pi * fy) * y + np.float32(phase)
        )
    z += rng.normal(0, 3, size=(ny, nx)).astype("float32")
    values = np.round(z).astype(dtype) if np.dtype(dtype).kind == "i" else z.astype(dtype)
    coords = {"y": 5_000_000.0 - 10 * np.arange(ny) - 5, "x": 400_000.0 + 10 * np.arange(nx) + 5}
    da = xr.DataArray(values, dims=("y", "x"), coords=coords, name="elevation")
    return da.rio.write_crs("EPSG:32631")


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*"))


def _bench_save(da: Any, label: str, pairs: int, work: Path) -> list[dict[str, Any]]:
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    import memories_geo as mg

    root = work / f"mem-{label}"
    mem = mg.Memory(mg.StorageConfig.embedded(root))
    sizes: dict[str, int] = {}

    def ours(i: int) -> None:
        entry = mem.save(da, f"{label}/run{i + 1}", format="cog", tier="hot")
        sizes["ours"] = entry.size_bytes

    def to_raster(i: int) -> None:
        path = work / f"{label}-rio-{i + 1}.tif"
        da.rio.to_raster(path, driver="COG")
        sizes["to_raster"] = path.stat().st_size

    def cleanup() -> None:
        for path in work.glob(f"{label}-*-*.tif"):
            path.unlink()
        for name in list(mem.ls()["key"]):
            mem.delete(name)

    rows = []
    result = compare(
        f"save {label} vs rio.to_raster(driver=COG)", ours, to_raster, pairs=pairs, cleanup=cleanup,
        target="ratio <= 0.4 (2.5x faster), size_ratio <= 1",
    )
    result.extra.update(
        mb=round(da.nbytes / 1e6), size_ratio=round(sizes["ours"] / sizes["to_raster"], 3),
        ours_MBps=round(da.nbytes / 1e6 / min(result.ours), 1),
        baseline_MBps=round(da.nbytes / 1e6 / min(result.baseline), 1),
    )
    rows.append(result.row())

    source = work / f"{label}-source.tif"
    da.rio.to_raster(source, tiled=True)

    def rio_cogeo(i: int) -> None:
        path = work / f"{label}-cogeo-{i + 1}.tif"
        cog_translate(source, path, cog_profiles.get("deflate"), quiet=True)
        sizes["cogeo"] = path.stat().st_size

    result = compare(
        f"save {label} vs rio_cogeo.cog_translate", ours, rio_cogeo, pairs=pairs, cleanup=cleanup,
        target="ratio <= 0.67 (1.5x faster)",
    )
    result.extra.update(mb=round(da.nbytes / 1e6), size_ratio=round(sizes["ours"] / sizes["cogeo"], 3))
    rows.append(result.row())
    source.unlink()
    shutil.rmtree(root, ignore_errors=True)
    return rows


def _bench_levels(das: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    import memories_geo as mg
    from memories_geo.formats.cog import COG_PROFILES

    rows = []
    mem = mg.Memory(mg.StorageConfig.embedded(work / "mem-levels"))
    for label, da in das.items():
        for level, profile in COG_PROFILES.items():
            key = f"levels/{label}-{level.value}"
            start = time.perf_counter()
            entry = mem.save(da, key, format="cog", compression=level)
            elapsed = time.perf_counter() - start
            rows.append(
                {
                    "benchmark": f"level {level.value} {label}",
                    "codec": f"{profile['COMPRESS']} {profile.get('LEVEL', '')}".strip(),
                    "mb": round(da.nbytes / 1e6, 1),
                    "compression_ratio": round(da.nbytes / entry.size_bytes, 3),
                    "MBps": round(da.nbytes / 1e6 / elapsed, 1),
                }
            )
            mem.delete(key)
    return rows


def _bench_window(da: Any, pairs: int, work: Path) -> list[dict[str, Any]]:
    import memories_geo as mg

    mem = mg.Memory(mg.StorageConfig.embedded(work / "mem-window"))
    mem.save(da, "window/dem", format="cog")
    x0, y1 = float(da.x[1000]) - 5, float(da.y[1000]) + 5
    bbox = (x0, y1 - 5120, x0 + 5120, y1)

    def ours(_: int) -> None:
        window = mem.open("window/dem", bbox=bbox, bbox_crs=da.rio.crs).values
        assert window.shape == (512, 512)

    def full(_: int) -> None:
        assert mem.open("window/dem").values.shape == da.shape

    result = compare("read 512x512 bbox window vs full read", ours, full, pairs=pairs,
                     target="much less than 1")
    result.extra.update(mb=round(da.nbytes / 1e6))
    return [result.row()]


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the COG benchmarks; ``quick`` uses small arrays (a smoke run)."""
    work = Path(tempfile.mkdtemp(prefix="bench-cog-", dir=os.environ.get("BENCH_TMP")))
    try:
        if quick:
            int16, float32 = terrain(2048, 2048, "int16"), terrain(1536, 1536, "float32")
            small = {"int16": terrain(1024, 1024, "int16"), "float32": terrain(1024, 1024, "float32")}
            pairs = 3
        else:
            int16, float32 = terrain(12288, 12288, "int16"), terrain(8192, 8192, "float32")
            small = {"int16": terrain(2048, 2048, "int16"), "float32": terrain(2048, 2048, "float32")}
            pairs = 5
        rows = _bench_save(int16, "int16", pairs, work)
        rows += _bench_save(float32, "float32", pairs, work)
        rows += _bench_levels(small, work)
        rows += _bench_window(int16, pairs, work)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
