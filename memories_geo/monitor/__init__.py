"""Monitoring a collection: storage used per tier, and plots of usage and footprints.

Plots draw with matplotlib, imported only when a plot is drawn
(``pip install 'memories-geo[plot]'``).
"""

from memories_geo.monitor.plot import MemoryPlots, plot_footprints, plot_usage
from memories_geo.monitor.usage import TierUsage, tier_usage, usage_html

__all__ = ["MemoryPlots", "TierUsage", "plot_footprints", "plot_usage", "tier_usage", "usage_html"]
