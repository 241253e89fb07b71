"""Lifecycle policies: the ``[[lifecycle]]`` tables of ``memories.toml``, parsed and checked.

A policy moves keys from one tier to another, either on a schedule or when a key is
opened::

    [[lifecycle]]
    from = "hot"
    to = "warm"
    after = "30 days idle"      # not opened for 30 days ("90 days old": saved 90 days ago)
    kinds = ["raster"]          # any selection criterion of a MigrationJob

    [[lifecycle]]
    from = "warm"
    to = "hot"
    on_access = true            # promotion: a key opened on warm moves up to hot

:class:`~memories_geo.config.StorageConfig` checks its policies against its tiers with
:func:`check_policies` when the configuration is read, so a typo fails then, not at the
first run; :mod:`memories_geo.lifecycle.policies` turns them into migrations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from memories_geo.errors import ConfigError
from memories_geo.types import Kind

__all__ = ["CRITERIA_KEYS", "POLICY_KEYS", "LifecyclePolicy", "check_policies", "parse_after"]

#: Settings of a ``[[lifecycle]]`` table besides the selection criteria, and what each means.
POLICY_KEYS: Mapping[str, str] = {
    "from": "the tier keys leave, e.g. 'hot'",
    "to": "the tier keys go to, e.g. 'warm'",
    "after": "when: '30 days idle' (not opened for 30 days), '90 days old' or '90 days' (saved so long ago)",
    "on_access": "true: move a key as soon as it is opened on 'from' (promotion; no 'after')",
    "format": "convert to this format on the way, e.g. 'geoparquet' (scheduled policies only)",
    "reencode": "true: rewrite keys with the destination tier's compression instead of copying bytes "
                "(scheduled policies only)",
}
#: Selection criteria a policy takes, as :class:`~memories_geo.lifecycle.MigrationJob` does.
CRITERIA_KEYS = ("key", "kinds", "tags", "min_size", "max_size", "last_accessed_before", "created_before")

#: Seconds per unit of ``after`` (a month counts 30 days, a year 365).
_UNITS: dict[str, int] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400),
    **dict.fromkeys(("month", "months"), 30 * 86400),
    **dict.fromkeys(("y", "year", "years"), 365 * 86400),
}
_AFTER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)(?:\s+(idle|old))?\s*$")
_AFTER_FORMS = ("'30 days idle' (since the last open), '90 days old' or '90 days' (since saved); "
                "units: seconds, minutes, hours, days, weeks, months, years")
#: Database tiers: a promotion on access moves files, which they do not hold.
_DATABASE_SCHEMES = ("postgresql:", "postgres:", "sqlite:")


def parse_after(value: Any, *, where: str = "after") -> tuple[timedelta, bool]:
    """The period of an ``after`` setting and whether it counts idle time.

    ``value`` is text (``"30 days idle"``, ``"90 days old"``, ``"12h"``) or, from Python, a
    :class:`~datetime.timedelta` (counted since the save).

    Returns
    -------
    (timedelta, bool)
        How long, and ``True`` when counted since the last open (``"... idle"``),
        ``False`` when counted since the version was saved (``"... old"`` or no word).

    Raises
    ------
    ConfigError
        For anything else, naming the accepted forms.

    Examples
    --------
    >>> parse_after("30 days idle")
    (datetime.timedelta(days=30), True)
    >>> parse_after("1.5 weeks")
    (datetime.timedelta(days=10, seconds=43200), False)
    """
    if isinstance(value, timedelta) and value >= timedelta(0):
        return value, False
    match = _AFTER.match(value.lower()) if isinstance(value, str) else None
    if match is None or match.group(2) not in _UNITS:
        raise ConfigError(f"{where} must be {_AFTER_FORMS}; got {value!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    return timedelta(seconds=seconds), match.group(3) == "idle"


def _after_text(period: timedelta, idle: bool) -> str:
    seconds = period.total_seconds()
    unit, length = next(((u, n) for u, n in (("days", 86400), ("hours", 3600), ("minutes", 60))
                         if seconds % n == 0), ("seconds", 1))
    return f"{seconds / length:g} {unit} {'idle' if idle else 'old'}"


@dataclass(frozen=True)
class LifecyclePolicy:
    """One ``[[lifecycle]]`` policy: keys go from ``source_tier`` to ``destination_tier``.

    A *scheduled* policy (``after``, or criteria alone) is applied by
    ``memories-geo migrate --policy``, :func:`~memories_geo.lifecycle.apply_policies` or
    a :class:`~memories_geo.lifecycle.LifecycleRunner`; an *on access* policy moves a
    key up when it is opened (:func:`~memories_geo.lifecycle.promote_on_access`).

    Attributes
    ----------
    source_tier, destination_tier : str
        The ``from`` and ``to`` tiers.
    after : timedelta or None
        How long a version must have been idle (``idle=True``) or stored before it moves.
    idle : bool
        Whether ``after`` counts since the last open (else since the version was saved).
    on_access : bool
        Promotion when a key is opened on ``source_tier``.
    criteria : mapping
        Further selection criteria (``kinds``, ``key``, ``tags``, ``min_size``...).
    format : str or None
        Convert to this format on the way.
    reencode : bool
        Rewrite keys with the destination tier's compression instead of copying bytes.

    Examples
    --------
    >>> p = LifecyclePolicy.from_dict({"from": "hot", "to": "warm", "after": "30 days idle"})
    >>> p.describe()
    'hot -> warm after 30 days idle'
    >>> p.selection_criteria()
    {'last_accessed_before': datetime.timedelta(days=30)}
    """

    source_tier: str
    destination_tier: str
    after: timedelta | None = None
    idle: bool = True
    on_access: bool = False
    criteria: Mapping[str, Any] = field(default_factory=dict)
    format: str | None = None
    reencode: bool = False

    @property
    def scheduled(self) -> bool:
        """Whether the policy runs on a schedule (not on access)."""
        return not self.on_access

    def selection_criteria(self) -> dict[str, Any]:
        """The selection criteria of the migration this policy makes (``after`` included)."""
        out = dict(self.criteria)
        if self.after is not None:
            out["last_accessed_before" if self.idle else "created_before"] = self.after
        return out

    def to_dict(self) -> dict[str, Any]:
        """The policy as its ``[[lifecycle]]`` table (JSON-able)."""
        out: dict[str, Any] = {"from": self.source_tier, "to": self.destination_tier}
        if self.after is not None:
            out["after"] = _after_text(self.after, self.idle)
        if self.on_access:
            out["on_access"] = True
        if self.format is not None:
            out["format"] = self.format
        if self.reencode:
            out["reencode"] = True
        return {**out, **self.criteria}

    def describe(self) -> str:
        """One line: tiers, when, and criteria."""
        when = " on access" if self.on_access else ""
        if self.after is not None:
            when = f" after {_after_text(self.after, self.idle)}"
        target = f" as {self.format}" if self.format else ""
        target += " re-encoded" if self.reencode else ""
        criteria = ", ".join(f"{k}={v!r}" for k, v in self.criteria.items())
        criteria = f" ({criteria})" if criteria else ""
        return f"{self.source_tier} -> {self.destination_tier}{target}{when}{criteria}"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, where: str = "lifecycle") -> LifecyclePolicy:
        """Parse one ``[[lifecycle]]`` table (tiers are checked by :func:`check_policies`).

        Raises
        ------
        ConfigError
            An unknown setting (the message lists the accepted ones), a missing tier, a
            bad ``after`` or criterion, or settings that do not go together.
        """
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a table such as {{from = 'hot', to = 'warm', "
                              f"after = '30 days idle'}}; got {raw!r}")
        unknown = sorted(set(raw) - set(POLICY_KEYS) - set(CRITERIA_KEYS))
        if unknown:
            accepted = "; ".join(f"{k}: {v}" for k, v in POLICY_KEYS.items())
            raise ConfigError(f"{where}: unknown settings {unknown}; accepted: {accepted}; "
                              f"and the selection criteria {list(CRITERIA_KEYS)}")
        tiers = [raw.get(k) for k in ("from", "to")]
        if not all(isinstance(t, str) and t for t in tiers):
            raise ConfigError(f"{where} needs 'from' and 'to', the names of two tiers; "
                              f"got from={tiers[0]!r}, to={tiers[1]!r}")
        on_access = raw.get("on_access", False)
        if not isinstance(on_access, bool):
            raise ConfigError(f"{where}.on_access must be true or false; got {on_access!r}")
        fmt = raw.get("format")
        if fmt is not None and (not isinstance(fmt, str) or not fmt):
            raise ConfigError(f"{where}.format must be a format name such as 'geoparquet'; got {fmt!r}")
        reencode = raw.get("reencode", False)
        if not isinstance(reencode, bool):
            raise ConfigError(f"{where}.reencode must be true or false; got {reencode!r}")
        criteria = {k: raw[k] for k in CRITERIA_KEYS if raw.get(k) is not None}
        _check_criteria(criteria, where)
        after, idle = (None, True)
        if raw.get("after") is not None:
            after, idle = parse_after(raw["after"], where=f"{where}.after")
        if on_access and (after is not None or fmt is not None or reencode):
            raise ConfigError(f"{where}: on_access = true moves a key when it is opened, byte for byte; "
                              "it takes no 'after', 'format' or 'reencode' (write a scheduled policy "
                              "for those)")
        if after is not None and ("last_accessed_before" if idle else "created_before") in criteria:
            raise ConfigError(f"{where}: 'after' and {'last_accessed_before' if idle else 'created_before'} "
                              "say the same thing; keep one")
        if not on_access and after is None and not criteria:
            raise ConfigError(f"{where} would move every key of tier {tiers[0]!r} at every run; add "
                              "after = '30 days idle' (or a criterion), or on_access = true")
        return cls(str(tiers[0]), str(tiers[1]), after, idle, on_access, criteria, fmt, reencode)


def _check_criteria(criteria: Mapping[str, Any], where: str) -> None:
    """Check the shape of the criteria (their values are parsed again when a job is made)."""
    for name in ("key", "kinds", "tags"):
        value = criteria.get(name, ())
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, Sequence) or not all(isinstance(v, str) and v for v in values):
            raise ConfigError(f"{where}.{name} must be a string or a list of strings; got {value!r}")
        if name == "kinds":
            bad = [k for k in values if k not in {k.value for k in Kind}]
            if bad:
                raise ConfigError(f"{where}.kinds: unknown kinds {bad}; accepted: {[k.value for k in Kind]}")
    for name in ("min_size", "max_size", "last_accessed_before", "created_before"):
        value = criteria.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
            raise ConfigError(f"{where}.{name} must be a string such as '100MB' or '30 days ago'; "
                              f"got {value!r}")


def check_policies(policies: Any, tiers: Mapping[str, Any]) -> tuple[LifecyclePolicy, ...]:
    """Parse ``policies`` (tables or :class:`LifecyclePolicy`) and check them against ``tiers``.

    Parameters
    ----------
    policies : list of mapping or LifecyclePolicy, or None
        The ``[[lifecycle]]`` tables.
    tiers : mapping of str to TierConfig
        The configured tiers (their ``url`` tells a database tier).

    Raises
    ------
    ConfigError
        A bad policy, an unknown tier (the message lists the configured ones), the same
        tier on both sides, a promotion to or from a database tier, or two promotions
        on access from one tier.

    Examples
    --------
    >>> [p.describe() for p in check_policies([{"from": "warm", "to": "hot", "on_access": True}],
    ...                                       {"hot": None, "warm": None})]
    ['warm -> hot on access']
    """
    if policies is None:
        return ()
    if isinstance(policies, Mapping | str) or not isinstance(policies, Sequence):
        raise ConfigError("lifecycle must be a list of policies ([[lifecycle]] tables in memories.toml, "
                          f"each with from, to and after or on_access); got {policies!r}")
    parsed: list[LifecyclePolicy] = []
    for i, raw in enumerate(policies):
        where = f"lifecycle[{i}]"
        policy = raw if isinstance(raw, LifecyclePolicy) else LifecyclePolicy.from_dict(raw, where=where)
        for tier in (policy.source_tier, policy.destination_tier):
            if tier not in tiers:
                raise ConfigError(f"{where}: {tier!r} is not a configured tier; tiers: {sorted(tiers)}")
        if policy.source_tier == policy.destination_tier:
            raise ConfigError(f"{where}: from and to are both {policy.source_tier!r}; "
                              "name two different tiers")
        if policy.on_access:
            for tier in (policy.source_tier, policy.destination_tier):
                if str(getattr(tiers[tier], "url", "")).startswith(_DATABASE_SCHEMES):
                    raise ConfigError(f"{where}: tier {tier!r} is a database; a promotion on access moves "
                                      "files, so it needs two file or object-store tiers")
            if any(p.on_access and p.source_tier == policy.source_tier for p in parsed):
                raise ConfigError(f"{where}: a second on_access policy from tier {policy.source_tier!r}; "
                                  "a key opened there can move to one tier only")
        parsed.append(policy)
    return tuple(parsed)
