"""Scale: a dask-backed raster larger than memory budgets is written chunk by chunk.

Each case runs in a subprocess whose peak resident memory (the process and any
children) is measured, so the bound covers everything the save touches. The test
writes 2 GiB (128 x 2048 x 2048 float32) to stay within a few minutes on two cores;
``python tests/test_scale.py 4096 sync`` runs the same script on 4 GiB (the numbers
are in docs/formats-zarr.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")
pytest.importorskip("dask")
pytest.importorskip("zarr")

PEAK_LIMIT = 1_500 * 1024**2
SIZE_MIB = 2048

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time
    import dask.array as da
    import numpy as np
    import xarray as xr
    import memories_geo as mg

    def peak_rss():
        # VmHWM is this process's own peak; getrusage's ru_maxrss also counts the peak of
        # the process that forked it (Linux keeps it across execve).
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    size_mib, how, home = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    fmt = sys.argv[4] if len(sys.argv) > 4 else "zarr"
    ny = nx = 2048
    nt = size_mib * 1024**2 // (ny * nx * 4)

    def block(block_info=None):
        (t0, t1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
        t = np.arange(t0, t1, dtype="float32")[:, None, None]
        y = np.arange(y0, y1, dtype="float32")[None, :, None]
        x = np.arange(x0, x1, dtype="float32")[None, None, :]
        return t * 0.5 + y * 0.01 + x * 0.0001

    data = da.map_blocks(
        block, chunks=((1,) * nt, (ny,), (nx,)), dtype="float32", meta=np.empty((0, 0, 0), "float32")
    )
    import rioxarray  # noqa: F401

    ds = xr.Dataset(
        {"v": (("time", "y", "x"), data)},
        coords={"time": np.arange(nt), "y": 1000.0 - np.arange(ny), "x": np.arange(nx) + 0.5},
    ).rio.write_crs("EPSG:32631")
    if fmt == "cog":
        # one large single image instead of a stack: (nt * 2048) rows x 2048 columns
        ny = nt * ny
        image = data.reshape((ny, nx)).rechunk((2048, 2048))
        ds = xr.DataArray(
            image, dims=("y", "x"), name="v",
            coords={"y": 1000.0 - np.arange(ny, dtype="float64"), "x": np.arange(nx) + 0.5},
        ).rio.write_crs("EPSG:32631")
    mem = mg.Memory(home)
    start = time.perf_counter()
    if how == "sync":
        entry = mem.save(ds, "scale/v", tier="hot")
    elif how == "delayed":
        delayed = mem.save(ds, "scale/v", tier="hot", compute=False)
        entry = delayed.compute()
    else:
        from distributed import Client, LocalCluster

        with LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster, Client(cluster) as client:
            entry = client.compute(mem.save(ds, "scale/v", tier="hot", compute=False)).result()
    elapsed = time.perf_counter() - start
    where = {None: {"array-location": [(nt - 1, nt), (7, 8), (9, 10)]}}
    if fmt == "cog":
        check = mem.open("scale/v")
        assert check.shape == (ny, nx), check.shape
        assert float(check[ny - 2048 + 7, 9]) == float(block(where)[0, 0, 0])
    else:
        check = mem.open("scale/v")["v"]
        assert check.shape == (nt, ny, nx), check.shape
        assert float(check[nt - 1, 7, 9]) == float(block(where)[0, 0, 0])
    print(json.dumps({
        "seconds": elapsed,
        "bytes": entry.size_bytes,
        "chunks": [list(c[:1]) for c in check.chunks],
        "self_maxrss": peak_rss(),
    }))
    """
)


def run_scale(size_mib: int, how: str, home: Path, fmt: str = "zarr") -> dict:
    """Run the scale script; return its report plus the polled peak RSS of its process tree."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(size_mib), how, str(home), fmt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    parent = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    out, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    report["tree_peak_rss"] = peak
    return report


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sync", "delayed", "distributed"])
def test_large_dask_raster_saves_with_bounded_memory(tmp_path: Path, how: str) -> None:
    report = run_scale(SIZE_MIB, how, tmp_path / "home")
    nbytes = SIZE_MIB * 1024**2
    assert report["self_maxrss"] < PEAK_LIMIT, report
    assert report["tree_peak_rss"] < PEAK_LIMIT, report
    assert report["bytes"] > 0
    assert report["chunks"] == [[1], [1024], [1024]]
    assert nbytes > PEAK_LIMIT, "the data must not fit under the bound, or streaming is not tested"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sync", "distributed"])
def test_large_dask_image_saves_as_cog_with_bounded_memory(tmp_path: Path, how: str) -> None:
    report = run_scale(SIZE_MIB, how, tmp_path / "home", fmt="cog")
    assert report["self_maxrss"] < PEAK_LIMIT, report
    assert report["tree_peak_rss"] < PEAK_LIMIT, report
    assert report["bytes"] > 0
    assert SIZE_MIB * 1024**2 > PEAK_LIMIT, "the data must not fit under the bound"


if __name__ == "__main__":
    size, mode = int(sys.argv[1]), sys.argv[2]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = run_scale(size, mode, Path(tmp) / "home")
    print(json.dumps({**result, "MiB": size, "how": mode}))
