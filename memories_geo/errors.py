"""Typed errors, grouped by what the caller can do about them.

Every error inherits :class:`MemoriesError` and, where one fits, a builtin, so
``except KeyError`` keeps working for code that does not know this library.
"""

from __future__ import annotations

__all__ = [
    "AlertConditionError",
    "CatalogCorruptError",
    "CheckpointNotFoundError",
    "ChecksumMismatchError",
    "ConfigError",
    "DuplicateTimesError",
    "FormatError",
    "InvalidKeyError",
    "KeyExistsError",
    "KeyNotFoundError",
    "MemoriesError",
    "MigrationError",
    "OptionError",
    "QuotaExceededError",
    "ReadOnlyError",
    "RestoreRequiredError",
    "RetentionError",
    "TierUnavailableError",
    "UnsupportedObjectError",
]


class MemoriesError(Exception):
    """Base class of every error raised by memories_geo."""


class KeyExistsError(MemoriesError, FileExistsError):
    """The key already holds data and the write mode forbids replacing it."""


class DuplicateTimesError(KeyExistsError):
    """An append to a time series holds times (per station) already stored.

    Raised with ``on_duplicate="error"`` (the default); ``"skip"`` leaves such rows
    out and ``"replace"`` overwrites the stored ones.
    """


class KeyNotFoundError(MemoriesError, KeyError):
    """No current version is stored under the key (or the version asked for)."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a sentence reads better unquoted.
        return str(self.args[0]) if self.args else ""


class InvalidKeyError(MemoriesError, ValueError):
    """The key is not a safe, relative, slash-separated name."""


class UnsupportedObjectError(MemoriesError, TypeError):
    """The object cannot be stored as asked (wrong type, no spatial dims, no CRS...)."""


class OptionError(MemoriesError, TypeError, ValueError):
    """A keyword the operation does not take, or a value outside its accepted choices.

    The message names the offending keyword or value and lists the accepted ones.
    """


class FormatError(MemoriesError, ValueError):
    """A format is unknown, not installed, or failed to read or write the object."""


class ChecksumMismatchError(MemoriesError, OSError):
    """Stored bytes no longer match their manifest."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems or [])


class TierUnavailableError(MemoriesError, LookupError):
    """The tier is unknown, not configured, or its backend cannot be reached."""


class ReadOnlyError(MemoriesError, PermissionError):
    """The collection was opened with ``read_only=True`` and the operation would change it."""


class MigrationError(MemoriesError, RuntimeError):
    """A migration could not finish: some keys failed (``.status`` says which and why).

    Re-running the same job retries them; keys already migrated are not copied again.
    """

    def __init__(self, message: str, status: object = None) -> None:
        super().__init__(message)
        self.status = status


class RetentionError(MemoriesError, PermissionError):
    """The data is under retention: it cannot be deleted or moved away before its period ends."""


class RestoreRequiredError(MemoriesError, PermissionError):
    """The object sits in an archive storage class and must be restored before reading."""


class CheckpointNotFoundError(MemoriesError, LookupError):
    """No checkpoint has that name or id."""


class CatalogCorruptError(MemoriesError, OSError):
    """The catalog database is unreadable; ``RecoveryManager.rebuild_catalog()`` rebuilds it."""


class ConfigError(MemoriesError, ValueError):
    """The configuration is invalid or refers to an undefined environment variable."""


class AlertConditionError(ConfigError):
    """An alert condition does not parse, or names a figure the monitor does not have.

    Conditions use a small grammar (names, comparisons, ``and``/``or``/``not``,
    parentheses, numbers with units); anything else, code included, is refused.
    """


class QuotaExceededError(MemoriesError, OSError):
    """A save would take a tier past its ``max_size``; nothing was written or kept."""
