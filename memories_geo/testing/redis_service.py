"""Start a Redis server (Debian's ``redis-server``) on a free loopback port, for tests of the Redis cache."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from memories_geo.testing.services import Service, ServiceUnavailable, free_port

__all__ = ["REDIS_POLICIES", "start_redis"]

#: Server eviction policies matching the cache's ``eviction_policy``.
REDIS_POLICIES = {"lru": "allkeys-lru", "lfu": "allkeys-lfu"}


def _pong(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64).startswith(b"+PONG")
    return False


def start_redis(maxmemory: str = "64mb", eviction_policy: str = "lru", timeout: float = 15) -> Service:
    """A Redis server on 127.0.0.1 with no persistence, ``maxmemory`` and an ``allkeys-*`` policy.

    Parameters
    ----------
    maxmemory : str
        The server's memory bound (Redis syntax: ``"64mb"``).
    eviction_policy : {"lru", "lfu"}
        ``allkeys-lru`` or ``allkeys-lfu`` on the server.
    timeout : float
        Seconds to wait for the server to answer ``PING``.

    Returns
    -------
    Service
        ``.url`` is ``redis://127.0.0.1:PORT/0``; ``.options`` holds ``port``,
        ``maxmemory`` and ``maxmemory_policy``.

    Raises
    ------
    ServiceUnavailable
        When ``redis-server`` is not installed or does not answer in time.

    Examples
    --------
    >>> service = start_redis()  # doctest: +SKIP
    >>> service.url  # doctest: +SKIP
    'redis://127.0.0.1:40123/0'
    """
    exe = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    if exe is None:
        raise ServiceUnavailable("redis-server not found; install Debian's redis-server package")
    policy = REDIS_POLICIES[eviction_policy]
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="memories-geo-redis-"))
    proc = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--maxmemory", maxmemory, "--maxmemory-policy", policy],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)

    deadline = time.monotonic() + timeout
    while not _pong(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            ended = proc.poll() is not None and proc.stderr is not None
            error = proc.stderr.read().decode(errors="replace")[-2000:] if ended and proc.stderr else ""
            stop()
            raise ServiceUnavailable(
                f"redis-server did not answer on 127.0.0.1:{port} within {timeout:.0f} s {error}".strip()
            )
        time.sleep(0.05)
    return Service("redis", f"redis://127.0.0.1:{port}/0",
                   options={"port": port, "maxmemory": maxmemory, "maxmemory_policy": policy}, _stop=stop)
