"""PostGIS: ``mem.save`` / ``mem.open`` on a PostgreSQL tier against geopandas' own calls.

1. save of N points with a few attribute columns (catalog stage and commit, binary ``COPY``,
   checksum, GiST index, primary key, ANALYZE and the view swap included) against
   ``gdf.to_postgis`` (SQLAlchemy + psycopg, GeoAlchemy2's GiST index included);
2. open against ``gpd.read_postgis``; peak memory is measured in fresh subprocesses (one
   per reader and repetition, imports and connections already made): the resident set
   size is sampled every 2 ms by a thread (psutil) during the read, and the peak minus
   the size just before the read is reported (median of 3 runs each).

The server is ``$MEMORIES_GEO_TEST_DSN``, else a throwaway cluster from
:func:`memories_geo.testing.services.start_postgres`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

import geopandas as gpd
import numpy as np

from benchmarks.harness import compare

ROWS_FULL = 1_000_000
ROWS_QUICK = 50_000


def make_points(n: int, seed: int = 0) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    return gpd.GeoDataFrame(
        {
            "count": rng.integers(0, 1000, n),
            "value": rng.random(n),
            "label": np.array([f"station-{i % 5000}" for i in range(n)], dtype=object),
            "flag": rng.random(n) > 0.5,
        },
        geometry=gpd.points_from_xy(rng.uniform(-10, 30, n), rng.uniform(35, 60, n)),
        crs="EPSG:4326",
    )


def _engine(dsn: str) -> Any:
    from sqlalchemy import create_engine

    return create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import geopandas as gpd
    import memories_geo as mg
    from sqlalchemy import create_engine, text
    which, dsn, home, schema, key, table = sys.argv[1:]
    if which == "ours":
        mem = mg.Memory(mg.StorageConfig.from_dict(
            {"home": home, "tiers": {"warm": {"url": dsn, "storage_options": {"schema": schema}}}}))
        mem.tiers.backend("warm").version_paths()
        import adbc_driver_postgresql.dbapi  # noqa: F401
        read = lambda: mem.open(key)
    else:
        engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as con:
            con.execute(text("SELECT 1"))
        read = lambda: gpd.read_postgis(f'SELECT * FROM "{schema}"."{table}"', engine, geom_col="geometry")
    import gc, threading, psutil
    gc.collect()
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    done = threading.Event()
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            done.wait(0.002)
    sampler = threading.Thread(target=sample)
    sampler.start()
    gdf = read()
    done.set()
    sampler.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    print(json.dumps({"rows": len(gdf), "peak_increase_kib": (peak[0] - before) // 1024}))
    """
)


def _peak_increase(which: str, dsn: str, home: str, schema: str, key: str, table: str) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, which, dsn, home, schema, key, table],
        capture_output=True, text=True, check=True,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return int(data["peak_increase_kib"]), int(data["rows"])


def run(quick: bool) -> list[dict]:
    import memories_geo as mg
    from memories_geo.testing.services import start_postgres

    n = ROWS_QUICK if quick else ROWS_FULL
    pairs = 3 if quick else 5
    service = start_postgres()
    dsn = service.url
    schema = "bench_postgis"
    try:
        home = tempfile.mkdtemp(prefix="mg-bench-postgis-")
        mem = mg.Memory(mg.StorageConfig.from_dict(
            {"home": home, "tiers": {"warm": {"url": dsn, "storage_options": {"schema": schema}}}}
        ))
        engine = _engine(dsn)
        gdf = make_points(n)
        rows = []

        def cleanup() -> None:
            from sqlalchemy import text

            for entry in list(mem.ls()["key"]) if len(mem.ls()) else []:
                if str(entry).startswith("bench/w"):
                    mem.delete(entry)
            with engine.begin() as con:
                for i in range(-1, pairs + 1):
                    con.execute(text(f'DROP TABLE IF EXISTS "{schema}"."base_w{i}"'))

        mem.tiers.backend("warm").ensure_ready()
        save = compare(
            f"PostGIS save {n:,} points + 4 columns / gdf.to_postgis",
            lambda i: mem.save(gdf, f"bench/w{i}", tier="warm"),
            lambda i: gdf.to_postgis(f"base_w{i}", engine, schema=schema, if_exists="replace"),
            pairs=pairs,
            cleanup=cleanup,
            target="ratio <= 0.2 (>= 5x faster, index build included)",
        )
        save.extra["speedup"] = round(1 / save.median_ratio, 2)
        rows.append(save.row())

        mem.save(gdf, "bench/read", tier="warm")
        gdf.to_postgis("base_read", engine, schema=schema, if_exists="replace")
        query = 'SELECT * FROM "bench_postgis"."base_read"'
        read = compare(
            f"PostGIS open {n:,} points / gpd.read_postgis",
            lambda i: mem.open("bench/read"),
            lambda i: gpd.read_postgis(query, engine, geom_col="geometry"),
            pairs=pairs,
            target="ratio <= 0.2 (>= 5x faster); peak memory ratio <= 0.6",
        )
        ours_peak, base_peak = [], []
        for _ in range(3):
            peak, count = _peak_increase("ours", dsn, home, schema, "bench/read", "base_read")
            assert count == n
            ours_peak.append(peak)
            peak, count = _peak_increase("baseline", dsn, home, schema, "bench/read", "base_read")
            assert count == n
            base_peak.append(peak)
        read.extra.update(
            speedup=round(1 / read.median_ratio, 2),
            peak_rss_increase_MiB_ours=round(statistics.median(ours_peak) / 1024, 1),
            peak_rss_increase_MiB_baseline=round(statistics.median(base_peak) / 1024, 1),
            peak_memory_ratio=round(statistics.median(ours_peak) / statistics.median(base_peak), 3),
        )
        rows.append(read.row())
        engine.dispose()
        mem.tiers.backend("warm").close()
        return rows
    finally:
        service.stop()
