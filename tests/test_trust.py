"""The commit protocol's trust guarantees: typed failures, publication, recovery races,
the audit log and its journal, read-only collections, and verified opens."""

from __future__ import annotations

import getpass
import posixpath
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal

import memories_geo as mg
from memories_geo.audit_log import read_journal, replay
from memories_geo.backends import Location
from memories_geo.errors import (
    ChecksumMismatchError,
    ConfigError,
    FormatError,
    OptionError,
    ReadOnlyError,
    TierUnavailableError,
    UnsupportedObjectError,
)
from memories_geo.footprint import Footprint, vector_footprint
from memories_geo.formats.base import FileFormat, WriteOptions
from memories_geo.query import OpenRequest
from memories_geo.types import Kind


def _frame(n: int, seed: int = 0) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    return gpd.GeoDataFrame(
        {"v": rng.normal(size=n), "i": np.arange(n, dtype="int32")},
        geometry=shapely.points(rng.uniform(0, 9, n), rng.uniform(40, 50, n)),
        crs="EPSG:4326",
    )


class PublishedFeather(FileFormat):
    """One Feather file per version, with a stable name: a pointer file per key.

    Keys starting with ``fail/`` cannot be written; keys starting with ``unpublishable/``
    cannot be published. ``is_current`` answers are kept for the tests to read.
    """

    name: ClassVar[str] = "trustfeather"
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.VECTOR})
    extension: ClassVar[str] = ".feather"
    currency_answers: ClassVar[list[bool]] = []

    def can_store(self, obj: Any) -> bool:
        return isinstance(obj, gpd.GeoDataFrame)

    def _write(
        self, obj: Any, location: Location, options: WriteOptions
    ) -> tuple[Footprint, Mapping[str, Any]]:
        if location.path.startswith("fail/"):
            raise RuntimeError("the device refused the write")
        location.fs.makedirs(posixpath.dirname(location.full_path), exist_ok=True)
        with location.fs.open(location.full_path, "wb") as f:
            obj.to_feather(f)
        return vector_footprint(obj), {"type": "GeoDataFrame"}

    def open(self, location: Location, object_info: Mapping[str, Any], request: OpenRequest) -> Any:
        with location.fs.open(location.full_path, "rb") as f:
            return gpd.read_feather(f)

    @staticmethod
    def _pointer(key: str) -> str:
        return f"views/{key}.txt"

    def publish(self, location: Location, key: str, *, is_current: Callable[[], bool] | None = None) -> bool:
        if key.startswith("unpublishable/"):
            raise OSError("the view could not be replaced")
        current = True if is_current is None else is_current()
        self.currency_answers.append(current)
        if current:
            location.backend.write_bytes(self._pointer(key), location.path.encode())
        return current

    def unpublish(self, backend: Any, key: str) -> None:
        backend.remove(self._pointer(key))

    def is_published(self, location: Location, key: str) -> bool:
        backend = location.backend
        return bool(backend.exists(self._pointer(key)) and backend.read_bytes(self._pointer(key)).decode()
                    == location.path)


@pytest.fixture(scope="module", autouse=True)
def registered():
    mg.register_format("trustfeather", PublishedFeather)
    yield
    mg.formats.registry.unregister_format("trustfeather")


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(tmp_path / "home")


def _hot(mem: mg.Memory, path: str = "") -> Path:
    return Path(mem.tiers.backend("hot").full_path(path))


def _pointer(mem: mg.Memory, key: str) -> str:
    return mem.tiers.backend(mem.info(key).tier).read_bytes(f"views/{key}.txt").decode()


# -- typed failures (defects 5 and 7) ---------------------------------------------------------


def test_a_writer_failure_is_a_library_error_and_nothing_is_kept(mem):
    with pytest.raises(FormatError, match="RuntimeError: the device refused") as info:
        mem.save(_frame(5), "fail/one", format="trustfeather")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert mem.ls().empty
    assert mem.catalog.staged_versions() == []
    assert list(_hot(mem, "fail").rglob("*.*")) == []
    failed = mem.audit(outcome="error")
    assert list(failed.operation) == ["save"]
    assert list(failed.key) == ["fail/one"]


def test_an_object_dtype_raster_is_refused_as_unsupported(mem):
    import xarray as xr

    values = np.array([[object(), 1], [2, 3]], dtype=object)
    ds = xr.Dataset({"v": (("y", "x"), values)}, coords={"y": [0.5, 1.5], "x": [0.5, 1.5]})
    ds = ds.rio.write_crs("EPSG:4326") if hasattr(ds, "rio") else ds
    with pytest.raises(UnsupportedObjectError):
        mem.save(ds, "raster/object", crs="EPSG:4326")
    assert mem.ls().empty


def test_an_unreachable_object_store_raises_a_typed_error(tmp_path):
    config = mg.StorageConfig.from_dict({
        "catalog": str(tmp_path / "catalog.sqlite"),
        "default_tier": "hot",
        "tiers": {
            "hot": {"url": str(tmp_path / "hot")},
            "cold": {"url": "s3://nowhere/memories", "storage_options": {
                "key": "AKIAEXAMPLE", "secret": "s3cr3t-value",
                "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}},
        },
    })
    mem = mg.Memory(config)
    with pytest.raises(TierUnavailableError) as info:
        mem.save(_frame(3), "remote/one", tier="cold")
    assert "s3cr3t" not in str(info.value)
    assert mem.ls().empty


# -- verification message (defect 10) ---------------------------------------------------------


def test_verify_counts_the_versions_that_failed(mem):
    for i in range(9):
        mem.save(_frame(4, seed=i), f"k{i}")
    path = _hot(mem, mem.info("k3").path)
    target = next(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else path
    target.write_bytes(b"corrupt" + target.read_bytes()[7:])
    with pytest.raises(ChecksumMismatchError, match=r"^1 of 9 version\(s\) failed verification") as info:
        mem.verify()
    assert len(info.value.problems) == 1


# -- catalog locations (defect 14) ------------------------------------------------------------


@pytest.mark.parametrize("url", ["mysql://u:pw@db/geo", "postgresql+psycopg://u:pw@db/geo", "redis://127.0.0.1/0"])
def test_a_catalog_url_of_another_scheme_is_refused_without_creating_a_file(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    config = mg.StorageConfig.from_dict({"catalog": url, "tiers": {"hot": {"url": str(tmp_path / "hot")}}})
    with pytest.raises(ConfigError, match="catalog") as info:
        mg.Memory(config)
    assert "pw" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_an_unreachable_postgresql_catalog_is_a_tier_error_without_creating_a_file(tmp_path, monkeypatch):
    from memories_geo.testing.services import free_port

    monkeypatch.chdir(tmp_path)
    url = f"postgresql://u:secret-pw@127.0.0.1:{free_port()}/geo"
    config = mg.StorageConfig.from_dict({"catalog": url, "tiers": {"hot": {"url": str(tmp_path / "hot")}}})
    with pytest.raises(mg.TierUnavailableError) as info:
        mg.Memory(config)
    assert "secret-pw" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == []


# -- publication (defects 3 and 4, the protocol side) ----------------------------------------


def test_publish_asks_whether_the_version_is_still_current(mem):
    PublishedFeather.currency_answers.clear()
    first = mem.save(_frame(3), "fields", format="trustfeather")
    second = mem.save(_frame(4), "fields", format="trustfeather", mode="w")
    assert PublishedFeather.currency_answers == [True, True]
    mem.version_store.publish(first)
    assert PublishedFeather.currency_answers[-1] is False
    assert _pointer(mem, "fields") == second.path


def test_a_failed_publication_reverts_the_commit(mem):
    with pytest.raises(mg.MemoriesError, match="publishing 'unpublishable/x' v1 failed") as info:
        mem.save(_frame(3), "unpublishable/x", format="trustfeather")
    assert any("not kept" in note for note in info.value.__notes__)
    assert mem.ls().empty
    assert mem.catalog.all_versions(include_retired=True) == []
    assert not list(_hot(mem, "unpublishable").rglob("*.feather"))
    reverted = mem.audit(outcome="error")
    assert "commit reverted" in reverted.detail.iloc[-1]


def test_recover_republishes_a_view_that_lags_the_catalog(mem):
    first = mem.save(_frame(3), "lagging", format="trustfeather")
    second = mem.save(_frame(4), "lagging", format="trustfeather", mode="w")
    backend = mem.tiers.backend(second.tier)
    backend.write_bytes("views/lagging.txt", first.path.encode())
    mem.recover()
    assert _pointer(mem, "lagging") == second.path


# -- recover() against a concurrent writer (defect 6) ---------------------------------------


def test_recover_never_removes_a_version_written_while_it_runs(mem):
    mem.save(_frame(3), "before")
    backend = mem.tiers.backend("hot")
    listing = backend.version_paths
    written: list[mg.Entry] = []

    def list_after_a_concurrent_save() -> list[str]:
        other = mg.Memory(mem.config)
        worker = threading.Thread(target=lambda: written.append(other.save(_frame(5), "during")))
        worker.start()
        worker.join()
        return listing()

    backend.version_paths = list_after_a_concurrent_save  # type: ignore[method-assign]
    try:
        removed = mem.recover()
    finally:
        del backend.version_paths
    assert removed == []
    assert written
    assert mem.verify("during") == [written[0]]
    assert_geodataframe_equal(mem.open("during"), _frame(5))


# -- verified opens (defect 9, the open side) ----------------------------------------------


def test_open_verify_detects_a_flipped_byte(mem):
    entry = mem.save(_frame(50), "parquet/one", format="geoparquet")
    root = _hot(mem, entry.path)
    target = root if root.is_file() else max(root.rglob("*.parquet"), key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="parquet/one"):
        mem.open("parquet/one", verify=True)


def test_open_verify_returns_the_data_when_intact(mem):
    mem.save(_frame(20), "intact")
    assert_geodataframe_equal(mem.open("intact", verify=True), _frame(20))


# -- the audit log -----------------------------------------------------------------------------


def test_every_mutation_is_audited_with_who_and_where(mem):
    mem.save(_frame(3), "a")
    mem.save(_frame(4), "a", mode="w")
    mem.save(_frame(5), "b")
    mem.delete("a", version=1)
    mem.checkpoints.save("daily")
    mem.delete("b")
    mem.checkpoints.restore("daily")
    mem.recover()
    log = mem.audit()
    assert list(log.operation) == [
        "save", "save", "save", "delete_version", "checkpoint.save", "delete", "checkpoint.save", "restore",
        "recover",
    ]
    assert set(log.user) == {getpass.getuser()}
    assert set(log.host) == {socket.gethostname()}
    assert set(log.outcome) == {"ok"}
    assert log.seq.is_monotonic_increasing
    assert log["at"].is_monotonic_increasing
    assert isinstance(log["at"].dtype, pd.DatetimeTZDtype)
    assert str(log["at"].dt.tz) == "UTC"
    assert list(mem.audit("a").version.dropna()) == [1, 2, 1]
    assert list(mem.audit(operation="delete").key) == ["b"]
    assert mem.audit(since=pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=1)).empty
    with pytest.raises(OptionError, match="valid"):
        mem.audit(operation="rename")


def test_the_journal_replays_to_the_catalog_state(mem):
    mem.save(_frame(3), "a")
    mem.save(_frame(4), "b")
    mem.checkpoints.save("one")
    mem.save(_frame(5), "a", mode="w")
    mem.delete("b")
    mem.save(_frame(6), "c")
    records = read_journal(mem.version_store.journal_store)
    assert [r["seq"] for r in records] == list(mem.audit().seq)
    expected = {e.key: e.version_id for e in mem.catalog.current_entries()}
    assert replay(records) == expected
    mem.checkpoints.restore("one")
    records = read_journal(mem.version_store.journal_store)
    assert replay(records) == {e.key: e.version_id for e in mem.catalog.current_entries()}
    assert set(replay(records)) == {"a", "b"}


def test_the_audit_log_holds_no_secret(tmp_path):
    secret = "pa55-w0rd-XYZ"
    config = mg.StorageConfig.from_dict({
        "catalog": str(tmp_path / "catalog.sqlite"),
        "default_tier": "hot",
        "tiers": {
            "hot": {"url": str(tmp_path / "hot")},
            "db": {"url": f"postgresql://me:{secret}@127.0.0.1:9/geo"},
        },
    })
    mem = mg.Memory(config)
    mem.save(_frame(3), "fine")
    with pytest.raises(mg.MemoriesError):
        mem.save(_frame(3), "remote", tier="db")
    log = mem.audit()
    assert secret not in log.to_csv()
    journal = Path(tmp_path / "hot" / "@journal")
    assert all(secret not in p.read_text() for p in journal.iterdir())


# -- read-only collections ---------------------------------------------------------------


def test_a_read_only_collection_refuses_every_mutation(tmp_path):
    writable = mg.Memory(tmp_path / "home")
    writable.save(_frame(3), "kept")
    writable.checkpoints.save("daily")
    mem = mg.Memory(tmp_path / "home", read_only=True)
    assert mem.read_only
    assert_geodataframe_equal(mem.open("kept"), _frame(3))
    assert mem.verify()
    assert len(mem.audit()) == 2
    refused: list[Callable[[], Any]] = [
        lambda: mem.save(_frame(4), "new"),
        lambda: mem.save(_frame(4), "kept", mode="w"),
        lambda: mem.delete("kept"),
        mem.recover,
        lambda: mem.checkpoints.save("again"),
        lambda: mem.checkpoints.restore("daily"),
        lambda: mem.checkpoints.delete("daily"),
    ]
    for operation in refused:
        with pytest.raises(ReadOnlyError, match="read-only"):
            operation()
    assert isinstance(ReadOnlyError("x"), PermissionError)
    assert list(mem.ls().key) == ["kept"]
    assert mem.versions("kept")[-1].version == 1
    assert len(mem.audit()) == 2


def test_the_command_line_shows_the_audit_log(mem, capsys):
    import json

    from memories_geo.cli import main

    mem.save(_frame(3), "cli/a")
    mem.delete("cli/a")
    home = str(mem.catalog.path.parent)
    capsys.readouterr()
    assert main(["--config", home, "audit", "cli/*", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [(r["operation"], r["key"], r["version"]) for r in records] == [
        ("save", "cli/a", 1), ("delete", "cli/a", None),
    ]
    assert main(["--config", home, "audit", "--operation", "delete"]) == 0
    shown = capsys.readouterr().out
    assert "delete" in shown
    assert "cli/a" in shown
    assert main(["--config", home, "audit", "--operation", "rename"]) != 0


def test_recover_leaves_a_recent_version_staged_on_another_host(mem):
    import sqlite3

    staged = mem.catalog.stage(
        key="remote/worker", version_id="from-a-worker", tier="hot", format="geoparquet", kind="vector",
        path="remote/worker/@v/from-a-worker.parquet", uri="x",
    )
    with sqlite3.connect(mem.catalog.path) as con:
        con.execute("UPDATE versions SET writer = 'dask-worker-7:4242' WHERE id = ?", (staged.pk,))
    backend = mem.tiers.backend("hot")
    backend.makedirs("remote/worker/@v")
    backend.fs.pipe_file(backend.full_path(staged.path), b"being written")
    assert mem.recover() == []
    assert backend.exists(staged.path)
    assert [s.version_id for s in mem.catalog.staged_versions()] == ["from-a-worker"]
    with sqlite3.connect(mem.catalog.path) as con:
        con.execute("UPDATE versions SET created_at = '2000-01-01' WHERE id = ?", (staged.pk,))
    assert len(mem.recover()) == 1
    assert not backend.exists(staged.path)


# -- interrupted checkpoint deletions (found by the crash-injection suite) ----------------


def _manifests(mem: mg.Memory) -> list[str]:
    folder = _hot(mem, "@checkpoints")
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_recover_finishes_a_checkpoint_deletion_killed_after_its_catalog_row(mem):
    mem.save(_frame(3), "a")
    cp = mem.checkpoints.save("c")
    mem.version_store.audit("checkpoint.delete", detail=cp.id)
    mem.catalog.delete_checkpoint(cp.id)
    assert _manifests(mem) == [f"{cp.id}.json"]
    mem.recover()
    assert _manifests(mem) == []
    assert list(mg.RecoveryManager(mem).list_checkpoints()) == []


def test_recover_finishes_a_checkpoint_deletion_killed_before_its_catalog_row(mem):
    mem.save(_frame(3), "a")
    cp = mem.checkpoints.save("c")
    mem.version_store.audit("checkpoint.delete", detail=cp.id)
    assert [c.id for c in mem.checkpoints.list()] == [cp.id]
    mem.recover()
    assert list(mem.checkpoints.list()) == []
    assert _manifests(mem) == []
