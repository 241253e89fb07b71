"""Sizes and ages as people write them: ``"100MB"``, ``"1.5 GiB"``, ``"30 days ago"``.

Both parsers raise :class:`~memories_geo.errors.OptionError` naming the accepted forms,
so a typo in a migration's selection criteria fails when the job is made, not after
hours of copying.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from memories_geo.errors import OptionError

__all__ = ["DURATION_UNITS", "SIZE_UNITS", "parse_duration", "parse_moment", "parse_size"]

#: Size units (case-insensitive): decimal (kB = 1000 B) and binary (KiB = 1024 B).
SIZE_UNITS: dict[str, int] = {
    "b": 1,
    **{u: 1000**p for p, u in enumerate(("kb", "mb", "gb", "tb", "pb"), start=1)},
    **{u: 1024**p for p, u in enumerate(("kib", "mib", "gib", "tib", "pib"), start=1)},
}

#: Duration units and their length in seconds (a month is 30 days, a year 365).
DURATION_UNITS: dict[str, int] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400),
    **dict.fromkeys(("month", "months"), 30 * 86400),
    **dict.fromkeys(("y", "year", "years"), 365 * 86400),
}

_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")
_SIZE_FORMS = "a number of bytes, or a number and a unit such as '100MB', '1.5 GiB' or '500 kB'"
_AGE_FORMS = ("a duration such as '30 days ago', '2 weeks', '12h' or '1.5 years ago', an ISO 8601 "
              "date or time, a datetime or a timedelta")


def parse_size(value: int | float | str, *, name: str = "size") -> int:
    """A size in bytes from a number of bytes or a string with a unit.

    Parameters
    ----------
    value : int, float or str
        ``1048576``, ``"100MB"`` (decimal: 10**8 bytes), ``"1.5 GiB"`` (binary),
        ``"500 kB"``; units are case-insensitive (:data:`SIZE_UNITS`).
    name : str
        What the value is, for the error message.

    Raises
    ------
    OptionError
        For a negative size, an unknown unit or anything else.

    Examples
    --------
    >>> parse_size("100MB"), parse_size("1.5 GiB"), parse_size(2048)
    (100000000, 1610612736, 2048)
    """
    if isinstance(value, bool):
        raise OptionError(f"{name} must be {_SIZE_FORMS}; got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise OptionError(f"{name} must not be negative; got {value!r}")
        return int(value)
    match = _NUMBER_UNIT.match(str(value))
    unit = match.group(2).lower() if match else ""
    if match is None or (unit and unit not in SIZE_UNITS):
        raise OptionError(
            f"{name} must be {_SIZE_FORMS}; got {value!r} (units: {', '.join(_size_unit_names())})"
        )
    return int(float(match.group(1)) * SIZE_UNITS[unit or "b"])


def _size_unit_names() -> list[str]:
    return ["B", "kB", "MB", "GB", "TB", "PB", "KiB", "MiB", "GiB", "TiB", "PiB"]


def parse_duration(value: str | timedelta | int | float, *, name: str = "duration") -> timedelta:
    """A duration from ``"30 days"``, ``"30 days ago"``, ``"12h"``, a timedelta or seconds.

    A trailing ``ago`` (or ``idle``) is allowed and ignored; units are listed in
    :data:`DURATION_UNITS` (a month counts 30 days, a year 365).

    Raises
    ------
    OptionError
        For a negative duration, an unknown unit or anything else.

    Examples
    --------
    >>> parse_duration("30 days ago")
    datetime.timedelta(days=30)
    >>> parse_duration("1.5h")
    datetime.timedelta(seconds=5400)
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        for suffix in (" ago", " idle"):
            text = text.removesuffix(suffix)
        match = _NUMBER_UNIT.match(text)
        unit = match.group(2) if match else ""
        if match is None or unit not in DURATION_UNITS:
            units = ", ".join(sorted({u for u in DURATION_UNITS if len(u) > 3 and u.endswith("s")}))
            raise OptionError(f"{name} must be {_AGE_FORMS}; got {value!r} (units: {units})")
        seconds = float(match.group(1)) * DURATION_UNITS[unit]
    if seconds < 0:
        raise OptionError(f"{name} must not be negative; got {value!r}")
    return timedelta(seconds=seconds)


def parse_moment(value: str | datetime | timedelta, *, name: str = "time") -> datetime | timedelta:
    """An absolute UTC time, or how long ago, from what a user wrote.

    Returns a timezone-aware :class:`~datetime.datetime` for a date or time
    (``"2024-01-31"``, ``"2024-01-31T12:00Z"``; naive means UTC) and a
    :class:`~datetime.timedelta` for a duration (``"30 days ago"``); resolve the
    latter against the time of use with ``now - delta``.

    Raises
    ------
    OptionError
        For anything else, naming the accepted forms.

    Examples
    --------
    >>> parse_moment("30 days ago")
    datetime.timedelta(days=30)
    >>> parse_moment("2024-01-31")
    datetime.datetime(2024, 1, 31, 0, 0, tzinfo=datetime.timezone.utc)
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, timedelta):
        return parse_duration(value, name=name)
    if isinstance(value, str) and value[:1].isdigit() and ("-" in value[:5]):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise OptionError(f"{name} must be {_AGE_FORMS}; got {value!r}") from None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if not isinstance(value, str):
        raise OptionError(f"{name} must be {_AGE_FORMS}; got {value!r}")
    return parse_duration(value, name=name)
