"""The shipped test kit: subclass these bases to test a new format or backend in a few lines.

- :class:`FormatRoundTripTests`: exact round trips, versions, verification (with a
  ``corrupt()`` hook for files and tables), deletion.
- :class:`VectorQueryTests`, :class:`RasterQueryTests`, :class:`TimeQueryTests`,
  :class:`AppendTests`: the ``open`` contract, time pushdown and appends, as capability
  mixins; :data:`TIMESERIES_CASES` with :func:`timeseries_case` and
  :func:`assert_same_timeseries` for time-series round trips.
- :class:`BackendTests`: the backend protocol.
- The pytest plugin (``memories_geo.testing.plugin``, registered through the ``pytest11``
  entry point) starts real servers on loopback for the session: ``postgres_service``,
  ``s3_service``, ``gcs_service``, ``azure_service``, ``postgres_dsn`` and
  ``timescaledb_dsn`` (TimescaleDB SQL in PGlite, a test-time compatibility check).
"""

from memories_geo.testing.backends import BackendTests, corrupt_stored
from memories_geo.testing.capabilities import AppendTests, RasterQueryTests, TimeQueryTests, VectorQueryTests
from memories_geo.testing.roundtrip import (
    TIMESERIES_CASES,
    FormatRoundTripTests,
    OnMemoryFilesystem,
    assert_same_timeseries,
    timeseries_case,
)

__all__ = [
    "TIMESERIES_CASES",
    "AppendTests",
    "BackendTests",
    "FormatRoundTripTests",
    "OnMemoryFilesystem",
    "RasterQueryTests",
    "TimeQueryTests",
    "VectorQueryTests",
    "assert_same_timeseries",
    "corrupt_stored",
    "timeseries_case",
]
