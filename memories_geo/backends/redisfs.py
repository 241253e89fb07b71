"""An fsspec filesystem whose files are Redis string values: a small, fast tier in memory.

A file ``<prefix>/a/b.parquet`` is the string value of the key ``<prefix>/a/b.parquet``.
Directories are implicit, as on object stores, and indexed: the key ``<dir>/`` (the
directory's path and a slash; ``/`` for the database's root) is a Redis set of the names
directly under it, a sub-directory's name ending with ``/``. Writing a file sets its value
and adds it to every ancestor's set in one ``MULTI``/``EXEC`` transaction; deleting one
(a Lua script) removes it and every ancestor that became empty. Listing a directory reads
one set and never scans the keyspace.

URLs are ``redis://[[user]:password@]host:port/db/<prefix>`` (``rediss://`` for TLS): the
first path segment is the database number, the rest the root of the tier.
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from fsspec import AbstractFileSystem
from fsspec.spec import AbstractBufferedFile

from memories_geo.config import redact_text, redact_url
from memories_geo.errors import ConfigError, QuotaExceededError

__all__ = ["MAX_VALUE_BYTES", "RedisFile", "RedisFileSystem", "register_protocols"]

logger = logging.getLogger(__name__)

#: Largest Redis string value (``proto-max-bulk-len``'s default): the largest file a tier holds.
MAX_VALUE_BYTES = 512 * 1024 * 1024

#: Delete a file and, walking up, every ancestor directory left empty.
#: KEYS: the file, then its ancestors' sets (nearest first); ARGV: the entry in each set.
_REMOVE = """
local removed = redis.call('DEL', KEYS[1])
for i = 2, #KEYS do
  redis.call('SREM', KEYS[i], ARGV[i - 1])
  if redis.call('EXISTS', KEYS[i]) == 1 then break end
end
return removed
"""


def _clean(path: str) -> str:
    return path.strip("/")


def _ancestors(path: str) -> list[tuple[str, str]]:
    """(set key, entry) for each directory above ``path``, nearest first."""
    found = []
    child = path
    while child:
        parent = posixpath.dirname(child)
        entry = posixpath.basename(child) + ("/" if child != path else "")
        found.append((f"{parent}/" if parent else "/", entry))
        child = parent
    return found


def register_protocols() -> None:
    """Make fsspec open ``redis://`` and ``rediss://`` URLs with :class:`RedisFileSystem` (unless taken).

    Examples
    --------
    >>> register_protocols()
    >>> import fsspec
    >>> fsspec.get_filesystem_class("redis").__name__
    'RedisFileSystem'
    """
    import fsspec
    from fsspec.registry import known_implementations, registry

    for protocol in RedisFileSystem.protocol:
        if protocol not in registry and protocol not in known_implementations:
            fsspec.register_implementation(protocol, f"{__name__}.RedisFileSystem")


class RedisFileSystem(AbstractFileSystem):
    """Files as Redis string values, directories as Redis sets of their entries.

    Parameters
    ----------
    host : str
        Server host (from the URL).
    port : int
        Server port (from the URL; 6379 by default).
    db : int
        Database number (the URL's first path segment).
    username, password : str, optional
        Credentials (from the URL or ``storage_options``). Never shown.
    ssl : bool
        TLS (``rediss://`` URLs).
    max_value_bytes : int
        Largest file accepted (at most 512 MiB, Redis's limit); bigger writes raise
        :class:`~memories_geo.errors.QuotaExceededError` before anything is sent.
    client_kwargs : mapping, optional
        More keywords for ``redis.Redis`` (timeouts, ``ssl_ca_certs``...).

    Examples
    --------
    >>> import fsspec
    >>> fs, root = fsspec.core.url_to_fs("redis://127.0.0.1:6379/0/hot")  # doctest: +SKIP
    >>> fs.pipe_file(f"{root}/a/b.txt", b"hello")  # doctest: +SKIP
    >>> fs.ls(root, detail=False)  # doctest: +SKIP
    ['hot/a']
    """

    protocol: ClassVar[tuple[str, ...]] = ("redis", "rediss")
    root_marker = ""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        max_value_bytes: int = MAX_VALUE_BYTES,
        client_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("asynchronous", None)
        super().__init__(**kwargs)
        if not isinstance(max_value_bytes, int) or not 0 < max_value_bytes <= MAX_VALUE_BYTES:
            raise ConfigError(
                f"max_value_bytes must be a positive integer up to {MAX_VALUE_BYTES} (512 MiB, "
                f"Redis's largest value), got {max_value_bytes!r}"
            )
        self.host, self.port, self.db, self.ssl = host, int(port), int(db), bool(ssl)
        self.max_value_bytes = max_value_bytes
        self._username, self._password = username, password
        self._client_kwargs = dict(client_kwargs or {})
        self._client: Any = None
        self._remove: Any = None

    # -- URLs --------------------------------------------------------------------------

    @property
    def server(self) -> str:
        """``redis://host:port/db`` of the server (no credentials)."""
        return f"{'rediss' if self.ssl else 'redis'}://{self.host}:{self.port}/{self.db}"

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]  # type: ignore[return-value]
        text = str(path)
        if text.startswith(("redis://", "rediss://")):
            segments = urlsplit(text).path.lstrip("/").split("/", 1)
            text = segments[1] if len(segments) > 1 else ""
        return _clean(text)

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        parts = urlsplit(path)
        db = parts.path.lstrip("/").split("/", 1)[0]
        if not db.isdigit():
            raise ConfigError(
                f"{redact_url(path)!r}: a Redis URL names its database number first, "
                "redis://host:port/DB/prefix, e.g. redis://127.0.0.1:6379/0/hot"
            )
        found: dict[str, Any] = {"host": parts.hostname or "127.0.0.1", "port": parts.port or 6379,
                                 "db": int(db)}
        if parts.scheme == "rediss":
            found["ssl"] = True
        if parts.username:
            found["username"] = unquote(parts.username)
        if parts.password:
            found["password"] = unquote(parts.password)
        return found

    @property
    def fsid(self) -> str:
        """Identifies the server and database (two instances with the same one share files)."""
        return f"redis_{self.host}_{self.port}_{self.db}"

    def unstrip_protocol(self, name: str) -> str:
        """``redis://host:port/db/<name>`` (no credentials)."""
        return f"{self.server}/{self._strip_protocol(name)}"

    def __repr__(self) -> str:
        return f"RedisFileSystem({self.server!r})"

    # -- the connection ----------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The ``redis.Redis`` client (connected on first use, again after unpickling)."""
        if self._client is None:
            import redis

            options = {"socket_connect_timeout": 5, "socket_timeout": 60, **self._client_kwargs}
            client = redis.Redis(host=self.host, port=self.port, db=self.db, username=self._username,
                                 password=self._password, ssl=self.ssl, **options)
            with self._errors():
                self._warn_if_evicting(client)
                self._remove = client.register_script(_REMOVE)
            self._client = client
        return self._client

    def _warn_if_evicting(self, client: Any) -> None:
        import redis

        try:
            found = client.config_get("maxmemory-policy")
        except redis.ResponseError:  # CONFIG is disabled on some managed servers
            return
        value = found.get("maxmemory-policy", found.get(b"maxmemory-policy", b""))
        policy = value.decode() if isinstance(value, bytes) else str(value)
        if policy.startswith("allkeys"):
            logger.warning(
                "%s evicts keys (maxmemory-policy %s): files of a tier stored there can be lost; "
                "run the tier's server with maxmemory-policy noeviction", self.server, policy,
            )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn redis-py's connection errors into the builtin ``ConnectionError``, credentials removed."""
        import redis

        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ConnectionError(
                f"cannot reach Redis at {self.server} ({type(exc).__name__}: {redact_text(str(exc))})"
            ) from None
        except redis.ResponseError as exc:
            # A pipeline's error quotes its command, values included: keep the server's reason only.
            message = redact_text(str(exc).rsplit("caused error: ", 1)[-1])[:300]
            if isinstance(exc, redis.exceptions.OutOfMemoryError) or "maxmemory" in message:
                raise QuotaExceededError(
                    f"Redis at {self.server} is out of memory ({message}); give the tier a max_size "
                    "below the server's maxmemory, or delete old versions"
                ) from None
            raise OSError(f"Redis at {self.server}: {message}") from None

    # -- reading -----------------------------------------------------------------------

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """Name, size and type (``file`` or ``directory``) of ``path``."""
        path = self._strip_protocol(path)
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.exists(path)
            pipe.strlen(path)
            pipe.exists(f"{path}/" if path else "/")
            is_file, size, is_dir = pipe.execute()
        if is_file and path:
            return {"name": path, "size": int(size), "type": "file"}
        if is_dir or not path:
            return {"name": path, "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    def exists(self, path: str, **kwargs: Any) -> bool:
        """Whether ``path`` is a file or a directory (an unreachable server raises, never ``False``)."""
        try:
            self.info(path)
        except FileNotFoundError:
            return False
        return True

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """Entries directly under ``path`` (read from its set, never by scanning keys)."""
        path = self._strip_protocol(path)
        with self._errors():
            entries = sorted(e.decode() for e in self.client.smembers(f"{path}/" if path else "/"))
        if not entries:
            found = self.info(path)
            if found["type"] == "file":
                return [found] if detail else [path]
            if path:
                raise FileNotFoundError(path)
            return []
        names = [posixpath.join(path, e.rstrip("/")) if path else e.rstrip("/") for e in entries]
        files = [n for n, e in zip(names, entries, strict=True) if not e.endswith("/")]
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            for name in files:
                pipe.exists(name)
                pipe.strlen(name)
            replies = pipe.execute()
        pairs = zip(files, replies[::2], replies[1::2], strict=True)
        sizes = {n: int(size) for n, present, size in pairs if present}
        listed = [
            {"name": n, "size": 0, "type": "directory"} if e.endswith("/")
            else {"name": n, "size": sizes[n], "type": "file"}
            for n, e in zip(names, entries, strict=True) if e.endswith("/") or n in sizes
        ]
        return listed if detail else [i["name"] for i in listed]

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """The bytes of ``path`` (``start``/``end`` as in Python slices, read with ``GETRANGE``)."""
        path = self._strip_protocol(path)
        if end is not None and (end == 0 or (start is not None and 0 <= end <= start)):
            return self._check_file(path, b"")
        with self._errors():
            pipe = self.client.pipeline(transaction=True)
            pipe.exists(path)
            if start is None and end is None:
                pipe.get(path)
            else:
                pipe.getrange(path, start or 0, -1 if end is None else end - 1)
            present, data = pipe.execute()
        if not present or not path:
            raise FileNotFoundError(path)
        return bytes(data)

    def _check_file(self, path: str, value: bytes) -> bytes:
        if self.info(path)["type"] != "file":
            raise FileNotFoundError(path)
        return value

    # -- writing -----------------------------------------------------------------------

    def _check_size(self, path: str, size: int) -> None:
        if size > self.max_value_bytes:
            raise QuotaExceededError(
                f"{self.unstrip_protocol(path)}: {size:,} bytes is more than a Redis tier holds in one "
                f"file ({self.max_value_bytes:,} bytes; Redis values stop at 512 MiB); store it on a file "
                "or object-store tier, or in a chunked format (Zarr) whose chunks are smaller"
            )

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Store ``value`` at ``path`` and index it in its directories, in one transaction."""
        path = self._strip_protocol(path)
        if not path:
            raise IsADirectoryError("the root of a Redis filesystem is a directory")
        data = bytes(value)
        self._check_size(path, len(data))
        with self._errors():
            pipe = self.client.pipeline(transaction=True)
            pipe.set(path, data, nx=mode == "create")
            for key, entry in _ancestors(path):
                pipe.sadd(key, entry)
            stored = pipe.execute()[0]
        if not stored:
            raise FileExistsError(path)

    def put_file(self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite",
                 **kwargs: Any) -> None:
        """Upload the local file ``lpath`` as one value (its size checked before it is read)."""
        if os.path.isdir(lpath):
            return
        rpath = self._strip_protocol(rpath)
        self._check_size(rpath, os.path.getsize(lpath))
        with open(lpath, "rb") as local:
            self.pipe_file(rpath, local.read(), mode=mode)

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None,
              autocommit: bool = True, cache_options: dict[str, Any] | None = None,
              **kwargs: Any) -> RedisFile:
        if mode not in ("rb", "wb", "xb"):
            raise ValueError(f"mode {mode!r} is not supported on Redis; use 'rb', 'wb' or 'xb'")
        return RedisFile(self, self._strip_protocol(path), mode, block_size=block_size or "default",
                         autocommit=autocommit, cache_options=cache_options, **kwargs)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Nothing to do: directories exist while they hold files."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Nothing to do: directories exist while they hold files."""

    def rmdir(self, path: str) -> None:
        """Nothing to do: a directory goes with its last file."""

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy inside the server (``COPY``), indexing the copy in its directories."""
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        if self.info(path1)["type"] == "directory":
            return
        with self._errors():
            pipe = self.client.pipeline(transaction=True)
            pipe.copy(path1, path2, replace=True)
            for key, entry in _ancestors(path2):
                pipe.sadd(key, entry)
            copied = pipe.execute()[0]
        if not copied:
            raise FileNotFoundError(path1)

    def rm_file(self, path: str) -> None:
        """Delete the file at ``path`` (and every directory above it left empty)."""
        self._delete([self._strip_protocol(path)])

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Delete files (``recursive``: everything under directories too)."""
        expanded = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        found = [self._strip_protocol(p) for p in expanded]
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            for name in found:
                pipe.exists(name)
            files = [name for name, present in zip(found, pipe.execute(), strict=True) if present and name]
        self._delete(files)

    def _delete(self, paths: list[str]) -> None:
        client = self.client
        with self._errors():
            pipe = client.pipeline(transaction=False)
            for path in paths:
                above = _ancestors(path)
                self._remove(keys=[path, *(k for k, _ in above)], args=[e for _, e in above], client=pipe)
            pipe.execute()

    def invalidate_cache(self, path: str | None = None) -> None:
        """Nothing is cached: every listing reads the server."""

    def async_view(self) -> Any:
        """The same filesystem as an asynchronous one (calls run in threads), for zarr's ``FsspecStore``."""
        from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

        return AsyncFileSystemWrapper(self, asynchronous=True)


class RedisFile(AbstractBufferedFile):
    """A file on :class:`RedisFileSystem`: range reads, or bytes kept in memory and stored whole on close.

    A file written in a ``with`` block that raises is discarded: it is complete or absent.
    """

    fs: RedisFileSystem
    buffer: Any
    closed: bool

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start, end)

    def write(self, data: Any) -> int:
        """Buffer ``data``, refusing a file bigger than the filesystem's ``max_value_bytes``."""
        written: int = super().write(data)
        if self.buffer is not None:
            self.fs._check_size(self.path, self.buffer.tell())
        return written

    def flush(self, force: bool = False) -> None:
        """Keep everything in memory until the file is closed (a Redis value is set whole)."""
        if force:
            super().flush(force=True)

    def _initiate_upload(self) -> None:
        """Nothing to start: the value is set whole."""

    def _upload_chunk(self, final: bool = False) -> bool:
        if final and self.autocommit:
            self.commit()
        return not final or self.autocommit

    def commit(self) -> None:
        """Store the buffered bytes (at close, or when a transaction ends)."""
        value = self.buffer.getvalue() if self.buffer is not None else b""
        self.fs.pipe_file(self.path, value, mode="create" if "x" in self.mode else "overwrite")
        self.buffer = io.BytesIO()

    def discard(self) -> None:
        """Drop the buffered bytes without storing them."""
        self.buffer = io.BytesIO()

    def __exit__(self, exc_type: Any, *args: Any) -> None:
        if exc_type is not None and not self.closed:
            self.discard()
            self.closed = True
            return
        self.close()
