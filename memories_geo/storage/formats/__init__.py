"""The original API's format storage classes: typed save options for one format each.

``COGStorage``, ``ZarrStorage``, ``GeoJSONStorage``, ``GeoParquetStorage``,
``ParquetStorage``, ``PostGISStorage``, ``TimescaleDBStorage`` and ``SpatiaLiteStorage`` take the options the
original memories-dev API names, check them when built (an
:class:`~memories_geo.errors.OptionError` names the accepted values and keywords), and
serve three ways:

- ``mem.save(obj, key, storage=COGStorage(...))`` or ``obj.memories.save(key, storage=...)``;
- as a tier's default (``raster_backend=COGStorage(...)`` in the original
  ``StorageConfig``, or ``[tiers.hot.format_options.cog]`` in ``memories.toml``);
- standalone, ``COGStorage(base_path=...).save(data, key=..., metadata=...)``,
  ``.load(key)``, ``.list()``, ``.delete(key)`` on a private collection, with awaitable
  twins ``asave``/``aload``/``alist``/``adelete`` (and ``await storage.save(...)``
  working from a running event loop, as the original writes it).

Modules: :mod:`~memories_geo.storage.formats.base` (shared behaviour),
:mod:`~memories_geo.storage.formats.raster`, :mod:`~memories_geo.storage.formats.vector`
and :mod:`~memories_geo.storage.formats.timeseries`.
"""

from __future__ import annotations

from memories_geo.storage.formats.base import FormatStorage
from memories_geo.storage.formats.raster import COGStorage, ZarrStorage
from memories_geo.storage.formats.spatialite import SpatiaLiteStorage
from memories_geo.storage.formats.timeseries import ParquetStorage, TimescaleDBStorage
from memories_geo.storage.formats.vector import GeoJSONStorage, GeoParquetStorage, PostGISStorage

__all__ = [
    "COGStorage",
    "FormatStorage",
    "GeoJSONStorage",
    "GeoParquetStorage",
    "ParquetStorage",
    "PostGISStorage",
    "SpatiaLiteStorage",
    "TimescaleDBStorage",
    "ZarrStorage",
]
