"""Alerts: the condition grammar (and what it refuses), channels against real servers, cooldowns."""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from memories_geo.catalog import SQLiteCatalog
from memories_geo.errors import AlertConditionError, ConfigError, KeyNotFoundError, OptionError
from memories_geo.monitor.alerts import (
    AlertEvent,
    AlertHistory,
    AlertManager,
    MemoryAlertHistory,
    parse_condition,
    parse_duration,
    redact_webhook,
)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
FULL = {"hot.utilization_percentage": 91.5}
PASSWORD = "pa55-Very-Secret-word"


# -- the grammar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "figures", "expected"),
    [
        ("hot.utilization_percentage > 85", FULL, True),
        ("hot.utilization_percentage > 95", FULL, False),
        ("hot.utilization_percentage >= 91.5", FULL, True),
        ("hot.utilization_percentage <= 91.5 and hot.utilization_percentage != 91", FULL, True),
        ("hot.utilization_percentage == 91.5", FULL, True),
        ("hot.utilization_percentage > 85%", FULL, True),
        ("error_rate < 1 %", {"error_rate": 0.5}, True),
        # precedence: and binds tighter than or, not tighter than and
        ("a > 0 or b > 0 and c > 0", {"a": 1, "b": 0, "c": 0}, True),
        ("(a > 0 or b > 0) and c > 0", {"a": 1, "b": 0, "c": 0}, False),
        ("not a > 0 and b > 0", {"a": 0, "b": 1}, True),
        ("not (a > 0 and b > 0)", {"a": 1, "b": 1}, False),
        ("not not a > 0", {"a": 1}, True),
        ("a > 0 AND b > 0 Or c > 0", {"a": 1, "b": 0, "c": 1}, True),
        # units: bytes (decimal and binary), time in seconds, rates
        ("warm.used_bytes > 5 MB", {"warm.used_bytes": 5_000_001}, True),
        ("warm.used_bytes > 5MB", {"warm.used_bytes": 4_999_999}, False),
        ("warm.used_bytes >= 1 KiB", {"warm.used_bytes": 1024}, True),
        ("warm.used_bytes >= 1 kib", {"warm.used_bytes": 1023}, False),
        ("cold.used_bytes > 1.5 GiB", {"cold.used_bytes": 1.5 * 1024**3 + 1}, True),
        ("cold.used_bytes < 2 tb", {"cold.used_bytes": 1.9e12}, True),
        ("warm.read_latency_p95 > 200 ms", {"warm.read_latency_p95": 0.25}, True),
        ("warm.read_latency_p95 > 200ms", {"warm.read_latency_p95": 0.15}, False),
        ("age > 30 min", {"age": 1801}, True),
        ("age > 2 hours", {"age": 7199}, False),
        ("age >= 1 day", {"age": 86400}, True),
        ("age >= 1 d and age < 90 s", {"age": 86400}, False),
        ("request_rate > 100/s", {"request_rate": 101}, True),
        ("hot.write_throughput < 5 MB/s", {"hot.write_throughput": 4e6}, True),
        ("delta > -5", {"delta": -4}, True),
        ("delta < +1e3", {"delta": 999}, True),
        # names against names
        ("hot.used_bytes > hot.available_bytes", {"hot.used_bytes": 2, "hot.available_bytes": 1}, True),
        ("5 < x", {"x": 6}, True),
        # a missing, None or NaN figure makes its comparison false, never an error
        ("missing > 1", {}, False),
        ("x > 1", {"x": None}, False),
        ("x > 1", {"x": float("nan")}, False),
        ("x != 1", {"x": "text"}, False),
        ("not missing > 1", {}, True),
        ("missing > 1 or x > 1", {"x": 2}, True),
        ("x > y", {"x": 2}, False),
    ],
)
def test_condition_evaluates(text: str, figures: dict[str, Any], expected: bool) -> None:
    assert parse_condition(text).evaluate(figures) is expected


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("hot.utilization_percentage>85", "hot.utilization_percentage > 85"),
        ("a>1 or b<2 and c==3", "a > 1 or b < 2 and c == 3"),
        ("(a>1 or b<2) and c==3", "(a > 1 or b < 2) and c == 3"),
        ("not (a>1 and b<2)", "not (a > 1 and b < 2)"),
        ("x <= 5mb/S", "x <= 5 MB/s"),
        ("x > 2 kib and y < 3 HOURS", "x > 2 KiB and y < 3 hours"),
        ("x > 85 %", "x > 85%"),
        ("x > 100/s", "x > 100/s"),
        ("x > 200   ms", "x > 200 ms"),
    ],
)
def test_condition_text_is_normalised(text: str, normalised: str) -> None:
    condition = parse_condition(text)
    assert str(condition) == normalised
    assert str(parse_condition(str(condition))) == normalised


def test_condition_names_and_values() -> None:
    condition = parse_condition("hot.used_bytes > hot.available_bytes or open.error_rate > 5%")
    assert condition.names == frozenset({"hot.used_bytes", "hot.available_bytes", "open.error_rate"})
    values = condition.values({"hot.used_bytes": 10, "hot.available_bytes": math.inf, "other": 1})
    assert values == {"hot.available_bytes": None, "hot.used_bytes": 10.0, "open.error_rate": None}


def test_unknown_name_is_refused_with_close_matches() -> None:
    known = ["hot.utilization_percentage", "hot.used_bytes", "warm.utilization_percentage", "error_rate"]
    assert parse_condition("hot.used_bytes > 1 GB", known).names == {"hot.used_bytes"}
    with pytest.raises(AlertConditionError) as info:
        parse_condition("hot.utilisation_percentage > 85", known)
    message = str(info.value)
    assert "position 0" in message
    assert "unknown figure 'hot.utilisation_percentage'" in message
    assert "did you mean 'hot.utilization_percentage'" in message
    assert "error_rate" in message  # the accepted names are listed


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("hot.x(1) > 2", 5, "calls are not part of the grammar"),
        ("x > ", 4, "expected a name or a number"),
        ("x >> 1", 3, "expected a name or a number"),
        ("x 1", 2, "expected a comparison operator"),
        ("(x > 1", 6, "expected ')' closing the '(' at position 0"),
        ("x > 1)", 5, "expected 'and', 'or', ')' or the end"),
        ("x = 1", 2, "did you mean '=='?"),
        ("x > 5 parsecs", 6, "expected 'and', 'or'"),
        ("x > 5parsecs", 5, "unknown unit 'parsecs'"),
        ("x > 5 MB/h", 8, "only '/s' may follow a number"),
        ("x > 1 < 2", 6, "chained comparisons"),
        ("1 > 0", 0, "at least one name"),
    ],
)
def test_errors_name_position_and_expectation(text: str, position: int, words: str) -> None:
    with pytest.raises(AlertConditionError) as info:
        parse_condition(text)
    assert f"position {position}:" in str(info.value)
    assert words in str(info.value)
    assert isinstance(info.value, ConfigError)


INJECTIONS = [
    "__import__('os').system('touch pwned')",
    "__import__(\"pathlib\").Path(\"pwned\").touch() or x > 1",
    "1 > 0 or os.system(\"touch pwned\")",
    "x > 0 or os.system(x)",
    "x > 1; import os",
    "x > 1\nimport os",
    "x > 1 and exec('open(1)') > 0",
    "eval(x) > 0",
    "open(x).read() > 0",
    "x.__class__ > 1",
    "x.__class__.__bases__ > 0",
    "_x > 1",
    "globals() > 0",
    "lambda: 1",
    "x > 1 if y else z",
    "x[0] > 1",
    "x > `id`",
    "'x' > 1",
    "x > \"1\"",
    "f\"{x}\" > 1",
    "x > 1 -- comment",
    "x > 1 # comment",
    "x > 1; DROP TABLE alert_events; --",
    "x > 1 OR 1=1",
    "' OR '1'='1",
    "x > 1 UNION SELECT * FROM versions",
    "x in y",
    "x is None",
    "x == True",
    "{x} > 1",
    "x @ y > 1",
    "x > 0x10",
    "$x > 1",
    "\\x > 1",
    "x > 1 && y > 1",
    "x > 1 || y > 1",
    "!x",
    "\uff58 > 1",  # a full-width x
    "x > 1 or",
    "and x > 1",
    "x",
    "",
    "   ",
    "x > 1 or " * 100 + "x > 1",
    "(" * 60 + "x > 1" + ")" * 60,
    "not " * 60 + "x > 1",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_attempts_are_refused(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AlertConditionError):
        parse_condition(text)
    with pytest.raises(AlertConditionError):
        AlertManager().set_alert("attempt", text)
    assert list(tmp_path.iterdir()) == []


def test_conditions_that_are_not_text_or_too_long_are_refused() -> None:
    with pytest.raises(AlertConditionError, match="is text"):
        parse_condition(42)  # type: ignore[arg-type]
    with pytest.raises(AlertConditionError, match="longer than 500 characters"):
        parse_condition("x > 1 and " * 49 + "abcdefghijklmnopqrstuvwxyz > 1")
    assert parse_condition("(" * 50 + "x > 1" + ")" * 50).evaluate({"x": 2})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("6 hours", timedelta(hours=6)),
        ("30 min", timedelta(minutes=30)),
        ("1 day", timedelta(days=1)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("250 ms", timedelta(milliseconds=250)),
        ("0 s", timedelta(0)),
        (timedelta(minutes=5), timedelta(minutes=5)),
        (45, timedelta(seconds=45)),
        ("45", timedelta(seconds=45)),
    ],
)
def test_parse_duration(value: Any, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["6 fortnights", "soon", "-1 h", -5, "", None, True, float("nan")])
def test_parse_duration_refuses(value: Any) -> None:
    with pytest.raises(ConfigError, match="cooldown must"):
        parse_duration(value)


# -- alert manager: validation, cooldown, history ------------------------------------------


def test_set_alert_validates_everything_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HOST", "PORT", "SENDER", "USERNAME", "PASSWORD", "STARTTLS"):
        monkeypatch.delenv(f"MEMORIES_GEO_SMTP_{var}", raising=False)
    alerts = AlertManager()
    with pytest.raises(OptionError, match="'email', 'webhook', 'log' or a callable; got 'pager'"):
        alerts.set_alert("a", "x > 1", "pager")
    with pytest.raises(ConfigError, match="needs recipients"):
        alerts.set_alert("a", "x > 1", "webhook")
    with pytest.raises(ConfigError, match="http"):
        alerts.set_alert("a", "x > 1", "webhook", ["ftp://example.com/hook"])
    with pytest.raises(ConfigError, match="needs recipients"):
        alerts.set_alert("a", "x > 1", "email", smtp={"host": "127.0.0.1"})
    with pytest.raises(ConfigError, match="MEMORIES_GEO_SMTP_HOST"):
        alerts.set_alert("a", "x > 1", "email", ["ops@example.com"])
    with pytest.raises(ConfigError, match="addresses"):
        alerts.set_alert("a", "x > 1", "email", ["not an address"], smtp={"host": "127.0.0.1"})
    with pytest.raises(OptionError, match="accepted: host, port"):
        alerts.set_alert("a", "x > 1", "email", ["ops@example.com"], smtp={"hots": "127.0.0.1"})
    with pytest.raises(ConfigError, match="cooldown must"):
        alerts.set_alert("a", "x > 1", cooldown="a while")
    with pytest.raises(ConfigError, match="needs a name"):
        alerts.set_alert(" ", "x > 1")
    with pytest.raises(AlertConditionError, match="unknown figure"):
        alerts.set_alert("a", "x > 1", known_names=["y"])
    assert alerts.alerts == []
    with pytest.raises(KeyNotFoundError, match="no alert named 'a'"):
        alerts.remove_alert("a")


def test_callable_fires_once_per_cooldown() -> None:
    received: list[AlertEvent] = []
    alerts = AlertManager()
    alert = alerts.set_alert("full", "hot.utilization_percentage > 85", received.append, cooldown="6 hours")
    assert alert.channel == "callable"
    assert alert.cooldown == timedelta(hours=6)

    assert alerts.evaluate({"hot.utilization_percentage": 50}, now=T0) == []
    fired = alerts.evaluate(FULL, now=T0)
    assert [e.name for e in fired] == ["full"]
    for minutes in (0, 1, 60, 359):
        assert alerts.evaluate(FULL, now=T0 + timedelta(minutes=minutes)) == []
    again = alerts.evaluate(FULL, now=T0 + timedelta(hours=6, seconds=1))
    assert [e.fired_at for e in again] == [T0 + timedelta(hours=6, seconds=1)]

    assert len(received) == 2
    first = received[0]
    assert (first.name, first.condition, first.channel, first.fired_at) == (
        "full", "hot.utilization_percentage > 85", "callable", T0,
    )
    assert first.values == {"hot.utilization_percentage": 91.5}
    assert fired[0].delivered
    assert fired[0].delivery_error is None
    assert [e.fired_at for e in alerts.history("full")] == [T0, T0 + timedelta(hours=6, seconds=1)]
    assert alerts.history("full", since=T0 + timedelta(hours=1)) == again
    assert alerts.history("other") == []


def test_failing_callable_is_recorded_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: AlertEvent) -> None:
        raise RuntimeError(f"pager down for {event.name}")

    alerts = AlertManager()
    alerts.set_alert("full", "hot.utilization_percentage > 85", broken)
    with caplog.at_level(logging.WARNING):
        (event,) = alerts.evaluate(FULL, now=T0)
    assert not event.delivered
    assert event.delivery_error == "RuntimeError: pager down for full"
    assert alerts.history()[0].delivery_error == "RuntimeError: pager down for full"
    assert "notification failed" in caplog.text
    assert alerts.evaluate(FULL, now=T0 + timedelta(minutes=1)) == []  # cooldown holds anyway


def test_disabled_replaced_and_removed_alerts() -> None:
    alerts = AlertManager()
    alerts.set_alert("full", "hot.utilization_percentage > 85", enabled=False)
    assert alerts.evaluate(FULL, now=T0) == []
    alerts.set_alert("full", "hot.utilization_percentage > 95", cooldown=0)
    assert [a.name for a in alerts.alerts] == ["full"]
    assert alerts.evaluate(FULL, now=T0) == []
    alerts.set_alert("full", "hot.utilization_percentage > 90", cooldown=0)
    assert len(alerts.evaluate(FULL, now=T0)) == 1
    assert len(alerts.evaluate(FULL, now=T0)) == 1  # no cooldown: fires every time
    alerts.remove_alert("full")
    assert alerts.alerts == []
    assert alerts.evaluate(FULL, now=T0) == []
    assert len(alerts.history("full")) == 2


def test_concurrent_evaluations_fire_once() -> None:
    received: list[AlertEvent] = []
    alerts = AlertManager()
    alerts.set_alert("full", "hot.utilization_percentage > 85", received.append, cooldown="1 hour")
    barrier = threading.Barrier(8)
    results: list[list[AlertEvent]] = []

    def run() -> None:
        barrier.wait()
        results.append(alerts.evaluate(FULL))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(len(r) for r in results) == 1
    assert len(received) == 1
    assert len(alerts.history()) == 1


def test_cooldown_holds_across_managers_sharing_a_sqlite_catalog(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    first, second = AlertManager(SQLiteCatalog(path)), AlertManager(SQLiteCatalog(path))
    assert isinstance(SQLiteCatalog(path), AlertHistory)
    for alerts in (first, second):
        alerts.set_alert("full", "hot.utilization_percentage > 85", cooldown="6 hours")
    assert len(first.evaluate(FULL, now=T0)) == 1
    assert second.evaluate(FULL, now=T0 + timedelta(hours=2)) == []
    assert len(second.evaluate(FULL, now=T0 + timedelta(hours=6))) == 1
    assert first.evaluate(FULL, now=T0 + timedelta(hours=7)) == []
    fired = [e.fired_at for e in AlertManager(SQLiteCatalog(path)).history("full")]
    assert fired == [T0, T0 + timedelta(hours=6)]
    assert first.last_fired("full") == T0 + timedelta(hours=6)


def test_event_round_trips_through_json() -> None:
    event = AlertEvent(
        "full", "x > 1", T0, {"x": 2.0, "y": None}, "webhook", ("http://127.0.0.1:1/hook",),
        delivered=False, delivery_error="refused",
    )
    assert AlertEvent.from_dict(json.loads(json.dumps(event.to_dict()))) == event
    history = MemoryAlertHistory()
    history.add_alert_event("full", T0, event.to_dict())
    assert history.alert_events(since=T0 + timedelta(seconds=1)) == []
    assert [AlertEvent.from_dict(e) for e in history.alert_events(name="full")] == [event]


def test_html_repr_lists_alerts_and_last_firing() -> None:
    alerts = AlertManager()
    assert "no alerts" in alerts._repr_html_()
    alerts.set_alert("full", "hot.utilization_percentage > 85", cooldown="6 hours")
    alerts.set_alert("slow", "warm.read_latency_p95 > 200 ms", cooldown="1 day")
    alerts.evaluate(FULL, now=T0)
    page = alerts._repr_html_()
    assert "hot.utilization_percentage &gt; 85" in page
    assert "2026-11-30 12:00:00 UTC" in page
    assert "never" in page
    assert "6 hours" in page
    assert "1 day" in page
    assert "full" in repr(alerts)
    assert "slow" in repr(alerts)


# -- log -----------------------------------------------------------------------------------


def test_log_channel_fires_once_per_cooldown(caplog: pytest.LogCaptureFixture) -> None:
    alerts = AlertManager()
    alerts.set_alert("full", "hot.utilization_percentage > 85", "log", cooldown="30 min")
    with caplog.at_level(logging.WARNING, logger="memories_geo.monitor.alerts"):
        for minutes in range(0, 61, 10):
            alerts.evaluate(FULL, now=T0 + timedelta(minutes=minutes))
    fired = [r for r in caplog.records if r.name == "memories_geo.monitor.alerts"]
    assert len(fired) == 3  # at 0, 30 and 60 minutes
    assert all(r.levelno == logging.WARNING for r in fired)
    assert fired[0].getMessage() == (
        "alert full fired: hot.utilization_percentage > 85 (hot.utilization_percentage = 91.5)"
    )
    assert fired[0].alert_event["values"] == {"hot.utilization_percentage": 91.5}  # type: ignore[attr-defined]
    assert all(e.delivered for e in alerts.history())


# -- webhook -------------------------------------------------------------------------------


class _Hook:
    """A real HTTP server on 127.0.0.1 keeping the requests it receives."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = 500 if hook.fail_next > 0 else 200
                hook.fail_next -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[_Hook]:
    server = _Hook()
    yield server
    server.close()


def test_webhook_posts_the_event_once_per_cooldown(hook: _Hook) -> None:
    url = f"http://bot:{PASSWORD}@127.0.0.1:{hook.port}/hooks/alerts?token={PASSWORD}"
    alerts = AlertManager()
    alert = alerts.set_alert(
        "full", "hot.utilization_percentage > 85", "webhook", [url], cooldown="1 hour"
    )
    assert alert.recipients == (f"http://bot:***@127.0.0.1:{hook.port}/hooks/alerts",)
    for minutes in (0, 5, 59):
        alerts.evaluate(FULL, now=T0 + timedelta(minutes=minutes))
    assert len(hook.requests) == 1
    request = hook.requests[0]
    assert request["path"] == f"/hooks/alerts?token={PASSWORD}"
    assert request["headers"]["Content-Type"] == "application/json"
    body = json.loads(request["body"])
    assert body == {
        "name": "full",
        "condition": "hot.utilization_percentage > 85",
        "fired_at": T0.isoformat(),
        "values": {"hot.utilization_percentage": 91.5},
        "channel": "webhook",
        "recipients": [f"http://bot:***@127.0.0.1:{hook.port}/hooks/alerts"],
    }
    alerts.evaluate(FULL, now=T0 + timedelta(hours=1))
    assert len(hook.requests) == 2
    history = alerts.history()
    assert [e.delivered for e in history] == [True, True]
    stored = json.dumps([e.to_dict() for e in history])
    assert PASSWORD not in stored
    assert PASSWORD not in repr(alert)
    assert PASSWORD not in repr(alerts)
    assert PASSWORD not in alerts._repr_html_()


def test_webhook_retries_once(hook: _Hook) -> None:
    alerts = AlertManager()
    alerts.set_alert("full", "hot.utilization_percentage > 85", "webhook", f"http://127.0.0.1:{hook.port}/a")
    hook.fail_next = 1
    (event,) = alerts.evaluate(FULL, now=T0)
    assert event.delivered
    assert len(hook.requests) == 2
    hook.fail_next = 2
    (event,) = alerts.evaluate(FULL, now=T0 + timedelta(hours=1))
    assert not event.delivered
    assert len(hook.requests) == 4
    assert event.delivery_error is not None
    assert "HTTP Error 500" in event.delivery_error


def test_webhook_to_a_dead_port_is_recorded_undelivered(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    alerts = AlertManager()
    url = f"http://127.0.0.1:{port}/hook?key={PASSWORD}"
    alerts.set_alert("full", "hot.utilization_percentage > 85", "webhook", [url])
    with caplog.at_level(logging.WARNING):
        (event,) = alerts.evaluate(FULL, now=T0)
    assert not event.delivered
    assert event.delivery_error is not None
    assert f"http://127.0.0.1:{port}/hook" in event.delivery_error
    assert "refused" in event.delivery_error.lower()
    (stored,) = alerts.history()
    assert not stored.delivered
    assert stored.delivery_error == event.delivery_error
    assert "notification failed" in caplog.text
    assert PASSWORD not in caplog.text
    assert PASSWORD not in json.dumps(stored.to_dict())


def test_redact_webhook_masks_token_like_path_segments() -> None:
    url = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX?x=1"
    assert redact_webhook(url) == "https://hooks.slack.com/services/T00000000/B00000000/***"


# -- email ---------------------------------------------------------------------------------


class _Mailbox:
    """An aiosmtpd handler keeping what it receives."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(
            (
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message_from_bytes(envelope.original_content, policy=policy.default),
            )
        )
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[_Mailbox, int]]:
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


def test_email_fires_once_per_cooldown(smtp_server: tuple[_Mailbox, int]) -> None:
    mailbox, port = smtp_server
    alerts = AlertManager()
    alerts.set_alert(
        "hot-storage-nearly-full", "hot.utilization_percentage > 85", notification_channel="email",
        recipients=["ops@example.com", "Data Team <data@example.com>"], cooldown="6 hours",
        smtp={"host": "127.0.0.1", "port": port, "sender": "alerts@example.com", "timeout": 5},
    )
    for hours in (0, 1, 5):
        alerts.evaluate(FULL, now=T0 + timedelta(hours=hours))
    assert len(mailbox.envelopes) == 1
    sender, recipients, message = mailbox.envelopes[0]
    assert sender == "alerts@example.com"
    assert recipients == ["ops@example.com", "data@example.com"]
    subject = "[memories-geo] alert hot-storage-nearly-full: hot.utilization_percentage > 85"
    assert message["Subject"] == subject
    assert message["To"] == "ops@example.com, Data Team <data@example.com>"
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode()
    assert "hot.utilization_percentage = 91.5" in body
    assert "2026-11-30 12:00:00 UTC" in body
    alerts.evaluate(FULL, now=T0 + timedelta(hours=6))
    assert len(mailbox.envelopes) == 2
    assert all(e.delivered and e.channel == "email" for e in alerts.history())


def test_email_settings_from_the_environment(
    smtp_server: tuple[_Mailbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    mailbox, port = smtp_server
    monkeypatch.setenv("MEMORIES_GEO_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("MEMORIES_GEO_SMTP_PORT", str(port))
    monkeypatch.setenv("MEMORIES_GEO_SMTP_SENDER", "env@example.com")
    alerts = AlertManager()
    alerts.set_alert("full", "hot.utilization_percentage > 85", "email", "ops@example.com")
    (event,) = alerts.evaluate(FULL, now=T0)
    assert event.delivered
    assert mailbox.envelopes[0][0] == "env@example.com"


def test_smtp_password_never_shown(
    smtp_server: tuple[_Mailbox, int], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    mailbox, port = smtp_server
    alerts = AlertManager(SQLiteCatalog(tmp_path / "c.sqlite"))
    alert = alerts.set_alert(
        "full", "hot.utilization_percentage > 85", "email", ["ops@example.com"],
        smtp={"host": "127.0.0.1", "port": port, "username": "bot", "password": PASSWORD},
    )
    with caplog.at_level(logging.DEBUG):
        (event,) = alerts.evaluate(FULL, now=T0)
    # the test server offers no AUTH: the login fails, and is recorded without the password
    assert not event.delivered
    assert mailbox.envelopes == []
    assert event.delivery_error is not None
    assert "AUTH" in event.delivery_error
    shown = [repr(alert), str(alert), repr(alert.notifier), repr(alerts), alerts._repr_html_(),
             caplog.text, json.dumps([e.to_dict() for e in alerts.history()]), event.delivery_error]
    for text in shown:
        assert PASSWORD not in text
    assert PASSWORD not in (tmp_path / "c.sqlite").read_bytes().decode("latin-1")
