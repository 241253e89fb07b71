import pytest

import memories_geo as mg
from memories_geo.backends.files import FileBackend
from memories_geo.keys import generate_key, validate_key


@pytest.mark.parametrize(
    "key",
    ["era5/t2m", "fields", "sentinel2/tile-31UFU/2024", "Robert'); DROP TABLE--", "données/été", "a b/c"],
)
def test_valid_keys_are_returned_unchanged(key):
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty"),
        ("../x", "'..' segment"),
        ("a/../../etc", "'..' segment"),
        ("a/./b", "'.' segment"),
        ("/etc/passwd", "absolute"),
        ("~/x", "absolute"),
        ("C:/x", "absolute"),
        ("a\\b", "backslash"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("a/@v/b", "reserved"),
        ("@checkpoints/x", "reserved"),
        (" a", "whitespace"),
        ("x" * 600, "longer"),
    ],
)
def test_unsafe_keys_raise_invalid_key_error(key, reason):
    with pytest.raises(mg.InvalidKeyError, match=reason):
        validate_key(key)


def test_non_string_key_is_rejected():
    with pytest.raises(mg.InvalidKeyError, match="must be a str"):
        validate_key(3)


def test_invalid_key_error_is_a_value_error():
    with pytest.raises(ValueError):
        validate_key("../x")


def test_generated_keys_are_valid_readable_and_unique():
    keys = {generate_key("2m Temperature!", "raster") for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert validate_key(key) == key
        assert key.startswith("raster/2m-temperature-")


def test_backend_refuses_paths_escaping_its_root(tmp_path):
    backend = FileBackend((tmp_path / "tier").as_uri())
    assert backend.full_path("a/b").startswith(str(tmp_path / "tier"))
    for path in ("../outside", "a/../../outside", "/etc"):
        with pytest.raises(mg.InvalidKeyError):
            backend.full_path(path)
