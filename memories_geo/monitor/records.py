"""The operation log: records batched in memory, written to the catalog in one transaction.

A save or a small read adds one record to a buffer (microseconds); the buffer is
written to the catalog's ``operations`` table when it holds :data:`BATCH` records,
when :data:`FLUSH_SECONDS` have passed since the last write, before any query, and
at exit. Reads through lazy objects are drained into ``read`` records at each flush.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from memories_geo.catalog.operation_rows import OPERATION_COLUMNS
from memories_geo.operations import OperationMeter, OperationRecord

if TYPE_CHECKING:
    import pandas as pd

    from memories_geo.catalog import Catalog

__all__ = ["BATCH", "FLUSH_SECONDS", "KEEP", "RECORD_COLUMNS", "OperationLog", "records_frame"]

logger = logging.getLogger(__name__)

#: Records buffered before they are written to the catalog.
BATCH = 256
#: Seconds after which buffered records are written at the next operation.
FLUSH_SECONDS = 5.0
#: How long operation records are kept by default.
KEEP = timedelta(days=30)
#: Columns of :func:`records_frame` (and of the catalog's ``operations`` table).
RECORD_COLUMNS = OPERATION_COLUMNS
_open_logs: weakref.WeakSet[OperationLog] = weakref.WeakSet()


def records_frame(records: Iterable[OperationRecord]) -> pd.DataFrame:
    """Records as a DataFrame with the columns of :data:`RECORD_COLUMNS`.

    ``at`` is a UTC ``datetime64[ns, UTC]`` column, ``version`` nullable ``Int64``,
    ``detail`` a column of dicts; rows in the order given.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> frame = records_frame([OperationRecord("open", datetime(2026, 1, 1, tzinfo=UTC), 0.1, key="a")])
    >>> frame.loc[0, "operation"], str(frame["at"].dtype)
    ('open', 'datetime64[ns, UTC]')
    """
    import pandas as pd

    rows = [
        (r.at, r.operation, r.key, r.version, r.tier, r.format, r.seconds, r.bytes, r.requests,
         r.outcome, r.error, dict(r.detail))
        for r in records
    ]
    frame = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    frame["at"] = pd.to_datetime(frame["at"], utc=True).astype("datetime64[ns, UTC]")
    frame["version"] = frame["version"].astype("Int64")
    for name in ("seconds",):
        frame[name] = frame[name].astype("float64")
    for name in ("bytes", "requests"):
        frame[name] = frame[name].astype("int64")
    return frame


class OperationLog:
    """A collection's operation records: buffered, then kept in its catalog.

    Parameters
    ----------
    catalog : Catalog
        Where records are kept (its ``operations`` table).
    meter : OperationMeter
        The collection's meter; the log adds itself as a sink.
    persist : bool
        Write records to the catalog (``False`` for a read-only collection: records
        stay in memory, the newest :data:`BATCH` * 16 of them).
    keep : timedelta
        How long records are kept in the catalog (older ones are deleted, at most once
        an hour).

    Examples
    --------
    >>> log = OperationLog(mem.catalog, mem.version_store.meter)  # doctest: +SKIP
    >>> log.frame(since=timedelta(hours=1))  # doctest: +SKIP
    """

    def __init__(
        self, catalog: Catalog, meter: OperationMeter, *, persist: bool = True,
        keep: timedelta = KEEP,
    ) -> None:
        self.catalog = catalog
        self.meter = meter
        self.persist = persist
        self.keep = keep
        self._last_prune = 0.0
        self._buffer: list[OperationRecord] = []
        self._kept: list[OperationRecord] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._listeners: list[Any] = []
        self._remove = meter.add_sink(self.add)
        _open_logs.add(self)

    def add(self, record: OperationRecord) -> None:
        """Buffer one record; write the buffer when it is full or old."""
        with self._lock:
            self._buffer.append(record)
            due = len(self._buffer) >= BATCH or time.monotonic() - self._last_flush >= FLUSH_SECONDS
        for listener in list(self._listeners):
            listener(record)
        if due:
            self.flush()

    def on_record(self, listener: Any) -> None:
        """Call ``listener(record)`` after every record is buffered (alerts use it)."""
        self._listeners.append(listener)

    def flush(self) -> int:
        """Write buffered records (and pending lazy reads) to the catalog; return how many."""
        self.meter.drain_reads()
        with self._lock:
            records, self._buffer = self._buffer, []
            self._last_flush = time.monotonic()
            if not self.persist:
                self._kept = (self._kept + records)[-BATCH * 16:]
        if records and self.persist:
            try:
                self.catalog.add_operations(records)
                if time.monotonic() - self._last_prune > 3600:
                    self._last_prune = time.monotonic()
                    self.catalog.prune_operations(datetime.now(UTC) - self.keep)
            except Exception:
                logger.exception("could not write %d operation records to the catalog", len(records))
                with self._lock:
                    self._buffer[:0] = records
                return 0
        return len(records)

    def records(
        self, since: datetime | timedelta | None = None, until: datetime | None = None, *,
        operations: Sequence[str] | None = None,
    ) -> list[OperationRecord]:
        """Records from ``since`` (a moment, or a period back from now) to ``until``, oldest first."""
        self.flush()
        start = _moment(since)
        if self.persist:
            return self.catalog.operations(since=start, until=until, operations=operations)
        with self._lock:
            kept = list(self._kept)
        return [
            r for r in kept
            if (start is None or r.at >= start) and (until is None or r.at <= until)
            and (operations is None or r.operation in operations)
        ]

    def frame(
        self, since: datetime | timedelta | None = None, until: datetime | None = None, *,
        operations: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """:meth:`records` as a DataFrame (:func:`records_frame`)."""
        return records_frame(self.records(since, until, operations=operations))

    def close(self) -> None:
        """Write what is buffered and stop recording."""
        self._remove()
        self.flush()
        _open_logs.discard(self)


def _moment(since: datetime | timedelta | None) -> datetime | None:
    if isinstance(since, timedelta):
        return datetime.now(UTC) - since
    return since


@atexit.register
def _flush_all() -> None:
    for log in list(_open_logs):
        try:
            log.flush()
        except Exception:
            logger.exception("could not write operation records at exit")
