"""Where a fired alert goes: a Python callable, the log, a webhook, or email through SMTP.

:func:`make_channel` checks a channel when the alert is set (a webhook without a URL,
email without a server or an address fail then); a channel's ``deliver`` raises when the
notification did not get through, and :class:`~memories_geo.monitor.alerts.AlertManager`
records that in the event instead of passing it on. Credentials (the SMTP password,
tokens in webhook URLs) never reach a repr, a log line, an error or the history.
"""

from __future__ import annotations

import base64
import email.policy
import http.client
import json
import logging
import os
import re
import smtplib
import ssl
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from memories_geo.config import redact_text, redact_url
from memories_geo.errors import ConfigError, OptionError
from memories_geo.monitor.alerts.history import AlertEvent

__all__ = [
    "ALERT_LOGGER",
    "CHANNELS",
    "SMTP_KEYS",
    "CallableChannel",
    "Channel",
    "EmailChannel",
    "LogChannel",
    "SmtpSettings",
    "WebhookChannel",
    "make_channel",
    "redact_webhook",
]

logger = logging.getLogger(__name__)

#: The logger the ``"log"`` channel writes to (at WARNING).
ALERT_LOGGER = logging.getLogger("memories_geo.monitor.alerts")
#: Channel names accepted besides a callable.
CHANNELS = ("email", "webhook", "log")
#: Settings of ``smtp={...}`` and what each means.
SMTP_KEYS: Mapping[str, str] = {
    "host": "SMTP server name (env MEMORIES_GEO_SMTP_HOST)",
    "port": "port (env MEMORIES_GEO_SMTP_PORT; default 587 with starttls, else 25)",
    "sender": "From address (env MEMORIES_GEO_SMTP_SENDER; default memories-geo@localhost)",
    "username": "login name (env MEMORIES_GEO_SMTP_USERNAME); no login when unset",
    "password": "login password (env MEMORIES_GEO_SMTP_PASSWORD); never shown",
    "starttls": "true: upgrade the connection with STARTTLS (env MEMORIES_GEO_SMTP_STARTTLS)",
    "timeout": "seconds to wait for the server (default 10)",
}
WEBHOOK_TIMEOUT = 5.0
WEBHOOK_RETRY_PAUSE = 0.5
_TOKEN_SEGMENT = 16  # a path segment this long or longer may be a secret: masked


class Channel(Protocol):
    """What a notification channel offers: its name, who it notifies, and delivery."""

    @property
    def name(self) -> str:
        """``"email"``, ``"webhook"``, ``"log"`` or ``"callable"``."""
        ...

    @property
    def recipients(self) -> tuple[str, ...]:
        """Who is notified, as shown (credentials removed)."""
        ...

    def deliver(self, event: AlertEvent) -> None:
        """Send the notification; raise when it did not get through."""
        ...


def redact_webhook(url: str) -> str:
    """A webhook URL without password, query string or long (token-like) path segments.

    Examples
    --------
    >>> redact_webhook("https://hooks.example.com/services/T0001/B0002/abcdefghijklmnopqrstuvwx?k=1")
    'https://hooks.example.com/services/T0001/B0002/***'
    """
    parts = urlsplit(redact_url(url))
    path = "/".join("***" if len(seg) >= _TOKEN_SEGMENT else seg for seg in parts.path.split("/"))
    return parts._replace(path=path, query="", fragment="").geturl()


def _failure(exc: BaseException, secrets: Sequence[tuple[str, str]] = ()) -> str:
    text = f"{type(exc).__name__}: {exc}"
    for secret, shown in secrets:
        if secret:
            text = text.replace(secret, shown)
    return redact_text(text)


@dataclass(frozen=True)
class CallableChannel:
    """Calls a Python function with the :class:`AlertEvent`.

    Examples
    --------
    >>> CallableChannel(print).name
    'callable'
    """

    function: Callable[[AlertEvent], Any]
    given: tuple[str, ...] = ()
    name: str = "callable"

    @property
    def recipients(self) -> tuple[str, ...]:
        """The recipients given (the function decides what to do with them)."""
        return self.given

    def deliver(self, event: AlertEvent) -> None:
        """Call the function; what it raises is the delivery failure."""
        self.function(event)

    def __repr__(self) -> str:
        return f"CallableChannel({getattr(self.function, '__qualname__', type(self.function).__name__)})"


@dataclass(frozen=True)
class LogChannel:
    """Logs the event at WARNING on the ``memories_geo.monitor.alerts`` logger.

    The record carries the event as ``record.alert_event`` (a dict) for log handlers.

    Examples
    --------
    >>> LogChannel().name
    'log'
    """

    given: tuple[str, ...] = ()
    name: str = "log"

    @property
    def recipients(self) -> tuple[str, ...]:
        """The recipients given (not used by logging)."""
        return self.given

    def deliver(self, event: AlertEvent) -> None:
        """Log the event."""
        ALERT_LOGGER.warning("%s", event.summary(), extra={"alert_event": event.to_dict()})


def _without_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without ``user:password@``, and the Basic ``Authorization`` header it stood for."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    netloc = parts.netloc.rpartition("@")[2]
    token = base64.b64encode(f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode())
    return parts._replace(netloc=netloc).geturl(), {"Authorization": f"Basic {token.decode()}"}


@dataclass(frozen=True)
class WebhookChannel:
    """POSTs the event as JSON to each URL (5 s timeout, one attempt and one retry).

    ``user:password@`` in a URL is sent as HTTP Basic authentication.

    Examples
    --------
    >>> WebhookChannel(("https://me:secret@hooks.example.com/alert",)).recipients
    ('https://me:***@hooks.example.com/alert',)
    """

    urls: tuple[str, ...] = field(repr=False)
    name: str = "webhook"

    @property
    def recipients(self) -> tuple[str, ...]:
        """The URLs without credentials."""
        return tuple(redact_webhook(u) for u in self.urls)

    def deliver(self, event: AlertEvent) -> None:
        """POST to every URL; raise naming (redacted) the URLs that failed."""
        body = {k: v for k, v in event.to_dict().items() if k not in ("delivered", "delivery_error")}
        data = json.dumps(body).encode()
        failures = []
        for url in self.urls:
            error = self._post(url, data)
            if error is not None:
                failures.append(f"{redact_webhook(url)}: {error}")
        if failures:
            raise OSError("webhook failed: " + "; ".join(failures))

    @staticmethod
    def _post(url: str, data: bytes) -> str | None:
        target, headers = _without_userinfo(url)
        headers.update({"Content-Type": "application/json", "User-Agent": "memories-geo-alerts"})
        error = None
        for attempt in range(2):
            if attempt:
                time.sleep(WEBHOOK_RETRY_PAUSE)
            request = urllib.request.Request(target, data=data, method="POST", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
                    response.read()
                return None
            except (OSError, ValueError, http.client.HTTPException) as exc:
                error = _failure(exc, [(url, redact_webhook(url))])
        return error

    def __repr__(self) -> str:
        return f"WebhookChannel({list(self.recipients)})"


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server; the password is never shown.

    Examples
    --------
    >>> SmtpSettings("mail.example.com", password="secret")  # doctest: +NORMALIZE_WHITESPACE
    SmtpSettings(host='mail.example.com', port=25, sender='memories-geo@localhost',
                 username=None, starttls=False, timeout=10.0)
    """

    host: str
    port: int = 25
    sender: str = "memories-geo@localhost"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    timeout: float = 10.0

    @classmethod
    def from_options(
        cls, smtp: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
    ) -> SmtpSettings:
        """Settings from ``smtp={...}``, each missing one from ``MEMORIES_GEO_SMTP_*``.

        Raises
        ------
        OptionError
            For a key outside :data:`SMTP_KEYS`.
        ConfigError
            Without a host, or with a port or timeout that is not a number.
        """
        given = dict(smtp or {})
        unknown = sorted(set(given) - set(SMTP_KEYS))
        if unknown:
            raise OptionError(
                f"smtp does not take {', '.join(map(repr, unknown))}; accepted: {', '.join(SMTP_KEYS)}"
            )
        env = os.environ if environ is None else environ
        for key in ("host", "port", "sender", "username", "password", "starttls"):
            if given.get(key) in (None, "") and env.get(f"MEMORIES_GEO_SMTP_{key.upper()}"):
                given[key] = env[f"MEMORIES_GEO_SMTP_{key.upper()}"]
        if not given.get("host"):
            raise ConfigError(
                "email alerts need an SMTP server: smtp={'host': ..., 'port': ...} or MEMORIES_GEO_SMTP_HOST"
            )
        starttls = given.get("starttls", False)
        if isinstance(starttls, str):
            starttls = starttls.strip().lower() in ("1", "true", "yes", "on")
        try:
            port = int(given.get("port") or (587 if starttls else 25))
            timeout = float(given.get("timeout") or 10.0)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"smtp port and timeout must be numbers: {exc}") from None
        return cls(
            host=str(given["host"]), port=port, sender=str(given.get("sender") or cls.sender),
            username=given.get("username") or None, password=given.get("password") or None,
            starttls=bool(starttls), timeout=timeout,
        )


@dataclass(frozen=True)
class EmailChannel:
    """Sends a plain-text message to the addresses through SMTP.

    Examples
    --------
    >>> EmailChannel(SmtpSettings("mail.example.com"), ("ops@example.com",)).recipients
    ('ops@example.com',)
    """

    smtp: SmtpSettings
    addresses: tuple[str, ...]
    name: str = "email"

    @property
    def recipients(self) -> tuple[str, ...]:
        """The addresses."""
        return self.addresses

    def message(self, event: AlertEvent) -> EmailMessage:
        """The message sent for ``event``."""
        message = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))
        message["Subject"] = f"[memories-geo] alert {event.name}: {event.condition}"
        message["From"] = self.smtp.sender
        message["To"] = ", ".join(self.addresses)
        message["Date"] = format_datetime(event.fired_at)
        message["Message-ID"] = make_msgid(domain=self.smtp.sender.rpartition("@")[2] or None)
        figures = "\n".join(
            f"  {name} = {'missing' if value is None else f'{value:g}'}"
            for name, value in event.values.items()
        )
        message.set_content(
            f"Alert {event.name} fired at {event.fired_at:%Y-%m-%d %H:%M:%S} UTC.\n\n"
            f"Condition: {event.condition}\n\nFigures:\n{figures or '  (none)'}\n"
        )
        return message

    def deliver(self, event: AlertEvent) -> None:
        """Send the message; raise (without the password) when the server refuses it."""
        settings = self.smtp
        try:
            with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as server:
                if settings.starttls:
                    server.starttls(context=ssl.create_default_context())
                if settings.username:
                    server.login(settings.username, settings.password or "")
                server.send_message(self.message(event), to_addrs=list(self.addresses))
        except (OSError, smtplib.SMTPException) as exc:
            raise OSError(
                f"email through {settings.host}:{settings.port} failed: "
                + _failure(exc, [(settings.password or "", "***")])
            ) from None


def _recipients(recipients: str | Sequence[str] | None) -> tuple[str, ...]:
    if recipients is None:
        return ()
    if isinstance(recipients, str):
        return (recipients,)
    return tuple(str(r) for r in recipients)


def make_channel(
    channel: str | Callable[[AlertEvent], Any],
    recipients: str | Sequence[str] | None = (),
    smtp: Mapping[str, Any] | None = None,
) -> Channel:
    """The channel an alert names, checked now rather than when it fires.

    Parameters
    ----------
    channel : {"log", "webhook", "email"} or callable
        Where notifications go.
    recipients : str or sequence of str
        Webhook URLs, or email addresses.
    smtp : mapping, optional
        SMTP settings (:data:`SMTP_KEYS`) for ``"email"``; missing ones come from the
        ``MEMORIES_GEO_SMTP_*`` environment variables.

    Raises
    ------
    OptionError
        For an unknown channel name.
    ConfigError
        For a webhook without an http(s) URL, email without a server or an address.

    Examples
    --------
    >>> make_channel("log").name
    'log'
    >>> make_channel("pager")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    memories_geo.errors.OptionError: notification_channel must be 'email', 'webhook', 'log' or a ...
    """
    given = _recipients(recipients)
    if callable(channel):
        return CallableChannel(channel, given)
    name = channel.lower() if isinstance(channel, str) else channel
    if name not in CHANNELS:
        raise OptionError(
            f"notification_channel must be 'email', 'webhook', 'log' or a callable; got {channel!r}"
        )
    if name == "log":
        return LogChannel(given)
    if name == "webhook":
        if not given:
            raise ConfigError("a webhook alert needs recipients: the URLs to POST to")
        for url in given:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"webhook recipients must be http(s) URLs; got {redact_webhook(url)!r}")
        return WebhookChannel(given)
    if not given:
        raise ConfigError("an email alert needs recipients: the addresses to write to")
    for address in given:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", parseaddr(address)[1]):
            raise ConfigError(
                f"email recipients must be addresses such as 'ops@example.com'; got {address!r}"
            )
    return EmailChannel(SmtpSettings.from_options(smtp), given)
