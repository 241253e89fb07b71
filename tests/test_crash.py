"""Crash injection: SIGKILL at seeded points of real operations, then the same checks every time.

A child process (``crash_worker.py``, forked from a zygote that imported everything once)
runs a sequence of saves, appends, deletes of keys and of versions, checkpoint saves,
restores and deletes and ``recover()`` planned from a seed, and kills itself at the
``point``-th library event or the ``point``-th call/return of a ``memories_geo`` function.
Each test id names the tier kind and the seed; the seed also draws the crash points, out
of the counts of a first run of the same sequence without a crash (which must itself end
in exactly the state its acknowledgements describe).

After every crash the parent opens the collection and checks:

1. durable: the keys, each key's versions and current version, and the checkpoints are
   exactly what the acknowledged operations left, or what the interrupted one would
   have left (a restore may also stop after its safety checkpoint);
2. not torn: every version opens equal to the data it was saved from, and
   ``verify(all_versions=True)`` and every checkpoint's verification pass, before and
   after ``recover()``;
3. ``recover()`` changes nothing a user can see, a second one removes nothing, and
   afterwards the tiers hold nothing the catalog does not reference (file listing; on
   PostgreSQL, the tables, views and small objects in the schema);
4. PostGIS: the view of every key returns the rows of its current version, and there is
   no view of a key the catalog does not have.

The always-run subset has a few points per tier kind; ``-m slow`` runs the long form,
more than 100 points in all.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import crash_worker as cw
import pytest
import xarray as xr
from geopandas.testing import assert_geodataframe_equal

import memories_geo as mg
from memories_geo.backends.base import Capability

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the crash workers fork")

WORKER = Path(__file__).with_name("crash_worker.py")
N_OPS = 12
ZYGOTES = 2
CHILD_TIMEOUT = 240
JOB_TIMEOUT = CHILD_TIMEOUT + 60

#: (tier kind, seed, crash points) run on every test run. The seeds were picked for
#: sequences that hold every kind of operation, or nearly.
ALWAYS = [("file", 19, 6), ("s3", 86, 6), ("postgis", 30, 6)]
#: The long form (``-m slow``): 4 seeds x 9 points per tier kind, 108 points.
LONG = [(backend, seed, 9) for backend, seeds in (("file", (98, 86, 54, 30)), ("s3", (19, 5, 99, 96)),
                                                  ("postgis", (19, 5, 82, 75))) for seed in seeds]


# -- the zygotes -----------------------------------------------------------------------------


class Zygotes:
    """Worker processes that fork one child per job; jobs run two at a time."""

    def __init__(self, n: int) -> None:
        self.procs = [
            subprocess.Popen([sys.executable, str(WORKER), "--serve"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=str(WORKER.parent))
            for _ in range(n)
        ]
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "ready" in line, f"crash worker did not start: {line!r}"

    def run(self, jobs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Yield ``(job, answer)`` as jobs finish; the next job starts before the caller checks."""
        pending = list(jobs)
        busy: dict[subprocess.Popen[str], dict[str, Any]] = {}
        selector = selectors.DefaultSelector()
        for proc in self.procs:
            selector.register(proc.stdout, selectors.EVENT_READ, proc)  # type: ignore[arg-type]

        def start(proc: subprocess.Popen[str]) -> None:
            job = pending.pop(0)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            busy[proc] = job

        try:
            for proc in self.procs:
                if pending:
                    start(proc)
            while busy:
                ready = selector.select(timeout=JOB_TIMEOUT)
                if not ready:
                    running = [j["id"] for j in busy.values()]
                    raise TimeoutError(f"crash jobs {running} ran over {JOB_TIMEOUT} s")
                for key, _ in ready:
                    proc = key.data
                    line = proc.stdout.readline()
                    if not line:
                        raise RuntimeError(f"a crash worker died (exit {proc.poll()})")
                    job = busy.pop(proc)
                    if pending:
                        start(proc)
                    yield job, json.loads(line)
        finally:
            selector.close()

    def close(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=CHILD_TIMEOUT + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def zygotes() -> Iterator[Zygotes]:
    pool = Zygotes(ZYGOTES)
    yield pool
    pool.close()


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """What a job needs to reach its tier kind; PostgreSQL schemas are dropped afterwards."""
    backend = request.param
    made: list[str] = []
    if backend == "s3":
        service = request.getfixturevalue("s3_service")
        yield {"backend": backend, "s3_url": service.url, "s3_options": service.options}
    elif backend == "postgis":
        dsn = request.getfixturevalue("postgres_dsn")
        yield {"backend": backend, "dsn": dsn, "schemas": made}
        import psycopg
        from psycopg import sql

        with psycopg.connect(dsn, autocommit=True) as con:
            for schema in made:
                con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    else:
        yield {"backend": backend}


def _job(
    target: dict[str, Any], tmp_path: Path, seed: int, name: str, mode: str, point: int
) -> dict[str, Any]:
    folder = tmp_path / name
    folder.mkdir()
    job = {k: v for k, v in target.items() if k != "schemas"}
    job.update(id=name, seed=seed, n_ops=N_OPS, mode=mode, point=point, timeout=CHILD_TIMEOUT,
               home=str(folder / "home"), acks=str(folder / "acks.jsonl"), log=str(folder / "log.txt"),
               sites=str(folder / "sites.json"), prefix=f"crash-{uuid.uuid4().hex[:10]}",
               schema=f"crash_{uuid.uuid4().hex[:12]}")
    if "schemas" in target:
        target["schemas"].append(job["schema"])
    return job


# -- reading back ------------------------------------------------------------------------------


class Log:
    """A child's acknowledgement log: the acknowledged operations (with their results), the
    interrupted one, where the child was killed, and the totals of a run without a crash."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.acked: list[dict[str, Any]] = []
        self.interrupted: dict[str, Any] | None = None
        self.killed_at = ""
        self.total: dict[str, int] | None = None
        for line in Path(job["acks"]).read_text().splitlines():
            record = json.loads(line)
            if "begin" in record:
                self.interrupted = record["begin"]
            elif "ack" in record:
                self.acked.append(record)
                self.interrupted = None
            elif "kill" in record:
                self.killed_at = record["kill"]["at"]
            else:
                self.total = record["total"]

    def where(self) -> str:
        op = self.interrupted
        during = "between ops" if op is None else f"during op {op['i']} {op['op']} {op.get('key', '')}"
        during = during.rstrip()
        return f"{during}, {len(self.acked)} acked, killed at {self.killed_at or '?'}"


def _same(kind: str, got: Any, expected: Any) -> str | None:
    try:
        if kind == "vector":
            assert_geodataframe_equal(got, expected)
        else:
            loaded = got.load()
            xr.testing.assert_equal(loaded[["v", "part"]].reset_coords(drop=True), expected)
    except AssertionError as exc:
        return " ".join(str(exc).split())[:300]
    return None


def read_state(
    mem: mg.Memory, job: dict[str, Any], problems: list[str], recipes: dict[str, cw.Recipe]
) -> cw.Model:
    """The collection as a :class:`crash_worker.Model`.

    Each version not in ``recipes`` (version id -> recipe, filled in) is opened and
    compared with the data its parts were made from; the others are left to ``verify``.
    """
    kinds = {k: kind for k, (kind, _) in cw.KEYS[job["backend"]].items()}

    def recipe(entry: Any) -> cw.Recipe:
        if entry.version_id not in recipes:
            try:
                obj = mem.version_store.open(entry)
                found = cw.recipe_of(obj)
                wrong = _same(kinds[entry.key], obj, cw.build(kinds[entry.key], job["seed"], found))
            except Exception as exc:
                found, wrong = (-1,), f"cannot be opened: {type(exc).__name__}: {exc}"
            if wrong:
                problems.append(f"torn: {entry.key} v{entry.version} ({entry.tier}): {wrong}")
            recipes[entry.version_id] = found
        return recipes[entry.version_id]

    model = cw.Model()
    for key in mem.ls().key:
        current = mem.info(key)
        model.current[key] = recipe(current)
        model.versions[key] = {recipe(entry) for entry in mem.versions(key)}
    for cp in mem.checkpoints.list():
        pins = mem.checkpoints.pins(cp.id)
        entries = mem.catalog.entries_by_version_id(list(pins.values()))
        state = {}
        for key, vid in pins.items():
            if vid in entries:
                state[key] = recipe(entries[vid])
            else:
                problems.append(f"checkpoint {cp.name} ({cp.id}) pins {key} {vid}, unknown to the catalog")
        model.checkpoints.append((cp.name, state))
    return model


def _verify(mem: mg.Memory, when: str, problems: list[str]) -> None:
    try:
        mem.verify(all_versions=True)
    except mg.MemoriesError as exc:
        problems.append(f"verify {when}: {exc}")
    for cp in mem.checkpoints.list():
        try:
            mem.checkpoints.verify(cp.id)
        except mg.MemoriesError as exc:
            problems.append(f"checkpoint verify {when}: {exc}")


def _file_orphans(mem: mg.Memory, tier: str, checkpoint_ids: set[str]) -> list[str]:
    """Files under a file tier's root that the catalog does not reference."""
    backend: Any = mem.tiers.backend(tier)
    known = {path for t, path in mem.catalog.stored_paths() if t == tier}
    root = backend.full_path("").rstrip("/")
    try:
        files = backend.fs.find(root)
    except FileNotFoundError:
        return []
    orphans = []
    for name in files:
        rel = name[len(root):].lstrip("/") if name.startswith(root) else name
        if rel.startswith("@checkpoints/"):
            stem = rel.removeprefix("@checkpoints/").removesuffix(".json")
            if stem not in checkpoint_ids:
                orphans.append(f"{tier}:{rel} (a checkpoint manifest the catalog does not have)")
            continue
        if rel.startswith("@journal/") and rel.endswith(".json"):
            continue
        head, sep, tail = rel.partition("/@v/")
        version = f"{head}/@v/{tail.split('/')[0].removesuffix('.record.json')}"
        if not sep or version not in known:
            orphans.append(f"{tier}:{rel}")
    return orphans


def _postgres_problems(mem: mg.Memory, job: dict[str, Any], checkpoint_ids: set[str]) -> list[str]:
    """Orphan tables and objects in the schema, and views that do not show the catalog's current version."""
    import psycopg
    from psycopg import sql

    from memories_geo.formats.postgis import view_name_for

    schema = job["schema"]
    problems = []
    known = {path for t, path in mem.catalog.stored_paths() if t == "warm"}
    current = {e.key: e for e in mem.catalog.current_entries() if e.tier == "warm"}

    def ident(name: str) -> sql.Identifier:
        return sql.Identifier(schema, name)

    with psycopg.connect(job["dsn"], autocommit=True) as con:
        relations: dict[str, str] = dict(con.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition",
            (schema,)).fetchall())
        if not relations:
            return [] if not current else [f"schema {schema} is empty but the catalog has {sorted(current)}"]
        registry: dict[str, str] = dict(con.execute(sql.SQL("SELECT path, table_name FROM {}").format(
            ident("memories_geo_tables"))).fetchall())
        objects = [p for (p,) in con.execute(sql.SQL("SELECT path FROM {}").format(
            ident("memories_geo_objects"))).fetchall()]
        views = {}
        if "memories_geo_views" in relations:
            query = sql.SQL("SELECT key, view_name, path FROM {}").format(ident("memories_geo_views"))
            views = {k: (v, p) for k, v, p in con.execute(query).fetchall()}
        bookkeeping = {"memories_geo_tables", "memories_geo_objects", "memories_geo_views"}
        for path in sorted(set(registry) - known):
            problems.append(f"orphan version table {registry[path]} ({path}): registered, not in the catalog")
        for name, kind in sorted(relations.items()):
            if kind in "rp" and name not in bookkeeping and name not in registry.values():
                problems.append(f"orphan table {schema}.{name}, not registered")
        for path in objects:
            stem = path.removesuffix(".record.json")
            if path.startswith("@checkpoints/"):
                if path.removeprefix("@checkpoints/").removesuffix(".json") not in checkpoint_ids:
                    problems.append(f"orphan checkpoint manifest object {path}")
            elif stem == path or stem not in known:
                problems.append(f"orphan object {path}")
        shown = {name for name, kind in relations.items() if kind == "v"}
        expected = {view_name_for(key) for key in current}
        for name in sorted(shown - expected):
            problems.append(f"view {schema}.{name} exists but the catalog has no such current key")
        for key, entry in sorted(current.items()):
            view = view_name_for(key)
            if view not in shown:
                problems.append(f"no view for current key {key} v{entry.version}")
                continue
            if views.get(key, (view, entry.path))[1] != entry.path:
                problems.append(f"the views table says {key} shows {views[key][1]}, the catalog {entry.path}")
            rows = sorted(con.execute(sql.SQL("SELECT part, v FROM {}").format(ident(view))).fetchall())
            table = registry.get(entry.path)
            stored = sorted(con.execute(sql.SQL("SELECT part, v FROM {}").format(ident(table))).fetchall()) \
                if table else None
            opened = mem.open(key)
            from_open = sorted(zip(opened["part"].tolist(), opened["v"].tolist(), strict=True))
            if rows != from_open or rows != stored:
                parts = sorted({p for p, _ in rows})
                problems.append(f"view of {key} shows parts {parts}, current version v{entry.version} holds "
                                f"{sorted({p for p, _ in from_open})}")
    return problems


def check(job: dict[str, Any], answer: dict[str, Any], log: Log) -> list[str]:
    """Every check after one job; return the problems found."""
    problems: list[str] = []
    if answer["code"]:
        text = Path(job["log"]).read_text() if Path(job["log"]).exists() else ""
        problems.append(f"the child failed (exit {answer['code']}): {text[-1500:]}")
    if answer["signal"] not in (0, 9):
        problems.append(f"the child died of signal {answer['signal']} (14: it hung for {job['timeout']} s)")
    elif job["mode"] != "none" and answer["signal"] != 9:
        problems.append(f"the crash point was not reached (exit {answer['code']})")
    for record in log.acked:
        if record["ack"]["op"] == "recover" and record["removed"]:
            problems.append(f"op {record['ack']['i']}: recover() after no crash removed {record['removed']}")
    expected = cw.Model()
    for record in log.acked:
        expected = cw.outcomes(expected, record["ack"])[-1]
    allowed = [expected, *(cw.outcomes(expected, log.interrupted) if log.interrupted else [])]
    mem = mg.Memory(mg.StorageConfig.from_dict(cw.config_for(job)))
    recipes: dict[str, cw.Recipe] = {}
    try:
        before = read_state(mem, job, problems, recipes)
        if before.canonical() not in [m.canonical() for m in allowed]:
            problems.append(
                "the state is none of the allowed ones:\n"
                f"    found    {before.describe()}\n"
                + "".join(f"    allowed  {m.describe()}\n" for m in allowed))
        _verify(mem, "after the crash", problems)
        try:
            mem.recover()
            if mem.catalog.staged_versions():
                problems.append(f"staged versions left after recover(): {mem.catalog.staged_versions()}")
            again = mem.recover()
            if again:
                problems.append(f"a second recover() removed {again}")
        except Exception as exc:
            problems.append(f"recover() failed: {type(exc).__name__}: {exc}")
        after = read_state(mem, job, problems, recipes)
        # recover() may only finish the interrupted operation (a checkpoint deletion whose
        # intent was journaled), never change anything else.
        finished = after.canonical() in [m.canonical() for m in allowed[1:]]
        if after.canonical() != before.canonical() and not finished:
            problems.append(f"recover() changed the state:\n    before {before.describe()}\n"
                            f"    after  {after.describe()}")
        _verify(mem, "after recover()", problems)
        checkpoint_ids = {cp.id for cp in mem.checkpoints.list()}
        listed = {cp.id for cp in mg.RecoveryManager(mem).list_checkpoints()}
        if listed != checkpoint_ids:
            problems.append(f"RecoveryManager.list_checkpoints() lists {sorted(listed - checkpoint_ids)} "
                            f"beyond the catalog's checkpoints, misses {sorted(checkpoint_ids - listed)}")
        for tier in mem.tiers.names:
            backend = mem.tiers.backend(tier)
            if Capability.FILES in backend.capabilities:
                problems += [f"orphan after recover(): {o}" for o in _file_orphans(mem, tier, checkpoint_ids)]
        if job["backend"] == "postgis":
            problems += _postgres_problems(mem, job, checkpoint_ids)
    finally:
        for tier in mem.tiers.names:
            close = getattr(mem.tiers.backend(tier), "close", None)
            if close is not None:
                close()
    return problems


# -- the tests ----------------------------------------------------------------------------------


def crash_points(
    calibration: dict[str, Any], total: dict[str, int], n: int, rng: random.Random
) -> list[tuple[str, int]]:
    """``n`` crash points ``(mode, point)`` from the run without a crash, in three kinds by turn.

    - at a library event, drawn uniformly;
    - at a call or return of a library function: first a kind of operation (save, append,
      delete, checkpoint save...), then one of the distinct call sites met during the
      operations of that kind (module bodies run by lazy imports left out), then one of
      that site's occurrences, so a cheap operation or a rare site is as likely as a busy one;
    - right after a storage call returns (a backend or catalog method, called from outside
      them, see ``crash_worker._boundary``): a kind of operation, then one of those returns
      in operations of that kind. Persistent state changes only inside storage calls, so
      this walks the states a crash can leave, step by step of each protocol.
    """
    recorded = json.loads(Path(calibration["sites"]).read_text())
    names, calls, ops = recorded["sites"], recorded["calls"], recorded["ops"]
    bounds = [start for _, start in ops[1:]] + [len(calls)]
    by_kind: dict[str, dict[int, list[int]]] = {}
    returns: dict[str, list[int]] = {}
    boundaries = recorded["boundaries"]
    for (kind, start), end in zip(ops, bounds, strict=True):
        sites = by_kind.setdefault(kind, {})
        for index in range(start, end):
            if ":<module>:" not in names[calls[index]]:
                sites.setdefault(calls[index], []).append(index + 1)
        returns.setdefault(kind, []).extend(b for b in boundaries if start < b <= end)
    points = []
    for i in range(n):
        if i % 3 == 0:
            points.append(("event", rng.randint(1, total["event"])))
        elif i % 3 == 1:
            sites = by_kind[rng.choice(sorted(k for k, v in by_kind.items() if v))]
            points.append(("call", rng.choice(sites[rng.choice(sorted(sites))])))
        else:
            kind = rng.choice(sorted(k for k, v in returns.items() if v))
            points.append(("call", rng.choice(returns[kind])))
    return points


def _site(calibration: dict[str, Any], point: int) -> str:
    recorded = json.loads(Path(calibration["sites"]).read_text())
    return str(recorded["sites"][recorded["calls"][point - 1]])


def _run_points(zygotes: Zygotes, target: dict[str, Any], tmp_path: Path, seed: int, n: int) -> None:
    backend = target["backend"]
    failures: list[str] = []
    calibration = _job(target, tmp_path, seed, "calibration", "none", 0)
    ((_, answer),) = zygotes.run([calibration])
    log = Log(calibration)
    failures += [f"{backend} seed {seed}, no crash: {p}" for p in check(calibration, answer, log)]
    assert log.total is not None, f"the run without a crash did not finish: {failures}"
    points = crash_points(calibration, log.total, n, random.Random(f"{backend}-{seed}"))
    jobs = [_job(target, tmp_path, seed, f"p{i}-{mode}-{point}", mode, point)
            for i, (mode, point) in enumerate(points)]
    killed = 0
    for job, answer in zygotes.run(jobs):
        started = time.monotonic()
        log = Log(job)
        problems = check(job, answer, log)
        killed += answer["signal"] == 9
        drift = ""
        if job["mode"] == "call" and log.killed_at != _site(calibration, job["point"]):
            drift = f" (the run without a crash was at {_site(calibration, job['point'])} there)"
        print(f"{job['id']}: {log.where()}{drift}; child {answer['seconds']:.1f} s, "
              f"checks {time.monotonic() - started:.1f} s, {len(problems)} problem(s)")
        failures += [f"{backend} seed {seed} {job['mode']} point {job['point']} ({log.where()}): {p}"
                     for p in problems]
    print(f"{backend} seed {seed}: {killed} of {n} crash points reached, {len(failures)} problem(s)")
    assert not failures, f"{len(failures)} problem(s):\n" + "\n".join(failures)


def _cases(cases: list[tuple[str, int, int]]) -> list[Any]:
    return [pytest.param(backend, seed, points, id=f"{backend}-seed{seed}",
                         marks=[pytest.mark.postgres] if backend == "postgis" else [])
            for backend, seed, points in cases]


@pytest.mark.parametrize(("target", "seed", "points"), _cases(ALWAYS), indirect=["target"])
def test_crash_points(
    zygotes: Zygotes, target: dict[str, Any], tmp_path: Path, seed: int, points: int
) -> None:
    _run_points(zygotes, target, tmp_path, seed, points)


@pytest.mark.slow
@pytest.mark.parametrize(("target", "seed", "points"), _cases(LONG), indirect=["target"])
def test_crash_points_long(
    zygotes: Zygotes, target: dict[str, Any], tmp_path: Path, seed: int, points: int
) -> None:
    _run_points(zygotes, target, tmp_path, seed, points)
