"""The TimescaleDB format in the shipped test kit: the round-trip suite over every time-series
case, the time-pushdown mixin (partitions scanned, read from the server's plan) and appends,
on the real PostgreSQL server (native partitions: the fallback path)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import memories_geo as mg
from memories_geo.testing import (
    TIMESERIES_CASES,
    AppendTests,
    FormatRoundTripTests,
    TimeQueryTests,
    assert_same_timeseries,
    timeseries_case,
)

psycopg = pytest.importorskip("psycopg")
from psycopg import sql  # noqa: E402

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.filterwarnings("ignore::memories_geo.formats.timescaledb.TimescaleDBFallbackWarning"),
]


@pytest.fixture
def schema(postgres_dsn: str) -> Any:
    name = f"s_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


class _OnPostgres:
    format_name = "timescaledb"
    tier = "warm"
    key = "suite/series"

    @pytest.fixture
    def memory(self, tmp_path: Path, postgres_dsn: str, schema: str) -> Any:
        mem = mg.Memory(mg.StorageConfig.from_dict({
            "home": str(tmp_path / "home"),
            "tiers": {"warm": {"url": postgres_dsn, "storage_options": {"schema": schema}}},
        }))
        yield mem
        mem.tiers.backend("warm").close()

    def assert_same(self, expected: Any, actual: Any) -> None:
        assert_same_timeseries(expected, actual)


class TestTimescaleDBRoundTrip(_OnPostgres, FormatRoundTripTests):
    @pytest.fixture(params=TIMESERIES_CASES)
    def case(self, request: pytest.FixtureRequest) -> Any:
        return timeseries_case(request.param)

    def corrupt(self, memory: mg.Memory, entry: Any) -> str:
        """Add a copy of a row to the version's first segment: the digest of that segment changes."""
        backend = memory.tiers.backend(entry.tier)
        segment = entry.object_info["tables"][0]
        with backend.connection() as con:
            added = con.execute(sql.SQL("INSERT INTO {t} SELECT * FROM {t} LIMIT 1").format(
                t=backend.identifier(segment))).rowcount
        assert added == 1
        return str(backend.table_for(entry.path))

    def test_verify_names_a_corrupted_file(self, memory: mg.Memory, case: Any) -> None:
        """An empty series has no row to copy: the check runs on a non-empty one instead."""
        damaged = case if len(case) else timeseries_case("naive-seconds")
        super().test_verify_names_a_corrupted_file(memory, damaged)


class TestTimescaleDBTimeQueries(_OnPostgres, TimeQueryTests):
    def units_read(self, memory: Any, key: str, **query: Any) -> int:
        """Partitions the server's plan for the read scans."""
        from memories_geo.formats.timescaledb.query import select_statement, selected_entries
        from memories_geo.query import open_request

        entry = memory.info(key)
        backend = memory.tiers.backend(entry.tier)
        info = entry.object_info
        statement = select_statement(backend, backend.table_for(entry.path), info,
                                     selected_entries(info, None), open_request(**query))
        with backend.connection() as con:
            plan = "\n".join(r[0] for r in con.execute(sql.SQL("EXPLAIN {}").format(statement)))
        scanned = [p for p in info["partitions"] if p in plan]
        assert scanned, f"no partition of the version in the plan:\n{plan}"
        return len(scanned)


class TestTimescaleDBAppend(_OnPostgres, AppendTests):
    def append_parts(self) -> tuple[Any, Any, Any, dict[str, Any]]:
        full = timeseries_case("tz-aware-column")
        first, second = full.iloc[:16], full.iloc[16:]
        return first, second, full, {}
