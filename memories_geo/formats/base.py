"""The ``Format`` protocol: how an object becomes stored bytes and comes back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from memories_geo.footprint import Footprint
from memories_geo.integrity import DigestLog, Manifest, build_manifest, verify_manifest
from memories_geo.types import CompressionLevel, Kind, Mode

if TYPE_CHECKING:
    from memories_geo.backends.base import Capability, Location
    from memories_geo.query import OpenRequest

__all__ = ["FileFormat", "Format", "PreparedWrite", "WriteOptions", "WriteResult"]


@dataclass(frozen=True)
class WriteOptions:
    """What the caller asked for, normalised, handed to :meth:`Format.write`.

    Attributes
    ----------
    mode : {"w-", "w", "a"}
        The user's mode; a format sees ``"a"`` only for appends, where
        ``previous`` is the location of the version being extended.
    compression : CompressionLevel
        Level chosen by the tier (or the caller); each format maps it to codecs.
    encoding : mapping or None
        Per-variable encoding (xarray) passed through.
    append_dim : str or None
        Dimension to append along with ``mode="a"``.
    crs : object or None
        CRS to assign when the object has none.
    previous : Location or None
        Current version's location (appends copy or share from it).
    compute : bool
        ``False`` asks a format that can (dask-backed data) to return the bulk of
        the write as ``WriteResult.pending`` instead of doing it.
    extra : mapping
        Format-specific keyword arguments, passed through unchanged.
    """

    mode: Mode = "w-"
    compression: CompressionLevel = CompressionLevel.MEDIUM
    encoding: Mapping[str, Any] | None = None
    append_dim: str | None = None
    crs: Any = None
    previous: Location | None = None
    compute: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteResult:
    """What a write produced.

    Attributes
    ----------
    manifest : Manifest
        Files written (relative to the location) with sizes and digests.
    footprint : Footprint
        Extent, CRS, time range, variables and shape.
    object_info : mapping
        What ``open`` needs to rebuild the same Python type (JSON-serialisable),
        e.g. ``{"type": "DataArray", "name": "t2m"}``.
    pending : dask.delayed.Delayed or None
        With ``compute=False``: the part of the write still to run. The manifest is
        then built by :meth:`FileFormat.manifest` once it has run.
    taken : DigestLog or None
        With ``pending``: the digests the pending write takes of what it uploads in
        this process (a threaded run), which its manifest uses instead of reading
        those files back.
    """

    manifest: Manifest
    footprint: Footprint
    object_info: Mapping[str, Any] = field(default_factory=dict)
    pending: Any = None
    taken: DigestLog | None = None

    @property
    def size_bytes(self) -> int:
        """Bytes written."""
        return self.manifest.size_bytes


@dataclass(frozen=True)
class PreparedWrite:
    """A write checked and described, its bytes not written yet (see :meth:`FileFormat._prepare`).

    Attributes
    ----------
    footprint : Footprint
        Extent, CRS, time range, variables and shape of what will be written.
    object_info : mapping
        What ``open`` needs to rebuild the Python type.
    store : callable
        Writes the bytes at the location when called (no arguments).
    """

    footprint: Footprint
    object_info: Mapping[str, Any]
    store: Callable[[], None]


@runtime_checkable
class Format(Protocol):
    """A storage format: one class per format, registered by name in ``formats.registry``.

    Formats that expose a stable name outside memories_geo (a database view named after
    the key) may also define ``publish(location, key)``, called after each commit, and
    ``unpublish(backend, key)``, called when the key is deleted. A format whose file name
    depends on the options (``.geojson.gz``) may define ``extension_for(options) -> str``.
    """

    name: ClassVar[str]
    kinds: ClassVar[frozenset[Kind]]
    extension: ClassVar[str]
    #: Format-specific ``open`` keywords -> one-line description (``bbox``, ``bbox_crs``,
    #: ``time`` and ``columns`` are common to every format and not listed here).
    open_options: ClassVar[Mapping[str, str]]
    #: Format-specific ``save`` keywords -> one-line description (checked before writing).
    write_options: ClassVar[Mapping[str, str]]
    #: Where this format is the default: (kind, backend capability it needs) pairs.
    default_for: ClassVar[frozenset[tuple[Kind, Capability]]]

    def default_priority(self, obj: Any) -> int:
        """How strongly this format wants to be the default for ``obj`` (0: not at all)."""
        ...

    def can_store(self, obj: Any) -> bool:
        """Whether this format can hold ``obj``."""
        ...

    def write(self, obj: Any, location: Location, options: WriteOptions) -> WriteResult:
        """Write ``obj`` at ``location`` (which does not exist yet) and describe it."""
        ...

    def open(self, location: Location, object_info: Mapping[str, Any], request: OpenRequest) -> Any:
        """Open what :meth:`write` stored, lazily where possible, honouring ``request``.

        ``request.bbox`` (in ``request.bbox_crs``; :meth:`OpenRequest.bbox_in` gives it
        in the data's CRS) and ``request.time`` restrict what is returned;
        ``request.columns`` selects columns or data variables; ``request.options`` holds
        only keywords listed in :attr:`open_options`.
        """
        ...

    def delete(self, location: Location) -> None:
        """Remove everything stored at ``location``; a missing location is not an error."""
        ...

    def manifest(self, location: Location) -> Manifest:
        """Checksum manifest of what is stored at ``location`` (after a pending write ran)."""
        ...

    def verify(self, location: Location, manifest: Manifest) -> list[str]:
        """Problems found comparing stored bytes with ``manifest`` (empty when intact)."""
        ...


class FileFormat:
    """Base for formats stored as files on an fsspec filesystem.

    Subclasses implement :meth:`open` and either :meth:`_prepare` (check and describe
    the object, and return the write to run: ``compute=False`` then returns that write
    as ``WriteResult.pending``, so nothing is stored or committed until it is computed)
    or :meth:`_write` (write at once). Manifests, deletion and verification are shared.
    """

    name: ClassVar[str]
    kinds: ClassVar[frozenset[Kind]]
    extension: ClassVar[str]
    open_options: ClassVar[Mapping[str, str]] = {}
    write_options: ClassVar[Mapping[str, str]] = {}
    default_for: ClassVar[frozenset[tuple[Kind, Capability]]] = frozenset()

    def default_priority(self, obj: Any) -> int:  # noqa: D102
        return 1

    def can_store(self, obj: Any) -> bool:  # noqa: D102
        raise NotImplementedError

    def write(self, obj: Any, location: Location, options: WriteOptions) -> WriteResult:
        """Write ``obj`` at ``location``; with ``options.compute=False``, return the write as pending.

        Everything :meth:`_prepare` checks is checked now, whatever ``compute`` is; a
        pending write is a ``dask.delayed`` object that stores the bytes when computed.
        """
        prepared = self._prepare(obj, location, options)
        if prepared is None:
            footprint, info = self._write(obj, location, options)
            return WriteResult(manifest=self.manifest(location), footprint=footprint, object_info=info)
        if not options.compute:
            import dask

            pending = dask.delayed(prepared.store, pure=False)()
            return WriteResult(manifest=Manifest(), footprint=prepared.footprint,
                               object_info=prepared.object_info, pending=pending)
        prepared.store()
        return WriteResult(manifest=self.manifest(location), footprint=prepared.footprint,
                           object_info=prepared.object_info)

    def _prepare(self, obj: Any, location: Location, options: WriteOptions) -> PreparedWrite | None:
        """Check ``obj`` and describe it without writing; ``None`` to write with :meth:`_write`."""
        return None

    def manifest(self, location: Location) -> Manifest:
        """Hash what is stored at ``location``."""
        return build_manifest(location.fs, location.full_path)

    def _write(
        self, obj: Any, location: Location, options: WriteOptions
    ) -> tuple[Footprint, Mapping[str, Any]]:
        raise NotImplementedError

    def open(self, location: Location, object_info: Mapping[str, Any], request: OpenRequest) -> Any:  # noqa: D102
        raise NotImplementedError

    def delete(self, location: Location) -> None:  # noqa: D102
        location.backend.remove(location.path)

    def verify(self, location: Location, manifest: Manifest) -> list[str]:  # noqa: D102
        return verify_manifest(location.fs, location.full_path, manifest)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} format={self.name!r}>"
