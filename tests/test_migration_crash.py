"""Migrations killed with SIGKILL at seeded points, then run again: nothing lost, nothing twice.

A child process (forked from a zygote, ``python test_migration_crash.py --serve``, that
imported everything once) runs a migration of two Zarr rasters and two GeoParquet
vectors from the local hot tier to the warm tier on the moto S3 server, and SIGKILLs
itself at the ``point``-th call or return of a ``memories_geo`` function in any thread
(``sys.setprofile`` and ``threading.setprofile``: any line of the library can be the
last one, with no test hook in the library). The points are drawn from a seed out of
the calls a first, uninterrupted run makes. Two scenarios:

- ``move``: byte moves (the version keeps its id; the source is deleted);
- ``copy``: ``delete_after_migration=False``, through the save protocol (a new version
  on S3, the source version kept).

After each kill the parent runs the same job again (by its id) and checks that it
completes; that every key holds exactly the versions it must (no duplicate), on the
tiers it must, reading back identical to what was saved; that ``verify`` passes for
every version and the checkpoint taken before the migration still verifies; that
``recover()`` then finds nothing to remove for byte moves (only the staged leftovers
of an interrupted save for copies) and a second one nothing at all; and that each
tier holds exactly the versions the catalog references.

Always run: 5 points. ``-m slow``: 24 more.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

import memories_geo as mg

PACKAGE_DIR = os.path.dirname(os.path.abspath(mg.__file__)) + os.sep
KEYS = ("r/a", "r/b", "v/a", "v/b")
JOB_TIMEOUT = 180

#: (scenario, seed, number of points), always run.
ALWAYS = [("move", 1, 3), ("copy", 2, 2)]
#: The long form (``-m slow``).
LONG = [("move", 11, 8), ("move", 12, 8), ("copy", 13, 8)]


# -- data and configuration (shared by the zygote and the tests) ------------------------------


def data(key: str) -> Any:
    """What ``key`` holds: a pure function of the key."""
    rng = np.random.default_rng(sum(map(ord, key)))
    if key.startswith("r/"):
        return xr.Dataset(
            {"t": (("time", "lat", "lon"), rng.normal(size=(4, 20, 30)).astype("float32"))},
            coords={"time": pd.date_range("2024-01-01", periods=4), "lat": np.linspace(40, 50, 20),
                    "lon": np.linspace(0, 15, 30)},
        )
    import geopandas as gpd

    return gpd.GeoDataFrame({"v": rng.normal(size=30), "i": np.arange(30)},
                            geometry=gpd.points_from_xy(*rng.uniform(0, 5, (2, 30))), crs="EPSG:4326")


def config(job: Mapping[str, Any]) -> mg.StorageConfig:
    """hot on the local disk, warm on S3 under the job's own prefix."""
    return mg.StorageConfig.from_dict({
        "home": job["home"],
        "tiers": {"warm": {"url": f"{job['s3_url']}/{job['prefix']}/warm",
                           "storage_options": job["s3_options"]}},
    })


def migration_job(job: Mapping[str, Any]) -> Any:
    from memories_geo.lifecycle import MigrationJob

    return MigrationJob(source_tier="hot", destination_tier="warm", id=job["job_id"],
                        delete_after_migration=job["scenario"] == "move")


# -- the zygote and its children --------------------------------------------------------------


class Killer:
    """Counts calls and returns of ``memories_geo`` functions in every thread; SIGKILL at the point.

    Without a point (0), it records the counts at which a storage call returned: a
    function of the backends or the catalog taking arguments, called from outside them.
    The persistent state changes only inside such calls, so the instants right after
    them are the crash points that matter most.
    """

    def __init__(self, point: int, fd: int) -> None:
        self.point, self.fd, self.count = point, fd, 0
        self.boundaries: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event not in ("call", "return") or not frame.f_code.co_filename.startswith(PACKAGE_DIR):
            return
        with self.lock:
            self.count += 1
            if self.point == 0 and event == "return" and _storage_call(frame):
                self.boundaries.append(self.count)
            if self.count != self.point:
                return
            where = f"{frame.f_code.co_filename[len(PACKAGE_DIR):]}:{frame.f_code.co_name}:{event}"
            os.write(self.fd, (json.dumps({"kill": where}) + "\n").encode())
            os.fsync(self.fd)
            os.kill(os.getpid(), signal.SIGKILL)


def _storage_call(frame: Any) -> bool:
    inner = ("backends" + os.sep, "catalog" + os.sep)
    caller = frame.f_back
    return (
        frame.f_code.co_filename[len(PACKAGE_DIR):].startswith(inner)
        and frame.f_code.co_argcount > 1
        and caller is not None
        and not caller.f_code.co_filename[len(PACKAGE_DIR):].startswith(inner)
    )


def child(job: Mapping[str, Any]) -> int:
    """Run the job's migration in this (forked) process, killed at its point unless it is 0."""
    from memories_geo.lifecycle import execute_migration

    signal.alarm(JOB_TIMEOUT)
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    mem = mg.Memory(config(job))
    killer = Killer(int(job["point"]), fd)
    threading.setprofile(killer)
    sys.setprofile(killer)
    try:
        execute_migration(mem, migration_job(job), max_workers=1)
    except BaseException as exc:
        os.write(fd, (json.dumps({"error": repr(exc)}) + "\n").encode())
        return 3
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    os.write(fd, (json.dumps({"calls": killer.count, "boundaries": killer.boundaries}) + "\n").encode())
    return 0


def serve() -> None:
    """One job per stdin line, one forked child each, one answer per line on stdout."""
    import importlib

    for name in ("zarr", "s3fs", "pyarrow.parquet", "geopandas", "memories_geo.formats.zarr",
                 "memories_geo.formats.geoparquet", "memories_geo.backends.files", "memories_geo.lifecycle",
                 "dask.array"):
        importlib.import_module(name)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os._exit(child(job))
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
                          "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}), flush=True)


if __name__ == "__main__":
    serve()
    raise SystemExit(0)


# -- the tests ---------------------------------------------------------------------------------

import pytest  # noqa: E402
from geopandas.testing import assert_geodataframe_equal  # noqa: E402

from memories_geo.lifecycle import execute_migration, migration_status  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the crash children fork")


class Zygote:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "ready" in line, f"the crash zygote did not start: {line!r}"

    def run(self, job: Mapping[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, f"the crash zygote died (exit {self.proc.poll()})"
        return dict(json.loads(answer))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    yield z
    z.close()


def _setup(tmp: Path, s3: Any, scenario: str, point: int) -> tuple[dict[str, Any], mg.Memory, dict[str, Any]]:
    name = f"{scenario}-{point}-{uuid.uuid4().hex[:6]}"
    job = {"home": str(tmp / name / "home"), "s3_url": s3.url, "s3_options": s3.options,
           "prefix": name, "job_id": name, "scenario": scenario, "point": point,
           "log": str(tmp / name / "child.log")}
    mem = mg.Memory(config(job))
    saved = {key: mem.save(data(key), key, tier="hot") for key in KEYS}
    mem.checkpoints.save("before-migration")
    return job, mem, saved


def _log(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    path = Path(job["log"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


_CALLS: dict[str, dict[str, Any]] = {}


def _calls(zygote: Zygote, tmp: Path, s3: Any, scenario: str) -> dict[str, Any]:
    """Calls an uninterrupted migration of the scenario makes, and its storage-call returns
    (after checking that it ends right)."""
    if scenario not in _CALLS:
        job, mem, saved = _setup(tmp, s3, scenario, 0)
        answer = zygote.run(job)
        assert answer == {"signal": 0, "code": 0}, _log(job)
        _check(mem, job, saved, "no crash")
        _CALLS[scenario] = _log(job)[-1]
    return _CALLS[scenario]


def _check(mem: mg.Memory, job: Mapping[str, Any], saved: Mapping[str, Any], where: str) -> None:
    # Killed before the job reached the journal, it is run again as the user would: the same job.
    journaled = mem.catalog.migration_job(job["job_id"]) is not None
    status = execute_migration(mem, job["job_id"] if journaled else migration_job(job))
    assert status.state == "completed", where
    assert sorted(status.keys_done) == sorted(KEYS), where
    assert migration_status(mem, job["job_id"]).progress_percentage == 100.0
    move = job["scenario"] == "move"
    for key, entry in saved.items():
        versions = [(e.version, e.tier) for e in mem.versions(key)]
        assert versions == ([(1, "warm")] if move else [(1, "hot"), (2, "warm")]), f"{key} after {where}"
        assert mem.versions(key)[0].version_id == entry.version_id, where
        for version in {e.version for e in mem.versions(key)}:
            back = mem.open(key, version=version)
            if key.startswith("r/"):
                xr.testing.assert_identical(back.load(), data(key))
            else:
                assert_geodataframe_equal(back, data(key))
    mem.verify(all_versions=True)
    mem.checkpoints.verify("before-migration")
    removed = mem.recover()
    if move:
        assert removed == [], f"recover() removed {removed} after {where}"
    else:
        assert all("/@v/" in url for url in removed), removed
    assert mem.recover() == [], where
    assert mem.catalog.pending_moves() == []
    for tier in ("hot", "warm"):
        listed = sorted(dict.fromkeys(mem.tiers.backend(tier).version_paths()))
        known = sorted(e.path for e in mem.catalog.all_versions(include_retired=True) if e.tier == tier)
        assert listed == known, f"tier {tier} after {where}"


def _points(seed: int, n: int, counts: Mapping[str, Any]) -> list[int]:
    """``n`` crash points: half right after a storage call returned, half anywhere."""
    rng = random.Random(seed)
    after = rng.sample([b + 1 for b in counts["boundaries"] if b < counts["calls"]], n // 2)
    anywhere = rng.sample(sorted(set(range(1, counts["calls"])) - set(after)), n - len(after))
    return sorted(after + anywhere)


def _crash_and_resume(zygote: Zygote, tmp: Path, s3: Any, scenario: str, seed: int, n: int) -> None:
    counts = _calls(zygote, tmp, s3, scenario)
    total = counts["calls"]
    for point in _points(seed, n, counts):
        job, mem, saved = _setup(tmp, s3, scenario, point)
        start = time.monotonic()
        answer = zygote.run(job)
        log = _log(job)
        assert answer["signal"] == signal.SIGKILL or answer == {"signal": 0, "code": 0}, log
        where = f"{scenario} seed {seed}: point {point} of {total}: " + (
            log[-1]["kill"] if log and "kill" in log[-1] else "ran to the end")
        assert time.monotonic() - start < JOB_TIMEOUT, where
        _check(mem, job, saved, where)


@pytest.mark.parametrize(("scenario", "seed", "n"), ALWAYS, ids=[f"{s}-seed{d}" for s, d, _ in ALWAYS])
def test_a_killed_migration_resumes(zygote: Zygote, tmp_path: Path, s3_service: Any, scenario: str, seed: int,
                                    n: int) -> None:
    _crash_and_resume(zygote, tmp_path, s3_service, scenario, seed, n)


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "seed", "n"), LONG, ids=[f"{s}-seed{d}" for s, d, _ in LONG])
def test_a_killed_migration_resumes_long(zygote: Zygote, tmp_path: Path, s3_service: Any, scenario: str,
                                         seed: int, n: int) -> None:
    _crash_and_resume(zygote, tmp_path, s3_service, scenario, seed, n)
