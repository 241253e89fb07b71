"""Tier policies through the library on moto: Glacier saves, RestoreRequiredError, restores,
and retention refusing deletes and moves."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from geopandas.testing import assert_geodataframe_equal

import memories_geo as mg
from memories_geo.examples import sample_vector


def _boto(service: Any) -> Any:
    import boto3

    options = service.options
    return boto3.client(
        "s3", endpoint_url=options["client_kwargs"]["endpoint_url"], region_name="us-east-1",
        aws_access_key_id=options["key"], aws_secret_access_key=options["secret"],
    )


def _memory(tmp_path: Path, url: str, options: dict[str, Any], **cold: Any) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.from_dict({
        "catalog": str(tmp_path / "catalog.sqlite"),
        "default_tier": "hot",
        "tiers": {
            "hot": {"url": str(tmp_path / "hot")},
            "cold": {"url": url, "storage_options": options, **cold},
        },
    }))


def _classes(service: Any, url: str) -> set[str]:
    client = _boto(service)
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    found = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for item in page.get("Contents", []):
            if "/@v/" in item["Key"] and not item["Key"].endswith(".record.json"):
                found.add(client.head_object(Bucket=bucket, Key=item["Key"]).get("StorageClass", "STANDARD"))
    return found


def test_a_glacier_tier_needs_a_restore_before_open(tmp_path, s3_service):
    url = f"{s3_service.url}/{uuid.uuid4().hex[:8]}"
    mem = _memory(tmp_path, url, s3_service.options, storage_class="glacier")
    layer = sample_vector()
    saved = mem.save(layer, "archive/countries", tier="cold")
    assert _classes(s3_service, url) == {"GLACIER"}
    assert saved.storage_class == mem.info("archive/countries").storage_class == "GLACIER"
    assert "tier=cold (GLACIER)" in repr(saved)
    assert mem.restore_status("archive/countries").state == "archived"
    with pytest.raises(mg.RestoreRequiredError, match=r"mg.request_restore\('archive/countries'"):
        mem.open("archive/countries")
    status = mem.request_restore("archive/countries", days=2)
    assert status.requested_at is not None
    assert mem.restore_status("archive/countries").readable
    assert_geodataframe_equal(mem.open("archive/countries"), layer)
    mem.verify("archive/countries")


def test_a_move_to_a_glacier_tier_archives_every_object(tmp_path, s3_service):
    url = f"{s3_service.url}/{uuid.uuid4().hex[:8]}"
    mem = _memory(tmp_path, url, s3_service.options, storage_class="GLACIER")
    entry = mem.save(sample_vector(), "moving")
    assert entry.storage_class is None
    moved = mem.version_store.move(entry, "cold")
    assert _classes(s3_service, url) == {"GLACIER"}
    assert moved.storage_class == mem.info("moving").storage_class == "GLACIER"
    back = mg.Memory(mem.config).info("moving")
    assert (back.tier, back.storage_class) == ("cold", "GLACIER")
    with pytest.raises(mg.RestoreRequiredError):
        mem.open("moving")


def test_retention_refuses_deletes_and_moves_and_locks_objects(tmp_path, s3_service):
    bucket = f"locked-{uuid.uuid4().hex[:8]}"
    _boto(s3_service).create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    url = f"s3://{bucket}/{uuid.uuid4().hex[:8]}"
    mem = _memory(tmp_path, url, s3_service.options, retention={"period": "30 days", "mode": "governance"})
    entry = mem.save(sample_vector(), "kept", tier="cold")
    mem.save(sample_vector().head(5), "kept", tier="cold", mode="w")
    with pytest.raises(mg.RetentionError, match="kept v1"):
        mem.delete("kept", version=1)
    with pytest.raises(mg.RetentionError, match="until"):
        mem.delete("kept")
    with pytest.raises(mg.RetentionError):
        mem.version_store.move(entry, "hot")
    assert [e.version for e in mem.versions("kept")] == [1, 2]
    client = _boto(s3_service)
    prefix = url.removeprefix(f"s3://{bucket}/")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
            if not o["Key"].endswith(".record.json") and "/@v/" in o["Key"]]
    assert keys
    assert {client.head_object(Bucket=bucket, Key=k).get("ObjectLockMode") for k in keys} == {"GOVERNANCE"}


def test_retention_needs_an_object_lock_bucket(tmp_path, s3_service):
    url = f"{s3_service.url}/{uuid.uuid4().hex[:8]}"
    mem = _memory(tmp_path, url, s3_service.options, retention={"period": "30 days"})
    with pytest.raises(mg.ConfigError, match=r"Object Lock|object lock|ObjectLock"):
        mem.save(sample_vector(), "refused", tier="cold")
    assert mem.ls().empty
