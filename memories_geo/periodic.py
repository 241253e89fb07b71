"""A task run every ``interval`` seconds in a daemon thread, counting its runs and failures.

:class:`~memories_geo.checkpoints.AutoPersistence` and
:class:`~memories_geo.lifecycle.LifecycleRunner` are such tasks: each implements
``run_once(raise_errors=...)``; the thread calls it with ``raise_errors=False`` so that
a failing run is counted and logged, and never stops the thread.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar, Self

__all__ = ["PeriodicTask"]


class PeriodicTask:
    """Thread management shared by periodic tasks: start, stop, context manager.

    Subclasses set :attr:`interval` (seconds) and :attr:`thread_name`, call
    ``super().__init__()``, and implement ``run_once(*, raise_errors: bool)``.

    Attributes
    ----------
    runs, failures : int
        Runs so far, and how many of them failed (subclasses update them under ``_lock``).
    last_error : BaseException or None
        Why the last failed run failed.
    """

    thread_name: ClassVar[str] = "memories-geo-periodic"
    interval: float

    def __init__(self) -> None:
        self.runs = 0
        self.failures = 0
        self.last_error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run_once(self, *, raise_errors: bool = True) -> Any:
        """One run of the task (implemented by subclasses)."""
        raise NotImplementedError

    @property
    def is_running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Start the background thread (idempotent); returns ``self``. The first run is one interval away."""
        if not self.is_running:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 60) -> None:
        """Ask the thread to stop and wait for it (a run under way finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once(raise_errors=False)
