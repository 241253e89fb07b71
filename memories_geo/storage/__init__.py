"""The original memories-dev API's storage classes, each mapped onto memories_geo.

- format storage classes (typed save options of one format, usable as ``storage=``, as
  a tier's default, or standalone): :class:`COGStorage`, :class:`ZarrStorage`,
  :class:`GeoJSONStorage`, :class:`GeoParquetStorage`, :class:`ParquetStorage`,
  :class:`PostGISStorage`, :class:`TimescaleDBStorage`, :class:`SpatiaLiteStorage`;
- backend objects (one tier's storage, for ``StorageConfig(primary_backend=...)``):
  :class:`LocalFileStorage`, :class:`NetworkFileStorage`, :class:`S3Storage`,
  :class:`GCSStorage`, :class:`AzureBlobStorage`, :class:`PostgreSQLStorage`,
  :class:`SQLiteStorage`; and :class:`RedisStorage`, a shared cache and index;
- persistence classes: :class:`FileSystemStorage`, :class:`CloudStorage`,
  :class:`DatabaseStorage`.

The page "Coming from the memories-dev API" maps every original name.
"""

from memories_geo.storage.backends import (
    AzureBlobStorage,
    GCSStorage,
    LocalFileStorage,
    NetworkFileStorage,
    PostgreSQLStorage,
    S3Storage,
    SQLiteStorage,
)
from memories_geo.storage.database import DatabaseStorage
from memories_geo.storage.formats import (
    COGStorage,
    FormatStorage,
    GeoJSONStorage,
    GeoParquetStorage,
    ParquetStorage,
    PostGISStorage,
    SpatiaLiteStorage,
    TimescaleDBStorage,
    ZarrStorage,
)
from memories_geo.storage.persistence import CloudStorage, FileSystemStorage
from memories_geo.storage.redis import RedisStorage

__all__ = [
    "AzureBlobStorage",
    "COGStorage",
    "CloudStorage",
    "DatabaseStorage",
    "FileSystemStorage",
    "FormatStorage",
    "GCSStorage",
    "GeoJSONStorage",
    "GeoParquetStorage",
    "LocalFileStorage",
    "NetworkFileStorage",
    "ParquetStorage",
    "PostGISStorage",
    "PostgreSQLStorage",
    "RedisStorage",
    "S3Storage",
    "SQLiteStorage",
    "SpatiaLiteStorage",
    "TimescaleDBStorage",
    "ZarrStorage",
]
