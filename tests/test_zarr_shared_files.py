"""Zarr appends on an object store share unchanged chunks instead of copying them.

Real moto S3 server: a new version made by an append or a region write holds only its
new chunks and metadata; its manifest lists the chunks it shares with the earlier
version's folder. Reads, verification, deletes of either version, recovery, moves to
another tier, copies, checkpoint backups and dask-backed appends keep every version
exact and take shared files away only with the last version reading them.
"""

import uuid

import boto3
import numpy as np
import pytest
import xarray as xr

import memories_geo as mg
from memories_geo.errors import ChecksumMismatchError
from memories_geo.examples import sample_raster
from memories_geo.integrity import build_manifest

BUCKET = "memories-test"


def _memory(tmp_path, service, **extra):
    prefix = uuid.uuid4().hex[:8]
    tiers = {name: {"url": f"{service.url}/{prefix}/{name}", "storage_options": service.options}
             for name in ("warm", "cold")}
    return mg.Memory(mg.StorageConfig.from_dict({
        "home": str(tmp_path / f"home-{prefix}"), "default_tier": "warm", "tiers": tiers, **extra,
    })), prefix


def _s3(service):
    o = service.options
    return boto3.client("s3", endpoint_url=o["client_kwargs"]["endpoint_url"], region_name="us-east-1",
                        aws_access_key_id=o["key"], aws_secret_access_key=o["secret"])


def _keys(service, prefix):
    pages = _s3(service).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _folder(service, prefix, entry):
    return _keys(service, f"{prefix}/{entry.tier}/{entry.path}/")


@pytest.fixture
def cube():
    return sample_raster()


def _appended(mem, cube, steps=(4, 6)):
    first = mem.save(cube.isel(time=slice(0, steps[0])), "cube",
                     encoding={"t2m": {"chunks": (1, 50, 60)}})
    second = mem.save(cube.isel(time=slice(steps[0], steps[1])), "cube", mode="a", append_dim="time")
    return first, second


def test_an_append_uploads_only_new_chunks_and_reads_back_exactly(tmp_path, s3_service, cube):
    mem, prefix = _memory(tmp_path, s3_service)
    first, second = _appended(mem, cube)
    manifest = mem.catalog.manifest(second)
    own = _folder(s3_service, prefix, second)
    chunk_files = [k for k in own if "/t2m/c/" in k]
    assert len(chunk_files) == 2 * 4
    assert len(manifest.shared) >= 4 * 4
    assert all(owner == first.path.rsplit("/", 1)[1] for owner in manifest.shared.values())
    assert not set(manifest.shared) & {k.split(f"{second.path}/", 1)[1] for k in own}
    xr.testing.assert_identical(mem.open("cube").load(), cube.isel(time=slice(0, 6)))
    xr.testing.assert_identical(mem.open("cube", version=1).load(), cube.isel(time=slice(0, 4)))
    mem.verify("cube")
    assert second.object_info.get("shares_files") is True


def test_digests_taken_while_uploading_equal_a_read_back(tmp_path, s3_service, cube):
    mem, _ = _memory(tmp_path, s3_service)
    first, second = _appended(mem, cube)
    for entry in (first, second):
        location = mem.version_store.location(entry)
        recorded = mem.catalog.manifest(entry)
        read_back = build_manifest(location.fs, location.full_path)
        own = {p: d for p, d in recorded.files.items() if p not in recorded.shared}
        assert own == dict(read_back.files)


def test_three_appends_share_from_the_folder_that_holds_each_chunk(tmp_path, s3_service, cube):
    mem, _prefix = _memory(tmp_path, s3_service)
    first, second = _appended(mem, cube)
    third = mem.save(cube.isel(time=slice(6, 9)), "cube", mode="a", append_dim="time")
    owners = mem.catalog.manifest(third).owners
    assert owners == {first.path.rsplit("/", 1)[1], second.path.rsplit("/", 1)[1]}
    xr.testing.assert_identical(mem.open("cube").load(), cube.isel(time=slice(0, 9)))
    mem.verify("cube")


def test_deleting_the_older_version_keeps_what_the_current_one_reads(tmp_path, s3_service, cube):
    mem, prefix = _memory(tmp_path, s3_service)
    first, second = _appended(mem, cube)
    mem.delete("cube", version=1)
    left = _folder(s3_service, prefix, first)
    assert left
    assert all(k.split(f"{first.path}/", 1)[1] in mem.catalog.manifest(second).shared for k in left)
    mem.recover()
    assert _folder(s3_service, prefix, first) == left
    xr.testing.assert_identical(mem.open("cube").load(), cube.isel(time=slice(0, 6)))
    mem.verify("cube")
    mem.delete("cube")
    assert _keys(s3_service, f"{prefix}/warm/cube/") == []


def test_deleting_the_key_removes_every_shared_file(tmp_path, s3_service, cube):
    mem, prefix = _memory(tmp_path, s3_service)
    _appended(mem, cube)
    mem.save(cube.isel(time=slice(6, 8)), "cube", mode="a", append_dim="time")
    mem.delete("cube")
    assert _keys(s3_service, f"{prefix}/warm/cube/") == []


def test_a_damaged_shared_chunk_fails_both_versions(tmp_path, s3_service, cube):
    mem, prefix = _memory(tmp_path, s3_service)
    first, second = _appended(mem, cube)
    shared = sorted(mem.catalog.manifest(second).shared)
    victim = next(p for p in shared if "/c/" in p and p.startswith("t2m"))
    key = f"{prefix}/warm/{first.path}/{victim}"
    _s3(s3_service).put_object(Bucket=BUCKET, Key=key, Body=b"not a chunk")
    with pytest.raises(ChecksumMismatchError) as failed:
        mem.verify("cube")
    assert victim in str(failed.value)
    _s3(s3_service).delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(ChecksumMismatchError, match="missing"):
        mem.open("cube").load()


def test_moving_the_current_version_copies_its_shared_files(tmp_path, s3_service, cube):
    mem, prefix = _memory(tmp_path, s3_service)
    _first, second = _appended(mem, cube)
    moved = mem.version_store.move(second, "cold")
    manifest = mem.catalog.manifest(moved)
    assert manifest.shared == {}
    assert len(_folder(s3_service, prefix, moved)) == len(manifest.files)
    xr.testing.assert_identical(mem.open("cube").load(), cube.isel(time=slice(0, 6)))
    xr.testing.assert_identical(mem.open("cube", version=1).load(), cube.isel(time=slice(0, 4)))
    mem.verify("cube")
    mem.delete("cube")
    assert _keys(s3_service, f"{prefix}/warm/cube/") == []
    assert _keys(s3_service, f"{prefix}/cold/cube/") == []


def test_moving_the_older_version_keeps_what_the_current_one_reads(tmp_path, s3_service, cube):
    mem, _prefix = _memory(tmp_path, s3_service)
    first, _second = _appended(mem, cube)
    mem.version_store.move(first, "cold")
    xr.testing.assert_identical(mem.open("cube").load(), cube.isel(time=slice(0, 6)))
    xr.testing.assert_identical(mem.open("cube", version=1).load(), cube.isel(time=slice(0, 4)))
    mem.verify("cube")
    mem.recover()
    xr.testing.assert_identical(mem.open("cube").load(), cube.isel(time=slice(0, 6)))


def test_a_copy_to_another_tier_holds_every_file(tmp_path, s3_service, cube):
    mem, prefix = _memory(tmp_path, s3_service)
    _first, second = _appended(mem, cube)
    copied = mem.version_store.copy(second, "cold")
    assert mem.catalog.manifest(copied).shared == {}
    assert len(_folder(s3_service, prefix, copied)) == len(mem.catalog.manifest(copied).files)
    mem.delete("cube", version=2)
    mem.delete("cube", version=1)
    xr.testing.assert_identical(mem.open("cube").load(), cube.isel(time=slice(0, 6)))
    mem.verify("cube")


def test_a_region_write_shares_the_chunks_it_does_not_touch(tmp_path, s3_service, cube):
    mem, prefix = _memory(tmp_path, s3_service)
    mem.save(cube.isel(time=slice(0, 4)), "cube", encoding={"t2m": {"chunks": (1, 50, 60)}})
    patch = cube.isel(time=slice(1, 2)) + 1
    entry = mem.save(patch, "cube", mode="a", region="auto")
    expected = cube.isel(time=slice(0, 4)).copy(deep=True)
    expected["t2m"][1] = patch["t2m"][0]
    xr.testing.assert_identical(mem.open("cube").load(), expected)
    assert len([k for k in _folder(s3_service, prefix, entry) if "/t2m/c/" in k]) == 4
    mem.verify("cube")


def test_a_dask_backed_append_shares_too(tmp_path, s3_service, cube):
    mem, _prefix = _memory(tmp_path, s3_service)
    mem.save(cube.isel(time=slice(0, 4)), "cube", encoding={"t2m": {"chunks": (1, 50, 60)}})
    more = cube.isel(time=slice(4, 6)).chunk({"time": 1, "lat": 50, "lon": 60})
    entry = mem.save(more, "cube", mode="a", append_dim="time")
    assert mem.catalog.manifest(entry).shared
    xr.testing.assert_identical(mem.open("cube").load(), cube.isel(time=slice(0, 6)))
    mem.verify("cube")


def test_checkpoint_backups_hold_every_file_and_restore_a_lost_shared_chunk(tmp_path, s3_service, cube):
    mem, prefix = _memory(tmp_path, s3_service)
    first, second = _appended(mem, cube)
    persistence = mg.MemoryPersistence(primary_storage=mem, backup_storage=tmp_path / "backup")
    checkpoint = persistence.checkpoints.save("nightly")
    assert checkpoint.backed_up
    backed = tmp_path / "backup" / "warm" / second.path
    assert len([p for p in backed.rglob("*") if p.is_file()]) == len(mem.catalog.manifest(second).files)
    victim = next(p for p in sorted(mem.catalog.manifest(second).shared) if "/c/" in p)
    _s3(s3_service).delete_object(Bucket=BUCKET, Key=f"{prefix}/warm/{first.path}/{victim}")
    persistence.checkpoints.restore_from_backup(mem.info("cube"))
    xr.testing.assert_identical(mem.open("cube").load(), cube.isel(time=slice(0, 6)))
    mem.verify("cube")


def test_local_tiers_keep_hard_links(tmp_path, cube):
    mem = mg.Memory(tmp_path / "home")
    mem.save(cube.isel(time=slice(0, 4)), "cube", encoding={"t2m": {"chunks": (1, 50, 60)}})
    second = mem.save(cube.isel(time=slice(4, 6)), "cube", mode="a", append_dim="time")
    assert mem.catalog.manifest(second).shared == {}
    assert "shares_files" not in second.object_info
    chunk = next((tmp_path / "home").rglob(f"{second.version_id}*/t2m/c/0/0/0"))
    assert chunk.stat().st_nlink == 2
    assert np.array_equal(mem.open("cube")["t2m"].values, cube["t2m"].values[:6])
