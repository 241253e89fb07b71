import pytest

import memories_geo as mg
from memories_geo.config import StorageConfig, expand_env
from memories_geo.types import CompressionLevel


def test_embedded_default_uses_memories_geo_home(home):
    config = StorageConfig.discover()
    assert config.catalog == str(home / "catalog.sqlite")
    assert {name: cfg.url for name, cfg in config.tiers.items()} == {
        t: (home / t).as_uri() for t in ("hot", "warm", "cold", "glacier")
    }
    assert config.tiers["hot"].compression is CompressionLevel.FAST
    assert config.tiers["glacier"].compression is CompressionLevel.MAXIMUM


def test_embedded_default_without_env_is_dot_memories_in_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("MEMORIES_GEO_HOME", raising=False)
    monkeypatch.delenv("MEMORIES_GEO_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert StorageConfig.discover().catalog == str(tmp_path / ".memories" / "catalog.sqlite")


def test_toml_with_env_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("MG_TEST_BUCKET", "my-bucket")
    monkeypatch.setenv("MG_TEST_SECRET", "s3cr3t")
    path = tmp_path / "memories.toml"
    path.write_text(
        """
home = "store"
default_tier = "warm"
[tiers.warm]
url = "s3://${MG_TEST_BUCKET}/warm"
compression = "high"
storage_options = { key = "AKIA", secret = "${MG_TEST_SECRET}" }
[tiers.hot]
formats = { raster = "zarr" }
"""
    )
    config = StorageConfig.from_toml(path)
    assert config.default_tier == "warm"
    assert config.tiers["warm"].url == "s3://my-bucket/warm"
    assert config.tiers["warm"].storage_options["secret"] == "s3cr3t"
    assert config.tiers["warm"].compression is CompressionLevel.HIGH
    assert config.tiers["hot"].url == (tmp_path / "store" / "hot").resolve().as_uri()
    assert config.tiers["hot"].formats == {"raster": "zarr"}
    assert "s3cr3t" not in repr(config)


def test_undefined_env_var_is_a_config_error(monkeypatch):
    monkeypatch.delenv("MG_TEST_UNDEFINED", raising=False)
    with pytest.raises(mg.ConfigError, match="MG_TEST_UNDEFINED"):
        expand_env({"a": ["${MG_TEST_UNDEFINED}"]})
    assert expand_env("${MG_TEST_UNDEFINED:-fallback}") == "fallback"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("nonsense = 1", "unknown configuration keys"),
        ("[tiers.hot]\ncompression = 'ultra'", "compression must be one of"),
        ("[tiers.hot]\nspeed = 1", "unknown settings"),
        ("[tiers.new]\ncompression = 'fast'", "needs a url"),
        ("default_tier = 'lukewarm'", "not a configured tier"),
        ("[tiers.hot]\nformats = { mesh = 'x' }", "unknown kinds"),
        ("[tiers", "invalid TOML"),
    ],
)
def test_bad_configuration_is_reported(tmp_path, text, match):
    path = tmp_path / "memories.toml"
    path.write_text(text)
    with pytest.raises(mg.ConfigError, match=match):
        StorageConfig.from_toml(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(mg.ConfigError, match="does not exist"):
        StorageConfig.from_toml(tmp_path / "nope.toml")


def test_config_env_var_points_to_toml(tmp_path, monkeypatch):
    path = tmp_path / "memories.toml"
    path.write_text(f"home = '{tmp_path / 'elsewhere'}'\n")
    monkeypatch.setenv("MEMORIES_GEO_CONFIG", str(path))
    assert StorageConfig.discover().catalog == str(tmp_path / "elsewhere" / "catalog.sqlite")


def test_unknown_url_scheme_is_a_config_error(tmp_path):
    config = StorageConfig.from_dict({"home": str(tmp_path), "tiers": {"hot": {"url": "ftpx://host/x"}}})
    with pytest.raises(mg.ConfigError, match="no backend for URL scheme 'ftpx'"):
        mg.Memory(config).tiers.backend("hot")
