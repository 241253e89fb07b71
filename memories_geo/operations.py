"""Operation records: what every save, open, read, delete, move, checkpoint and migration cost.

A collection's :class:`OperationMeter` times an operation (:meth:`OperationMeter.measure`)
and hands the finished :class:`OperationRecord` to its sinks (the monitor's operation log
batches them into the catalog). Reads that happen later, through a lazy object (Zarr
chunks fetched by dask, Parquet row groups), are counted by a :class:`ReadTally` that the
format updates and the meter drains into ``read`` records.

Nothing here does I/O: a meter without sinks measures nothing (one attribute check).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "OPERATIONS", "OUTCOMES", "Measurement", "OperationMeter", "OperationRecord", "ReadTally",
]

logger = logging.getLogger(__name__)

#: Operation names recorded (``read`` is a lazy object's reads after its ``open``).
OPERATIONS = (
    "save", "open", "read", "delete", "verify", "move", "copy", "restore-request",
    "checkpoint.save", "checkpoint.restore", "migration", "optimization",
)
#: Outcomes of an operation.
OUTCOMES = ("ok", "error")

Sink = Callable[["OperationRecord"], None]


@dataclass(frozen=True)
class OperationRecord:
    """One operation and what it cost.

    Attributes
    ----------
    operation : str
        One of :data:`OPERATIONS`.
    at : datetime
        When it started (UTC).
    seconds : float
        How long it took (for ``read`` records: the time spent fetching).
    outcome : str
        ``"ok"`` or ``"error"``.
    key, version, tier, format : optional
        What it worked on, where known.
    bytes : int
        Bytes written (save, copy, move, checkpoint) or read (open, read, verify).
    requests : int
        Backend requests (file or object reads/writes, listings), where counted.
    error : str
        Class name of the error raised (``""`` when it succeeded).
    detail : mapping
        Operation-specific facts: an open's ``bbox``, ``time``, ``columns``; a read's
        ``chunks``; a migration's ``job``.

    Examples
    --------
    >>> r = OperationRecord("save", datetime(2026, 1, 1, tzinfo=UTC), 0.5, key="a", bytes=100)
    >>> r.throughput
    200.0
    """

    operation: str
    at: datetime
    seconds: float
    outcome: str = "ok"
    key: str | None = None
    version: int | None = None
    tier: str | None = None
    format: str | None = None
    bytes: int = 0
    requests: int = 0
    error: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def throughput(self) -> float | None:
        """Bytes per second (``None`` for an instant operation)."""
        return self.bytes / self.seconds if self.seconds > 0 else None


class Measurement:
    """What an operation being measured has learnt so far; filled in by the code it times.

    Attributes are those of :class:`OperationRecord` except ``at``, ``seconds`` and
    ``outcome``, which the meter sets.
    """

    __slots__ = ("bytes", "detail", "format", "key", "requests", "tally", "tier", "version")

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.key: str | None = fields.get("key")
        self.version: int | None = fields.get("version")
        self.tier: str | None = fields.get("tier")
        self.format: str | None = fields.get("format")
        self.bytes: int = int(fields.get("bytes", 0))
        self.requests: int = int(fields.get("requests", 0))
        self.detail: dict[str, Any] = dict(fields.get("detail") or {})
        self.tally: ReadTally | None = None

    def describe(self, entry: Any) -> None:
        """Take key, version, tier and format from a catalog entry (or staged version)."""
        self.key = getattr(entry, "key", self.key)
        self.version = getattr(entry, "version", self.version)
        self.tier = getattr(entry, "tier", self.tier)
        self.format = getattr(entry, "format", self.format)


class ReadTally:
    """Bytes, requests and fetch time of reads through one opened object.

    Formats call :meth:`add` for every fetch they can see (a Zarr store ``get``, a
    Parquet row group). Thread-safe: dask fetches chunks from several threads.
    """

    __slots__ = ("_lock", "_pending", "bytes", "detail", "fields", "requests", "seconds", "started")

    def __init__(self, fields: Mapping[str, Any], pending: Callable[[ReadTally], None] | None = None) -> None:
        self.fields = dict(fields)
        self._pending = pending
        self.detail: dict[str, int] = {}
        self._lock = threading.Lock()
        self.bytes = 0
        self.requests = 0
        self.seconds = 0.0
        self.started: datetime | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        """A copy sent to another process (a dask worker) counts apart: its reads are not recorded."""
        return (ReadTally, (self.fields,))

    def add(self, nbytes: int, seconds: float = 0.0, *, requests: int = 1, chunks: int = 0) -> None:
        """Count one fetch of ``nbytes`` bytes that took ``seconds``."""
        with self._lock:
            first = self.started is None
            if first:
                self.started = datetime.now(UTC)
            self.bytes += int(nbytes)
            self.requests += requests
            self.seconds += seconds
            if chunks:
                self.detail["chunks"] = self.detail.get("chunks", 0) + chunks
        if first and self._pending is not None:
            self._pending(self)

    def take(self) -> tuple[datetime, int, int, float, dict[str, int]] | None:
        """What was counted since the last call (``None`` if nothing), and reset."""
        with self._lock:
            if self.started is None:
                return None
            taken = (self.started, self.bytes, self.requests, self.seconds, self.detail)
            self.started, self.bytes, self.requests, self.seconds, self.detail = None, 0, 0, 0.0, {}
            return taken


class OperationMeter:
    """Times a collection's operations and hands the records to its sinks.

    Examples
    --------
    >>> meter = OperationMeter()
    >>> seen = []
    >>> remove = meter.add_sink(seen.append)
    >>> with meter.measure("delete", key="a/b") as m:
    ...     m.requests += 2
    >>> seen[0].operation, seen[0].key, seen[0].requests, seen[0].outcome
    ('delete', 'a/b', 2, 'ok')
    """

    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self._pending: list[ReadTally] = []
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """A copy sent to another process measures nothing until a sink is added there."""
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    @property
    def active(self) -> bool:
        """Whether anything listens (when not, nothing is measured)."""
        return bool(self._sinks)

    def add_sink(self, sink: Sink) -> Callable[[], None]:
        """Call ``sink(record)`` for every finished operation; return a function that removes it."""
        with self._lock:
            self._sinks.append(sink)

        def remove() -> None:
            with self._lock:
                if sink in self._sinks:
                    self._sinks.remove(sink)

        return remove

    def emit(self, record: OperationRecord) -> None:
        """Hand ``record`` to every sink; a failing sink is logged, never raised to the caller."""
        for sink in list(self._sinks):
            try:
                sink(record)
            except Exception:
                logger.exception("operation record sink %r failed", sink)

    @contextmanager
    def measure(self, operation: str, **fields: Any) -> Iterator[Measurement]:
        """Time the block as ``operation``; the yielded :class:`Measurement` takes what it learns.

        The record is emitted when the block ends, with outcome ``"error"`` and the
        error's class name if it raised (the error propagates unchanged).
        """
        measurement = Measurement(fields)
        if not self._sinks:
            yield measurement
            return
        at = datetime.now(UTC)
        start = time.perf_counter()
        error = ""
        try:
            yield measurement
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            tally = measurement.tally
            if tally is not None:
                taken = tally.take()
                if taken is not None:
                    measurement.bytes += taken[1]
                    measurement.requests += taken[2]
                    for name, value in taken[4].items():
                        measurement.detail[name] = measurement.detail.get(name, 0) + value
            self.emit(OperationRecord(
                operation, at, time.perf_counter() - start, "error" if error else "ok",
                key=measurement.key, version=measurement.version, tier=measurement.tier,
                format=measurement.format, bytes=measurement.bytes, requests=measurement.requests,
                error=error, detail=measurement.detail,
            ))

    def read_tally(self, measurement: Measurement) -> ReadTally | None:
        """A tally for the reads of the object an ``open`` returns (``None`` when nothing listens).

        Reads during the open count towards the open's record; later ones become
        ``read`` records when :meth:`drain_reads` is called.
        """
        if not self._sinks:
            return None
        tally = ReadTally({"key": measurement.key, "version": measurement.version,
                           "tier": measurement.tier, "format": measurement.format}, self._counted)
        measurement.tally = tally
        return tally

    def _counted(self, tally: ReadTally) -> None:
        """Keep a tally that has counted something until :meth:`drain_reads` takes it."""
        with self._lock:
            self._pending.append(tally)

    def drain_reads(self) -> None:
        """Emit one ``read`` record per opened object read from since the last drain."""
        with self._lock:
            tallies, self._pending = self._pending, []
        for tally in dict.fromkeys(tallies):
            taken = tally.take()
            if taken is None:
                continue
            started, nbytes, requests, seconds, detail = taken
            fields = tally.fields
            self.emit(OperationRecord(
                "read", started, seconds, bytes=nbytes, requests=requests, detail=detail,
                key=fields.get("key"), version=fields.get("version"), tier=fields.get("tier"),
                format=fields.get("format"),
            ))

