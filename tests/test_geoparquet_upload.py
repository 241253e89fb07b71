"""GeoParquet on object stores: hashed as written (no read-back), uploads complete or absent.

Runs against the moto S3 server of the ``s3_service`` fixture, through the counting
reverse proxy of ``benchmarks/s3proxy.py`` where requests and bytes are counted.
"""

import copy
import sys
import uuid
from pathlib import Path

import boto3
import fsspec
import numpy as np
import pytest
from geopandas import GeoDataFrame, points_from_xy
from geopandas.testing import assert_geodataframe_equal

import memories_geo as mg
from memories_geo.backends.base import Location
from memories_geo.formats.geoparquet import upload
from memories_geo.formats.geoparquet.upload import FsspecSink, location_sink
from memories_geo.formats.geoparquet.write import write_geoparquet
from memories_geo.integrity import build_manifest, hash_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.s3proxy import CountingProxy

BUCKET = "memories-test"


def _points(n, seed=3):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-50, 50, n), rng.uniform(-40, 60, n)
    return GeoDataFrame({"v": rng.normal(size=n), "id": np.arange(n)},
                        geometry=points_from_xy(x, y), crs="EPSG:4326")


def _memory(tmp_path, service, endpoint=None):
    options = copy.deepcopy(service.options)
    if endpoint is not None:
        options["client_kwargs"]["endpoint_url"] = endpoint
    prefix = uuid.uuid4().hex[:8]
    return mg.Memory(mg.StorageConfig.from_dict({
        "home": str(tmp_path / f"home-{prefix}"),
        "default_tier": "warm",
        "tiers": {"warm": {"url": f"{service.url}/{prefix}/warm", "storage_options": options}},
    }))


def _s3(service):
    o = service.options
    return boto3.client("s3", endpoint_url=o["client_kwargs"]["endpoint_url"], region_name="us-east-1",
                        aws_access_key_id=o["key"], aws_secret_access_key=o["secret"])


def _state(service, prefix):
    """Objects and unfinished multipart uploads under ``prefix``."""
    client = _s3(service)
    objects = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])
    return [o["Key"] for o in objects], [u["Key"] for u in uploads]


@pytest.fixture
def proxy(s3_service):
    proxy = CountingProxy(s3_service.options["client_kwargs"]["endpoint_url"])
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("rows", [500, 40_000])
def test_a_save_on_s3_is_hashed_as_written_not_read_back(tmp_path, s3_service, proxy, rows):
    gdf = _points(rows)
    mem = _memory(tmp_path, s3_service, proxy.url)
    proxy.reset()
    entry = mem.save(gdf, "layer")
    log = list(proxy.log)
    _, sent, received = proxy.reset()
    backend = mem.tiers.backend("warm")
    path = backend.full_path(entry.path)
    size = backend.remote_fs.size(path)

    assert mem.catalog.manifest(mem.catalog.get("layer")) == build_manifest(backend.remote_fs, path)
    assert sent >= size
    assert received < size / 20 + 20_000
    name = path.rsplit("/", 1)[-1]
    assert not [m for m, p, _ in log if m == "GET" and p.split("?")[0].endswith(name)]
    on_file = [m for m, p, _ in log if p.split("?")[0].endswith(name)]
    assert on_file.count("PUT") == 1
    assert set(on_file) <= {"PUT", "HEAD"}
    assert [e.key for e in mem.verify("layer")] == ["layer"]
    assert_geodataframe_equal(mem.open("layer"), gdf)


def test_partitioned_saves_on_s3_hash_every_file(tmp_path, s3_service):
    gdf = _points(3_000)
    gdf["zone"] = np.where(gdf.geometry.x < 0, "west", "east")
    mem = _memory(tmp_path, s3_service)
    entry = mem.save(gdf, "zones", partition_cols=["zone"])
    backend = mem.tiers.backend("warm")
    manifest = mem.catalog.manifest(mem.catalog.get("zones"))
    assert sorted(manifest.files) == ["zone=east/part-0.parquet", "zone=west/part-0.parquet"]
    assert manifest == build_manifest(backend.remote_fs, backend.full_path(entry.path))


def test_a_pending_save_on_s3_still_gets_its_manifest(tmp_path, s3_service):
    gdf = _points(2_000)
    mem = _memory(tmp_path, s3_service)
    pending = mem.save(gdf, "later", compute=False)
    entry = pending.compute()
    backend = mem.tiers.backend("warm")
    manifest = mem.catalog.manifest(mem.catalog.get("later"))
    assert manifest == build_manifest(backend.remote_fs, backend.full_path(entry.path))
    assert_geodataframe_equal(mem.open("later"), gdf)


@pytest.mark.parametrize("size", [3 * 2**20, 12 * 2**20])
def test_an_upload_interrupted_by_an_error_leaves_nothing(tmp_path, s3_service, monkeypatch, size):
    monkeypatch.setattr(upload, "SINGLE_PUT_LIMIT", 5 * 2**20)
    monkeypatch.setattr(upload, "PART_SIZE", 5 * 2**20)
    mem = _memory(tmp_path, s3_service)
    prefix = mem.tiers.backend("warm").full_path("broken").split("/", 1)[1]
    location = Location(mem.tiers.backend("warm"), "broken/@v/1.parquet")
    sink = location_sink(location)
    data = np.random.default_rng(0).bytes(size)

    def interrupted():
        with sink.open(location.full_path) as target:
            for start in range(0, size, 2**20):
                target.write(data[start:start + 2**20])
            raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        interrupted()
    assert _state(s3_service, prefix) == ([], [])
    assert not sink.digests

    with sink.open(location.full_path) as target:
        target.write(data)
    assert _state(s3_service, prefix)[0] == [f"{prefix}/@v/1.parquet"]
    assert sink.digests[location.full_path].digest == hash_bytes(data)


def test_a_layer_that_fails_while_written_leaves_no_object(tmp_path, s3_service):
    gdf = _points(1_000)
    mem = _memory(tmp_path, s3_service)
    backend = mem.tiers.backend("warm")
    location = Location(backend, "failing/@v/1.parquet")
    with pytest.raises(TypeError):
        write_geoparquet(gdf, location.full_path, sink=location_sink(location),
                         data_page_size="not a size")
    assert _state(s3_service, location.full_path.split("/", 1)[1]) == ([], [])


@pytest.mark.parametrize("z", [False, True])
@pytest.mark.parametrize("index", ["range", "labels"])
def test_point_tables_are_what_geopandas_builds(z, index):
    from geopandas.io.arrow import _geopandas_to_arrow

    from memories_geo.formats.geoparquet.points import point_table

    gdf = _points(1_000)
    if z:
        gdf = gdf.set_geometry(points_from_xy(gdf.geometry.x, gdf.geometry.y, gdf["v"]), crs="EPSG:4326")
    if index == "labels":
        gdf.index = [f"r{i}" for i in range(len(gdf))]
    gdf.attrs["source"] = "test"
    expected = _geopandas_to_arrow(gdf, geometry_encoding="geoarrow", schema_version="1.1.0")
    table = point_table(gdf)
    assert table.schema.equals(expected.schema, check_metadata=True)
    assert table.schema.field("geometry").metadata == expected.schema.field("geometry").metadata
    assert table.equals(expected)


def test_layers_that_are_not_plain_points_take_geopandas_path():
    from shapely.geometry import LineString, Point

    from memories_geo.formats.geoparquet.points import point_table

    others = [None, Point(), LineString([(0, 0), (1, 1)]), Point(0, 0, 1), Point(np.nan, 1)]
    for other in others:
        geometries = [Point(0, 0), other]
        assert point_table(GeoDataFrame(geometry=geometries, crs="EPSG:4326")) is None


def test_a_closed_writer_sends_nothing_until_finished():
    fs = fsspec.filesystem("memory")
    sink = FsspecSink(fs)
    with sink.open("/closed/a.bin") as target:
        target.write(b"abc")
        target.close()
        assert not fs.exists("/closed/a.bin")
        with pytest.raises(ValueError, match="closed"):
            target.write(b"d")
    assert fs.cat_file("/closed/a.bin") == b"abc"
    assert sink.digests["/closed/a.bin"].digest == hash_bytes(b"abc")
