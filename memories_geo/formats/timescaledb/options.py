"""The ``timescaledb`` format's keywords: save settings, intervals, and ``open``'s resampling.

Intervals (``chunk_time_interval``, ``continuous_aggregates``, ``resample``) are read
once into :class:`Interval`: a number of calendar months, or a fixed number of
microseconds. Every bad value is an :class:`~memories_geo.errors.OptionError` naming the
accepted ones.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from memories_geo.errors import OptionError

__all__ = [
    "AGGREGATES",
    "ENGINES",
    "ON_DUPLICATE",
    "OPEN_OPTIONS",
    "PARTITIONING",
    "WRITE_OPTIONS",
    "Interval",
    "Settings",
    "parse_interval",
    "settings_from",
]

#: ``agg=`` choices of ``open(resample=...)``.
AGGREGATES = ("mean", "min", "max", "sum", "count", "first", "last")
#: ``on_duplicate=`` choices of an append.
ON_DUPLICATE = ("error", "skip", "replace")
#: ``partitioning=`` choices: detect the extension, require it, or use native partitions.
PARTITIONING = ("auto", "timescaledb", "native")
#: ``engine=`` choices (as the ``postgis`` format's).
ENGINES = ("psycopg", "adbc")

WRITE_OPTIONS: Mapping[str, str] = {
    "chunk_time_interval": "chunk (hypertable) or partition (native) width: '1 month' (default), '7 days'",
    "compression_enabled": "compress the loaded chunks (TimescaleDB; default True)",
    "segmentby": "station column(s): compression segments, resample groups, duplicate keys (default: auto)",
    "orderby": "compression order: columns, each optionally with ' ASC' or ' DESC' (default: time DESC)",
    "time_column": "the time axis (default: the datetime column or index the kind was detected from)",
    "continuous_aggregates": "bucket widths to keep continuous aggregates for, e.g. ['1 hour', '1 day']",
    "on_duplicate": "mode='a': rows whose (station, time) is stored: 'error' (default), 'skip', 'replace'",
    "partitioning": "'auto' (TimescaleDB when installed, else native partitions), 'timescaledb' or 'native'",
    "engine": "load with 'psycopg' (binary COPY, default) or 'adbc'",
}

OPEN_OPTIONS: Mapping[str, str] = {
    "resample": "bucket width ('1D', '1h', '15min', 'MS', '1 month'...): aggregates per bucket and station",
    "agg": f"aggregate of resample=: one of {list(AGGREGATES)} (default 'mean')",
    "where": "filter rows: {column: value} (None is IS NULL, a list is IN) or a psycopg.sql.Composable",
    "engine": "read with 'adbc' (default if installed and the pool has 2+ connections) or 'psycopg'",
}

_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "min": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_US["w"] = 7 * _US["d"]
#: pandas offset aliases, case-sensitive ("MS" is a month start, "ms" a millisecond).
_PANDAS_UNITS: dict[str, tuple[str, int]] = {
    "D": ("d", 1), "h": ("h", 1), "H": ("h", 1), "min": ("min", 1), "T": ("min", 1), "s": ("s", 1),
    "S": ("s", 1), "ms": ("ms", 1), "L": ("ms", 1), "us": ("us", 1), "U": ("us", 1), "W": ("w", 1),
    "MS": ("mon", 1), "QS": ("mon", 3), "YS": ("mon", 12), "AS": ("mon", 12),
}
#: PostgreSQL-style unit words (case-insensitive), singular or plural.
_WORDS: dict[str, tuple[str, int]] = {
    "microsecond": ("us", 1), "usec": ("us", 1), "millisecond": ("ms", 1), "msec": ("ms", 1),
    "second": ("s", 1), "sec": ("s", 1), "minute": ("min", 1), "hour": ("h", 1), "hr": ("h", 1),
    "day": ("d", 1), "week": ("w", 1), "month": ("mon", 1), "mon": ("mon", 1), "quarter": ("mon", 3),
    "year": ("mon", 12), "yr": ("mon", 12), "d": ("d", 1), "w": ("w", 1),
}
_END_ANCHORED = {"M", "ME", "Y", "YE", "A", "Q", "QE", "BM", "BME", "SM", "SME", "BQ", "BY", "BA"}
_FORMS = (
    "an interval such as '1 month', '7 days', '12 hours', '15 minutes', a pandas alias such as "
    "'1D', '6h', '15min', 'MS' (month start), 'QS', 'YS', or a datetime.timedelta"
)
_AMOUNT = re.compile(r"^\s*(\d+)?\s*([A-Za-z]+)\s*$")


@dataclass(frozen=True)
class Interval:
    """A positive interval: whole calendar months, or a fixed number of microseconds.

    Examples
    --------
    >>> parse_interval("1 month", "resample").text
    '1 month'
    >>> parse_interval("36h", "resample").text
    '129600 seconds'
    """

    months: int = 0
    micros: int = 0

    @property
    def text(self) -> str:
        """PostgreSQL interval text (``'3 months'``, ``'86400 seconds'``)."""
        if self.months:
            return f"{self.months} month{'s' if self.months > 1 else ''}"
        if self.micros % 1_000_000 == 0:
            return f"{self.micros // 1_000_000} seconds"
        return f"{self.micros} microseconds"

    def __str__(self) -> str:
        return self.text


def parse_interval(value: Any, what: str) -> Interval:
    """Read ``value`` as an :class:`Interval`; ``what`` names the keyword in errors.

    Raises
    ------
    OptionError
        For anything that is not a positive interval of the accepted forms, or a
        month-end alias ('M', 'ME', 'Y'...) whose bins pandas labels by their end.

    Examples
    --------
    >>> parse_interval("MS", "resample")
    Interval(months=1, micros=0)
    >>> parse_interval("15min", "resample").micros
    900000000
    """
    import pandas as pd

    if isinstance(value, dt.timedelta | pd.Timedelta):
        micros, rest = divmod(pd.Timedelta(value).value, 1000)
        if micros > 0 and not rest:
            return Interval(micros=int(micros))
        raise OptionError(f"{what}={value!r} must be a positive whole number of microseconds; give {_FORMS}")
    if isinstance(value, str):
        match = _AMOUNT.match(value)
        if match is not None:
            count = int(match.group(1) or 1)
            unit = match.group(2)
            if unit in _END_ANCHORED:
                raise OptionError(
                    f"{what}={value!r}: end-anchored bins are not supported; use 'MS', 'QS', 'YS' "
                    "(periods labelled by their start) or '1 month'"
                )
            found = _PANDAS_UNITS.get(unit) or _WORDS.get(unit.lower().removesuffix("s")) or _WORDS.get(
                unit.lower()
            )
            if found is not None and count > 0:
                base, factor = found
                if base == "mon":
                    return Interval(months=count * factor)
                return Interval(micros=count * factor * _US[base])
        try:
            delta = pd.Timedelta(value)
        except (ValueError, TypeError):
            delta = None
        if delta is not None and not pd.isna(delta):
            return parse_interval(delta, what)
    raise OptionError(f"{what}={value!r} is not an interval; give {_FORMS}")


@dataclass(frozen=True)
class Settings:
    """Save settings of one version (what was asked, merged over the appended version's).

    ``segmentby`` and ``orderby`` are ``None`` until resolved against the frame: the
    station column found by name, and the time column descending.
    """

    chunk_time_interval: Interval = Interval(months=1)
    compression_enabled: bool = True
    segmentby: tuple[str, ...] | None = None
    orderby: tuple[tuple[str, bool], ...] | None = None
    time_column: str | None = None
    continuous_aggregates: tuple[Interval, ...] = ()
    on_duplicate: str = "error"
    partitioning: str = "auto"
    engine: str = "psycopg"

    def recorded(self) -> dict[str, Any]:
        """JSON form kept in the version's info (an append starts from it)."""
        return {
            "chunk_time_interval": [self.chunk_time_interval.months, self.chunk_time_interval.micros],
            "compression_enabled": self.compression_enabled,
            "segmentby": list(self.segmentby) if self.segmentby is not None else None,
            "orderby": [[c, d] for c, d in self.orderby] if self.orderby is not None else None,
            "continuous_aggregates": [[i.months, i.micros] for i in self.continuous_aggregates],
            "time_column": self.time_column,
        }

    @classmethod
    def from_recorded(cls, recorded: Mapping[str, Any]) -> Settings:
        """The settings of a stored version (partitioning, engine and ``on_duplicate`` aside)."""
        months, micros = recorded["chunk_time_interval"]
        return cls(
            chunk_time_interval=Interval(months, micros),
            compression_enabled=bool(recorded["compression_enabled"]),
            segmentby=tuple(recorded["segmentby"]) if recorded.get("segmentby") is not None else None,
            orderby=tuple((c, bool(d)) for c, d in recorded["orderby"]) if recorded.get("orderby") else None,
            continuous_aggregates=tuple(Interval(m, u) for m, u in recorded.get("continuous_aggregates", [])),
            time_column=recorded.get("time_column"),
        )


def _choice(value: Any, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise OptionError(f"{what} must be one of {list(choices)}, got {value!r}")
    return str(value)


def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise OptionError(f"{what} must be a column name or a list of column names, got {value!r}")


def _orderby(value: Any) -> tuple[tuple[str, bool], ...]:
    items = []
    for item in _names(value, "orderby"):
        column, descending = item, False
        words = item.rsplit(" ", 1)
        if len(words) == 2 and words[1].upper() in ("ASC", "DESC"):
            column, descending = words[0], words[1].upper() == "DESC"
        items.append((column, descending))
    return tuple(items)


def settings_from(extra: Mapping[str, Any], previous: Settings | None = None) -> Settings:
    """Check the save keywords in ``extra`` and merge them over ``previous`` (an append's).

    Column names are checked later, against the frame.

    Raises
    ------
    OptionError
        For an unknown keyword or a bad value (the message lists the accepted ones).

    Examples
    --------
    >>> settings_from({"chunk_time_interval": "7 days"}).chunk_time_interval.text
    '604800 seconds'
    """
    unknown = sorted(set(extra) - set(WRITE_OPTIONS))
    if unknown:
        raise OptionError(
            f"format 'timescaledb' does not take {unknown} when saving; "
            f"accepted keywords: {list(WRITE_OPTIONS)}"
        )
    base = previous or Settings()
    changes: dict[str, Any] = {}
    if "chunk_time_interval" in extra:
        changes["chunk_time_interval"] = parse_interval(extra["chunk_time_interval"], "chunk_time_interval")
    if "compression_enabled" in extra:
        if not isinstance(extra["compression_enabled"], bool):
            raise OptionError(
                f"compression_enabled must be True or False, got {extra['compression_enabled']!r}"
            )
        changes["compression_enabled"] = extra["compression_enabled"]
    if "segmentby" in extra:
        value = extra["segmentby"]
        changes["segmentby"] = None if value is None else _names(value, "segmentby")
    if "orderby" in extra:
        changes["orderby"] = None if extra["orderby"] is None else _orderby(extra["orderby"])
    if "time_column" in extra:
        value = extra["time_column"]
        if value is not None and not isinstance(value, str):
            raise OptionError(f"time_column must be a column name (or the index's name), got {value!r}")
        changes["time_column"] = value
    if "continuous_aggregates" in extra:
        widths = extra["continuous_aggregates"] or ()
        if isinstance(widths, str | dt.timedelta):
            widths = (widths,)
        if not isinstance(widths, list | tuple):
            raise OptionError(f"continuous_aggregates must be a list of bucket widths, got {widths!r}")
        parsed = tuple(parse_interval(w, "continuous_aggregates") for w in widths)
        changes["continuous_aggregates"] = tuple(dict.fromkeys(parsed))
    if "on_duplicate" in extra:
        changes["on_duplicate"] = _choice(extra["on_duplicate"], ON_DUPLICATE, "on_duplicate")
    if "partitioning" in extra:
        changes["partitioning"] = _choice(extra["partitioning"], PARTITIONING, "partitioning")
    if "engine" in extra:
        changes["engine"] = _choice(extra["engine"] or "psycopg", ENGINES, "engine")
    return replace(base, **changes)
