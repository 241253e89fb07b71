"""Backup copies of checkpointed versions: byte copies for files, Parquet exports for tables.

A version stored as files is copied file by file (streamed) and verified against its
checksum manifest; a version stored as database tables is exported (GeoParquet for a
vector layer, the Parquet time-series format for a time series, a TimescaleDB
hypertable), and re-created from it only if the re-created table's digest equals the
original's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import posixpath
from typing import TYPE_CHECKING

from memories_geo.backends.base import Capability, Location, require
from memories_geo.errors import ChecksumMismatchError, KeyNotFoundError
from memories_geo.formats.base import WriteOptions
from memories_geo.formats.registry import get_format
from memories_geo.integrity import Manifest, verify_manifest
from memories_geo.progress import ProgressBar, progress_bar, timed
from memories_geo.query import open_request
from memories_geo.records import record_path
from memories_geo.types import CompressionLevel

if TYPE_CHECKING:
    from memories_geo.backends.base import Backend, FileStore
    from memories_geo.entry import Entry
    from memories_geo.versions import VersionStore

__all__ = ["BackupStore", "copy_files"]

logger = logging.getLogger(__name__)

#: Suffix of the GeoParquet export that backs up a version stored as tables.
TABLE_EXPORT = ".table.parquet"
#: Suffix of the JSON beside an export: what the export's format needs to open it.
EXPORT_INFO = ".table.json"

#: Format of the export of a table version, by kind (GeoParquet for any other kind).
EXPORT_FORMATS = {"timeseries": "parquet"}


def export_format(entry: Entry) -> str:
    """The format a table version of ``entry``'s kind is backed up in."""
    return EXPORT_FORMATS.get(entry.kind, "geoparquet")


class BackupStore:
    """A file backend holding verified copies of versions, under ``{tier}/{path}``.

    Parameters
    ----------
    versions : VersionStore
        The collection whose versions are copied.
    backend : Backend
        Where the copies go; it must store files.
    """

    def __init__(self, versions: VersionStore, backend: Backend) -> None:
        require(backend, Capability.FILES, "a backup store")
        self.versions = versions
        self.backend: FileStore = backend  # type: ignore[assignment]

    @staticmethod
    def path_of(entry: Entry) -> str:
        """Where ``entry`` is copied, relative to the backup root."""
        return posixpath.join(entry.tier, entry.path)

    def _stores_files(self, entry: Entry) -> bool:
        return Capability.FILES in self.versions.tiers.backend(entry.tier).capabilities

    def has(self, entry: Entry) -> bool:
        """Whether a copy with the right files and sizes is there (copies are verified when made)."""
        if not self._stores_files(entry):
            return bool(self.backend.exists(self.path_of(entry) + TABLE_EXPORT))
        manifest = self.versions.catalog.manifest(entry)
        root = self.backend.full_path(self.path_of(entry))
        fs = self.backend.fs
        if not fs.exists(root):
            return False
        infos = {root: fs.info(root)} if fs.isfile(root) else fs.find(root, detail=True)
        sizes = {(posixpath.relpath(p, root) if p != root else posixpath.basename(root)): i["size"]
                 for p, i in infos.items() if i.get("type") == "file"}
        return sizes == {p: d.size for p, d in manifest.files.items()}

    def copy(self, entry: Entry, progress: ProgressBar | None = None) -> None:
        """Copy one version (and its record) to the backup, verified.

        ``progress`` counts the bytes copied.

        Raises
        ------
        ChecksumMismatchError
            The copy does not match the version's manifest.
        """
        source = self.versions.tiers.backend(entry.tier)
        if not self._stores_files(entry):
            self._export_table(entry)
            if progress is not None:
                progress.update(entry.size_bytes)
            return
        manifest = self.versions.catalog.manifest(entry)
        copy_files(source, entry.path, self.backend, self.path_of(entry), manifest,  # type: ignore[arg-type]
                   progress, source_layout=manifest)
        problems = verify_manifest(self.backend.fs, self.backend.full_path(self.path_of(entry)),
                                   manifest.materialized())
        if problems:
            raise ChecksumMismatchError(f"backup copy of {entry.key} v{entry.version} is corrupt", problems)
        rec = record_path(entry.path)
        if source.exists(rec):
            self.backend.write_bytes(record_path(self.path_of(entry)), source.read_bytes(rec))

    def remove(self, entry: Entry) -> None:
        """Delete the backup copy of a version (its files, record or table export); missing is fine."""
        path = self.path_of(entry)
        for target in (path, record_path(path), path + TABLE_EXPORT, path + EXPORT_INFO):
            self.backend.remove(target)

    def restore(self, entry: Entry) -> None:
        """Copy one version back from the backup to its tier, verified (with a progress bar)."""
        with progress_bar(entry.size_bytes, f"restore {entry.key} v{entry.version}") as bar:
            if not self._stores_files(entry):
                self._import_table(entry)
            else:
                manifest = self.versions.catalog.manifest(entry)
                target: FileStore = self.versions.tiers.backend(entry.tier)  # type: ignore[assignment]
                if target.exists(entry.path):
                    target.remove(entry.path)
                copy_files(self.backend, self.path_of(entry), target, entry.path, manifest, bar,
                           target_layout=manifest)
                problems = verify_manifest(target.fs, target.full_path(entry.path), manifest)
                if problems:
                    raise ChecksumMismatchError(
                        f"restored copy of {entry.key} v{entry.version} is corrupt", problems
                    )
        logger.info("restored %s v%d from the backup store (%d bytes)", entry.key, entry.version,
                    entry.size_bytes)

    def _export_table(self, entry: Entry) -> None:
        """Back up a table version as (Geo)Parquet (:func:`export_format`)."""
        obj = get_format(entry.format).open(self.versions.location(entry), entry.object_info, open_request())
        target = Location(self.backend, self.path_of(entry) + TABLE_EXPORT)
        result = get_format(export_format(entry)).write(
            obj, target, WriteOptions(mode="w", compression=CompressionLevel.HIGH))
        self.backend.write_bytes(self.path_of(entry) + EXPORT_INFO,
                                 json.dumps(dict(result.object_info), default=str).encode())

    def _import_table(self, entry: Entry) -> None:
        """Re-create a table version from its Parquet export; the table digest must match."""
        source = Location(self.backend, self.path_of(entry) + TABLE_EXPORT)
        info_path = self.path_of(entry) + EXPORT_INFO
        info = (json.loads(self.backend.read_bytes(info_path)) if self.backend.exists(info_path)
                else {"type": entry.object_info.get("type", "GeoDataFrame")})
        obj = get_format(export_format(entry)).open(source, info, open_request())
        fmt = get_format(entry.format)
        location = self.versions.location(entry)
        self.versions.unpublish(entry)
        fmt.delete(location)
        fmt.write(obj, location, WriteOptions(mode="w"))
        problems = fmt.verify(location, self.versions.catalog.manifest(entry))
        if problems:
            fmt.delete(location)
            raise ChecksumMismatchError(
                f"re-created table of {entry.key} v{entry.version} differs from the original", problems
            )
        with contextlib.suppress(KeyNotFoundError):
            self.versions.publish(self.versions.catalog.current(entry.key))

def copy_files(
    src: FileStore, src_path: str, dst: FileStore, dst_path: str, manifest: Manifest,
    progress: ProgressBar | None = None, *, source_layout: Manifest | None = None,
    target_layout: Manifest | None = None,
) -> None:
    """Copy the files of a manifest between file backends, streaming each file.

    ``progress`` counts the bytes copied; each file copy is logged at DEBUG with its
    duration. Files are read from, and written to, the version's own folder, except
    where ``source_layout`` / ``target_layout`` (the version's manifest) says a file
    is shared with another version's folder on that side
    (:meth:`~memories_geo.integrity.Manifest.path_of`).
    """
    src_root, dst_root = src.full_path(src_path), dst.full_path(dst_path)
    single = len(manifest.files) == 1 and src.fs.isfile(src_root)
    source_layout, target_layout = source_layout or Manifest(), target_layout or Manifest()
    for relative, digest in manifest.files.items():
        source = src_root if single else source_layout.path_of(src_root, relative)
        target = dst_root if single else target_layout.path_of(dst_root, relative)
        with timed(logger, "copy %s -> %s (%d bytes)", source, target, digest.size):
            dst.fs.makedirs(posixpath.dirname(target), exist_ok=True)
            with src.fs.open(source, "rb") as fin, dst.fs.open(target, "wb") as fout:
                while block := fin.read(16 * 1024 * 1024):
                    fout.write(block)
                    if progress is not None:
                        progress.update(len(block))

