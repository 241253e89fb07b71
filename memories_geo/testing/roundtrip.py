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

__all__ = ["FormatRoundTripTests", "OnMemoryFilesystem", "corrupt_one_file"]


def corrupt_one_file(memory: Memory, key: str) -> str:
    """Damage the stored data of ``key``'s current version; return the name ``verify`` reports."""
    return corrupt_stored(memory, memory.info(key))


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
