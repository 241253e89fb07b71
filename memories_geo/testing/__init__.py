"""Shipped test bases: subclass them to test a new format or backend in a few lines."""

from memories_geo.testing.roundtrip import FormatRoundTripTests, OnMemoryFilesystem

__all__ = ["FormatRoundTripTests", "OnMemoryFilesystem"]
