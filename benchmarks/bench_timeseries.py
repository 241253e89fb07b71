"""Time series: the Parquet format and the PostgreSQL path against what a user would write.

Data: 10-minute observations from 200 stations, 3 variables (``temperature``,
``humidity``, ``wind``), seeded. The full run uses the issue's full set for Parquet (5
years, 52.6M rows, partitioned by year and month) and a 1M-row subset for PostgreSQL
(``df.to_sql`` of the full set alone would take hours); the quick run uses 60 days
(1.7M rows) and 200k rows.

Rows (ratios are medians of interleaved pairs, ours / baseline):

- ``parquet save``: ``mem.save(df, partition_cols=["year", "month"])`` against
  ``df.assign(year=..., month=...).to_parquet(dir, partition_cols=["year", "month"])``
  (target <= 1.05);
- ``parquet station-month``: ``mem.open(time=month, filters=station)`` against
  ``pd.read_parquet`` of everything (target: >= 50x faster, ratio <= 0.02);
- ``parquet append one day``: ``mem.save(day, mode="a")`` against a full save of the series
  (target <= 0.02);
- ``postgresql save`` / ``open``: the ``timescaledb`` format (native partitioning on
  PostgreSQL 15 here: TimescaleDB is not in Debian) against ``df.to_sql`` (target >= 15x
  faster, ratio <= 0.067) and ``pd.read_sql`` (>= 5x, ratio <= 0.2);
- ``postgresql station-month``: ``mem.open(time=month, where=station)`` against
  ``pd.read_sql`` of the whole table (>= 20x, ratio <= 0.05);
- ``postgresql append one day`` to a 10M-row series (2M quick) against a full save of it
  (target <= 0.02; one day is 3% of the 1M-row set, so the series is longer here).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import compare

SEED = 20251130
STATIONS = 200
STEP = "10min"


def observations(days: float, *, start: str = "2020-01-01", stations: int = STATIONS) -> Any:
    """Seeded observations, time-major (all stations at t0, then t1, ...)."""
    import pandas as pd

    steps = int(days * 144)
    times = pd.date_range(start, periods=steps, freq=STEP)
    rng = np.random.default_rng([SEED, steps, stations])
    n = steps * stations
    return pd.DataFrame({
        "time": np.repeat(times.values, stations),
        "station": np.tile(np.array([f"st{i:03d}" for i in range(stations)], dtype=object), steps),
        "temperature": np.round(rng.normal(285, 8, n), 2),
        "humidity": np.round(rng.uniform(20, 100, n), 1),
        "wind": np.round(rng.gamma(2, 2, n), 2),
    })


def raw(df: Any) -> Any:
    """What a user adds to partition a frame by time with pandas: year and month columns."""
    return df.assign(year=df["time"].dt.year, month=df["time"].dt.month)


def _parquet(quick: bool) -> list[dict[str, Any]]:
    import pandas as pd

    import memories_geo as mg

    days = 60 if quick else 5 * 365 + 1
    pairs = 3
    parts = ["year", "month"]
    df = observations(days)
    last = df["time"].max()
    day = observations(1, start=str(last + pd.Timedelta(STEP)))
    month = (last - pd.Timedelta(days=40)).strftime("%Y-%m")
    root = Path(tempfile.mkdtemp(prefix="mg-bench-ts-"))
    rows: list[dict[str, Any]] = []
    try:
        mem = mg.Memory(root / "home")

        def ours_save(i: int) -> None:
            mem.save(df, f"obs/{i}", partition_cols=parts)

        def raw_save(i: int) -> None:
            raw(df).to_parquet(root / f"raw{i}", partition_cols=parts)

        def drop_saves() -> None:
            for entry in mem.ls()["key"]:
                if entry.startswith(("obs/-", "obs/0", "obs/1", "obs/2", "obs/full")):
                    mem.delete(entry)
            for path in root.glob("raw*"):
                shutil.rmtree(path, ignore_errors=True)

        result = compare(f"parquet save, {len(df):,} rows", ours_save, raw_save, pairs=pairs,
                         cleanup=drop_saves, target="ratio <= 1.05")
        rows.append(result.row())

        mem.save(df, "obs/read", partition_cols=parts)
        raw(df).to_parquet(root / "all", partition_cols=parts)

        def ours_month(i: int) -> None:
            got = mem.open("obs/read", time=month, filters=[("station", "=", "st042")])
            assert len(got)
            assert set(got["station"]) == {"st042"}

        def raw_all(i: int) -> None:
            pd.read_parquet(root / "all")

        result = compare(f"parquet one station-month vs read all, {len(df):,} rows", ours_month, raw_all,
                         pairs=pairs, target="ratio <= 0.02 (>= 50x faster)")
        rows.append(result.row())

        for i in range(-1, pairs):
            mem.save(df, f"obs/append{i}", partition_cols=parts)

        def ours_append(i: int) -> None:
            mem.save(day, f"obs/append{i}", mode="a")

        def full_save(i: int) -> None:
            mem.save(df, f"obs/full{i}", partition_cols=parts)

        result = compare(f"parquet append one day ({len(day):,} rows) vs full save", ours_append, full_save,
                         pairs=pairs, cleanup=drop_saves, target="ratio <= 0.02")
        rows.append(result.row())
        back = mem.open("obs/append0")
        assert len(back) == len(df) + len(day)
        return rows
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _postgres(quick: bool) -> list[dict[str, Any]]:
    import pandas as pd

    import memories_geo as mg
    from memories_geo.testing.services import ServiceUnavailable, start_postgres

    try:
        service = start_postgres()
    except ServiceUnavailable as exc:
        return [{"benchmark": "postgresql time series", "skipped": str(exc)}]
    n_days = 1_000_000 / (144 * STATIONS)
    df = observations(n_days if not quick else n_days / 5)
    month = (df["time"].min() + pd.Timedelta(days=10)).strftime("%Y-%m")
    pairs = 3
    root = Path(tempfile.mkdtemp(prefix="mg-bench-tspg-"))
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    rows: list[dict[str, Any]] = []
    try:
        from sqlalchemy import create_engine

        engine = create_engine(service.url.replace("postgresql://", "postgresql+psycopg://"))
        mem = mg.Memory(mg.StorageConfig.from_dict({
            "home": str(root / "home"),
            "tiers": {"warm": {"url": service.url, "storage_options": {"schema": schema}}},
        }))
        with engine.begin() as con:
            con.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}_raw"')
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")

            def ours_save(i: int) -> None:
                mem.save(df, f"obs/{i}", tier="warm")

            def raw_save(i: int) -> None:
                df.to_sql(f"obs_{i + 1}", engine, schema=f"{schema}_raw", index=False)

            result = compare(f"postgresql save (timescaledb format) vs to_sql, {len(df):,} rows", ours_save,
                             raw_save, pairs=pairs, target="ratio <= 0.067 (>= 15x faster)")
            rows.append(result.row())

            mem.save(df, "obs/read", tier="warm")
            table = f'"{schema}_raw"."obs_0"'

            def ours_open(i: int) -> None:
                mem.open("obs/read")

            def raw_open(i: int) -> None:
                pd.read_sql(f"SELECT * FROM {table}", engine)  # noqa: S608

            result = compare(f"postgresql open vs read_sql, {len(df):,} rows", ours_open, raw_open,
                             pairs=pairs, target="ratio <= 0.2 (>= 5x faster)")
            rows.append(result.row())

            def ours_month(i: int) -> None:
                got = mem.open("obs/read", time=month, where={"station": "st042"})
                assert len(got)
                assert set(got["station"]) == {"st042"}

            result = compare(f"postgresql one station-month vs read_sql all, {len(df):,} rows", ours_month,
                             raw_open, pairs=pairs, target="ratio <= 0.05 (>= 20x faster)")
            rows.append(result.row())

            series = observations(n_days * (10 if not quick else 2))
            next_day = observations(1, start=str(series["time"].max() + pd.Timedelta(STEP)))
            for i in range(-1, pairs):
                mem.save(series, f"obs/append{i}", tier="warm")

            def ours_append(i: int) -> None:
                mem.save(next_day, f"obs/append{i}", mode="a")

            def full_save(i: int) -> None:
                mem.save(series, f"obs/full{i}", tier="warm")

            def drop_full() -> None:
                for key in mem.ls()["key"]:
                    if key.startswith("obs/full"):
                        mem.delete(key)

            result = compare(f"postgresql append one day ({len(next_day):,} rows) to {len(series):,} rows "
                             "vs a full save", ours_append, full_save, pairs=pairs, cleanup=drop_full,
                             target="ratio <= 0.02")
            rows.append(result.row())
        engine.dispose()
        mem.tiers.backend("warm").close()
        return rows
    finally:
        service.stop()
        shutil.rmtree(root, ignore_errors=True)


def run(quick: bool) -> list[dict[str, Any]]:
    """All time-series rows: Parquet first, then the PostgreSQL path."""
    return [*_parquet(quick), *_postgres(quick)]
