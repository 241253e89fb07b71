"""What an applied optimizer recommendation gains: the re-chunk of a Zarr cube, replayed.

A cube is saved with a layout that fits its access pattern badly, the pattern is run
through ``Memory.open`` (so the operation log records it), and the optimizer's
``chunk-size-adjustment`` recommendation is applied (a new version). The recorded
queries are then replayed against the previous version (baseline) and the new one
(ours), in interleaved pairs whose order alternates (A B, B A), the data computed.

Two patterns:

- windows: 1 x 1 degree boxes on single days of a cube whose chunks span the whole
  time axis (quick: one chunk; full: four 730 x 256 x 256 chunks);
- pixel series: the whole time axis of a 2 x 2 pixel box, on a cube stored one time
  step per chunk.

``time_ratio`` < 1 means the new layout is faster; ``speedup`` is its inverse. The
optimizer's own A B B A figure (``apply_optimization``'s ``speedup``) is shown beside.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from benchmarks.harness import compare


def _cube(steps: int, side: int) -> xr.Dataset:
    rng = np.random.default_rng(42)
    data = np.round(rng.normal(size=(steps, side, side)), 2).astype("float32")
    return xr.Dataset(
        {"t2m": (("time", "y", "x"), data)},
        coords={"time": pd.date_range("2020-01-01", periods=steps, freq="D"),
                "y": np.linspace(60, 40, side), "x": np.linspace(0, 20, side)},
    )


def _windows(mem: Any, key: str, steps: int, n: int) -> None:
    rng = np.random.default_rng(1)
    days = pd.date_range("2020-01-01", periods=steps, freq="D")
    for _ in range(n):
        x0, y0 = rng.uniform(0, 18), rng.uniform(40, 58)
        day = days[rng.integers(0, steps)].strftime("%Y-%m-%d")
        mem.open(key, bbox=(x0, y0, x0 + 1, y0 + 1), time=(day, day)).load()


def _series(mem: Any, key: str, side: int, n: int) -> None:
    rng = np.random.default_rng(2)
    pixel = 20 / (side - 1)
    for _ in range(n):
        x0, y0 = rng.uniform(1, 18), rng.uniform(41, 58)
        mem.open(key, bbox=(x0, y0, x0 + 1.5 * pixel, y0 + 1.5 * pixel)).load()


def _case(mem: Any, name: str, key: str, chunks: tuple[int, int, int], steps: int, side: int,
          pattern: Any, pairs: int) -> dict[str, Any]:
    from memories_geo.monitor.optimizer import PerformanceOptimizer
    from memories_geo.monitor.optimizer.apply import replay

    mem.save(_cube(steps, side), key, crs="EPSG:4326", encoding={"t2m": {"chunks": chunks}})
    pattern(mem, key)
    optimizer = PerformanceOptimizer(mem)
    access = optimizer.analyze_access_patterns("1 hour", detail_level="high").keys[key]
    rec = next(r for r in optimizer.get_recommendations() if r.id == f"chunk-size-adjustment:{key}")
    start = time.perf_counter()
    result = optimizer.apply_optimization(rec.id, rounds=1)
    applied = time.perf_counter() - start
    queries = list(access.queries)
    comparison = compare(
        f"{name}: replay {len(queries)} opens",
        lambda _: replay(mem, key, result.new_version, queries),
        lambda _: replay(mem, key, result.previous_version, queries),
        pairs=pairs, target="< 1 (faster)",
    )
    low, high = min(comparison.ratios), max(comparison.ratios)
    return {
        **comparison.row(),
        "speedup": round(1 / comparison.median_ratio, 1),
        "speedup_range": f"{1 / high:.1f}-{1 / low:.1f}",
        "cube": f"{steps}x{side}x{side} f4",
        "stored_chunks": chunks,
        "new_chunks": rec.parameters["new_chunk_size"],
        "estimated_gain": round(rec.expected_improvement.factor or 0, 1),
        "optimizer_speedup": round(result.speedup or 0, 1),
        "apply_s": round(applied, 1),
    }


def run(quick: bool) -> list[dict[str, Any]]:
    import memories_geo as mg

    steps, side = (365, 200) if quick else (730, 512)
    opens = 8
    pairs = 5 if quick else 7
    whole = (steps, side, side) if quick else (steps, side // 2, side // 2)
    root = Path(tempfile.mkdtemp(prefix="mg-bench-optimizer-"))
    try:
        mem = mg.Memory(root / "store")
        return [
            _case(mem, "zarr re-chunk, small windows", "windows", whole, steps, side,
                  lambda m, k: _windows(m, k, steps, opens), pairs),
            _case(mem, "zarr re-chunk, pixel series", "series", (1, side, side), steps, side,
                  lambda m, k: _series(m, k, side, opens), pairs),
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
