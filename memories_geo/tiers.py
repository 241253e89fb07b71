"""The tier router: tier name -> backend, compression and default format per kind."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from memories_geo.backends.base import Backend, make_backend
from memories_geo.errors import TierUnavailableError
from memories_geo.formats.registry import available_formats
from memories_geo.types import CompressionLevel, Kind

if TYPE_CHECKING:
    from memories_geo.config import StorageConfig, TierConfig

__all__ = ["TierRouter", "default_format"]

#: Built-in default format per kind on file tiers, then on database tiers.
_FILE_DEFAULTS = {Kind.RASTER: "zarr", Kind.VECTOR: "geoparquet", Kind.TIMESERIES: "parquet"}
_DATABASE_DEFAULTS = {Kind.VECTOR: "postgis", Kind.TIMESERIES: "timescaledb"}


def _is_single_image(obj: Any) -> bool:
    import xarray as xr

    return isinstance(obj, xr.DataArray) and obj.ndim in (2, 3) and (
        obj.ndim == 2 or obj.dims[0] == "band"
    )


def default_format(kind: Kind, obj: Any, *, database: bool) -> str:
    """Built-in format choice: see the "Data kinds and default formats" table in the design."""
    if database:
        return _DATABASE_DEFAULTS.get(kind, "")
    if kind is Kind.RASTER and _is_single_image(obj) and "cog" in available_formats():
        return "cog"
    return _FILE_DEFAULTS[kind]


class TierRouter:
    """Maps tier names to backends (created on first use) and picks formats."""

    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        self._backends: dict[str, Backend] = {}

    @cached_property
    def names(self) -> list[str]:
        """Configured tier names."""
        return list(self.config.tiers)

    def tier_config(self, tier: str) -> TierConfig:
        """Configuration of ``tier``.

        Raises
        ------
        TierUnavailableError
            If the tier is not configured (the message lists the ones that are).
        """
        try:
            return self.config.tiers[str(tier)]
        except KeyError:
            raise TierUnavailableError(
                f"unknown tier {tier!r}; configured tiers: {self.names}"
            ) from None

    def backend(self, tier: str) -> Backend:
        """Backend of ``tier`` (one instance per router)."""
        cfg = self.tier_config(tier)
        if tier not in self._backends:
            self._backends[tier] = make_backend(cfg.url, cfg.storage_options)
        return self._backends[tier]

    def compression(self, tier: str) -> CompressionLevel:
        """Compression level configured for ``tier``."""
        return self.tier_config(tier).compression

    def format_for(self, tier: str, kind: Kind, obj: Any) -> str:
        """Format to use for ``obj`` of ``kind`` on ``tier`` when the caller gives none."""
        configured = self.tier_config(tier).formats.get(kind.value)
        if configured:
            return configured
        name = default_format(kind, obj, database=self.backend(tier).is_database)
        if not name:
            raise TierUnavailableError(
                f"tier {tier!r} is a database tier and has no default format for {kind.value} "
                "data; save it on a file tier or pass format=."
            )
        return name
