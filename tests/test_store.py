"""The store: SQLite in WAL mode, a versioned schema, an append-only event log, safe concurrent writers."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.store import SCHEMA_VERSION, Store

WRITERS = 16
EVENTS_EACH = 50


def _mp():
    # fork is fast and the children open their own connections; fall back where it does not exist.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _append_events(root: str, writer: int, count: int, start) -> None:
    start.wait()  # open the store all at the same moment
    store = Factory(Path(root)).store
    for i in range(count):
        store.event("tick", worker=f"w{writer}", correlation=f"c{writer}", n=i)
    store.close()


def _run_writers(root: Path, count: int) -> None:
    ctx = _mp()
    start = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_append_events, args=(str(root), w, count, start)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * WRITERS


def test_store_is_in_wal_mode_with_the_current_schema_version(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / ".fac" / "state.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"workers", "events", "queue", "messages", "check_cache", "check_runs"} <= tables


def test_reopening_keeps_the_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.event("first", worker="w1", x=1)
    store.close()
    store = Store.open(tmp_path)
    assert [(e.kind, e.worker, e.payload) for e in store.events()] == [("first", "w1", {"x": 1})]


def test_a_store_from_a_newer_fac_is_refused_with_a_hint(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / ".fac" / "state.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(FacError, match="newer than this fac") as info:
        Store.open(tmp_path)
    assert info.value.hint and "upgrade" in info.value.hint


def test_events_are_append_only(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.event("spawned", worker="w1", role="worker")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("UPDATE events SET kind = 'forged'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("DELETE FROM events")
    assert [e.kind for e in store.events()] == ["spawned"]


def test_events_record_time_kind_worker_correlation_and_payload(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.event("submitted", worker="w1", correlation="q7", sha="abc", paths=["a", "b"])
    (ev,) = store.events()
    assert ev.id >= 1 and ev.ts > 0
    assert (ev.kind, ev.worker, ev.correlation) == ("submitted", "w1", "q7")
    assert ev.payload == {"sha": "abc", "paths": ["a", "b"]}


def test_events_can_be_filtered_by_worker_and_paged(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    for i in range(5):
        store.event("tick", worker="w1" if i % 2 == 0 else "w2", n=i)
    assert [e.payload["n"] for e in store.events(worker="w1")] == [0, 2, 4]
    assert [e.payload["n"] for e in store.events(limit=2)] == [3, 4]
    first = store.events()[1].id
    assert [e.payload["n"] for e in store.events(after=first)] == [2, 3, 4]
    assert [e.payload["n"] for e in store.events(worker="w2", limit=1)] == [3]


def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with pytest.raises(RuntimeError):
        with store.tx() as db:
            store.add_worker(db, name="w1", role="worker", runtime="command", branch="fac/w1",
                             worktree="/x", state="starting")  # fmt: skip
            store.event("spawned", "w1", db=db)
            raise RuntimeError("boom")
    assert store.worker("w1") is None
    assert store.events() == []


def test_concurrent_writers_lose_no_event(tmp_path: Path) -> None:
    Factory(tmp_path).store.close()  # an existing factory's store
    _run_writers(tmp_path, EVENTS_EACH)

    store = Store.open(tmp_path)
    events = store.events()
    assert len(events) == WRITERS * EVENTS_EACH
    assert len({e.id for e in events}) == len(events)
    for w in range(WRITERS):
        # each writer's own events arrive complete and in the order it wrote them
        assert [e.payload["n"] for e in store.events(worker=f"w{w}")] == list(range(EVENTS_EACH))


def test_many_processes_opening_a_fresh_store_at_once_all_succeed(tmp_path: Path) -> None:
    # Regression: switching a new database to WAL raised "database is locked" in all but one
    # process, and two processes creating .fac/ at once could crash on mkdir.
    for n in range(6):  # the race is narrow: give it several chances
        root = tmp_path / f"r{n}"
        root.mkdir()
        _run_writers(root, 2)
        assert len(Store.open(root).events()) == WRITERS * 2
        assert (root / ".fac" / ".gitignore").read_text() == "*\n"
