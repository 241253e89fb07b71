"""Monitoring a collection: operation records, usage per tier, metrics, alerts, advice, plots.

- :mod:`~memories_geo.monitor.records`: the operation log (records batched into the catalog);
- :mod:`~memories_geo.monitor.usage`: usage per tier (:class:`TierUsage`);
- :mod:`~memories_geo.monitor.metrics`: latency, throughput, request and error rates;
- :mod:`~memories_geo.monitor.export`: Prometheus text and OpenTelemetry;
- :mod:`~memories_geo.monitor.alerts`: conditions, channels, cooldowns, history;
- :mod:`~memories_geo.monitor.optimizer`: recommendations applied as new versions;
- :mod:`~memories_geo.monitor.storage_monitor`: :class:`StorageMonitor`, all of them for one collection.

Plots draw with matplotlib, imported only when a plot is drawn
(``pip install 'memories-geo[plot]'``).
"""

from memories_geo.monitor.metrics import PerformanceMetrics, performance_metrics
from memories_geo.monitor.plot import MemoryPlots, plot_footprints, plot_latency, plot_throughput, plot_usage
from memories_geo.monitor.records import OperationLog, records_frame
from memories_geo.monitor.storage_monitor import StorageMonitor, storage_usage
from memories_geo.monitor.usage import TierUsage, tier_usage, usage_html

__all__ = [
    "MemoryPlots", "OperationLog", "PerformanceMetrics", "StorageMonitor", "TierUsage",
    "performance_metrics", "plot_footprints", "plot_latency", "plot_throughput", "plot_usage",
    "records_frame", "storage_usage", "tier_usage", "usage_html",
]
