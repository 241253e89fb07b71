"""Whether a staged version's writer can still finish it."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from memories_geo.catalog import StagedVersion

__all__ = ["STAGED_GRACE", "staged_writer_gone", "writer_gone"]

#: How long a version staged by a process on another host is presumed to be still
#: being written: :meth:`VersionStore.recover_orphans` leaves it alone until then.
STAGED_GRACE = timedelta(hours=6)


def writer_gone(writer: str, started: datetime | str | None, grace: timedelta = STAGED_GRACE) -> bool:
    """Whether the process ``writer`` (``host:pid``) can no longer finish what it started.

    A writer on this host is gone when no such process runs; a writer on another host
    (whose processes cannot be seen) is presumed alive for ``grace`` after ``started``.

    Examples
    --------
    >>> writer_gone("elsewhere:1", "2000-01-01T00:00:00")
    True
    >>> writer_gone(f"{socket.gethostname()}:{os.getpid()}", None)
    False
    """
    host, _, pid = writer.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not _process_alive(int(pid))
    if isinstance(started, str):
        try:
            started = datetime.fromisoformat(started)
        except ValueError:
            started = None
    if started is None:
        return True
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return datetime.now(UTC) - started > grace


def staged_writer_gone(staged: StagedVersion, grace: timedelta = STAGED_GRACE) -> bool:
    """Whether the process that staged a version can no longer finish it."""
    return writer_gone(staged.writer, staged.created_at, grace)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
