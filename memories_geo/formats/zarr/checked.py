"""Stores that refuse to read a lost chunk as the fill value.

zarr reads a chunk that is not in the store as its fill value, and this format writes
no chunk that holds only the fill value (zarr's ``write_empty_chunks=False``), so a
chunk file lost from a stored version would silently read as NaN. The version's
manifest (the files written, kept in the version record beside it) tells the two
cases apart: a missing key the manifest lists raises
:class:`~memories_geo.errors.ChecksumMismatchError` on read; a key it does not list was
never written and reads as the fill value, as in zarr. The manifest is read only when
a key is found missing, so intact versions cost nothing more to read.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import time
from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any

from zarr.storage import LocalStore, WrapperStore

from memories_geo.errors import ChecksumMismatchError
from memories_geo.formats.zarr.shared import SharedFilesStore, recorded_manifest
from memories_geo.formats.zarr.store import zarr_store
from memories_geo.integrity import Manifest
from memories_geo.records import record_path

if TYPE_CHECKING:
    from memories_geo.backends.base import Location
    from memories_geo.operations import ReadTally

__all__ = ["METADATA_KEYS", "ManifestCheckedStore", "WrittenFiles", "checked_store"]

logger = logging.getLogger(__name__)

#: Names of metadata documents, which zarr probes for and may legitimately not find.
METADATA_KEYS = frozenset({"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"})


def checked_store(location: Location, *, shares: bool = False) -> ManifestCheckedStore:
    """A read-only store of the version at ``location`` on which a lost chunk raises.

    ``shares=True`` (the version's ``object_info`` says it shares files with an earlier
    version) reads the version's manifest first and reads the shared keys from the
    versions holding them (:class:`~memories_geo.formats.zarr.shared.SharedFilesStore`).

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.open_zarr(checked_store(location))  # doctest: +SKIP
    """
    inner = (
        LocalStore(location.full_path, read_only=True)
        if location.is_local
        else zarr_store(location, read_only=True)
    )
    written = WrittenFiles(location)
    if shares:
        inner = SharedFilesStore(inner, location, lambda: written.shared,
                                 open_store=lambda owner: zarr_store(owner, read_only=True))
    return ManifestCheckedStore(inner, written, tally=location.reads)


class WrittenFiles:
    """The files a stored version was written with, read from its record when first asked.

    A version written through :class:`~memories_geo.Memory` always has a record (it is
    written before the commit). One written by the format alone has none: then nothing
    tells a lost chunk from one never written, and missing keys read as the fill value,
    as in zarr (logged once).

    Parameters
    ----------
    location : Location
        The version's location; its record is at ``record_path(location.path)``.

    Examples
    --------
    >>> WrittenFiles(location).lists("t2m/c/0/0/0")  # doctest: +SKIP
    True
    """

    def __init__(self, location: Location) -> None:
        self.location = location
        self._manifest: Manifest | None = None
        self._loaded = False

    @property
    def shared(self) -> dict[str, str]:
        """Files the version shares with earlier versions -> owner folder (``Manifest.shared``)."""
        if not self._loaded:
            self._manifest, self._loaded = self._load("zarr.json"), True
        return dict(self._manifest.shared) if self._manifest is not None else {}

    def lists(self, key: str) -> bool:
        """Whether the version's manifest lists ``key`` (a path relative to the version).

        ``False`` when the version has no record at all.

        Raises
        ------
        ChecksumMismatchError
            When the record exists but cannot be read, so that it cannot be told.
        """
        if not self._loaded:
            self._manifest, self._loaded = self._load(key), True
        return self._manifest is not None and key in self._manifest.files

    def _load(self, key: str) -> Manifest | None:
        path = record_path(self.location.path)
        try:
            manifest = recorded_manifest(self.location)
        except (ValueError, KeyError, TypeError) as exc:
            raise ChecksumMismatchError(
                f"{self.location.url}: {key!r} is not stored, and the version record "
                f"{self.location.backend.url_for(path)!r} that lists the files written is damaged "
                f"({type(exc).__name__}), so whether it was ever written cannot be told; "
                "mem.verify(key) checks the version"
            ) from exc
        if manifest is None:
            logger.warning("%s: %r is not stored and the version has no record listing the files "
                           "written; missing chunks read as the fill value", self.location.url, key)
        return manifest


class ManifestCheckedStore(WrapperStore):
    """A zarr store wrapper: reading a key the manifest lists but the store lacks raises.

    Parameters
    ----------
    store : zarr.abc.store.Store
        The version's store (read-only).
    written : WrittenFiles
        The version's written files.
    tally : ReadTally, optional
        Counts every value read (bytes, time, chunks) for the operation records.
    """

    def __init__(self, store: Any, written: WrittenFiles, *, tally: ReadTally | None = None) -> None:
        super().__init__(store)
        self.written = written
        self.tally = tally

    def _with_store(self, store: Any) -> ManifestCheckedStore:
        return type(self)(store, self.written, tally=self.tally)

    def _count(self, key: str, value: Any, started: float) -> None:
        if self.tally is not None and value is not None:
            chunk = posixpath.basename(key) not in METADATA_KEYS
            self.tally.add(len(value), time.perf_counter() - started, chunks=int(chunk))

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        """The stored value of ``key``, ``None`` if it was never written.

        Raises
        ------
        ChecksumMismatchError
            When ``key`` was written (the manifest lists it) and is gone.
        """
        started = time.perf_counter()
        value = await self._store.get(key, prototype, byte_range)
        if value is None:
            await self._refuse_if_written(key)
        self._count(key, value, started)
        return value

    async def get_partial_values(self, prototype: Any, key_ranges: Iterable[tuple[str, Any]]) -> list[Any]:
        """Byte ranges of several keys; see :meth:`get`."""
        key_ranges = list(key_ranges)
        started = time.perf_counter()
        values = list(await self._store.get_partial_values(prototype, key_ranges))
        for (key, _), value in zip(key_ranges, values, strict=True):
            if value is None:
                await self._refuse_if_written(key)
            self._count(key, value, started)
            started = time.perf_counter()
        return values

    async def _get_many(
        self, requests: Iterable[tuple[str, Any, Any]]
    ) -> AsyncGenerator[tuple[str, Any], None]:
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)

    async def _refuse_if_written(self, key: str) -> None:
        if posixpath.basename(key) in METADATA_KEYS:
            return
        if await asyncio.to_thread(self.written.lists, key):
            raise ChecksumMismatchError(
                f"{self.written.location.url}: chunk {key!r} is missing: the version was written "
                "with it (its manifest lists it) and it is gone from the store, so reading it as the "
                "fill value would return wrong data. mem.verify(key) names every damaged file; "
                "restore the version from a checkpoint backup"
            )

    def __repr__(self) -> str:
        return f"ManifestCheckedStore({self._store!r})"
