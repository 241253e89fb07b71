"""Fired alerts: the :class:`AlertEvent` record and where they are kept.

An :class:`AlertHistory` is anything with ``add_alert_event`` and ``alert_events``: the
SQLite catalog has both (so alerts keep their cooldown across processes sharing a
collection), and :class:`MemoryAlertHistory` keeps them in memory.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

__all__ = ["AlertEvent", "AlertHistory", "MemoryAlertHistory", "as_utc"]


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (a naive one is taken as UTC).

    Examples
    --------
    >>> as_utc(datetime(2026, 1, 1, 12))
    datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
    """
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class AlertEvent:
    """One firing of an alert.

    Attributes
    ----------
    name : str
        The alert's name.
    condition : str
        Its condition, normalised.
    fired_at : datetime
        When it fired (UTC).
    values : dict
        The figures the condition used, by name (``None`` for a missing one).
    channel : str
        ``"email"``, ``"webhook"``, ``"log"`` or ``"callable"``.
    recipients : tuple of str
        Addresses or webhook URLs (credentials and query strings removed).
    delivered : bool
        Whether the channel delivered the notification.
    delivery_error : str or None
        Why it did not (credentials removed).

    Examples
    --------
    >>> event = AlertEvent("full", "hot.utilization_percentage > 85",
    ...                    datetime(2026, 1, 1, tzinfo=UTC), {"hot.utilization_percentage": 91.0}, "log")
    >>> AlertEvent.from_dict(event.to_dict()) == event
    True
    """

    name: str
    condition: str
    fired_at: datetime
    values: Mapping[str, float | None] = field(default_factory=dict)
    channel: str = "log"
    recipients: tuple[str, ...] = ()
    delivered: bool = False
    delivery_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable mapping (``fired_at`` as ISO 8601 text)."""
        return {
            "name": self.name,
            "condition": self.condition,
            "fired_at": as_utc(self.fired_at).isoformat(),
            "values": dict(self.values),
            "channel": self.channel,
            "recipients": list(self.recipients),
            "delivered": self.delivered,
            "delivery_error": self.delivery_error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertEvent:
        """The event a :meth:`to_dict` mapping describes."""
        fired = data["fired_at"]
        fired_at = fired if isinstance(fired, datetime) else datetime.fromisoformat(str(fired))
        return cls(
            name=str(data["name"]),
            condition=str(data.get("condition", "")),
            fired_at=as_utc(fired_at),
            values={
                str(k): (None if v is None else float(v)) for k, v in dict(data.get("values") or {}).items()
            },
            channel=str(data.get("channel", "")),
            recipients=tuple(str(r) for r in data.get("recipients") or ()),
            delivered=bool(data.get("delivered", False)),
            delivery_error=data.get("delivery_error"),
        )

    def summary(self) -> str:
        """One line: the name, the condition and the figures.

        Examples
        --------
        >>> AlertEvent("full", "x > 1", datetime(2026, 1, 1, tzinfo=UTC), {"x": 2.0}).summary()
        'alert full fired: x > 1 (x = 2)'
        """
        figures = ", ".join(f"{k} = {_number(v)}" for k, v in self.values.items())
        return f"alert {self.name} fired: {self.condition}" + (f" ({figures})" if figures else "")


def _number(value: float | None) -> str:
    return "missing" if value is None else f"{value:g}"


@runtime_checkable
class AlertHistory(Protocol):
    """Where fired alerts are kept: the two methods the SQLite catalog has.

    Examples
    --------
    >>> isinstance(MemoryAlertHistory(), AlertHistory)
    True
    """

    def add_alert_event(self, name: str, at: datetime, event: Mapping[str, Any]) -> None:
        """Keep one fired alert (``event`` is JSON-serialisable)."""
        ...

    def alert_events(self, *, name: str | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        """Fired alerts (the mappings given to :meth:`add_alert_event`), oldest first."""
        ...


class MemoryAlertHistory:
    """An :class:`AlertHistory` in memory (the default of :class:`AlertManager`), thread-safe.

    Events go through JSON as they would into a catalog.

    Examples
    --------
    >>> history = MemoryAlertHistory()
    >>> history.add_alert_event("full", datetime(2026, 1, 1, tzinfo=UTC), {"name": "full"})
    >>> history.alert_events(name="full")
    [{'name': 'full'}]
    """

    def __init__(self) -> None:
        self._events: list[tuple[datetime, str, str]] = []
        self._lock = threading.Lock()

    def add_alert_event(self, name: str, at: datetime, event: Mapping[str, Any]) -> None:
        """Keep one fired alert (``event`` is JSON-serialisable)."""
        text = json.dumps(dict(event), default=str)
        with self._lock:
            self._events.append((as_utc(at), name, text))
            self._events.sort(key=lambda item: item[0])

    def alert_events(self, *, name: str | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        """Fired alerts, oldest first, of one alert and from ``since`` on when given."""
        start = None if since is None else as_utc(since)
        with self._lock:
            chosen = [
                text for at, event_name, text in self._events
                if (name is None or event_name == name) and (start is None or at >= start)
            ]
        return [json.loads(text) for text in chosen]

    def __repr__(self) -> str:
        return f"MemoryAlertHistory({len(self._events)} events)"
