"""Remember which key an opened object came from, in ``encoding`` / ``attrs`` (never stored)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SOURCE_KEY", "attach_source", "source_of", "without_source"]

#: Name of the entry in ``encoding`` (xarray) or ``attrs`` (pandas) holding the source.
SOURCE_KEY = "memories_geo_source"


def _holder(obj: Any) -> dict[str, Any] | None:
    import xarray as xr

    if isinstance(obj, xr.Dataset | xr.DataArray):
        return obj.encoding
    if isinstance(obj, xr.DataTree):
        return obj.encoding
    attrs = getattr(obj, "attrs", None)
    return attrs if isinstance(attrs, dict) else None


def source_of(obj: Any) -> Mapping[str, Any] | None:
    """``{"key": ..., "version": ...}`` if ``obj`` was opened from a key, else ``None``."""
    holder = _holder(obj)
    value = holder.get(SOURCE_KEY) if holder is not None else None
    return value if isinstance(value, Mapping) and "key" in value else None


def attach_source(obj: Any, source: Mapping[str, Any]) -> Any:
    """Record ``source`` on ``obj`` (in place) and return it."""
    holder = _holder(obj)
    if holder is not None:
        holder[SOURCE_KEY] = dict(source)
    return obj


def without_source(obj: Any) -> Any:
    """``obj`` itself if it carries no source, else a shallow copy without it.

    The data is not copied; only the small ``encoding``/``attrs`` dictionaries are.
    """
    holder = _holder(obj)
    if holder is None or SOURCE_KEY not in holder:
        return obj
    import xarray as xr

    if isinstance(obj, xr.Dataset | xr.DataArray | xr.DataTree):
        clone = obj.copy(deep=False)
        clone.encoding = {k: v for k, v in obj.encoding.items() if k != SOURCE_KEY}
        return clone
    clone = obj.copy(deep=False)
    clone.attrs = {k: v for k, v in obj.attrs.items() if k != SOURCE_KEY}
    return clone
