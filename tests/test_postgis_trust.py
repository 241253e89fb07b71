"""PostGIS views stay true to the catalog: crashes, concurrent writers, taken view names (issue 15).

- a crash between the catalog commit and the view swap is repaired by ``recover()``;
- a slow writer's swap never publishes a superseded version (the swap checks, under the
  view's lock, that its version is still current);
- a key whose view name is held by a relation the library does not manage is refused
  before the commit, leaving nothing behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from vector_cases import make_grid_layer

import memories_geo as mg
from memories_geo.formats.postgis import PostGISFormat, view_name_for, views
from memories_geo.formats.registry import get_format

psycopg = pytest.importorskip("psycopg")
from psycopg import sql  # noqa: E402

pytestmark = pytest.mark.postgres

KEY = "trust/layer"


@pytest.fixture
def schema(postgres_dsn: str):
    """A schema of its own for each test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def config(tmp_path: Path, postgres_dsn: str, schema: str) -> dict[str, Any]:
    tier = {"url": postgres_dsn, "storage_options": {"schema": schema}}
    return {"home": str(tmp_path / "home"), "tiers": {"warm": tier}}


@pytest.fixture
def mem(config: dict[str, Any]) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.from_dict(config))


def _query(dsn: str, statement: Any, params: Any = None) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as con:
        cur = con.execute(statement, params)
        return cur.fetchall() if cur.description is not None else []


def _relations(dsn: str, schema: str) -> dict[str, str]:
    """Every relation of ``schema``: name -> relkind."""
    rows = _query(dsn, "SELECT c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n "
                       "ON n.oid = c.relnamespace WHERE n.nspname = %s", (schema,))
    return dict(rows)


def _view_reads(dsn: str, schema: str, key: str) -> set[str]:
    """Names of the relations the view of ``key`` reads, from PostgreSQL's own dependencies."""
    with psycopg.connect(dsn, autocommit=True) as con:
        rows = con.execute(
            "SELECT DISTINCT c.relname FROM pg_rewrite r "
            "JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid "
            "JOIN pg_class c ON d.refclassid = 'pg_class'::regclass AND c.oid = d.refobjid "
            "WHERE r.ev_class = to_regclass(%s) AND c.oid <> r.ev_class",
            (sql.Identifier(schema, view_name_for(key)).as_string(con),),
        ).fetchall()
    return {r[0] for r in rows}


def _view_count(dsn: str, schema: str, key: str) -> int:
    view = sql.Identifier(schema, view_name_for(key))
    return int(_query(dsn, sql.SQL("SELECT count(*) FROM {}").format(view))[0][0])


def _assert_view_is_current(mem: mg.Memory, dsn: str, schema: str, key: str) -> None:
    """The view reads exactly the current version's table, and shows its rows."""
    entry = mem.info(key)
    table = mem.tiers.backend(entry.tier).table_for(entry.path)
    assert _view_reads(dsn, schema, key) == {table}
    assert _view_count(dsn, schema, key) == entry.object_info["rows"]
    fmt = get_format("postgis")
    assert fmt.is_published(mem.version_store.location(entry), key)


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    """A Python process running ``code`` with ``args`` (``sys.argv[1:]``), able to import the test helpers."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- defect 2: a crash between the catalog commit and the view swap ---------------------------

CRASH_AFTER_COMMIT = """
    import json, os, signal, sys
    import memories_geo as mg
    from vector_cases import make_grid_layer

    mem = mg.Memory(mg.StorageConfig.from_dict(json.loads(sys.argv[1])))

    def crash(name, info):
        if name == "save.committed":
            os.kill(os.getpid(), signal.SIGKILL)

    mg.events.subscribe(crash)
    mem.save(make_grid_layer(int(sys.argv[3])), sys.argv[2], tier="warm", mode="w")
    print("the view was swapped before the crash")
"""


def test_a_crash_after_the_commit_is_repaired_by_recover(
    mem: mg.Memory, config: dict[str, Any], postgres_dsn: str, schema: str
) -> None:
    first = mem.save(make_grid_layer(5), KEY, tier="warm")
    child = _child(CRASH_AFTER_COMMIT, json.dumps(config), KEY, "8")
    out, err = child.communicate(timeout=300)
    assert child.returncode == -signal.SIGKILL, out + err
    current = mem.info(KEY)
    assert current.version == 2  # committed: the catalog says the new version is current
    backend = mem.tiers.backend("warm")
    assert _view_reads(postgres_dsn, schema, KEY) == {backend.table_for(first.path)}  # the view lags
    fmt = get_format("postgis")
    assert not fmt.is_published(mem.version_store.location(current), KEY)
    assert fmt.is_published(mem.version_store.location(first), KEY)
    mem.recover()
    _assert_view_is_current(mem, postgres_dsn, schema, KEY)
    assert len(mem.open(KEY)) == current.object_info["rows"]


def test_a_view_pointed_back_at_an_old_version_is_repaired_by_recover(
    mem: mg.Memory, postgres_dsn: str, schema: str
) -> None:
    first = mem.save(make_grid_layer(5), KEY, tier="warm")
    mem.save(make_grid_layer(7), KEY, tier="warm", mode="w")
    fmt = get_format("postgis")
    assert fmt.publish(mem.version_store.location(first), KEY) is True  # no currency check: swaps
    assert _view_count(postgres_dsn, schema, KEY) == first.object_info["rows"]
    mem.recover()
    _assert_view_is_current(mem, postgres_dsn, schema, KEY)


def test_is_published_follows_the_view_itself(mem: mg.Memory, postgres_dsn: str, schema: str) -> None:
    fmt = get_format("postgis")
    assert isinstance(fmt, PostGISFormat)
    entry = mem.save(make_grid_layer(5), KEY, tier="warm")
    location = mem.version_store.location(entry)
    assert fmt.is_published(location, KEY)
    assert not fmt.is_published(location, "trust/other")
    view = sql.Identifier(schema, view_name_for(KEY))
    _query(postgres_dsn, sql.SQL("DROP VIEW {}; CREATE VIEW {} AS SELECT * FROM {}").format(
        view, view, sql.Identifier(schema, "memories_geo_tables")))  # redefined by hand: reads another table
    assert not fmt.is_published(location, KEY)
    _query(postgres_dsn, sql.SQL("DROP VIEW {}").format(view))
    assert not fmt.is_published(location, KEY)
    mem.recover()
    _assert_view_is_current(mem, postgres_dsn, schema, KEY)


# -- defect 3: a slow writer's swap running last -------------------------------------------------


def test_a_superseded_version_is_not_published(mem: mg.Memory, postgres_dsn: str, schema: str) -> None:
    first = mem.save(make_grid_layer(5), KEY, tier="warm")
    mem.save(make_grid_layer(7), KEY, tier="warm", mode="w")
    fmt = get_format("postgis")
    asked: list[str] = []

    def stale() -> bool:
        asked.append("old")
        return False

    assert fmt.publish(mem.version_store.location(first), KEY, is_current=stale) is False
    assert asked == ["old"]
    _assert_view_is_current(mem, postgres_dsn, schema, KEY)
    assert fmt.publish(mem.version_store.location(mem.info(KEY)), KEY, is_current=lambda: True) is True
    _assert_view_is_current(mem, postgres_dsn, schema, KEY)


def test_currency_is_asked_under_the_views_lock(mem: mg.Memory, postgres_dsn: str, schema: str) -> None:
    entry = mem.save(make_grid_layer(5), KEY, tier="warm")
    backend = mem.tiers.backend("warm")
    fmt = get_format("postgis")
    asked = threading.Event()
    outcome: list[Any] = []

    def current() -> bool:
        asked.set()
        return True

    def publish() -> None:
        try:
            outcome.append(fmt.publish(mem.version_store.location(entry), KEY, is_current=current))
        except BaseException as exc:
            outcome.append(exc)

    with backend.connection() as con:
        views.lock(con, backend, KEY)  # another publish (or unpublish) of this view in progress
        thread = threading.Thread(target=publish)
        thread.start()
        assert not asked.wait(1.0)  # waits for the lock before asking
    thread.join(30)
    assert asked.is_set()
    assert outcome == [True]


def test_unpublish_waits_for_the_views_lock(mem: mg.Memory, postgres_dsn: str, schema: str) -> None:
    mem.save(make_grid_layer(5), KEY, tier="warm")
    backend = mem.tiers.backend("warm")
    finished = threading.Event()

    def unpublish() -> None:
        get_format("postgis").unpublish(backend, KEY)
        finished.set()

    with backend.connection() as con:
        views.lock(con, backend, KEY)
        thread = threading.Thread(target=unpublish)
        thread.start()
        assert not finished.wait(1.0)
        assert view_name_for(KEY) in _relations(postgres_dsn, schema)
    thread.join(30)
    assert finished.is_set()
    assert view_name_for(KEY) not in _relations(postgres_dsn, schema)


INTERLEAVED_WRITER = """
    import json, pathlib, sys, time
    import memories_geo as mg
    from vector_cases import make_grid_layer

    config, key, flags, role = json.loads(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3]), sys.argv[4]
    mem = mg.Memory(mg.StorageConfig.from_dict(config))

    def wait_for(name):
        deadline = time.monotonic() + 120
        while not (flags / name).exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"{role}: timed out waiting for {name}")
            time.sleep(0.02)

    def hook(name, info):
        if name == "save.committed" and role == "slow":
            (flags / "slow-committed").touch()
            wait_for("fast-published")  # the other writer commits and publishes a newer version meanwhile

    mg.events.subscribe(hook)
    if role == "fast":
        wait_for("slow-committed")
    mem.save(make_grid_layer(3 if role == "slow" else 4), key, tier="warm", mode="w")
    if role == "fast":
        (flags / "fast-published").touch()
"""


def test_a_slow_writers_swap_running_last_does_not_win(
    mem: mg.Memory, config: dict[str, Any], postgres_dsn: str, schema: str, tmp_path: Path
) -> None:
    """Writer A commits v2, B commits and publishes v3, then A's swap runs: the view stays on v3."""
    mem.save(make_grid_layer(2), KEY, tier="warm")
    writers = [_child(INTERLEAVED_WRITER, json.dumps(config), KEY, str(tmp_path), role)
               for role in ("slow", "fast")]
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, out + err
    current = mem.info(KEY)
    assert current.version == 3
    assert current.object_info["rows"] == len(make_grid_layer(4))
    _assert_view_is_current(mem, postgres_dsn, schema, KEY)


SLOW_WRITER = """
    import json, random, sys, time
    import memories_geo as mg
    from vector_cases import make_grid_layer

    config, key, writer = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    mem = mg.Memory(mg.StorageConfig.from_dict(config))
    pause = random.Random(1000 + writer)

    def slow(name, info):
        if name == "save.committed":  # widen the window between the commit and the swap
            time.sleep(pause.uniform(0.0, 0.3))

    mg.events.subscribe(slow)
    for i in range(5):
        mem.save(make_grid_layer(2 + 5 * writer + i), key, tier="warm", mode="w")
"""


def test_two_writers_leave_the_view_on_the_current_version(
    mem: mg.Memory, config: dict[str, Any], postgres_dsn: str, schema: str
) -> None:
    mem.save(make_grid_layer(1), KEY, tier="warm")
    writers = [_child(SLOW_WRITER, json.dumps(config), KEY, str(n)) for n in range(2)]
    for writer in writers:
        _, err = writer.communicate(timeout=600)
        assert writer.returncode == 0, err
    assert mem.info(KEY).version == 11
    _assert_view_is_current(mem, postgres_dsn, schema, KEY)


# -- defect 4: a view name taken by a relation the library does not manage ------------------------


@pytest.mark.parametrize(
    "key", ["canary", "memories_geo_tables", "memories_geo_objects", "memories_geo_views"]
)
def test_a_taken_view_name_is_refused_before_the_commit(
    mem: mg.Memory, postgres_dsn: str, schema: str, key: str
) -> None:
    backend = mem.tiers.backend("warm")
    views.prepare(backend)
    if key == "canary":
        _query(postgres_dsn, sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(schema, key)))
    before = _relations(postgres_dsn, schema)
    layer = make_grid_layer(3)
    with pytest.raises(mg.FormatError, match=rf"{schema}\.{key}"):
        mem.save(layer, key, tier="warm")
    assert key not in set(mem.ls()["key"])
    assert mem.catalog.staged_versions() == []
    assert backend.version_paths() == []
    assert not backend.exists(key)  # no version record either
    assert _relations(postgres_dsn, schema) == before  # no stray version table, nothing replaced
    if key == "canary":
        _query(postgres_dsn, sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, key)))
        mem.save(layer, key, tier="warm")  # a retry is a first save, not KeyExistsError
        _assert_view_is_current(mem, postgres_dsn, schema, key)
    else:
        mem.save(layer, KEY, tier="warm")
        _assert_view_is_current(mem, postgres_dsn, schema, KEY)
    assert _relations(postgres_dsn, schema)[key] == ("v" if key == "canary" else "r")


def test_other_holders_of_a_view_name_are_refused(mem: mg.Memory, postgres_dsn: str, schema: str) -> None:
    backend = mem.tiers.backend("warm")
    mem.save(make_grid_layer(2), KEY, tier="warm")
    version_table = backend.table_for(mem.info(KEY).path)
    assert version_table is not None
    _query(postgres_dsn, sql.SQL("CREATE TYPE {} AS ENUM ('a')").format(sql.Identifier(schema, "mood")))
    _query(postgres_dsn, sql.SQL("CREATE MATERIALIZED VIEW {} AS SELECT 1 AS x").format(
        sql.Identifier(schema, "summary")))
    for key, holder in [(version_table, "table"), ("mood", "type"), ("summary", "materialized view")]:
        with pytest.raises(mg.FormatError, match=holder):
            mem.save(make_grid_layer(2), key, tier="warm")
        assert key not in set(mem.ls()["key"])
    assert list(mem.ls()["key"]) == [KEY]
    assert backend.version_paths() == [mem.info(KEY).path]
    _assert_view_is_current(mem, postgres_dsn, schema, KEY)


def test_a_name_taken_after_the_write_is_not_left_committed(
    mem: mg.Memory, postgres_dsn: str, schema: str
) -> None:
    """The second line of defence: the publish refuses, and the commit is undone."""
    mem.tiers.backend("warm").ensure_ready()

    def take_the_name(name: str, info: Any) -> None:
        if name == "save.verified":
            _query(postgres_dsn, sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(schema, "canary")))

    unsubscribe = mg.events.subscribe(take_the_name)
    try:
        with pytest.raises(mg.FormatError, match="canary"):
            mem.save(make_grid_layer(3), "canary", tier="warm")
    finally:
        unsubscribe()
    assert "canary" not in set(mem.ls()["key"])
    assert mem.tiers.backend("warm").version_paths() == []
    _query(postgres_dsn, sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, "canary")))
    mem.save(make_grid_layer(3), "canary", tier="warm")
    _assert_view_is_current(mem, postgres_dsn, schema, "canary")


# -- found by the crash-injection suite ----------------------------------------------------


@pytest.mark.postgres
def test_a_restore_drops_the_views_of_keys_it_removes(mem, postgres_dsn, schema):
    mem.checkpoints.save("empty")
    mem.save(make_grid_layer(2), "a", tier="warm")
    assert _view_count(postgres_dsn, schema, "a") == mem.info("a").object_info["rows"]
    mem.checkpoints.restore("empty")
    assert mem.ls().empty
    assert view_name_for("a") not in _relations(postgres_dsn, schema)


@pytest.mark.postgres
def test_recover_drops_the_view_a_killed_delete_left(mem, postgres_dsn, schema):
    entry = mem.save(make_grid_layer(2), "a", tier="warm")
    table = mem.tiers.backend("warm").table_for(entry.path)
    mem.catalog.remove_key("a")
    assert view_name_for("a") in _relations(postgres_dsn, schema)
    removed = mem.recover()
    assert len(removed) == 1
    relations = _relations(postgres_dsn, schema)
    assert view_name_for("a") not in relations
    assert table not in relations
    assert get_format("postgis").published_keys(mem.tiers.backend("warm")) == []
