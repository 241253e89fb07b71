"""Storage classes, archive restores and retention at the backend level, on real servers.

S3 on moto (classes, the Glacier restore path, Object Lock), Azure Blob on Azurite
(access tiers, archive and rehydration), GCS on gcp-storage-emulator (the rewrite
requests; the emulator does not keep the class), and the configuration's checks.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from geopandas import GeoDataFrame
from shapely.geometry import Point

import memories_geo as mg
from memories_geo.backends import Capability, make_backend, register_backend
from memories_geo.backends.base import ArchiveState, ArchiveStore, Location
from memories_geo.backends.files import FileBackend
from memories_geo.config import StorageConfig, TierConfig
from memories_geo.examples import sample_raster
from memories_geo.formats.base import WriteOptions
from memories_geo.formats.registry import get_format
from memories_geo.integrity import Manifest, build_manifest, verify_manifest
from memories_geo.records import RECORD_SUFFIX
from memories_geo.storage_policy import Retention, check_retention, parse_period

ZARR = "era5/t2m/@v/v1.zarr"
PARQUET = "fields/@v/v1.parquet"


def _backend(service: Any, storage_class: str | None, prefix: str | None = None) -> FileBackend:
    url = f"{service.url}/{prefix or uuid.uuid4().hex[:8]}"
    backend = make_backend(url, service.options, storage_class=storage_class)
    assert isinstance(backend, FileBackend)
    assert isinstance(backend, ArchiveStore)
    return backend


def _write_versions(backend: FileBackend) -> dict[str, Manifest]:
    """A Zarr version (a folder of objects), a GeoParquet version (one object) and their records."""
    rng = np.random.default_rng(3)
    gdf = GeoDataFrame({"v": rng.normal(size=20)},
                       geometry=[Point(x, y) for x, y in rng.uniform(0, 5, (20, 2))], crs="EPSG:4326")
    manifests = {}
    raster = sample_raster().isel(time=slice(0, 3))
    for path, fmt, obj in ((ZARR, "zarr", raster), (PARQUET, "geoparquet", gdf)):
        result = get_format(fmt).write(obj, Location(backend, path), WriteOptions())
        backend.write_bytes(path + RECORD_SUFFIX, b'{"record": true}')
        manifests[path] = result.manifest
    return manifests


def _boto(service: Any) -> Any:
    import boto3

    options = service.options
    return boto3.client(
        "s3", endpoint_url=options["client_kwargs"]["endpoint_url"], region_name="us-east-1",
        aws_access_key_id=options["key"], aws_secret_access_key=options["secret"],
    )


def _heads(service: Any, backend: FileBackend) -> dict[str, dict[str, Any]]:
    """Every object under the backend's root, as S3 ``head_object`` reports it."""
    client = _boto(service)
    bucket, _, prefix = backend.root.partition("/")
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for item in page.get("Contents", []):
            found[item["Key"].removeprefix(prefix + "/")] = client.head_object(Bucket=bucket, Key=item["Key"])
    return found


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "given", "kept"), [
    ("s3://b/cold", "glacier", "GLACIER"),
    ("s3://b/warm", "Standard_IA", "STANDARD_IA"),
    ("s3a://b/cold", "DEEP_ARCHIVE", "DEEP_ARCHIVE"),
    ("gs://b/cold", "coldline", "COLDLINE"),
    ("gcs://b/glacier", "ARCHIVE", "ARCHIVE"),
    ("az://c/cool", "COOL", "Cool"),
    ("abfs://c/cold", "cold", "Cold"),
    ("az://c/archive", "archive", "Archive"),
])
def test_storage_classes_are_normalised_per_store(url: str, given: str, kept: str) -> None:
    assert TierConfig(url=url, storage_class=given).storage_class == kept
    config = StorageConfig.from_dict({"tiers": {"cold": {"url": url, "storage_class": given}}})
    assert config.tiers["cold"].storage_class == kept


@pytest.mark.parametrize(("url", "given", "named"), [
    ("s3://b/cold", "NEARLINE", "GLACIER_IR"),
    ("gs://b/cold", "GLACIER", "COLDLINE"),
    ("az://c/cool", "cool_tier", "Cold"),
])
def test_an_unknown_class_names_the_accepted_ones(url: str, given: str, named: str) -> None:
    with pytest.raises(mg.ConfigError, match=named) as info:
        StorageConfig.from_dict({"tiers": {"cold": {"url": url, "storage_class": given}}})
    assert "tiers.cold.storage_class" in str(info.value)
    assert repr(given) in str(info.value)


@pytest.mark.parametrize("url", ["/data/hot", "file:///data/hot", "memory://x/hot",
                                 "postgresql://me:pw@db/geo"])
def test_tiers_without_classes_refuse_one(url: str) -> None:
    with pytest.raises(mg.ConfigError, match="remove 'storage_class'") as info:
        TierConfig(url=url, storage_class="GLACIER")
    assert "pw" not in str(info.value)
    with pytest.raises(mg.ConfigError, match="storage class"):
        make_backend("memory://x/hot", storage_class="GLACIER")


def test_the_embedded_tiers_have_no_class() -> None:
    assert {t.storage_class for t in StorageConfig.embedded("/tmp/mg-sc").tiers.values()} == {None}


def test_a_class_set_twice_on_s3_is_refused() -> None:
    options = {"s3_additional_kwargs": {"StorageClass": "STANDARD"}}
    with pytest.raises(mg.ConfigError, match="one place"):
        FileBackend("s3://b/cold", options, storage_class="GLACIER_IR")
    same = FileBackend("s3://b/cold", {"s3_additional_kwargs": {"StorageClass": "GLACIER_IR"}},
                       storage_class="glacier_ir")
    assert same.storage_options["s3_additional_kwargs"] == {"StorageClass": "GLACIER_IR"}


def test_only_classes_readable_at_once_go_with_s3_uploads() -> None:
    both = FileBackend("s3://b/w", storage_class="STANDARD_IA", encryption={"algorithm": "AES256"})
    assert both.storage_options["s3_additional_kwargs"] == {
        "ServerSideEncryption": "AES256", "StorageClass": "STANDARD_IA"}
    assert not FileBackend("s3://b/c", storage_class="GLACIER").storage_options.get("s3_additional_kwargs")


def test_a_backend_that_takes_no_class_refuses_it(tmp_path: Path) -> None:
    class Plain(FileBackend):
        def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
            super().__init__(url, storage_options)

    register_backend("plainsc", Plain)
    with pytest.raises(mg.ConfigError, match="takes no storage_class setting"):
        make_backend("plainsc://b/w", storage_class="GLACIER")
    assert isinstance(make_backend("plainsc://b/w"), Plain)


@pytest.mark.parametrize(("text", "days"), [
    ("10years", 3660), ("10 years", 3660), ("1 year", 366), ("6 months", 186), ("30 days", 30),
    ("2 weeks", 14), ("1d", 1), (" 3 Days ", 3), (45, 45), (timedelta(hours=36), 1),
])
def test_periods(text: Any, days: int) -> None:
    assert parse_period(text).days == days


@pytest.mark.parametrize("text", ["10", "ten years", "10 eons", "-1 days", "0 days", "", True, None])
def test_bad_periods(text: Any) -> None:
    with pytest.raises(mg.ConfigError, match="period"):
        parse_period(text)


def test_retention_spellings() -> None:
    original = {"immutable": True, "retention_period": "10years", "versioning": True}
    tiers = {
        "cold": {"url": "s3://b/cold", "backup_policy": original},
        "warm": {"url": "s3://b/warm", "retention": {"period": "30 days"}},
        "hot": {"url": "hot", "retention": {"period": "6 months", "mode": "Compliance"}},
        "glacier": {"url": "gs://b/g", "backup_policy": {"immutable": False, "retention_period": "1 year"}},
    }
    config = StorageConfig.from_dict({"tiers": tiers})
    got = {n: (t.retention_period, t.retention_mode) for n, t in config.tiers.items()}
    assert got == {
        "cold": (timedelta(days=3660), "compliance"),
        "warm": (timedelta(days=30), "governance"),
        "hot": (timedelta(days=186), "compliance"),
        "glacier": (timedelta(days=366), "governance"),
    }
    assert "retention='3660 days, compliance'" in repr(config.tiers["cold"])
    assert config.tiers["cold"].retention == Retention(timedelta(days=3660), "compliance")
    assert check_retention(backup_policy={"versioning": True}) is None
    plain = TierConfig(url="s3://b/x")
    assert (plain.retention, plain.retention_period, plain.retention_mode) == (None, None, None)
    given = TierConfig(url="s3://b/x", retention={"period": "2 weeks"})  # type: ignore[arg-type]
    assert given.retention == Retention("2 weeks") == Retention(timedelta(days=14), "governance")


@pytest.mark.parametrize(("tier", "match"), [
    ({"retention": {"period": "1 year"}, "backup_policy": {"immutable": True}}, "set retention once"),
    ({"retention": {"period": "1 year", "mode": "strict"}}, "governance"),
    ({"retention": {"mode": "compliance"}}, "needs a period"),
    ({"retention": {"period": "1 year", "until": "2030"}}, "unknown settings"),
    ({"retention_mode": "compliance"}, "unknown settings"),
    ({"retention": "10 years"}, "must be a table"),
    ({"backup_policy": {"immutable": True}}, "immutable needs a retention_period"),
    ({"backup_policy": {"retention_period": "1 year", "versioning": False}}, "versioning cannot"),
    ({"backup_policy": {"retention_period": "1 yr"}}, "not a period"),
    ({"backup_policy": {"immutable": "yes", "retention_period": "1 year"}}, "true or false"),
])
def test_bad_retention(tier: dict[str, Any], match: str) -> None:
    with pytest.raises(mg.ConfigError, match=match) as info:
        StorageConfig.from_dict({"tiers": {"cold": {"url": "s3://b/cold", **tier}}})
    assert "tiers.cold" in str(info.value)


# -- local tiers: nothing to do -----------------------------------------------------------------


def test_a_local_tier_has_no_classes_restores_or_locks(tmp_path: Path) -> None:
    backend = make_backend((tmp_path / "hot").as_uri())
    assert isinstance(backend, FileBackend)
    caps = backend.capabilities
    assert not caps & {Capability.STORAGE_CLASSES, Capability.RESTORE, Capability.OBJECT_LOCK}
    _write_versions(backend)
    backend.apply_storage_class(ZARR)
    assert backend.archive_state(ZARR) == ArchiveState("online")
    assert backend.request_restore(ZARR) == ArchiveState("online")
    with pytest.raises(mg.TierUnavailableError, match="storage_classes"):
        backend.storage_classes(ZARR)
    with pytest.raises(mg.TierUnavailableError, match="object_lock"):
        backend.apply_retention(ZARR, datetime.now(UTC) + timedelta(days=1), mode="governance")


# -- S3 (moto) -------------------------------------------------------------------------------------


def test_s3_capabilities(s3_service: Any) -> None:
    caps = _backend(s3_service, None).capabilities
    assert {Capability.STORAGE_CLASSES, Capability.RESTORE, Capability.OBJECT_LOCK} <= caps


@pytest.mark.parametrize("storage_class", ["STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"])
def test_s3_classes_readable_at_once_are_set_by_every_upload(s3_service: Any, storage_class: str) -> None:
    backend = _backend(s3_service, storage_class)
    manifests = _write_versions(backend)
    before = _heads(s3_service, backend)
    assert len(before) > 10
    assert {k for k, h in before.items() if h.get("StorageClass") != storage_class} == set()
    backend.apply_storage_class(ZARR)
    backend.apply_storage_class(PARQUET)
    after = _heads(s3_service, backend)
    assert {k: h["ETag"] for k, h in after.items()} == {k: h["ETag"] for k, h in before.items()}
    assert [h["LastModified"] for h in after.values()] == [h["LastModified"] for h in before.values()]
    classes = backend.storage_classes(ZARR)
    assert set(classes) == set(manifests[ZARR].files)
    assert set(classes.values()) == {storage_class}
    assert backend.storage_classes(PARQUET) == {"v1.parquet": storage_class}
    assert backend.archive_state(ZARR) == ArchiveState("online")


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
def test_the_s3_glacier_path(s3_service: Any, storage_class: str) -> None:
    """Written STANDARD (so it can be read back for its checksums), then moved into the class:
    archived -> reading refused -> restore requested -> restored until T -> reading works."""
    backend = _backend(s3_service, storage_class)
    manifests = _write_versions(backend)
    assert set(backend.storage_classes(ZARR).values()) == {"STANDARD"}
    assert backend.archive_state(ZARR) == ArchiveState("online")
    for path in (ZARR, PARQUET):
        backend.apply_storage_class(path)
    heads = _heads(s3_service, backend)
    classes = {k: h.get("StorageClass", "STANDARD") for k, h in heads.items()}
    assert {k: c for k, c in classes.items() if not k.endswith(RECORD_SUFFIX) and c != storage_class} == {}
    assert {c for k, c in classes.items() if k.endswith(RECORD_SUFFIX)} == {"STANDARD"}
    assert set(backend.storage_classes(ZARR).values()) == {storage_class}
    assert backend.read_bytes(ZARR + RECORD_SUFFIX) == b'{"record": true}'

    assert backend.archive_state(ZARR) == ArchiveState("archived")
    with pytest.raises(PermissionError, match="storage class"):
        backend.fs.cat_file(backend.full_path(PARQUET))
    with pytest.raises(PermissionError):
        verify_manifest(backend.fs, backend.full_path(ZARR), manifests[ZARR])

    if storage_class == "DEEP_ARCHIVE":
        with pytest.raises(mg.OptionError, match="expedited"):
            backend.request_restore(ZARR, tier="expedited")
    state = backend.request_restore(ZARR, days=2, tier="Bulk")
    assert state.state == "restored"
    assert state.until is not None
    assert abs(state.until - (datetime.now(UTC) + timedelta(days=2))) < timedelta(minutes=5)
    assert backend.archive_state(ZARR) == state
    assert verify_manifest(backend.fs, backend.full_path(ZARR), manifests[ZARR]) == []
    assert backend.archive_state(PARQUET) == ArchiveState("archived")
    assert backend.request_restore(PARQUET).state == "restored"
    assert verify_manifest(backend.fs, backend.full_path(PARQUET), manifests[PARQUET]) == []


@pytest.fixture
def slow_restores(s3_service: Any) -> Iterator[int]:
    """Make moto's restores take ``seconds`` (its state manager, through the server's own API)."""
    seconds = 3
    endpoint = s3_service.options["client_kwargs"]["endpoint_url"]

    def post(route: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(f"{endpoint}/moto-api/state-manager/{route}",
                                         data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201

    post("set-transition", {"model_name": "s3::keyrestore",
                            "transition": {"progression": "time", "seconds": seconds}})
    try:
        yield seconds
    finally:
        post("unset-transition", {"model_name": "s3::keyrestore"})


def test_an_s3_restore_in_progress_is_restoring(s3_service: Any, slow_restores: int) -> None:
    import time

    backend = _backend(s3_service, "GLACIER")
    manifests = _write_versions(backend)
    backend.apply_storage_class(PARQUET)
    time.sleep(slow_restores + 0.5)
    assert backend.request_restore(PARQUET, days=1).state == "restoring"
    with pytest.raises(PermissionError):
        build_manifest(backend.fs, backend.full_path(PARQUET))
    assert backend.request_restore(PARQUET, days=1).state == "restoring"
    time.sleep(slow_restores + 0.5)
    state = backend.archive_state(PARQUET)
    assert state.state == "restored"
    assert state.until is not None
    assert verify_manifest(backend.fs, backend.full_path(PARQUET), manifests[PARQUET]) == []


def test_restore_requests_are_checked(s3_service: Any, tmp_path: Path) -> None:
    backend = _backend(s3_service, "GLACIER")
    with pytest.raises(mg.OptionError, match="'bulk', 'expedited', 'standard'"):
        backend.request_restore(ZARR, tier="fast")
    for days in (0, -1, 1.5, True):
        with pytest.raises(mg.OptionError, match="days"):
            backend.request_restore(ZARR, days=days)  # type: ignore[arg-type]
    local = make_backend((tmp_path / "hot").as_uri())
    assert isinstance(local, FileBackend)
    with pytest.raises(mg.OptionError, match="standard"):
        local.request_restore(ZARR, tier="fast")


@pytest.fixture(scope="module")
def locked_bucket(s3_service: Any) -> str:
    name = f"locked-{uuid.uuid4().hex[:8]}"
    _boto(s3_service).create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.mark.parametrize("mode", ["governance", "compliance"])
def test_s3_object_lock_on_every_object(s3_service: Any, locked_bucket: str, mode: str) -> None:
    url = f"s3://{locked_bucket}/{uuid.uuid4().hex[:8]}"
    backend = make_backend(url, s3_service.options)
    assert isinstance(backend, FileBackend)
    backend.check_object_lock()
    manifests = _write_versions(backend)
    until = datetime.now(UTC) + timedelta(days=3)
    backend.apply_retention(ZARR, until, mode=mode)
    backend.apply_retention(PARQUET, until, mode=mode.upper())
    heads = _heads(s3_service, backend)
    data = {k: h for k, h in heads.items() if not k.endswith(RECORD_SUFFIX)}
    assert len(data) == len(manifests[ZARR].files) + 1
    assert {h.get("ObjectLockMode") for h in data.values()} == {mode.upper()}
    assert all(abs(h["ObjectLockRetainUntilDate"] - until) < timedelta(seconds=1) for h in data.values())
    locks = backend.object_locks(ZARR)
    assert set(locks) == set(manifests[ZARR].files)
    assert {lock[0] for lock in locks.values() if lock} == {mode}
    assert set(backend.object_locks(f"{ZARR}{RECORD_SUFFIX}").values()) == {None}

    client = _boto(s3_service)
    key = f"{backend.root.partition('/')[2]}/{PARQUET}"
    version = heads[PARQUET]["VersionId"]
    with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):
        client.delete_object(Bucket=locked_bucket, Key=key, VersionId=version)
    kept = client.head_object(Bucket=locked_bucket, Key=key, VersionId=version)
    assert kept["ObjectLockMode"] == mode.upper()


def test_a_class_change_on_a_versioned_bucket_keeps_one_copy(s3_service: Any, locked_bucket: str) -> None:
    backend = make_backend(f"s3://{locked_bucket}/{uuid.uuid4().hex[:8]}", s3_service.options,
                           storage_class="GLACIER")
    assert isinstance(backend, FileBackend)
    _write_versions(backend)
    backend.apply_storage_class(PARQUET)
    prefix = f"{backend.root.partition('/')[2]}/{PARQUET}"
    listed = _boto(s3_service).list_object_versions(Bucket=locked_bucket, Prefix=prefix)
    versions = [v for v in listed.get("Versions", []) if v["Key"] == prefix]
    assert [v["StorageClass"] for v in versions] == ["GLACIER"]


def test_retention_on_a_bucket_without_object_lock_says_how_to_fix_it(s3_service: Any) -> None:
    backend = _backend(s3_service, None)
    _write_versions(backend)
    bucket = s3_service.url.removeprefix("s3://")
    with pytest.raises(mg.ConfigError, match="object-lock-enabled-for-bucket") as info:
        backend.check_object_lock()
    assert f"bucket {bucket!r}" in str(info.value)
    with pytest.raises(mg.ConfigError, match="Object Lock"):
        backend.apply_retention(PARQUET, datetime.now(UTC) + timedelta(days=1), mode="compliance")
    assert backend.object_locks(PARQUET) == {"v1.parquet": None}
    with pytest.raises(mg.OptionError, match="future"):
        backend.apply_retention(PARQUET, datetime.now(UTC) - timedelta(days=1), mode="compliance")
    with pytest.raises(mg.OptionError, match="timezone"):
        backend.apply_retention(PARQUET, datetime.now() + timedelta(days=1), mode="compliance")
    with pytest.raises(mg.OptionError, match="governance"):
        backend.apply_retention(PARQUET, datetime.now(UTC) + timedelta(days=1), mode="legal")


# -- Azure Blob (Azurite) --------------------------------------------------------------------------


def test_azure_capabilities(azure_service: Any) -> None:
    caps = _backend(azure_service, None).capabilities
    assert {Capability.STORAGE_CLASSES, Capability.RESTORE} <= caps
    assert Capability.OBJECT_LOCK not in caps


@pytest.mark.parametrize("tier", ["cool", "cold", "hot"])
def test_azure_access_tier_on_every_blob(azure_service: Any, tier: str) -> None:
    backend = _backend(azure_service, tier)
    manifests = _write_versions(backend)
    for path in (ZARR, PARQUET):
        backend.apply_storage_class(path)
    wanted = tier.capitalize()
    assert set(backend.storage_classes(ZARR)) == set(manifests[ZARR].files)
    assert set(backend.storage_classes(ZARR).values()) == {wanted}
    assert backend.storage_classes(PARQUET) == {"v1.parquet": wanted}
    assert backend.storage_classes(ZARR + RECORD_SUFFIX) == {"v1.zarr" + RECORD_SUFFIX: wanted}
    assert backend.archive_state(ZARR) == ArchiveState("online")
    assert verify_manifest(backend.fs, backend.full_path(ZARR), manifests[ZARR]) == []


def test_azure_archive_and_rehydration(azure_service: Any) -> None:
    """Azurite archives blobs and refuses reads; it rehydrates at once (no pending state)."""
    backend = _backend(azure_service, "Archive")
    manifests = _write_versions(backend)
    assert set(backend.storage_classes(ZARR).values()) == {"Hot"}
    backend.apply_storage_class(ZARR)
    assert set(backend.storage_classes(ZARR).values()) == {"Archive"}
    assert backend.storage_classes(ZARR + RECORD_SUFFIX) == {"v1.zarr" + RECORD_SUFFIX: "Hot"}
    assert backend.archive_state(ZARR) == ArchiveState("archived")
    with pytest.raises(Exception, match="archived blob") as info:
        verify_manifest(backend.fs, backend.full_path(ZARR), manifests[ZARR])
    assert type(info.value).__name__ == "ResourceExistsError"
    with pytest.raises(mg.OptionError, match="'high', 'standard'"):
        backend.request_restore(ZARR, tier="bulk")
    assert backend.request_restore(ZARR, tier="high") == ArchiveState("online")
    assert set(backend.storage_classes(ZARR).values()) == {"Hot"}
    assert verify_manifest(backend.fs, backend.full_path(ZARR), manifests[ZARR]) == []


# -- GCS (gcp-storage-emulator) --------------------------------------------------------------------


def test_gcs_classes_are_set_by_rewriting_every_object(gcs_service: Any) -> None:
    """The emulator accepts the rewrites (each object gets a new generation) but keeps STANDARD."""
    backend = _backend(gcs_service, "coldline")
    assert backend.storage_class == "COLDLINE"
    caps = backend.capabilities
    assert Capability.STORAGE_CLASSES in caps
    assert not caps & {Capability.RESTORE, Capability.OBJECT_LOCK}
    manifests = _write_versions(backend)
    full = backend.full_path(ZARR)
    before = {p: i["generation"] for p, i in backend.fs.find(full, detail=True).items()}
    backend.apply_storage_class(ZARR)
    after = {p: i["generation"] for p, i in backend.fs.find(full, detail=True).items()}
    assert set(after) == set(before)
    assert all(after[p] != before[p] for p in before)
    assert set(backend.storage_classes(ZARR)) == set(manifests[ZARR].files)
    assert set(backend.storage_classes(ZARR).values()) <= {"COLDLINE", "STANDARD"}
    assert verify_manifest(backend.fs, full, manifests[ZARR]) == []
    assert backend.archive_state(ZARR) == ArchiveState("online")
    assert backend.request_restore(ZARR) == ArchiveState("online")
