"""The ``timescaledb`` format: time series in PostgreSQL, with and without the TimescaleDB extension.

The native fallback (range partitions, ``date_bin``) runs against the real PostgreSQL 15
server of ``postgres_dsn``; the TimescaleDB path (hypertables, compression,
``time_bucket``) against ``timescaledb_dsn`` (PGlite + TimescaleDB over the wire
protocol), skipped where that service is not available.
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from geopandas.testing import assert_geodataframe_equal
from pandas.testing import assert_frame_equal

import memories_geo as mg
from memories_geo.backends.base import Location
from memories_geo.errors import ChecksumMismatchError, OptionError, UnsupportedObjectError
from memories_geo.formats.base import WriteOptions
from memories_geo.formats.registry import get_format
from memories_geo.formats.timescaledb import TimescaleDBFallbackWarning, TimescaleDBFormat
from memories_geo.formats.timescaledb.options import parse_interval
from memories_geo.formats.timescaledb.query import resample_statement, select_statement, selected_entries
from memories_geo.query import open_request

psycopg = pytest.importorskip("psycopg")
from psycopg import sql  # noqa: E402

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.filterwarnings("ignore::memories_geo.formats.timescaledb.TimescaleDBFallbackWarning"),
]

KEY = "stations/obs"
STATIONS = ["alpha", "bravo", "charlie"]


# -- data ----------------------------------------------------------------------------------


def observations(days: int = 6, freq: str = "3h", tz: str | None = "Europe/Paris", start: str = "2024-01-01",
                 stations: list[str] = STATIONS, seed: int = 0) -> pd.DataFrame:
    """Regular observations of a few stations: time, station, numbers, a flag, a label."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=int(pd.Timedelta(days=days) / pd.Timedelta(freq)), freq=freq, tz=tz)
    frame = pd.DataFrame({
        "time": np.repeat(times, len(stations)),
        "station": np.tile(stations, len(times)),
    })
    n = len(frame)
    frame["temp"] = rng.normal(10, 5, n).round(3)
    frame.loc[rng.choice(n, n // 20, replace=False), "temp"] = np.nan
    frame["count"] = rng.integers(0, 100, n)
    frame["ok"] = rng.random(n) > 0.3
    frame["label"] = rng.choice(["a", "b", "c"], n)
    return frame


def with_points(frame: pd.DataFrame) -> gpd.GeoDataFrame:
    """The frame with one point per station."""
    where = {s: (2.0 + i, 48.0 + i / 2) for i, s in enumerate(STATIONS)}
    x, y = zip(*(where[s] for s in frame["station"]), strict=True)
    points = gpd.points_from_xy(x, y)
    return gpd.GeoDataFrame(frame, geometry=points, crs="EPSG:4326")


def pandas_resample(frame: pd.DataFrame, rule: str, agg: str, values: list[str],
                    group: str | None = "station") -> pd.DataFrame:
    """pandas' own answer: per station, buckets of ``rule`` (empty buckets dropped)."""
    indexed = frame.set_index("time") if "time" in frame.columns else frame
    if group is None:
        out = indexed[values].resample(rule).agg(agg)
        counts = indexed[values[0]].resample(rule).size()
        return out[counts.to_numpy() > 0]
    out = indexed.groupby(group)[values].resample(rule).agg(agg)
    counts = indexed.groupby(group)[values[0]].resample(rule).size()
    return out[counts.to_numpy() > 0].reset_index()


# -- fixtures ------------------------------------------------------------------------------


def _drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def schema(postgres_dsn: str):
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    _drop_schema(postgres_dsn, name)


def _memory(tmp_path: Path, dsn: str, schema: str, **options: Any) -> mg.Memory:
    config = mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "tiers": {"warm": {"url": dsn, "storage_options": {"schema": schema, **options}}},
    })
    return mg.Memory(config)


@pytest.fixture
def mem(tmp_path: Path, postgres_dsn: str, schema: str) -> mg.Memory:
    memory = _memory(tmp_path, postgres_dsn, schema)
    yield memory
    memory.tiers.backend("warm").close()  # not at garbage collection, in a pool thread


def _rows(mem: mg.Memory, statement: Any, params: Any = None) -> list[tuple]:
    """Run a statement through the tier's own pool (a one-connection server allows no other)."""
    with mem.tiers.backend("warm").connection() as con:
        cur = con.execute(statement, params)
        return cur.fetchall() if cur.description is not None else []


def _table(mem: mg.Memory, key: str = KEY, version: int | None = None) -> str:
    table = mem.tiers.backend("warm").table_for(mem.info(key, version=version).path)
    assert table is not None
    return table


def _segment(mem: mg.Memory, key: str = KEY, version: int | None = None, i: int = -1) -> str:
    """Segment table ``i`` of a version (a version is a view over its segments)."""
    return str(mem.info(key, version=version).object_info["tables"][i])


def _qualified(mem: mg.Memory, name: str) -> str:
    return f'"{mem.tiers.backend("warm").schema}"."{name}"'


# -- choosing the format, the fallback -----------------------------------------------------


def test_time_series_default_to_timescaledb_on_a_postgresql_tier(mem: mg.Memory) -> None:
    frame = observations()
    entry = mem.save(frame, KEY, tier="warm")
    assert entry.format == "timescaledb"
    assert entry.kind == "timeseries"
    assert isinstance(get_format("timescaledb"), TimescaleDBFormat)
    assert_frame_equal(mem.open(KEY), frame)


def test_fallback_warns_once_and_partitions_by_month(mem: mg.Memory) -> None:
    frame = observations(days=45, freq="12h", tz=None)
    with pytest.warns(TimescaleDBFallbackWarning, match="native PostgreSQL range partitioning"):
        entry = mem.save(frame, KEY, tier="warm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mem.save(frame, "stations/again", tier="warm")
    assert not [w for w in caught if issubclass(w.category, TimescaleDBFallbackWarning)]
    assert entry.object_info["partitioning"] == "native"
    table = _segment(mem)
    (strategy,) = _rows(mem, "SELECT partstrat FROM pg_partitioned_table WHERE partrelid = %s::regclass",
                        (_qualified(mem, table),))
    assert strategy == ("r",)
    bounds = _rows(mem, "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY 1",
                   (_qualified(mem, table),))
    assert bounds == [
        (f"{table}_p0", "FOR VALUES FROM ('2024-01-01 00:00:00') TO ('2024-02-01 00:00:00')"),
        (f"{table}_p1", "FOR VALUES FROM ('2024-02-01 00:00:00') TO ('2024-03-01 00:00:00')"),
    ]
    per_partition = sql.SQL("SELECT tableoid::regclass::text, count(*) FROM {} GROUP BY 1 ORDER BY 1")
    counts = _rows(mem, per_partition.format(sql.Identifier(mem.tiers.backend("warm").schema, table)))
    assert [c for _, c in counts] == [31 * 2 * 3, 14 * 2 * 3]
    indexes = _rows(mem, "SELECT indexdef FROM pg_indexes WHERE tablename = %s ORDER BY 1", (f"{table}_p1",))
    assert any("USING brin (\"time\")" in i for (i,) in indexes)


def test_native_partitioning_on_request_does_not_warn(mem: mg.Memory) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", TimescaleDBFallbackWarning)
        entry = mem.save(observations(), KEY, tier="warm", partitioning="native")
    assert entry.object_info["partitioning"] == "native"


def test_requiring_timescaledb_without_it_is_refused(mem: mg.Memory) -> None:
    with pytest.raises(mg.TierUnavailableError, match="no TimescaleDB extension"):
        mem.save(observations(), KEY, tier="warm", partitioning="timescaledb")
    assert not mem.ls().shape[0]


# -- exact round trips ---------------------------------------------------------------------


def _datetime_index() -> pd.DataFrame:
    frame = observations(days=3, freq="1h", tz=None, stations=["alpha"]).drop(columns="station")
    return frame.set_index(pd.DatetimeIndex(frame.pop("time"), freq="h", name="time"))


ROUND_TRIPS = {
    "tz-aware column": lambda: observations(tz="Europe/Paris"),
    "naive column, ns": lambda: observations(tz=None).astype({"time": "datetime64[ns]"}),
    "utc, categories, nullable": lambda: observations(tz="UTC").astype(
        {"station": "category", "count": "Int64", "label": "string"}),
    "datetime index with freq": _datetime_index,
    "unnamed datetime index": lambda: _datetime_index().rename_axis(None),
    "sub-microsecond times": lambda: observations(days=1, tz=None).assign(
        time=lambda f: f["time"].astype("datetime64[ns]") + pd.to_timedelta(np.arange(len(f)) % 7, "ns")),
}


@pytest.mark.parametrize("case", list(ROUND_TRIPS))
def test_round_trip_is_exact(mem: mg.Memory, case: str) -> None:
    frame = ROUND_TRIPS[case]()
    before = frame.copy(deep=True)
    mem.save(frame, KEY, tier="warm")
    back = mem.open(KEY)
    assert type(back) is pd.DataFrame
    assert_frame_equal(back, frame, check_freq=True)
    assert_frame_equal(frame, before)
    mem.verify(KEY)


def test_geodataframe_with_points_round_trips(mem: mg.Memory) -> None:
    gdf = with_points(observations())
    entry = mem.save(gdf, KEY, tier="warm")
    assert entry.kind == "timeseries"
    assert entry.format == "timescaledb"
    back = mem.open(KEY)
    assert isinstance(back, gpd.GeoDataFrame)
    assert_geodataframe_equal(back, gdf, check_less_precise=False)
    assert entry.bbox == pytest.approx((2.0, 48.0, 4.0, 49.0))
    inside = mem.open(KEY, bbox=(1.5, 47.5, 2.5, 48.2))
    assert set(inside["station"]) == {"alpha"}
    assert_geodataframe_equal(inside, gdf[gdf["station"] == "alpha"].reset_index(drop=True))


def test_geodataframe_append_reads_through_the_view(mem: mg.Memory) -> None:
    gdf = with_points(observations())
    mem.save(gdf.iloc[:100], KEY, tier="warm")
    entry = mem.save(gdf.iloc[100:], KEY, tier="warm", mode="a")
    assert len(entry.object_info["tables"]) == 2
    assert_geodataframe_equal(mem.open(KEY), gdf, check_less_precise=False)
    inside = mem.open(KEY, bbox=(1.5, 47.5, 2.5, 48.2), time="2024-01-05")
    day = gdf["time"].dt.tz_convert("UTC").dt.day == 5  # naive bounds of an aware column are UTC
    expected = gdf[(gdf["station"] == "alpha") & day].reset_index(drop=True)
    assert_geodataframe_equal(inside, expected)
    mem.verify(KEY)


def test_footprint_records_time_range_columns_rows(mem: mg.Memory) -> None:
    frame = observations(tz="Europe/Paris")
    entry = mem.save(frame, KEY, tier="warm")
    utc = frame["time"].dt.tz_convert("UTC").dt.tz_localize(None)
    assert (pd.Timestamp(entry.time_start), pd.Timestamp(entry.time_end)) == (utc.min(), utc.max())
    assert entry.shape == {"rows": len(frame)}
    assert entry.bbox is None
    assert tuple(entry.variables) == ("time", "station", "temp", "count", "ok", "label")


# -- time pushdown -------------------------------------------------------------------------


def test_time_filter_is_pushed_down_and_prunes_partitions(mem: mg.Memory) -> None:
    frame = observations(days=120, freq="12h", tz="UTC")
    entry = mem.save(frame, KEY, tier="warm")
    back = mem.open(KEY, time="2024-02")
    expected = frame[(frame["time"] >= "2024-02-01") & (frame["time"] < "2024-03-01")].reset_index(drop=True)
    assert_frame_equal(back, expected)
    backend = mem.tiers.backend("warm")
    request = open_request(time="2024-02")
    info = entry.object_info
    statement = select_statement(backend, _table(mem), info, selected_entries(info, None), request)
    plan = "\n".join(r[0] for r in _rows(mem, sql.SQL("EXPLAIN {}").format(statement)))
    partitions = info["partitions"]
    assert len(partitions) == 4
    assert partitions[1] in plan
    assert not any(p in plan for p in partitions if p != partitions[1])


def test_rows_out_of_time_order_come_back_in_stored_order(mem: mg.Memory) -> None:
    frame = observations(days=60, freq="6h", tz=None).sample(frac=1, random_state=3).reset_index(drop=True)
    mem.save(frame, KEY, tier="warm")
    assert_frame_equal(mem.open(KEY), frame)
    month = (frame["time"] >= "2024-02-01") & (frame["time"] < "2024-03-01")
    expected = frame[month & (frame["station"] == "bravo")].reset_index(drop=True)
    assert_frame_equal(mem.open(KEY, time="2024-02", where={"station": "bravo"}), expected)
    mem.verify(KEY)


def test_a_read_survives_its_kept_connection_being_closed_by_the_server(mem: mg.Memory) -> None:
    frame = observations()
    mem.save(frame, KEY, tier="warm")
    assert_frame_equal(mem.open(KEY), frame)  # its ADBC connection is kept for the next read
    killed = _rows(mem, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE pid <> pg_backend_pid() AND state = 'idle' AND query LIKE 'COPY (%%'")
    assert killed
    assert_frame_equal(mem.open(KEY), frame)
    bravo = frame[frame["station"] == "bravo"].reset_index(drop=True)
    assert_frame_equal(mem.open(KEY, where={"station": "bravo"}), bravo)


def test_columns_keep_the_time_axis(mem: mg.Memory) -> None:
    frame = observations()
    mem.save(frame, KEY, tier="warm")
    assert_frame_equal(mem.open(KEY, columns=["temp"]), frame[["time", "temp"]])
    bravo = frame.loc[frame["station"] == "bravo", ["time", "station", "temp"]].reset_index(drop=True)
    assert_frame_equal(mem.open(KEY, columns=["station", "temp"], where={"station": "bravo"}), bravo)
    with pytest.raises(ValueError, match="unknown column"):
        mem.open(KEY, columns=["nope"])


# -- resampling ----------------------------------------------------------------------------


@pytest.mark.parametrize("agg", ["mean", "min", "max", "sum", "count", "first", "last"])
def test_resample_equals_pandas(mem: mg.Memory, agg: str) -> None:
    frame = observations(days=5, freq="2h", tz="Europe/Paris")
    mem.save(frame, KEY, tier="warm")
    values = ["temp", "count", "ok"]
    back = mem.open(KEY, resample="1D", agg=agg, columns=values)
    expected = pandas_resample(frame, "1D", agg, values)
    assert_frame_equal(back, expected[["time", "station", *values]])


def test_resample_with_a_time_window_and_sub_day_buckets(mem: mg.Memory) -> None:
    frame = observations(days=4, freq="1h", tz="UTC")
    mem.save(frame, KEY, tier="warm")
    back = mem.open(KEY, time=("2024-01-02", "2024-01-03"), resample="6h", agg="max", columns=["temp"])
    window = frame[(frame["time"] >= "2024-01-02") & (frame["time"] < "2024-01-04")]
    assert_frame_equal(back, pandas_resample(window, "6h", "max", ["temp"])[["time", "station", "temp"]])


def test_resample_a_datetime_index_without_station(mem: mg.Memory) -> None:
    frame = _datetime_index()
    mem.save(frame, KEY, tier="warm")
    back = mem.open(KEY, resample="1D")
    expected = frame[["temp", "count", "ok"]].resample("1D").mean()
    assert_frame_equal(back, expected, check_freq=False)


def test_resample_by_month_start(mem: mg.Memory) -> None:
    frame = observations(days=70, freq="12h", tz="Europe/Paris")
    mem.save(frame, KEY, tier="warm")
    back = mem.open(KEY, resample="MS", agg="sum", columns=["count"])
    assert_frame_equal(back, pandas_resample(frame, "MS", "sum", ["count"])[["time", "station", "count"]])


def test_continuous_aggregates_answer_whole_bucket_queries(mem: mg.Memory) -> None:
    frame = observations(days=5, freq="2h", tz="UTC")
    entry = mem.save(frame, KEY, tier="warm", continuous_aggregates=["1 day", "6h"])
    views = entry.object_info["continuous_aggregates"]
    assert [v["width"] for v in views] == [[0, 86_400_000_000], [0, 21_600_000_000]]
    names = {r[0] for r in _rows(mem, "SELECT matviewname FROM pg_matviews WHERE schemaname = %s",
                                 (mem.tiers.backend("warm").schema,))}
    assert {v["name"] for v in views} <= names
    backend = mem.tiers.backend("warm")
    statement, _ = resample_statement(backend, _table(mem), entry.object_info, open_request(columns=["temp"]),
                                      parse_interval("1D", "resample"), "mean")
    assert views[0]["name"] in statement.as_string(None)
    for agg in ("mean", "min", "max", "sum", "count"):
        back = mem.open(KEY, resample="1D", agg=agg, columns=["temp", "count"])
        assert_frame_equal(back, pandas_resample(frame, "1D", agg, ["temp", "count"])[
            ["time", "station", "temp", "count"]])
    mem.delete(KEY)
    left = {r[0] for r in _rows(mem, "SELECT matviewname FROM pg_matviews WHERE schemaname = %s",
                                (mem.tiers.backend("warm").schema,))}
    assert not {v["name"] for v in views} & left


# -- appends and duplicates ----------------------------------------------------------------


def test_append_makes_a_new_version_built_on_the_server(mem: mg.Memory) -> None:
    frame = observations(days=8)
    first, more = frame.iloc[:120], frame.iloc[120:]
    mem.save(first, KEY, tier="warm", chunk_time_interval="2 days")
    entry = mem.save(more, KEY, tier="warm", mode="a")
    assert entry.version == 2
    assert entry.object_info["settings"]["chunk_time_interval"] == [0, 2 * 86_400_000_000]
    assert_frame_equal(mem.open(KEY), frame.reset_index(drop=True))
    assert_frame_equal(mem.open(KEY, version=1), first)
    utc = frame["time"].dt.tz_convert("UTC").dt.tz_localize(None)
    assert (pd.Timestamp(entry.time_start), pd.Timestamp(entry.time_end)) == (utc.min(), utc.max())
    mem.verify(KEY)


def test_append_checksums_reuse_the_previous_ranges(mem: mg.Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    from memories_geo.formats.timescaledb import load

    frame = observations(days=4)
    parts = np.array_split(np.arange(len(frame)), 4)
    first = mem.save(frame.iloc[parts[0]], KEY, tier="warm")
    second = mem.save(frame.iloc[parts[1]], KEY, tier="warm", mode="a")
    assert first.object_info["segments"] == second.object_info["segments"][:1]
    ranges = [s[:2] for s in second.object_info["segments"]]
    assert ranges == [[1, len(parts[0])], [len(parts[0]) + 1, len(parts[0]) + len(parts[1])]]
    location = mem.version_store.location(second)
    files = get_format("timescaledb").manifest(location).files
    assert len(files) == 2
    monkeypatch.setattr(load, "MAX_SEGMENTS", 2)  # the third append copies every row into one segment
    third = mem.save(frame.iloc[parts[2]], KEY, tier="warm", mode="a")
    end = ranges[1][1]
    assert [s[:2] for s in third.object_info["segments"]] == [*ranges, [end + 1, end + len(parts[2])]]
    assert third.object_info["tables"] == [_segment(mem)]
    assert {s[4] for s in third.object_info["segments"]} == {_segment(mem)}
    mem.verify(KEY)
    monkeypatch.undo()
    fourth = mem.save(frame.iloc[parts[3]], KEY, tier="warm", mode="a")
    assert len(fourth.object_info["tables"]) == 2
    assert_frame_equal(mem.open(KEY), frame)
    mem.verify(KEY)
    # a version re-created from the same rows in one segment (a restored backup) verifies against
    # the ranges recorded
    fmt, location = get_format("timescaledb"), mem.version_store.location(fourth)
    manifest = mem.catalog.manifest(fourth)
    assert len(manifest.files) == 4
    fmt.unpublish(location.backend, KEY)
    fmt.delete(location)
    fmt.write(frame, location, WriteOptions(mode="w"))
    assert len(location.backend.lookup(location.path).info["tables"]) == 1
    assert fmt.verify(location, manifest) == []
    fmt.publish(location, KEY)
    (restored,) = location.backend.lookup(location.path).info["tables"]
    table = mem.tiers.backend("warm").identifier(restored)
    _rows(mem, sql.SQL("UPDATE {} SET temp = 1000 WHERE mg_row = 2").format(table))
    with pytest.raises(ChecksumMismatchError, match="checksum changed") as info:
        mem.verify(KEY)
    assert len(info.value.problems) == 1


def _relations(mem: mg.Memory) -> dict[str, tuple[int, str]]:
    """Every table and view of the tier's schema (partitions included): name -> (oid, relkind)."""
    rows = _rows(mem, "SELECT c.relname, c.oid::bigint, c.relkind::text FROM pg_class c "
                      "JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm')",
                 (mem.tiers.backend("warm").schema,))
    return {name: (oid, kind) for name, oid, kind in rows}


def _stored(mem: mg.Memory) -> set[str]:
    """Names of the version views and segment tables of the schema (without their partitions)."""
    return {n for n in _relations(mem) if "__v_" in n or ("__s_" in n and "_p" not in n.rsplit("__s_", 1)[1])}


def _needed(mem: mg.Memory, key: str = KEY) -> set[str]:
    """What the versions the catalog knows need: their views and segments."""
    needed = set()
    for entry in mem.versions(key):
        needed.add(_table(mem, key, entry.version))
        needed.update(entry.object_info["tables"])
    return needed


def test_append_writes_one_new_segment_and_leaves_the_old_ones(mem: mg.Memory) -> None:
    frame = observations(days=60, freq="6h", tz="UTC")
    first, more = frame.iloc[:600], frame.iloc[600:]
    one = mem.save(first, KEY, tier="warm")
    before = _relations(mem)
    two = mem.save(more, KEY, tier="warm", mode="a")
    after = _relations(mem)
    assert before.items() <= after.items()  # every table, partition and view kept, same OIDs
    (new,) = set(two.object_info["tables"]) - set(one.object_info["tables"])
    assert two.object_info["tables"] == [*one.object_info["tables"], new]
    assert after[_table(mem)][1] == "v"
    schema = mem.tiers.backend("warm").schema
    (count,) = _rows(mem, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, new)))
    assert count == (len(more),)
    partitions = [n for n in set(after) - set(before) if n.startswith(f"{new}_p")]
    assert len(partitions) == 1  # the new rows' month (February) only
    assert_frame_equal(mem.open(KEY), frame)
    assert_frame_equal(mem.open(KEY, version=1), first)
    (definition,) = _rows(mem, "SELECT pg_get_viewdef(%s::regclass)", (_qualified(mem, _table(mem)),))
    assert definition[0].count("UNION ALL") == 1
    mem.verify(KEY)


def test_append_with_skip_writes_only_the_new_rows(mem: mg.Memory) -> None:
    frame = observations(days=4)
    one = mem.save(frame.iloc[:60], KEY, tier="warm")
    two = mem.save(frame.iloc[30:90], KEY, tier="warm", mode="a", on_duplicate="skip")
    assert len(two.object_info["tables"]) == 2
    assert two.object_info["segments"][:1] == one.object_info["segments"]
    assert two.object_info["segments"][1][:2] == [61, 90]
    assert_frame_equal(mem.open(KEY), frame.iloc[:90])
    three = mem.save(frame.iloc[:90], KEY, tier="warm", mode="a", on_duplicate="skip")  # nothing new
    assert three.object_info["tables"] == two.object_info["tables"]
    assert_frame_equal(mem.open(KEY), frame.iloc[:90])
    mem.verify(KEY)


def test_replace_copies_every_row_into_one_segment(mem: mg.Memory) -> None:
    frame = observations(days=2)
    mem.save(frame, KEY, tier="warm")
    mem.save(frame.iloc[:20], KEY, tier="warm", mode="a", on_duplicate="replace")
    assert mem.info(KEY).object_info["tables"] == [_segment(mem)]
    assert_frame_equal(mem.open(KEY), frame)
    mem.delete(KEY, version=1)
    assert _stored(mem) == _needed(mem)
    mem.verify(KEY)


@pytest.mark.parametrize("order", ["oldest_first", "newest_first"])
def test_deleting_versions_in_any_order_keeps_exactly_what_is_needed(mem: mg.Memory, order: str) -> None:
    frame = observations(days=6)
    parts = np.array_split(np.arange(len(frame)), 4)
    mem.save(frame.iloc[parts[0]], KEY, tier="warm")
    for part in parts[1:]:
        mem.save(frame.iloc[part], KEY, tier="warm", mode="a")
    assert len(_stored(mem)) == 4 + 4  # four views, four segments
    doomed = [1, 2, 3] if order == "oldest_first" else [3, 2, 1]
    for version in doomed:
        mem.delete(KEY, version=version)
        assert _stored(mem) == _needed(mem)
        assert_frame_equal(mem.open(KEY), frame)
    assert len(_stored(mem)) == 1 + 4
    mem.verify(KEY)
    mem.delete(KEY)
    assert _stored(mem) == set()


def test_an_append_never_committed_is_removed_alone(mem: mg.Memory) -> None:
    frame = observations(days=3)
    one = mem.save(frame.iloc[:100], KEY, tier="warm")
    before = _relations(mem)
    fmt, previous = get_format("timescaledb"), mem.version_store.location(one)
    staged = Location(previous.backend, f"{KEY}/@v/20990101T000000000Z-0badc0de")
    fmt.write(frame.iloc[100:], staged, WriteOptions(mode="a", previous=previous))  # then a crash
    assert set(_relations(mem)) > set(before)
    removed = mem.version_store.recover_orphans()
    assert removed == [previous.backend.url_for(staged.path)]
    assert _relations(mem) == before
    assert_frame_equal(mem.open(KEY), frame.iloc[:100])
    mem.verify(KEY)


def test_a_version_rewritten_while_another_reads_its_segment(mem: mg.Memory) -> None:
    frame = observations(days=3)
    one = mem.save(frame.iloc[:100], KEY, tier="warm")
    mem.save(frame.iloc[100:], KEY, tier="warm", mode="a")
    fmt, location = get_format("timescaledb"), mem.version_store.location(one)
    manifest = mem.catalog.manifest(one)
    fmt.delete(location)  # as a restore from a backup does: version 2 keeps reading the old segment
    assert one.object_info["tables"][0] in _relations(mem)
    fmt.write(frame.iloc[:100], location, WriteOptions(mode="w"))
    assert fmt.verify(location, manifest) == []
    assert_frame_equal(mem.open(KEY, version=1), frame.iloc[:100])
    assert_frame_equal(mem.open(KEY), frame)
    mem.verify(KEY, all_versions=True)
    mem.delete(KEY, version=1)
    assert _stored(mem) == _needed(mem)


def test_verify_catches_a_changed_row_in_an_old_segment(mem: mg.Memory) -> None:
    frame = observations(days=3)
    mem.save(frame.iloc[:100], KEY, tier="warm")
    mem.save(frame.iloc[100:], KEY, tier="warm", mode="a")
    mem.verify(KEY)
    old = mem.tiers.backend("warm").identifier(_segment(mem, i=0))
    _rows(mem, sql.SQL("UPDATE {} SET label = 'z' WHERE mg_row = 5").format(old))
    with pytest.raises(ChecksumMismatchError, match="checksum changed") as info:
        mem.verify(KEY)
    assert len(info.value.problems) == 1
    with pytest.raises(ChecksumMismatchError) as both:
        mem.verify(KEY, all_versions=True)  # version 1 reads the same segment
    assert len(both.value.problems) == 2


def test_an_appended_version_is_repaired_as_a_backup_restore_does(mem: mg.Memory) -> None:
    frame = observations(days=3)
    mem.save(frame.iloc[:100], KEY, tier="warm")
    entry = mem.save(frame.iloc[100:], KEY, tier="warm", mode="a")
    fmt, location = get_format("timescaledb"), mem.version_store.location(entry)
    exported = fmt.open(location, entry.object_info, open_request())  # memories_geo.checkpoints.backup
    old = mem.tiers.backend("warm").identifier(_segment(mem, i=0))
    _rows(mem, sql.SQL("DELETE FROM {} WHERE mg_row = 7").format(old))
    with pytest.raises(ChecksumMismatchError):
        mem.verify(KEY)
    mem.version_store.unpublish(entry)
    fmt.delete(location)
    fmt.write(exported, location, WriteOptions(mode="w"))
    assert fmt.verify(location, mem.catalog.manifest(entry)) == []
    mem.version_store.publish(entry)
    mem.verify(KEY)
    assert_frame_equal(mem.open(KEY), frame)
    assert _stored(mem) == _needed(mem) - set(entry.object_info["tables"][1:]) | set(
        location.backend.lookup(location.path).info["tables"])


def test_time_filter_prunes_partitions_through_the_view(mem: mg.Memory) -> None:
    frame = observations(days=120, freq="12h", tz="UTC")
    mem.save(frame.iloc[:400], KEY, tier="warm")
    entry = mem.save(frame.iloc[400:], KEY, tier="warm", mode="a")
    info = entry.object_info
    old, new = info["tables"]
    backend = mem.tiers.backend("warm")
    statement = select_statement(backend, _table(mem), info, selected_entries(info, None),
                                 open_request(time="2024-02"))
    plan = "\n".join(r[0] for r in _rows(mem, sql.SQL("EXPLAIN {}").format(statement)))
    scanned = [p for p in info["partitions"] if p in plan]
    assert scanned == [f"{old}_p1"]
    assert new not in plan  # the new segment holds April only: pruned too
    back = mem.open(KEY, time="2024-02")
    expected = frame[(frame["time"] >= "2024-02-01") & (frame["time"] < "2024-03-01")].reset_index(drop=True)
    assert_frame_equal(back, expected)
    monthly = mem.open(KEY, resample="1MS", agg="max", columns=["temp"])
    assert_frame_equal(monthly, pandas_resample(frame, "1MS", "max", ["temp"])[["time", "station", "temp"]])


def test_an_append_costs_a_fraction_of_a_full_save(mem: mg.Memory) -> None:
    import time

    frame = observations(days=700, freq="10min", tz="UTC")  # two years of three stations: 302,400 rows
    started = time.perf_counter()
    mem.save(frame, KEY, tier="warm")
    full = time.perf_counter() - started
    day = observations(days=1, freq="10min", tz="UTC",
                       start=str((frame["time"].max() + pd.Timedelta("10min")).tz_localize(None)))
    started = time.perf_counter()
    mem.save(day, KEY, tier="warm", mode="a")
    appended = time.perf_counter() - started
    assert appended < 0.25 * full, (appended, full)
    assert len(mem.open(KEY, time=str(day["time"].min().date()))) == len(day)


def test_append_refuses_duplicate_times_by_default(mem: mg.Memory) -> None:
    frame = observations(days=2)
    mem.save(frame, KEY, tier="warm")
    refused = r"5 of the 5 rows .*already stored .*on_duplicate='skip'"
    with pytest.raises(mg.DuplicateTimesError, match=refused):
        mem.save(frame.iloc[-5:], KEY, tier="warm", mode="a")
    assert [e.version for e in mem.versions(KEY)] == [1]


def test_append_skips_or_replaces_duplicates(mem: mg.Memory) -> None:
    frame = observations(days=2)
    mem.save(frame, KEY, tier="warm")
    overlap = observations(days=2, start="2024-01-02", seed=1)
    mem.save(overlap, KEY, tier="warm", mode="a", on_duplicate="skip")
    new = overlap[overlap["time"] > frame["time"].max()]
    assert_frame_equal(mem.open(KEY), pd.concat([frame, new], ignore_index=True))
    current = pd.concat([frame, new], ignore_index=True)
    changed = overlap.assign(temp=overlap["temp"] + 100)
    mem.save(changed, KEY, tier="warm", mode="a", on_duplicate="replace")
    keys = current.set_index(["station", "time"]).index
    replacing = changed.set_index(["station", "time"])
    expected, mask = current.copy(), keys.isin(replacing.index)
    for column in ("temp", "count", "ok", "label"):
        expected.loc[mask, column] = replacing[column].reindex(keys[mask]).to_numpy()
    assert_frame_equal(mem.open(KEY), expected)  # the new values in the stored rows' places
    assert mem.info(KEY).object_info["rows"] == len(current)
    mem.verify(KEY)


def test_replace_without_station_column_keys_on_time(mem: mg.Memory) -> None:
    frame = _datetime_index()
    mem.save(frame, KEY, tier="warm")
    later = frame.iloc[-5:].assign(temp=-1.0)
    later.index = later.index + pd.Timedelta(hours=3)  # two rows stored, three new
    mem.save(later, KEY, tier="warm", mode="a", on_duplicate="replace")
    expected = pd.concat([frame, later.iloc[2:]])
    for column in expected.columns:
        expected.loc[later.index[:2], column] = later[column].iloc[:2].to_numpy()
    assert_frame_equal(mem.open(KEY), expected, check_freq=False)
    mem.verify(KEY)


def test_an_other_station_at_the_same_time_is_no_duplicate(mem: mg.Memory) -> None:
    frame = observations(days=1, stations=["alpha"])
    mem.save(frame, KEY, tier="warm")
    other = observations(days=1, stations=["zulu"])
    mem.save(other, KEY, tier="warm", mode="a")
    assert_frame_equal(mem.open(KEY), pd.concat([frame, other], ignore_index=True))


# -- verify and the stable view ------------------------------------------------------------


def test_verify_detects_a_changed_row(mem: mg.Memory) -> None:
    mem.save(observations(), KEY, tier="warm")
    mem.verify(KEY)
    table = mem.tiers.backend("warm").identifier(_segment(mem))
    _rows(mem, sql.SQL("UPDATE {} SET temp = temp + 1 WHERE mg_row = 7").format(table))
    with pytest.raises(ChecksumMismatchError, match="checksum changed"):
        mem.verify(KEY)


def test_the_view_shows_the_current_version(mem: mg.Memory) -> None:
    view = sql.Identifier(mem.tiers.backend("warm").schema, KEY)
    count = sql.SQL("SELECT count(*) FROM {}").format(view)
    frame = observations(days=2)
    mem.save(frame.iloc[:10], KEY, tier="warm")
    assert _rows(mem, count) == [(10,)]
    mem.save(frame.iloc[:20], KEY, tier="warm", mode="w")
    assert _rows(mem, count) == [(20,)]
    mem.save(frame.iloc[20:], KEY, tier="warm", mode="a")
    assert _rows(mem, count) == [(len(frame),)]
    fmt = get_format("timescaledb")
    assert fmt.is_published(mem.version_store.location(mem.info(KEY)), KEY)
    assert KEY in fmt.published_keys(mem.tiers.backend("warm"))
    mem.delete(KEY)
    assert _rows(mem, "SELECT to_regclass(%s)", (_qualified(mem, KEY),)) == [(None,)]


# -- options -------------------------------------------------------------------------------


def test_every_save_option_is_accepted(mem: mg.Memory) -> None:
    frame = observations(days=3)
    entry = mem.save(
        frame, KEY, tier="warm", chunk_time_interval="1 day", compression_enabled=False, segmentby="station",
        orderby=["time DESC", "temp"], time_column="time", continuous_aggregates=["1 day"],
        on_duplicate="skip", partitioning="native", engine="adbc",
    )
    assert len(entry.object_info["partitions"]) == 4  # days in UTC: 2023-12-31T23:00Z is the first time
    assert entry.object_info["segmentby"] == ["station"]
    assert_frame_equal(mem.open(KEY, engine="psycopg"), frame)
    assert_frame_equal(mem.open(KEY, engine="adbc"), frame)
    mem.verify(KEY)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("chunk_time_interval", "fortnight", "not an interval"),
    ("chunk_time_interval", "1M", "end-anchored"),
    ("chunk_time_interval", -3, "not an interval"),
    ("compression_enabled", "yes", "True or False"),
    ("segmentby", "nope", "not columns"),
    ("segmentby", 3, "column name"),
    ("orderby", "station", "segmentby"),
    ("time_column", "temp", "neither a datetime column"),
    ("continuous_aggregates", ["1 day", "soon"], "not an interval"),
    ("on_duplicate", "merge", r"\['error', 'skip', 'replace'\]"),
    ("partitioning", "hash", r"\['auto', 'timescaledb', 'native'\]"),
    ("engine", "odbc", r"\['psycopg', 'adbc'\]"),
    ("compression", "zstd", "compression must be one of"),
    ("bogus", 1, "accepted keywords"),
])
def test_bad_save_options_are_refused(mem: mg.Memory, option: str, value: Any, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        mem.save(observations(days=1), KEY, tier="warm", **{option: value})
    assert not mem.ls().shape[0]


@pytest.mark.parametrize(("options", "message"), [
    ({"resample": "soon"}, "not an interval"),
    ({"resample": "1D", "agg": "median"}, "agg must be one of"),
    ({"agg": "mean"}, "needs resample"),
    ({"resample": "1D", "agg": "sum", "columns": ["label"]}, "does not apply"),
    ({"engine": "odbc"}, "engine must be one of"),
    ({"bbox": (0, 0, 1, 1)}, "has none"),
    ({"filters": []}, "accepted keywords"),
])
def test_bad_open_options_are_refused(mem: mg.Memory, options: dict[str, Any], message: str) -> None:
    mem.save(observations(days=1), KEY, tier="warm")
    with pytest.raises(OptionError, match=message):
        mem.open(KEY, **options)


def test_missing_times_are_refused(mem: mg.Memory) -> None:
    frame = observations(days=1)
    frame.loc[3, "time"] = pd.NaT
    with pytest.raises(UnsupportedObjectError, match="NaT"):
        mem.save(frame, KEY, tier="warm")


# -- the TimescaleDB path (PGlite + TimescaleDB) -------------------------------------------


@pytest.fixture
def tsdb(request: pytest.FixtureRequest, tmp_path: Path) -> mg.Memory:
    """A collection whose warm tier is the TimescaleDB test service (one connection at a time)."""
    try:
        dsn = request.getfixturevalue("timescaledb_dsn")
    except pytest.FixtureLookupError:
        pytest.skip("the timescaledb_dsn fixture (PGlite + TimescaleDB) is not available here")
    name = f"t_{uuid.uuid4().hex[:12]}"
    memory = _memory(tmp_path, dsn, name, min_size=1, max_size=1, prepare_threshold=None)
    yield memory
    with memory.tiers.backend("warm").connection() as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    memory.tiers.backend("warm").close()


def test_timescaledb_hypertable_with_compression(tsdb: mg.Memory) -> None:
    frame = observations(days=20, freq="6h", tz="UTC")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TimescaleDBFallbackWarning)
        entry = tsdb.save(frame, KEY, tier="warm", chunk_time_interval="7 days")
    assert entry.format == "timescaledb"
    assert entry.object_info["partitioning"] == "timescaledb"
    table, schema = _segment(tsdb), tsdb.tiers.backend("warm").schema
    hypertables = "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables " \
                  "WHERE hypertable_schema = %s"
    assert _rows(tsdb, hypertables, (schema,)) == [(table, True)]
    (interval,) = _rows(tsdb, "SELECT time_interval FROM timescaledb_information.dimensions "
                              "WHERE hypertable_schema = %s AND hypertable_name = %s", (schema, table))
    assert interval == (pd.Timedelta(days=7).to_pytimedelta(),)
    settings = "SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings " \
               "WHERE hypertable = %s::regclass"
    assert _rows(tsdb, settings, (_qualified(tsdb, table),)) == [("station", "\"time\" DESC")]
    chunks = "SELECT is_compressed FROM timescaledb_information.chunks WHERE hypertable_name = %s"
    compressed = [c for (c,) in _rows(tsdb, chunks, (table,))]
    assert len(compressed) >= 3
    assert all(compressed)
    assert_frame_equal(tsdb.open(KEY), frame)
    ninth = frame[frame["time"].dt.day == 9].reset_index(drop=True)
    assert_frame_equal(tsdb.open(KEY, time="2024-01-09"), ninth)
    tsdb.verify(KEY)


def test_timescaledb_time_filter_excludes_chunks(tsdb: mg.Memory) -> None:
    frame = observations(days=28, freq="12h", tz=None)
    entry = tsdb.save(frame, KEY, tier="warm", chunk_time_interval="7 days", compression_enabled=False)
    info = entry.object_info
    backend = tsdb.tiers.backend("warm")
    statement = select_statement(backend, _table(tsdb), info, selected_entries(info, None),
                                 open_request(time=("2024-01-09", "2024-01-10")))
    plan = "\n".join(r[0] for r in _rows(tsdb, sql.SQL("EXPLAIN {}").format(statement)))
    chunks = _rows(tsdb, "SELECT chunk_name FROM timescaledb_information.chunks WHERE hypertable_name = %s "
                         "ORDER BY range_start", (_segment(tsdb),))
    scanned = [c for (c,) in chunks if c in plan]
    assert len(chunks) >= 4
    assert len(scanned) == 1


def test_timescaledb_time_bucket_equals_pandas(tsdb: mg.Memory) -> None:
    frame = observations(days=6, freq="2h", tz="Europe/Paris")
    entry = tsdb.save(frame, KEY, tier="warm", continuous_aggregates=["1 day"])
    schema = tsdb.tiers.backend("warm").schema
    caggs = "SELECT view_name FROM timescaledb_information.continuous_aggregates WHERE view_schema = %s"
    assert _rows(tsdb, caggs, (schema,)) == [(entry.object_info["continuous_aggregates"][0]["name"],)]
    values = ["temp", "count", "ok"]
    for agg in ("mean", "min", "max", "sum", "count", "first", "last"):
        expected = pandas_resample(frame, "1D", agg, values)[["time", "station", *values]]
        assert_frame_equal(tsdb.open(KEY, resample="1D", agg=agg, columns=values), expected)
    numbers = ["temp", "count"]  # what the continuous aggregate holds: it answers these
    statement, _ = resample_statement(tsdb.tiers.backend("warm"), _table(tsdb), entry.object_info,
                                      open_request(columns=numbers), parse_interval("1D", "resample"), "sum")
    assert entry.object_info["continuous_aggregates"][0]["name"] in statement.as_string(None)
    expected = pandas_resample(frame, "1D", "sum", numbers)[["time", "station", *numbers]]
    assert_frame_equal(tsdb.open(KEY, resample="1D", agg="sum", columns=numbers), expected)
    window = frame[frame["time"].dt.day.isin([2, 3])]
    days = tuple(pd.Timestamp(t, tz="Europe/Paris") for t in ("2024-01-02", "2024-01-03 23:59"))
    back = tsdb.open(KEY, time=days, resample="6h", agg="max", columns=["temp"])
    assert_frame_equal(back, pandas_resample(window, "6h", "max", ["temp"])[["time", "station", "temp"]])


def test_timescaledb_append_with_duplicates(tsdb: mg.Memory) -> None:
    frame = observations(days=4, tz="Europe/Paris")
    tsdb.save(frame.iloc[:50], KEY, tier="warm")
    tsdb.save(frame.iloc[50:], KEY, tier="warm", mode="a")
    assert_frame_equal(tsdb.open(KEY), frame)
    with pytest.raises(mg.DuplicateTimesError, match="already stored"):
        tsdb.save(frame.iloc[-3:], KEY, tier="warm", mode="a")
    changed = frame.iloc[-3:].assign(temp=99.0)
    tsdb.save(changed, KEY, tier="warm", mode="a", on_duplicate="replace")
    assert_frame_equal(tsdb.open(KEY), pd.concat([frame.iloc[:-3], changed], ignore_index=True))
    tsdb.verify(KEY)
    table = tsdb.tiers.backend("warm").identifier(_segment(tsdb))
    _rows(tsdb, sql.SQL("UPDATE {} SET temp = -1 WHERE mg_row = 3").format(table))
    with pytest.raises(ChecksumMismatchError, match="checksum changed"):
        tsdb.verify(KEY)


def test_timescaledb_append_writes_a_compressed_hypertable_segment(tsdb: mg.Memory) -> None:
    frame = observations(days=28, freq="12h", tz=None)
    tsdb.save(frame.iloc[:120], KEY, tier="warm", chunk_time_interval="7 days")
    before = _relations(tsdb)
    entry = tsdb.save(frame.iloc[120:], KEY, tier="warm", mode="a")
    assert before.items() <= _relations(tsdb).items()
    old, new = entry.object_info["tables"]
    hypertables = "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables " \
                  "WHERE hypertable_schema = %s ORDER BY 1"
    schema = tsdb.tiers.backend("warm").schema
    assert _rows(tsdb, hypertables, (schema,)) == sorted([(old, True), (new, True)])
    chunks = "SELECT chunk_name, is_compressed FROM timescaledb_information.chunks " \
             "WHERE hypertable_name = %s ORDER BY range_start"
    assert all(c for _, c in _rows(tsdb, chunks, (new,)))
    assert_frame_equal(tsdb.open(KEY), frame)
    info = entry.object_info
    statement = select_statement(tsdb.tiers.backend("warm"), _table(tsdb), info, selected_entries(info, None),
                                 open_request(time=("2024-01-02", "2024-01-03")))
    plan = "\n".join(r[0] for r in _rows(tsdb, sql.SQL("EXPLAIN {}").format(statement)))
    everything = [c for table in (old, new) for c, _ in _rows(tsdb, chunks, (table,))]
    assert len(everything) >= 4
    assert len([c for c in everything if c in plan]) == 1  # one chunk of the old segment, none of the new
    back = tsdb.open(KEY, time="2024-01-02", resample="1D", agg="mean", columns=["temp"])
    day = frame[frame["time"].dt.day == 2]
    assert_frame_equal(back, pandas_resample(day, "1D", "mean", ["temp"])[["time", "station", "temp"]])
    tsdb.verify(KEY)
    tsdb.delete(KEY, version=1)
    assert _stored(tsdb) == _needed(tsdb)
    tsdb.save(frame.iloc[:10].assign(temp=0.5), KEY, tier="warm", mode="a", on_duplicate="replace")
    tsdb.delete(KEY, version=2)
    assert _stored(tsdb) == _needed(tsdb)
    assert len(_stored(tsdb)) == 2
    tsdb.verify(KEY)


def test_timescaledb_geodataframe_needs_postgis(tsdb: mg.Memory) -> None:
    with tsdb.tiers.backend("warm").connection() as con:
        has_postgis = con.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").fetchone()
    if has_postgis:
        pytest.skip("this TimescaleDB service has PostGIS")
    with pytest.raises(mg.TierUnavailableError, match="no PostGIS extension"):
        tsdb.save(with_points(observations(days=1)), KEY, tier="warm")
