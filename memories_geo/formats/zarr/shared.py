"""Files a Zarr version shares with an earlier version of its key, and reading them.

An append or region write on a tier that cannot hard-link (an object store) does not
copy the previous version's unchanged chunk files: the new version's manifest lists
them with the sibling version folder that holds them (``Manifest.shared``), and reads
of those keys go there. :class:`SharedFilesStore` is the zarr store that routes them.
"""

from __future__ import annotations

import posixpath
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from zarr.storage import WrapperStore

from memories_geo.integrity import SHARES_FILES, Manifest
from memories_geo.records import read_record_manifest

if TYPE_CHECKING:
    from memories_geo.backends.base import Location

__all__ = ["SHARES_FILES", "SharedFilesStore", "owner_location", "recorded_manifest"]


def recorded_manifest(location: Location) -> Manifest | None:
    """The manifest in the record of the version at ``location``; ``None`` without a record.

    Raises
    ------
    ValueError, KeyError, TypeError
        When the record exists but cannot be parsed.

    Examples
    --------
    >>> recorded_manifest(location).shared  # doctest: +SKIP
    {'t2m/c/0/0/0': '0192f0c1a2b3.zarr'}
    """
    return read_record_manifest(location.backend, location.path)


def owner_location(location: Location, owner: str) -> Location:
    """The location of the sibling version folder ``owner`` of the version at ``location``.

    Examples
    --------
    >>> owner_location(location, "0192f0c1a2b3.zarr").path  # doctest: +SKIP
    'era5/t2m/@v/0192f0c1a2b3.zarr'
    """
    return type(location)(location.backend, posixpath.join(posixpath.dirname(location.path), owner))


class SharedFilesStore(WrapperStore):
    """A read-only zarr store whose shared keys are read from the version that holds them.

    Parameters
    ----------
    store : zarr.abc.store.Store
        The version's own store.
    location : Location
        The version's location.
    shared : mapping or callable
        Key -> owner folder name (``Manifest.shared``), or a callable returning it
        when first needed.
    open_store : callable
        ``open_store(location)`` gives the read-only store of an owner's location.

    Examples
    --------
    >>> store = SharedFilesStore(inner, location, manifest.shared, open_store=zarr_store)  # doctest: +SKIP
    """

    def __init__(
        self, store: Any, location: Location, shared: Mapping[str, str] | Callable[[], Mapping[str, str]],
        *, open_store: Callable[[Location], Any],
    ) -> None:
        super().__init__(store)
        self.location = location
        self._shared = shared
        self._open_store = open_store
        self._owners: dict[str, Any] = {}

    def _with_store(self, store: Any) -> SharedFilesStore:
        return type(self)(store, self.location, self._shared, open_store=self._open_store)

    @property
    def shared(self) -> Mapping[str, str]:
        """Key -> owner folder name."""
        if callable(self._shared):
            self._shared = dict(self._shared())
        return self._shared

    def _route(self, key: str) -> Any:
        owner = self.shared.get(key)
        if owner is None:
            return self._store
        store = self._owners.get(owner)
        if store is None:
            store = self._owners[owner] = self._open_store(owner_location(self.location, owner))
        return store

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        """The value of ``key``, from the version that stores it."""
        return await self._route(key).get(key, prototype, byte_range)

    async def get_partial_values(self, prototype: Any, key_ranges: Iterable[tuple[str, Any]]) -> list[Any]:
        """Byte ranges of several keys, each from the version that stores it."""
        key_ranges = list(key_ranges)
        own = [(i, kr) for i, kr in enumerate(key_ranges) if kr[0] not in self.shared]
        values: list[Any] = [None] * len(key_ranges)
        if own:
            found = await self._store.get_partial_values(prototype, [kr for _, kr in own])
            for (i, _), value in zip(own, found, strict=True):
                values[i] = value
        for i, (key, byte_range) in enumerate(key_ranges):
            if key in self.shared:
                values[i] = await self.get(key, prototype, byte_range)
        return values

    async def exists(self, key: str) -> bool:
        """Whether ``key`` is stored, here or in the version that shares it."""
        return bool(await self._route(key).exists(key))

    async def getsize(self, key: str) -> int:
        """Size of ``key``'s value."""
        return int(await self._route(key).getsize(key))

    def list(self) -> AsyncIterator[str]:
        """Every key of the version, its own and the shared ones."""
        return self._merged(self._store.list(), "")

    def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        """Keys under ``prefix``, its own and the shared ones."""
        return self._merged(self._store.list_prefix(prefix), prefix)

    async def _merged(self, own: AsyncIterator[str], prefix: str) -> AsyncIterator[str]:
        seen = set()
        async for key in own:
            seen.add(key)
            yield key
        for key in self.shared:
            if key.startswith(prefix) and key not in seen:
                yield key

    def __repr__(self) -> str:
        return f"SharedFilesStore({self._store!r}, {len(self.shared)} shared)"
