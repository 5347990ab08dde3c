"""The store: SQLite in WAL mode, a versioned schema, an append-only event log, safe concurrent writers."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.model import WorkerState
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
            store.add_worker(
                db,
                name="w1",
                role="worker",
                runtime="command",
                branch="fac/w1",
                worktree="/x",
                state="starting",
            )
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


def _old_store(root: Path, version: int) -> sqlite3.Connection:
    """A state.db under `root` as fac wrote it at schema `version` (its first migrations only)."""
    from supervisor.store.schema import MIGRATIONS, statements

    path = root / ".fac" / "state.db"
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:version]:
        for stmt in statements(script):
            db.execute(stmt)
    db.execute(f"PRAGMA user_version = {version}")
    return db


def test_an_old_store_upgrades_in_place_and_keeps_the_check_caches_three_kinds_of_record(
    tmp_path: Path,
) -> None:
    # A state.db as fac wrote it at schema version 3: one check_cache for gate verdicts, test
    # counts ('collect:<check>') and per-check observations ('state:<suite>:<check>').
    db = _old_store(tmp_path, 3)
    rows = [
        ("t1", "suitehash", 0, '[{"name": "tests", "ok": false}]'),
        ("t1", "collect:tests", 1, '{"count": 42}'),
        ("t2", "collect:unit:fast", 1, '{"count": 7}'),
        ("t1", "state:suitehash:tests", 1, '{"ok": true, "feedback": "fine", "tests": {"t::a": "passed"}}'),
        ("t1", "state:suitehash:lint:strict", 0, '{"ok": false, "feedback": "bad", "tests": null}'),
    ]
    db.executemany("INSERT INTO check_cache (tree, suite, ok, results, ts) VALUES (?, ?, ?, ?, 1.0)", rows)
    db.execute(
        "INSERT INTO workers (name, role, runtime, branch, worktree, state, created_at, updated_at) "
        "VALUES ('w1', 'worker', 'command', 'fac/w1', '/x', 'queued', 1, 1)"
    )
    db.commit()
    db.close()

    store = Store.open(tmp_path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.cached_result("t1", "suitehash") == (False, [{"name": "tests", "ok": False}])
    assert store.test_count("t1", "tests") == 42
    assert store.test_count("t2", "unit:fast") == 7
    assert store.observation("t1", "suitehash", "tests") == (True, "fine", {"t::a": "passed"})
    assert store.observation("t1", "suitehash", "lint:strict") == (False, "bad", None)
    # check_cache keeps only the gate's verdicts now
    assert [tuple(r) for r in store.db.execute("SELECT tree, suite FROM check_cache")] == [
        ("t1", "suitehash")
    ]
    w = store.worker("w1")
    assert w is not None and w.state == "queued"


def test_counts_and_observations_have_their_own_tables(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.remember_count("t1", "tests", 3)
    store.remember_count("t1", "tests", 4)  # the newest count wins
    with store.tx() as db:
        store.record_observation("t1", "s1", "tests", True, "", {"a::b": "failed"}, db)
    store.record_run("sha", "t1", "gate", "s1", True, [], cached=False)
    assert store.test_count("t1", "tests") == 4
    assert store.test_count("t1", "other") is None
    assert store.observation("t1", "s1", "tests") == (True, "", {"a::b": "failed"})
    assert store.observation("t1", "s2", "tests") is None
    assert store.cached_result("t1", "s1") == (True, [])
    assert store.cached_result("t1", "tests") is None


def _worker(store: Store, state: WorkerState = "working") -> None:
    with store.tx() as db:
        store.add_worker(
            db, name="w1", role="worker", runtime="command", branch="fac/w1", worktree="/x", state=state
        )


def test_a_runtime_saying_working_keeps_what_the_queue_set_and_touches_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    _worker(store)
    store.enqueue("w1", "fac/w1", "abc", None)
    before = store.worker("w1")
    assert before is not None and before.state == "queued"
    assert store.update_worker("w1", state="working", by="runtime") == "queued"
    assert store.worker("w1") == before  # not even updated_at moved
    assert store.update_worker("w1", state="working", by="runtime", session_id="s1") == "queued"
    w = store.worker("w1")
    assert w is not None and (w.state, w.session_id) == ("queued", "s1")
    assert store.update_worker("w1", state="working", by="prompt") == "working"
    assert store.update_worker("nobody", state="working") is None


def test_the_end_of_fac_check_restores_only_its_own_state(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    _worker(store, "idle")
    store.update_worker("w1", state="waiting-for-check", by="check")
    assert store.update_worker("w1", state="idle", by="check-done") == "idle"
    store.update_worker("w1", state="waiting-for-check", by="check")
    store.update_worker("w1", state="merged")  # the queue merged it meanwhile
    assert store.update_worker("w1", state="idle", by="check-done") == "merged"


def test_a_decided_queue_entry_never_changes_state(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    _worker(store)
    first, _ = store.enqueue("w1", "fac/w1", "abc", None)
    second, superseded = store.enqueue("w1", "fac/w1", "def", None)
    assert superseded == [first]
    assert store.set_entry(first, state="testing") is False
    store.start_testing([second])
    e = store.queue_entry(second)
    assert e is not None and (e.state, e.attempts) == ("testing", 1)
    assert store.set_entry(second, state="merged", merged_as="m1") is True
    assert store.set_entry(second, state="queued") is False
    e = store.queue_entry(second)
    assert e is not None and (e.state, e.merged_as) == ("merged", "m1")


def test_an_entry_back_in_line_is_superseded_by_its_worker_s_newer_submission(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    _worker(store)
    first, _ = store.enqueue("w1", "fac/w1", "abc", None)
    store.start_testing([first])
    # A resubmission while the first head is under test supersedes only what is queued.
    second, superseded = store.enqueue("w1", "fac/w1", "def", None)
    assert superseded == []
    assert store.requeue(first) == "superseded"  # its candidate was cancelled: the newer head counts
    assert store.requeue(second) is None  # queued already: nothing to put back
    store.start_testing([second])
    assert store.requeue(second) == "queued"  # no newer head: back in line
    states = [(e.sha, e.state) for e in store.queue()]
    assert states == [("abc", "superseded"), ("def", "queued")]
    assert [ev.payload.get("by") for ev in store.events() if ev.kind == "superseded"] == [f"q{second}"]
    store.start_testing([second])
    store.set_entry(second, state="merged", merged_as="m1")
    assert store.requeue(second) is None  # decided: never changes


def test_recent_reds_are_the_gate_s_own_red_verdicts_newest_first(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    _worker(store)
    decided = (("a", "merged", None), ("b", "red", "red"), ("c", "red", "guard"), ("d", "queued", None))
    for sha, state, reason in decided:
        qid, _ = store.enqueue("w1", "fac/w1", sha, None)
        if state != "queued":
            store.start_testing([qid])
            store.set_entry(qid, state=state, verdict={"ok": state == "merged", "reason": reason})
    # d is still open; c was a guard's refusal, not the gate's; b was red; a merged.
    assert store.recent_reds(16) == [False, True, False]
    assert store.recent_reds(1) == [False]


def test_the_line_stops_once_and_resumes_once(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    assert store.line().state == "running"
    assert store.set_line("running") is None
    assert store.set_line("stopped", reason="main is red", main_sha="abc") is not None
    assert store.set_line("stopped", reason="another reason") is None
    line = store.line()
    assert (line.state, line.reason, line.main_sha) == ("stopped", "main is red", "abc")
    old = store.set_line("running")
    assert old is not None and old.reason == "main is red"
    line = store.line()
    assert (line.state, line.reason, line.main_sha) == ("running", None, "abc")


def test_a_delta_row_only_moves_forward(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    assert store.update_delta("0001", status="in-progress", worker="w1") is True
    assert store.update_delta("0001", status="approved", note="n") is False  # backwards: refused
    row = store.delta_row("0001")
    assert row is not None and (row["status"], row["worker"], row["note"]) == ("in-progress", "w1", "n")
    assert store.deltas_under_way()
    assert store.update_delta("0001", status="done") is True
    assert store.update_delta("0001", status="rejected") is False
    assert not store.deltas_under_way()
    assert store.delta_ids() == {"0001"}


def test_a_testing_entry_records_since_when_and_its_running_checks(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    _worker(store)
    qid, _ = store.enqueue("w1", "fac/w1", "abc", None)
    queued = store.queue_entry(qid)
    assert queued is not None and (queued.testing_since, queued.running) == (None, ())
    assert store.set_running([qid], ["tests"])  # not testing yet: nothing changes
    assert store.queue_entry(qid) == queued
    store.start_testing([qid])
    assert store.set_running([qid], ["tests", "lint"])
    e = store.queue_entry(qid)
    assert e is not None and e.state == "testing" and e.running == ("tests", "lint")
    assert e.testing_since is not None and e.testing_since >= queued.submitted_at
    store.start_testing([qid])  # a retry starts with no check running
    again = store.queue_entry(qid)
    assert again is not None and again.running == () and again.attempts == 2


@pytest.mark.parametrize(
    "state,since,running,shown",
    [
        ("testing", 100.0, ("tests",), "testing 42s: running tests"),
        ("testing", 100.0, ("tests", "lint"), "testing 42s: running tests, lint"),
        ("testing", 100.0, (), "testing 42s"),
        ("testing", None, (), ""),  # a store from before the column: nothing is known
        ("queued", 100.0, ("tests",), ""),
        ("testing", 150.0, (), "testing 0s"),  # a clock that went back never shows a negative time
    ],
)
def test_testing_progress_reads_as_elapsed_time_and_running_checks(
    state: str, since: float | None, running: tuple[str, ...], shown: str
) -> None:
    from supervisor.queue.views import testing_progress

    assert testing_progress(state, since, running, now=142.0) == shown


def test_threads_sharing_one_store_each_write_in_their_own_transaction(tmp_path: Path) -> None:
    # The merge queue judges several candidates at once from threads that share one Store: with one
    # connection their BEGINs would collide ("cannot start a transaction within a transaction") or
    # interleave. Each thread gets its own connection; every write lands.
    import threading

    store = Store(tmp_path / "state.db")
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(25):
                with store.tx() as db:
                    store.event("probe", None, db=db, writer=n, i=i)
                    store.event("probe", None, db=db, writer=n, i=i, second=True)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    got = [e.payload for e in store.events() if e.kind == "probe"]
    assert len(got) == 8 * 25 * 2
    # each transaction's two events are adjacent: no other thread's write came in between
    for first, second in zip(got[::2], got[1::2], strict=True):
        assert (first["writer"], first["i"]) == (second["writer"], second["i"]) and second["second"]
    store.close()


def test_a_store_at_version_7_upgrades_and_its_pasted_unread_message_can_be_claimed_once(
    tmp_path: Path,
) -> None:
    # A state.db as fac wrote it before delivery claims (schema version 7), holding a message pasted
    # once and not acknowledged: after the upgrade it has no claim and no `via`, one deliverer gets it.
    db = _old_store(tmp_path, 7)
    db.execute(
        "INSERT INTO messages (worker, ts, sender, kind, body, delivered_at, attempts)"
        " VALUES ('w1', 1, 'human', 'note', 'hello', 2, 1)"
    )
    db.commit()
    db.close()

    store = Store.open(tmp_path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 8
    [m] = store.unacked()
    assert (m.body, m.attempts, m.claimed_by, m.claimed_at, m.via) == ("hello", 1, None, None, None)
    assert store.claim_message(m.id, "a", attempts=1, now=10.0, stale_before=0.0)
    assert not store.claim_message(m.id, "b", attempts=1, now=10.0, stale_before=0.0)
    store.release_message(m.id, "a", pasted=True, via="paste")
    m = store.message(m.id)
    assert m is not None and (m.attempts, m.claimed_by, m.via) == (2, None, "paste")
