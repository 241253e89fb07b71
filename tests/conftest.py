from __future__ import annotations

import os
from pathlib import Path

import pytest

import memories_geo as mg

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IN_CI = os.environ.get("CI") == "true"


def shared_data_path(*parts: str) -> Path:
    """Path inside ../shared/data; skips outside CI when absent, fails in CI."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"{path} is absent: the shared test data lives beside the repository"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty MEMORIES_GEO_HOME, made the default collection's home."""
    path = tmp_path / "home"
    monkeypatch.setenv("MEMORIES_GEO_HOME", str(path))
    monkeypatch.delenv("MEMORIES_GEO_CONFIG", raising=False)
    mg.set_default(None)
    yield path
    mg.set_default(None)


@pytest.fixture
def memory(home: Path) -> mg.Memory:
    """The default collection, in a temporary home."""
    return mg.default()


os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def _start(starter):
    """Start a service; skip outside CI when it cannot start, fail in CI."""
    from memories_geo.testing.services import ServiceUnavailable

    try:
        return starter()
    except (ServiceUnavailable, ImportError) as exc:
        if IN_CI:
            pytest.fail(f"{starter.__name__}: {exc}")
        pytest.skip(f"{starter.__name__}: {exc}")


def _service_fixture(starter: str, doc: str):
    """A session-scoped fixture running ``memories_geo.testing.services.<starter>``."""

    @pytest.fixture(scope="session")
    def fixture():
        from memories_geo.testing import services

        service = _start(getattr(services, starter))
        yield service
        service.stop()

    fixture.__doc__ = doc
    return fixture


postgres_service = _service_fixture(
    "start_postgres", "A PostgreSQL + PostGIS server for the whole session (``.url`` is the DSN)."
)
s3_service = _service_fixture(
    "start_moto", "moto S3 server; ``.url`` is ``s3://bucket``, ``.options`` the s3fs storage_options."
)
gcs_service = _service_fixture(
    "start_gcs", "gcp-storage-emulator; ``.url`` is ``gs://bucket``, ``.options`` the gcsfs options."
)
azure_service = _service_fixture(
    "start_azurite", "Azurite blob service; ``.url`` is ``az://container``, ``.options`` the adlfs options."
)


@pytest.fixture(scope="session")
def postgres_dsn(postgres_service) -> str:
    """DSN of the session's PostgreSQL + PostGIS database."""
    return postgres_service.url
