"""Moving a stored version between tiers: byte for byte, verified, same id and number."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr
from geopandas.testing import assert_geodataframe_equal

import memories_geo as mg
from memories_geo.errors import ChecksumMismatchError, ReadOnlyError
from memories_geo.examples import sample_raster, sample_vector


def _cube() -> xr.Dataset:
    return sample_raster(seed=3)


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(tmp_path / "home")


def _files(mem: mg.Memory, tier: str, path: str) -> list[Path]:
    root = Path(mem.tiers.backend(tier).full_path(path))
    return [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("kind", ["raster", "vector"])
def test_a_moved_version_keeps_its_id_number_and_bytes(mem, kind):
    obj = _cube() if kind == "raster" else sample_vector()
    entry = mem.save(obj, "moved", tier="hot")
    before = [p.read_bytes() for p in _files(mem, "hot", entry.path)]
    moved = mem.version_store.move(entry, "cold")
    assert (moved.version_id, moved.version, moved.tier) == (entry.version_id, entry.version, "cold")
    assert mem.info("moved").tier == "cold"
    assert [p.read_bytes() for p in _files(mem, "cold", entry.path)] == before
    assert not Path(mem.tiers.backend("hot").full_path(entry.path)).exists()
    mem.verify("moved")
    back = mem.open("moved")
    if kind == "raster":
        xr.testing.assert_identical(back.load(), obj)
    else:
        assert_geodataframe_equal(back, obj)
    log = mem.audit(operation="migrate")
    assert list(log.key) == ["moved"]
    assert "hot -> cold" in log.detail.iloc[0]
    assert mem.recover() == []


def test_a_checkpoint_follows_a_moved_version(mem):
    entry = mem.save(sample_vector(), "pinned")
    mem.checkpoints.save("before-move")
    mem.version_store.move(entry, "warm")
    mem.save(sample_vector().head(3), "pinned", mode="w")
    mem.checkpoints.restore("before-move")
    assert mem.info("pinned").tier == "warm"
    assert_geodataframe_equal(mem.open("pinned"), sample_vector())


def test_a_damaged_source_is_not_moved(mem):
    entry = mem.save(sample_vector(), "damaged")
    path = _files(mem, "hot", entry.path)[0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError):
        mem.version_store.move(entry, "cold")
    assert mem.info("damaged").tier == "hot"
    assert not Path(mem.tiers.backend("cold").full_path(entry.path)).exists()
    assert mem.catalog.pending_moves() == []


def test_a_resumed_move_does_not_copy_again(mem):
    entry = mem.save(_cube(), "resumed")
    source, dest = mem.tiers.backend("hot"), mem.tiers.backend("cold")
    dest.fs.copy(source.full_path(entry.path), dest.full_path(entry.path), recursive=True)
    mem.catalog.begin_move(entry.version_id, "cold", entry.path, dest.url_for(entry.path))
    copied: list[int] = []
    mem.version_store.move(entry, "cold", on_bytes=copied.append)
    assert sum(copied) == entry.size_bytes
    assert "0 bytes copied" in mem.audit(operation="migrate").detail.iloc[0]
    mem.verify("resumed")


def test_files_at_the_destination_without_a_started_move_are_copied_over(mem):
    entry = mem.save(_cube(), "stale")
    source, dest = mem.tiers.backend("hot"), mem.tiers.backend("cold")
    dest.fs.copy(source.full_path(entry.path), dest.full_path(entry.path), recursive=True)
    some = sorted(p for p in dest.fs.find(dest.full_path(entry.path)) if "/c/" in p)[0]
    dest.fs.pipe_file(some, b"stale bytes")
    mem.version_store.move(entry, "cold")
    assert f"{entry.size_bytes} bytes copied" in mem.audit(operation="migrate").detail.iloc[0]
    mem.verify("stale")


def test_a_read_only_collection_refuses_a_move(mem, tmp_path):
    entry = mem.save(sample_vector(), "stay")
    reader = mg.Memory(tmp_path / "home", read_only=True)
    with pytest.raises(ReadOnlyError):
        reader.version_store.move(entry, "cold")
