"""Process-wide options: progress bars and the library's log level.

:func:`set_options` changes them for the whole process, or for a ``with`` block when
used as a context manager (like ``xarray.set_options`` and ``rioxarray.set_options``);
:func:`get_options` reads them. Environment variables give the starting values, read
once, when the package is imported (an invalid value raises
:class:`~memories_geo.errors.ConfigError` on first use instead):

``MEMORIES_GEO_PROGRESS``
    ``1`` (always show progress bars), ``0`` (never) or ``auto``.
``MEMORIES_GEO_LOG_LEVEL``
    ``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``: the level of the ``memories_geo``
    logger (see :func:`set_options`).

The package logger carries a :class:`logging.NullHandler`, so the library prints no
log line unless the application configures logging or sets ``log_level``.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TextIO

from memories_geo.errors import ConfigError, OptionError

__all__ = ["ENV_LOG_LEVEL", "ENV_PROGRESS", "LOG_LEVELS", "Progress", "get_options", "set_options"]

#: Environment variable giving the starting value of ``progress``.
ENV_PROGRESS = "MEMORIES_GEO_PROGRESS"
#: Environment variable giving the starting value of ``log_level``.
ENV_LOG_LEVEL = "MEMORIES_GEO_LOG_LEVEL"
#: Accepted values of ``log_level`` (besides ``None``).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

Progress = bool | Literal["auto"]

_PACKAGE_LOGGER = logging.getLogger("memories_geo")
_PACKAGE_LOGGER.addHandler(logging.NullHandler())

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _progress(value: Any) -> Progress:
    if isinstance(value, bool) or value == "auto":
        return value
    raise OptionError(f"progress={value!r} is not valid; accepted: True, False or 'auto'")


def _log_level(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value.upper() in LOG_LEVELS:
        return value.upper()
    raise OptionError(
        f"log_level={value!r} is not valid; accepted: None, " + ", ".join(repr(v) for v in LOG_LEVELS)
    )


#: Option name -> validator returning the normalised value.
_VALIDATORS: dict[str, Callable[[Any], Any]] = {"progress": _progress, "log_level": _log_level}
_DEFAULTS: dict[str, Any] = {"progress": "auto", "log_level": None}

_lock = threading.RLock()
_state: dict[str, Any] = {}


def _from_environment() -> dict[str, Any]:
    found: dict[str, Any] = {}
    progress = os.environ.get(ENV_PROGRESS, "").strip().lower()
    if progress in _TRUE:
        found["progress"] = True
    elif progress in _FALSE:
        found["progress"] = False
    elif progress == "auto":
        found["progress"] = "auto"
    elif progress:
        raise ConfigError(
            f"{ENV_PROGRESS}={os.environ[ENV_PROGRESS]!r} is not valid; accepted: 1, 0 or auto"
        )
    level = os.environ.get(ENV_LOG_LEVEL, "").strip()
    if level:
        try:
            found["log_level"] = _log_level(level)
        except OptionError:
            raise ConfigError(
                f"{ENV_LOG_LEVEL}={level!r} is not valid; accepted: " + ", ".join(LOG_LEVELS)
            ) from None
    return found


def _options() -> dict[str, Any]:
    """The live option values (initialised from the environment on first use)."""
    if not _state:
        with _lock:
            if not _state:
                values = {**_DEFAULTS, **_from_environment()}
                _apply_log_level(values["log_level"])
                _state.update(values)
    return _state


def get_options() -> dict[str, Any]:
    """The current options, as a new dictionary.

    Returns
    -------
    dict
        ``progress`` (True, False or ``"auto"``) and ``log_level`` (None or a level
        name).

    Raises
    ------
    ConfigError
        When an environment variable read on first use holds an invalid value.

    Examples
    --------
    >>> import memories_geo as mg
    >>> sorted(mg.get_options())
    ['log_level', 'progress']
    """
    return dict(_options())


class set_options:
    """Set options for the process, or for a ``with`` block.

    Parameters
    ----------
    progress : bool or "auto", optional
        Progress bars (bytes, rate, time left) on stderr for long operations: dask
        saves, checkpoint backups, verification, restores. ``"auto"`` (the default)
        shows them only when stderr is a terminal, and only for operations lasting
        more than half a second; ``True`` always shows them; ``False`` never.
    log_level : {"DEBUG", "INFO", "WARNING", "ERROR"} or None, optional
        Level of the ``memories_geo`` logger. When the application has configured no
        logging handler, records at that level and above are also printed to stderr.
        ``None`` (the default) leaves logging entirely to the application.

    Raises
    ------
    OptionError
        For an unknown option or an invalid value (the message names the accepted
        ones).

    Examples
    --------
    >>> import memories_geo as mg
    >>> with mg.set_options(progress=False):
    ...     mg.get_options()["progress"]
    False
    >>> _ = mg.set_options(progress="auto")  # for the rest of the process
    """

    def __init__(self, **options: Any) -> None:
        unknown = [name for name in options if name not in _VALIDATORS]
        if unknown:
            hints = [difflib.get_close_matches(name, _VALIDATORS, n=1) for name in unknown]
            hint = "".join(f"; did you mean {h[0]!r}?" for h in hints if h)
            raise OptionError(
                f"unknown option(s) {unknown}; accepted: {sorted(_VALIDATORS)}{hint}"
            )
        values = {name: _VALIDATORS[name](value) for name, value in options.items()}
        with _lock:
            current = _options()
            self.previous = {name: current[name] for name in values}
            self._update(values)

    @staticmethod
    def _update(values: dict[str, Any]) -> None:
        if "log_level" in values:
            _apply_log_level(values["log_level"])
        _state.update(values)


    def __enter__(self) -> set_options:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with _lock:
            self._update(self.previous)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


_handler: _StderrHandler | None = None
_applied: str | None = None
_level_before = logging.NOTSET


def _apply_log_level(level: str | None) -> None:
    """Set the package logger's level (and a stderr handler if nothing else prints records).

    A level the application set itself is left alone unless ``log_level`` is used, and
    comes back when ``log_level`` returns to ``None``.
    """
    global _handler, _applied, _level_before
    if level == _applied:
        return
    if _handler is not None:
        _PACKAGE_LOGGER.removeHandler(_handler)
        _handler = None
    if _applied is None:
        _level_before = _PACKAGE_LOGGER.level
    if level is None:
        _PACKAGE_LOGGER.setLevel(_level_before)
    else:
        _PACKAGE_LOGGER.setLevel(level)
        if not logging.getLogger().handlers:
            _handler = _StderrHandler()
            _PACKAGE_LOGGER.addHandler(_handler)
    _applied = level


with contextlib.suppress(ConfigError):
    _options()
