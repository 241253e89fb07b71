"""The ``parquet`` time-series format: exact round trips, layout, pushdown, appends, object stores."""

from __future__ import annotations

import os
import posixpath
import uuid
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import shapely
from fsspec.implementations.local import LocalFileSystem

import memories_geo as mg
from memories_geo.backends.base import Location
from memories_geo.backends.files import FileBackend
from memories_geo.errors import DuplicateTimesError, OptionError, UnsupportedObjectError
from memories_geo.footprint import bbox_to_wgs84
from memories_geo.formats.base import WriteOptions
from memories_geo.formats.parquet import LEVEL_CODECS, ParquetFormat
from memories_geo.formats.parquet.read import plan_read, read_timeseries
from memories_geo.formats.registry import get_format
from memories_geo.query import open_request
from memories_geo.testing.capabilities import AppendTests, TimeQueryTests
from memories_geo.testing.roundtrip import (
    TIMESERIES_CASES,
    FormatRoundTripTests,
    OnMemoryFilesystem,
    assert_same_timeseries,
    timeseries_case,
)
from memories_geo.types import CompressionLevel

KEY = "stations/obs"


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.embedded(tmp_path / "memories"))


def version_root(mem: mg.Memory, key: str, version: int | None = None) -> str:
    entry = mem.info(key, version=version)
    return mem.tiers.backend(entry.tier).full_path(entry.path)


def data_files(root: str) -> list[str]:
    """Data files of a version, relative to it."""
    found = []
    for folder, _, names in os.walk(root):
        found += [os.path.relpath(os.path.join(folder, n), root) for n in names if n.endswith(".parquet")]
    return sorted(found)


def observations(
    years: int = 3, stations: int = 3, freq: str = "12h", start: str = "2021-01-01"
) -> pd.DataFrame:
    """Station readings of two variables, sorted by (time, station), tz-aware UTC."""
    times = pd.date_range(start, periods=int(pd.Timedelta(days=365 * years) / pd.Timedelta(freq)),
                          freq=freq, tz="UTC")
    names = [f"s{i}" for i in range(1, stations + 1)]
    rng = np.random.default_rng(3)
    n = len(times) * stations
    return pd.DataFrame({
        "time": np.repeat(times, stations),
        "station": names * len(times),
        "variable": np.where(np.arange(n) % 2, "rh", "t2m"),
        "value": rng.normal(size=n),
    })


def station_points(days: int = 40) -> gpd.GeoDataFrame:
    where = {
        "paris": (2.35, 48.85), "lyon": (4.83, 45.76), "marseille": (5.37, 43.30), "brest": (-4.49, 48.39),
    }
    names = list(where) * days
    frame = gpd.GeoDataFrame(
        {
            "station": names,
            "time": np.repeat(pd.date_range("2024-01-01", periods=days, freq="D"), len(where)),
            "value": np.arange(len(names), dtype="float64"),
        },
        geometry=shapely.points([where[n] for n in names]),
        crs="EPSG:4326",
    )
    return frame.to_crs("EPSG:2154")


class CountingFileSystem(LocalFileSystem):
    """The local filesystem, recording every file opened."""

    cachable = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened: list[str] = []

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        self.opened.append(self._strip_protocol(path))
        return super()._open(path, mode=mode, **kwargs)


# -- the shared contracts --------------------------------------------------------------------


class TestParquetRoundTrip(FormatRoundTripTests):
    format_name = "parquet"

    @pytest.fixture(params=TIMESERIES_CASES)
    def case(self, request: pytest.FixtureRequest) -> Any:
        return timeseries_case(request.param)

    def assert_same(self, expected: Any, actual: Any) -> None:
        assert_same_timeseries(expected, actual)

    def test_input_is_not_modified(self, memory: mg.Memory, case: Any) -> None:
        before = case.copy(deep=True)
        memory.save(case, self.key, format=self.format_name, tier=self.tier)
        assert_same_timeseries(before, case)


class TestParquetOnMemoryFilesystem(OnMemoryFilesystem, FormatRoundTripTests):
    format_name = "parquet"

    @pytest.fixture(params=["tz-aware-column", "station-points"])
    def case(self, request: pytest.FixtureRequest) -> Any:
        return timeseries_case(request.param)

    def assert_same(self, expected: Any, actual: Any) -> None:
        assert_same_timeseries(expected, actual)


class _Embedded:
    tier = "hot"
    key = "contract/series"

    @pytest.fixture
    def memory(self, tmp_path: Path) -> mg.Memory:
        return mg.Memory(tmp_path / "memories")


class TestParquetTimeQueries(_Embedded, TimeQueryTests):
    format_name = "parquet"
    query_save_kwargs = {"row_group_size": 128}

    def units_read(self, memory: Any, key: str, **query: Any) -> int:
        entry = memory.info(key)
        return plan_read(version_root(memory, key), entry.object_info, open_request(**query)).row_groups()


class TestParquetAppend(_Embedded, AppendTests):
    format_name = "parquet"

    def append_parts(self) -> tuple[Any, Any, Any, dict[str, Any]]:
        full = timeseries_case("tz-aware-column")
        first, second = full.iloc[:16], full.iloc[16:]
        return first, second, full, {}

    def assert_same(self, expected: Any, actual: Any) -> None:
        assert_same_timeseries(expected, actual)


# -- registry and defaults ------------------------------------------------------------------


def test_registry_returns_this_format() -> None:
    fmt = get_format("parquet")
    assert isinstance(fmt, ParquetFormat)
    assert fmt.extension == ".parquet"
    assert fmt.can_store(timeseries_case("datetime-index"))
    assert fmt.can_store(timeseries_case("station-points"))
    assert not fmt.can_store(pd.DataFrame({"a": [1]}))
    assert fmt.default_priority(timeseries_case("tz-aware-column")) > 0
    assert fmt.default_priority(timeseries_case("station-points")) > 0
    xr = pytest.importorskip("xarray")
    assert fmt.default_priority(xr.Dataset()) == 0


def test_time_series_default_to_parquet_on_file_tiers(mem: mg.Memory) -> None:
    table = mem.save(timeseries_case("tz-aware-column"), "plain")
    stations = mem.save(timeseries_case("station-points"), "points")
    layer = mem.save(timeseries_case("station-points").drop(columns="time"), "layer")
    assert (table.format, table.kind) == ("parquet", "timeseries")
    assert (stations.format, stations.kind) == ("parquet", "timeseries")
    assert layer.format == "geoparquet"


def test_footprint_has_the_time_range_columns_rows_and_station_bbox(mem: mg.Memory) -> None:
    frame = timeseries_case("tz-aware-column")
    entry = mem.save(frame, "plain")
    assert entry.bbox is None
    assert pd.Timestamp(entry.time_start) == frame["time"].min().tz_convert(None)
    assert pd.Timestamp(entry.time_end) == frame["time"].max().tz_convert(None)
    assert list(entry.variables) == list(frame.columns)
    points = station_points()
    entry = mem.save(points, "points")
    np.testing.assert_allclose(entry.bbox, bbox_to_wgs84(points.total_bounds, points.crs))
    lonlat = points.to_crs("EPSG:4326").total_bounds
    assert entry.bbox[0] <= lonlat[0]
    assert entry.bbox[1] <= lonlat[1]
    assert entry.bbox[2] >= lonlat[2]
    assert entry.bbox[3] >= lonlat[3]
    assert entry.crs == "EPSG:2154"
    assert "geometry" not in entry.variables
    assert len(mem.search(time=("2024-01-05", "2024-01-06"), bbox=(2, 48, 3, 49))) == 1


# -- layout on disk -------------------------------------------------------------------------


def test_partitions_by_year_by_default(mem: mg.Memory) -> None:
    frame = observations()
    mem.save(frame, KEY)
    root = version_root(mem, KEY)
    assert {f.split("/")[0] for f in data_files(root)} == {"year=2021", "year=2022", "year=2023"}
    assert os.path.isfile(os.path.join(root, "_common_metadata"))
    assert "year" not in pq.read_schema(os.path.join(root, data_files(root)[0])).names
    assert "year" not in mem.open(KEY).columns


def test_partition_columns_are_directories_and_come_back_with_their_dtype(mem: mg.Memory) -> None:
    frame = timeseries_case("categorical-variables")
    mem.save(frame, KEY, partition_cols=["year", "variable", "station"])
    root = version_root(mem, KEY)
    assert "year=2023/variable=t2m/station=101" in {posixpath.dirname(f) for f in data_files(root)}
    schema = pq.read_schema(os.path.join(root, data_files(root)[0]))
    assert not {"variable", "station", "year"} & set(schema.names)
    assert_same_timeseries(frame, mem.open(KEY))


def test_rows_are_sorted_by_time_then_station_inside_files(mem: mg.Memory) -> None:
    frame = observations(years=1).sort_values(["station", "time"], ignore_index=True)
    mem.save(frame, KEY, row_group_size=100)
    root = version_root(mem, KEY)
    (name,) = data_files(root)
    stored = pq.read_table(os.path.join(root, name)).to_pandas()
    keys = list(zip(stored["time"], stored["station"], strict=True))
    assert keys == sorted(keys)
    group = pq.ParquetFile(os.path.join(root, name)).metadata.row_group(0)
    assert [c.column_index for c in group.sorting_columns] == [0, 1]
    assert_same_timeseries(frame, mem.open(KEY))


def test_geometry_files_are_geoparquet(mem: mg.Memory) -> None:
    from memories_geo.formats.geoparquet.metadata import covering_column, geo_metadata

    points = station_points()
    mem.save(points, KEY, partition_cols=["station"])
    root = version_root(mem, KEY)
    brest = next(f for f in data_files(root) if "station=brest" in f)
    geo = geo_metadata(os.path.join(root, brest))
    assert geo["version"] == "1.1.0"
    assert covering_column(geo) == "bbox"
    x, y = points.loc[points["station"] == "brest"].geometry.iloc[0].coords[0]
    np.testing.assert_allclose(geo["columns"]["geometry"]["bbox"], [x, y, x, y])
    assert gpd.read_parquet(os.path.join(root, brest)).crs.equals(points.crs)


def test_other_readers_read_the_directory(mem: mg.Memory) -> None:
    frame = observations(years=1)
    mem.save(frame, KEY, partition_cols=["year", "variable"])
    read = pd.read_parquet(version_root(mem, KEY))
    assert len(read) == len(frame)
    assert {"time", "station", "value", "variable"} <= set(read.columns)


# -- pushdown ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ten_years() -> pd.DataFrame:
    return observations(years=10, stations=3, freq="1D", start="2015-01-01")


def test_a_station_month_of_ten_years_opens_only_that_months_file(
    mem: mg.Memory, ten_years: pd.DataFrame
) -> None:
    entry = mem.save(ten_years, KEY, partition_cols=["year", "month"])
    root = version_root(mem, KEY)
    assert len(data_files(root)) == 120
    request = open_request(time="2021-03", options={"filters": [("station", "=", "s2")]})
    fs = CountingFileSystem()
    got = read_timeseries(root, entry.object_info, request, filesystem=fs)
    opened = sorted(os.path.relpath(p, root) for p in fs.opened if p.endswith(".parquet"))
    assert [posixpath.dirname(p) for p in opened] == ["year=2021/month=3"]
    when = ten_years["time"]
    expected = ten_years[(when >= "2021-03-01") & (when < "2021-04-01") & (ten_years["station"] == "s2")]
    assert len(expected) == 31
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_exact=True)
    pd.testing.assert_frame_equal(mem.open(KEY, time="2021-03", filters=[("station", "=", "s2")]), got)


def test_time_prunes_row_groups_by_statistics(mem: mg.Memory, ten_years: pd.DataFrame) -> None:
    entry = mem.save(ten_years, KEY, row_group_size=200)
    root = version_root(mem, KEY)
    plan = plan_read(root, entry.object_info, open_request(time="2021-03"))
    assert [posixpath.relpath(p, root).split("/")[0] for p in plan.fragments()] == ["year=2021"]
    in_file = pq.ParquetFile(plan.fragments()[0]).metadata.num_row_groups
    assert in_file == 6
    assert plan.row_groups() == 2
    assert len(mem.open(KEY, time="2021-03")) == 31 * 3


def test_filters_on_partition_values_skip_files(mem: mg.Memory) -> None:
    frame = observations(years=2)
    entry = mem.save(frame, KEY, partition_cols=["year", "variable"])
    root = version_root(mem, KEY)
    plan = plan_read(root, entry.object_info, open_request(options={"filters": [("variable", "=", "rh")]}))
    assert sorted(posixpath.basename(posixpath.dirname(p)) for p in plan.fragments()) == ["variable=rh"] * 2
    got = mem.open(KEY, filters=[("variable", "=", "rh")])
    expected = frame[frame["variable"] == "rh"].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    by_year = mem.open(KEY, filters=[("year", "=", 2022)])
    assert (by_year["time"].dt.year == 2022).all()
    assert len(by_year) == (frame["time"].dt.year == 2022).sum()


def test_filters_as_an_expression_with_time_and_columns(mem: mg.Memory) -> None:
    frame = observations(years=1)
    mem.save(frame, KEY)
    got = mem.open(KEY, time="2021-02", columns=["value"], filters=ds.field("value") > 0)
    when = frame["time"]
    rows = (when >= "2021-02-01") & (when < "2021-03-01") & (frame["value"] > 0)
    expected = frame.loc[rows, ["value", "time"]]
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_exact=True)


@pytest.mark.parametrize("filters", ["value > 0", [("nope", "=", 1)]])
def test_bad_filters_are_an_option_error(mem: mg.Memory, filters: Any) -> None:
    mem.save(observations(years=1), KEY)
    with pytest.raises(OptionError, match="filters"):
        mem.open(KEY, filters=filters)


def test_bbox_on_station_points_prunes_station_files(mem: mg.Memory) -> None:
    points = station_points()
    entry = mem.save(points, KEY, partition_cols=["station"])
    root = version_root(mem, KEY)
    box = (4.0, 43.0, 6.0, 46.0)
    plan = plan_read(root, entry.object_info, open_request(bbox=box))
    assert sorted(posixpath.basename(posixpath.dirname(p)) for p in plan.files) == [
        "station=lyon", "station=marseille"]
    got = mem.open(KEY, bbox=box)
    expected = points[points["station"].isin(["lyon", "marseille"])].reset_index(drop=True)
    assert_same_timeseries(expected, got)
    lyon = points.loc[points["station"] == "lyon"].geometry.iloc[0]
    native = mem.open(KEY, bbox=(lyon.x - 1, lyon.y - 1, lyon.x + 1, lyon.y + 1), bbox_crs="EPSG:2154")
    assert set(native["station"]) == {"lyon"}


def test_bbox_without_geometry_is_refused(mem: mg.Memory) -> None:
    mem.save(observations(years=1), KEY)
    with pytest.raises(OptionError, match="bbox"):
        mem.open(KEY, bbox=(0, 0, 1, 1))


def test_columns_keep_the_time_and_the_geometry(mem: mg.Memory) -> None:
    points = station_points()
    mem.save(points, KEY)
    got = mem.open(KEY, columns=["value"])
    assert list(got.columns) == ["value", "time", "geometry"]
    assert got.crs.equals(points.crs)
    with pytest.raises(OptionError, match=r"\['nope'\].*columns"):
        mem.open(KEY, columns=["nope"])


def test_time_on_a_datetime_index(mem: mg.Memory) -> None:
    frame = timeseries_case("datetime-index")
    mem.save(frame, KEY)
    got = mem.open(KEY, time=("2024-02-29 03:00", "2024-02-29 05:00"))
    assert_same_timeseries(frame.loc["2024-02-29 03:00":"2024-02-29 05:00"], got)
    assert got.index.freqstr == "h"


def test_unknown_open_keyword_lists_the_accepted_ones(mem: mg.Memory) -> None:
    mem.save(observations(years=1), KEY)
    with pytest.raises(OptionError, match=r"'where'.*accepted keywords: \[.*'filters'"):
        mem.open(KEY, where="value > 0")


# -- save keywords ------------------------------------------------------------------------------


def test_every_parquet_storage_option_is_accepted(mem: mg.Memory) -> None:
    frame = observations(years=2)
    mem.save(frame, KEY, partition_cols=["year", "variable"], row_group_size=100, page_size=8192)
    root = version_root(mem, KEY)
    meta = pq.ParquetFile(os.path.join(root, data_files(root)[0])).metadata
    assert meta.num_row_groups > 1
    assert all(meta.row_group(i).num_rows <= 100 for i in range(meta.num_row_groups))
    assert meta.row_group(0).column(0).compression == "SNAPPY"
    pd.testing.assert_frame_equal(mem.open(KEY), frame, check_exact=True)


def _write_directly(tmp_path: Path, level: CompressionLevel, **extra: Any) -> pq.FileMetaData:
    backend = FileBackend((tmp_path / "direct").as_uri())
    location = Location(backend, f"k/@v/{uuid.uuid4().hex}.parquet")
    ParquetFormat().write(observations(years=1), location, WriteOptions(compression=level, extra=extra))
    root = location.full_path
    return pq.ParquetFile(os.path.join(root, data_files(root)[0])).metadata


@pytest.mark.parametrize(("level", "extra", "codec"), [
    (CompressionLevel.HIGH, {"compression": "snappy"}, "SNAPPY"),
    (CompressionLevel.FAST, {"compression": "zstd", "compression_level": 7}, "ZSTD"),
    (CompressionLevel.FAST, {"compression": "none"}, "UNCOMPRESSED"),
    (CompressionLevel.MAXIMUM, {}, "ZSTD"),
    (CompressionLevel.FAST, {}, "SNAPPY"),
])
def test_compression_codecs(
    tmp_path: Path, level: CompressionLevel, extra: dict[str, Any], codec: str
) -> None:
    assert _write_directly(tmp_path, level, **extra).row_group(0).column(0).compression == codec


def test_tier_levels_choose_the_codec(mem: mg.Memory) -> None:
    assert LEVEL_CODECS[CompressionLevel.FAST] == ("snappy", None)
    mem.save(observations(years=1), KEY, tier="cold")
    root = version_root(mem, KEY)
    column = pq.ParquetFile(os.path.join(root, data_files(root)[0])).metadata.row_group(0).column(0)
    assert column.compression == "ZSTD"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"partition_cols": "year"}, "partition_cols must be a list"),
    ({"partition_cols": ["year", "year"]}, "twice"),
    ({"partition_cols": ["nope"]}, r"'nope' is neither a column.*'year', 'month', 'day'"),
    ({"partition_cols": ["value"]}, "cannot be a partition"),
    ({"row_group_size": 0}, "row_group_size must be a positive integer"),
    ({"page_size": "8k"}, "page_size must be a positive integer"),
    ({"on_duplicate": "merge"}, r"on_duplicate must be one of \['error', 'skip', 'replace'\]"),
    ({"time_column": "value"}, "not a datetime column"),
    ({"station_column": "nope"}, "station_column='nope' is not a column"),
    ({"compression_level": 3}, "compression_level applies to zstd"),
    ({"sort": "hilbert"}, r"accepted keywords: \[.*'partition_cols'"),
])
def test_bad_save_keywords_are_refused(mem: mg.Memory, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        mem.save(observations(years=1), KEY, **kwargs)
    assert len(mem.ls()) == 0


def test_bad_codec_names_the_accepted_ones(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match=r"compression must be one of \['snappy', 'zstd'"):
        _write_directly(tmp_path, CompressionLevel.FAST, compression="lzma")


def test_time_and_station_columns_can_be_named(mem: mg.Memory) -> None:
    frame = observations(years=1).rename(columns={"station": "gauge"})
    frame["issued"] = frame["time"] - pd.Timedelta(hours=3)
    mem.save(frame, KEY, time_column="issued", station_column="gauge", partition_cols=["month"])
    info = mem.info(KEY).object_info
    assert (info["time"]["field"], info["station"]) == ("issued", "gauge")
    assert_same_timeseries(frame, mem.open(KEY))
    got = mem.open(KEY, time="2021-01-01")
    assert (got["issued"].dt.date.astype(str) == "2021-01-01").all()


# -- appends ----------------------------------------------------------------------------------


def _inodes(root: str) -> dict[str, int]:
    return {f: os.stat(os.path.join(root, f)).st_ino for f in data_files(root)}


def test_append_shares_the_older_files(mem: mg.Memory) -> None:
    frame = observations(years=3)
    last_day = frame["time"] >= "2023-12-30"
    first, day = frame[~last_day], frame[last_day]
    mem.save(first, KEY)
    entry = mem.save(day, KEY, mode="a")
    assert entry.version == 2
    old, new = _inodes(version_root(mem, KEY, 1)), _inodes(version_root(mem, KEY, 2))
    assert all(new[f] == ino for f, ino in old.items())
    added = sorted(set(new) - set(old))
    assert [posixpath.dirname(f) for f in added] == ["year=2023"]
    assert pq.read_metadata(os.path.join(version_root(mem, KEY, 2), added[0])).num_rows == len(day)
    assert_same_timeseries(frame, mem.open(KEY))
    assert_same_timeseries(first, mem.open(KEY, version=1))
    assert pd.Timestamp(entry.time_end) == frame["time"].max().tz_convert(None)
    mem.verify(KEY, all_versions=True)


def test_append_on_a_datetime_index_keeps_the_frequency(mem: mg.Memory) -> None:
    frame = timeseries_case("datetime-index")
    mem.save(frame.iloc[:30], KEY)
    mem.save(frame.iloc[30:], KEY, mode="a")
    assert_same_timeseries(frame, mem.open(KEY))


def test_duplicates_are_refused_by_default_naming_range_and_choices(mem: mg.Memory) -> None:
    frame = observations(years=1)
    mem.save(frame, KEY)
    again = frame[(frame["time"] >= "2021-06-01") & (frame["time"] < "2021-06-03")]
    with pytest.raises(DuplicateTimesError, match=(
        r"12 of the 12 rows .* for 3 station\(s\) .* from 2021-06-01T00:00:00\.000000 to "
        r"2021-06-02T12:00:00\.000000.*'skip'.*'replace'.*'error'"
    )):
        mem.save(again, KEY, mode="a")
    assert [e.version for e in mem.versions(KEY)] == [1]


def test_duplicates_are_per_station(mem: mg.Memory) -> None:
    frame = observations(years=1)
    mem.save(frame, KEY)
    other = frame[frame["time"] < "2021-01-03"].assign(station="s9")
    mem.save(other, KEY, mode="a")
    assert_same_timeseries(pd.concat([frame, other], ignore_index=True), mem.open(KEY))


def test_on_duplicate_skip_drops_the_stored_rows(mem: mg.Memory) -> None:
    frame = observations(years=1)
    first, rest = frame.iloc[:600], frame.iloc[600:]
    mem.save(first, KEY)
    mem.save(frame.iloc[500:], KEY, mode="a", on_duplicate="skip")
    assert_same_timeseries(pd.concat([first, rest]), mem.open(KEY))


def test_on_duplicate_replace_rewrites_only_the_affected_files(mem: mg.Memory) -> None:
    frame = observations(years=3)
    mem.save(frame, KEY)
    fix = frame[(frame["time"] >= "2022-05-01") & (frame["time"] < "2022-05-02")].copy()
    fix["value"] = -99.0
    late = observations(years=1, start="2024-01-01").iloc[:6]
    mem.save(pd.concat([fix, late]), KEY, mode="a", on_duplicate="replace")
    old, new = _inodes(version_root(mem, KEY, 1)), _inodes(version_root(mem, KEY, 2))
    shared = {posixpath.dirname(f) for f in old if new.get(f) == old[f]}
    assert shared == {"year=2021", "year=2023"}
    assert {posixpath.dirname(f) for f in set(new) - set(old)} == {"year=2022", "year=2024"}
    expected = frame.copy()
    expected.loc[fix.index, "value"] = -99.0
    expected = pd.concat([expected, late], ignore_index=True)
    assert_same_timeseries(expected, mem.open(KEY))
    assert_same_timeseries(frame, mem.open(KEY, version=1))
    mem.verify(KEY, all_versions=True)


def test_append_refuses_rows_that_do_not_fit(mem: mg.Memory) -> None:
    frame = observations(years=1)
    mem.save(frame, KEY)
    with pytest.raises(OptionError, match="partition_cols"):
        mem.save(frame.iloc[:3], KEY, mode="a", partition_cols=["variable"])
    with pytest.raises(UnsupportedObjectError, match="column types would change"):
        mem.save(frame.iloc[:3].astype({"value": "float32"}), KEY, mode="a")
    with pytest.raises(UnsupportedObjectError, match="columns differ"):
        mem.save(frame.iloc[:3].drop(columns="value"), KEY, mode="a")
    assert [e.version for e in mem.versions(KEY)] == [1]


def test_verify_detects_a_changed_file_after_an_append(mem: mg.Memory) -> None:
    frame = observations(years=2)
    mem.save(frame.iloc[:-6], KEY)
    mem.save(frame.iloc[-6:], KEY, mode="a")
    mem.verify(KEY, all_versions=True)
    root = version_root(mem, KEY)
    target = os.path.join(root, data_files(root)[0])
    data = bytearray(Path(target).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(target).write_bytes(bytes(data))
    with pytest.raises(mg.ChecksumMismatchError, match="checksum changed"):
        mem.verify(KEY)


# -- object stores ---------------------------------------------------------------------------


def test_round_trip_pushdown_and_append_on_s3(tmp_path: Path, s3_service: Any) -> None:
    config = mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "default_tier": "warm",
        "tiers": {"warm": {"url": f"{s3_service.url}/{uuid.uuid4().hex[:8]}/warm",
                           "storage_options": s3_service.options}},
    })
    mem = mg.Memory(config)
    frame = observations(years=2)
    points = station_points()
    entry = mem.save(frame, KEY, partition_cols=["year", "month"])
    assert entry.uri.startswith("s3://")
    assert_same_timeseries(frame, mem.open(KEY))
    mem.save(points, "points")
    assert_same_timeseries(points, mem.open("points"))
    got = mem.open(KEY, time="2022-02", filters=[("station", "=", "s1")])
    assert len(got) == 28 * 2
    late = observations(years=1, start="2023-01-01").iloc[:9]
    mem.save(late, KEY, mode="a")
    assert_same_timeseries(pd.concat([frame, late], ignore_index=True), mem.open(KEY))
    assert_same_timeseries(frame, mem.open(KEY, version=1))
    mem.verify(KEY, all_versions=True)


@pytest.mark.parametrize("parts", [["year"], ["year", "month"], ["year", "month", "day"]])
def test_sorted_and_shuffled_rows_give_the_same_partitions(mem: mg.Memory, parts: list[str]) -> None:
    times = pd.date_range("2023-12-30 20:00", "2024-01-02 04:00", freq="20min", tz="America/New_York")
    frame = pd.DataFrame({"time": times.repeat(2), "station": ["a", "b"] * len(times),
                          "v": np.arange(len(times) * 2, dtype="float64")})
    shuffled = frame.sample(frac=1.0, random_state=3)
    layouts = []
    for name, data in (("sorted", frame), ("shuffled", shuffled)):
        entry = mem.save(data, f"layout/{name}", partition_cols=parts)
        root = Path(mem.tiers.backend(entry.tier).full_path(entry.path))
        layouts.append(sorted(str(p.parent.relative_to(root)) for p in root.rglob("*.parquet")))
        pd.testing.assert_frame_equal(mem.open(f"layout/{name}"), data)
    assert layouts[0] == layouts[1]
    local_days = {t.strftime("%Y-%m-%d") for t in times}
    assert len(layouts[0]) == {"year": 2, "month": 2, "day": len(local_days)}[parts[-1]]
    day = mem.open("layout/sorted", time="2024-01-01")
    assert len(day) == 144
    pd.testing.assert_frame_equal(
        day.reset_index(drop=True),
        mem.open("layout/shuffled", time="2024-01-01").sort_values(["time", "station"]).reset_index(
            drop=True))
