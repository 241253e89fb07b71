"""The shipped ``BackendTests`` on every built-in backend: files, memory, S3, GCS, Azure, PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from memories_geo.backends import Capability, make_backend
from memories_geo.testing import BackendTests


class TestLocalFiles(BackendTests):
    @pytest.fixture
    def backend(self, tmp_path):
        return make_backend((tmp_path / "tier").as_uri())

    def test_local_files_rename_atomically(self, backend):
        assert Capability.ATOMIC_RENAME in backend.capabilities
        assert Capability.SERVER_SIDE_COPY not in backend.capabilities


class TestMemoryFilesystem(BackendTests):
    @pytest.fixture
    def backend(self):
        return make_backend(f"memory://mg-{uuid.uuid4().hex}/tier")


class TestObjectStores(BackendTests):
    @pytest.fixture(params=["s3", "gcs", "azure"])
    def backend(self, request):
        service = request.getfixturevalue(f"{request.param}_service")
        return make_backend(f"{service.url}/{uuid.uuid4().hex[:8]}/tier", service.options)

    def test_object_stores_copy_server_side(self, backend):
        assert Capability.SERVER_SIDE_COPY in backend.capabilities
        assert Capability.ATOMIC_RENAME not in backend.capabilities


@pytest.mark.postgres
class TestPostgres(BackendTests):
    @pytest.fixture
    def backend(self, postgres_dsn):
        import psycopg
        from psycopg import sql

        schema = f"b_{uuid.uuid4().hex[:12]}"
        backend = make_backend(postgres_dsn, {"schema": schema, "password": "pg-canary-secret"})
        yield backend
        backend.close()
        with psycopg.connect(postgres_dsn, autocommit=True) as con:
            con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    def test_tables_not_files(self, backend):
        assert Capability.TABLES in backend.capabilities
        assert Capability.FILES not in backend.capabilities
        assert backend.dialect == "postgresql"
