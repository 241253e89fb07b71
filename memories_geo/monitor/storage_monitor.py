"""``StorageMonitor``: a collection's usage per tier, performance metrics and alerts, in one place.

The original API's names::

    monitor = mg.StorageMonitor(mem)          # or mem.monitor
    monitor.get_storage_usage()["hot"].utilization_percentage
    monitor.get_performance_metrics(time_period="24 hours", metrics=["read_latency"])
    monitor.set_alert(name="hot-storage-nearly-full", condition="hot.utilization_percentage > 85",
                      notification_channel="email", recipients=["ops@example.org"], cooldown="6 hours")
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from memories_geo.awaitable import awaitable_twin
from memories_geo.backends.base import Capability
from memories_geo.display import repr_html, section, table
from memories_geo.monitor.records import OperationLog
from memories_geo.monitor.usage import USAGE_FIGURES, TierUsage, usage_from_totals
from memories_geo.periodic import PeriodicTask

if TYPE_CHECKING:
    import pandas as pd

    from memories_geo.entry import Entry
    from memories_geo.monitor.alerts import Alert, AlertEvent, AlertManager
    from memories_geo.monitor.metrics import PerformanceMetrics
    from memories_geo.operations import OperationRecord
    from memories_geo.versions import VersionStore

__all__ = ["AlertRunner", "StorageMonitor", "storage_usage"]

logger = logging.getLogger(__name__)

#: Period of the performance figures alerts are evaluated on.
ALERT_WINDOW = timedelta(hours=1)


class MonitoredCollection(Protocol):
    """What a :class:`StorageMonitor` needs of a collection (a :class:`~memories_geo.Memory`)."""

    version_store: VersionStore

    @property
    def operation_log(self) -> OperationLog: ...


def storage_usage(store: VersionStore, current: Sequence[Entry] | None = None) -> dict[str, TierUsage]:
    """Usage of every tier: bytes, objects, keys, versions; room left where the tier tells.

    ``current`` is the catalog's current entries when the caller has read them already.

    Examples
    --------
    >>> storage_usage(mem.version_store)["hot"].used_bytes  # doctest: +SKIP
    1048576
    """
    catalog, tiers = store.catalog, store.tiers
    usage = usage_from_totals(catalog.current_entries() if current is None else current,
                              catalog.tier_totals(), tiers.names)
    out: dict[str, TierUsage] = {}
    for found in usage:
        config = store.config.tiers.get(found.tier)
        out[found.tier] = replace(
            found, max_size=config.max_size if config else None,
            free_bytes=_free_bytes(store, found.tier) if config else None,
        )
    return out


def _free_bytes(store: VersionStore, tier: str) -> int | None:
    """Free space of the file system under a local tier (``None`` for other backends)."""
    try:
        backend: Any = store.tiers.backend(tier)
        if Capability.FILES not in backend.capabilities or backend.protocol != "file":
            return None
        root = backend.root
        while root and not os.path.exists(root):
            root = root.rsplit("/", 1)[0]
        return shutil.disk_usage(root or "/").free
    except Exception as exc:
        logger.debug("free space of tier %r unknown: %s", tier, exc)
        return None


class StorageMonitor:
    """Usage, performance metrics and alerts of one collection.

    Parameters
    ----------
    memory : Memory
        The collection (``mem.monitor`` is the one attached to it).
    alert_every : float
        Seconds between alert evaluations triggered by operations (an operation
        triggers one only when the previous one is older; :meth:`check_alerts`
        evaluates at once).

    Examples
    --------
    >>> monitor = mg.StorageMonitor(mem)  # doctest: +SKIP
    >>> monitor.get_storage_usage()["hot"].utilization_percentage  # doctest: +SKIP
    12.5
    """

    def __init__(self, memory: MonitoredCollection, *, alert_every: float = 10.0) -> None:
        self.memory = memory
        self.store = memory.version_store
        self.log: OperationLog = memory.operation_log
        self.alert_every = alert_every
        self._alerts: AlertManager | None = None
        self._last_check = 0.0
        self._checking = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.log.on_record(self._after_operation)

    # -- usage -----------------------------------------------------------------------

    def get_storage_usage(self) -> dict[str, TierUsage]:
        """Usage of every tier (:class:`~memories_geo.monitor.usage.TierUsage`), by tier name."""
        return storage_usage(self.store)

    # -- records and metrics ------------------------------------------------------------

    def records(self, time_period: str | timedelta | None = None) -> pd.DataFrame:
        """Operation records of the last ``time_period`` (all kept when ``None``) as a DataFrame."""
        return self.log.frame(since=None if time_period is None else _period(time_period))

    def get_performance_metrics(
        self, time_period: str | timedelta = "24 hours", metrics: Sequence[str] | None = None,
        *, by: Sequence[str] = ("tier", "format"),
    ) -> PerformanceMetrics:
        """Latency, throughput, request and error rates over the last ``time_period``.

        Parameters
        ----------
        time_period : str or timedelta
            ``"24 hours"``, ``"7 days"``, ``"30 min"`` or a timedelta.
        metrics : sequence of str, optional
            Which metrics (default: all); see :mod:`memories_geo.monitor.metrics`.
        by : sequence of str
            Splits computed besides the totals.
        """
        from datetime import UTC, datetime

        from memories_geo.monitor.metrics import performance_metrics

        period = _period(time_period)
        end = datetime.now(UTC)
        frame = self.log.frame(since=end - period)
        return performance_metrics(frame, metrics=metrics, by=tuple(by), window=(end - period, end))

    def figures(self, time_period: str | timedelta = ALERT_WINDOW) -> dict[str, float | None]:
        """Every figure an alert condition can name: usage per tier and performance metrics."""
        figures: dict[str, float | None] = {}
        for usage in self.get_storage_usage().values():
            figures.update(usage.figures())
        figures.update(self.get_performance_metrics(time_period).figures())
        return figures

    def figure_names(self) -> list[str]:
        """Names of the figures conditions may use (usage names per tier, metric names)."""
        from memories_geo.formats.registry import available_formats
        from memories_geo.monitor.metrics import figure_names

        names = [f"{tier}.{name}" for tier in self.store.tiers.names for name in USAGE_FIGURES]
        return names + figure_names(self.store.tiers.names, available_formats())

    def to_prometheus(self, time_period: str | timedelta = "1 hour") -> str:
        """Usage gauges and performance metrics in the Prometheus text format."""
        from memories_geo.monitor.export import to_prometheus, usage_to_prometheus

        usage = usage_to_prometheus(list(self.get_storage_usage().values()))
        return usage + to_prometheus(self.get_performance_metrics(time_period))

    # -- alerts ----------------------------------------------------------------------

    @property
    def alerts(self) -> AlertManager:
        """The collection's alerts (history kept in the catalog)."""
        if self._alerts is None:
            from memories_geo.monitor.alerts import AlertManager

            self._alerts = AlertManager(history=self.store.catalog)
        return self._alerts

    def set_alert(
        self, name: str, condition: str, notification_channel: str | Callable[..., Any] = "log",
        recipients: Sequence[str] = (), cooldown: str | timedelta = "1 hour", **settings: Any,
    ) -> Alert:
        """Fire ``notification_channel`` when ``condition`` holds, at most once per ``cooldown``.

        ``condition`` uses the alert grammar (see :mod:`memories_geo.monitor.alerts`)
        over the names of :meth:`figure_names`; a name the monitor does not have is
        refused. ``settings`` go to the channel (``smtp={...}`` for email).
        """
        return self.alerts.set_alert(
            name, condition, notification_channel, recipients, cooldown,
            known_names=self.figure_names(), **settings,
        )

    def check_alerts(self) -> list[AlertEvent]:
        """Evaluate every alert now; return those that fired."""
        if self._alerts is None or not self._alerts.alerts:
            return []
        with self._checking:
            self._last_check = time.monotonic()
            return self._alerts.evaluate(self.figures())

    def alert_history(self, name: str | None = None) -> list[AlertEvent]:
        """Alerts fired so far (from the catalog: every process sharing it), oldest first."""
        return self.alerts.history(name=name)

    def _after_operation(self, record: OperationRecord) -> None:
        """Evaluate the alerts in a short-lived thread (a slow channel never delays the operation)."""
        if self._alerts is None or not self._alerts.alerts:
            return
        if time.monotonic() - self._last_check < self.alert_every or self._checking.locked():
            return
        self._last_check = time.monotonic()

        def check() -> None:
            try:
                self.check_alerts()
            except Exception:
                logger.exception("evaluating alerts after %s of %r failed", record.operation, record.key)

        thread = threading.Thread(target=check, name="memories-geo-alert-check", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for alert evaluations started by operations to finish."""
        for thread in list(self._threads):
            thread.join(timeout)

    def start(self, interval: str | timedelta = "1 minute") -> AlertRunner:
        """Evaluate the alerts every ``interval`` in a background thread; return the runner."""
        runner = AlertRunner(self, _period(interval).total_seconds())
        runner.start()
        return runner

    # -- awaitable twins ------------------------------------------------------------------

    aget_storage_usage = awaitable_twin(get_storage_usage)
    aget_performance_metrics = awaitable_twin(get_performance_metrics)
    acheck_alerts = awaitable_twin(check_alerts)

    # -- display ---------------------------------------------------------------------

    def _repr_html_(self) -> str:
        usage = self.get_storage_usage()
        rows = [
            [u.tier, u.keys, u.versions, u.objects, _size(u.used_bytes), _size(u.available_bytes),
             "" if u.utilization_percentage is None else f"{u.utilization_percentage:.1f} %"]
            for u in usage.values()
        ]
        sections = [section("Tiers", table(
            ("tier", "keys", "versions", "objects", "used", "available", "utilisation"), rows,
            numeric={1, 2, 3, 4, 5, 6},
        ), count=len(rows))]
        if self._alerts is not None and self._alerts.alerts:
            sections.append(section("Alerts", self._alerts.table_html(), count=len(self._alerts.alerts)))
        return repr_html(obj_type="memories_geo.StorageMonitor", text=repr(self), sections=sections)

    def __repr__(self) -> str:
        alerts = 0 if self._alerts is None else len(self._alerts.alerts)
        return f"StorageMonitor(tiers={self.store.tiers.names}, alerts={alerts})"


class AlertRunner(PeriodicTask):
    """Evaluates a monitor's alerts every ``interval`` seconds in a daemon thread."""

    thread_name = "memories-geo-alerts"

    def __init__(self, monitor: StorageMonitor, interval: float) -> None:
        super().__init__()
        self.monitor = monitor
        self.interval = interval

    def run_once(self, *, raise_errors: bool = True) -> list[AlertEvent]:
        """Evaluate the alerts once."""
        try:
            fired = self.monitor.check_alerts()
        except Exception as exc:
            with self._lock:
                self.runs += 1
                self.failures += 1
                self.last_error = exc
            if raise_errors:
                raise
            logger.exception("alert evaluation failed")
            return []
        with self._lock:
            self.runs += 1
        return fired


def _period(value: str | timedelta) -> timedelta:
    from memories_geo.units import parse_duration

    return value if isinstance(value, timedelta) else parse_duration(value)


def _size(n: int | None) -> str:
    from memories_geo.display import human_size

    return "" if n is None else human_size(n)

