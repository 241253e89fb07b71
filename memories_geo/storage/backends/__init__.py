"""The original API's backend objects: where one tier stores, as ``tier_settings()``.

Each object is a validated, frozen description of one tier's store; its
:meth:`tier_settings` are exactly the ``[tiers.NAME]`` settings of ``memories.toml`` it
stands for, so ``StorageConfig(tier="warm", primary_backend=S3Storage(...))`` is the same
configuration as the TOML. Strings may hold ``${VAR}`` references (expanded when the
configuration is built); credentials never appear in a repr.
"""

from memories_geo.storage.backends.cloud import AzureBlobStorage, GCSStorage, S3Storage
from memories_geo.storage.backends.databases import PostgreSQLStorage, SQLiteStorage
from memories_geo.storage.backends.files import LocalFileStorage, NetworkFileStorage

__all__ = [
    "AzureBlobStorage",
    "GCSStorage",
    "LocalFileStorage",
    "NetworkFileStorage",
    "PostgreSQLStorage",
    "S3Storage",
    "SQLiteStorage",
]
