"""STAC export and import: a real collection (Zarr, COG, GeoParquet, series, PostGIS) to STAC and back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import shapely
import xarray as xr
import xxhash
from geopandas.testing import assert_geodataframe_equal
from pystac.errors import STACValidationError

import memories_geo as mg
from memories_geo.errors import ChecksumMismatchError, ConfigError, FormatError, KeyExistsError
from memories_geo.integrity import build_manifest
from memories_geo.stac import (
    GEOPARQUET_NAME,
    StacExport,
    decode_multihash,
    encode_multihash,
    extension_problems,
    import_stac,
    read_stac_items,
    validate_stac,
)

KEYS = {
    "climate/cube": ("zarr", "hot"),
    "imagery/scene": ("cog", "hot"),
    "vector/points": ("geoparquet", "hot"),
    "series/temp": ("parquet", "hot"),
    "roads": ("postgis", "warm"),
}


def _cube() -> xr.Dataset:
    x = 500_000.0 + 10.0 * np.arange(40) + 5
    y = 5_700_000.0 - 10.0 * np.arange(30) - 5
    values = np.random.default_rng(0).normal(size=(3, 30, 40)).astype("float32")
    ds = xr.Dataset({"t2m": (("time", "y", "x"), values)},
                    coords={"time": pd.date_range("2024-01-01", periods=3, freq="D"), "y": y, "x": x})
    return ds.rio.write_crs("EPSG:32631")


def _scene() -> xr.DataArray:
    data = np.arange(3 * 64 * 64, dtype="uint16").reshape(3, 64, 64)
    da = xr.DataArray(data, dims=("band", "y", "x"), coords={
        "band": [1, 2, 3], "y": 4_100_000.0 - 10.0 * np.arange(64), "x": 300_000.0 + 10.0 * np.arange(64),
    })
    return da.rio.write_crs("EPSG:32630")


def _points(seed: int, west: float) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    return gpd.GeoDataFrame(
        {"v": rng.normal(size=20), "name": [f"p{i}" for i in range(20)]},
        geometry=shapely.points(rng.uniform(west, west + 2, 20), rng.uniform(40, 42, 20)), crs="EPSG:4326",
    )


def _series() -> pd.DataFrame:
    return pd.DataFrame({
        "time": pd.date_range("2024-01-01", periods=100, freq="h", tz="UTC"),
        "value": np.random.default_rng(2).normal(size=100),
    })


def _with_password(dsn: str) -> str:
    """The DSN with a password in it (the server trusts local connections, so any is accepted)."""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{parts.username or 'postgres'}:s3cret-Pa55@{parts.hostname}{port}"
    return parts._replace(netloc=netloc).geturl()


@pytest.fixture
def memory(tmp_path: Path, postgres_dsn: str) -> Iterator[mg.Memory]:
    import psycopg
    from psycopg import sql

    schema = f"stac_{uuid.uuid4().hex[:12]}"
    config = mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "tiers": {"warm": {"url": _with_password(postgres_dsn), "storage_options": {"schema": schema}}},
    })
    mem = mg.Memory(config)
    mem.save(_cube(), "climate/cube")
    mem.save(_scene(), "imagery/scene", format="cog")
    mem.save(_points(1, 0.0), "vector/points")
    mem.save(_points(3, 0.5), "vector/points", mode="w")
    mem.save(_series(), "series/temp")
    mem.save(_points(2, 10.0), "roads", tier="warm")
    yield mem
    mem.tiers.backend("warm").close()
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def export(memory: mg.Memory, tmp_path: Path) -> StacExport:
    return memory.to_stac(tmp_path / "stac", title="Test collection")


def _items(export: StacExport) -> dict[str, pystac.Item]:
    catalog = pystac.Catalog.from_file(export.href)
    return {item.properties["memories_geo:key"]: item for item in catalog.get_items(recursive=True)}


def test_every_object_validates_offline(export: StacExport) -> None:
    assert export.items == len(KEYS)
    assert export.collections == ["climate", "imagery", "series", "ungrouped", "vector"]
    assert validate_stac(export.href) == 1 + 5 + 5
    assert export.validate() == 11
    catalog = pystac.Catalog.from_file(export.href)
    assert catalog.title == "Test collection"
    assert catalog.catalog_type == pystac.CatalogType.SELF_CONTAINED


def test_validation_fails_on_a_broken_item(export: StacExport) -> None:
    item = _items(export)["imagery/scene"]
    broken = item.to_dict()
    broken["assets"]["data"]["file:checksum"] = "not-hex"
    broken["properties"]["proj:shape"] = [64]
    problems = extension_problems(broken)
    assert len(problems) == 2
    assert "file:checksum" in problems[0] + problems[1]
    item.properties.pop("datetime")
    item.properties["start_datetime"] = None
    catalog = pystac.Catalog(id="c", description="d")
    catalog.add_item(item)
    with pytest.raises(STACValidationError):
        validate_stac(catalog)


def test_items_describe_each_version(memory: mg.Memory, export: StacExport) -> None:
    items = _items(export)
    assert set(items) == set(KEYS)
    for key, (fmt, tier) in KEYS.items():
        entry = memory.info(key)
        props = items[key].properties
        assert props["memories_geo:version"] == entry.version
        assert (props["memories_geo:format"], props["memories_geo:tier"]) == (fmt, tier)
        assert props["memories_geo:kind"] == entry.kind
        assert props["memories_geo:storage_class"] is None
        assert props["created"].startswith(entry.created_at[:19])
        assert items[key].id == f"{key.replace('/', '__')}__v{entry.version}"
        if entry.bbox is not None:
            assert items[key].bbox == pytest.approx(list(entry.bbox))
            assert shapely.geometry.shape(items[key].geometry).bounds == pytest.approx(entry.bbox)
    assert items["vector/points"].properties["memories_geo:version"] == 2
    cube = items["climate/cube"]
    assert cube.datetime is None
    assert cube.properties["start_datetime"] == "2024-01-01T00:00:00Z"
    assert cube.properties["end_datetime"] == "2024-01-03T00:00:00Z"
    series = items["series/temp"]
    assert series.geometry is None
    assert series.bbox is None
    assert series.properties["end_datetime"] == "2024-01-05T03:00:00Z"
    scene = items["imagery/scene"]
    assert scene.datetime == pd.Timestamp(memory.info("imagery/scene").created_at, tz="UTC")


def test_projection_extension(memory: mg.Memory, export: StacExport) -> None:
    items = _items(export)
    cube, scene = items["climate/cube"].properties, items["imagery/scene"].properties
    assert cube["proj:code"] == "EPSG:32631"
    assert cube["proj:bbox"] == [500_000.0, 5_699_700.0, 500_400.0, 5_700_000.0]
    assert cube["proj:shape"] == [30, 40]
    assert scene["proj:code"] == "EPSG:32630"
    assert scene["proj:shape"] == [64, 64]
    assert scene["proj:bbox"] == pytest.approx(list(memory.info("imagery/scene").native_bbox))
    assert items["vector/points"].properties["proj:code"] == "EPSG:4326"
    assert "proj:shape" not in items["vector/points"].properties
    assert not any(k.startswith("proj:") for k in items["series/temp"].properties)
    assert "https://stac-extensions.github.io/projection/v2.0.0/schema.json" not in \
        items["series/temp"].stac_extensions


def _root(memory: mg.Memory, key: str) -> Path:
    entry = memory.info(key)
    return Path(urlsplit(memory.tiers.backend(entry.tier).url_for(entry.path)).path)


def test_assets_and_checksums_recomputed_from_the_files(memory: mg.Memory, export: StacExport) -> None:
    items = _items(export)
    media = {"climate/cube": "application/vnd+zarr",
             "imagery/scene": "image/tiff; application=geotiff; profile=cloud-optimized",
             "vector/points": "application/vnd.apache.parquet",
             "series/temp": "application/vnd.apache.parquet"}
    for key, media_type in media.items():
        asset = items[key].assets["data"]
        root = _root(memory, key)
        assert asset.media_type == media_type
        assert asset.roles == ["data"]
        assert asset.href == f"file://{root}"
        if root.is_file():
            data = root.read_bytes()
            assert asset.extra_fields["file:size"] == len(data)
            assert asset.extra_fields["file:checksum"] == "e4e70210" + xxhash.xxh3_128(data).hexdigest()
        else:
            manifest = build_manifest(memory.tiers.backend("hot").fs, str(root))
            sizes = [p.stat().st_size for p in root.rglob("*") if p.is_file()]
            assert asset.extra_fields["file:size"] == sum(sizes)
            assert decode_multihash(asset.extra_fields["file:checksum"]) == ("xxh3_128", manifest.checksum)
    assert Path(_root(memory, "imagery/scene")).is_file()
    assert not Path(_root(memory, "climate/cube")).is_file()


def test_table_asset_points_at_the_version_table(memory: mg.Memory, export: StacExport) -> None:
    asset = _items(export)["roads"].assets["data"]
    backend = memory.tiers.backend("warm")
    table = f"{backend.schema}.{backend.table_for(memory.info('roads').path)}"
    href = urlsplit(asset.href)
    assert href.scheme == "postgresql"
    assert href.password is None
    assert href.fragment == table
    assert asset.extra_fields["memories_geo:table"] == table
    manifest = memory.catalog.manifest(memory.info("roads"))
    (digest,) = manifest.files.values()
    assert asset.extra_fields["file:checksum"] == encode_multihash("xxh3_128", digest.digest)
    import psycopg

    with psycopg.connect(memory.tiers.tier_config("warm").url) as con:
        rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert rows == (20,)


def test_no_credentials_in_the_output(memory: mg.Memory, export: StacExport, tmp_path: Path) -> None:
    password = urlsplit(memory.tiers.tier_config("warm").url).password
    assert password
    written = [p for p in (tmp_path / "stac").rglob("*") if p.is_file()]
    assert len(written) == 1 + 5 + 5 + 1
    for path in written:
        assert password.encode() not in path.read_bytes(), path
        assert b":***@" not in path.read_bytes()


def test_geoparquet_read_by_duckdb_with_a_bbox_filter(export: StacExport) -> None:
    path = export.geoparquet
    assert Path(path).name == GEOPARQUET_NAME
    rows = duckdb.sql(f"SELECT id, \"memories_geo:key\" FROM read_parquet('{path}') ORDER BY id").fetchall()
    assert [r[1] for r in rows] == sorted(KEYS, key=lambda k: k.replace("/", "__"))
    query = (f"SELECT \"memories_geo:key\" FROM read_parquet('{path}') "
             "WHERE bbox.xmin <= 3.5 AND bbox.xmax >= 2.5 AND bbox.ymin <= 52 AND bbox.ymax >= 51 ORDER BY 1")
    assert [r[0] for r in duckdb.sql(query).fetchall()] == ["climate/cube"]
    spain = (f"SELECT \"memories_geo:key\" FROM read_parquet('{path}') "
             "WHERE bbox.xmin <= 3 AND bbox.xmax >= -6 AND bbox.ymin <= 44 AND bbox.ymax >= 36 ORDER BY 1")
    assert [r[0] for r in duckdb.sql(spain).fetchall()] == ["imagery/scene", "vector/points"]
    timed = duckdb.sql(f"SELECT \"memories_geo:key\" FROM read_parquet('{path}') "
                       "WHERE end_datetime >= TIMESTAMPTZ '2024-01-04' ORDER BY 1").fetchall()
    assert [r[0] for r in timed] == ["series/temp"]


def _assert_same(original: mg.Memory, imported: mg.Memory) -> None:
    assert sorted(e.key for e in imported.catalog.current_entries()) == sorted(KEYS)
    for key in KEYS:
        before, after = original.info(key), imported.info(key)
        assert (after.version, after.version_id, after.checksum) == (before.version, before.version_id,
                                                                     before.checksum)
        assert (after.bbox, after.time_start, after.crs) == (before.bbox, before.time_start, before.crs)
    for key in ("climate/cube", "imagery/scene"):
        xr.testing.assert_identical(imported.open(key).load(), original.open(key).load())
    for key in ("vector/points", "roads"):
        assert_geodataframe_equal(imported.open(key), original.open(key))
    pd.testing.assert_frame_equal(imported.open("series/temp"), original.open("series/temp"))
    imported.verify()


@pytest.mark.parametrize("source", ["catalog", "geoparquet"])
def test_from_stac_recreates_the_catalog(
    memory: mg.Memory, export: StacExport, tmp_path: Path, source: str
) -> None:
    config = mg.StorageConfig(tiers=memory.config.tiers, catalog=str(tmp_path / "new" / "catalog.sqlite"))
    imported = mg.Memory.from_stac(export.href if source == "catalog" else export.geoparquet, config=config)
    try:
        _assert_same(memory, imported)
        assert [e.version for e in imported.versions("vector/points")] == [2]
        assert imported.audit(operation="rebuild").shape[0] == 1
    finally:
        imported.tiers.backend("warm").close()


def test_history_export_imports_every_version(memory: mg.Memory, tmp_path: Path) -> None:
    export = memory.to_stac(tmp_path / "full", include_history=True, href_base="https://data.example.org/stac")
    assert export.items == len(KEYS) + 1
    catalog = export.catalog
    links = json.loads(Path(export.href).read_text())["links"]
    assert {"rel": "self", "href": "https://data.example.org/stac/catalog.json"} in [
        {k: link[k] for k in ("rel", "href")} for link in links]
    assert all(link["href"].startswith("https://data.example.org/stac/") for link in links)
    old = [i for i in catalog.get_items(recursive=True) if not i.properties["memories_geo:current"]]
    assert [(i.properties["memories_geo:key"], i.properties["memories_geo:version"]) for i in old] == [
        ("vector/points", 1)]
    validate_stac(catalog)
    config = mg.StorageConfig(tiers=memory.config.tiers, catalog=str(tmp_path / "hist" / "catalog.sqlite"))
    imported = mg.Memory.from_stac(export.href, config=config)
    try:
        _assert_same(memory, imported)
        assert [e.version for e in imported.versions("vector/points")] == [1, 2]
        assert_geodataframe_equal(imported.open("vector/points", version=1), _points(1, 0.0))
    finally:
        imported.tiers.backend("warm").close()


def test_from_stac_refuses_changed_data_and_imports_nothing(
    memory: mg.Memory, export: StacExport, tmp_path: Path
) -> None:
    scene = _root(memory, "imagery/scene")
    data = bytearray(scene.read_bytes())
    data[-1] ^= 0xFF
    scene.write_bytes(bytes(data))
    config = mg.StorageConfig(tiers=memory.config.tiers, catalog=str(tmp_path / "bad" / "catalog.sqlite"))
    with pytest.raises(ChecksumMismatchError, match="imagery/scene"):
        mg.Memory.from_stac(export.href, config=config)
    assert mg.Memory(config).catalog.current_entries() == []


def test_from_stac_checks_items_against_records(export: StacExport, memory: mg.Memory,
                                                tmp_path: Path) -> None:
    item_path = Path(_items(export)["climate/cube"].get_self_href())
    data = json.loads(item_path.read_text())
    data["assets"]["data"]["file:size"] += 1
    item_path.write_text(json.dumps(data))
    config = mg.StorageConfig(tiers=memory.config.tiers, catalog=str(tmp_path / "c1" / "catalog.sqlite"))
    with pytest.raises(FormatError, match="climate__cube__v1"):
        mg.Memory.from_stac(export.href, config=config)
    elsewhere = mg.StorageConfig.embedded(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="tier"):
        mg.Memory.from_stac(export.geoparquet, config=elsewhere)


def test_from_stac_refuses_foreign_catalogs_and_clashing_keys(
    memory: mg.Memory, export: StacExport, tmp_path: Path
) -> None:
    foreign = pystac.Catalog(id="other", description="not ours")
    foreign.add_item(pystac.Item("x", None, None, pd.Timestamp("2024-01-01", tz="UTC").to_pydatetime(), {}))
    foreign.normalize_and_save(str(tmp_path / "foreign"), pystac.CatalogType.SELF_CONTAINED)
    assert len(read_stac_items(tmp_path / "foreign")) == 1
    with pytest.raises(FormatError, match="memories_geo properties"):
        mg.Memory.from_stac(tmp_path / "foreign", config=mg.StorageConfig.embedded(tmp_path / "f"))
    memory.save(_points(9, 1.0), "vector/points", mode="w")
    with pytest.raises(KeyExistsError, match="vector/points"):
        import_stac(memory, export.href)
