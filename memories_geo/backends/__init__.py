"""Backends: where stored bytes live, with declared capabilities."""

from memories_geo.backends.base import Backend, Capability, FileStore, Location, TableStore
from memories_geo.backends.registry import known_schemes, make_backend, register_backend

__all__ = [
    "Backend",
    "Capability",
    "FileStore",
    "Location",
    "TableStore",
    "known_schemes",
    "make_backend",
    "register_backend",
]
