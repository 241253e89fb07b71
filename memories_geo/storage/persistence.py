"""The original persistence names: ``FileSystemStorage`` and ``CloudStorage``, awaitable as written.

Each is a collection (a :class:`~memories_geo.memory.Memory`, as :attr:`memory`) whose
``save``/``load`` are coroutines run in a worker thread, so ``await storage.save(key=...,
data=..., metadata=...)`` works in a notebook's running loop without blocking it. A
second save of a key makes a new version, as the original overwrote.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from memories_geo.config import StorageConfig
from memories_geo.errors import ConfigError
from memories_geo.memory import Memory
from memories_geo.storage.backends import AzureBlobStorage, GCSStorage, S3Storage
from memories_geo.types import Tier

__all__ = ["CloudStorage", "FileSystemStorage"]

_PROVIDERS = {
    "s3": "s3",
    "aws": "s3",
    "gcs": "gcs",
    "gs": "gcs",
    "google": "gcs",
    "azure": "azure",
    "az": "azure",
}


class _Collection:
    """``save``/``load`` coroutines over one :class:`Memory`."""

    memory: Memory

    @property
    def version_store(self) -> Any:
        """The collection's versions (so checkpoints, recovery and monitors accept this object)."""
        return self.memory.version_store

    async def save(
        self, key: str, data: Any, metadata: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        """Store ``data`` under ``key`` (a new version if it exists) with ``metadata``; returns the entry."""
        kwargs.setdefault("mode", "w")
        return await asyncio.to_thread(self.memory.save, data, key, attrs=metadata, **kwargs)

    async def load(self, key: str, **kwargs: Any) -> Any:
        """The current version of ``key`` (``version=``, ``bbox=``... as ``Memory.open`` takes)."""
        return await asyncio.to_thread(self.memory.open, key, **kwargs)

    async def delete(self, key: str) -> Any:
        """Delete ``key`` (every version not pinned by a checkpoint)."""
        return await asyncio.to_thread(self.memory.delete, key)


class FileSystemStorage(_Collection):
    """A collection whose four tiers are directories under ``root_path``.

    Parameters
    ----------
    root_path : str or path
        The home: ``hot``, ``warm``, ``cold``, ``glacier`` and the catalog under it.
    max_size : str or int, optional
        Quota of each tier (``"1TB"``): a save past it raises ``QuotaExceededError``.
    compression : bool or str
        ``True``: each tier's default level; ``False``: ``"fast"``; or a level for all tiers.

    Examples
    --------
    >>> storage = FileSystemStorage(root_path="/data/memories", max_size="1TB")  # doctest: +SKIP
    >>> await storage.save(key="results", data=ds, metadata={"timestamp": "2024-03-15"})  # doctest: +SKIP
    >>> ds = await storage.load("analysis_results")  # doctest: +SKIP
    """

    def __init__(
        self,
        root_path: str | os.PathLike[str],
        max_size: str | int | None = None,
        compression: bool | str = True,
    ) -> None:
        level: str | None = (
            None if compression is True else "fast" if compression is False else str(compression)
        )
        settings: dict[str, Any] = {}
        if max_size is not None:
            settings["max_size"] = max_size
        if level is not None:
            settings["compression"] = level
        data = {"home": os.fspath(root_path), "tiers": {t.value: dict(settings) for t in Tier}}
        self.root_path = os.fspath(root_path)
        self.memory = Memory(StorageConfig.from_dict(data))

    def __repr__(self) -> str:
        return f"FileSystemStorage(root_path={self.root_path!r})"


class CloudStorage(_Collection):
    """A collection whose tiers are folders of one bucket (S3, GCS or Azure), its catalog cached locally.

    Parameters
    ----------
    provider : {"s3", "aws", "gcs", "azure"}
    bucket : str
        Bucket (or Azure container).
    region : str, optional
    credentials : mapping, optional
        S3: ``access_key``/``secret_key`` (or the ``aws_*`` names); GCS: ``token``
        (key file path or JSON); Azure: ``connection_string`` or ``account_name`` and
        ``account_key``. Never shown.
    endpoint : str, optional
        Endpoint URL of an S3-compatible store or an emulator.
    prefix : str
        Folder of the collection in the bucket (``hot``, ``warm``... below it).
    catalog : str or path, optional
        Where the local catalog is kept (see ``StorageConfig.remote``).

    Examples
    --------
    >>> cloud = CloudStorage(provider="aws", bucket="earth-memories", region="us-west-2")  # doctest: +SKIP
    >>> await cloud.save_dataset(key="imagery_2024", data=ds, metadata={"source": "s2"})  # doctest: +SKIP
    """

    def __init__(
        self,
        provider: str,
        bucket: str,
        region: str | None = None,
        credentials: Mapping[str, Any] | None = None,
        *,
        endpoint: str | None = None,
        prefix: str = "",
        catalog: str | os.PathLike[str] | None = None,
    ) -> None:
        kind = _PROVIDERS.get(str(provider).lower())
        if kind is None:
            raise ConfigError(f"CloudStorage: unknown provider {provider!r}; accepted: {sorted(_PROVIDERS)}")
        creds = dict(credentials or {})
        backend: S3Storage | GCSStorage | AzureBlobStorage
        if kind == "s3":
            backend = S3Storage(
                bucket=bucket, region=region, endpoint=endpoint, prefix=prefix, credentials=creds
            )
        elif kind == "gcs":
            unknown = set(creds) - {"token", "project"}
            if unknown:
                raise ConfigError(
                    f"CloudStorage(provider='gcs'): unknown credentials {sorted(unknown)}; "
                    "accepted: ['project', 'token']"
                )
            backend = GCSStorage(
                bucket=bucket,
                project=creds.get("project"),
                credentials=creds.get("token"),
                endpoint=endpoint,
                prefix=prefix,
            )
        else:
            accepted = {"connection_string", "account_name", "account_key", "sas_token"}
            if set(creds) - accepted:
                raise ConfigError(
                    f"CloudStorage(provider='azure'): unknown credentials "
                    f"{sorted(set(creds) - accepted)}; accepted: {sorted(accepted)}"
                )
            backend = AzureBlobStorage(container=bucket, prefix=prefix, **creds)
        settings = backend.tier_settings()
        self.provider, self.bucket, self.backend = kind, bucket, backend
        self.memory = Memory(
            StorageConfig.remote(
                settings["url"],
                storage_options=settings.get("storage_options") or {},
                catalog=catalog,
            )
        )

    async def save_dataset(
        self, key: str, data: Any, metadata: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        """Store a (large) dataset under ``key``; as :meth:`save`."""
        return await self.save(key, data, metadata, **kwargs)

    async def load_dataset(self, key: str, **kwargs: Any) -> Any:
        """The current version of ``key`` (lazy where the format allows); as :meth:`load`."""
        return await self.load(key, **kwargs)

    def __repr__(self) -> str:
        return f"CloudStorage(provider={self.provider!r}, bucket={self.bucket!r})"
