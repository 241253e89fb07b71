"""What a migration asks for: :class:`MigrationJob` and its validated :class:`Selection`.

A job is a plain, frozen description (source and destination tier, which keys, what to
check and keep); :func:`~memories_geo.lifecycle.execute.execute_migration` runs it.
Every criterion is checked when the job is made.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from memories_geo.entry import Entry
from memories_geo.errors import MigrationError, OptionError
from memories_geo.keys import new_id
from memories_geo.types import Kind
from memories_geo.units import parse_moment, parse_size

__all__ = ["CRITERIA", "MigrationError", "MigrationJob", "Selection"]

#: Accepted ``selection_criteria`` keys and what each selects.
CRITERIA: Mapping[str, str] = {
    "key": "glob (or list of globs, any may match) over keys, e.g. 'sentinel2/*'",
    "kinds": "kinds of data: 'raster', 'vector', 'timeseries', 'array' (one or a list)",
    "tags": "tags that must all be present (one or a list)",
    "min_size": "smallest stored size, e.g. '100MB', '1.5 GiB' or a number of bytes",
    "max_size": "largest stored size, same forms as min_size",
    "last_accessed_before": "last opened (or, never opened, saved) before: '30 days ago', an ISO date",
    "created_before": "current version saved before: '90 days ago', an ISO date",
}


def _names(value: Any, criterion: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise OptionError(f"selection criterion {criterion!r} takes a string or a list of strings; got {value!r}")


def _moment_text(value: datetime | timedelta) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    seconds = value.total_seconds()
    for unit, length in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds and seconds % length == 0:
            return f"{seconds / length:g} {unit} ago"
    return f"{seconds:g} seconds ago"


@dataclass(frozen=True)
class Selection:
    """Validated selection criteria; every given criterion must match.

    Built by :meth:`from_criteria` from a job's ``selection_criteria``; relative times
    (``"30 days ago"``) are resolved when the job runs (:meth:`matches`'s ``now``).
    """

    key: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    min_size: int | None = None
    max_size: int | None = None
    last_accessed_before: datetime | timedelta | None = None
    created_before: datetime | timedelta | None = None

    @classmethod
    def from_criteria(cls, criteria: Mapping[str, Any] | None) -> Selection:
        """Check ``criteria`` (keys in :data:`CRITERIA`) and normalise them.

        Raises
        ------
        OptionError
            An unknown criterion (the message lists the accepted ones) or a bad value.
        """
        criteria = dict(criteria or {})
        unknown = sorted(set(criteria) - set(CRITERIA))
        if unknown:
            accepted = "; ".join(f"{k}: {v}" for k, v in CRITERIA.items())
            raise OptionError(f"unknown selection criteria {unknown}; accepted: {accepted}")
        kinds = _names(criteria.get("kinds", ()), "kinds")
        valid = [k.value for k in Kind]
        bad = [k for k in kinds if k not in valid]
        if bad:
            raise OptionError(f"selection criterion 'kinds' got {bad}; accepted kinds: {valid}")
        given = {n: v for n, v in criteria.items() if v is not None}

        def size(n: str) -> int | None:
            return parse_size(given[n], name=f"selection criterion {n!r}") if n in given else None

        def moment(n: str) -> datetime | timedelta | None:
            return parse_moment(given[n], name=f"selection criterion {n!r}") if n in given else None

        return cls(key=_names(criteria.get("key", ()), "key"), kinds=kinds,
                   tags=_names(criteria.get("tags", ()), "tags"), min_size=size("min_size"),
                   max_size=size("max_size"), last_accessed_before=moment("last_accessed_before"),
                   created_before=moment("created_before"))

    def to_criteria(self) -> dict[str, Any]:
        """The criteria as JSON-able values (what the journal stores)."""
        out: dict[str, Any] = {}
        for name in ("key", "kinds", "tags"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        for name in ("min_size", "max_size"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for name in ("last_accessed_before", "created_before"):
            value = getattr(self, name)
            if value is not None:
                out[name] = _moment_text(value)
        return out

    def matches(self, entry: Entry, now: datetime) -> bool:
        """Whether ``entry`` meets every criterion, relative times counted back from ``now``."""
        if self.key and not any(fnmatch.fnmatchcase(entry.key, g) for g in self.key):
            return False
        if self.kinds and entry.kind not in self.kinds:
            return False
        if self.tags and not set(self.tags) <= set(entry.tags):
            return False
        if self.min_size is not None and entry.size_bytes < self.min_size:
            return False
        if self.max_size is not None and entry.size_bytes > self.max_size:
            return False
        accessed = entry.last_accessed_at or entry.created_at
        if self.last_accessed_before is not None and not _before(accessed, self.last_accessed_before, now):
            return False
        return self.created_before is None or _before(entry.created_at, self.created_before, now)


def _before(stamp: str | None, limit: datetime | timedelta, now: datetime) -> bool:
    if stamp is None:
        return False
    moment = datetime.fromisoformat(stamp)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    cutoff = now - limit if isinstance(limit, timedelta) else limit
    return moment < cutoff


@dataclass(frozen=True)
class MigrationJob:
    """A migration of keys from one tier to another: which keys, and how.

    Parameters
    ----------
    source_tier, destination_tier : str
        Configured tier names. The same tier is accepted only with ``format=``
        (a conversion in place).
    selection_criteria : mapping, optional
        Which current versions of the source tier move (all of them by default); the
        accepted keys are in :data:`CRITERIA`: ``key`` (glob), ``kinds``, ``tags``,
        ``min_size``/``max_size`` (``"100MB"``, ``"1.5 GiB"``),
        ``last_accessed_before``/``created_before`` (``"30 days ago"``, an ISO date).
    validation : bool
        Check a converted or copied key by reading both sides back and comparing them
        (byte moves are always verified against the checksum manifest).
    delete_after_migration : bool
        Delete the source once the destination is committed (pinned versions are
        retired instead). ``False`` keeps the source version and makes a new version on
        the destination the current one.
    metadata_update : bool
        Must be ``True``: the catalog always records where a version is (a migration
        that did not would lose track of the data).
    format : str, optional
        Convert to this format on the destination (``"geoparquet"``, ``"postgis"``,
        ``"zarr"``, ``"cog"``...). Default: keep the format when the destination can
        hold it, else the destination tier's default for the kind.
    reencode : bool
        Re-write each key with the destination tier's compression level instead of
        copying its bytes (Zarr blosc-lz4 on a ``fast`` tier becomes zstd with shards on
        a ``maximum`` one; a COG gets the destination's codec), checked by reading both
        sides back. Default ``False``: same-format moves between file tiers are byte
        copies.
    format_options : mapping, optional
        Save keywords of the destination format (e.g. ``{"blocksize": 256}`` for a COG
        profile change), checked against the format's accepted ones; implies
        ``reencode``.
    id : str, optional
        The job's id in the migration journal (default: a new unique id). Running a
        job again with the same id resumes it.

    Raises
    ------
    OptionError
        Unknown criteria or bad values, named with the accepted ones.

    Examples
    --------
    >>> job = MigrationJob(source_tier="hot", destination_tier="warm",
    ...                    selection_criteria={"last_accessed_before": "30 days ago", "min_size": "100MB"})
    >>> job.selection.min_size
    100000000
    """

    source_tier: str
    destination_tier: str
    selection_criteria: Mapping[str, Any] = field(default_factory=dict)
    validation: bool = True
    delete_after_migration: bool = True
    metadata_update: bool = True
    format: str | None = None
    reencode: bool = False
    format_options: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    selection: Selection = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("source_tier", "destination_tier", "id"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise OptionError(f"{name} must be a non-empty string; got {getattr(self, name)!r}")
        for name in ("validation", "delete_after_migration", "metadata_update", "reencode"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"{name} must be True or False; got {getattr(self, name)!r}")
        if not self.metadata_update:
            raise OptionError(
                "metadata_update must be True: the catalog always records where each version is "
                "stored, so a migration that left it unchanged would lose the data; leave it out"
            )
        if self.format is not None and not isinstance(self.format, str):
            raise OptionError(f"format must be a format name such as 'geoparquet'; got {self.format!r}")
        if not isinstance(self.format_options, Mapping) or not all(
                isinstance(k, str) for k in self.format_options):
            raise OptionError(f"format_options must map save keywords to values; got {self.format_options!r}")
        object.__setattr__(self, "format_options", dict(self.format_options))
        if self.format_options:
            object.__setattr__(self, "reencode", True)
        if self.source_tier == self.destination_tier and self.format is None and not self.reencode:
            raise OptionError(
                f"source_tier and destination_tier are both {self.source_tier!r}; name another "
                "destination, or pass format= (or reencode=True) to rewrite the keys in place"
            )
        object.__setattr__(self, "selection_criteria", dict(self.selection_criteria or {}))
        object.__setattr__(self, "selection", Selection.from_criteria(self.selection_criteria))

    def to_dict(self) -> dict[str, Any]:
        """The job as JSON-able values (what the journal stores)."""
        return {
            "id": self.id, "source_tier": self.source_tier, "destination_tier": self.destination_tier,
            "selection_criteria": self.selection.to_criteria(), "validation": self.validation,
            "delete_after_migration": self.delete_after_migration, "metadata_update": self.metadata_update,
            "format": self.format, "reencode": self.reencode, "format_options": dict(self.format_options),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as canonical JSON."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MigrationJob:
        """Rebuild a job from :meth:`to_dict`."""
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})

    def describe(self) -> str:
        """One line: tiers, conversion and criteria."""
        target = f" as {self.format}" if self.format else ""
        if self.reencode:
            options = ", ".join(f"{k}={v!r}" for k, v in self.format_options.items())
            target += f" re-encoded{f' ({options})' if options else ''}"
        keep = "" if self.delete_after_migration else ", keeping the source"
        criteria = ", ".join(f"{k}={v!r}" for k, v in self.selection.to_criteria().items()) or "every key"
        return f"{self.source_tier} -> {self.destination_tier}{target}{keep} ({criteria})"


_FIELDS = ("id", "source_tier", "destination_tier", "selection_criteria", "validation",
           "delete_after_migration", "metadata_update", "format", "reencode", "format_options")
