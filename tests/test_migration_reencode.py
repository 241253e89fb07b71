"""Migrations that copy bytes into a new version, and migrations that re-encode
(Zarr blosc-lz4 -> zstd with shards, a COG profile change), checked on the stored bytes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr

import memories_geo as mg
from memories_geo.errors import OptionError
from memories_geo.examples import sample_vector
from memories_geo.lifecycle import MigrationJob, execute_migration


def _tiers(tmp_path: Path, **extra: Any) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "tiers": {
            "hot": {"url": str(tmp_path / "hot"), "compression": "fast"},
            "glacier": {"url": str(tmp_path / "glacier"), "compression": "maximum"},
            **extra,
        },
    }))


def _array_codecs(mem: mg.Memory, key: str, variable: str) -> list[dict[str, Any]]:
    entry = mem.info(key)
    root = Path(mem.tiers.backend(entry.tier).full_path(entry.path))
    return json.loads((root / variable / "zarr.json").read_text())["codecs"]


def _cube(times: int = 6, size: int = 160) -> xr.Dataset:
    rng = np.random.default_rng(3)
    data = rng.normal(size=(times, size, size)).astype("float32")
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-01") + times, dtype="datetime64[D]")
    return xr.Dataset(
        {"t2m": (("time", "y", "x"), data, {"units": "K"})},
        coords={"time": days.astype("datetime64[ns]"),
                "y": np.linspace(50, 40, size), "x": np.linspace(0, 16, size)},
    ).rio.write_crs("EPSG:4326")


def _files(root: Path) -> dict[str, bytes]:
    if root.is_file():
        return {root.name: root.read_bytes()}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_keeping_the_source_copies_the_bytes_into_a_new_version(tmp_path: Path) -> None:
    mem = _tiers(tmp_path)
    cube = _cube()
    source = mem.save(cube, "cube", tier="hot")
    job = MigrationJob(source_tier="hot", destination_tier="glacier", delete_after_migration=False)
    status = execute_migration(mem, job)
    assert [k.how for k in status.keys] == ["copy"]
    assert status.bytes_migrated == source.size_bytes
    copy = mem.info("cube")
    assert (copy.version, copy.tier, copy.checksum) == (2, "glacier", source.checksum)
    assert copy.version_id != source.version_id
    assert (copy.bbox, copy.time_start, copy.variables, dict(copy.shape)) == (
        source.bbox, source.time_start, source.variables, dict(source.shape))
    old = Path(mem.tiers.backend("hot").full_path(source.path))
    new = Path(mem.tiers.backend("glacier").full_path(copy.path))
    assert _files(new) == _files(old)
    assert _array_codecs(mem, "cube", "t2m")[-1]["configuration"]["cname"] == "lz4"
    xr.testing.assert_identical(mem.open("cube").load(), cube)
    xr.testing.assert_identical(mem.open("cube", version=1).load(), cube)
    mem.verify("cube", all_versions=True)
    assert mem.recover() == []
    assert [r.operation for r in mem.audit(key="cube").itertuples()][-1] == "migrate"


def test_a_byte_copy_to_s3_is_a_new_verified_version(tmp_path: Path, s3_service: Any) -> None:
    mem = _tiers(tmp_path, warm={"url": f"{s3_service.url}/{uuid.uuid4().hex[:8]}/warm",
                                 "storage_options": s3_service.options})
    layer = sample_vector()
    source = mem.save(layer, "fields", tier="hot")
    execute_migration(mem, MigrationJob(source_tier="hot", destination_tier="warm",
                                        delete_after_migration=False))
    copy = mem.info("fields")
    assert (copy.version, copy.tier, copy.size_bytes) == (2, "warm", source.size_bytes)
    digests = [list(mem.catalog.manifest(e).files.values()) for e in (source, copy)]
    assert digests[0] == digests[1]
    assert list(mem.catalog.manifest(copy).files) == [copy.path.rsplit("/", 1)[1]]
    assert copy.uri.startswith("s3://")
    mem.verify("fields", all_versions=True)
    from geopandas.testing import assert_geodataframe_equal

    assert_geodataframe_equal(mem.open("fields"), layer)


def test_reencoding_turns_lz4_chunks_into_sharded_zstd(tmp_path: Path) -> None:
    mem = _tiers(tmp_path)
    cube = _cube(times=24, size=512)
    source = mem.save(cube, "cube", tier="hot")
    assert _array_codecs(mem, "cube", "t2m")[-1]["configuration"]["cname"] == "lz4"
    job = MigrationJob(source_tier="hot", destination_tier="glacier", reencode=True)
    status = execute_migration(mem, job)
    assert [k.how for k in status.keys] == ["re-encode zarr"]
    moved = mem.info("cube")
    assert (moved.tier, moved.format, moved.version) == ("glacier", "zarr", 2)
    assert moved.checksum != source.checksum
    codecs = _array_codecs(mem, "cube", "t2m")
    assert codecs[0]["name"] == "sharding_indexed"
    inner = codecs[0]["configuration"]["codecs"]
    assert inner[-1]["configuration"]["cname"] == "zstd"
    xr.testing.assert_identical(mem.open("cube").load(), cube)
    assert [e.version for e in mem.versions("cube")] == [2]
    assert not Path(mem.tiers.backend("hot").full_path(source.path)).exists()


def test_a_cog_profile_change_in_place(tmp_path: Path) -> None:
    mem = _tiers(tmp_path)
    image = _cube()["t2m"].isel(time=0, drop=True)
    first = mem.save(image, "image", tier="hot")
    assert first.format == "cog"

    def blocks() -> tuple[int, int]:
        entry = mem.info("image")
        with rasterio.open(mem.tiers.backend(entry.tier).full_path(entry.path)) as src:
            return tuple(src.block_shapes[0])

    before = blocks()
    original = mem.open("image").load()
    job = MigrationJob(source_tier="hot", destination_tier="hot", format_options={"blocksize": 256})
    assert job.reencode
    status = execute_migration(mem, job)
    assert [k.how for k in status.keys] == ["re-encode cog"]
    assert blocks() == (256, 256) != before
    assert mem.info("image").version == 2
    xr.testing.assert_identical(mem.open("image").load(), original)


def test_format_options_are_checked_against_the_destination_format(tmp_path: Path) -> None:
    mem = _tiers(tmp_path)
    mem.save(_cube(), "cube", tier="hot")
    with pytest.raises(OptionError, match=r"migration to 'zarr' does not take 'blocksize'"):
        execute_migration(mem, MigrationJob(source_tier="hot", destination_tier="glacier",
                                            format_options={"blocksize": 256}))
    assert mem.info("cube").tier == "hot"
    with pytest.raises(OptionError, match="format_options must map"):
        MigrationJob(source_tier="hot", destination_tier="glacier", format_options=[("blocksize", 1)])  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="reencode must be True or False"):
        MigrationJob(source_tier="hot", destination_tier="glacier", reencode="yes")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match=r"reencode=True"):
        MigrationJob(source_tier="hot", destination_tier="hot")
    job = MigrationJob(source_tier="hot", destination_tier="glacier", reencode=True, format_options={"a": 1})
    assert MigrationJob.from_dict(job.to_dict()) == job
    assert "re-encoded (a=1)" in job.describe()


def test_a_policy_can_reencode_on_the_way_down(tmp_path: Path) -> None:
    from memories_geo.lifecycle.policies import apply_policies

    mem = mg.Memory(mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "tiers": {"hot": {"url": str(tmp_path / "hot"), "compression": "fast"},
                  "glacier": {"url": str(tmp_path / "glacier"), "compression": "maximum"}},
        "lifecycle": [{"from": "hot", "to": "glacier", "kinds": "raster", "reencode": True}],
    }))
    cube = _cube()
    mem.save(cube, "cube", tier="hot")
    (status,) = apply_policies(mem.version_store)
    assert [k.how for k in status.keys] == ["re-encode zarr"]
    assert _array_codecs(mem, "cube", "t2m")[-1]["configuration"]["cname"] == "zstd"
    xr.testing.assert_identical(mem.open("cube").load(), cube)
