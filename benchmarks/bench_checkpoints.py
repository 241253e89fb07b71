"""Checkpoint and restore of a large unchanged collection (issue target: < 2 s for 1,000 keys / 5 GB).

The naive alternative a user would write is a copy of the whole store; it is timed in
the same run (interleaved) to give a ratio next to the absolute times.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import memories_geo as mg
from benchmarks.harness import compare


def _collection(home: Path, keys: int, mib_per_key: float) -> mg.Memory:
    from tqdm.auto import tqdm

    mem = mg.Memory(home)
    side = int((mib_per_key * 1024 * 1024 / 4) ** 0.5)
    rng = np.random.default_rng(0)
    for i in tqdm(range(keys), desc="building collection", unit="key"):
        data = rng.standard_normal((side, side), dtype="float32")
        ds = xr.Dataset({"v": (("y", "x"), data)},
                        coords={"y": np.arange(side, dtype="float64"), "x": np.arange(side, dtype="float64")})
        ds = ds.rio.write_crs("EPSG:3857")
        mem.save(ds, f"tiles/{i:04d}", format="zarr", tier="hot")
    return mem


def run(quick: bool = False) -> list[dict[str, Any]]:
    import rioxarray  # noqa: F401  (registers .rio)

    keys, mib = (100, 1.0) if quick else (1000, 5.0)
    with tempfile.TemporaryDirectory(prefix="mg-bench-cp-") as tmp:
        home = Path(tmp) / "home"
        mem = _collection(home, keys, mib)
        total_gb = sum(e.size_bytes for e in mem.catalog.current_entries()) / 1024**3
        mem.checkpoints.save("base")
        copies = Path(tmp) / "copies"

        def checkpoint(i: int) -> None:
            mem.checkpoints.save(f"bench-{i}")

        def copy_store(i: int) -> None:
            shutil.copytree(home / "hot", copies / str(i))

        def cleanup() -> None:
            shutil.rmtree(copies, ignore_errors=True)

        cp = compare("checkpoint (unchanged) vs copytree of the store", checkpoint, copy_store,
                     pairs=3, cleanup=cleanup, target="< 2 s absolute")

        restore_times, full_times = [], []
        for _ in range(5):
            start = time.perf_counter()
            mem.checkpoints.restore("base", validate=True)
            restore_times.append(time.perf_counter() - start)
        for _ in range(2):
            start = time.perf_counter()
            mem.checkpoints.restore("base", validate="full")
            full_times.append(time.perf_counter() - start)
    rows = [cp.row()]
    rows[0].update({"keys": keys, "collection_gb": round(total_gb, 2),
                    "checkpoint_s(median)": round(statistics.median(cp.ours), 3)})
    rows.append({
        "benchmark": "restore (unchanged, validate=True: stat check, re-hash if changed)",
        "pairs": len(restore_times), "ours_s(median)": round(statistics.median(restore_times), 3),
        "target": "< 2 s absolute", "keys": keys, "collection_gb": round(total_gb, 2),
    })
    rows.append({
        "benchmark": "restore (validate='full': re-hash every file)",
        "pairs": len(full_times), "ours_s(median)": round(statistics.median(full_times), 3),
        "target": "informational", "keys": keys, "collection_gb": round(total_gb, 2),
    })
    return rows
