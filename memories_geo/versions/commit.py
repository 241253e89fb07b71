"""The verify -> record -> commit -> publish steps of one save, and its failure paths."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from memories_geo.audit_log import new_record
from memories_geo.catalog import Catalog, StagedVersion, version_row
from memories_geo.config import redact_text
from memories_geo.errors import FormatError, MemoriesError, TierUnavailableError, UnsupportedObjectError
from memories_geo.events import emit
from memories_geo.records import write_record

if TYPE_CHECKING:
    from memories_geo.backends.base import Location
    from memories_geo.entry import Entry
    from memories_geo.formats.base import Format, WriteResult
    from memories_geo.integrity import Manifest

__all__ = ["Commit", "CommitTarget", "library_error"]

logger = logging.getLogger(__package__)


class CommitTarget(Protocol):
    """What a :class:`Commit` needs of its version store."""

    catalog: Catalog

    def publish(self, entry: Entry) -> None: ...  # noqa: D102

    def journal(self, record: Mapping[str, Any]) -> None: ...  # noqa: D102

    def audit(self, operation: str, *, key: str | None = ..., version: int | None = ...,  # noqa: D102
              outcome: str = ..., detail: str = ...) -> None: ...

    def abandon(self, fmt: Format, location: Location, staged: StagedVersion) -> None: ...  # noqa: D102

    def apply_tier_policies(self, location: Location, tier: str) -> None: ...  # noqa: D102

    def delete_stored(self, fmt: Format, location: Location) -> None: ...  # noqa: D102

    def check_quota(self, tier: str, adding: int, *, what: str) -> None: ...  # noqa: D102


class Commit:
    """The verify -> record -> commit -> publish steps of a save, runnable now or after a dask write."""

    def __init__(
        self, store: CommitTarget, fmt: Format, location: Location, staged: StagedVersion,
        attrs: dict[str, Any], tags: tuple[str, ...], exclusive: bool,
    ) -> None:
        self.store, self.fmt, self.location, self.staged = store, fmt, location, staged
        self.attrs, self.tags, self.exclusive = attrs, tags, exclusive

    def __call__(self, result: WriteResult) -> Entry:
        """Record and commit a finished write; return the new current entry."""
        record = new_record("save", key=self.staged.key, detail=f"{self.fmt.name} on {self.staged.tier}")
        row = self.prepare(result)
        try:
            entry = self.store.catalog.commit(self.staged, row, exclusive=self.exclusive, audit=record)
        except BaseException as exc:
            self.fail(exc)
        self.store.journal(record)
        emit("save.committed", key=entry.key, version=entry.version, tier=entry.tier,
             format=entry.format, bytes=entry.size_bytes)
        try:
            self.store.publish(entry)
        except BaseException as exc:
            self.revert(entry, exc)
        emit("save.published", key=entry.key, version=entry.version)
        logger.info("saved %s v%d (%s on %s, %d bytes)", entry.key, entry.version, entry.format,
                    entry.tier, entry.size_bytes)
        return entry

    def prepare(self, result: WriteResult) -> dict[str, Any]:
        """Check, apply tier policies to and record a finished write; return its catalog row.

        Nothing becomes current: :meth:`__call__` commits the row alone, a
        transaction (:mod:`memories_geo.versions.transaction`) with others. A failure
        removes what was staged (:meth:`fail`).
        """
        try:
            if not result.manifest.files:
                raise FormatError(f"format {self.fmt.name!r} wrote nothing for {self.staged.key!r}")
            self.store.check_quota(
                self.staged.tier, result.manifest.size_bytes, what=f"saving {self.staged.key!r}"
            )
            self.store.apply_tier_policies(self.location, self.staged.tier)
            row = version_row(
                self.staged, uri=self.location.url, footprint=result.footprint,
                manifest=result.manifest, object_info=result.object_info,
                attrs=self.attrs, tags=self.tags,
            )
            write_record(self.location.backend, self.location.path, row)
            emit("save.verified", key=self.staged.key, tier=self.staged.tier)
        except BaseException as exc:
            self.fail(exc)
        return row

    def after_pending(self, manifest: Manifest, result: WriteResult) -> Entry:
        """Commit a write run by dask, from the ``manifest`` assembled from what its tasks reported.

        Files the write shares with an earlier version (``result.manifest``) are added.

        Runs in the process that saved (the client of a cluster), against its catalog.
        """
        manifest = manifest.including(result.manifest)
        emit("save.written", key=self.staged.key, tier=self.staged.tier, format=self.fmt.name,
             bytes=manifest.size_bytes)
        return self(replace(result, manifest=manifest, pending=None))

    def fail(self, exc: BaseException) -> NoReturn:
        """Remove what was staged, audit the failure, and raise it as a library error.

        A failing clean-up never hides the original error: it is logged and noted on
        the raised error, and :meth:`VersionStore.recover_orphans` finishes it later.
        """
        notes = []
        try:
            self.store.abandon(self.fmt, self.location, self.staged)
        except Exception as cleanup:
            from memories_geo.versions.fanout import mark_abandoned

            mark_abandoned(self.staged.version_id)
            note = (f"clean-up of the staged version failed too ({type(cleanup).__name__}); "
                    "recover() removes it")
            logger.warning("%s: %s", note, redact_text(str(cleanup)))
            notes.append(note)
        doing = f"saving {self.staged.key!r} as {self.fmt.name} on tier {self.staged.tier!r}"
        error = library_error(exc, doing)
        self._audit_failure(f"{type(exc).__name__}: {exc}")
        for note in notes:
            error.add_note(note)
        if error is exc:
            raise exc
        raise error from exc

    def revert(self, entry: Entry, exc: BaseException) -> NoReturn:
        """Undo a commit whose publication failed, so the version is not kept, and raise."""
        record = new_record("save", outcome="error", detail=f"publish failed, commit reverted: {exc}")
        try:
            if self.store.catalog.revert_commit(entry, audit=record):
                self.store.delete_stored(self.fmt, self.location)
            self.store.journal(record)
        except Exception as cleanup:
            logger.warning("reverting %s v%d failed (recover() finishes it): %s", entry.key, entry.version,
                           redact_text(str(cleanup)))
        error = library_error(exc, f"publishing {entry.key!r} v{entry.version}")
        error.add_note("the version was not kept; the previous version is still current")
        if error is exc:
            raise exc
        raise error from exc

    def _audit_failure(self, detail: str) -> None:
        try:
            self.store.audit("save", key=self.staged.key, outcome="error", detail=detail)
        except Exception as exc:
            logger.warning("could not audit the failed save of %r: %s", self.staged.key,
                           redact_text(str(exc)))


def library_error(exc: BaseException, doing: str) -> BaseException:
    """``exc`` as a library error: itself when it already is one (or an interruption).

    A service that cannot be reached becomes :class:`TierUnavailableError`, a value or
    type the writer refused :class:`UnsupportedObjectError`, anything else
    :class:`FormatError`; the message names what was being done and never holds
    credentials.
    """
    if isinstance(exc, MemoriesError) or not isinstance(exc, Exception):
        return exc
    from memories_geo.backends.files import is_unreachable

    message = f"{doing} failed: {type(exc).__name__}: {redact_text(str(exc))}"
    if is_unreachable(exc):
        return TierUnavailableError(message)
    if isinstance(exc, TypeError | ValueError):
        return UnsupportedObjectError(message)
    return FormatError(message)
