"""Crash injection and concurrency with real processes: nothing committed is ever lost."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import xarray as xr
from geopandas.testing import assert_geodataframe_equal

import memories_geo as mg

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np, pandas as pd, xarray as xr, geopandas as gpd, rioxarray
    import memories_geo as mg

    def raster(seed):
        rng = np.random.default_rng(seed)
        return xr.Dataset(
            {"v": (("time", "y", "x"), rng.normal(size=(24, 500, 500)).astype("float32"))},
            coords={"time": pd.date_range("2024-01-01", periods=24), "y": np.arange(500.0),
                    "x": np.arange(500.0)},
            attrs={"seed": seed},
        ).rio.write_crs("EPSG:32631")

    def vector(seed):
        rng = np.random.default_rng(seed)
        n = 20000
        return gpd.GeoDataFrame({"seed": np.full(n, seed), "v": rng.normal(size=n)},
                                geometry=gpd.points_from_xy(*rng.uniform(0, 1, (2, n))), crs=4326)

    if __name__ == "__main__":
        home, action, stage, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
        mem = mg.Memory(home)
        if stage != "random":
            def kill(event, info):
                if event == stage:
                    os.kill(os.getpid(), signal.SIGKILL)
            mg.events.subscribe(kill)
        obj = raster(seed) if action == "raster" else vector(seed)
        print("ready", flush=True)
        if action == "checkpoint":
            for i in range(1000):
                mem.checkpoints.save(f"cp{i}")
        elif action == "concurrent":
            for i in range(6):
                mem.save(vector(seed * 100 + i), "shared", mode="w")
                mem.save(vector(seed * 100 + i), f"own-{seed}/{i}")
                if i % 2 == 0:
                    mem.checkpoints.save(f"cp-{seed}")
        else:
            mem.save(obj, "raster" if action == "raster" else "vector", mode="w")
        print("done", flush=True)
    """
)


@pytest.fixture(scope="module")
def child_script(tmp_path_factory):
    path = tmp_path_factory.mktemp("child") / "child.py"
    path.write_text(CHILD)
    return path


def _load_child(child_script):
    import importlib.util

    spec = importlib.util.spec_from_file_location("reliability_child", child_script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _spawn(child_script, home, action, stage, seed):
    return subprocess.Popen(
        [sys.executable, str(child_script), str(home), action, stage, str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _assert_everything_intact(mem, child):
    """Every committed version of every key opens identical to what was saved, and verifies."""
    mem.verify(all_versions=True)
    for key in mem.ls().key:
        for entry in mem.versions(key):
            got = mem.open(key, version=entry.version)
            if key == "raster":
                xr.testing.assert_identical(got, child.raster(int(got.attrs["seed"])))
            else:
                assert_geodataframe_equal(got, child.vector(int(got["seed"].iloc[0])))


def _assert_recovered(mem):
    mem.recover()
    assert mem.catalog.staged_versions() == []
    assert mem.recover() == [], "a second recover finds nothing left"
    for tier in mem.tiers.names:
        backend = mem.tiers.backend(tier)
        root = backend.full_path("")
        for dirpath, dirnames, _ in os.walk(root):
            if dirpath.endswith("/@v"):
                stored = {name.removesuffix(".record.json") for name in os.listdir(dirpath)}
                known = {os.path.basename(p) for t, p in mem.catalog.stored_paths() if t == tier}
                assert stored <= known, f"unreferenced versions left in {dirpath}: {stored - known}"
                dirnames.clear()


STAGES = ["save.staged", "save.written", "save.verified", "save.committed", "save.published"]


@pytest.mark.slow
def test_sigkill_at_every_stage_and_at_random_times_loses_nothing(tmp_path, child_script):
    child = _load_child(child_script)
    home = tmp_path / "home"
    mem = mg.Memory(home)
    mem.save(child.raster(0), "raster")
    mem.save(child.vector(0), "vector")
    rng = random.Random(42)
    plan = [(a, s) for a in ("raster", "vector") for s in STAGES]
    plan += [(rng.choice(["raster", "vector"]), "random") for _ in range(10)]
    plan += [("checkpoint", "random") for _ in range(3)]
    killed = 0
    for seed, (action, stage) in enumerate(plan, start=1):
        proc = _spawn(child_script, home, action, stage, seed)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        if stage == "random":
            time.sleep(rng.uniform(0.0, 0.6 if action != "checkpoint" else 0.3))
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
        killed += proc.returncode == -signal.SIGKILL
        reopened = mg.Memory(home)
        assert sorted(reopened.ls().key) == ["raster", "vector"]
        _assert_everything_intact(reopened, child)
        _assert_recovered(reopened)
    assert killed >= len(STAGES) * 2, "every staged kill point must actually have been reached"
    _assert_everything_intact(mg.Memory(home), child)


@pytest.mark.slow
def test_two_processes_saving_and_checkpointing_at_once(tmp_path, child_script):
    child = _load_child(child_script)
    home = tmp_path / "home"
    mg.Memory(home)
    procs = [_spawn(child_script, home, "concurrent", "none", seed) for seed in (1, 2)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert out.strip() == "done"
    mem = mg.Memory(home)
    shared = mem.versions("shared")
    assert [e.version for e in shared] == list(range(1, 13)), "no lost or duplicated commit"
    seeds = sorted(int(mem.open("shared", version=e.version)["seed"].iloc[0]) for e in shared)
    assert seeds == sorted([100 + i for i in range(6)] + [200 + i for i in range(6)])
    assert sorted(mem.ls("own-*").key) == sorted(f"own-{s}/{i}" for s in (1, 2) for i in range(6))
    for entry in mem.ls().itertuples():
        got = mem.open(entry.key)
        assert_geodataframe_equal(got, child.vector(int(got["seed"].iloc[0])))
    assert len(mem.checkpoints.list()) == 6
    for cp in mem.checkpoints.list():
        mem.checkpoints.verify(cp.id)
    _assert_recovered(mem)
