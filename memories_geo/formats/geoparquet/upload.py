"""Where GeoParquet files go: hashed as they are written, uploaded complete or not at all.

:func:`write_geoparquet <memories_geo.formats.geoparquet.write.write_geoparquet>` opens
each file it writes through a :class:`FileSink`:

- :class:`LocalSink`: pyarrow writes to the local path itself (the version's manifest is
  then built by hashing the files, which the page cache still holds);
- :class:`ObjectStoreSink`: an S3 or Azure tier reached through obstore
  (:func:`memories_geo.backends.objectstore.object_store_client`). A file is held in
  memory while it is written and sent in one ``PUT`` when it is done, as long as it is at
  most :data:`SINGLE_PUT_LIMIT`; a larger file becomes a multipart upload of
  :data:`PART_SIZE` parts sent concurrently while the rest is written, completed only
  when the file is done;
- :class:`FsspecSink`: any other remote filesystem (GCS, tiers whose settings obstore
  cannot honour): the file is held in memory and sent with ``pipe_file`` (s3fs: one
  ``PUT`` up to 100 MiB, else a multipart upload aborted on failure).

The remote sinks hash the bytes as they pass (:data:`memories_geo.integrity.ALGORITHM`,
the digest :func:`~memories_geo.integrity.build_manifest` would compute from the stored
object), so the version's manifest needs no read-back. A write that raises leaves
nothing at the key: the single ``PUT`` is never sent, the multipart upload is aborted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import xxhash

from memories_geo.integrity import FileDigest

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from memories_geo.backends.base import Location
    from memories_geo.backends.objectstore import ObjectStoreClient

__all__ = [
    "PART_SIZE",
    "SINGLE_PUT_LIMIT",
    "WRITE_BLOCK",
    "FileSink",
    "FsspecSink",
    "HashingWriter",
    "LocalSink",
    "ObjectStoreSink",
    "location_sink",
]

logger = logging.getLogger(__name__)

#: Files up to this size go in one ``PUT`` (AWS advises multipart uploads from 100 MB).
SINGLE_PUT_LIMIT = 100 * 2**20
#: Part size of the multipart uploads of larger files.
PART_SIZE = 16 * 2**20
#: Parts of one file uploaded at the same time.
PART_CONCURRENCY = 8
#: Bytes gathered by pyarrow before each write to a :class:`HashingWriter`.
WRITE_BLOCK = 2**20


class HashingWriter:
    """A writable binary file that hashes what is written and holds it until :meth:`finish`.

    ``close()`` (called by pyarrow's writers, also when they fail) only stops further
    writes: the bytes are sent by :meth:`finish`, after the whole file was written, and
    :meth:`abort` drops them. Subclasses decide where the bytes go.

    Examples
    --------
    >>> w = HashingWriter()
    >>> w.write(b"abc")
    3
    >>> w.finish().size
    3
    """

    def __init__(self) -> None:
        self._hash = xxhash.xxh3_128()
        self._buffer = bytearray()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        """Hash ``data`` and keep it; return the number of bytes written."""
        if self.closed:
            raise ValueError("write to a closed file")
        view = memoryview(data).cast("B")
        self._hash.update(view)
        self.size += view.nbytes
        self._keep(view)
        return view.nbytes

    def _keep(self, view: memoryview) -> None:
        self._buffer += view

    def tell(self) -> int:
        """Bytes written so far."""
        return self.size

    def flush(self) -> None:
        """Nothing to do: bytes are sent by :meth:`finish`."""

    def close(self) -> None:
        """Refuse further writes (nothing is sent)."""
        self.closed = True

    def writable(self) -> bool:  # noqa: D102
        return True

    def seekable(self) -> bool:  # noqa: D102
        return False

    def readable(self) -> bool:  # noqa: D102
        return False

    @property
    def digest(self) -> FileDigest:
        """Size and digest of the bytes written so far."""
        return FileDigest(self.size, self._hash.hexdigest())

    def finish(self) -> FileDigest:
        """Send the file (complete) and return its digest."""
        self.closed = True
        self._send(self._buffer)
        self._buffer = bytearray()
        return self.digest

    def _send(self, data: bytearray) -> None:
        """Store ``data``, the whole file (nothing here: the base class only hashes)."""

    def abort(self, error: BaseException) -> None:
        """Drop the file: nothing is stored (``error`` is why)."""
        self.closed = True
        self._buffer = bytearray()


class _FsspecWriter(HashingWriter):
    def __init__(self, fs: AbstractFileSystem, path: str) -> None:
        super().__init__()
        self._fs, self._path = fs, path

    def _send(self, data: bytearray) -> None:
        self._fs.pipe_file(self._path, bytes(data))


class _ObjectStoreWriter(HashingWriter):
    """Held in memory up to :data:`SINGLE_PUT_LIMIT`, then a multipart upload fed as it is written."""

    def __init__(self, store: Any, key: str, attributes: Mapping[str, str]) -> None:
        super().__init__()
        self._store, self._key = store, key
        self._attributes = dict(attributes) or None
        self._multipart: Any = None

    def _keep(self, view: memoryview) -> None:
        if self._multipart is not None:
            self._multipart.write(view)
            return
        self._buffer += view
        if len(self._buffer) > SINGLE_PUT_LIMIT:
            import obstore

            logger.debug("%s: over %d bytes, uploaded in parts as it is written", self._key, SINGLE_PUT_LIMIT)

            self._multipart = obstore.open_writer(
                self._store, self._key, attributes=self._attributes, buffer_size=PART_SIZE,
                max_concurrency=PART_CONCURRENCY,
            )
            self._multipart.write(self._buffer)
            self._buffer = bytearray()

    def _send(self, data: bytearray) -> None:
        if self._multipart is not None:
            self._multipart.close()
            return
        import obstore

        obstore.put(self._store, self._key, data, use_multipart=False, attributes=self._attributes)

    def abort(self, error: BaseException) -> None:
        super().abort(error)
        if self._multipart is not None:
            # obstore aborts the multipart upload when its context exits with an error
            self._multipart.__exit__(type(error), error, error.__traceback__)
            self._multipart = None


class FileSink:
    """Opens the files of one write and records the digests taken while writing them.

    :meth:`open` yields what pyarrow writes to (a local path, or a pyarrow stream in front
    of a :class:`HashingWriter`); when its block ends normally the file is stored, when it
    raises nothing is stored.

    Attributes
    ----------
    digests : dict
        Path (as given to :meth:`open`) -> :class:`~memories_geo.integrity.FileDigest`
        of the files hashed while written (empty for :class:`LocalSink`).

    Examples
    --------
    >>> sink = LocalSink()
    >>> with sink.open("/tmp/mg-sink-doc/a.parquet") as target:
    ...     target
    '/tmp/mg-sink-doc/a.parquet'
    """

    def __init__(self) -> None:
        self.digests: dict[str, FileDigest] = {}

    @contextlib.contextmanager
    def open(self, path: str) -> Iterator[Any]:
        """Yield the target for the file at ``path``; store it when the block succeeds.

        The target is a pyarrow stream that gathers pyarrow's many small writes into
        blocks of :data:`WRITE_BLOCK` bytes before they reach the Python writer.
        """
        import pyarrow as pa

        writer = self._writer(path)
        stream = pa.BufferedOutputStream(pa.PythonFile(writer, mode="w"), buffer_size=WRITE_BLOCK)
        try:
            yield stream
        except BaseException as error:
            logger.debug("%s: write failed, nothing stored: %r", path, error)
            writer.abort(error)
            with contextlib.suppress(Exception):
                stream.close()  # its last bytes go nowhere: the writer refuses them
            raise
        stream.close()
        self.digests[path] = writer.finish()

    def _writer(self, path: str) -> HashingWriter:
        raise NotImplementedError


class LocalSink(FileSink):
    """Local files, written by pyarrow at their path (parent folders created)."""

    @contextlib.contextmanager
    def open(self, path: str) -> Iterator[Any]:
        """Yield ``path`` itself after creating its folder."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        yield path


class FsspecSink(FileSink):
    """Files on an fsspec filesystem, each sent whole with ``pipe_file`` once written.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        Filesystem of the paths given to :meth:`open`.

    Examples
    --------
    >>> import fsspec
    >>> sink = FsspecSink(fsspec.filesystem("memory"))
    >>> with sink.open("/doc/a.bin") as f:
    ...     _ = f.write(b"abc")
    >>> sink.digests["/doc/a.bin"].size
    3
    """

    def __init__(self, fs: AbstractFileSystem) -> None:
        super().__init__()
        self.fs = fs

    def _writer(self, path: str) -> HashingWriter:
        return _FsspecWriter(self.fs, path)


class ObjectStoreSink(FileSink):
    """Files on an S3 or Azure tier, uploaded through obstore.

    Parameters
    ----------
    store : obstore.store.S3Store or obstore.store.AzureStore
        Store rooted at ``root``.
    root : str
        Path (on the tier's fsspec filesystem) the store is rooted at; paths given to
        :meth:`open` are under it.
    attributes : mapping
        Sent with every upload (``{"Storage-Class": ...}``).

    Examples
    --------
    >>> from obstore.store import MemoryStore
    >>> sink = ObjectStoreSink(MemoryStore(), "bucket/k", {})
    >>> with sink.open("bucket/k/a.parquet") as f:
    ...     _ = f.write(b"abc")
    >>> sink.digests["bucket/k/a.parquet"].size
    3
    """

    def __init__(self, store: Any, root: str, attributes: Mapping[str, str]) -> None:
        super().__init__()
        self.store, self.root, self.attributes = store, root.rstrip("/"), dict(attributes)

    def _writer(self, path: str) -> HashingWriter:
        if not path.startswith(self.root + "/"):
            raise ValueError(f"{path!r} is not under {self.root!r}")
        return _ObjectStoreWriter(self.store, path[len(self.root) + 1:], self.attributes)


def location_sink(location: Location) -> FileSink:
    """The fastest :class:`FileSink` for the version at ``location``.

    The obstore client of a tier is made once (building one costs several
    milliseconds) and kept as long as the tier's backend object lives.

    Parameters
    ----------
    location : Location
        The version's location (one file, or a directory of files).

    Returns
    -------
    FileSink
        :class:`LocalSink` on local tiers, :class:`ObjectStoreSink` on S3 and Azure
        tiers obstore can reach, :class:`FsspecSink` otherwise.

    Examples
    --------
    >>> location_sink(location)  # doctest: +SKIP
    <memories_geo.formats.geoparquet.upload.ObjectStoreSink object at ...>
    """
    if location.is_local:
        return LocalSink()
    files = location.files
    client = _tier_client(files)
    if client is None:
        return FsspecSink(location.fs)
    return ObjectStoreSink(client.store, files.full_path(""), client.attributes)


_CLIENTS: weakref.WeakKeyDictionary[Any, ObjectStoreClient | None] = weakref.WeakKeyDictionary()
_CLIENTS_LOCK = threading.Lock()


def _tier_client(files: Any) -> ObjectStoreClient | None:
    """The obstore client rooted at the tier's root, made on first use."""
    with _CLIENTS_LOCK:
        if files in _CLIENTS:
            return _CLIENTS[files]
    from memories_geo.backends.objectstore import object_store_client

    client = object_store_client(files, "")
    with _CLIENTS_LOCK:
        _CLIENTS[files] = client
    return client
