"""Process-wide event hooks: observe saves, checkpoints and restores as they happen.

Monitoring subscribes here (latency, throughput, failures), and so can users::

    import memories_geo as mg
    unsubscribe = mg.events.subscribe(lambda name, info: print(name, info.get("key")))

Events of a save, in order: ``save.staged``, ``save.written`` (data written and
checksummed), ``save.committed`` (the version is current), ``save.published``.
Checkpoints emit ``checkpoint.saved`` and ``checkpoint.restored``; migrations emit
``migration.started``, ``migration.key`` (one per key migrated) and ``migration.finished``;
transactions ``transaction.committing``, ``transaction.committed`` and
``transaction.rolled_back`` (their saves' events carry the ``transaction`` id).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["emit", "subscribe"]

Listener = Callable[[str, Mapping[str, Any]], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call ``listener(name, info)`` on every event; return a function that unsubscribes."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def emit(event: str, /, **info: Any) -> None:
    """Send an event to every listener (a failing listener propagates its error)."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event, info)
