"""What the backend objects share: the repr with secrets masked and the settings helpers."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from memories_geo.config import expand_env, redact_url
from memories_geo.config.original import FORMAT_KINDS, canonical_format

__all__ = ["SECRET_FIELDS", "BackendObject", "format_settings", "level_settings", "resolved_path"]

#: Fields whose values a repr shows as ``***``.
SECRET_FIELDS = frozenset({"credentials", "connection_string", "account_key", "sas_token"})


def resolved_path(value: str | os.PathLike[str]) -> Path:
    """``value`` with ``${VAR}`` references expanded and ``~`` resolved, as an absolute path."""
    return Path(expand_env(os.fspath(value))).expanduser().resolve()


def level_settings(compression: Any) -> dict[str, Any]:
    """The tier's ``compression`` setting for the original's ``compression`` argument."""
    if compression is None or compression is True:
        return {}
    if compression is False:
        return {"compression": "fast"}
    return {"compression": compression}


def format_settings(fmt: str | None, where: str) -> dict[str, Any]:
    """The tier's ``formats`` setting making ``fmt`` the default of the kinds it stores."""
    if fmt is None:
        return {}
    name = canonical_format(fmt, where)
    return {"formats": dict.fromkeys(sorted(FORMAT_KINDS[name]), name)}


class BackendObject:
    """Shared repr (secrets masked) of the backend objects."""

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None or value == {} or not f.repr:
                continue
            if f.name in SECRET_FIELDS:
                value = "***"
            elif isinstance(value, str):
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def tier_settings(self) -> dict[str, Any]:
        """The ``[tiers.NAME]`` settings this object stands for."""
        raise NotImplementedError
