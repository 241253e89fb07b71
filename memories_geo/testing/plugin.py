"""pytest plugin (entry point ``pytest11: memories_geo``): real servers on loopback, once per session.

Fixtures: ``postgres_service`` (PostgreSQL + PostGIS; ``.url`` is the DSN, or
``$MEMORIES_GEO_TEST_DSN`` when set), ``postgres_dsn``, ``s3_service`` (moto),
``gcs_service`` (gcp-storage-emulator) and ``azure_service`` (Azurite). A server that
cannot start skips its tests with the reason, except with ``CI=true``, where it fails them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

__all__ = ["azure_service", "gcs_service", "postgres_dsn", "postgres_service", "s3_service", "start_or_skip"]

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
