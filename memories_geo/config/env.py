"""Where the embedded home is, and ``${VAR}`` references in configuration values."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from memories_geo.errors import ConfigError

__all__ = ["CONFIG_ENV", "HOME_ENV", "default_home", "expand_env"]

HOME_ENV = "MEMORIES_GEO_HOME"
CONFIG_ENV = "MEMORIES_GEO_CONFIG"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def default_home() -> Path:
    """``$MEMORIES_GEO_HOME`` if set, else ``./.memories`` (absolute).

    Examples
    --------
    >>> default_home().is_absolute()
    True
    """
    return Path(os.environ.get(HOME_ENV) or ".memories").expanduser().resolve()


def expand_env(value: Any) -> Any:
    """Replace ``${VAR}`` (or ``${VAR:-default}``) in every string of a nested structure.

    Mappings and lists are copied (as ``dict`` and ``list``); tuples keep their type.

    Raises
    ------
    ConfigError
        If a referenced variable is not set and has no default.

    Examples
    --------
    >>> expand_env({"url": "${MG_DOC_UNSET:-s3://bucket}"})
    {'url': 's3://bucket'}
    """
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name!r} is referenced in the configuration but not set")

        return _ENV_REF.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    if isinstance(value, tuple):
        return tuple(expand_env(v) for v in value)
    return value
