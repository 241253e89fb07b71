"""Awaitable twins of blocking calls: the work runs in a thread, never on the event loop.

Two forms:

- :func:`awaitable_twin` makes ``async def asave(...)`` from ``def save(...)`` (a method
  or a function): ``await mem.asave(ds, "key")`` runs ``mem.save`` in a worker thread and
  lets the loop (Jupyter's, a web server's) go on meanwhile.
- :func:`awaitable_when_in_loop` serves the original API's calls that were awaited
  (``await persistence.save_checkpoint(...)``): outside a running event loop the call
  returns its result as usual; called on a thread running a loop it starts the work in a
  thread at once and returns a :class:`Deferred`, which ``await`` waits for without
  blocking the loop, and which otherwise stands for the result (reading an attribute
  waits for it).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Coroutine, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, ParamSpec, TypeVar

__all__ = ["Deferred", "awaitable_twin", "awaitable_when_in_loop", "in_thread"]

P = ParamSpec("P")
T = TypeVar("T")

_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="memories-geo-async")


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in a worker thread (context variables carried over) and await it.

    Examples
    --------
    >>> asyncio.run(in_thread(sum, [1, 2, 3]))
    6
    """
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(
        _pool, functools.partial(context.run, fn, *args, **kwargs)
    )


def awaitable_twin(sync: Callable[P, T]) -> Callable[P, Coroutine[Any, Any, T]]:
    """An ``async`` function running ``sync`` in a worker thread, with the same parameters.

    Examples
    --------
    >>> def add(a, b):
    ...     return a + b
    >>> aadd = awaitable_twin(add)
    >>> asyncio.run(aadd(1, 2))
    3
    """

    @functools.wraps(sync)
    async def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        return await in_thread(sync, *args, **kwargs)

    name = getattr(sync, "__name__", "call")
    owner, _, _ = getattr(sync, "__qualname__", name).rpartition(".")
    twin.__name__ = f"a{name}"
    twin.__qualname__ = f"{owner}.a{name}" if owner else f"a{name}"
    twin.__doc__ = (
        f"Awaitable twin of ``{name}`` (same parameters, same result): the work runs in a "
        "worker thread, so the event loop keeps running.\n\n"
        f"Examples\n--------\n>>> result = await obj.a{name}(...)  # doctest: +SKIP\n"
    )
    return twin


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Deferred(Generic[T]):
    """The result of a call started in a thread from a running event loop.

    ``await deferred`` gives the result without blocking the loop; reading an attribute,
    indexing, iterating, comparing or printing waits for it and acts on the result.
    """

    __slots__ = ("_future",)

    def __init__(self, future: Future[T]) -> None:
        self._future = future

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self._future).__await__()

    def result(self, timeout: float | None = None) -> T:
        """Wait for the result (re-raising the call's error)."""
        return self._future.result(timeout)

    def done(self) -> bool:
        """Whether the call has finished."""
        return self._future.done()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.result(), name)

    def __getitem__(self, item: Any) -> Any:
        return self.result()[item]  # type: ignore[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.result())  # type: ignore[call-overload]

    def __len__(self) -> int:
        return len(self.result())  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        return bool(self.result() == other)

    def __hash__(self) -> int:
        return hash(self.result())

    def __bool__(self) -> bool:
        return bool(self.result())

    def __repr__(self) -> str:
        return repr(self.result())

    def _repr_html_(self) -> str | None:
        html = getattr(self.result(), "_repr_html_", None)
        return html() if callable(html) else None


def awaitable_when_in_loop(sync: Callable[P, T]) -> Callable[P, T | Deferred[T]]:
    """Make ``sync`` awaitable when it is called on a thread running an event loop.

    Outside a loop the call runs and returns its result. Inside one (Jupyter, an async
    application) it starts in a worker thread and returns a :class:`Deferred`: ``await``
    it, or use it as the result.

    Examples
    --------
    >>> @awaitable_when_in_loop
    ... def answer() -> int:
    ...     return 42
    >>> answer()
    42
    >>> async def main():
    ...     return await answer()
    >>> asyncio.run(main())
    42
    """

    @functools.wraps(sync)
    def call(*args: P.args, **kwargs: P.kwargs) -> T | Deferred[T]:
        if not _in_running_loop():
            return sync(*args, **kwargs)
        context = contextvars.copy_context()
        return Deferred(_pool.submit(functools.partial(context.run, sync, *args, **kwargs)))

    return call

