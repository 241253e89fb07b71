"""Encryption at rest per tier: S3 server-side encryption on every object (moto), the GCS
bucket's default KMS key and the Azure container's default scope, and the settings' errors."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from geopandas import GeoDataFrame
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import Point

import memories_geo as mg
from memories_geo.backends import make_backend, register_backend
from memories_geo.backends.files import FileBackend
from memories_geo.config import StorageConfig, TierConfig, check_encryption
from memories_geo.examples import sample_raster

GCS_KEY = "projects/p/locations/global/keyRings/ring/cryptoKeys/{}"


@pytest.fixture
def gdf() -> GeoDataFrame:
    rng = np.random.default_rng(2)
    return GeoDataFrame(
        {"v": rng.normal(size=30)},
        geometry=[Point(x, y) for x, y in rng.uniform(0, 5, (30, 2))],
        crs="EPSG:4326",
    )


def _memory(
    tmp_path: Path, url: str, options: dict[str, Any], encryption: dict[str, str] | None
) -> mg.Memory:
    tier: dict[str, Any] = {"url": url, "storage_options": options}
    if encryption is not None:
        tier["encryption"] = encryption
    config = StorageConfig.from_dict(
        {"home": str(tmp_path / "home"), "default_tier": "warm", "tiers": {"warm": tier}}
    )
    return mg.Memory(config)


def _files(mem: mg.Memory, tier: str = "warm") -> FileBackend:
    backend = mem.tiers.backend(tier)
    assert isinstance(backend, FileBackend)
    return backend


def _boto(service: Any, name: str = "s3") -> Any:
    import boto3

    options = service.options
    return boto3.client(
        name, endpoint_url=options["client_kwargs"]["endpoint_url"], region_name="us-east-1",
        aws_access_key_id=options["key"], aws_secret_access_key=options["secret"],
    )


def _objects(client: Any, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


# -- S3: every object, every writer --------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [None, "AES256", "aws:kms"])
def test_every_object_on_an_s3_tier_carries_the_encryption(
    tmp_path: Path, s3_service: Any, gdf: GeoDataFrame, algorithm: str | None
) -> None:
    """Zarr chunks (new and copied on append), GeoParquet, a COG, records and a checkpoint manifest.

    Without a setting moto stores objects unencrypted, so the check can tell the cases apart.
    """
    s3 = _boto(s3_service)
    encryption: dict[str, str] | None = None
    if algorithm == "AES256":
        encryption = {"algorithm": "AES256"}
    elif algorithm == "aws:kms":
        key_id = _boto(s3_service, "kms").create_key(Description="memories-geo test")["KeyMetadata"]["Arn"]
        encryption = {"algorithm": "aws:kms", "kms_key_id": key_id}
    bucket = s3_service.url.removeprefix("s3://")
    prefix = f"enc-{uuid.uuid4().hex[:8]}"
    mem = _memory(tmp_path, f"{s3_service.url}/{prefix}", s3_service.options, encryption)

    ds = sample_raster()
    mem.save(ds.isel(time=slice(0, 6)), "era5/t2m", format="zarr")
    mem.save(ds.isel(time=slice(6, None)), "era5/t2m", mode="a", append_dim="time")
    mem.save(gdf, "fields")
    mem.save(gdf.iloc[:5], "fields", mode="w")
    mem.save(ds["t2m"].isel(time=0), "t2m/january", format="cog")
    mem.checkpoints.save("nightly")

    xr.testing.assert_identical(mem.open("era5/t2m"), ds)
    assert_geodataframe_equal(mem.open("fields"), gdf.iloc[:5])
    keys = _objects(s3, bucket, prefix)
    assert any(k.endswith(".zarr/t2m/c/0/0/0") or "/t2m/c/" in k for k in keys)
    assert any(k.endswith(".parquet") for k in keys)
    assert any(k.endswith(".tif") for k in keys)
    assert sum(k.endswith(".record.json") for k in keys) == 5
    assert any("/@checkpoints/" in f"/{k}" for k in keys)
    wanted = {
        None: {},
        "AES256": {"ServerSideEncryption": "AES256"},
        "aws:kms": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": (encryption or {}).get("kms_key_id")},
    }[algorithm]
    found = {}
    for key in keys:
        head = s3.head_object(Bucket=bucket, Key=key)
        found[key] = {k: head[k] for k in ("ServerSideEncryption", "SSEKMSKeyId") if k in head}
    assert {k: v for k, v in found.items() if v != wanted} == {}


def test_a_backup_store_built_with_encryption_encrypts_the_copies(
    tmp_path: Path, s3_service: Any, gdf: GeoDataFrame
) -> None:
    """Checkpoint backups copy versions from a local tier to S3: the copies carry the backup's setting."""
    s3 = _boto(s3_service)
    bucket = s3_service.url.removeprefix("s3://")
    prefix = f"backup-{uuid.uuid4().hex[:8]}"
    mem = mg.Memory(tmp_path / "home")
    mem.save(gdf, "fields")
    mem.save(sample_raster().isel(time=slice(0, 2)), "era5/t2m")
    backup = make_backend(
        f"{s3_service.url}/{prefix}", s3_service.options, encryption={"algorithm": "AES256"}
    )
    assert mg.MemoryPersistence(mem, backup_storage=backup).checkpoints.save("nightly").backed_up
    keys = _objects(s3, bucket, prefix)
    assert any(k.endswith(".parquet") for k in keys)
    assert any("/t2m/c/" in k for k in keys)
    plain = [k for k in keys if s3.head_object(Bucket=bucket, Key=k).get("ServerSideEncryption") != "AES256"]
    assert plain == []


def test_the_setting_reaches_the_s3_filesystem(s3_service: Any) -> None:
    backend = make_backend(f"{s3_service.url}/x", s3_service.options, encryption={"algorithm": "AES256"})
    assert isinstance(backend, FileBackend)
    assert backend.fs.s3_additional_kwargs == {"ServerSideEncryption": "AES256"}
    assert "s3_additional_kwargs" not in s3_service.options


def test_an_s3_encryption_setting_in_two_places_must_agree(s3_service: Any) -> None:
    extra = {"ServerSideEncryption": "AES256", "ACL": "private"}
    options = {**s3_service.options, "s3_additional_kwargs": extra}
    agreed = FileBackend(f"{s3_service.url}/x", options, encryption={"algorithm": "AES256"})
    assert agreed.storage_options["s3_additional_kwargs"] == extra
    with pytest.raises(mg.ConfigError, match="ServerSideEncryption"):
        FileBackend(f"{s3_service.url}/x", options, encryption={"algorithm": "aws:kms", "kms_key_id": "k"})


# -- configuration -------------------------------------------------------------------------------


def test_toml_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = "arn:aws:kms:us-east-1:111122223333:key/abcd"
    monkeypatch.setenv("MG_TEST_KMS_KEY", arn)
    path = tmp_path / "memories.toml"
    path.write_text(
        'home = "home"\n'
        "[tiers.warm]\n"
        'url = "s3://bucket/warm"\n'
        'encryption = { algorithm = "aws:kms", kms_key_id = "${MG_TEST_KMS_KEY}" }\n'
        "[tiers.cold]\n"
        'url = "gs://archive/cold"\n'
        'encryption = { kms_key_name = "projects/p/locations/eu/keyRings/r/cryptoKeys/k" }\n'
        "[tiers.glacier]\n"
        'url = "az://archive/glacier"\n'
        'encryption = { encryption_scope = "archive-scope" }\n'
    )
    config = StorageConfig.from_toml(path)
    tiers = config.tiers
    assert tiers["warm"].encryption == {"algorithm": "aws:kms", "kms_key_id": arn}
    assert tiers["cold"].encryption == {"kms_key_name": "projects/p/locations/eu/keyRings/r/cryptoKeys/k"}
    assert tiers["glacier"].encryption == {"encryption_scope": "archive-scope"}
    assert tiers["hot"].encryption == {}
    assert repr(tiers["warm"]).endswith("encryption='aws:kms')")
    assert "abcd" not in repr(tiers["warm"])
    assert "projects/" not in repr(tiers["cold"])
    assert "encryption" not in repr(tiers["hot"])
    assert StorageConfig.from_dict({"home": str(tmp_path / "home"), "tiers": {
        name: {"url": t.url, "encryption": dict(t.encryption)} for name, t in tiers.items() if t.encryption
    }}).tiers == tiers
    backend = _files(mg.Memory(config))
    assert backend.storage_options["s3_additional_kwargs"] == {
        "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": arn,
    }


def test_a_remote_home_encrypts_every_tier() -> None:
    config = StorageConfig.remote("s3://bucket/home", encryption={"algorithm": "AES256"}, catalog="c.sqlite")
    assert {t.encryption["algorithm"] for t in config.tiers.values()} == {"AES256"}


BAD = [
    ("s3://b/w", {"algorithm": "aes256"}, r"algorithm must be one of \['AES256', 'aws:kms'\], got 'aes256'"),
    ("s3://b/w", {"algorithm": "aws:kms"}, "'aws:kms' needs kms_key_id"),
    ("s3://b/w", {"algorithm": "AES256", "kms_key_id": "k"}, "kms_key_id applies to 'aws:kms' only"),
    ("s3://b/w", {"kms_key_id": "k"}, "algorithm must be one of"),
    ("s3://b/w", {"algorithm": "AES256", "sse": "x"},
     r"unknown settings \['sse'\].*accepted: \['algorithm', 'kms_key_id'\]"),
    ("s3://b/w", {"algorithm": 256}, "must be non-empty strings"),
    ("s3://b/w", "AES256", "must be a table"),
    ("gs://b/w", {"algorithm": "aws:kms", "kms_key_id": "k"}, r"accepted: \['kms_key_name'\]"),
    ("gs://b/w", {"kms_key_name": "my-key"}, "full name of a Cloud KMS key"),
    ("az://c/w", {"algorithm": "AES256"}, r"accepted: \['encryption_scope'\]"),
    ("az://c/w", {"encryption_scope": ""}, "must be non-empty strings"),
    ("/data/hot", {"algorithm": "AES256"}, "cannot take an encryption setting.*encrypted by its disk"),
    ("file:///data/hot", {"algorithm": "AES256"}, "s3://, gs:// and az:// tiers only"),
    ("memory://x/hot", {"algorithm": "AES256"}, "cannot take an encryption setting"),
    ("postgresql://me:pw@db/geo", {"algorithm": "AES256"}, r"'postgresql://me:\*\*\*@db/geo' cannot take"),
]


@pytest.mark.parametrize(("url", "setting", "message"), BAD, ids=[f"{u}-{s}" for u, s, _ in BAD])
def test_bad_settings_are_refused_by_name(tmp_path: Path, url: str, setting: Any, message: str) -> None:
    tiers = {"warm": {"url": url, "encryption": setting}}
    with pytest.raises(mg.ConfigError, match=message):
        check_encryption(url, setting)
    with pytest.raises(mg.ConfigError, match=r"tiers\.warm\.encryption: .*" + message):
        StorageConfig.from_dict({"home": str(tmp_path), "tiers": tiers})
    with pytest.raises(mg.ConfigError, match=message):
        TierConfig(url=url, encryption=setting)
    with pytest.raises(mg.ConfigError, match=message):
        make_backend(url, encryption=setting)


def test_an_encrypted_local_tier_is_refused_not_ignored(tmp_path: Path) -> None:
    path = tmp_path / "memories.toml"
    path.write_text('[tiers.hot]\nurl = "hot"\nencryption = { algorithm = "AES256" }\n')
    with pytest.raises(mg.ConfigError, match=r"tiers\.hot\.encryption: tier .* cannot take an encryption"):
        StorageConfig.from_toml(path)
    with pytest.raises(mg.ConfigError, match="cannot take an encryption setting"):
        FileBackend(str(tmp_path / "hot"), encryption={"algorithm": "AES256"})


def test_a_backend_that_takes_no_encryption_refuses_it() -> None:
    class Plain(FileBackend):
        def __init__(self, url: str, storage_options: Any = None) -> None:
            super().__init__(url, storage_options)

    register_backend("s3", Plain)
    try:
        with pytest.raises(mg.ConfigError, match="takes no encryption setting"):
            make_backend("s3://b/w", encryption={"algorithm": "AES256"})
        assert isinstance(make_backend("s3://b/w"), Plain)
    finally:
        register_backend("s3", "memories_geo.backends.files:FileBackend", requires=("s3fs",))


# -- GCS: the bucket's default KMS key ---------------------------------------------------------


def _gcs_bucket(gcs_service: Any, key: str | None) -> str:
    """A new emulator bucket, with ``key`` as its default KMS key when given."""
    import gcsfs

    fs = gcsfs.GCSFileSystem(**gcs_service.options, skip_instance_cache=True)
    name = f"enc-{uuid.uuid4().hex[:10]}"
    fs.call("POST", "b", json={"name": name}, json_out=True)
    if key is not None:
        fs.call("PATCH", "b/{}", name, json={"encryption": {"defaultKmsKeyName": key}}, json_out=True)
    return name


def test_a_gcs_tier_uses_a_bucket_whose_default_key_is_the_configured_one(
    tmp_path: Path, gcs_service: Any, gdf: GeoDataFrame
) -> None:
    """The emulator keeps a bucket's default key but not an object's key: the bucket is what is checked."""
    key = GCS_KEY.format("good")
    bucket = _gcs_bucket(gcs_service, key)
    mem = _memory(tmp_path, f"gs://{bucket}/warm", gcs_service.options, {"kms_key_name": key})
    mem.save(gdf, "fields")
    mem.save(sample_raster().isel(time=slice(0, 2)), "era5/t2m")
    assert_geodataframe_equal(mem.open("fields"), gdf)
    assert _files(mem).encryption == {"kms_key_name": key}


@pytest.mark.parametrize("default", [None, "other"])
def test_a_gcs_bucket_with_another_default_key_is_refused_before_writing(
    tmp_path: Path, gcs_service: Any, gdf: GeoDataFrame, default: str | None
) -> None:
    bucket = _gcs_bucket(gcs_service, GCS_KEY.format(default) if default else None)
    key = GCS_KEY.format("good")
    mem = _memory(tmp_path, f"gs://{bucket}/warm", gcs_service.options, {"kms_key_name": key})
    found = GCS_KEY.format(default) if default else r"the provider-managed default \(no default set\)"
    with pytest.raises(mg.ConfigError, match=rf"bucket '{bucket}' encrypts new objects with {found}.*"
                                             rf"--default-encryption-key={key}"):
        mem.save(gdf, "fields")
    assert len(mem.ls()) == 0
    import gcsfs

    fs = gcsfs.GCSFileSystem(**gcs_service.options, skip_instance_cache=True)
    assert fs.find(bucket) == []


def test_a_missing_gcs_bucket_is_unavailable(tmp_path: Path, gcs_service: Any, gdf: GeoDataFrame) -> None:
    mem = _memory(tmp_path, f"gs://no-such-{uuid.uuid4().hex[:8]}/warm", gcs_service.options,
                  {"kms_key_name": GCS_KEY.format("k")})
    with pytest.raises(mg.TierUnavailableError, match="cannot read the encryption settings of bucket"):
        mem.save(gdf, "fields")


# -- Azure: the container's default encryption scope -------------------------------------------


def test_an_azure_tier_checks_the_containers_default_scope(
    tmp_path: Path, azure_service: Any, gdf: GeoDataFrame
) -> None:
    """Azurite ignores encryption scopes (it reports none on any container): only the refusal is testable."""
    url = f"{azure_service.url}/warm"
    mem = _memory(tmp_path, url, azure_service.options, {"encryption_scope": "scope-a"})
    assert _files(mem).encryption == {"encryption_scope": "scope-a"}
    container = azure_service.url.removeprefix("az://")
    with pytest.raises(mg.ConfigError, match=rf"encryption_scope='scope-a', but container '{container}' "
                                             r"encrypts new objects with the provider-managed default"):
        mem.save(gdf, "fields")
    assert len(mem.ls()) == 0
