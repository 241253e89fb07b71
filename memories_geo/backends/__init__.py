"""Backends: where stored bytes live."""

from memories_geo.backends.base import Backend, Location, make_backend

__all__ = ["Backend", "Location", "make_backend"]
