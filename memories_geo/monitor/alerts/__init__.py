"""Alerts on the monitor's figures: a safe condition grammar, channels, cooldowns, history.

>>> from memories_geo.monitor.alerts import AlertManager
>>> alerts = AlertManager()
>>> alert = alerts.set_alert("hot-storage-nearly-full", "hot.utilization_percentage > 85",
...                          notification_channel="log", cooldown="6 hours")
>>> [e.name for e in alerts.evaluate({"hot.utilization_percentage": 91.0})]
['hot-storage-nearly-full']

Conditions are parsed by hand (:func:`parse_condition`), never evaluated as Python.
"""

from memories_geo.monitor.alerts.channels import (
    ALERT_LOGGER,
    CHANNELS,
    SMTP_KEYS,
    CallableChannel,
    Channel,
    EmailChannel,
    LogChannel,
    SmtpSettings,
    WebhookChannel,
    make_channel,
    redact_webhook,
)
from memories_geo.monitor.alerts.condition import MAX_DEPTH, Condition, figure_value, parse_condition
from memories_geo.monitor.alerts.history import AlertEvent, AlertHistory, MemoryAlertHistory
from memories_geo.monitor.alerts.lexer import (
    BYTE_UNITS,
    MAX_CONDITION_LENGTH,
    PERCENT_UNITS,
    TIME_UNITS,
    UNITS,
    parse_duration,
)
from memories_geo.monitor.alerts.manager import Alert, AlertManager

__all__ = [
    "ALERT_LOGGER",
    "BYTE_UNITS",
    "CHANNELS",
    "MAX_CONDITION_LENGTH",
    "MAX_DEPTH",
    "PERCENT_UNITS",
    "SMTP_KEYS",
    "TIME_UNITS",
    "UNITS",
    "Alert",
    "AlertEvent",
    "AlertHistory",
    "AlertManager",
    "CallableChannel",
    "Channel",
    "Condition",
    "EmailChannel",
    "LogChannel",
    "MemoryAlertHistory",
    "SmtpSettings",
    "WebhookChannel",
    "figure_value",
    "make_channel",
    "parse_condition",
    "parse_duration",
    "redact_webhook",
]
