"""The original API's StorageConfig forms: the same configuration as the equivalent TOML."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from memories_geo.cli import app
from memories_geo.config import StorageConfig, TierConfig
from memories_geo.config.mounts import mount_facts, nfs_location
from memories_geo.errors import ConfigError
from memories_geo.storage.backends import (
    AzureBlobStorage,
    GCSStorage,
    LocalFileStorage,
    NetworkFileStorage,
    PostgreSQLStorage,
    S3Storage,
    SQLiteStorage,
)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMORIES_GEO_HOME", str(tmp_path / "home"))


def _toml(path, text):
    path.write_text(text)
    return StorageConfig.from_toml(path)


def test_one_tier_form_equals_its_toml(tmp_path, monkeypatch):
    monkeypatch.setenv("S3_KEY", "AKIAXX")
    monkeypatch.setenv("S3_SECRET", "verysecret")
    cfg = StorageConfig(
        tier="cold",
        primary_backend=S3Storage(
            bucket="earth-cold",
            region="us-west-2",
            prefix="archive/",
            credentials={"aws_access_key_id": "${S3_KEY}", "aws_secret_access_key": "${S3_SECRET}"},
        ),
        compression={"algorithm": "zstd", "level": "high"},
        access_pattern="batch",
        retrieval_time="hours",
    )
    toml = _toml(
        tmp_path / "m.toml",
        f"""
home = "{tmp_path / "home"}"
default_tier = "cold"
[tiers.cold]
url = "s3://earth-cold/archive"
compression = "high"
codec = "zstd"
access_pattern = "batch"
retrieval_time = "hours"
[tiers.cold.storage_options]
key = "${{S3_KEY}}"
secret = "${{S3_SECRET}}"
client_kwargs = {{region_name = "us-west-2"}}
""",
    )
    assert cfg == toml
    tier = cfg.tiers["cold"]
    assert tier.storage_options["secret"] == "verysecret"
    assert tier.codec == "zstd"
    assert "verysecret" not in repr(cfg)
    assert "AKIAXX" not in repr(cfg)
    assert tier.restore_tier == "standard"


def test_routes_and_format_objects_and_show(tmp_path):
    class COG:  # a format storage object as the interface describes it
        format_name, kinds = "cog", frozenset({"raster"})

        def save_options(self):
            return {"blocksize": 256, "overviews": False}

    cfg = StorageConfig(
        tier="hot",
        primary_backend=LocalFileStorage(root_path=tmp_path / "hot"),
        vector_backend=LocalFileStorage(base_path=tmp_path / "vec", format="geojson"),
        raster_backend=COG(),
        cache_settings={"max_size": "50GB", "eviction_policy": "least-recently-used"},
    )
    hot = cfg.tiers["hot"]
    assert hot.routes == {"vector": "hot-vector"}
    assert hot.formats == {"raster": "cog"}
    assert hot.format_options == {"cog": {"blocksize": 256, "overviews": False}}
    assert cfg.tiers["hot-vector"].formats == {"vector": "geojson"}
    assert cfg.tiers["hot-vector"].cache == hot.cache
    toml = _toml(
        tmp_path / "m.toml",
        f"""
home = "{tmp_path / "home"}"
default_tier = "hot"
[tiers.hot]
url = "{(tmp_path / "hot").as_uri()}"
routes = {{vector = "hot-vector"}}
formats = {{raster = "cog"}}
cache = {{max_size = "50GB", eviction_policy = "least-recently-used"}}
[tiers.hot.format_options.cog]
blocksize = 256
overviews = false
[tiers.hot-vector]
url = "{(tmp_path / "vec").as_uri()}"
formats = {{vector = "geojson"}}
cache_settings = {{max_size = "50GB", eviction_policy = "least-recently-used"}}
""",
    )
    assert cfg == toml
    nested = StorageConfig(tier_configs={"hot": cfg})
    assert nested.tiers == cfg.tiers
    runner = CliRunner()
    (tmp_path / "m2.toml").write_text((tmp_path / "m.toml").read_text())
    out = runner.invoke(app, ["--config", str(tmp_path / "m.toml"), "config", "show", "--json"])
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)["tiers"]
    assert shown["hot"]["routes"] == {"vector": "hot-vector"}
    assert shown["hot"]["format_options"] == {"cog": {"blocksize": 256, "overviews": False}}


def test_tier_configs_form_with_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "AZURE_CONNECTION_STRING", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0"
    )
    cfg = StorageConfig(
        tier_configs={
            "hot": {
                "primary_backend": PostgreSQLStorage(
                    connection_string="postgresql://u:pw@db/geo",
                    timescaledb_enabled=True,
                    pool_size=2,
                    max_overflow=2,
                ),
                "cache_settings": {"type": "redis", "url": "redis://127.0.0.1:6379/0", "max_size": "10GB"},
            },
            "warm": {"primary_backend": S3Storage(bucket="warm", region="us-west-2")},
            "cold": {"primary_backend": GCSStorage(bucket="cold", project="p", credentials_file="/k.json")},
            "glacier": {
                "primary_backend": AzureBlobStorage(
                    account="acct",
                    container="deep",
                    access_tier="archive",
                    connection_string="${AZURE_CONNECTION_STRING}",
                )
            },
        },
        default_vector_format="postgis",
        default_raster_format="cog",
        default_timeseries_format="parquet",
        encryption_enabled=True,
        backup_enabled=True,
        monitoring_enabled=True,
    )
    assert cfg.tiers["hot"].formats == {"timeseries": "timescaledb", "vector": "postgis"}
    assert dict(cfg.tiers["hot"].storage_options) == {"min_size": 2, "max_size": 4}
    assert cfg.tiers["warm"].formats == {"raster": "cog", "timeseries": "parquet"}
    assert cfg.tiers["warm"].encryption == {"algorithm": "AES256"}
    assert cfg.tiers["glacier"].storage_class == "Archive"
    assert cfg.backup_enabled
    assert cfg.monitoring_enabled
    assert "c2VjcmV0" not in repr(cfg)
    assert "pw" not in repr(cfg.tiers["hot"])
    assert "c2VjcmV0" not in repr(AzureBlobStorage(container="d", connection_string="AccountKey=c2VjcmV0"))


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: StorageConfig(tier="hot", primary_backend=LocalFileStorage("/x"), colour="red"), "accepted"),
        (lambda: StorageConfig(tier="hot", tier_configs={}), "configure one tier"),
        (lambda: StorageConfig(tier="hot", cache_settings={"size": 1}), "accepted"),
        (lambda: StorageConfig(tier="hot", compression={"algo": "zstd"}), "accepted"),
        (lambda: StorageConfig(tier_configs={"hot": {}}, default_raster_format="geojson"), "not raster"),
        (lambda: StorageConfig(tier_configs={"hot": {}}, default_vector_format="shapefile"), "accepted"),
        (lambda: S3Storage(bucket="b", credentials={"password": "x"}), "accepted"),
        (lambda: PostgreSQLStorage("postgresql://db/x", postgis_enabled=False), "PostGIS"),
        (lambda: TierConfig(url="nfs://nosuchfiler.invalid/export/geo"), "not mounted"),
        (
            lambda: NetworkFileStorage(
                protocol="nfs",
                mount_point="/mnt/earth_data",
                server="fileserver.example.com",
                remote_path="/exports/earth_data",
            ),
            "mount it",
        ),
        (lambda: TierConfig(url="/x", cache={"colour": 1}), "accepted"),
    ],
)
def test_refusals_name_the_accepted(call, words):
    with pytest.raises(ConfigError, match=words):
        call()


def test_network_file_storage_records_its_mount(tmp_path):
    storage = NetworkFileStorage(mount_path=tmp_path)
    assert storage.mount == mount_facts(tmp_path)
    cfg = StorageConfig(tier="warm", primary_backend=storage)
    assert cfg.tiers["warm"].mount == storage.mount
    assert cfg.tiers["warm"].url == tmp_path.as_uri()
    toml = _toml(tmp_path / "m.toml", f'default_tier = "warm"\n[tiers.warm]\nmount = "{tmp_path}"\n')
    assert toml == cfg


def test_nfs_url_maps_to_its_mount(tmp_path):
    table = tmp_path / "mounts"
    table.write_text(
        "filer:/exports/geo /mnt/geo nfs4 rw,vers=4.2,rsize=1048576 0 0\n/dev/vda / ext4 rw 0 0\n"
    )
    local, facts = nfs_location("nfs://filer/exports/geo/hot", table)
    assert local == "/mnt/geo/hot"
    assert facts["fstype"] == "nfs4"
    assert "rsize=1048576" in facts["options"]
    with pytest.raises(ConfigError, match="mount"):
        nfs_location("nfs://other/exports/geo", table)


def test_sqlite_and_format_aliases(tmp_path):
    cfg = StorageConfig(
        tier_configs={
            "hot": {
                "primary_backend": SQLiteStorage(database_path=tmp_path / "hot.db", spatialite_enabled=True)
            },
            "warm": {"primary_backend": LocalFileStorage(base_path=tmp_path / "warm", format="zarr")},
        },
        default_vector_format="geojson",
        default_raster_format="tiff",
    )
    assert cfg.tiers["hot"].url == "sqlite:///" + str(tmp_path / "hot.db")
    assert cfg.tiers["hot"].formats == {"vector": "spatialite"}
    assert cfg.tiers["warm"].formats == {"array": "zarr", "raster": "zarr", "vector": "geojson"}
    assert cfg.tiers["cold"].formats == {"raster": "cog", "vector": "geojson"}
