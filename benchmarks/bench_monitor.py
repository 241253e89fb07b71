"""What recording operations costs: saves and small reads with the operation log on and off.

Two collections with the same tiers and data; in one the operation log is closed, so its
meter has no sink and measures nothing (the state of a collection before monitoring
existed). Each sample is a batch of small operations (a save of a small raster as a new
version; an open of a 32 x 32 window of a cube, loaded), timed in interleaved pairs.
Target (issue 13): the overhead on a save or a small read stays under 2% (time ratio
<= 1.02). The last row times the recording alone (20,000 measured operations, records
written to the catalog in batches) as a share of each operation, a figure the noise of
the interleaved pairs does not blur.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from benchmarks.harness import compare


def _cube(t: int, n: int) -> xr.Dataset:
    rng = np.random.default_rng(42)
    return xr.Dataset(
        {"t2m": (("time", "y", "x"), rng.normal(size=(t, n, n)).astype("float32"))},
        coords={"time": pd.date_range("2024-01-01", periods=t, freq="D"),
                "y": np.linspace(50, 40, n), "x": np.linspace(0, 10, n)},
    )


def run(quick: bool) -> list[dict[str, Any]]:
    import memories_geo as mg

    pairs = 5 if quick else 15
    batch = 10 if quick else 30
    root = Path(tempfile.mkdtemp(prefix="mg-bench-monitor-"))
    try:
        recorded = mg.Memory(root / "recorded")
        plain = mg.Memory(root / "plain")
        plain.operation_log.close()
        small = _cube(2, 64)
        cube = _cube(24, 512)
        for mem in (recorded, plain):
            mem.save(small, "small", crs="EPSG:4326")
            mem.save(cube, "cube", crs="EPSG:4326", encoding={"t2m": {"chunks": (1, 128, 128)}})

        def saves(mem: mg.Memory) -> None:
            for _ in range(batch):
                mem.save(small, "small", mode="w", crs="EPSG:4326")

        def reads(mem: mg.Memory) -> None:
            for i in range(batch):
                x = (i % 8) * 1.2
                mem.open("cube", bbox=(x, 44, x + 0.6, 44.6), time=("2024-01-04", "2024-01-04")).load()

        rows = []
        results = {}
        for name, work in (("save small raster", saves), ("open+load 32x32 window", reads)):
            result = results[name] = compare(
                f"recording overhead: {name} (x{batch})",
                lambda _, w=work: w(recorded), lambda _, w=work: w(plain),
                pairs=pairs, target="<= 1.02",
            )
            rows.append(result.row())
        recorded.operation_log.flush()
        rows.append({"benchmark": "records written", "count": len(recorded.catalog.operations())})
        rows.append(_direct_cost(recorded, results, batch))
        return rows
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _direct_cost(mem: Any, results: dict[str, Any], batch: int) -> dict[str, Any]:
    """What recording itself costs per operation (measure, record, batched catalog writes).

    The end-to-end ratios include the machine's noise (their range); this is the
    recording's own time, as a share of each operation's median time in the same run.
    """
    import statistics
    import time

    n = 20_000
    meter = mem.version_store.meter
    start = time.perf_counter()
    for _ in range(n):
        with meter.measure("save", key="k", tier="hot", format="zarr") as measured:
            measured.bytes = 1
    mem.operation_log.flush()
    each = (time.perf_counter() - start) / n
    shares = {name: each / (statistics.median(result.ours) / batch) for name, result in results.items()}
    return {"benchmark": "recording per operation (us)", "count": round(each * 1e6, 1),
            **{f"share of {name}": f"{share:.3%}" for name, share in shares.items()}}
