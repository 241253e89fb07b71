"""Mounted file systems: the facts of the mount a path is on, and ``nfs://`` URLs mapped to mounts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from memories_geo.errors import ConfigError

__all__ = ["MOUNTS_TABLE", "MOUNT_FACTS", "check_mount", "mount_facts", "nfs_location", "read_mounts"]

#: The kernel's table of the mounts this process sees.
MOUNTS_TABLE = "/proc/self/mounts"
#: Keys of the facts recorded for a tier on a mounted file system.
MOUNT_FACTS = ("mount_point", "fstype", "source", "options")
#: File system types that are network file systems.
NETWORK_FSTYPES = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "glusterfs", "ceph", "9p", "lustre")


def _unescape(field: str) -> str:
    r"""``/mnt/my\040data`` -> ``/mnt/my data`` (the table escapes spaces, tabs and newlines in octal)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def read_mounts(table: str | os.PathLike[str] = MOUNTS_TABLE) -> list[dict[str, str]]:
    """Every mount in ``table`` (``/proc/self/mounts`` format) as a dict of :data:`MOUNT_FACTS`.

    Raises
    ------
    ConfigError
        The table cannot be read (not Linux, or no ``/proc``).

    Examples
    --------
    >>> any(m["mount_point"] == "/" for m in read_mounts())
    True
    """
    try:
        lines = Path(table).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the mount table {os.fspath(table)!r}: {exc}") from None
    mounts = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 4:
            source, point, fstype, options = (_unescape(p) for p in parts[:4])
            mounts.append({"mount_point": point, "fstype": fstype, "source": source, "options": options})
    return mounts


def mount_facts(path: str | os.PathLike[str], table: str | os.PathLike[str] = MOUNTS_TABLE) -> dict[str, str]:
    """Facts of the mount ``path`` is on: the mount with the longest mount point above it.

    The last such line wins when a mount point is mounted over, as the kernel does.

    Examples
    --------
    >>> mount_facts("/")["mount_point"]
    '/'
    """
    target = Path(path).expanduser().resolve()
    best: dict[str, str] | None = None
    for mount in read_mounts(table):
        point = Path(mount["mount_point"])
        if (target == point or point in target.parents) and (
            best is None or len(point.parts) >= len(Path(best["mount_point"]).parts)
        ):
            best = mount
    if best is None:
        raise ConfigError(f"{str(target)!r} is on no mount listed in {os.fspath(table)!r}")
    return best


def check_mount(value: Any, where: str) -> dict[str, str]:
    """A tier's ``mount`` setting: a mounted path (its facts are read) or the facts themselves.

    Raises
    ------
    ConfigError
        Not a path or a mapping of exactly :data:`MOUNT_FACTS`.
    """
    if isinstance(value, str | os.PathLike):
        return mount_facts(value)
    if isinstance(value, Mapping):
        facts = {str(k): v for k, v in value.items()}
        if set(facts) != set(MOUNT_FACTS) or not all(isinstance(v, str) for v in facts.values()):
            raise ConfigError(
                f"{where}: the mounted directory (a path), or its facts {list(MOUNT_FACTS)} as strings; "
                f"got {sorted(facts)}"
            )
        return facts
    raise ConfigError(f"{where}: must be the path of a mounted directory, got {value!r}")


def nfs_location(url: str, table: str | os.PathLike[str] = MOUNTS_TABLE) -> tuple[str, dict[str, str]]:
    """The local path of ``nfs://host/export/path`` and its mount's facts, if the export is mounted.

    A mount matches when its file system is NFS, its source is ``host:/export`` and the
    URL's path is the export or below it; the longest export wins.

    Raises
    ------
    ConfigError
        The export is not mounted here (the message says how to mount it).

    Examples
    --------
    >>> nfs_location("nfs://filer/exports/geo")  # doctest: +SKIP
    ('/mnt/geo', {'mount_point': '/mnt/geo', 'fstype': 'nfs4', 'source': 'filer:/exports/geo', ...})
    """
    parts = urlsplit(url)
    host, remote = parts.hostname or "", parts.path or "/"
    if not host:
        raise ConfigError(f"{url!r}: an NFS URL names its server, nfs://HOST/EXPORT/PATH")
    found: tuple[str, dict[str, str]] | None = None
    for mount in read_mounts(table):
        server, _, export = mount["source"].partition(":")
        export = "/" + export.strip("/")
        if not mount["fstype"].startswith("nfs") or server.strip("[]") != host or not export:
            continue
        below = remote.rstrip("/") == export.rstrip("/") or remote.startswith(export.rstrip("/") + "/")
        if below and (found is None or len(export) > len(found[1]["source"].partition(":")[2])):
            rest = remote[len(export.rstrip("/")) :].strip("/")
            local = os.path.join(mount["mount_point"], rest) if rest else mount["mount_point"]
            found = (local, mount)
    if found is None:
        raise ConfigError(
            f"{url!r}: the export {host}:{remote} is not mounted on this machine; memories_geo uses an "
            f"NFS export through its mount. Mount it (e.g. 'sudo mount -t nfs {host}:{remote} /mnt/geo') "
            "and use that nfs:// URL again, or the directory (file:///mnt/geo) as the tier's url"
        )
    return found
