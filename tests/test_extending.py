"""A third-party format and a third-party backend, defined here, registered through the public
registries and run through the shipped test kit, without touching any other module."""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import urlsplit

import fsspec
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal

import memories_geo as mg
from memories_geo.backends import Capability, Location
from memories_geo.errors import InvalidKeyError, OptionError
from memories_geo.footprint import Footprint, vector_footprint
from memories_geo.formats.base import FileFormat, WriteOptions
from memories_geo.query import OpenRequest
from memories_geo.testing import BackendTests, FormatRoundTripTests, VectorQueryTests
from memories_geo.types import Kind


class FeatherFormat(FileFormat):
    """Vector layers as one Arrow IPC (Feather) file."""

    name: ClassVar[str] = "toyfeather"
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.VECTOR})
    extension: ClassVar[str] = ".feather"

    def can_store(self, obj: Any) -> bool:
        return isinstance(obj, gpd.GeoDataFrame)

    def _write(
        self, obj: Any, location: Location, options: WriteOptions
    ) -> tuple[Footprint, Mapping[str, Any]]:
        location.fs.makedirs(posixpath.dirname(location.full_path), exist_ok=True)
        with location.fs.open(location.full_path, "wb") as f:
            obj.to_feather(f)
        return vector_footprint(obj), {"type": "GeoDataFrame"}

    def open(self, location: Location, object_info: Mapping[str, Any], request: OpenRequest) -> Any:
        with location.fs.open(location.full_path, "rb") as f:
            gdf = gpd.read_feather(f)
        if request.bbox is not None:
            minx, miny, maxx, maxy = request.bbox_in(gdf.crs)
            gdf = gdf.cx[minx:maxx, miny:maxy]
        if request.time is not None:
            times = [c for c in gdf.columns if pd.api.types.is_datetime64_any_dtype(gdf[c])]
            if not times:
                raise OptionError("time= needs a datetime column, and this layer has none")
            start, end = request.time
            when = gdf[times[0]]
            gdf = gdf[(when >= (start or when.min())) & (when <= (end or when.max()))]
        if request.columns is not None:
            gdf = gdf[[*request.columns, gdf.geometry.name]]
        return gdf


class ToyBackend:
    """Files under ``toy://name/path``, kept in fsspec's memory filesystem."""

    capabilities = frozenset({Capability.WRITES, Capability.LISTING, Capability.FILES})

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        parts = urlsplit(url)
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.root = posixpath.normpath(f"/toy/{parts.netloc}/{parts.path.strip('/')}")
        self.protocol = "memory"

    @property
    def fs(self) -> Any:
        return fsspec.filesystem("memory")

    def full_path(self, path: str) -> str:
        joined = posixpath.normpath(posixpath.join(self.root, path))
        if path.startswith("/") or not (joined == self.root or joined.startswith(self.root + "/")):
            raise InvalidKeyError(f"path {path!r} escapes the tier root")
        return joined

    def url_for(self, path: str) -> str:
        return f"toy://{self.full_path(path).removeprefix('/toy/')}"

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self.full_path(path)))

    def remove(self, path: str) -> None:
        if self.exists(path):
            self.fs.rm(self.full_path(path), recursive=True)

    def listdir(self, path: str) -> list[str]:
        try:
            listing = self.fs.ls(self.full_path(path), detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in listing)

    def write_bytes(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(self.full_path(path), data)

    def read_bytes(self, path: str) -> bytes:
        return bytes(self.fs.cat_file(self.full_path(path)))

    def version_paths(self) -> list[str]:
        found = set()
        for full in self.fs.find(self.root):
            relative = posixpath.relpath(full, self.root)
            head, sep, tail = relative.partition("/@v/")
            if sep and not head.startswith("@"):
                found.add(f"{head}/@v/{tail.split('/')[0].removesuffix('.record.json')}")
        return sorted(found)


@pytest.fixture(scope="module", autouse=True)
def registered():
    mg.register_format("toyfeather", FeatherFormat)
    mg.register_backend("toy", ToyBackend)
    assert "toyfeather" in mg.available_formats()


def _frame(n: int) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(n)
    return gpd.GeoDataFrame(
        {"v": rng.normal(size=n), "i": np.arange(n, dtype="int16"), "s": [f"s{i}" for i in range(n)]},
        geometry=shapely.points(rng.uniform(0, 9, n), rng.uniform(40, 50, n)),
        crs="EPSG:4326",
        index=pd.Index(np.arange(n) * 3, name="fid"),
    )


def _toy_memory(tmp_path) -> mg.Memory:
    config = mg.StorageConfig.embedded(tmp_path / "memories")
    toy = mg.TierConfig(url=f"toy://{uuid.uuid4().hex}/tier")
    return mg.Memory(replace(config, tiers={**config.tiers, "toy": toy}))


class TestToyFormatOnLocalFiles(VectorQueryTests, FormatRoundTripTests):
    format_name = "toyfeather"

    @pytest.fixture(params=[0, 1, 25])
    def case(self, request):
        return _frame(request.param)

    def assert_same(self, expected, actual):
        assert_geodataframe_equal(expected, actual, check_index_type=True)


class TestToyFormatOnToyBackend(TestToyFormatOnLocalFiles):
    tier = "toy"

    @pytest.fixture
    def memory(self, tmp_path):
        return _toy_memory(tmp_path)


class TestGeoParquetOnToyBackend(FormatRoundTripTests):
    format_name = "geoparquet"
    tier = "toy"

    @pytest.fixture
    def memory(self, tmp_path):
        return _toy_memory(tmp_path)

    @pytest.fixture(params=[1, 30])
    def case(self, request):
        return _frame(request.param)

    def assert_same(self, expected, actual):
        assert_geodataframe_equal(expected, actual, check_index_type=True)


class TestToyBackend(BackendTests):
    @pytest.fixture
    def backend(self):
        return mg.backends.make_backend(f"toy://{uuid.uuid4().hex}/root")


def test_an_unknown_scheme_lists_the_registered_ones():
    with pytest.raises(mg.ConfigError, match=r"'nope'.*'toy'"):
        mg.backends.make_backend("nope://x")


def test_a_plugin_that_is_not_installed_is_listed_with_a_hint(tmp_path):
    mg.register_format("absentplugin", "memories_geo_no_such_module.formats:Nothing", install="absent-plugin")
    try:
        assert "absentplugin" in mg.formats.registry.known_formats()
        assert "absentplugin" not in mg.available_formats()
        with pytest.raises(mg.FormatError, match=r"pip install absent-plugin"):
            mg.Memory(tmp_path / "m").save(_frame(3), "fails", format="absentplugin")
    finally:
        mg.formats.registry.unregister_format("absentplugin")


def test_a_broken_plugin_warns_and_default_saves_still_work(tmp_path):
    mg.register_format("brokenplugin", "memories_geo.formats.base:NoSuchFormatClass")
    try:
        mem = mg.Memory(tmp_path / "m")
        with pytest.warns(RuntimeWarning, match="brokenplugin"):
            entry = mem.save(_frame(3), "still/works")
        assert entry.format == "geoparquet"
        with pytest.raises(mg.FormatError, match=r"brokenplugin.*failed to load"):
            mem.save(_frame(3), "fails", format="brokenplugin")
    finally:
        mg.formats.registry.unregister_format("brokenplugin")
    assert "brokenplugin" not in mg.formats.registry.known_formats()
