"""memories_geo: geospatial-native storage for xarray and geopandas.

Importing the package registers the ``.memories`` accessors on xarray and
geopandas objects. Heavy backends (zarr, rasterio, psycopg, cloud SDKs) are
imported only when used.
"""

from memories_geo import accessors as _accessors  # noqa: F401  (registers accessors)
from memories_geo import aio, events
from memories_geo.api import (
    audit,
    default,
    delete,
    info,
    ls,
    open,
    recover,
    request_restore,
    restore_status,
    save,
    search,
    set_default,
    verify,
    versions,
)
from memories_geo.backends.registry import register_backend
from memories_geo.checkpoints import (
    AutoPersistence,
    CheckpointDiff,
    CheckpointInfo,
    CheckpointList,
    CheckpointManager,
    MemoryPersistence,
    PersistenceMetrics,
    PersistenceMonitor,
    RecoveryManager,
)
from memories_geo.config import StorageConfig, TierConfig
from memories_geo.entry import Entry
from memories_geo.errors import (
    AlertConditionError,
    CatalogCorruptError,
    CheckpointNotFoundError,
    ChecksumMismatchError,
    ConfigError,
    DuplicateTimesError,
    FormatError,
    InvalidKeyError,
    KeyExistsError,
    KeyNotFoundError,
    MemoriesError,
    MigrationError,
    OptionError,
    QuotaExceededError,
    ReadOnlyError,
    RestoreRequiredError,
    RetentionError,
    TierUnavailableError,
    UnsupportedObjectError,
)
from memories_geo.formats.registry import available_formats, register_format
from memories_geo.lifecycle import LifecycleRunner, MigrationJob, MigrationPlan, MigrationStatus
from memories_geo.memory import Memory
from memories_geo.monitor import StorageMonitor, TierUsage
from memories_geo.monitor.optimizer import PerformanceOptimizer
from memories_geo.options import get_options, set_options
from memories_geo.types import CompressionLevel, Kind, Tier

__version__ = "0.1.0"

__all__ = [
    "AlertConditionError",
    "AutoPersistence",
    "CatalogCorruptError",
    "CheckpointDiff",
    "CheckpointInfo",
    "CheckpointList",
    "CheckpointManager",
    "CheckpointNotFoundError",
    "ChecksumMismatchError",
    "CompressionLevel",
    "ConfigError",
    "DuplicateTimesError",
    "Entry",
    "FormatError",
    "InvalidKeyError",
    "KeyExistsError",
    "KeyNotFoundError",
    "Kind",
    "LifecycleRunner",
    "MemoriesError",
    "Memory",
    "MemoryPersistence",
    "MigrationError",
    "MigrationJob",
    "MigrationPlan",
    "MigrationStatus",
    "OptionError",
    "PerformanceOptimizer",
    "PersistenceMetrics",
    "PersistenceMonitor",
    "QuotaExceededError",
    "ReadOnlyError",
    "RecoveryManager",
    "RestoreRequiredError",
    "RetentionError",
    "StorageConfig",
    "StorageMonitor",
    "Tier",
    "TierConfig",
    "TierUnavailableError",
    "TierUsage",
    "UnsupportedObjectError",
    "__version__",
    "aio",
    "audit",
    "available_formats",
    "default",
    "delete",
    "events",
    "get_options",
    "info",
    "ls",
    "open",
    "recover",
    "register_backend",
    "register_format",
    "request_restore",
    "restore_status",
    "save",
    "search",
    "set_default",
    "set_options",
    "verify",
    "versions",
]
