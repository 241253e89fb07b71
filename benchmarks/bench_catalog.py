"""A shared PostgreSQL catalog under concurrent writers: 8 processes x 25 saves (issue 14).

Eight worker processes (started once, imports done) each open their own ``Memory`` on the
same catalog and a shared local tier, then save 25 small GeoDataFrames, every other one
to a key all of them write (``shared``, ``mode="w"``) and the rest to a key of their own.
The catalog is created by the parent before the workers start (eight processes creating
a new SQLite catalog at once can fail with "database is locked" on its switch to WAL).
Each run checks that the catalog holds exactly the 200 commits the workers reported,
with version numbers 1..N per key (``lost`` counts the missing ones), and reports the
commit throughput of the save phase (first save started to last save finished).

The same run, on a SQLite catalog in the same home layout, is the baseline; the two are
interleaved in pairs (:func:`benchmarks.harness.compare`), so the ratio is of one run.
The server is ``$MEMORIES_GEO_TEST_DSN``, else a throwaway cluster from
:func:`memories_geo.testing.services.start_postgres`.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections import Counter
from typing import Any

from benchmarks.harness import compare

WRITERS, SAVES = 8, 25


Done = list[tuple[str, int, str]]


def _writer(config: dict[str, Any], worker: int, saves: int) -> tuple[float, float, Done]:
    import geopandas as gpd
    from shapely.geometry import Point

    import memories_geo as mg

    memory = mg.Memory(mg.StorageConfig.from_dict(config))
    done = []
    start = time.time()
    for j in range(saves):
        key = "shared" if j % 2 == 0 else f"own/{worker}"
        frame = gpd.GeoDataFrame({"worker": [worker], "j": [j]}, geometry=[Point(worker, j)], crs="EPSG:4326")
        entry = memory.save(frame, key, mode="w")
        done.append((entry.key, entry.version, entry.version_id))
    return start, time.time(), done


def _lost(config: dict[str, Any], done: Done) -> int:
    """Commits reported by the workers that the catalog does not hold as reported, plus gaps."""
    import memories_geo as mg

    memory = mg.Memory(mg.StorageConfig.from_dict(config))
    stored = {e.version_id: (e.key, e.version) for e in memory.catalog.all_versions()}
    lost = sum(stored.get(vid) != (key, version) for key, version, vid in done)
    for key, n in Counter(key for key, _, _ in done).items():
        numbers = [e.version for e in memory.versions(key)]
        lost += len(set(range(1, n + 1)) - set(numbers))
    return lost


def _drop_schemas(dsn: str, schemas: list[str]) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as con:
        for schema in schemas:
            con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def run(quick: bool = False) -> list[dict[str, Any]]:
    import memories_geo as mg
    from memories_geo.testing.services import start_postgres

    pairs = 2 if quick else 5
    service = start_postgres()
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["memories_geo", "geopandas", "psycopg", "psycopg_pool", __name__])
    homes: list[str] = []
    schemas: list[str] = []
    figures: dict[str, list[float]] = {"postgresql": [], "sqlite": []}
    lost: dict[str, int] = {"postgresql": 0, "sqlite": 0}
    commits: dict[str, int] = {"postgresql": 0, "sqlite": 0}
    try:
        with ctx.Pool(WRITERS) as pool:

            def one(which: str) -> None:
                home = tempfile.mkdtemp(prefix=f"mg-bench-catalog-{which}-")
                homes.append(home)
                config: dict[str, Any] = {"home": home}
                if which == "postgresql":
                    schemas.append(f"bench_{uuid.uuid4().hex[:10]}")
                    config["catalog"] = f"{service.url}?schema={schemas[-1]}"
                mg.Memory(mg.StorageConfig.from_dict(config))
                results = pool.starmap(_writer, [(config, w, SAVES) for w in range(WRITERS)])
                done = [item for _, _, items in results for item in items]
                phase = max(end for _, end, _ in results) - min(start for start, _, _ in results)
                figures[which].append(len(done) / phase)
                lost[which] += _lost(config, done) + WRITERS * SAVES - len(done)
                commits[which] += len(done)

            result = compare(
                f"catalog: {WRITERS} processes x {SAVES} saves, PostgreSQL / SQLite catalog",
                lambda i: one("postgresql"),
                lambda i: one("sqlite"),
                pairs=pairs,
                target="200 commits per run, 0 lost",
            )
    finally:
        _drop_schemas(service.url, schemas)
        service.stop()
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)
    runs = pairs + 1
    result.extra.update({
        "commits_per_run": WRITERS * SAVES,
        "postgresql_commits": commits["postgresql"],
        "postgresql_lost": lost["postgresql"],
        "sqlite_commits": commits["sqlite"],
        "sqlite_lost": lost["sqlite"],
        "postgresql_commits_per_s(median)": round(statistics.median(figures["postgresql"]), 1),
        "sqlite_commits_per_s(median)": round(statistics.median(figures["sqlite"]), 1),
        "runs_each": runs,
        "cpus": os.cpu_count(),
    })
    return [result.row()]
