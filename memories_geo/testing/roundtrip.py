"""``FormatRoundTripTests``: the round-trip contract every format must pass.

Subclass it in a test module, set ``format_name``, provide a parametrized
``case`` fixture yielding objects, and implement :meth:`assert_same`::

    class TestZarr(FormatRoundTripTests):
        format_name = "zarr"

        @pytest.fixture(params=["float", "int"])
        def case(self, request):
            return make_dataset(request.param)

        def assert_same(self, expected, actual):
            xr.testing.assert_identical(expected, actual)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from memories_geo.config import StorageConfig
from memories_geo.errors import ChecksumMismatchError, KeyExistsError, KeyNotFoundError
from memories_geo.memory import Memory
from memories_geo.testing.backends import corrupt_stored

__all__ = [
    "TIMESERIES_CASES",
    "FormatRoundTripTests",
    "OnMemoryFilesystem",
    "assert_same_timeseries",
    "corrupt_one_file",
    "timeseries_case",
]

#: Names of the time-series cases :func:`timeseries_case` builds.
TIMESERIES_CASES: tuple[str, ...] = (
    "tz-aware-column",
    "datetime-index",
    "naive-seconds",
    "station-points",
    "categorical-variables",
    "empty",
)


def corrupt_one_file(memory: Memory, key: str) -> str:
    """Damage the stored data of ``key``'s current version; return the name ``verify`` reports."""
    return corrupt_stored(memory, memory.info(key))


def timeseries_case(name: str) -> Any:
    """A small time series of one of the :data:`TIMESERIES_CASES`, for round trips of time-series formats.

    - ``tz-aware-column``: a DataFrame with a ``time`` column in Europe/Paris, a string
      station, float, boolean, nullable integer and object (with ``None``) columns,
      a RangeIndex and ``attrs``;
    - ``datetime-index``: hourly readings on a DatetimeIndex named ``time`` (with its
      ``freq``), a float32 column and a categorical station;
    - ``naive-seconds``: an unnamed naive DatetimeIndex at second resolution and an
      integer ``id`` station column, rows in station order;
    - ``station-points``: a GeoDataFrame of stations (points in EPSG:32631) with a UTC
      ``time`` column;
    - ``categorical-variables``: a long table (time, integer station, ordered categorical
      variable, value), in station order;
    - ``empty``: a table with a time column and no rows.

    Examples
    --------
    >>> timeseries_case("datetime-index").index.freqstr
    'h'
    """
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import shapely

    rng = np.random.default_rng(11)
    if name == "tz-aware-column":
        frame = pd.DataFrame({
            "time": np.repeat(pd.date_range("2023-12-30", periods=12, freq="6h", tz="Europe/Paris"), 2),
            "station": ["north", "south"] * 12,
            "value": rng.normal(size=24),
            "ok": rng.random(24) > 0.3,
            "count": pd.array([None if i % 5 == 0 else i for i in range(24)], dtype="Int64"),
            "note": pd.Series([None if i % 3 else f"n{i}" for i in range(24)], dtype=object),
        })
        frame.attrs = {"source": "memories_geo.testing", "units": {"value": "K"}}
        return frame
    if name == "datetime-index":
        index = pd.date_range("2024-02-28", periods=48, freq="h", name="time")
        return pd.DataFrame({
            "value": rng.normal(size=48).astype("float32"),
            "station": pd.Categorical(["a", "b", "c"] * 16, categories=["c", "b", "a"]),
        }, index=index)
    if name == "naive-seconds":
        times = pd.date_range("2024-01-01", periods=10, freq="17s").as_unit("s")
        return pd.DataFrame(
            {"id": np.repeat([7, 3], 10), "reading": rng.integers(0, 100, 20)},
            index=pd.DatetimeIndex(np.concatenate([times, times])),
        )
    if name == "station-points":
        stations = {"s1": (2.35, 48.85), "s2": (4.83, 45.76), "s3": (5.37, 43.3)}
        keys = list(stations) * 8
        frame = gpd.GeoDataFrame(
            {
                "station": keys,
                "time": np.repeat(pd.date_range("2024-06-01", periods=8, freq="D", tz="UTC"), 3),
                "value": rng.normal(size=24),
            },
            geometry=shapely.points([stations[k] for k in keys]),
            crs="EPSG:4326",
        )
        return frame.to_crs("EPSG:32631")
    if name == "categorical-variables":
        times = pd.date_range("2023-11-15", periods=60, freq="D")
        variable = pd.CategoricalDtype(["t2m", "rh", "wind"], ordered=True)
        return pd.DataFrame({
            "station": np.repeat([101, 202], 120),
            "time": np.tile(np.repeat(times, 2), 2),
            "variable": pd.Categorical(np.tile(["t2m", "rh"], 120), dtype=variable),
            "value": rng.normal(size=240),
        })
    if name == "empty":
        return pd.DataFrame({
            "time": pd.DatetimeIndex([], dtype="datetime64[ns, UTC]"),
            "value": pd.Series([], dtype="float64"),
        })
    raise ValueError(f"unknown time-series case {name!r}; cases: {list(TIMESERIES_CASES)}")


def assert_same_timeseries(expected: Any, actual: Any) -> None:
    """Fail unless ``actual`` is ``expected`` exactly, ``attrs`` included.

    Type, index (class, values, ``freq``), columns, dtypes, values, time zones and CRS
    must match; ``actual`` may carry more ``attrs`` (such as the key it was opened from).
    """
    import geopandas as gpd
    import pandas as pd
    from geopandas.testing import assert_geodataframe_equal

    assert type(actual) is type(expected), f"{type(actual).__name__} is not {type(expected).__name__}"
    assert type(actual.index) is type(expected.index)
    if isinstance(expected, gpd.GeoDataFrame):
        assert actual.geometry.name == expected.geometry.name
        assert_geodataframe_equal(expected, actual, check_like=False, check_crs=True)
        pd.testing.assert_frame_equal(
            pd.DataFrame(expected.drop(columns=expected.geometry.name)),
            pd.DataFrame(actual.drop(columns=actual.geometry.name)), check_exact=True,
        )
    else:
        pd.testing.assert_frame_equal(expected, actual, check_exact=True)
    assert {k: actual.attrs.get(k) for k in expected.attrs} == expected.attrs


class FormatRoundTripTests:
    """Round trips, versions, verification and deletion for one format on one tier."""

    format_name: ClassVar[str]
    tier: ClassVar[str] = "hot"
    key: ClassVar[str] = "tests/roundtrip"

    @pytest.fixture
    def memory(self, tmp_path: Path) -> Memory:
        """A fresh embedded collection (override to test another backend)."""
        return Memory(StorageConfig.embedded(tmp_path / "memories"))

    @pytest.fixture
    def case(self) -> Any:  # pragma: no cover - always overridden
        """The object to round-trip (override with a parametrized fixture)."""
        raise NotImplementedError

    def assert_same(self, expected: Any, actual: Any) -> None:
        """Fail unless ``actual`` equals ``expected`` exactly."""
        raise NotImplementedError

    def roundtrip(self, memory: Memory, obj: Any, **save_kwargs: Any) -> Any:
        """Save ``obj`` with this format and open it again."""
        save_kwargs.setdefault("format", self.format_name)
        save_kwargs.setdefault("tier", self.tier)
        memory.save(obj, self.key, **save_kwargs)
        return memory.open(self.key)

    def test_roundtrip_is_exact(self, memory: Memory, case: Any) -> None:
        self.assert_same(case, self.roundtrip(memory, case))

    def test_entry_describes_the_object(self, memory: Memory, case: Any) -> None:
        entry = memory.save(case, self.key, format=self.format_name, tier=self.tier)
        assert entry.key == self.key
        assert entry.version == 1
        assert entry.format == self.format_name
        assert entry.tier == self.tier
        assert entry.size_bytes > 0
        assert entry.checksum
        assert memory.info(self.key) == entry

    def test_default_mode_refuses_to_overwrite(self, memory: Memory, case: Any) -> None:
        memory.save(case, self.key, format=self.format_name, tier=self.tier)
        with pytest.raises(KeyExistsError, match="mode='w'"):
            memory.save(case, self.key, format=self.format_name, tier=self.tier)
        assert [e.version for e in memory.versions(self.key)] == [1]

    def test_mode_w_adds_a_version_and_keeps_the_old_one(self, memory: Memory, case: Any) -> None:
        first = memory.save(case, self.key, format=self.format_name, tier=self.tier)
        second = memory.save(case, self.key, format=self.format_name, tier=self.tier, mode="w")
        assert (first.version, second.version) == (1, 2)
        assert first.path != second.path
        self.assert_same(case, memory.open(self.key, version=1))
        self.assert_same(case, memory.open(self.key))

    def corrupt(self, memory: Memory, entry: Any) -> str:
        """Damage ``entry``'s stored data; return a name the problems must mention.

        The default flips a byte of a file or deletes a row of a table
        (:func:`~memories_geo.testing.backends.corrupt_stored`); override it for a
        backend that is neither.
        """
        return corrupt_stored(memory, entry)

    def test_verify_names_a_corrupted_file(self, memory: Memory, case: Any) -> None:
        entry = memory.save(case, self.key, format=self.format_name, tier=self.tier)
        memory.verify(self.key)
        name = self.corrupt(memory, entry)
        with pytest.raises(ChecksumMismatchError, match=r"checksum changed|size|missing") as info:
            memory.verify(self.key)
        assert any(name in p for p in info.value.problems)

    def test_delete_removes_data_and_entry(self, memory: Memory, case: Any) -> None:
        entry = memory.save(case, self.key, format=self.format_name, tier=self.tier)
        backend = memory.tiers.backend(entry.tier)
        assert backend.exists(entry.path)
        memory.delete(self.key)
        assert not backend.exists(entry.path)
        with pytest.raises(KeyNotFoundError):
            memory.open(self.key)


class OnMemoryFilesystem:
    """Mixin: run a round-trip class on a non-local tier (fsspec ``memory://``).

    Put it first in the bases: ``class TestX(OnMemoryFilesystem, FormatRoundTripTests)``.
    """

    tier: ClassVar[str] = "remote"

    @pytest.fixture
    def memory(self, tmp_path: Path) -> Memory:
        """An embedded collection plus a ``remote`` tier on fsspec's memory filesystem."""
        import uuid
        from dataclasses import replace

        from memories_geo.config import TierConfig

        config = StorageConfig.embedded(tmp_path / "memories")
        remote = TierConfig(url=f"memory://mg-{uuid.uuid4().hex}/remote")
        return Memory(replace(config, tiers={**config.tiers, "remote": remote}))
