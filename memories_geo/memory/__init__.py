"""``Memory``: one collection of stored objects (configuration + catalog + tiers)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from memories_geo.awaitable import awaitable_twin
from memories_geo.config import StorageConfig, redact_url
from memories_geo.entry import Entry, EntryList, entries_to_frame
from memories_geo.errors import OptionError
from memories_geo.keys import validate_key
from memories_geo.memory.lifecycle import LifecycleMixin
from memories_geo.memory.observed import ObservedMixin
from memories_geo.monitor.records import OperationLog
from memories_geo.provenance import attach_source, source_of, without_source
from memories_geo.query import iso_utc, normalize_bbox, normalize_time
from memories_geo.resolve import Resolver
from memories_geo.types import CompressionLevel, Kind, Mode
from memories_geo.versions import VersionStore

if TYPE_CHECKING:
    import pandas as pd

    from memories_geo.catalog import Catalog
    from memories_geo.checkpoints import CheckpointManager
    from memories_geo.monitor.storage_monitor import StorageMonitor
    from memories_geo.resolve import TierRouter
    from memories_geo.versions.transaction import Transaction

__all__ = ["Memory"]

class Memory(ObservedMixin, LifecycleMixin):
    """A collection of stored geospatial objects.

    Parameters
    ----------
    config : StorageConfig, str, Path or None
        A configuration object, a path to a ``memories.toml`` file, a directory to
        use as the embedded home, a URL of a remote home (``"s3://bucket/memories"``:
        the four tiers under it, the catalog cached locally; see
        :meth:`StorageConfig.remote`), or ``None`` to discover one
        (``$MEMORIES_GEO_CONFIG``, ``./memories.toml``, else the embedded default
        under ``$MEMORIES_GEO_HOME`` or ``./.memories``).
    storage_options : mapping, optional
        fsspec options (endpoint, credentials) for a remote home URL. Never shown.
    read_only : bool
        Refuse every operation that would change the collection (save, delete,
        recover, checkpoint save/restore/delete) with
        :class:`~memories_geo.errors.ReadOnlyError`; reading, searching and
        verifying work as usual.

    Raises
    ------
    ConfigError
        A tier URL with a scheme no backend handles, an unsupported catalog URL, or
        ``storage_options`` without a remote URL.

    Examples
    --------
    >>> import memories_geo as mg
    >>> mem = mg.Memory("/tmp/mg-doc")  # doctest: +SKIP
    >>> entry = mem.save(ds, "era5/t2m", tier="hot")  # doctest: +SKIP
    >>> mem.open("era5/t2m")  # doctest: +SKIP
    """

    def __init__(
        self,
        config: StorageConfig | str | os.PathLike[str] | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
        read_only: bool = False,
    ) -> None:
        self.config = StorageConfig.from_any(config, storage_options=storage_options)
        self.version_store = VersionStore(self.config, read_only=read_only)
        self.resolver = Resolver(self.version_store.catalog, self.version_store.tiers)
        self.operation_log = OperationLog(
            self.version_store.catalog, self.version_store.meter, persist=not read_only
        )
        self._monitor: StorageMonitor | None = None

    @property
    def read_only(self) -> bool:
        """Whether this collection refuses changes."""
        return self.version_store.read_only

    @property
    def catalog(self) -> Catalog:
        """The catalog of this collection."""
        return self.version_store.catalog

    @property
    def tiers(self) -> TierRouter:
        """Tier name -> configuration and backend."""
        return self.version_store.tiers

    # -- saving ----------------------------------------------------------------------

    def save(
        self,
        obj: Any,
        key: str | None = None,
        *,
        tier: str | None = None,
        format: str | None = None,
        mode: Mode | None = None,
        crs: Any = None,
        encoding: Mapping[str, Any] | None = None,
        append_dim: str | None = None,
        compression: str | CompressionLevel | None = None,
        attrs: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        compute: bool = True,
        storage: Any = None,
        **format_kwargs: Any,
    ) -> Any:
        """Store ``obj`` under ``key`` as a new immutable version and return its entry.

        The version is staged (written and checksummed) before one catalog
        transaction makes it current, so a failure at any point leaves the
        previous version current and intact.

        Parameters
        ----------
        obj : xarray.Dataset, DataArray, DataTree, geopandas.GeoDataFrame or GeoSeries
            What to store.
        key : str, optional
            Slash-separated name. Default: the key ``obj`` was opened from, else a
            new readable key made from its name.
        tier : str, optional
            ``"hot"``, ``"warm"``, ``"cold"``, ``"glacier"`` (or a configured name);
            default: the configured default tier.
        format : str, optional
            Override the default format of the data kind on that tier.
        mode : {"w-", "w", "a"}, optional
            ``"w-"`` fails if the key exists, ``"w"`` writes a new version, ``"a"``
            appends (rasters along ``append_dim``, tables by rows) into a new version. Default: ``"w-"`` for
            an explicit key, ``"w"`` when re-saving an object opened from a key.
        crs : optional
            CRS to assign when ``obj`` has none (anything pyproj understands).
        encoding : mapping, optional
            Per-variable encoding for xarray objects, as in ``to_zarr``.
        append_dim : str, optional
            Dimension to append along, with ``mode="a"``. Zarr also takes ``region=``
            (a dict of slices, or ``"auto"``) with ``mode="a"`` to overwrite part of
            the array in a new version.
        compression : {"fast", "medium", "high", "maximum"} or str, optional
            Override the tier's compression level; a format that takes a codec name
            (Parquet: ``"snappy"``, ``"zstd"``...) takes it here too.
        attrs : mapping, optional
            Metadata stored in the catalog with this version.
        tags : sequence of str
            Labels to search by.
        compute : bool
            ``False`` returns a ``dask.delayed`` object instead: computing it (on
            the active dask scheduler or ``distributed`` client) writes the data
            chunk by chunk, then verifies and commits, and returns the entry.
        storage : format storage object, optional
            ``COGStorage(...)``, ``ZarrStorage(...)``... (:mod:`memories_geo.storage`):
            its format and options, below the keywords given here (a ``format=``
            naming another format is an :class:`~memories_geo.errors.OptionError`).
        **format_kwargs
            Passed to the format's writer (over ``storage``'s options, which are over
            the tier's ``format_options``).

        Returns
        -------
        Entry or dask.delayed.Delayed
            The catalog entry of the new version (its delayed computation with
            ``compute=False``).

        Raises
        ------
        KeyExistsError
            ``mode="w-"`` and the key exists.
        InvalidKeyError
            The key is unsafe.
        UnsupportedObjectError
            The object cannot be stored (no spatial dims, no CRS, wrong type).
        TierUnavailableError, FormatError
            Unknown tier or format, or the format cannot hold this object.
        """
        source = source_of(obj)
        plan = self.resolver.plan_save(
            without_source(obj), key, tier=tier, format=format, mode=mode, crs=crs, encoding=encoding,
            append_dim=append_dim, compression=compression, compute=compute,
            source_key=source["key"] if source is not None else None, format_options=format_kwargs,
            storage=storage,
        )
        return self.version_store.save(without_source(obj), plan, attrs=attrs, tags=tags)

    def transaction(self) -> Transaction:
        """Group saves and deletions, across formats and tiers, into one all-or-nothing commit.

        Each ``tx.save`` (the keywords of :meth:`save`) writes and verifies at once;
        at the end of the ``with`` block one catalog transaction makes every version
        current and applies every ``tx.delete``, or, after an exception, nothing is
        kept. Reads through this memory see the committed state until then. See
        :class:`~memories_geo.versions.transaction.Transaction` and
        ``docs/transactions.md``.

        Examples
        --------
        >>> with mem.transaction() as tx:  # doctest: +SKIP
        ...     tx.save(ds, "cube")
        ...     tx.save(gdf, "fields")
        ...     tx.delete("old")
        """
        from memories_geo.versions.transaction import Transaction

        return Transaction(self.version_store, self.resolver)

    @property
    def checkpoints(self) -> CheckpointManager:
        """Checkpoints of this collection (save, list, diff, verify, restore, delete)."""
        from memories_geo.checkpoints import CheckpointManager

        return CheckpointManager(self.version_store)

    # -- reading ---------------------------------------------------------------------

    def open(
        self,
        key: str,
        *,
        version: int | None = None,
        bbox: Sequence[float] | None = None,
        bbox_crs: Any = None,
        time: Any = None,
        columns: Sequence[str] | str | None = None,
        verify: bool = False,
        **format_options: Any,
    ) -> Any:
        """Open the current (or a given) version of ``key``, lazily where the format allows.

        Every format honours the same ``bbox``, ``bbox_crs``, ``time`` and ``columns``:
        rasters (Zarr, COG) return the lazy subset selected by label on the stored
        coordinates, vector formats push the filter down to the storage.

        Parameters
        ----------
        key : str
            The key.
        version : int, optional
            A version number from :meth:`versions`; default the current one.
        bbox : (minx, miny, maxx, maxy), optional
            Only what intersects this box, in EPSG:4326 unless ``bbox_crs`` says otherwise.
        bbox_crs : optional
            CRS of ``bbox`` (anything pyproj understands).
        time : (start, end), slice or str, optional
            Only this time range, in the forms :meth:`search` takes
            (``"2024-03"`` is all of March 2024).
        columns : list of str, optional
            Columns of a table, or data variables of a Dataset.
        verify : bool
            Re-hash every stored byte of the version against its manifest before
            opening (cost: one full read; cheap for small objects). Without it,
            ``open`` checks what the format checks on read (a missing Zarr chunk
            raises), not the checksums.
        **format_options
            Format-specific keywords, e.g. ``chunks=`` (Zarr, COG), ``overview_level=``
            (COG), ``filters=`` (GeoParquet), ``where=`` (PostGIS).

        Returns
        -------
        xarray.Dataset, DataArray, DataTree, geopandas.GeoDataFrame or GeoSeries
            The same type that was saved. It remembers its key, so
            ``obj.memories.save()`` stores a new version of it.

        Raises
        ------
        KeyNotFoundError
            No such key or version.
        ChecksumMismatchError
            With ``verify=True``, when a stored file is missing or changed.
        OptionError
            A keyword the format does not take (the message lists the accepted ones).
        ValueError
            A malformed bbox or time.
        """
        entry = self.catalog.get(validate_key(key), version)
        if self.config.lifecycle and version is None:
            from memories_geo.lifecycle.policies import promote_on_access

            entry = promote_on_access(self.version_store, entry) or entry
        obj = self.version_store.open(
            entry, verify=verify, bbox=bbox, bbox_crs=bbox_crs, time=time, columns=columns, **format_options
        )
        return attach_source(obj, {"key": entry.key, "version": entry.version})

    def info(self, key: str, *, version: int | None = None) -> Entry:
        """Catalog entry of the current (or a given) version of ``key``."""
        return self.catalog.get(validate_key(key), version)

    def versions(self, key: str) -> EntryList:
        """Every version of ``key``, oldest first (a list with a table view in Jupyter)."""
        return EntryList(self.catalog.versions(validate_key(key)))

    def ls(self, pattern: str | None = None, *, tier: str | None = None) -> Any:
        """Table (pandas DataFrame) of current entries, optionally filtered by key glob and tier.

        Examples
        --------
        >>> mg.ls("era5/*")  # doctest: +SKIP
        """
        return _plain(entries_to_frame(self.catalog.search(key=pattern, tier=tier)))

    def search(
        self,
        *,
        bbox: Sequence[float] | None = None,
        time: Any = None,
        tier: str | Sequence[str] | None = None,
        kind: str | Sequence[str] | None = None,
        key: str | None = None,
        tags: Sequence[str] | None = None,
        bbox_crs: Any = None,
        all_versions: bool = False,
    ) -> Any:
        """Find stored objects across all tiers.

        Parameters
        ----------
        bbox : (minx, miny, maxx, maxy), optional
            Intersecting footprints; EPSG:4326 unless ``bbox_crs`` says otherwise.
        time : (start, end) or str, optional
            Overlapping time ranges; partial dates cover their period
            (``("2024-01", "2024-06")`` is January 1 to June 30 inclusive).
        tier, kind : str or list of str, optional
            Restrict to these tiers / kinds.
        key : str, optional
            Glob on keys, e.g. ``"era5/*"``.
        tags : list of str, optional
            Entries carrying all of these tags.
        bbox_crs : optional
            CRS of ``bbox``.
        all_versions : bool
            Include non-current versions.

        Returns
        -------
        geopandas.GeoDataFrame
            One row per entry with its footprint (EPSG:4326) as geometry, so
            ``.explore()`` maps the results.

        Examples
        --------
        >>> mg.search(bbox=(-10, 35, 5, 45), time=("2024-01", "2024-06"))  # doctest: +SKIP
        """
        for name, value in (("tier", tier), ("kind", kind)):
            allowed = self.tiers.names if name == "tier" else [k.value for k in Kind]
            values = [value] if isinstance(value, str) else list(value or [])
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"unknown {name} {bad}; valid: {allowed}")
        entries = self.catalog.search(
            bbox=normalize_bbox(bbox, bbox_crs),
            time=normalize_time(time),
            tier=tier,
            kind=kind,
            key=key,
            tags=tags,
            all_versions=all_versions,
        )
        return entries_to_frame(entries)

    # -- deleting, verifying, recovering -------------------------------------------

    def delete(self, key: str, *, version: int | None = None) -> list[Entry]:
        """Delete ``key`` with all its versions (or one non-current ``version``).

        The catalog forgets first, in one transaction, then the data is removed;
        an interruption leaves only unreferenced files that :meth:`recover` removes.
        Versions pinned by a checkpoint are kept (retired) until no checkpoint
        references them, so restoring that checkpoint brings them back.

        Returns
        -------
        list of Entry
            What was deleted.
        """
        return self.version_store.delete(validate_key(key), version)

    def verify(self, key: str | None = None, *, all_versions: bool = False) -> list[Entry]:
        """Re-hash stored data and compare with the manifests.

        Returns
        -------
        list of Entry
            The entries verified.

        Raises
        ------
        ChecksumMismatchError
            Naming every missing, truncated or changed object.
        """
        if key is not None:
            entries = self.versions(key) if all_versions else [self.info(key)]
        else:
            entries = self.catalog.all_versions() if all_versions else self.catalog.current_entries()
        self.version_store.verify(entries)
        return entries

    def recover(self) -> list[str]:
        """Remove orphans and repair what a crash left half done.

        Removes staged versions whose writer is gone, unreferenced version files and
        checkpoint manifests never committed; finishes checkpoint manifests whose
        catalog row was committed; re-points views (PostGIS) that lag the catalog.
        Safe while other processes write: a staged version whose writing process is
        still alive on this host (or, on another host, staged less than
        :data:`~memories_geo.versions.STAGED_GRACE` ago) is left alone.

        Returns
        -------
        list of str
            Display URLs of what was removed.
        """
        removed = self.version_store.recover_orphans()
        return removed + self.checkpoints.recover_orphans()

    def audit(
        self,
        key: str | None = None,
        *,
        operation: str | None = None,
        outcome: str | None = None,
        user: str | None = None,
        since: Any = None,
        until: Any = None,
    ) -> pd.DataFrame:
        """The audit log: every operation that changed this collection, oldest first.

        Parameters
        ----------
        key : str, optional
            Only records of this key (a glob such as ``"era5/*"`` works).
        operation : str, optional
            One of :data:`memories_geo.audit_log.OPERATIONS` (``"save"``, ``"delete"``,
            ``"restore"``, ``"checkpoint.save"``, ...).
        outcome : {"ok", "error"}, optional
        user : str, optional
            Operating-system user name.
        since, until : str or datetime, optional
            Time window (UTC; ``until`` exclusive).

        Returns
        -------
        pandas.DataFrame
            Columns ``seq, at, user, host, pid, operation, key, version, version_id,
            outcome, detail``; never credentials.

        Examples
        --------
        >>> mem.audit("era5/*", operation="delete")  # doctest: +SKIP
        """
        from memories_geo.audit_log import OPERATIONS, audit_frame

        if operation is not None and operation not in OPERATIONS:
            raise OptionError(f"unknown operation {operation!r}; valid: {list(OPERATIONS)}")
        if outcome is not None and outcome not in ("ok", "error"):
            raise OptionError(f"unknown outcome {outcome!r}; valid: ['ok', 'error']")
        rows = self.catalog.audit_rows(
            key=key, operation=operation, outcome=outcome, user=user, since=iso_utc(since),
            until=iso_utc(until),
        )
        return audit_frame(rows)

    # -- display ---------------------------------------------------------------------

    def __repr__(self) -> str:
        tiers = ", ".join(f"{n}={redact_url(self.tiers.tier_config(n).url)}" for n in self.tiers.names)
        return f"Memory(catalog={str(self.catalog.path)!r}, tiers: {tiers})"

    # -- awaitable twins (the work runs in a worker thread; the event loop keeps going) -----

    asave = awaitable_twin(save)
    aopen = awaitable_twin(open)
    ainfo = awaitable_twin(info)
    aversions = awaitable_twin(versions)
    als = awaitable_twin(ls)
    asearch = awaitable_twin(search)
    adelete = awaitable_twin(delete)
    averify = awaitable_twin(verify)
    arecover = awaitable_twin(recover)
    aaudit = awaitable_twin(audit)


def _plain(frame: Any) -> Any:
    import pandas as pd

    return pd.DataFrame(frame.drop(columns="geometry"))
