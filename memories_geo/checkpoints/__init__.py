"""Checkpoints: named, immutable, verifiable snapshots of which version each key points to.

A checkpoint pins ``key -> version`` for every key (versions it pins are never
garbage-collected) and writes a JSON manifest (catalog rows with checksum manifests) to
the primary store under ``@checkpoints/``. With a backup store, the pinned data is
copied there (incrementally, verified) before the manifest, so a checkpoint present in
the backup is complete there.
"""

from memories_geo.checkpoints.info import CheckpointDiff, CheckpointInfo, CheckpointList
from memories_geo.checkpoints.manager import CHECKPOINT_DIR, CheckpointManager
from memories_geo.checkpoints.persistence import (
    AutoPersistence,
    MemoryPersistence,
    PersistenceMetrics,
    PersistenceMonitor,
    parse_interval,
)
from memories_geo.checkpoints.recovery import RecoveryManager

__all__ = [
    "CHECKPOINT_DIR",
    "AutoPersistence",
    "CheckpointDiff",
    "CheckpointInfo",
    "CheckpointList",
    "CheckpointManager",
    "MemoryPersistence",
    "PersistenceMetrics",
    "PersistenceMonitor",
    "RecoveryManager",
    "parse_interval",
]
