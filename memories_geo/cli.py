"""``memories-geo`` command line: quickstart, ls, info, search, versions, delete, verify, recover."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from memories_geo.errors import MemoriesError

__all__ = ["main"]


def _memory(args: argparse.Namespace) -> Any:
    from memories_geo.memory import Memory

    return Memory(args.config) if args.config else Memory()


def _print_table(frame: Any) -> None:
    import pandas as pd

    if len(frame) == 0:
        print("(no entries)")
        return
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 40):
        print(frame.to_string(index=False))


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Save the sample raster and vector, search them, print the catalog."""
    from memories_geo.examples import sample_raster, sample_vector

    mem = _memory(args)
    print(f"collection: {mem.catalog.path.parent}")
    raster = mem.save(sample_raster(), "examples/t2m-2024", tier="hot", mode="w")
    print(raster, end="\n\n")
    vector = mem.save(sample_vector(), "examples/countries", tier="warm", mode="w")
    print(vector, end="\n\n")
    ds = mem.open("examples/t2m-2024")
    print(f"opened examples/t2m-2024 lazily: {dict(ds.sizes)}, mean t2m "
          f"{float(ds.t2m.mean()):.2f} {ds.t2m.attrs['units']}")
    hits = mem.search(bbox=(-10, 35, 5, 45), time=("2024-01", "2024-06"))
    print(f"\nsearch(bbox=(-10, 35, 5, 45), time=('2024-01', '2024-06')) -> {list(hits.key)}")
    print("\ncatalog:")
    columns = ["key", "version", "tier", "format", "kind", "size_bytes", "time_start", "time_end"]
    _print_table(mem.ls()[columns])
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    """List current entries."""
    frame = _memory(args).ls(args.pattern, tier=args.tier)
    _print_table(frame[["key", "version", "tier", "format", "kind", "size_bytes", "created_at"]])
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Show one entry."""
    print(_memory(args).info(args.key, version=args.version))
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    """Show every version of a key."""
    for entry in _memory(args).versions(args.key):
        print(f"v{entry.version}  {entry.created_at}  {entry.tier:8} {entry.format:11} "
              f"{entry.size_bytes:>12,} B  {entry.checksum}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Search by bbox, time, tier, kind, key glob."""
    time = None
    if args.time:
        start, _, end = args.time.partition("/")
        time = (start or None, end or None) if "/" in args.time else start
    frame = _memory(args).search(bbox=args.bbox, time=time, tier=args.tier, kind=args.kind, key=args.key)
    _print_table(frame.drop(columns="geometry")[["key", "version", "tier", "kind", "time_start", "time_end"]])
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a key or one version."""
    for entry in _memory(args).delete(args.key, version=args.version):
        print(f"deleted {entry.key} v{entry.version}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify checksums."""
    entries = _memory(args).verify(args.key, all_versions=args.all_versions)
    print(f"verified {len(entries)} version(s): all intact")
    return 0


def _recovery(args: argparse.Namespace) -> Any:
    from memories_geo.checkpoints import RecoveryManager
    from memories_geo.config import StorageConfig

    config = args.config or StorageConfig.discover()
    return RecoveryManager(config, backup_storage=getattr(args, "backup", None))


def cmd_recover(args: argparse.Namespace) -> int:
    """Rebuild the catalog if asked, restore the newest good checkpoint if asked, remove orphans."""
    recovery = _recovery(args)
    if args.rebuild_catalog:
        report = recovery.rebuild_catalog(force=True)
        print(f"catalog rebuilt: {report['versions']} version(s), {report['keys']} key(s), "
              f"{report['checkpoints']} checkpoint(s)"
              + (f"; old catalog kept as {report['moved_aside']}" if report["moved_aside"] else ""))
        for problem in report["unverifiable"]:
            print(f"  skipped: {problem}")
    if args.latest:
        cp = recovery.recover_latest()
        print(f"restored checkpoint {cp.name} ({cp.id})")
    removed = recovery.clean_orphans()
    for url in removed:
        print(f"removed orphan {url}")
    print(f"{len(removed)} orphan(s) removed")
    return 0


def _checkpoints(args: argparse.Namespace) -> Any:
    from memories_geo.checkpoints import MemoryPersistence

    return MemoryPersistence(_memory(args), backup_storage=args.backup).checkpoints


def cmd_checkpoint(args: argparse.Namespace) -> int:
    """Checkpoint sub-commands: save, list, restore, verify, diff, delete."""
    manager = _checkpoints(args)
    if args.action == "save":
        cp = manager.save(args.name, message=args.message or "")
        print(f"saved checkpoint {cp.name} ({cp.id}): {cp.keys} key(s), {cp.bytes:,} bytes"
              + (", backed up" if cp.backed_up else ""))
    elif args.action == "list":
        columns = ["name", "id", "timestamp", "kind", "keys", "bytes", "backed_up"]
        _print_table(manager.list().to_frame()[columns])
    elif args.action == "restore":
        cp = manager.restore(args.name, validate="full" if args.full else not args.no_validate)
        print(f"restored checkpoint {cp.name} ({cp.id})")
    elif args.action == "verify":
        cp = manager.verify(args.name, validate="full" if args.full else True)
        print(f"checkpoint {cp.name} ({cp.id}) verified: {cp.keys} key(s) intact")
    elif args.action == "diff":
        print(manager.diff(args.name, args.other))
    elif args.action == "delete":
        cp = manager.delete(args.name)
        print(f"deleted checkpoint {cp.name} ({cp.id})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``memories-geo``."""
    parser = argparse.ArgumentParser(prog="memories-geo", description=__doc__)
    parser.add_argument("--config", help="memories.toml, or a directory for the embedded default")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("quickstart", help="save sample data, search it, print the catalog").set_defaults(
        func=cmd_quickstart)
    p = sub.add_parser("ls", help="list keys")
    p.add_argument("pattern", nargs="?")
    p.add_argument("--tier")
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("info", help="show a key's current entry")
    p.add_argument("key")
    p.add_argument("--version", type=int)
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("versions", help="list a key's versions")
    p.add_argument("key")
    p.set_defaults(func=cmd_versions)
    p = sub.add_parser("search", help="search by bbox/time/tier/kind")
    p.add_argument("--bbox", type=float, nargs=4, metavar=("MINX", "MINY", "MAXX", "MAXY"))
    p.add_argument("--time", help="START/END or one period, e.g. 2024-01/2024-06")
    p.add_argument("--tier")
    p.add_argument("--kind")
    p.add_argument("--key", help="glob on keys")
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("delete", help="delete a key (or --version N)")
    p.add_argument("key")
    p.add_argument("--version", type=int)
    p.set_defaults(func=cmd_delete)
    p = sub.add_parser("verify", help="verify checksums")
    p.add_argument("key", nargs="?")
    p.add_argument("--all-versions", action="store_true")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("recover", help="remove orphans; optionally rebuild the catalog or restore")
    p.add_argument("--rebuild-catalog", action="store_true",
                   help="rebuild the catalog from version records and checkpoint manifests")
    p.add_argument("--latest", action="store_true", help="restore the newest checkpoint that verifies")
    p.add_argument("--backup", help="backup store (directory or URL)")
    p.set_defaults(func=cmd_recover)
    p = sub.add_parser("checkpoint", help="save|list|restore|verify|diff|delete checkpoints")
    p.add_argument("action", choices=["save", "list", "restore", "verify", "diff", "delete"])
    p.add_argument("name", nargs="?", default="latest", help="checkpoint name or id (default: latest)")
    p.add_argument("other", nargs="?", default="current", help="with diff: the other side")
    p.add_argument("--message", help="with save: a note")
    p.add_argument("--backup", help="backup store (directory or URL)")
    p.add_argument("--no-validate", action="store_true", help="with restore: skip validation")
    p.add_argument("--full", action="store_true", help="re-hash every file when validating")
    p.set_defaults(func=cmd_checkpoint)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (2 for a usage or library error)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (MemoriesError, ValueError) as exc:
        print(f"memories-geo: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
