"""Tier quotas (``max_size``): refuse a save that would take a tier past its quota.

Checked twice: before anything is written, with the object's in-memory size as the
estimate of what it adds, and after the write, with the bytes actually stored, before
the commit (a refused version is abandoned: nothing is kept).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memories_geo.display import human_size
from memories_geo.errors import QuotaExceededError

if TYPE_CHECKING:
    from memories_geo.catalog import Catalog
    from memories_geo.config import StorageConfig

__all__ = ["check_quota", "estimated_size"]


def estimated_size(obj: Any) -> int:
    """Bytes ``obj`` takes in memory (dask arrays by their shape; 0 for a dask frame or if unknown).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> estimated_size(xr.Dataset({"a": ("x", np.zeros(10))}))
    80
    """
    try:
        nbytes = getattr(obj, "nbytes", None)
    except NotImplementedError:
        return 0
    if isinstance(nbytes, int | float) and not hasattr(obj, "memory_usage"):
        return int(nbytes)
    memory_usage = getattr(obj, "memory_usage", None)
    if callable(memory_usage):
        try:
            usage = memory_usage(deep=False, index=True)
        except TypeError:
            return 0
        total = usage.sum() if hasattr(usage, "sum") else usage
        return 0 if hasattr(total, "compute") else int(total)
    return 0


def check_quota(config: StorageConfig, catalog: Catalog, tier: str, adding: int, *, what: str) -> None:
    """Raise :class:`QuotaExceededError` if ``adding`` bytes would take ``tier`` past its ``max_size``.

    Parameters
    ----------
    config, catalog
        The collection's configuration (quotas) and catalog (bytes stored per tier).
    tier : str
        Tier name.
    adding : int
        Bytes the operation adds (estimated before a write, exact after it).
    what : str
        The operation, for the message (``"saving 'era5/t2m'"``).
    """
    quota = config.tiers[tier].max_size if tier in config.tiers else None
    if quota is None:
        return
    used = catalog.tier_bytes(tier)
    if used + adding > quota:
        raise QuotaExceededError(
            f"{what} refused: tier {tier!r} holds {human_size(used)} of its max_size "
            f"{human_size(quota)} ({used:,} of {quota:,} bytes) and this adds {human_size(adding)}; "
            "nothing was written or kept. Delete old versions (mem.delete(key, version=...)), move keys "
            "to another tier (mem.execute_migration / memories-geo migrate), or raise the tier's max_size"
        )
