"""The performance optimizer: advice from the operation records and the stored layout.

:class:`PerformanceOptimizer` reads a collection's ``open`` and ``read`` records and
each key's stored layout (Zarr chunks, COG overviews, GeoParquet row order, Parquet
partitions, tiers), recommends the changes those figures support, and applies one as a
new version (or a tier move), replaying the recorded queries to measure the gain.
"""

from memories_geo.monitor.optimizer.apply import ACCEPTED_PARAMETERS
from memories_geo.monitor.optimizer.model import (
    COMPLEXITIES,
    DETAIL_LEVELS,
    KINDS,
    AccessAnalysis,
    Improvement,
    KeyAccess,
    OptimizationResult,
    QueryPattern,
    Recommendation,
)
from memories_geo.monitor.optimizer.optimizer import OptimizedMemory, PerformanceOptimizer

__all__ = [
    "ACCEPTED_PARAMETERS", "COMPLEXITIES", "DETAIL_LEVELS", "KINDS", "AccessAnalysis", "Improvement",
    "KeyAccess", "OptimizationResult", "OptimizedMemory", "PerformanceOptimizer", "QueryPattern",
    "Recommendation",
]
