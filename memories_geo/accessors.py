"""The ``.memories`` accessors: thin, stateless forwards to :mod:`memories_geo.api`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd
import pandas as pd
import xarray as xr

from memories_geo import api
from memories_geo.entry import Entry
from memories_geo.provenance import source_of
from memories_geo.types import CompressionLevel, Mode

__all__ = ["MemoriesAccessor"]


class MemoriesAccessor:
    """``obj.memories``: save and inspect an object in the default collection.

    Examples
    --------
    >>> import memories_geo as mg  # registers the accessors
    >>> entry = ds.memories.save("era5/t2m", tier="hot")  # doctest: +SKIP
    >>> gdf.memories.save("fields", tier="warm")  # doctest: +SKIP
    """

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def save(
        self,
        key: str | None = None,
        *,
        tier: str | None = None,
        format: str | None = None,
        mode: Mode | None = None,
        crs: Any = None,
        encoding: Mapping[str, Any] | None = None,
        append_dim: str | None = None,
        compression: str | CompressionLevel | None = None,
        attrs: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        compute: bool = True,
        **format_options: Any,
    ) -> Any:
        """Store this object in the default collection; see :meth:`memories_geo.Memory.save`.

        Returns
        -------
        Entry or dask.delayed.Delayed
            The new version's entry (a delayed save with ``compute=False``).

        Examples
        --------
        >>> entry = ds.memories.save("era5/t2m", tier="hot")  # doctest: +SKIP
        """
        return api.save(
            self._obj, key, tier=tier, format=format, mode=mode, crs=crs, encoding=encoding,
            append_dim=append_dim, compression=compression, attrs=attrs, tags=tags, compute=compute,
            **format_options,
        )

    @property
    def key(self) -> str | None:
        """Key this object was opened from, if any."""
        source = source_of(self._obj)
        return None if source is None else str(source["key"])

    @property
    def version(self) -> int | None:
        """Version this object was opened from, if any."""
        source = source_of(self._obj)
        return None if source is None else int(source["version"])

    def info(self) -> Entry:
        """Catalog entry of the key this object was opened from.

        Raises
        ------
        KeyNotFoundError
            If the object was not opened from a key.
        """
        from memories_geo.errors import KeyNotFoundError

        if self.key is None:
            raise KeyNotFoundError("this object was not opened from memories_geo; save it first")
        return api.info(self.key)


class _GeoPandasAccessor(MemoriesAccessor):
    def __init__(self, obj: Any) -> None:
        if not isinstance(obj, gpd.GeoDataFrame | gpd.GeoSeries):
            if isinstance(obj, pd.DataFrame):
                raise AttributeError(
                    "'.memories' needs a GeoDataFrame; this DataFrame has no geometry. Use "
                    "geopandas.GeoDataFrame(df, geometry=geopandas.points_from_xy(df.lon, df.lat), "
                    "crs='EPSG:4326')."
                )
            raise AttributeError("'.memories' needs a GeoSeries; this Series holds no geometries.")
        super().__init__(obj)


xr.register_dataset_accessor("memories")(MemoriesAccessor)
xr.register_dataarray_accessor("memories")(MemoriesAccessor)
xr.register_datatree_accessor("memories")(MemoriesAccessor)
pd.api.extensions.register_dataframe_accessor("memories")(_GeoPandasAccessor)
pd.api.extensions.register_series_accessor("memories")(_GeoPandasAccessor)
