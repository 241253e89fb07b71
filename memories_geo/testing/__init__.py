"""The shipped test kit: subclass these bases to test a new format or backend in a few lines.

- :class:`FormatRoundTripTests`: exact round trips, versions, verification (with a
  ``corrupt()`` hook for files and tables), deletion.
- :class:`VectorQueryTests`, :class:`RasterQueryTests`, :class:`AppendTests`: the ``open``
  contract and appends, as capability mixins.
- :class:`BackendTests`: the backend protocol.
- The pytest plugin (``memories_geo.testing.plugin``, registered through the ``pytest11``
  entry point) starts real servers on loopback for the session: ``postgres_service``,
  ``s3_service``, ``gcs_service``, ``azure_service`` and ``postgres_dsn``.
"""

from memories_geo.testing.backends import BackendTests, corrupt_stored
from memories_geo.testing.capabilities import AppendTests, RasterQueryTests, VectorQueryTests
from memories_geo.testing.roundtrip import FormatRoundTripTests, OnMemoryFilesystem

__all__ = [
    "AppendTests",
    "BackendTests",
    "FormatRoundTripTests",
    "OnMemoryFilesystem",
    "RasterQueryTests",
    "VectorQueryTests",
    "corrupt_stored",
]
