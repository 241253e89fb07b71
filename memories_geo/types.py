"""Small enumerations shared by every layer."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

__all__ = ["CompressionLevel", "Kind", "Mode", "Tier"]


class Tier(StrEnum):
    """Storage tiers, from fastest to cheapest."""

    HOT = "hot"
    WARM = "warm"
    COLD = "cold"
    GLACIER = "glacier"


class Kind(StrEnum):
    """Kinds of data, each with its own default format."""

    RASTER = "raster"
    VECTOR = "vector"
    TIMESERIES = "timeseries"
    ARRAY = "array"


class CompressionLevel(StrEnum):
    """Compression by intent; each format maps a level to its own codec settings."""

    FAST = "fast"
    MEDIUM = "medium"
    HIGH = "high"
    MAXIMUM = "maximum"


#: Write modes, as in :meth:`xarray.Dataset.to_zarr`.
Mode = Literal["w-", "w", "a"]
