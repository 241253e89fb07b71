"""Child process of the crash-injection tests (``tests/test_crash.py``).

``python crash_worker.py --serve`` starts a zygote: it imports the heavy libraries once,
then reads one job (a JSON object) per line on stdin, forks a child for it, waits, and
answers one JSON line per job on stdout: ``{"id", "signal", "code", "seconds"}``.

A child opens the job's collection and runs a sequence of operations planned from the
job's seed (saves, appends, deletes of keys and of versions, checkpoint saves, restores
and deletes, ``recover()``); SIGALRM ends it after the job's ``timeout`` seconds should
it hang. Around each operation it appends a JSON line to the job's
acknowledgement log and fsyncs it: ``{"begin": op}`` before, ``{"ack": op, ...}`` once
the call returned. It kills itself with SIGKILL at the job's crash point:

- ``mode="event"``: at the ``point``-th library event (:mod:`memories_geo.events`);
- ``mode="call"``: at the ``point``-th call or return of a Python function of the
  ``memories_geo`` package in the main thread (``sys.setprofile``), so any line of the
  library can be the last one, with no test hook in the library;
- ``mode="none"``: no crash; the log ends with ``{"total": {"event": E, "call": C}}``
  and the job's ``sites`` file names the call site of every counted call, the count at
  which each operation began and the counts of the returns of storage calls, which the
  crash points are drawn from.

Before dying, a child logs ``{"kill": {"mode", "point", "at"}}``: the event, or the
call site (``path:function:call`` or ``path:function:return@line``).

The test imports this module too: the data (a pure function of the seed and of part
numbers, each row or time step naming its part), the planner and the model of the
expected state are shared, so the parent rebuilds what every acknowledged operation
must have left.
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

import memories_geo as mg

#: A version's content: the parts it holds, in order (a save is one part, an append adds one).
Recipe = tuple[int, ...]

PACKAGE_DIR = os.path.dirname(os.path.abspath(mg.__file__)) + os.sep

#: key -> (kind, tier), per kind of tier under test.
KEYS: dict[str, dict[str, tuple[str, str]]] = {
    "file": {"v/a": ("vector", "hot"), "v/b": ("vector", "warm"),
             "r/a": ("raster", "hot"), "r/b": ("raster", "warm")},
    "s3": {"v/a": ("vector", "warm"), "v/b": ("vector", "warm"),
           "r/a": ("raster", "warm"), "v/c": ("vector", "hot")},
    "postgis": {"v/a": ("vector", "warm"), "v/b": ("vector", "warm"),
                "v/c": ("vector", "warm"), "r/a": ("raster", "hot")},
}

#: What the zygote imports before forking, so a child starts at once.
PRELOAD = (
    "zarr", "pyarrow.parquet", "fsspec.implementations.local", "s3fs", "psycopg", "psycopg_pool",
    "memories_geo.formats.zarr", "memories_geo.formats.geoparquet", "memories_geo.formats.postgis",
    "memories_geo.backends.files", "memories_geo.backends.postgres", "memories_geo.checkpoints",
    "memories_geo.catalog", "rioxarray", "dask.array",
)


# -- data ---------------------------------------------------------------------------------


def vector_part(seed: int, part: int, n: int = 4) -> gpd.GeoDataFrame:
    """Rows of one part: a pure function of ``(seed, part)``."""
    rng = np.random.default_rng([seed, part])
    return gpd.GeoDataFrame(
        {"part": np.full(n, part, dtype="int64"), "v": rng.normal(size=n)},
        geometry=gpd.points_from_xy(*rng.uniform(0, 5, (2, n))), crs="EPSG:4326",
    )


def raster_part(seed: int, part: int) -> xr.Dataset:
    """Two time steps of one part: a pure function of ``(seed, part)``."""
    rng = np.random.default_rng([seed, part])
    times = pd.date_range("2000-01-01", periods=2) + pd.Timedelta(days=2 * part)
    return xr.Dataset(
        {"v": (("time", "lat", "lon"), rng.normal(size=(2, 3, 4))),
         "part": ("time", np.full(2, part, dtype="int64"))},
        coords={"time": times, "lat": np.arange(3.0), "lon": np.arange(4.0)},
    )


def build(kind: str, seed: int, recipe: Recipe) -> Any:
    """The object a version with ``recipe`` holds."""
    if kind == "vector":
        frames = [vector_part(seed, p) for p in recipe]
        return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs="EPSG:4326")
    return xr.concat([raster_part(seed, p) for p in recipe], dim="time")


def recipe_of(obj: Any) -> Recipe:
    """The parts an opened object holds, in order of first appearance."""
    parts = np.asarray(obj["part"].values)
    return tuple(int(p) for p in dict.fromkeys(parts.tolist()))


# -- configuration -----------------------------------------------------------------------


def config_for(job: Mapping[str, Any]) -> dict[str, Any]:
    """The collection's configuration (``StorageConfig.from_dict`` shape) of a job."""
    config: dict[str, Any] = {"home": job["home"]}
    if job["backend"] == "s3":
        config["default_tier"] = "warm"
        config["tiers"] = {"warm": {"url": f"{job['s3_url']}/{job['prefix']}/warm",
                                    "storage_options": job["s3_options"]}}
    elif job["backend"] == "postgis":
        config["tiers"] = {"warm": {"url": job["dsn"], "storage_options": {"schema": job["schema"]}}}
    return config


# -- the model of the expected state ----------------------------------------------------------


@dataclass
class Model:
    """What the collection must hold: keys (current and listed versions) and checkpoints."""

    current: dict[str, Recipe] = field(default_factory=dict)
    versions: dict[str, set[Recipe]] = field(default_factory=dict)
    checkpoints: list[tuple[str, dict[str, Recipe]]] = field(default_factory=list)

    def canonical(self) -> tuple[Any, ...]:
        """A comparable form."""
        keys = tuple(sorted((k, self.current[k], tuple(sorted(self.versions[k]))) for k in self.current))
        cps = tuple(sorted((name, tuple(sorted(state.items()))) for name, state in self.checkpoints))
        return keys, cps

    def describe(self) -> str:
        """A short text for failure messages."""
        keys = {k: {"current": list(self.current[k]), "versions": sorted(map(list, self.versions[k]))}
                for k in sorted(self.current)}
        cps = sorted([name, {k: list(r) for k, r in sorted(s.items())}] for name, s in self.checkpoints)
        return json.dumps({"keys": keys, "checkpoints": cps}, sort_keys=True)


def outcomes(model: Model, op: Mapping[str, Any]) -> list[Model]:
    """States an operation may leave, the completed one last (without the unchanged one).

    A restore that changes something first saves a safety checkpoint, then moves the
    pointers: an interrupted restore may leave the safety checkpoint alone.
    """
    after = copy.deepcopy(model)
    kind, key = op["op"], str(op.get("key"))
    if kind in ("save_new", "save", "append"):
        recipe = tuple(op["recipe"])
        after.current[key] = recipe
        after.versions.setdefault(key, set()).add(recipe)
    elif kind == "delete_key":
        del after.current[key], after.versions[key]
    elif kind == "delete_version":
        after.versions[key].discard(tuple(op["recipe"]))
    elif kind == "cp_save":
        after.checkpoints.append((op["name"], dict(model.current)))
    elif kind == "cp_delete":
        names = [name for name, _ in after.checkpoints]
        del after.checkpoints[len(names) - 1 - names[::-1].index(op["name"])]
    elif kind == "cp_restore":
        pins = next(state for name, state in reversed(model.checkpoints) if name == op["name"])
        if pins == model.current:
            return [after]
        after.checkpoints.append((f"before-restore-{op['name']}", dict(model.current)))
        middle = copy.deepcopy(after)
        for k in list(after.current):
            if k not in pins:
                del after.current[k], after.versions[k]
        for k, recipe in pins.items():
            after.current[k] = recipe
            after.versions.setdefault(k, set()).add(recipe)
        return [middle, after]
    elif kind != "recover":
        raise ValueError(f"unknown operation {kind!r}")
    return [after]


def plan(model: Model, rng: random.Random, index: int, keys: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """The next operation: a valid one for ``model``, drawn from ``rng``."""
    absent = [k for k in keys if k not in model.current]
    present = sorted(model.current)
    several = [k for k in present if len(model.versions[k]) > 1]
    own = sorted({name for name, _ in model.checkpoints if name.startswith("cp")})
    choices: list[tuple[str, float]] = []
    if absent:
        choices.append(("save_new", 3.0 if len(present) < 2 else 1.5))
    if present:
        choices += [("save", 2.0), ("append", 2.0), ("delete_key", 1.0)]
    if several:
        choices.append(("delete_version", 1.5))
    choices += [("cp_save", 1.5), ("recover", 0.6)]
    if own:
        choices += [("cp_restore", 1.5), ("cp_delete", 1.0)]
    kind = rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]
    if index < 2 and absent:
        kind = "save_new"
    part = index + 1
    op: dict[str, Any] = {"i": index, "op": kind}
    if kind == "save_new":
        op["key"] = rng.choice(absent)
    elif kind in ("save", "append", "delete_key"):
        op["key"] = rng.choice(present)
    elif kind == "delete_version":
        op["key"] = rng.choice(several)
        others = sorted(model.versions[op["key"]] - {model.current[op["key"]]})
        op["recipe"] = list(rng.choice(others))
    elif kind == "cp_save":
        op["name"] = f"cp{index}"
    elif kind in ("cp_restore", "cp_delete"):
        op["name"] = rng.choice(own)
    if kind in ("save_new", "save", "append"):
        op["kind"], op["tier"] = keys[op["key"]]
        previous = model.current[op["key"]] if kind == "append" else ()
        op["part"], op["recipe"] = part, [*previous, part]
    return op


# -- the child ------------------------------------------------------------------------------


class Killer:
    """Counts library events and library calls; SIGKILLs this process at the crash point.

    Before dying it logs where: the event's name, or the call site
    (``file:function:call`` or ``file:function:return@line``). Without a crash point it
    records the site of every call, for the parent to draw crash points from.
    """

    def __init__(self, mode: str, point: int, fd: int) -> None:
        self.mode, self.point, self.fd = mode, point, fd
        self.counts = {"event": 0, "call": 0}
        self.sites: dict[str, int] = {}
        self.calls: list[int] = []
        self.boundaries: list[int] = []

    def die(self, where: str) -> None:
        _log(self.fd, {"kill": {"mode": self.mode, "point": self.point, "at": where}})
        os.kill(os.getpid(), signal.SIGKILL)

    def on_event(self, name: str, info: Mapping[str, Any]) -> None:
        self.counts["event"] += 1
        if self.mode == "event" and self.counts["event"] == self.point:
            self.die(f"{name} {info.get('key', '')}".strip())

    def on_call(self, frame: Any, event: str, arg: Any) -> None:
        if event in ("call", "return") and frame.f_code.co_filename.startswith(PACKAGE_DIR):
            self.counts["call"] += 1
            if self.mode == "none":
                self.calls.append(self.sites.setdefault(site(frame, event), len(self.sites)))
                if event == "return" and _boundary(frame):
                    self.boundaries.append(self.counts["call"])
            elif self.counts["call"] == self.point:
                self.die(site(frame, event))


def _boundary(frame: Any) -> bool:
    """Whether ``frame`` runs a storage call: a function of the backends or the catalog taking
    arguments (not a property), called from outside them. The persistent state changes
    only inside such calls, so the instants right after their returns are the crash points
    that matter most."""
    inner = ("backends" + os.sep, "catalog" + os.sep)
    caller = frame.f_back
    return (
        frame.f_code.co_filename[len(PACKAGE_DIR):].startswith(inner)
        and frame.f_code.co_argcount > 1
        and caller is not None
        and not (caller.f_code.co_filename.startswith(PACKAGE_DIR)
                 and caller.f_code.co_filename[len(PACKAGE_DIR):].startswith(inner))
    )


def site(frame: Any, event: str) -> str:
    """Where a call or return happens: ``path:function:call`` or ``path:function:return@line``."""
    path = frame.f_code.co_filename[len(PACKAGE_DIR):]
    return f"{path}:{frame.f_code.co_name}:" + ("call" if event == "call" else f"return@{frame.f_lineno}")


def _log(fd: int, record: Mapping[str, Any]) -> None:
    os.write(fd, (json.dumps(record) + "\n").encode())
    os.fsync(fd)


def execute(mem: mg.Memory, op: Mapping[str, Any], seed: int, numbers: dict[Any, int]) -> dict[str, Any]:
    """Run one planned operation; return what its acknowledgement records."""
    kind, key = op["op"], str(op.get("key"))
    if kind in ("save_new", "save", "append"):
        obj = build(op["kind"], seed, (op["part"],))
        mode: Any = {"save_new": "w-", "save": "w", "append": "a"}[kind]
        extra: dict[str, Any] = {"append_dim": "time"} if kind == "append" and op["kind"] == "raster" else {}
        entry = mem.save(obj, key, tier=op["tier"], mode=mode, **extra)
        numbers[key, tuple(op["recipe"])] = entry.version
        return {"version": entry.version}
    if kind == "delete_key":
        return {"deleted": len(mem.delete(key))}
    if kind == "delete_version":
        version = numbers[key, tuple(op["recipe"])]
        mem.delete(key, version=version)
        return {"version": version}
    if kind == "cp_save":
        return {"id": mem.checkpoints.save(op["name"]).id}
    if kind == "cp_restore":
        return {"id": mem.checkpoints.restore(op["name"]).id}
    if kind == "cp_delete":
        return {"id": mem.checkpoints.delete(op["name"]).id}
    return {"removed": mem.recover()}


def run(job: Mapping[str, Any]) -> None:
    """Run a job's operations in this process (it ends by SIGKILL unless ``mode="none"``)."""
    fd = os.open(job["acks"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    killer = Killer(job["mode"], int(job["point"]), fd)
    mem = mg.Memory(mg.StorageConfig.from_dict(config_for(job)))
    keys = KEYS[job["backend"]]
    rng = random.Random(job["seed"])
    model = Model()
    numbers: dict[Any, int] = {}
    mg.events.subscribe(killer.on_event)
    if job["mode"] in ("call", "none"):
        sys.setprofile(killer.on_call)
    starts = []
    for index in range(int(job["n_ops"])):
        op = plan(model, rng, index, keys)
        starts.append([op["op"], killer.counts["call"]])
        _log(fd, {"begin": op})
        result = execute(mem, op, job["seed"], numbers)
        _log(fd, {"ack": op, **result})
        model = outcomes(model, op)[-1]
    sys.setprofile(None)
    if job["mode"] == "none":
        with open(job["sites"], "w") as out:
            json.dump({"sites": list(killer.sites), "calls": killer.calls, "ops": starts,
                       "boundaries": killer.boundaries}, out)
    _log(fd, {"total": killer.counts})
    os.close(fd)


def _child(job: Mapping[str, Any]) -> int:
    signal.alarm(int(job.get("timeout", 240)))
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        run(job)
    except BaseException:
        traceback.print_exc()
        return 3
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


def serve() -> None:
    """The zygote loop: one job per stdin line, one forked child per job, one answer per line."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os._exit(_child(job))
        _, status = os.waitpid(pid, 0)
        answer = {
            "id": job["id"],
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "seconds": round(time.monotonic() - start, 3),
        }
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        run(json.loads(sys.argv[1]))
