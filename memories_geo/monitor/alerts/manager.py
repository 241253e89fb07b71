"""Alerts: named conditions on the monitor's figures, a channel, and a cooldown.

:class:`AlertManager` keeps the alerts; :meth:`AlertManager.evaluate` is called with the
current figures (after operations, and by a runner thread) and fires each alert whose
condition holds and whose last firing is older than its cooldown. The last firing is
read from the history, so processes sharing a catalog share cooldowns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from memories_geo.config import redact_text
from memories_geo.display import Html, esc, repr_html, row, section, table
from memories_geo.errors import ConfigError, KeyNotFoundError
from memories_geo.monitor.alerts.channels import Channel, make_channel
from memories_geo.monitor.alerts.condition import Condition, parse_condition
from memories_geo.monitor.alerts.history import AlertEvent, AlertHistory, MemoryAlertHistory, as_utc
from memories_geo.monitor.alerts.lexer import parse_duration

__all__ = ["Alert", "AlertManager"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    """One alert: a name, a condition, where notifications go, and how often at most.

    Attributes
    ----------
    name : str
        Unique among a manager's alerts.
    condition : Condition
        When it fires.
    channel : str
        ``"email"``, ``"webhook"``, ``"log"`` or ``"callable"``.
    recipients : tuple of str
        Addresses or webhook URLs, as shown (credentials removed).
    cooldown : timedelta
        The least time between two firings.
    enabled : bool
        A disabled alert never fires.
    notifier : Channel
        The channel itself (keyword-only; not shown, not compared).

    Examples
    --------
    >>> manager = AlertManager()
    >>> manager.set_alert("full", "hot.utilization_percentage > 85", cooldown="6 hours")
    Alert(name='full', condition=Condition('hot.utilization_percentage > 85'), channel='log', \
recipients=(), cooldown=datetime.timedelta(seconds=21600), enabled=True)
    """

    name: str
    condition: Condition
    channel: str
    recipients: tuple[str, ...]
    cooldown: timedelta
    enabled: bool = True
    notifier: Channel = field(repr=False, compare=False, kw_only=True)


class AlertManager:
    """Alerts, their evaluation against figures, and the history of those that fired.

    Parameters
    ----------
    history : AlertHistory, optional
        Where fired alerts are kept and cooldowns read from: a catalog
        (``mem.catalog``) to share them between processes; in memory by default.

    Examples
    --------
    >>> fired = []
    >>> alerts = AlertManager()
    >>> _ = alerts.set_alert("slow", "warm.read_latency_p95 > 200 ms", fired.append, cooldown="1 hour")
    >>> [e.name for e in alerts.evaluate({"warm.read_latency_p95": 0.5})]
    ['slow']
    >>> alerts.evaluate({"warm.read_latency_p95": 0.5})  # cooling down
    []
    >>> len(fired), len(alerts.history("slow"))
    (1, 1)
    """

    def __init__(self, history: AlertHistory | None = None) -> None:
        self._history: AlertHistory = MemoryAlertHistory() if history is None else history
        self._alerts: dict[str, Alert] = {}
        self._last_fired: dict[str, datetime] = {}
        self._lock = threading.RLock()

    @property
    def alerts(self) -> list[Alert]:
        """The alerts, in the order they were set."""
        with self._lock:
            return list(self._alerts.values())

    def set_alert(
        self,
        name: str,
        condition: str | Condition,
        notification_channel: str | Callable[[AlertEvent], Any] = "log",
        recipients: str | Sequence[str] = (),
        cooldown: str | timedelta | float = "1 hour",
        *,
        smtp: Mapping[str, Any] | None = None,
        known_names: Collection[str] | None = None,
        enabled: bool = True,
    ) -> Alert:
        """Add an alert, or replace the one of the same name; everything is checked now.

        Parameters
        ----------
        name : str
            The alert's name.
        condition : str or Condition
            E.g. ``"hot.utilization_percentage > 85"`` (see :func:`parse_condition`).
        notification_channel : {"log", "webhook", "email"} or callable
            Where notifications go; a callable is called with the :class:`AlertEvent`.
        recipients : str or sequence of str
            Webhook URLs, or email addresses.
        cooldown : str, timedelta or float
            The least time between two firings: ``"6 hours"``, ``"30 min"``, seconds.
        smtp : mapping, optional
            SMTP settings for email (``host``, ``port``, ``sender``, ``username``,
            ``password``, ``starttls``, ``timeout``); missing ones come from
            ``MEMORIES_GEO_SMTP_*`` environment variables.
        known_names : collection of str, optional
            The figures that exist; a condition naming another is refused.
        enabled : bool
            Set ``False`` to keep the alert without it firing.

        Returns
        -------
        Alert

        Raises
        ------
        AlertConditionError
            For a condition outside the grammar or naming an unknown figure.
        OptionError
            For an unknown channel or SMTP setting.
        ConfigError
            For an empty name, a bad cooldown, a webhook without URLs, email without
            server or addresses.

        Examples
        --------
        >>> AlertManager().set_alert("errors", "error_rate > 5%", "log", cooldown="30 min").cooldown
        datetime.timedelta(seconds=1800)
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"an alert needs a name (non-empty text); got {name!r}")
        parsed = condition if isinstance(condition, Condition) else parse_condition(condition, known_names)
        if isinstance(condition, Condition) and known_names is not None:
            parsed = parse_condition(condition.text, known_names)
        notifier = make_channel(notification_channel, recipients, smtp)
        alert = Alert(
            name=name, condition=parsed, channel=notifier.name, recipients=notifier.recipients,
            cooldown=parse_duration(cooldown, name="cooldown"), enabled=bool(enabled), notifier=notifier,
        )
        with self._lock:
            self._alerts[name] = alert
        return alert

    def remove_alert(self, name: str) -> None:
        """Remove an alert (its history stays).

        Raises
        ------
        KeyNotFoundError
            When no alert has that name.
        """
        with self._lock:
            if name not in self._alerts:
                listed = ", ".join(self._alerts) or "(none)"
                raise KeyNotFoundError(f"no alert named {name!r}; alerts: {listed}")
            del self._alerts[name]
            self._last_fired.pop(name, None)

    def evaluate(self, figures: Mapping[str, Any], *, now: datetime | None = None) -> list[AlertEvent]:
        """Fire every enabled alert whose condition holds and whose cooldown has passed.

        Each one fired is delivered through its channel (a failure is recorded in the
        event and logged, never raised) and kept in the history.

        Parameters
        ----------
        figures : mapping
            Figure name -> number (``"hot.utilization_percentage"`` -> ``91.5``).
        now : datetime, optional
            The time of the evaluation (UTC; naive means UTC); now by default.

        Returns
        -------
        list of AlertEvent
            The alerts fired, delivered or not.
        """
        moment = datetime.now(UTC) if now is None else as_utc(now)
        due: list[tuple[Alert, AlertEvent]] = []
        with self._lock:
            for alert in self._alerts.values():
                if not alert.enabled or not alert.condition.evaluate(figures):
                    continue
                if self._cooling(alert, moment):
                    continue
                self._last_fired[alert.name] = moment
                event = AlertEvent(
                    name=alert.name, condition=str(alert.condition), fired_at=moment,
                    values=alert.condition.values(figures), channel=alert.channel,
                    recipients=alert.recipients,
                )
                due.append((alert, event))
        return [self._deliver(alert, event) for alert, event in due]

    def _cooling(self, alert: Alert, moment: datetime) -> bool:
        if alert.cooldown <= timedelta(0):
            return False
        start = moment - alert.cooldown
        last = self._last_fired.get(alert.name)
        if last is not None and last > start:
            return True
        try:
            events = self._history.alert_events(name=alert.name, since=start)
        except Exception as exc:  # a history that cannot be read must not stop the alerts
            logger.warning("alert %s: cannot read the alert history: %s", alert.name, exc)
            return False
        recent = [at for at in map(_fired_at, events) if at is not None and at > start]
        if recent:
            self._last_fired[alert.name] = max(recent)
        return bool(recent)

    def _deliver(self, alert: Alert, event: AlertEvent) -> AlertEvent:
        try:
            alert.notifier.deliver(event)
            event = replace(event, delivered=True)
        except Exception as exc:  # a notification that fails must not fail the operation
            own = isinstance(exc, OSError) and alert.channel != "callable"
            error = redact_text(str(exc) if own else f"{type(exc).__name__}: {exc}")
            event = replace(event, delivered=False, delivery_error=error)
            logger.warning(
                "alert %s fired but its %s notification failed: %s", alert.name, alert.channel, error
            )
        try:
            self._history.add_alert_event(alert.name, event.fired_at, event.to_dict())
        except Exception as exc:  # the event is still returned to the caller
            logger.warning("alert %s: cannot record it in the alert history: %s", alert.name, exc)
        return event

    def history(
        self, name: str | None = None, since: datetime | timedelta | str | None = None
    ) -> list[AlertEvent]:
        """Fired alerts, oldest first.

        Parameters
        ----------
        name : str, optional
            Only this alert's.
        since : datetime, timedelta or str, optional
            From this time on, or for this long until now (``"24 hours"``).

        Examples
        --------
        >>> AlertManager().history(since="1 day")
        []
        """
        start: datetime | None
        if since is None or isinstance(since, datetime):
            start = None if since is None else as_utc(since)
        else:
            start = datetime.now(UTC) - parse_duration(since, name="since")
        return [AlertEvent.from_dict(e) for e in self._history.alert_events(name=name, since=start)]

    def last_fired(self, name: str) -> datetime | None:
        """When the alert last fired, from the history; ``None`` if never."""
        fired = [at for at in map(_fired_at, self._history.alert_events(name=name)) if at is not None]
        return max(fired, default=None)

    def __repr__(self) -> str:
        alerts = self.alerts
        listed = "".join(f"\n  {a.name}: {a.condition} -> {a.channel}, cooldown {a.cooldown}" for a in alerts)
        return f"<AlertManager: {len(alerts)} alerts>{listed}"

    def table_html(self) -> Html:
        """The alerts as an HTML table, to place in another repr.

        Columns: name, condition, channel, recipients, cooldown, enabled, last fired.

        Examples
        --------
        >>> "<table>" in AlertManager().table_html()
        False
        """
        rows = [
            [a.name, str(a.condition), a.channel, ", ".join(a.recipients) or "—", _human_delta(a.cooldown),
             "yes" if a.enabled else "no", _when(self.last_fired(a.name))]
            for a in self.alerts
        ]
        columns = ["name", "condition", "channel", "recipients", "cooldown", "enabled", "last fired"]
        return table(columns, rows) if rows else esc("no alerts")

    def _repr_html_(self) -> str:
        alerts = self.alerts
        sections = [
            row("history", type(self._history).__name__),
            section(
                "Alerts", self.table_html(), preview=", ".join(a.name for a in alerts), count=len(alerts)
            ),
        ]
        return repr_html(obj_type="memories_geo.AlertManager", text=repr(self), sections=sections)


def _fired_at(event: Mapping[str, Any]) -> datetime | None:
    """When a stored event fired; ``None`` for an entry without a readable time."""
    value = event.get("fired_at")
    if isinstance(value, datetime):
        return as_utc(value)
    try:
        return as_utc(datetime.fromisoformat(str(value)))
    except ValueError:
        return None


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _human_delta(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, length in (("days", 86400), ("hours", 3600), ("min", 60)):
        if seconds >= length and seconds % length == 0:
            count = int(seconds // length)
            return f"{count} {unit[:-1] if count == 1 and unit != 'min' else unit}"
    return f"{seconds:g} s"
