"""The TimescaleDB test service (PGlite + TimescaleDB on loopback) through psycopg.

These check the service that ``timescaledb_dsn`` gives the TimescaleDB format's tests:
real TimescaleDB SQL (hypertables, compression, ``time_bucket``, continuous aggregates,
jobs), binary COPY both ways, error recovery, and the one session shared by the
connections one transaction at a time.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

psycopg = pytest.importorskip("psycopg")

STATIONS = [f"s{i}" for i in range(5)]
TIMES = pd.date_range("2024-01-01", periods=10_000, freq="10min", tz="UTC", unit="us")


def connect(dsn: str, **kwargs: Any) -> Any:
    return psycopg.connect(dsn, autocommit=kwargs.pop("autocommit", True), **kwargs)


def utc(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.to_datetime(frame[column], utc=True).dt.as_unit("us")
    return frame


@pytest.fixture(scope="module")
def observations() -> pd.DataFrame:
    """50,000 rows: 5 stations x 10,000 ten-minute steps; values are exact in float64 sums."""
    keys = pd.MultiIndex.from_product([STATIONS, TIMES], names=["station", "time"]).to_frame(index=False)
    values = np.random.default_rng(11).integers(-4000, 4000, len(keys)) / 4
    return pd.DataFrame({"time": keys.time, "station": keys.station, "value": values})


@pytest.fixture(scope="module")
def table(timescaledb_dsn: str, observations: pd.DataFrame) -> str:
    """A hypertable (7-day chunks) with the observations: 100 rows by INSERT, the rest by binary COPY."""
    name = f"obs_{uuid.uuid4().hex[:8]}"
    rows = list(observations.itertuples(index=False, name=None))
    with connect(timescaledb_dsn) as conn:
        conn.execute(f"CREATE TABLE {name} (time timestamptz NOT NULL, station text NOT NULL, "
                     "value double precision)")
        conn.execute("SELECT create_hypertable(%s, by_range('time', interval '7 days'))", (name,))
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {name} (time, station, value) VALUES (%s, %s, %s)", rows[:100])
            with cur.copy(f"COPY {name} (time, station, value) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["timestamptz", "text", "float8"])
                for row in rows[100:]:
                    copy.write_row(row)
    return name


def read(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> pd.DataFrame:
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        names = [d.name for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=names)


def read_table(dsn: str, table: str) -> pd.DataFrame:
    frame = read(dsn, f"SELECT time, station, value FROM {table} ORDER BY station, time")
    return utc(frame, "time")


def test_extension_and_server(timescaledb_dsn: str) -> None:
    with connect(timescaledb_dsn) as conn:
        sql = "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        (version,) = conn.execute(sql).fetchone()
        assert version.startswith("2.")
        assert conn.info.server_version >= 170000
        assert conn.execute("SHOW search_path").fetchone() == ("public",)
        assert conn.execute("SHOW client_min_messages").fetchone() == ("notice",)


def test_insert_and_binary_copy_read_back(timescaledb_dsn: str, table: str,
                                          observations: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(read_table(timescaledb_dsn, table), observations)
    chunks = read(timescaledb_dsn, "SELECT count(*) AS n FROM show_chunks(%s)", (table,))
    assert chunks.n[0] == 11  # 10,000 ten-minute steps from a Monday: 69.4 days in 7-day chunks


def test_time_bucket_equals_pandas_resample(timescaledb_dsn: str, table: str,
                                            observations: pd.DataFrame) -> None:
    got = read(timescaledb_dsn, f"""
        SELECT station, time_bucket('1 day', time) AS time, count(*) AS count, sum(value) AS sum,
               avg(value) AS mean, min(value) AS min, max(value) AS max
        FROM {table} WHERE time >= %s AND time < %s GROUP BY 1, 2 ORDER BY 1, 2
    """, (TIMES[1000].to_pydatetime(), TIMES[6000].to_pydatetime()))
    window = observations[(observations.time >= TIMES[1000]) & (observations.time < TIMES[6000])]
    expected = (window.set_index("time").groupby("station")["value"].resample("1D")
                .agg(["count", "sum", "mean", "min", "max"]).reset_index())
    pd.testing.assert_frame_equal(utc(got, "time"), expected)


def test_continuous_aggregate_refresh(timescaledb_dsn: str, table: str, observations: pd.DataFrame) -> None:
    view = f"{table}_daily"
    with connect(timescaledb_dsn) as conn:
        conn.execute(f"""
            CREATE MATERIALIZED VIEW {view} WITH (timescaledb.continuous) AS
            SELECT time_bucket('1 day', time) AS bucket, station, count(*) AS n, sum(value) AS total
            FROM {table} GROUP BY bucket, station WITH NO DATA
        """)
        assert conn.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)
        conn.execute("CALL refresh_continuous_aggregate(%s, NULL, NULL)", (view,))
    got = utc(read(timescaledb_dsn, f"SELECT station, bucket, n, total FROM {view} ORDER BY 1, 2"), "bucket")
    expected = (observations.set_index("time").groupby("station")["value"].resample("1D")
                .agg(["count", "sum"]).reset_index()
                .rename(columns={"time": "bucket", "count": "n", "sum": "total"}))
    pd.testing.assert_frame_equal(got, expected)


def test_compression_with_segmentby(timescaledb_dsn: str, table: str, observations: pd.DataFrame) -> None:
    with connect(timescaledb_dsn) as conn:
        conn.execute(f"ALTER TABLE {table} SET (timescaledb.compress, "
                     "timescaledb.compress_segmentby = 'station')")
        conn.execute("SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks(%s) c", (table,))
        assert conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE is_compressed) FROM timescaledb_information.chunks "
            "WHERE hypertable_name = %s", (table,)).fetchone() == (11, 11)
        segmentby = conn.execute(
            "SELECT attname FROM timescaledb_information.compression_settings "
            "WHERE hypertable_name = %s AND segmentby_column_index IS NOT NULL", (table,)).fetchall()
        assert segmentby == [("station",)]
    pd.testing.assert_frame_equal(read_table(timescaledb_dsn, table), observations)


def test_copy_to_stdout_binary_and_text(timescaledb_dsn: str, table: str, observations: pd.DataFrame) -> None:
    with connect(timescaledb_dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY (SELECT time, station, value FROM {table} ORDER BY station, time) "
                      "TO STDOUT (FORMAT BINARY)") as copy:
            copy.set_types(["timestamptz", "text", "float8"])
            rows = list(copy.rows())
        with cur.copy(f"COPY (SELECT station, value FROM {table} ORDER BY station, time LIMIT 3) "
                      "TO STDOUT") as copy:
            text = b"".join(bytes(chunk) for chunk in copy).decode()
    got = utc(pd.DataFrame(rows, columns=["time", "station", "value"]), "time")
    pd.testing.assert_frame_equal(got, observations)
    first = observations.head(3)
    assert text == "".join(f"{s}\t{v:g}\n" for s, v in zip(first.station, first.value, strict=True))


def copy_in(cur: Any, statement: str, rows: Sequence[tuple[Any, ...]] = (), data: bytes = b"",
            types: list[str] | None = None, fail: bool = False) -> None:
    """COPY FROM STDIN of rows or raw data; ``fail`` raises inside the block (psycopg sends CopyFail)."""
    with cur.copy(statement) as copy:
        if types:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)
        if data:
            copy.write(data)
        if fail:
            raise ZeroDivisionError


def test_failed_copy_leaves_connection_usable(timescaledb_dsn: str) -> None:
    name = f"copyfail_{uuid.uuid4().hex[:8]}"
    statement = f"COPY {name} FROM STDIN"
    with connect(timescaledb_dsn) as conn:
        conn.execute(f"CREATE TABLE {name} (a int, b text)")
        cur = conn.cursor()
        with pytest.raises(ZeroDivisionError):
            copy_in(cur, statement, rows=[(1, "x")], fail=True)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            copy_in(cur, statement, data=b"1\tx\nzz\ty\n")
        with pytest.raises(psycopg.errors.InvalidBinaryRepresentation):
            copy_in(cur, f"{statement} (FORMAT BINARY)", rows=[(1, "x")], types=["int8", "text"])
        with pytest.raises(psycopg.errors.UndefinedTable):
            copy_in(cur, "COPY no_such_table FROM STDIN", rows=[(1, "x")])
        assert conn.execute(f"SELECT count(*) FROM {name}").fetchone() == (0,)
        # Inside a transaction the failure aborts it, as on PostgreSQL; a rollback recovers.
        conn.autocommit = False
        conn.execute(f"INSERT INTO {name} VALUES (1, 'kept')")
        conn.commit()
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            copy_in(cur, statement, data=b"zz\ty\n")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        copy_in(cur, statement, rows=[(2, "copied")])
        conn.commit()
        assert conn.execute(f"SELECT a, b FROM {name} ORDER BY a").fetchall() == [(1, "kept"), (2, "copied")]


def test_extended_protocol_copy_is_refused_cleanly(timescaledb_dsn: str) -> None:
    with connect(timescaledb_dsn) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="simple query"):
            conn.cursor().execute("COPY pg_class FROM STDIN", binary=True)
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_policy_runs_with_run_job(timescaledb_dsn: str) -> None:
    name = f"retained_{uuid.uuid4().hex[:8]}"
    with connect(timescaledb_dsn) as conn:
        conn.execute(f"CREATE TABLE {name} (time timestamptz NOT NULL, v int)")
        conn.execute("SELECT create_hypertable(%s, by_range('time', interval '1 day'))", (name,))
        conn.execute(f"INSERT INTO {name} VALUES (now() - interval '400 days', 1), "
                     "(now() - interval '2 days', 2)")
        (job,) = conn.execute("SELECT add_retention_policy(%s, drop_after => interval '30 days')",
                              (name,)).fetchone()
        assert conn.execute(f"SELECT count(*) FROM {name}").fetchone() == (2,)
        conn.execute("CALL run_job(%s)", (job,))
        assert conn.execute(f"SELECT v FROM {name}").fetchall() == [(2,)]


def test_next_connection_starts_with_a_fresh_session(timescaledb_dsn: str) -> None:
    name = f"session_{uuid.uuid4().hex[:8]}"
    with connect(timescaledb_dsn) as conn:
        conn.execute(f"CREATE TABLE {name} (v int)")
    with contextlib.closing(connect(timescaledb_dsn)) as first:  # closed without a commit
        first.execute("SET TimeZone = 'Asia/Tokyo'")
        first.execute("CREATE TEMP TABLE scratch (v int)")
        first.autocommit = False
        first.execute(f"INSERT INTO {name} VALUES (1)")
        for _ in range(8):  # past psycopg's prepare_threshold: server-side prepared statements
            first.execute(f"SELECT count(*) FROM {name} WHERE v > %s", (0,))
    with connect(timescaledb_dsn) as second:
        assert second.execute("SHOW TimeZone").fetchone() == ("GMT",)
        assert second.execute("SELECT to_regclass('pg_temp.scratch')").fetchone() == (None,)
        assert second.execute("SHOW search_path").fetchone() == ("public",)
        assert second.execute("SHOW client_min_messages").fetchone() == ("notice",)
        for _ in range(8):  # the same prepared-statement names as the first connection used
            assert second.execute(f"SELECT count(*) FROM {name} WHERE v > %s", (0,)).fetchone() == (0,)


def test_connections_share_the_session_between_transactions(timescaledb_dsn: str) -> None:
    name = f"shared_{uuid.uuid4().hex[:8]}"
    count = f"SELECT count(*) FROM {name} WHERE v >= %s"
    with connect(timescaledb_dsn) as one, connect(timescaledb_dsn) as two:
        one.execute(f"CREATE TABLE {name} (v int)")
        for i in range(8):  # interleaved statements of two connections open at once
            (one if i % 2 else two).execute(f"INSERT INTO {name} VALUES (%s)", (i,))
        for _ in range(8):  # both past psycopg's prepare_threshold: both prepare "_pg3_0"
            assert one.execute(count, (1,)).fetchone() == (7,)
            assert two.execute(count, (2,)).fetchone() == (6,)
        one.execute(f"DROP TABLE IF EXISTS {name}_none")  # psycopg then sends DEALLOCATE ALL
        assert two.execute(count, (3,)).fetchone() == (5,)  # two's prepared statement is still there
        for _ in range(8):
            assert one.execute(count, (4,)).fetchone() == (4,)
    with connect(timescaledb_dsn) as keeper:  # open throughout, like a pool's connection
        keeper.execute("SELECT 1")
        for _ in range(2):  # new connections reuse the names "_pg3_0", "_pg3_1"... of the closed ones
            with connect(timescaledb_dsn) as conn:
                for _ in range(8):
                    assert conn.execute(count, (0,)).fetchone() == (8,)


def run_in_thread(dsn: str, sql: str) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def target() -> None:
        try:
            with connect(dsn) as conn:
                result.append(conn.execute(sql).fetchone())
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


def test_open_transaction_holds_the_session_until_it_ends(timescaledb_dsn: str) -> None:
    name = f"held_{uuid.uuid4().hex[:8]}"
    with connect(timescaledb_dsn) as conn:
        conn.execute(f"CREATE TABLE {name} (v int)")
    with contextlib.closing(connect(timescaledb_dsn, autocommit=False)) as first:
        first.execute(f"INSERT INTO {name} VALUES (1)")  # opens a transaction
        thread, result = run_in_thread(timescaledb_dsn, f"SELECT count(*) FROM {name}")
        try:
            time.sleep(1)
            assert thread.is_alive()
            assert result == []
            first.execute(f"INSERT INTO {name} VALUES (2)")
            first.commit()
        finally:
            thread.join(10)
    assert result == [(2,)]


def test_concurrent_transactions_are_serialised(timescaledb_dsn: str) -> None:
    name = f"serial_{uuid.uuid4().hex[:8]}"
    with connect(timescaledb_dsn) as conn:
        conn.execute(f"CREATE TABLE {name} (who int, n int)")
    errors: list[BaseException] = []

    def worker(who: int) -> None:
        try:
            with contextlib.closing(connect(timescaledb_dsn, autocommit=False)) as conn:
                kept = 0
                for n in range(12):
                    conn.execute(f"INSERT INTO {name} VALUES (%s, %s)", (who, n))
                    seen = conn.execute(f"SELECT count(*) FROM {name} WHERE who = %s", (who,)).fetchone()
                    assert seen == (kept + 1,), (who, n, seen)
                    conn.execute(f"INSERT INTO {name} VALUES (%s, %s)", (who, -n))
                    if n % 3 == 2:
                        conn.rollback()
                    else:
                        conn.commit()
                        kept += 2
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(who,)) for who in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    counts = read(timescaledb_dsn, f"SELECT who, count(*) AS n FROM {name} GROUP BY who ORDER BY who")
    assert counts.n.tolist() == [16] * 4


@pytest.fixture
def impatient_service() -> Iterator[Any]:
    from memories_geo.testing.plugin import start_or_skip
    from memories_geo.testing.services import start_timescaledb

    def start_timescaledb_waiting_1s() -> Any:
        return start_timescaledb(wait_timeout=1)

    service = start_or_skip(start_timescaledb_waiting_1s)
    yield service
    service.stop()


def test_waiting_too_long_is_refused_with_the_reason(impatient_service: Any) -> None:
    dsn = impatient_service.url
    with contextlib.closing(connect(dsn)) as idle, contextlib.closing(connect(dsn, autocommit=False)) as busy:
        busy.execute("SELECT 1")  # an open transaction holds the session
        with pytest.raises(psycopg.OperationalError, match=r"one transaction at a time.*connection #\d+"):
            connect(dsn, connect_timeout=10)
        with pytest.raises(psycopg.OperationalError, match="one transaction at a time"):
            idle.execute("SELECT 2")
        assert busy.execute("SELECT 3").fetchone() == (3,)
        busy.rollback()
    with connect(dsn) as conn:
        assert conn.execute("SELECT 4").fetchone() == (4,)
