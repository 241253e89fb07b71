"""Zarr stores for a location, and the one call to ``to_zarr`` every write goes through."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from zarr.storage import ObjectStore

from memories_geo.footprint import Footprint
from memories_geo.integrity import FileDigest, Manifest, hash_bytes
from memories_geo.progress import compute as compute_with_progress
from memories_geo.progress import progress_enabled

if TYPE_CHECKING:
    import xarray as xr

    from memories_geo.backends.base import Location

__all__ = ["AttributedObjectStore", "Written", "open_group", "write_zarr", "zarr_store"]


class Written(NamedTuple):
    """What writing a version did.

    Its footprint and ``object_info``, the chunk writes left pending
    (``compute=False``), and the files it shares with the version it extends (an
    empty manifest when it shares none).
    """

    footprint: Footprint
    info: Mapping[str, Any]
    pending: Any
    carried: Manifest = Manifest()


def zarr_store(
    location: Location, *, read_only: bool = False, digests: dict[str, FileDigest] | None = None
) -> Any:
    """The zarr store of ``location``: the fastest client the tier can be reached through.

    A plain path for local directories (zarr's ``LocalStore``). On a tier with a read
    cache, an ``FsspecStore`` reading through it (its asynchronous view). On an S3 or
    Azure tier whose settings obstore can honour (see
    :func:`memories_geo.backends.objectstore.object_store_settings`), an
    :class:`AttributedObjectStore`; else an ``FsspecStore`` on the tier's filesystem.

    ``digests``, when given, receives the size and digest of every object an
    :class:`AttributedObjectStore` uploads (key -> digest), so the version's manifest
    needs no read-back of what was just written.
    """
    if location.is_local:
        return location.full_path
    from zarr.storage import FsspecStore

    if hasattr(location.fs, "async_view"):
        return FsspecStore(fs=location.fs.async_view(), path=location.full_path, read_only=read_only)

    from memories_geo.backends.objectstore import object_store_client

    client = object_store_client(location.files, location.path)
    if client is not None:
        return AttributedObjectStore(client.store, attributes=client.attributes, read_only=read_only,
                                     digests=digests)
    return FsspecStore.from_url(
        location.fs.unstrip_protocol(location.full_path),
        storage_options=dict(location.storage_options),
        read_only=read_only,
    )


class AttributedObjectStore(ObjectStore):
    """zarr's obstore-backed store; every upload carries the tier's object attributes.

    Parameters
    ----------
    store : obstore.store.S3Store or obstore.store.AzureStore
        Rooted at the version's path.
    attributes : mapping, optional
        Sent with every ``put`` (``{"Storage-Class": "STANDARD_IA"}``).
    read_only : bool
        Refuse writes.
    digests : dict, optional
        Filled with the size and digest of every uploaded object, by key (the bytes
        are hashed as they are handed to the upload).

    Examples
    --------
    >>> from obstore.store import MemoryStore
    >>> AttributedObjectStore(MemoryStore(), attributes={}).read_only
    False
    """

    def __init__(
        self, store: Any, *, attributes: Mapping[str, str] | None = None, read_only: bool = False,
        digests: dict[str, FileDigest] | None = None,
    ) -> None:
        super().__init__(store, read_only=read_only)
        self.attributes = dict(attributes or {})
        self.digests = digests

    def with_read_only(self, read_only: bool = False) -> AttributedObjectStore:
        """The same store, read-only or not."""
        return type(self)(self.store, attributes=self.attributes, read_only=read_only, digests=self.digests)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the digests: a copy on another process uploads for itself."""
        state = super().__getstate__()
        state["digests"] = None
        return state

    async def set(self, key: str, value: Any) -> None:
        """Upload ``value`` at ``key`` (one request, or a multipart upload completed at once)."""
        import obstore

        self._check_writable()
        data = value.as_buffer_like()
        await obstore.put_async(self.store, key, data, attributes=self.attributes or None)
        if self.digests is not None:
            view = memoryview(data).cast("B")
            self.digests[key] = FileDigest(len(view), hash_bytes(view))

    async def set_if_not_exists(self, key: str, value: Any) -> None:
        """Upload ``value`` at ``key`` unless something is stored there."""
        import obstore

        self._check_writable()
        try:
            await obstore.put_async(
                self.store, key, value.as_buffer_like(), mode="create", attributes=self.attributes or None
            )
        except obstore.exceptions.AlreadyExistsError:
            return


def open_group(location: Location) -> Any:
    """The Zarr group stored at ``location``, read-only."""
    import zarr

    return zarr.open_group(zarr_store(location, read_only=True), mode="r")


def write_zarr(
    obj: xr.Dataset | xr.DataTree,
    location: Location,
    *,
    mode: str,
    compute: bool,
    encoding: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    digests: dict[str, FileDigest] | None = None,
    **kwargs: Any,
) -> Any:
    """Write ``obj`` as a Zarr v3 group at ``location`` with xarray's ``to_zarr``.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataTree
        Prepared data (attributes and encodings already made storable).
    location : Location
        The version's location.
    mode : {"w-", "a", "r+"}
        ``"w-"`` for a new group, ``"a"`` to append (``append_dim=`` in ``kwargs``),
        ``"r+"`` for a region write (``region=`` in ``kwargs``). Metadata is
        consolidated except in region writes, which keep the stored shapes.
    compute : bool
        ``False`` returns the chunk writes as a ``dask.delayed`` object. ``True``
        with dask-backed data writes the chunks under a progress bar (when progress
        bars are on, see :func:`memories_geo.set_options`).
    encoding : mapping, optional
        Per-variable (per-node for a tree) encoding.
    extra : mapping, optional
        The caller's own ``to_zarr`` keywords.
    digests : dict, optional
        Receives the digest of every object uploaded in this process (see
        :func:`zarr_store`).
    **kwargs
        ``append_dim=``, ``region=`` and the like.

    Returns
    -------
    dask.delayed.Delayed or None
        What ``to_zarr`` returns with ``compute=False``.
    """
    arguments: dict[str, Any] = {**(extra or {}), **kwargs}
    if encoding is not None:
        arguments["encoding"] = encoding
    nbytes = _dask_nbytes(obj) if compute else 0
    shown = bool(nbytes) and progress_enabled()
    arguments.update(mode=mode, zarr_format=3, consolidated=mode != "r+", compute=compute and not shown)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", module="zarr")
        written = obj.to_zarr(zarr_store(location, digests=digests), **arguments)
        if shown:
            compute_with_progress(written, nbytes=nbytes, desc=f"save {location.path.rsplit('/@v/', 1)[0]}")
            return None
        return written


def _dask_nbytes(obj: xr.Dataset | xr.DataTree) -> int:
    """Bytes of the dask-backed variables of ``obj`` (0 when nothing is dask-backed)."""
    datasets = [node.dataset for node in obj.subtree] if hasattr(obj, "subtree") else [obj]
    return sum(int(v.nbytes) for ds in datasets for v in ds.variables.values() if v.chunks is not None)
