"""How long things take: progress bars for long operations, DEBUG timings for short ones.

:func:`progress_bar` is the one progress bar of the library (bytes, rate, time left on
stderr, drawn by tqdm); it is quiet unless :func:`progress_enabled` (see the
``progress`` option of :func:`memories_geo.set_options`). :func:`compute` runs dask
collections under such a bar. :class:`timed` logs one DEBUG line with the duration of a
backend call.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TextIO

from memories_geo.options import get_options

__all__ = ["ProgressBar", "compute", "progress_bar", "progress_enabled", "timed"]

#: In ``"auto"`` mode, a bar appears only once its operation has lasted this long (seconds).
AUTO_DELAY = 0.5

_depth = threading.local()


def progress_enabled(stream: TextIO | None = None) -> bool:
    """Whether progress bars are shown on ``stream`` (default ``sys.stderr``).

    Examples
    --------
    >>> import memories_geo as mg
    >>> with mg.set_options(progress=False):
    ...     progress_enabled()
    False
    """
    setting = get_options()["progress"]
    if setting != "auto":
        return bool(setting)
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class ProgressBar:
    """What :func:`progress_bar` yields: count work with :meth:`update` (thread-safe).

    ``n`` is the amount done so far, counted even when no bar is drawn.
    """

    def __init__(self, total: int | None, desc: str, unit: str, stream: TextIO | None) -> None:
        self.total = total
        self.desc = desc
        self.n = 0
        self._lock = threading.Lock()
        self._bar: Any = None
        if stream is not None:
            from tqdm import tqdm

            forced = get_options()["progress"] is True
            nested = getattr(_depth, "value", 0) > 0
            self._bar = tqdm(
                total=total, desc=desc, unit=unit, unit_scale=True,
                unit_divisor=1024 if unit == "B" else 1000, file=stream, dynamic_ncols=True,
                leave=not nested, mininterval=0.1, miniters=1, smoothing=0.1,
                delay=0 if forced else AUTO_DELAY,
            )

    def update(self, n: int | float) -> None:
        """Add ``n`` units of work done."""
        if not n:
            return
        with self._lock:
            self.n += int(n)
            if self._bar is not None:
                self._bar.update(n)

    def update_to(self, done: int | float) -> None:
        """Set the amount done so far to ``done`` (never backwards)."""
        with self._lock:
            step = int(done) - self.n
        if step > 0:
            self.update(step)

    def set_total(self, total: int) -> None:
        """Change the expected total (when it is learnt late)."""
        with self._lock:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
                self._bar.refresh()

    def close(self, *, complete: bool = False) -> None:
        """Stop drawing; with ``complete=True`` first fill the bar to its total."""
        if complete and self.total:
            self.update_to(self.total)
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None


@contextmanager
def progress_bar(
    total: int | None, desc: str, *, unit: str = "B", stream: TextIO | None = None
) -> Iterator[ProgressBar]:
    """A progress bar over ``total`` units (bytes by default), shown when progress is on.

    Parameters
    ----------
    total : int or None
        Expected amount of work; ``None`` shows a count and a rate, no time left; 0
        (nothing to do) draws nothing.
    desc : str
        What is being done, e.g. ``"backup nightly"``.
    unit : str
        ``"B"`` shows bytes in binary multiples (KiB/s...); any other unit is counted.
    stream : file, optional
        Where to draw (default ``sys.stderr`` at the time of the call).

    Yields
    ------
    ProgressBar
        Call ``update(n)`` as work is done. On a clean exit the bar is filled.

    Examples
    --------
    >>> with progress_bar(3 * 1024, "copy") as bar:
    ...     for block in (b"x" * 1024,) * 3:
    ...         bar.update(len(block))
    >>> bar.n
    3072
    """
    stream = stream if stream is not None else sys.stderr
    bar = ProgressBar(total, desc, unit, stream if total != 0 and progress_enabled(stream) else None)
    _depth.value = getattr(_depth, "value", 0) + 1
    try:
        yield bar
    except BaseException:
        bar.close()
        raise
    finally:
        _depth.value -= 1
    bar.close(complete=True)


def compute(*collections: Any, nbytes: int, desc: str) -> tuple[Any, ...]:
    """``dask.compute(*collections)`` under a progress bar of ``nbytes`` (when progress is on).

    The bar advances with the share of the graph's tasks that are done, scaled to
    ``nbytes`` (the estimated bytes the computation writes). On the local schedulers
    a dask callback counts the tasks; with an active ``dask.distributed`` client the
    scheduler reports them.

    Examples
    --------
    >>> import dask.array as da
    >>> (total,) = compute(da.ones(10, chunks=5).sum(), nbytes=80, desc="sum")
    >>> float(total)
    10.0
    """
    import dask

    if not progress_enabled():
        return tuple(dask.compute(*collections))
    client = _distributed_client()
    with progress_bar(nbytes, desc) as bar:
        if client is not None:
            return _compute_distributed(client, collections, bar)
        from dask.callbacks import Callback

        class _Tasks(Callback):
            def _start_state(self, dsk: Any, state: dict[str, Any]) -> None:
                self.ntasks = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))

            def _posttask(self, key: Any, result: Any, dsk: Any, state: dict[str, Any], worker: Any) -> None:
                if self.ntasks:
                    bar.update_to(nbytes * len(state["finished"]) / self.ntasks)

        return tuple(dask.compute(*collections, callbacks=[*Callback.active, _Tasks()._callback]))


def _distributed_client() -> Any:
    """The ``dask.distributed`` client dask computes on now, if any."""
    if "distributed" not in sys.modules:
        return None
    from dask.base import get_scheduler

    scheduler = get_scheduler()
    client = getattr(scheduler, "__self__", None)
    return client if type(client).__name__ == "Client" else None


def _compute_distributed(client: Any, collections: tuple[Any, ...], bar: ProgressBar) -> tuple[Any, ...]:
    from distributed.diagnostics.progressbar import TextProgressBar

    total = bar.total or 0

    class _Scheduler(TextProgressBar):
        def _draw_bar(self, remaining: int, all: int, **kwargs: Any) -> None:
            if all:
                bar.update_to(total * (1 - remaining / all))

        def _draw_stop(self, **kwargs: Any) -> None:
            pass

    futures = client.compute(list(collections))
    _Scheduler(futures, scheduler=client.scheduler.address, interval="200ms")
    return tuple(client.gather(futures))


class timed:
    """Log one DEBUG line with how long the ``with`` block took (and whether it failed).

    Parameters
    ----------
    logger : logging.Logger
        Where to log.
    message : str
        %-format message; `` (1.2 ms)`` is appended.
    *args
        Its arguments (formatted only when DEBUG is on).

    Examples
    --------
    >>> import logging
    >>> with timed(logging.getLogger("memories_geo.doc"), "exists %s", "a/@v/1"):
    ...     pass
    """

    __slots__ = ("args", "logger", "message", "start")

    def __init__(self, logger: logging.Logger, message: str, *args: Any) -> None:
        self.logger, self.message, self.args = logger, message, args
        self.start = 0.0

    def __enter__(self) -> timed:
        self.start = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.logger.isEnabledFor(logging.DEBUG):
            return
        elapsed = (time.perf_counter() - self.start) * 1000
        if exc_type is None:
            self.logger.debug(self.message + " (%.1f ms)", *self.args, elapsed)
        else:
            self.logger.debug(self.message + " failed after %.1f ms (%s)", *self.args, elapsed,
                              exc_type.__name__)
