"""``BackendTests``: the contract every backend must pass, and ``corrupt()`` for files and tables.

Subclass it, provide a ``backend`` fixture, and the protocol is tested::

    class TestMyBackend(BackendTests):
        @pytest.fixture
        def backend(self, tmp_path):
            return make_backend(f"myfs://{tmp_path}")

A backend with ``Capability.FILES`` is also run through a Zarr-free file round trip
(GeoParquet), so a new file store is proven to hold real data, not just small objects.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

import pytest

from memories_geo.backends.base import Backend, Capability, FileStore, Location, TableStore
from memories_geo.errors import InvalidKeyError, TierUnavailableError

if TYPE_CHECKING:
    from memories_geo.entry import Entry
    from memories_geo.memory import Memory

__all__ = ["BackendTests", "corrupt_stored"]


def corrupt_stored(memory: Memory, entry: Entry) -> str:
    """Damage the stored data of ``entry`` in place; return a name ``verify`` must report.

    Files: one byte is flipped in the middle of the largest file (its manifest path is
    returned). Tables: one row is deleted (or, in an empty table, a row of defaults is
    inserted); the table name is returned.
    """
    backend = memory.tiers.backend(entry.tier)
    if Capability.FILES in backend.capabilities:
        return _flip_byte(memory, entry, backend)  # type: ignore[arg-type]
    if Capability.TABLES in backend.capabilities:
        return _change_table(entry, backend)  # type: ignore[arg-type]
    raise NotImplementedError(
        f"corrupt_stored() knows files and tables; override corrupt() for {backend!r}"
    )


def _flip_byte(memory: Memory, entry: Entry, backend: FileStore) -> str:
    manifest = memory.catalog.manifest(entry)
    relative = max(manifest.files, key=lambda p: manifest.files[p].size)
    root = backend.full_path(entry.path)
    single = relative == posixpath.basename(root) and backend.fs.isfile(root)
    target = root if single else posixpath.join(root, relative)
    data = bytearray(backend.fs.cat_file(target))
    data[len(data) // 2] ^= 0xFF
    backend.fs.pipe_file(target, bytes(data))
    return relative


def _change_table(entry: Entry, backend: TableStore) -> str:
    from psycopg import sql

    table = backend.table_for(entry.path)
    assert table is not None, f"no table is registered for {entry.path!r}"
    name = backend.identifier(table)  # type: ignore[attr-defined]
    with backend.connection() as con:  # type: ignore[attr-defined]
        deleted = con.execute(
            sql.SQL("DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} LIMIT 1)").format(t=name)
        ).rowcount
        if not deleted:
            con.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES").format(name))
    return table


class BackendTests:
    """The backend protocol: capabilities, small objects, listing, removal, the tier root."""

    @pytest.fixture
    def backend(self) -> Backend:  # pragma: no cover - always overridden
        """The backend under test, on an empty root (override)."""
        raise NotImplementedError

    def test_is_a_backend(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)
        assert all(isinstance(c, Capability) for c in backend.capabilities)
        if Capability.FILES in backend.capabilities:
            assert isinstance(backend, FileStore)
        if Capability.TABLES in backend.capabilities:
            assert isinstance(backend, TableStore)

    def test_small_objects_round_trip(self, backend: Backend) -> None:
        data = bytes(range(256)) * 3
        backend.write_bytes("a/b/@v/x.record.json", data)
        assert backend.exists("a/b/@v/x.record.json")
        assert backend.read_bytes("a/b/@v/x.record.json") == data
        backend.write_bytes("a/b/@v/x.record.json", b"replaced")
        assert backend.read_bytes("a/b/@v/x.record.json") == b"replaced"

    def test_missing_object_is_file_not_found(self, backend: Backend) -> None:
        assert not backend.exists("nothing/here")
        with pytest.raises(FileNotFoundError):
            backend.read_bytes("nothing/here")

    def test_remove_is_idempotent(self, backend: Backend) -> None:
        backend.write_bytes("k/@v/1.record.json", b"x")
        backend.remove("k/@v/1.record.json")
        assert not backend.exists("k/@v/1.record.json")
        backend.remove("k/@v/1.record.json")

    def test_listdir(self, backend: Backend) -> None:
        assert backend.listdir("empty") == []
        backend.write_bytes("@checkpoints/one.json", b"{}")
        backend.write_bytes("@checkpoints/two.json", b"{}")
        assert backend.listdir("@checkpoints") == ["one.json", "two.json"]

    def test_version_paths_list_versions_and_lone_records(self, backend: Backend) -> None:
        if Capability.LISTING not in backend.capabilities:
            pytest.skip("this backend cannot list")
        backend.write_bytes("x/y/@v/20240101T000000000000Z-aa.bin.record.json", b"{}")
        backend.write_bytes("@checkpoints/c.json", b"{}")
        assert backend.version_paths() == ["x/y/@v/20240101T000000000000Z-aa.bin"]

    def test_paths_never_escape_the_root(self, backend: Backend) -> None:
        for path in ("../outside", "a/../../outside", "/etc/passwd"):
            with pytest.raises(InvalidKeyError):
                backend.write_bytes(path, b"x")

    def test_url_for_hides_credentials(self, backend: Backend) -> None:
        url = backend.url_for("k/@v/1")
        assert "k/@v/1" in url
        for secret in self.secrets(backend):
            assert secret not in url
            assert secret not in repr(backend)

    def secrets(self, backend: Backend) -> list[str]:
        """Credential values that must never appear in URLs or reprs (override to add)."""
        options: Any = getattr(backend, "storage_options", {}) or {}
        keys = ("password", "secret", "key", "token", "account_key", "credential")
        return [str(v) for k, v in options.items() if any(s in k.lower() for s in keys) and v]

    def test_files_backend_holds_a_real_version(self, backend: Backend, tmp_path: Any) -> None:
        if Capability.FILES not in backend.capabilities:
            with pytest.raises(TierUnavailableError, match="files"):
                _ = Location(backend, "layer/@v/1.parquet").fs
            return
        import geopandas as gpd
        import shapely

        from memories_geo.formats.base import WriteOptions
        from memories_geo.formats.registry import get_format
        from memories_geo.query import open_request

        gdf = gpd.GeoDataFrame({"v": [1.5, 2.5]}, geometry=shapely.points([0, 1], [0, 1]), crs="EPSG:4326")
        location = Location(backend, "layer/@v/1.parquet")
        fmt = get_format("geoparquet")
        result = fmt.write(gdf, location, WriteOptions())
        assert fmt.verify(location, result.manifest) == []
        back = fmt.open(location, result.object_info, open_request())
        assert back["v"].tolist() == [1.5, 2.5]
        assert backend.version_paths() == ["layer/@v/1.parquet"]
        fmt.delete(location)
        assert not backend.exists("layer/@v/1.parquet")
