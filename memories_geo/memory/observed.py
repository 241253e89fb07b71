"""What a collection shows of itself: its monitor, plots, Jupyter repr, pickling, and STAC."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

from memories_geo.config import redact_url
from memories_geo.monitor.records import OperationLog

if TYPE_CHECKING:
    from memories_geo.catalog import Catalog
    from memories_geo.config import StorageConfig
    from memories_geo.memory import Memory
    from memories_geo.monitor.plot import MemoryPlots
    from memories_geo.monitor.storage_monitor import StorageMonitor
    from memories_geo.resolve import TierRouter
    from memories_geo.versions import VersionStore

__all__ = ["ObservedMixin"]


class ObservedMixin:
    """Monitoring, display and STAC methods of :class:`~memories_geo.Memory`."""

    config: StorageConfig
    version_store: VersionStore
    operation_log: OperationLog
    _monitor: StorageMonitor | None

    @property
    def catalog(self) -> Catalog:  # noqa: D102
        raise NotImplementedError

    @property
    def tiers(self) -> TierRouter:  # noqa: D102
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its operation log and monitor (a dask worker records nothing)."""
        state = dict(self.__dict__)
        state.pop("operation_log", None)
        state["_monitor"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.operation_log = OperationLog(self.version_store.catalog, self.version_store.meter, persist=False)

    @property
    def monitor(self) -> StorageMonitor:
        """Usage per tier, performance metrics from the operation records, and alerts.

        Examples
        --------
        >>> mem.monitor.get_storage_usage()["hot"].used_bytes  # doctest: +SKIP
        >>> mem.monitor.get_performance_metrics("24 hours").read_latency  # doctest: +SKIP
        """
        if self._monitor is None:
            from memories_geo.monitor.storage_monitor import StorageMonitor

            self._monitor = StorageMonitor(self)
        return self._monitor

    def _repr_html_(self) -> str:
        from memories_geo.monitor.storage_monitor import storage_usage
        from memories_geo.monitor.usage import usage_html

        current = self.catalog.current_entries()
        usage = list(storage_usage(self.version_store, current).values())
        return usage_html(
            usage,
            urls={u.tier: redact_url(self.tiers.tier_config(u.tier).url) for u in usage
                  if u.tier in self.tiers.names},
            location=str(self.catalog.path),
            default_tier=self.config.default_tier,
            boxes=[(e.bbox, e.tier, f"{e.key} v{e.version}") for e in current if e.bbox is not None],
            text=repr(self),
        )

    @property
    def plot(self) -> MemoryPlots:
        """Plots of this collection (matplotlib): ``plot.usage()`` and ``plot.footprints()``.

        Examples
        --------
        >>> mem.plot.usage()  # doctest: +SKIP
        >>> mem.plot.footprints(key="era5/*")  # doctest: +SKIP
        """
        from memories_geo.monitor.plot import MemoryPlots

        return MemoryPlots(self.catalog, self.tiers.names, log=self.operation_log)

    # -- STAC ------------------------------------------------------------------------

    def to_stac(
        self, dest: str | os.PathLike[str], *, title: str | None = None, description: str | None = None,
        href_base: str | None = None, include_history: bool = False,
    ) -> Any:
        """Write a static STAC catalog and ``items.parquet`` (stac-geoparquet) to ``dest``; see docs/stac.md.

        Examples
        --------
        >>> mem.to_stac("/tmp/stac").validate()  # doctest: +SKIP
        """
        from memories_geo.stac import export_stac

        return export_stac(self, dest, title=title, description=description, href_base=href_base,
                           include_history=include_history)

    @classmethod
    def from_stac(cls, source: str | os.PathLike[str], *, config: Any = None) -> Memory:
        """``Memory(config)`` with the versions of a ``to_stac`` export registered (verified first).

        Examples
        --------
        >>> mem = mg.Memory.from_stac("/tmp/stac", config=cfg)  # doctest: +SKIP
        """
        from memories_geo.stac import import_stac

        memory = cast("type[Memory]", cls)(config)
        import_stac(memory, source)
        return memory
