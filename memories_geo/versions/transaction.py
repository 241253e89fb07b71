"""Transactions: saves and deletions across formats and tiers, committed all or nothing.

``with mem.transaction() as tx:`` groups :meth:`Transaction.save` and
:meth:`Transaction.delete` calls. Each save runs the protocol's first steps at once
(stage -> write -> verify -> record), so a failing write raises at its call; nothing
becomes current until the block ends. Then one catalog transaction
(:meth:`~memories_geo.catalog.SQLiteCatalog.commit_many`) applies every deletion and
commits every staged version, with their audit records: that is the commit point. An
exception in the block, a failing catalog transaction, or :meth:`Transaction.rollback`
removes what was staged and deletes nothing.

After the commit point the transaction is committed, whatever follows: the views of
publishing formats (PostGIS, SpatiaLite) are pointed at the new versions, the views of
deleted keys dropped and their data purged. A view that cannot be published (its name
taken by another table, the server gone) does not undo the commit: the other views are
still published, the deletions still finished, and the error raised says so (its notes
name what is committed and which views lag); :meth:`~memories_geo.Memory.recover`
re-points the lagging views once the cause is removed, as it does after a crash between
the commit and the views.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from memories_geo.audit_log import new_record
from memories_geo.backends.base import Capability, Location, require
from memories_geo.catalog import StagedVersion, entry_from_row
from memories_geo.config import redact_text
from memories_geo.errors import KeyExistsError, OptionError
from memories_geo.events import emit
from memories_geo.formats.registry import get_format
from memories_geo.keys import new_id, validate_key
from memories_geo.provenance import attach_source, source_of, without_source
from memories_geo.types import CompressionLevel, Mode
from memories_geo.versions.archive import check_deletable, check_lockable
from memories_geo.versions.commit import Commit, library_error
from memories_geo.versions.distributed import complete_write
from memories_geo.versions.quota import estimated_size

if TYPE_CHECKING:
    from memories_geo.entry import Entry
    from memories_geo.resolve import Resolver, SavePlan
    from memories_geo.versions import VersionStore

__all__ = ["Transaction", "TransactionState"]

logger = logging.getLogger(__name__)

TransactionState = Literal["open", "committed", "rolled back"]


@dataclass
class _Save:
    plan: SavePlan
    staged: StagedVersion
    commit: Commit
    row: dict[str, Any]
    exclusive: bool
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Deletion:
    key: str
    version: int | None
    record: dict[str, Any] = field(default_factory=dict)


class Transaction:
    """Saves and deletions committed together, in one catalog transaction.

    Made by :meth:`memories_geo.Memory.transaction`; use it as a context manager. The
    block's saves are staged and written at once; at its end, without an exception,
    every staged version becomes current and every deletion applies, or nothing does.

    Parameters
    ----------
    store : VersionStore
        The collection's versions.
    resolver : Resolver
        Decides tier, format and options of each save, as :meth:`Memory.save` does.

    Attributes
    ----------
    id : str
        Shared by the audit records of the transaction (in their ``detail``).
    state : {"open", "committed", "rolled back"}
    entries : list of Entry
        The committed versions, in the order of the saves (after the commit).

    Examples
    --------
    >>> with mem.transaction() as tx:  # doctest: +SKIP
    ...     tx.save(ds, "cube", tier="hot")
    ...     tx.save(gdf, "fields", tier="warm")
    ...     tx.delete("old")
    >>> [e.key for e in tx.entries]  # doctest: +SKIP
    ['cube', 'fields']
    """

    def __init__(self, store: VersionStore, resolver: Resolver) -> None:
        self.store, self.resolver = store, resolver
        self.id = new_id()
        self.state: TransactionState = "open"
        self.entries: list[Entry] = []
        self._saves: list[_Save] = []
        self._deletions: list[_Deletion] = []

    def __repr__(self) -> str:
        return (f"Transaction({self.id!r}, {self.state}, saves={[s.plan.key for s in self._saves]}, "
                f"deletions={[d.key for d in self._deletions]})")

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.state != "open":
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    # -- staging ---------------------------------------------------------------------------

    def save(
        self,
        obj: Any,
        key: str | None = None,
        *,
        tier: str | None = None,
        format: str | None = None,
        mode: Mode | None = None,
        crs: Any = None,
        encoding: Mapping[str, Any] | None = None,
        append_dim: str | None = None,
        compression: str | CompressionLevel | None = None,
        attrs: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        compute: bool = True,
        storage: Any = None,
        **format_kwargs: Any,
    ) -> StagedVersion:
        """Write, verify and record ``obj`` as a new version of ``key``, current only at the commit.

        Takes the keywords of :meth:`memories_geo.Memory.save`. The modes are checked
        against the committed state, and against this transaction: ``mode="w-"`` refuses
        a key already saved in it, ``mode="w"`` on such a key makes a second version
        (the current one after the commit; both are kept), ``mode="a"`` refuses it
        (an append extends the committed version, which does not hold this
        transaction's data). A key deleted earlier in the transaction can be saved
        again with ``"w-"``: deletions apply first.

        Returns
        -------
        StagedVersion
            The staged version (its ``version_id``; the version number comes with the
            commit, in :attr:`entries`).

        Raises
        ------
        KeyExistsError
            ``mode="w-"`` and the key exists or was saved in this transaction (checked
            again at the commit: a key created meanwhile by another writer fails it).
        OptionError
            ``compute=False`` (a transaction writes at once) or a closed transaction.
        """
        self._check_open()
        if not compute:
            raise OptionError("compute=False is not accepted in a transaction: each save writes at once")
        source = source_of(obj)
        wanted = validate_key(key) if key is not None else (source or {}).get("key")
        saved = {s.plan.key for s in self._saves}
        deleted = {d.key for d in self._deletions if d.version is None}
        plan_mode: Mode | None = mode
        if wanted in deleted:
            if mode == "a":
                raise ValueError(f"cannot append to {wanted!r}: this transaction deletes it first")
            plan_mode = "w"
        if wanted in saved and mode == "a":
            self._refuse_resave(str(wanted), mode)
        plan = self.resolver.plan_save(
            without_source(obj), key, tier=tier, format=format, mode=plan_mode, crs=crs,
            encoding=encoding, append_dim=append_dim, compression=compression, compute=True,
            source_key=source["key"] if source is not None else None, format_options=format_kwargs,
            storage=storage,
        )
        if plan.key in saved and plan.mode in ("w-", "a"):
            self._refuse_resave(plan.key, plan.mode)
        exclusive = plan.mode == "w-" or (plan.key in deleted and mode in (None, "w-"))
        staged = self._stage(without_source(obj), plan, attrs, tags, exclusive)
        logger.debug("transaction %s: staged %s (%s on %s)", self.id, plan.key, plan.format.name, plan.tier)
        return staged

    def _refuse_resave(self, key: str, mode: str | None) -> None:
        if mode == "a":
            raise ValueError(
                f"cannot append to {key!r} in the transaction that saved it: appends extend the "
                "committed version; save the whole object with mode='w'"
            )
        raise KeyExistsError(
            f"key {key!r} was already saved in this transaction; pass mode='w' to save a second version"
        )

    def _stage(
        self, obj: Any, plan: SavePlan, attrs: Mapping[str, Any] | None, tags: Sequence[str], exclusive: bool,
    ) -> StagedVersion:
        store = self.store
        store.check_writable(f"saving {plan.key!r}")
        require(plan.backend, Capability.WRITES, f"saving on tier {plan.tier!r}")
        check_lockable(store, plan.tier)
        store.check_quota(plan.tier, estimated_size(obj), what=f"saving {plan.key!r}")
        with store.meter.measure("save", key=plan.key, tier=plan.tier, format=plan.format.name,
                                 detail={"transaction": self.id}) as measured:
            location = Location(plan.backend, plan.path)
            staged = store.catalog.stage(
                key=plan.key, version_id=plan.version_id, tier=plan.tier, format=plan.format.name,
                kind=plan.kind.value, path=plan.path, uri=location.url,
                storage_class=store.tiers.tier_config(plan.tier).storage_class,
            )
            emit("save.staged", key=plan.key, tier=plan.tier, format=plan.format.name, path=plan.path,
                 transaction=self.id)
            commit = Commit(store, plan.format, location, staged, dict(attrs or {}), tuple(tags), exclusive)
            try:
                result = complete_write(plan.format.write(obj, location, plan.options), location)
            except BaseException as exc:
                commit.fail(exc)
            emit("save.written", key=plan.key, tier=plan.tier, format=plan.format.name,
                 bytes=result.manifest.size_bytes, transaction=self.id)
            row = commit.prepare(result)
            measured.bytes = result.manifest.size_bytes
            measured.requests = len(result.manifest.files) + 1
        self._saves.append(_Save(plan, staged, commit, row, exclusive))
        return staged

    def delete(self, key: str, *, version: int | None = None) -> None:
        """Delete ``key`` (or one non-current ``version``) when the transaction commits.

        Checked now (the key or version exists, retention allows it) and again at the
        commit. Deletions apply before the saves: ``tx.delete("k"); tx.save(obj, "k")``
        replaces ``k`` and its history.

        Raises
        ------
        KeyNotFoundError
            No such key or version.
        ValueError
            ``version`` is the current one, the key was saved (or deleted) earlier in
            this transaction.
        RetentionError
            A version is still under its tier's retention.
        """
        self._check_open()
        key = validate_key(key)
        self.store.check_writable(f"deleting {key!r}")
        if key in {s.plan.key for s in self._saves}:
            raise ValueError(f"cannot delete {key!r}: it was saved earlier in this transaction")
        if any(d.key == key and d.version in (None, version) for d in self._deletions):
            raise ValueError(f"{key!r} is already deleted in this transaction")
        catalog = self.store.catalog
        doomed = catalog.versions(key) if version is None else [catalog.get(key, version)]
        if version is not None and catalog.is_current(doomed[0]):
            raise ValueError(f"version {version} is the current version of {key!r}; delete the key instead")
        check_deletable(self.store, doomed, f"deleting {key!r}" + ("" if version is None else f" v{version}"))
        self._deletions.append(_Deletion(key, version))

    # -- reading ---------------------------------------------------------------------------

    def open(self, key: str, **query: Any) -> Any:
        """Open the version of ``key`` this transaction staged (the last one), else the current one.

        Reads through the memory (``mem.open``) see the committed state only; this is
        the one way to read a staged version before the commit. ``query`` takes what
        :meth:`memories_geo.Memory.open` takes (``bbox``, ``time``, ``columns``...).
        """
        self._check_open()
        key = validate_key(key)
        staged = [s for s in self._saves if s.plan.key == key]
        if not staged:
            entry = self.store.catalog.get(key, query.pop("version", None))
        else:
            last = staged[-1]
            entry = entry_from_row({**last.row, "created_at": last.staged.created_at,
                                    "last_accessed_at": None, "access_count": 0})
        obj = self.store.open(entry, **query)
        return attach_source(obj, {"key": entry.key, "version": entry.version})

    # -- ending ------------------------------------------------------------------------------

    def commit(self) -> list[Entry]:
        """Apply every deletion and make every staged version current, in one catalog transaction.

        Then journals the audit records, points the views of publishing formats at the
        new versions, and purges the data of deleted versions. Called by the ``with``
        block's end when no exception was raised.

        Returns
        -------
        list of Entry
            The committed versions, in the order of the saves.

        Raises
        ------
        KeyExistsError, KeyNotFoundError
            A ``mode="w-"`` key created, or a deleted key removed, by another writer
            since the call: nothing is committed and the staged versions are removed.
        FormatError, TierUnavailableError
            Publishing a view failed *after* the commit: the transaction stays
            committed (``state == "committed"``, :attr:`entries` set; ``mem.open``,
            ``mem.search`` and the catalog show every save and deletion), the other
            views are published and the deleted data purged; the error's notes name
            the committed versions and each view left behind, which ``mem.recover()``
            re-points once the cause is removed.
        """
        self._check_open()
        store = self.store
        store.check_writable(f"committing transaction {self.id}")
        count = len(self._saves)
        for d in self._deletions:
            operation = "delete" if d.version is None else "delete_version"
            d.record = new_record(operation, key=d.key, version=d.version, detail=f"transaction {self.id}")
        for i, s in enumerate(self._saves, 1):
            s.record = new_record("save", key=s.plan.key, detail=(
                f"transaction {self.id} ({i}/{count}): {s.plan.format.name} on {s.plan.tier}"))
        emit("transaction.committing", transaction=self.id, saves=count, deletions=len(self._deletions))
        try:
            committed, removed, purge = store.catalog.commit_many(
                [(s.staged, s.row, s.exclusive, s.record) for s in self._saves],
                [(d.key, d.version, d.record) for d in self._deletions],
            )
        except BaseException as exc:
            self._abandon(f"not committed: {type(exc).__name__}: {exc}")
            error = library_error(exc, f"committing transaction {self.id}")
            error.add_note(f"transaction {self.id}: nothing was committed; its staged versions were removed")
            if error is exc:
                raise
            raise error from exc
        self.state = "committed"
        self.entries = committed
        records = [d.record for d in self._deletions] + [s.record for s in self._saves]
        for record in sorted(records, key=lambda r: int(r["seq"])):
            store.journal(record)
        for entry in committed:
            emit("save.committed", key=entry.key, version=entry.version, tier=entry.tier,
                 format=entry.format, bytes=entry.size_bytes, transaction=self.id)
        unpublished = self._publish(committed)
        self._forget_deleted(removed, purge, {e.key for e in committed})
        emit("transaction.committed", transaction=self.id, keys=[e.key for e in committed],
             deleted=[d.key for d in self._deletions])
        logger.info("transaction %s committed: %d version(s) saved, %d deletion(s)", self.id, count,
                    len(self._deletions))
        if unpublished:
            self._raise_unpublished(committed, unpublished)
        return committed

    def rollback(self) -> None:
        """Abandon the transaction: remove every staged version (data and rows); delete nothing."""
        self._check_open()
        self._abandon("rolled back")
        emit("transaction.rolled_back", transaction=self.id, keys=[s.plan.key for s in self._saves])
        logger.info("transaction %s rolled back (%d staged version(s) removed)", self.id, len(self._saves))

    def _check_open(self) -> None:
        if self.state != "open":
            raise OptionError(
                f"transaction {self.id} is {self.state}; start a new one with mem.transaction()"
            )

    def _abandon(self, why: str) -> None:
        self.state = "rolled back"
        for s in self._saves:
            try:
                self.store.abandon(s.plan.format, s.commit.location, s.staged)
            except Exception as exc:
                logger.warning("transaction %s: removing staged %s failed (recover() removes it): %s",
                               self.id, s.plan.key, redact_text(str(exc)))
            try:
                self.store.audit("save", key=s.plan.key, outcome="error",
                                 detail=f"transaction {self.id}: {why}")
            except Exception as exc:
                logger.warning("transaction %s: could not audit %s: %s", self.id, s.plan.key,
                               redact_text(str(exc)))

    def _publish(self, committed: Sequence[Entry]) -> list[tuple[Entry, Exception]]:
        """Point every view at its key's new version; return the views that could not be."""
        last = {entry.key: entry for entry in committed}
        failed: list[tuple[Entry, Exception]] = []
        for entry in last.values():
            try:
                self.store.publish(entry)
            except Exception as exc:
                logger.error("transaction %s: committed, but the view of %s v%d was not published: %s",
                             self.id, entry.key, entry.version, redact_text(f"{type(exc).__name__}: {exc}"))
                failed.append((entry, exc))
                continue
            emit("save.published", key=entry.key, version=entry.version, transaction=self.id)
        return failed

    def _raise_unpublished(
        self, committed: Sequence[Entry], failed: Sequence[tuple[Entry, Exception]]
    ) -> NoReturn:
        """Raise the first publication error, with notes saying what is committed and what lags."""
        entry, exc = failed[0]
        error = library_error(exc, f"publishing {entry.key!r} v{entry.version} (transaction {self.id})")
        saved = ", ".join(f"{e.key} v{e.version}" for e in committed) or "no version"
        deleted = ", ".join(d.key if d.version is None else f"{d.key} v{d.version}" for d in self._deletions)
        error.add_note(f"transaction {self.id} is committed: {saved} current"
                       + (f"; deleted: {deleted}" if deleted else "")
                       + " (mem.open, mem.search and the catalog show it)")
        for lagging, cause in failed:
            error.add_note(f"the view of {lagging.key!r} does not show v{lagging.version}: "
                           + redact_text(f"{type(cause).__name__}: {cause}"))
        error.add_note("remove the cause, then run mem.recover() to re-point the views")
        try:
            self.store.audit("save", key=entry.key, version=entry.version, outcome="error",
                             detail=f"transaction {self.id}: committed, {len(failed)} view(s) not published")
        except Exception as audit_error:
            logger.warning("transaction %s: could not audit the unpublished views: %s", self.id,
                           redact_text(str(audit_error)))
        if error is exc:
            raise exc
        raise error from exc

    def _forget_deleted(self, removed: Sequence[Entry], purge: Sequence[Entry], saved: set[str]) -> None:
        for d in self._deletions:
            if d.version is not None or d.key in saved:
                continue
            by_place = {(e.tier, e.format): e for e in removed if e.key == d.key}
            for entry in by_place.values():
                self._quietly(self.store.unpublish, entry)
        for entry in purge:
            self._quietly(self.store.delete_stored, get_format(entry.format), self.store.location(entry))

    def _quietly(self, action: Any, *args: Any) -> None:
        try:
            action(*args)
        except Exception as exc:
            logger.warning("transaction %s: %s failed (recover() finishes it): %s", self.id,
                           getattr(action, "__name__", "clean-up"), redact_text(str(exc)))

