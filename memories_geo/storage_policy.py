"""A tier's storage class and retention: the values each store accepts, and their parsing.

:class:`~memories_geo.config.TierConfig` validates its ``storage_class`` with
:func:`check_storage_class` and its retention settings with :func:`check_retention`;
backends use the same tables, so a value accepted here is one the store takes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from memories_geo.errors import ConfigError

__all__ = [
    "AZURE_ACCESS_TIERS",
    "GCS_STORAGE_CLASSES",
    "RESTORE_CLASSES",
    "RETENTION_MODES",
    "S3_STORAGE_CLASSES",
    "Retention",
    "check_retention",
    "check_storage_class",
    "needs_restore",
    "parse_period",
    "storage_classes_for",
]

#: Storage classes an ``s3://`` tier takes.
S3_STORAGE_CLASSES = (
    "STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE",
)
#: Storage classes a ``gs://`` tier takes.
GCS_STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")
#: Access tiers an ``az://`` tier takes, spelled as Azure reports them.
AZURE_ACCESS_TIERS = ("Hot", "Cool", "Cold", "Archive")
#: Classes whose objects cannot be read until they are restored (S3) or rehydrated (Azure).
#: GCS ``ARCHIVE`` objects are readable at any time, so it is not one of them.
RESTORE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE", "Archive"})
#: Retention modes: ``governance`` (privileged users may lift it) and ``compliance`` (nobody can).
RETENTION_MODES = ("governance", "compliance")

_BY_SCHEME: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("s3", "s3a"), S3_STORAGE_CLASSES),
    **dict.fromkeys(("gs", "gcs"), GCS_STORAGE_CLASSES),
    **dict.fromkeys(("az", "abfs", "abfss"), AZURE_ACCESS_TIERS),
}
#: Stores that have no storage classes: their tiers refuse the setting.
_NO_CLASSES = frozenset({"file", "memory", "postgresql", "postgres", "sqlite"})

#: Days per unit of a retention period. A month counts 31 days and a year 366, so a
#: retention never ends before the same calendar period would.
_UNIT_DAYS: dict[str, int] = {
    **dict.fromkeys(("d", "day", "days"), 1),
    **dict.fromkeys(("w", "week", "weeks"), 7),
    **dict.fromkeys(("month", "months"), 31),
    **dict.fromkeys(("y", "year", "years"), 366),
}
_PERIOD = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*")
_RETENTION_KEYS = frozenset({"period", "mode"})
_BACKUP_POLICY_KEYS = frozenset({"immutable", "retention_period", "versioning"})


def _scheme(url: str) -> str:
    return urlsplit(url).scheme if "://" in url else "file"


def storage_classes_for(url: str) -> tuple[str, ...] | None:
    """The storage classes a tier at ``url`` takes; ``None`` when its store is not a built-in object store.

    Examples
    --------
    >>> storage_classes_for("gs://bucket/cold")
    ('STANDARD', 'NEARLINE', 'COLDLINE', 'ARCHIVE')
    >>> storage_classes_for("/data/hot") is None
    True
    """
    return _BY_SCHEME.get(_scheme(url))


def needs_restore(storage_class: str | None) -> bool:
    """Whether objects of ``storage_class`` must be restored before they can be read.

    Examples
    --------
    >>> needs_restore("GLACIER"), needs_restore("GLACIER_IR"), needs_restore("ARCHIVE")
    (True, False, False)
    """
    return storage_class in RESTORE_CLASSES


def check_storage_class(url: str, value: Any, *, where: str = "storage_class") -> str | None:
    """Validate a tier's storage class against its URL; return it spelled as the store does.

    ``s3://`` tiers take :data:`S3_STORAGE_CLASSES`, ``gs://`` tiers
    :data:`GCS_STORAGE_CLASSES` and ``az://`` tiers the access tiers
    :data:`AZURE_ACCESS_TIERS`, in any case. Local, ``memory://``, SQLite and PostgreSQL
    tiers refuse a storage class; a tier of a third-party backend passes it on unchanged
    (its backend decides).

    Parameters
    ----------
    url : str
        The tier's URL.
    value : str or None
        The setting; ``None`` or empty means none.
    where : str
        Name of the setting in error messages (``"tiers.cold.storage_class"``).

    Returns
    -------
    str or None
        The normalised class (``"GLACIER"``, ``"NEARLINE"``, ``"Cool"``), or ``None``.

    Raises
    ------
    ConfigError
        A class the store does not have (the message lists those it has), or a class on a
        tier that has none.

    Examples
    --------
    >>> check_storage_class("s3://bucket/cold", "glacier_ir")
    'GLACIER_IR'
    >>> check_storage_class("az://container/cold", "COOL")
    'Cool'
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, got {value!r}")
    scheme = _scheme(url)
    accepted = _BY_SCHEME.get(scheme)
    if accepted is None:
        if scheme in _NO_CLASSES:
            raise ConfigError(
                f"{where}: {scheme}:// tiers cannot take a storage class ({value!r}); storage classes "
                "exist on s3://, gs:// and az:// tiers only: remove 'storage_class'"
            )
        return value.strip()
    found = next((name for name in accepted if name.lower() == value.strip().lower()), None)
    if found is None:
        raise ConfigError(f"{where}: {scheme}:// tiers take one of {list(accepted)}, got {value!r}")
    return found


def parse_period(value: Any, *, where: str = "retention period") -> timedelta:
    """A retention period as a :class:`~datetime.timedelta`.

    Takes ``"10 years"``, ``"10years"``, ``"6 months"``, ``"30 days"``, ``"2 weeks"``
    (``d``, ``w``, ``y`` too), a number of days, or a ``timedelta``. A month counts 31
    days and a year 366, so the period never ends before the calendar period would.

    Raises
    ------
    ConfigError
        For anything else, or a period that is not positive.

    Examples
    --------
    >>> parse_period("10years").days, parse_period("30 days").days, parse_period("6 months").days
    (3660, 30, 186)
    """
    if isinstance(value, timedelta):
        period = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        period = timedelta(days=value)
    elif isinstance(value, str) and (found := _PERIOD.fullmatch(value)) and found[2].lower() in _UNIT_DAYS:
        period = timedelta(days=math.ceil(float(found[1]) * _UNIT_DAYS[found[2].lower()]))
    else:
        raise ConfigError(
            f"{where}: {value!r} is not a period; write a number and a unit, e.g. '10 years', "
            "'6 months', '30 days' or '2 weeks' (units: days, weeks, months, years)"
        )
    if period <= timedelta(0):
        raise ConfigError(f"{where}: the period must be positive, got {value!r}")
    return period


def _check_mode(mode: Any, where: str) -> str:
    if not isinstance(mode, str) or mode.strip().lower() not in RETENTION_MODES:
        raise ConfigError(f"{where}: mode must be one of {list(RETENTION_MODES)}, got {mode!r}")
    return mode.strip().lower()


@dataclass(frozen=True)
class Retention:
    """How long each version of a tier is kept, and how its objects are locked.

    Attributes
    ----------
    period : timedelta
        Time from a version's save until it may be deleted (a period text such as
        ``"10 years"`` is parsed with :func:`parse_period`).
    mode : str
        ``"governance"`` (the default) or ``"compliance"``: the S3 Object Lock mode.

    Examples
    --------
    >>> print(Retention("10 years", "Compliance"))
    3660 days, compliance
    """

    period: timedelta
    mode: str = "governance"

    def __post_init__(self) -> None:
        object.__setattr__(self, "period", parse_period(self.period, where="retention period"))
        object.__setattr__(self, "mode", _check_mode(self.mode, "retention"))

    def __str__(self) -> str:
        return f"{self.period.days} days, {self.mode}"


def check_retention(
    retention: Retention | Mapping[str, Any] | None = None,
    backup_policy: Mapping[str, Any] | None = None,
    *,
    where: str = "tier",
) -> Retention | None:
    """A tier's :class:`Retention` from either of its spellings (``None`` when it has none).

    - ``retention = {period = "10 years", mode = "compliance"}`` (``mode`` defaults to
      ``"governance"``), or a :class:`Retention`;
    - the original API's ``backup_policy = {immutable = true, retention_period = "10years",
      versioning = true}``: ``immutable`` means ``compliance`` mode, otherwise
      ``governance``; ``versioning`` may only be true (every save is a new version).

    Raises
    ------
    ConfigError
        Both spellings at once, an unknown setting, a bad period or mode.

    Examples
    --------
    >>> check_retention(backup_policy={"immutable": True, "retention_period": "10years"})
    Retention(period=datetime.timedelta(days=3660), mode='compliance')
    >>> print(check_retention({"period": "30 days"}))
    30 days, governance
    """
    if retention and backup_policy:
        raise ConfigError(f"{where}: set retention once; got both 'retention' and 'backup_policy'")
    if isinstance(retention, Retention):
        return retention
    if retention:
        if not isinstance(retention, Mapping):
            raise ConfigError(
                f"{where}.retention: must be a table like {{period = '10 years'}}, got {retention!r}"
            )
        _refuse_unknown(retention, _RETENTION_KEYS, f"{where}.retention")
        period, mode = retention.get("period"), retention.get("mode") or "governance"
        if period is None:
            raise ConfigError(f"{where}.retention: needs a period, e.g. {{period = '10 years'}}")
        where = f"{where}.retention"
    elif backup_policy:
        if not isinstance(backup_policy, Mapping):
            raise ConfigError(f"{where}.backup_policy: must be a table, got {backup_policy!r}")
        _refuse_unknown(backup_policy, _BACKUP_POLICY_KEYS, f"{where}.backup_policy")
        if backup_policy.get("versioning", True) is not True:
            raise ConfigError(
                f"{where}.backup_policy: versioning cannot be turned off: every save makes a new "
                "version, kept until deleted; remove 'versioning' or set it to true"
            )
        period = backup_policy.get("retention_period")
        immutable = backup_policy.get("immutable", False)
        if not isinstance(immutable, bool):
            raise ConfigError(f"{where}.backup_policy: immutable must be true or false, got {immutable!r}")
        if period is None:
            if immutable:
                raise ConfigError(
                    f"{where}.backup_policy: immutable needs a retention_period, e.g. '10 years'"
                )
            return None
        mode = "compliance" if immutable else "governance"
        where = f"{where}.backup_policy"
    else:
        return None
    return Retention(parse_period(period, where=f"{where} period"), _check_mode(mode, where))


def _refuse_unknown(settings: Mapping[str, Any], accepted: frozenset[str], where: str) -> None:
    unknown = set(settings) - accepted
    if unknown:
        raise ConfigError(f"{where}: unknown settings {sorted(unknown)}; accepted: {sorted(accepted)}")
