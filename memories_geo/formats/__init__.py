"""Formats: one module per format, registered in :mod:`memories_geo.formats.registry`."""
