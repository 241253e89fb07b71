"""``Memory``: one collection of stored objects (configuration + catalog + tiers)."""

from __future__ import annotations

import html
import os
import posixpath
import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from memories_geo.backends.base import Location, redact_url
from memories_geo.catalog import Catalog, StagedVersion, version_row
from memories_geo.config import StorageConfig
from memories_geo.entry import Entry, entries_to_frame
from memories_geo.errors import (
    FormatError,
    KeyExistsError,
    MemoriesError,
    TierUnavailableError,
    UnsupportedObjectError,
)
from memories_geo.events import emit
from memories_geo.formats.base import Format, WriteOptions, WriteResult
from memories_geo.formats.registry import get_format
from memories_geo.integrity import raise_for_problems, stat_fingerprint, verify_manifest_stat
from memories_geo.keys import VERSIONS_DIR, generate_key, validate_key
from memories_geo.kinds import detect_kind
from memories_geo.provenance import attach_source, source_of, without_source
from memories_geo.query import normalize_bbox, normalize_time
from memories_geo.records import RECORD_SUFFIX, iter_version_dirs, record_path, write_record
from memories_geo.tiers import TierRouter
from memories_geo.types import CompressionLevel, Kind, Mode

if TYPE_CHECKING:
    from memories_geo.checkpoints import CheckpointManager

__all__ = ["Memory"]

_MODES = ("w-", "w", "a")


def _new_version_id() -> str:
    """Sortable, unique storage id: UTC time to the millisecond plus randomness."""
    now = datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{secrets.token_hex(4)}"


class Memory:
    """A collection of stored geospatial objects.

    Parameters
    ----------
    config : StorageConfig, str, Path or None
        A configuration object, a path to a ``memories.toml`` file, a directory to
        use as the embedded home, or ``None`` to discover one
        (``$MEMORIES_GEO_CONFIG``, ``./memories.toml``, else the embedded default
        under ``$MEMORIES_GEO_HOME`` or ``./.memories``).

    Examples
    --------
    >>> import memories_geo as mg
    >>> mem = mg.Memory("/tmp/mg-doc")  # doctest: +SKIP
    >>> entry = mem.save(ds, "era5/t2m", tier="hot")  # doctest: +SKIP
    >>> mem.open("era5/t2m")  # doctest: +SKIP
    """

    def __init__(self, config: StorageConfig | str | os.PathLike[str] | None = None) -> None:
        if config is None:
            config = StorageConfig.discover()
        elif not isinstance(config, StorageConfig):
            path = Path(config)
            config = (
                StorageConfig.from_toml(path)
                if path.suffix == ".toml"
                else StorageConfig.embedded(path)
            )
        self.config = config
        self.catalog = Catalog(config.catalog)
        self.tiers = TierRouter(config)

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
        compression : {"fast", "medium", "high", "maximum"}, optional
            Override the tier's compression level.
        attrs : mapping, optional
            Metadata stored in the catalog with this version.
        tags : sequence of str
            Labels to search by.
        compute : bool
            ``False`` returns a ``dask.delayed`` object instead: computing it (on
            the active dask scheduler or ``distributed`` client) writes the data
            chunk by chunk, then verifies and commits, and returns the entry.
        **format_kwargs
            Passed to the format's writer.

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
        if key is None and source is not None:
            key = source["key"]
            mode = mode or "w"
        if mode is None:
            mode = "w-"
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        obj = without_source(obj)
        kind = detect_kind(obj)
        if mode == "a" and append_dim is None and kind is Kind.RASTER and "region" not in format_kwargs:
            raise ValueError("mode='a' needs append_dim= (or region=) for rasters")
        if key is None:
            key = generate_key(_name_hint(obj), kind.value)
        key = validate_key(key)
        previous = None
        if mode == "w-" and self._exists(key):
            raise KeyExistsError(
                f"key {key!r} already exists; pass mode='w' to save a new version, or choose another key"
            )
        if mode == "a":
            previous = self.catalog.current(key)
        tier = str(tier or (previous.tier if previous else self.config.default_tier))
        backend = self.tiers.backend(tier)
        if not backend.supports_writes:
            raise TierUnavailableError(f"tier {tier!r} is read-only")
        fmt_name = format or (previous.format if previous else self.tiers.format_for(tier, kind, obj))
        fmt = self._format_for(fmt_name, kind, obj)
        options = WriteOptions(
            mode=mode,
            compression=CompressionLevel(compression or self.tiers.compression(tier)),
            encoding=encoding,
            append_dim=append_dim,
            crs=crs,
            previous=self._location(previous) if previous else None,
            compute=compute,
            extra=dict(format_kwargs),
        )
        version_id = _new_version_id()
        extension_for = getattr(fmt, "extension_for", None)
        extension = extension_for(options) if extension_for is not None else fmt.extension
        path = posixpath.join(key, VERSIONS_DIR, version_id + extension)
        location = Location(backend, path)
        staged = self.catalog.stage(
            key=key, version_id=version_id, tier=tier, format=fmt.name, kind=kind.value,
            path=path, uri=location.url,
        )
        emit("save.staged", key=key, tier=tier, format=fmt.name, path=path)
        commit = _Commit(self, fmt, location, staged, dict(attrs or {}), tuple(tags), mode == "w-")
        try:
            result = fmt.write(obj, location, options)
        except BaseException as exc:
            commit.fail(exc)
        if result.pending is None:
            emit("save.written", key=key, tier=tier, format=fmt.name, bytes=result.size_bytes)
        if compute or result.pending is None:
            entry = commit(result)
            if compute:
                return entry
            import dask

            return dask.delayed(entry, traverse=False)
        import dask

        return dask.delayed(commit.after_pending, pure=False)(result.pending, result)

    def _publish(self, entry: Entry) -> None:
        """Let formats that keep a stable name (a database view) point it at ``entry``."""
        publish = getattr(get_format(entry.format), "publish", None)
        if publish is not None:
            publish(self._location(entry), entry.key)

    def _unpublish(self, entry: Entry) -> None:
        unpublish = getattr(get_format(entry.format), "unpublish", None)
        if unpublish is not None:
            unpublish(self.tiers.backend(entry.tier), entry.key)

    def _abandon(self, fmt: Format, location: Location, staged: StagedVersion) -> None:
        try:
            self._delete_stored(fmt, location)
        finally:
            self.catalog.discard(staged)

    @staticmethod
    def _delete_stored(fmt: Format, location: Location) -> None:
        """Delete a version's data, then its record."""
        fmt.delete(location)
        if not location.backend.is_database:
            location.backend.remove(record_path(location.path))

    def _format_for(self, name: str, kind: Kind, obj: Any) -> Format:
        fmt = get_format(name)
        if kind not in fmt.kinds:
            raise UnsupportedObjectError(
                f"format {name!r} stores {sorted(k.value for k in fmt.kinds)} data, "
                f"not {kind.value}; leave format= unset to use the default for {kind.value}"
            )
        if not fmt.can_store(obj):
            raise UnsupportedObjectError(f"format {name!r} cannot store a {type(obj).__name__}")
        return fmt

    def _exists(self, key: str) -> bool:
        return bool(self.catalog.search(key=_glob_escape(key)))

    def _location(self, entry: Entry) -> Location:
        return Location(self.tiers.backend(entry.tier), entry.path)

    @property
    def checkpoints(self) -> CheckpointManager:
        """Checkpoints of this collection (save, list, diff, verify, restore, delete)."""
        from memories_geo.checkpoints import CheckpointManager

        return CheckpointManager(self)

    # -- reading ---------------------------------------------------------------------

    def open(self, key: str, *, version: int | None = None, **query: Any) -> Any:
        """Open the current (or a given) version of ``key``, lazily where the format allows.

        Parameters
        ----------
        key : str
            The key.
        version : int, optional
            A version number from :meth:`versions`; default the current one.
        **query
            Format options, e.g. ``chunks=`` (Zarr), ``columns=`` / ``bbox=`` (GeoParquet).

        Returns
        -------
        xarray.Dataset, DataArray, DataTree, geopandas.GeoDataFrame or GeoSeries
            The same type that was saved. It remembers its key, so
            ``obj.memories.save()`` stores a new version of it.

        Raises
        ------
        KeyNotFoundError
            No such key or version.
        """
        entry = self.catalog.get(validate_key(key), version)
        obj = get_format(entry.format).open(self._location(entry), entry.object_info, **query)
        self.catalog.touch(entry)
        return attach_source(obj, {"key": entry.key, "version": entry.version})

    def info(self, key: str, *, version: int | None = None) -> Entry:
        """Catalog entry of the current (or a given) version of ``key``."""
        return self.catalog.get(validate_key(key), version)

    def versions(self, key: str) -> list[Entry]:
        """Every version of ``key``, oldest first."""
        return self.catalog.versions(validate_key(key))

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
        key = validate_key(key)
        if version is None:
            current = self.catalog.current(key)
            entries, purge = self.catalog.remove_key(key)
            self._unpublish(current)
        else:
            entry, gone = self.catalog.remove_version(key, version)
            entries, purge = [entry], [entry] if gone else []
        self._purge(purge)
        return entries

    def _purge(self, entries: Sequence[Entry]) -> None:
        """Delete the stored data of versions the catalog no longer references."""
        for entry in entries:
            self._delete_stored(get_format(entry.format), self._location(entry))

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
        problems = [p for found in self.verify_entries(entries).values() for p in found]
        raise_for_problems(f"{len(entries)} version(s)", problems)
        return entries

    def verify_entries(self, entries: Sequence[Entry], *, quick: bool = False) -> dict[str, list[str]]:
        """Problems of each stored version, by version id (an empty list when intact).

        ``quick=True`` re-hashes only the versions whose file listing (paths, sizes,
        modification stamps) differs from the one recorded at their last full
        verification, the way git trusts its index; ``quick=False`` re-hashes all.
        """
        from concurrent.futures import ThreadPoolExecutor

        recorded = self.catalog.stat_fingerprints([e.version_id for e in entries]) if quick else {}

        def check(entry: Entry) -> list[str]:
            return self.verify_entry(entry, quick=quick, recorded=recorded.get(entry.version_id))

        with ThreadPoolExecutor(max_workers=8) as pool:
            return dict(zip([e.version_id for e in entries], pool.map(check, entries), strict=True))

    def verify_entry(self, entry: Entry, *, quick: bool = False, recorded: str | None = None) -> list[str]:
        """Problems of one stored version (empty when intact); see :meth:`verify_entries`."""
        fmt = get_format(entry.format)
        location = self._location(entry)
        backend = location.backend
        if quick and not backend.is_database:
            recorded = recorded or self.catalog.stat_fingerprint(entry.version_id)
            try:
                if recorded is not None and stat_fingerprint(backend.fs, location.full_path) == recorded:
                    return []
            except FileNotFoundError:
                return [f"{entry.key} v{entry.version}: {location.url}: missing"]
        manifest = self.catalog.manifest(entry)
        if backend.is_database:
            found = fmt.verify(location, manifest)
        else:
            found, stat = verify_manifest_stat(backend.fs, location.full_path, manifest)
            if not found:
                self.catalog.set_stat_fingerprint(entry.version_id, stat)
        return [f"{entry.key} v{entry.version}: {p}" for p in found]

    def recover(self) -> list[str]:
        """Remove orphans: staged versions whose writer is gone, and unreferenced version files.

        Safe while other processes write: a staged version whose writing process is
        still alive on this host is left alone.

        Returns
        -------
        list of str
            Display URLs of what was removed.
        """
        removed = []
        for staged in self.catalog.staged_versions():
            if _writer_alive(staged.writer):
                continue
            location = Location(self.tiers.backend(staged.tier), staged.path)
            self._delete_stored(get_format(staged.format), location)
            self.catalog.discard(staged)
            removed.append(location.url)
        known = self.catalog.stored_paths()
        for tier in self.tiers.names:
            backend = self.tiers.backend(tier)
            if not backend.supports_listing:
                continue
            if backend.is_database:
                stored = backend.version_paths()
            else:
                stored = [
                    posixpath.join(folder, name.removesuffix(RECORD_SUFFIX))
                    for folder, names in iter_version_dirs(backend)
                    for name in names
                ]
            for path in dict.fromkeys(stored):
                if (tier, path) not in known:
                    backend.remove(path)
                    if not backend.is_database:
                        backend.remove(record_path(path))
                    removed.append(backend.url_for(path))
        self._write_missing_records()
        return removed

    def _write_missing_records(self) -> None:
        """Write the record of committed versions that lack one (a crash right after commit)."""
        for entry in self.catalog.all_versions():
            backend = self.tiers.backend(entry.tier)
            if backend.is_database or backend.exists(record_path(entry.path)):
                continue
            if backend.exists(entry.path):
                row = self.catalog.export_rows([entry.version_id])
                if row:
                    write_record(backend, entry.path, row[0])

    # -- display ---------------------------------------------------------------------

    def __repr__(self) -> str:
        tiers = ", ".join(f"{n}={redact_url(self.tiers.tier_config(n).url)}" for n in self.tiers.names)
        return f"Memory(catalog={str(self.catalog.path)!r}, tiers: {tiers})"

    def _repr_html_(self) -> str:
        entries = self.catalog.current_entries()
        rows = []
        for name in self.tiers.names:
            here = [e for e in entries if e.tier == name]
            size = sum(e.size_bytes for e in here)
            url = html.escape(repr(self.tiers.tier_config(name)).split("url=", 1)[1].split(",", 1)[0])
            rows.append(f"<tr><td>{name}</td><td>{url}</td><td>{len(here)}</td><td>{size:,}</td></tr>")
        return (
            "<div><strong>memories_geo.Memory</strong>"
            f" <code>{html.escape(str(self.catalog.path))}</code><table>"
            "<tr><th>tier</th><th>url</th><th>keys</th><th>bytes</th></tr>"
            + "".join(rows) + "</table></div>"
        )


class _Commit:
    """The verify -> commit -> publish steps of a save, runnable now or after a dask write."""

    def __init__(
        self, memory: Memory, fmt: Format, location: Location, staged: StagedVersion,
        attrs: dict[str, Any], tags: tuple[str, ...], exclusive: bool,
    ) -> None:
        self.memory, self.fmt, self.location, self.staged = memory, fmt, location, staged
        self.attrs, self.tags, self.exclusive = attrs, tags, exclusive

    def __call__(self, result: WriteResult) -> Entry:
        try:
            if not result.manifest.files:
                raise FormatError(f"format {self.fmt.name!r} wrote nothing for {self.staged.key!r}")
            row = version_row(
                self.staged, uri=self.location.url, footprint=result.footprint,
                manifest=result.manifest, object_info=result.object_info,
                attrs=self.attrs, tags=self.tags,
            )
            if not self.location.backend.is_database:
                write_record(self.location.backend, self.location.path, row)
            emit("save.verified", key=self.staged.key, tier=self.staged.tier)
            entry = self.memory.catalog.commit(self.staged, row, exclusive=self.exclusive)
        except BaseException as exc:
            self.fail(exc)
        emit("save.committed", key=entry.key, version=entry.version, tier=entry.tier,
             format=entry.format, bytes=entry.size_bytes)
        self.memory._publish(entry)
        emit("save.published", key=entry.key, version=entry.version)
        return entry

    def after_pending(self, _: Any, result: WriteResult) -> Entry:
        """Run once the pending write has been computed."""
        try:
            manifest = self.fmt.manifest(self.location)
        except BaseException as exc:
            self.fail(exc)
        emit("save.written", key=self.staged.key, tier=self.staged.tier, format=self.fmt.name,
             bytes=manifest.size_bytes)
        return self(replace(result, manifest=manifest, pending=None))

    def fail(self, exc: BaseException) -> NoReturn:
        """Remove what was staged and re-raise (library errors as they are)."""
        self.memory._abandon(self.fmt, self.location, self.staged)
        if isinstance(exc, MemoriesError | ValueError | TypeError | KeyboardInterrupt):
            raise exc
        raise FormatError(f"writing {self.staged.key!r} as {self.fmt.name} failed: {exc}") from exc


def _plain(frame: Any) -> Any:
    import pandas as pd

    return pd.DataFrame(frame.drop(columns="geometry"))


def _glob_escape(key: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in key)


def _name_hint(obj: Any) -> str | None:
    name = getattr(obj, "name", None)
    if isinstance(name, str):
        return name
    geometry = getattr(obj, "geometry", None)
    return getattr(geometry, "name", None) if geometry is not None and name is None else None


def _writer_alive(writer: str) -> bool:
    host, _, pid = writer.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
