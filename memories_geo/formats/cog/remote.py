"""GDAL reads of COGs on remote tiers: byte ranges through the tier's own fsspec filesystem.

rasterio hands every read GDAL makes of a file opened with ``opener=`` to Python. The
:class:`RangeOpener` answers them with ranged requests (``fs.cat_file`` with a start and
an end, ``fs.cat_ranges`` for the several tiles of one window), so a window read
fetches the header and the tiles it needs, never the whole file. It works the same
for every fsspec filesystem (S3, GCS, Azure, memory...) and uses the credentials and
endpoint the tier was configured with; nothing goes through GDAL's own network
drivers. Imported only when a remote COG is opened (it imports rasterio).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from rasterio.abc import MultiByteRangeResourceContainer

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["READ_AHEAD", "RangeFile", "RangeOpener"]

#: Bytes fetched at least per request of a sequential read (the TIFF header and IFDs
#: come in many small reads; tiles come in one read each, or one ``cat_ranges``).
READ_AHEAD = 64 * 1024


class RangeOpener(MultiByteRangeResourceContainer):
    """Read-only files of ``fs`` for rasterio's ``opener=``, read by byte ranges.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The tier's filesystem; paths are paths on it (no protocol).

    Examples
    --------
    >>> import rasterio  # doctest: +SKIP
    >>> with rasterio.open("bucket/dem.tif", opener=RangeOpener(fs)) as src:  # doctest: +SKIP
    ...     src.read(1, window=((0, 256), (0, 256)))
    """

    def __init__(self, fs: AbstractFileSystem) -> None:
        self.fs = fs
        self._sizes: dict[str, int] = {}

    def open(self, path: str, mode: str = "rb", **kwds: Any) -> RangeFile:
        """A seekable read-only file over ``path``.

        Raises
        ------
        PermissionError
            For a mode other than reading.
        FileNotFoundError
            When nothing is stored at ``path``.
        """
        if set(mode) - set("rb"):
            raise PermissionError(f"stored versions are read-only; cannot open {path!r} with mode {mode!r}")
        return RangeFile(self.fs, path, self.size(path))

    def isfile(self, path: str) -> bool:
        """Whether ``path`` is a file."""
        return bool(self.fs.isfile(path))

    def isdir(self, path: str) -> bool:
        """Whether ``path`` is a directory (a prefix)."""
        return bool(self.fs.isdir(path))

    def ls(self, path: str) -> list[str]:
        """Paths directly under ``path``."""
        return [str(p) for p in self.fs.ls(path, detail=False)]

    def mtime(self, path: str) -> int:
        """Modification time in seconds, 0 when the store does not say."""
        try:
            return int(self.fs.modified(path).timestamp())
        except (NotImplementedError, AttributeError):
            return 0

    def rm(self, path: str) -> None:
        """Refused: stored versions are read-only."""
        raise PermissionError(f"stored versions are read-only; cannot remove {path!r}")

    def size(self, path: str) -> int:
        """Size of ``path`` in bytes (asked once per opener).

        Raises
        ------
        FileNotFoundError
            When nothing is stored at ``path`` (also for names the store refuses as paths).
        """
        if path not in self._sizes:
            try:
                size = self.fs.size(path)
            except ValueError as exc:
                raise FileNotFoundError(path) from exc
            if size is None:
                raise FileNotFoundError(path)
            self._sizes[path] = int(size)
        return self._sizes[path]


class RangeFile(io.RawIOBase):
    """A read-only, seekable view of one stored file, fetched by byte ranges.

    :meth:`get_byte_ranges` is what rasterio calls for GDAL's multi-range reads.
    """

    def __init__(self, fs: AbstractFileSystem, path: str, size: int) -> None:
        super().__init__()
        self.fs, self.path, self.size = fs, path, size
        self._pos = 0
        self._start, self._data = 0, b""

    def readable(self) -> bool:  # noqa: D102
        return True

    def seekable(self) -> bool:  # noqa: D102
        return True

    def tell(self) -> int:  # noqa: D102
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:  # noqa: D102
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes from the current position (all the rest when negative)."""
        start = min(self._pos, self.size)
        end = self.size if size is None or size < 0 else min(self.size, start + size)
        if end <= start:
            return b""
        cached_end = self._start + len(self._data)
        if not (self._start <= start and end <= cached_end):
            fetch_end = min(self.size, max(end, start + READ_AHEAD))
            self._start, self._data = start, self._fetch(start, fetch_end)
        out = self._data[start - self._start:end - self._start]
        self._pos = start + len(out)
        return bytes(out)

    def readinto(self, buffer: Any) -> int:  # noqa: D102
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def get_byte_ranges(self, offsets: list[int], sizes: list[int]) -> list[bytes]:
        """The bytes of several ranges at once (GDAL asks for the tiles of a window so)."""
        ends = [min(self.size, o + s) for o, s in zip(offsets, sizes, strict=True)]
        found = self.fs.cat_ranges([self.path] * len(offsets), list(offsets), ends, on_error="raise")
        for data, offset, end in zip(found, offsets, ends, strict=True):
            if len(data) != max(0, end - offset):
                raise OSError(f"short read of {self.path!r}: {len(data)} bytes at {offset}, "
                              f"expected {end - offset}")
        return [bytes(d) for d in found]

    def _fetch(self, start: int, end: int) -> bytes:
        data = self.fs.cat_file(self.path, start=start, end=end)
        if len(data) != end - start:
            raise OSError(
                f"short read of {self.path!r}: {len(data)} bytes at {start}, expected {end - start}"
            )
        return bytes(data)
