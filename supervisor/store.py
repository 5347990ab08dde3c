"""The factory's state: SQLite in WAL mode at `.fac/state.db`.

Every write is one short `BEGIN IMMEDIATE` transaction, so many `fac` processes (one per pane)
can write at once without losing an update. The schema is versioned with `PRAGMA user_version`
and migrated forward on open. `events` is append-only: nothing updates or deletes its rows.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NamedTuple

from supervisor.model import (
    ENTRY_OPEN,
    DeltaState,
    EntryState,
    Event,
    Line,
    LineState,
    Message,
    QueueEntry,
    Task,
    TaskState,
    Worker,
    WorkerCause,
    WorkerState,
    delta_transition,
    entry_transition,
    line_transition,
    task_transition,
    worker_transition,
)

__all__ = ["QUEUE_OPEN", "SCHEMA_VERSION", "UNSET", "Event", "Message", "QueueEntry", "Store", "Worker"]

MIGRATIONS: list[str] = [
    # 1: workers, events, queue, messages, check cache and runs
    """
    CREATE TABLE workers (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        runtime TEXT NOT NULL,
        branch TEXT NOT NULL,
        worktree TEXT NOT NULL,
        state TEXT NOT NULL,
        task TEXT,
        delta TEXT,
        command TEXT,
        window_id TEXT,
        pane_id TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        worker TEXT,
        correlation TEXT,
        payload TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_worker ON events(worker, id);
    CREATE TRIGGER events_append_only_u BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TRIGGER events_append_only_d BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TABLE queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        worker TEXT NOT NULL,
        branch TEXT NOT NULL,
        sha TEXT NOT NULL,
        delta TEXT,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        submitted_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        verdict TEXT,
        merged_as TEXT
    );
    CREATE INDEX queue_state ON queue(state, id);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        worker TEXT NOT NULL,
        ts REAL NOT NULL,
        sender TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        delivered_at REAL,
        read_at REAL
    );
    CREATE INDEX messages_worker ON messages(worker, id);
    CREATE TABLE check_cache (
        tree TEXT NOT NULL,
        suite TEXT NOT NULL,
        ok INTEGER NOT NULL,
        results TEXT NOT NULL,
        ts REAL NOT NULL,
        PRIMARY KEY (tree, suite)
    );
    CREATE TABLE check_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        sha TEXT NOT NULL,
        tree TEXT NOT NULL,
        stage TEXT NOT NULL,
        ok INTEGER NOT NULL,
        cached INTEGER NOT NULL,
        results TEXT NOT NULL
    );
    """,
    # 2: the supervisor (restarts, andon, receipts, the line, kanban tasks) and agent accounting
    """
    ALTER TABLE workers ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workers ADD COLUMN crashes TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE workers ADD COLUMN next_restart REAL;
    ALTER TABLE workers ADD COLUMN question TEXT;
    ALTER TABLE workers ADD COLUMN red_streak INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workers ADD COLUMN session_id TEXT;
    ALTER TABLE workers ADD COLUMN tokens_in INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workers ADD COLUMN tokens_out INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workers ADD COLUMN cost REAL NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN acked_at REAL;
    ALTER TABLE messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE line (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        state TEXT NOT NULL,
        reason TEXT,
        since REAL NOT NULL,
        main_sha TEXT
    );
    INSERT INTO line (id, state, since) VALUES (1, 'running', 0);
    CREATE TABLE tasks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        text TEXT NOT NULL,
        role TEXT NOT NULL,
        delta TEXT,
        runtime TEXT,
        command TEXT,
        state TEXT NOT NULL,
        worker TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 3: deltas: reserved ids, agents' proposals (text kept here until a human approves), and the
    # runtime half of each delta's lifecycle (in-progress, merged, the factory's fold); specs/deltas/
    # on main holds the rest.
    """
    CREATE TABLE deltas (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        status TEXT NOT NULL,
        owner TEXT,
        path TEXT,
        text TEXT,
        worker TEXT,
        main_sha TEXT,
        fold_sha TEXT,
        fold_entry INTEGER,
        fold_attempts INTEGER NOT NULL DEFAULT 0,
        note TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 4: the check cache's three meanings in three tables: check_cache keeps the gate's verdicts by
    # (tree, suite hash); the test counts of the no-weakening guard ('collect:<check>' rows) and
    # `fac state`'s per-check observations with junit outcomes ('state:<suite>:<check>' rows) move out.
    """
    CREATE TABLE test_counts (
        tree TEXT NOT NULL,
        check_name TEXT NOT NULL,
        count INTEGER NOT NULL,
        ts REAL NOT NULL,
        PRIMARY KEY (tree, check_name)
    );
    CREATE TABLE check_observations (
        tree TEXT NOT NULL,
        suite TEXT NOT NULL,
        check_name TEXT NOT NULL,
        ok INTEGER NOT NULL,
        feedback TEXT NOT NULL,
        tests TEXT,
        ts REAL NOT NULL,
        PRIMARY KEY (tree, suite, check_name)
    );
    INSERT OR REPLACE INTO test_counts (tree, check_name, count, ts)
        SELECT tree, substr(suite, 9), CAST(json_extract(results, '$.count') AS INTEGER), ts
        FROM check_cache WHERE substr(suite, 1, 8) = 'collect:';
    INSERT OR REPLACE INTO check_observations (tree, suite, check_name, ok, feedback, tests, ts)
        SELECT tree, substr(suite, 7, instr(substr(suite, 7), ':') - 1), substr(suite, 7 + instr(substr(suite, 7), ':')),
               ok, COALESCE(json_extract(results, '$.feedback'), ''), json_extract(results, '$.tests'), ts
        FROM check_cache WHERE substr(suite, 1, 6) = 'state:' AND instr(substr(suite, 7), ':') > 0;
    DELETE FROM check_cache WHERE substr(suite, 1, 8) = 'collect:' OR substr(suite, 1, 6) = 'state:';
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

QUEUE_OPEN = ENTRY_OPEN


class _Unset(enum.Enum):
    UNSET = 0


UNSET = _Unset.UNSET  # "leave this column as it is" (None is a value: it writes NULL)


class MergedDelta(NamedTuple):
    """A merged queue entry that carries a delta not yet done or rejected."""

    worker: str
    delta: str
    merged_as: str | None
    status: DeltaState


class Store:
    """A connection to `.fac/state.db`; cheap to open, one per process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA busy_timeout=60000")
        self._enable_wal()
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _enable_wal(self) -> None:
        # Switching a fresh database to WAL takes an exclusive lock without waiting on the busy
        # handler, so several `fac` processes opening a new store at once can see "locked": retry.
        deadline = time.monotonic() + 60
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @classmethod
    def open(cls, root: Path) -> Store:
        return cls(root / ".fac" / "state.db")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; the write lock is taken at BEGIN, not at first write."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _migrate(self) -> None:
        with self.tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                from supervisor.errors import FacError

                raise FacError(
                    f"{self.path} has schema version {version}, newer than this fac ({SCHEMA_VERSION})",
                    hint="upgrade fac (pip install -U fac)",
                )
            for i in range(version, SCHEMA_VERSION):
                for stmt in _statements(MIGRATIONS[i]):
                    db.execute(stmt)
            if version != SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def data_version(self) -> int:
        """Changes whenever another connection commits: a cheap way to wait for news."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    # --- events ---

    def event(
        self,
        kind: str,
        worker: str | None = None,
        correlation: str | None = None,
        db: sqlite3.Connection | None = None,
        **payload: Any,
    ) -> None:
        stmt = "INSERT INTO events (ts, kind, worker, correlation, payload) VALUES (?, ?, ?, ?, ?)"
        args = (time.time(), kind, worker, correlation, json.dumps(payload, default=str))
        if db is not None:
            db.execute(stmt, args)
        else:
            with self.tx() as conn:
                conn.execute(stmt, args)

    def events(self, *, worker: str | None = None, after: int = 0, limit: int | None = None) -> list[Event]:
        sql = "SELECT * FROM events WHERE id > ?"
        args: list[Any] = [after]
        if worker:
            sql += " AND worker = ?"
            args.append(worker)
        sql += " ORDER BY id"
        if limit:
            sql = f"SELECT * FROM ({sql[: -len(' ORDER BY id')]} ORDER BY id DESC LIMIT {int(limit)}) ORDER BY id"
        return [
            Event(r["id"], r["ts"], r["kind"], r["worker"], r["correlation"], json.loads(r["payload"]))
            for r in self.db.execute(sql, args)
        ]

    @contextmanager
    def _within(self, db: sqlite3.Connection | None) -> Iterator[sqlite3.Connection]:
        """The caller's transaction when it passes one, else a short one of its own."""
        if db is not None:
            yield db
        else:
            with self.tx() as conn:
                yield conn

    def _update(self, db: sqlite3.Connection, table: str, key: str, value: object, fields: dict[str, Any]) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        db.execute(f"UPDATE {table} SET {sets} WHERE {key} = ?", [*fields.values(), value])

    # --- workers ---

    def add_worker(
        self,
        db: sqlite3.Connection,
        *,
        name: str,
        role: str,
        runtime: str,
        branch: str,
        worktree: str,
        state: WorkerState,
        task: str | None = None,
        delta: str | None = None,
        command: str | None = None,
    ) -> None:
        now = time.time()
        db.execute(
            "INSERT INTO workers (name, role, runtime, branch, worktree, state, task, delta, command,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, role, runtime, branch, worktree, state, task, delta, command, now, now),
        )

    def update_worker(
        self,
        name: str,
        *,
        db: sqlite3.Connection | None = None,
        state: WorkerState | _Unset = UNSET,
        by: WorkerCause = "fac",
        window_id: str | None | _Unset = UNSET,
        pane_id: str | None | _Unset = UNSET,
        restarts: int | _Unset = UNSET,
        crashes: str | _Unset = UNSET,
        next_restart: float | None | _Unset = UNSET,
        question: str | None | _Unset = UNSET,
        red_streak: int | _Unset = UNSET,
        session_id: str | None | _Unset = UNSET,
    ) -> WorkerState | None:
        """Change a worker's row; a new `state` applies only where `model.worker_transition` allows it.

        Returns the state the worker is in afterwards (None: no such worker). When nothing is left to
        write (a refused state and no other field) the row, `updated_at` included, stays as it was.
        """
        fields = _given(
            window_id=window_id, pane_id=pane_id, restarts=restarts, crashes=crashes,
            next_restart=next_restart, question=question, red_streak=red_streak, session_id=session_id,
        )  # fmt: skip
        with self._within(db) as conn:
            return self._set_worker(conn, name, state, by, fields)

    def _set_worker(
        self, db: sqlite3.Connection, name: str, state: WorkerState | _Unset, by: WorkerCause, fields: dict[str, Any]
    ) -> WorkerState | None:
        row = db.execute("SELECT state FROM workers WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        now: WorkerState = row[0]
        if state is not UNSET and worker_transition(now, state, by):
            fields["state"] = now = state
        if fields:
            fields["updated_at"] = time.time()
            self._update(db, "workers", "name", name, fields)
        return now

    def add_usage(
        self, name: str, tokens_in: int, tokens_out: int, cost: float, db: sqlite3.Connection
    ) -> tuple[int, int, float] | None:
        """Add one model call's tokens and cost to a worker; its new totals (None: no such worker)."""
        row = db.execute("SELECT tokens_in, tokens_out, cost FROM workers WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        totals = (row["tokens_in"] + tokens_in, row["tokens_out"] + tokens_out, row["cost"] + cost)
        db.execute(
            "UPDATE workers SET tokens_in = ?, tokens_out = ?, cost = ?, updated_at = ? WHERE name = ?",
            (*totals, time.time(), name),
        )
        return totals

    def delete_worker(self, name: str, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM workers WHERE name = ?", (name,))

    def worker(self, name: str) -> Worker | None:
        row = self.db.execute("SELECT * FROM workers WHERE name = ?", (name,)).fetchone()
        return Worker(**dict(row)) if row else None

    def workers(self) -> list[Worker]:
        return [Worker(**dict(r)) for r in self.db.execute("SELECT * FROM workers ORDER BY created_at, name")]

    # --- queue ---

    def enqueue(self, worker: str, branch: str, sha: str, delta: str | None) -> tuple[int, list[int]]:
        """Queue `sha`; an older open entry of the same worker is superseded. Returns (id, superseded)."""
        now = time.time()
        with self.tx() as db:
            old = [
                r[0]
                for r in db.execute("SELECT id FROM queue WHERE worker = ? AND state = 'queued'", (worker,))
            ]
            for qid in old:
                self._set_entry(db, qid, "superseded", {})
            cur = db.execute(
                "INSERT INTO queue (worker, branch, sha, delta, state, submitted_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'queued', ?, ?)",
                (worker, branch, sha, delta, now, now),
            )
            qid = int(cur.lastrowid or 0)
            self._set_worker(db, worker, "queued", "fac", {})
            self.event(
                "submitted", worker, correlation=f"q{qid}", db=db, sha=sha, branch=branch, superseded=old
            )
        return qid, old

    def queue(self, states: tuple[EntryState, ...] | None = None) -> list[QueueEntry]:
        sql, args = "SELECT * FROM queue", []
        if states:
            sql += f" WHERE state IN ({', '.join('?' for _ in states)})"
            args = list(states)
        return [_entry(r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def queue_entry(self, qid: int) -> QueueEntry | None:
        row = self.db.execute("SELECT * FROM queue WHERE id = ?", (qid,)).fetchone()
        return _entry(row) if row else None

    def set_entry(
        self,
        qid: int,
        *,
        db: sqlite3.Connection | None = None,
        state: EntryState | _Unset = UNSET,
        attempts: int | _Unset = UNSET,
        verdict: dict[str, Any] | None | _Unset = UNSET,
        merged_as: str | None | _Unset = UNSET,
    ) -> bool:
        """Change a queue entry; False when `model.entry_transition` refuses its new state (nothing is written)."""
        fields = _given(attempts=attempts, merged_as=merged_as)
        if not isinstance(verdict, _Unset):
            fields["verdict"] = json.dumps(verdict, default=str) if verdict is not None else None
        with self._within(db) as conn:
            return self._set_entry(conn, qid, state, fields)

    def _set_entry(self, db: sqlite3.Connection, qid: int, state: EntryState | _Unset, fields: dict[str, Any]) -> bool:
        if state is not UNSET:
            row = db.execute("SELECT state FROM queue WHERE id = ?", (qid,)).fetchone()
            if row is None or not entry_transition(row[0], state):
                return False
            fields["state"] = state
        fields["updated_at"] = time.time()
        self._update(db, "queue", "id", qid, fields)
        return True

    def start_testing(self, ids: list[int]) -> None:
        """The entries of a candidate go under test: testing, one attempt more."""
        with self.tx() as db:
            for qid in ids:
                row = db.execute("SELECT attempts FROM queue WHERE id = ?", (qid,)).fetchone()
                if row is not None:
                    self._set_entry(db, qid, "testing", {"attempts": row[0] + 1})

    def cancel_queued(self, worker: str, db: sqlite3.Connection) -> None:
        """A removed worker's waiting entries are cancelled."""
        for (qid,) in db.execute("SELECT id FROM queue WHERE worker = ? AND state = 'queued'", (worker,)).fetchall():
            self._set_entry(db, qid, "cancelled", {})

    # --- messages ---

    def add_message(self, worker: str, sender: str, kind: str, body: str, db: sqlite3.Connection) -> int:
        cur = db.execute(
            "INSERT INTO messages (worker, ts, sender, kind, body) VALUES (?, ?, ?, ?, ?)",
            (worker, time.time(), sender, kind, body),
        )
        return int(cur.lastrowid or 0)

    def messages(self, worker: str, *, unread_only: bool = False) -> list[Message]:
        sql = "SELECT * FROM messages WHERE worker = ?"
        if unread_only:
            sql += " AND read_at IS NULL"
        return [Message(**dict(r)) for r in self.db.execute(sql + " ORDER BY id", (worker,))]

    def message(self, mid: int) -> Message | None:
        row = self.db.execute("SELECT * FROM messages WHERE id = ?", (mid,)).fetchone()
        return Message(**dict(row)) if row else None

    def note_delivery(self, mid: int) -> None:
        """A paste into the pane happened: remember when (the latest) and how often."""
        with self.tx() as db:
            db.execute(
                "UPDATE messages SET delivered_at = ?, attempts = attempts + 1 WHERE id = ?",
                (time.time(), mid),
            )

    def unacked(self) -> list[Message]:
        """Messages no runtime has acknowledged yet, oldest first."""
        return [
            Message(**dict(r))
            for r in self.db.execute("SELECT * FROM messages WHERE acked_at IS NULL ORDER BY id")
        ]

    def mark_messages(self, ids: list[int], column: Literal["read_at", "delivered_at", "acked_at"]) -> None:
        assert column in ("read_at", "delivered_at", "acked_at")
        if not ids:
            return
        with self.tx() as db:
            db.executemany(
                f"UPDATE messages SET {column} = COALESCE({column}, ?) WHERE id = ?",
                [(time.time(), i) for i in ids],
            )

    # --- the line ---

    def line(self) -> Line:
        row = self.db.execute("SELECT state, reason, since, main_sha FROM line WHERE id = 1").fetchone()
        return Line(row["state"], row["reason"], row["since"], row["main_sha"])

    def set_line(
        self,
        state: LineState,
        *,
        db: sqlite3.Connection | None = None,
        reason: str | None = None,
        main_sha: str | None | _Unset = UNSET,
    ) -> Line | None:
        """Stop or restart the line; the line as it was, or None when `model.line_transition` refuses."""
        with self._within(db) as conn:
            old = self.line()
            if not line_transition(old.state, state):
                return None
            fields = {"state": state, "reason": reason, "since": time.time(), **_given(main_sha=main_sha)}
            self._update(conn, "line", "id", 1, fields)
            return old

    # --- tasks ---

    def add_task(
        self, text: str, role: str, delta: str | None, runtime: str | None, command: str | None, db: sqlite3.Connection
    ) -> int:
        now = time.time()
        cur = db.execute(
            "INSERT INTO tasks (text, role, delta, runtime, command, state, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, 'todo', ?, ?)",
            (text, role, delta, runtime, command, now, now),
        )
        return int(cur.lastrowid or 0)

    def tasks(self) -> list[Task]:
        return [Task(**dict(r)) for r in self.db.execute("SELECT * FROM tasks ORDER BY id")]

    def set_task(
        self, tid: int, state: TaskState, *, db: sqlite3.Connection, worker: str | None | _Unset = UNSET
    ) -> bool:
        """Move a task on; False when `model.task_transition` refuses (nothing is written)."""
        row = db.execute("SELECT state FROM tasks WHERE id = ?", (tid,)).fetchone()
        if row is None or not task_transition(row[0], state):
            return False
        self._update(db, "tasks", "id", tid, {"state": state, **_given(worker=worker), "updated_at": time.time()})
        return True

    # --- deltas (the runtime half of their lifecycle; specs/deltas/ on main holds the rest) ---

    def delta_rows(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM deltas ORDER BY id")]

    def delta_row(self, did: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM deltas WHERE id = ?", (did,)).fetchone()
        return dict(row) if row else None

    def delta_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM deltas")}

    def add_delta(
        self, did: str, title: str, owner: str, path: str, text: str | None, db: sqlite3.Connection
    ) -> None:
        """A proposed delta's row (its text kept here while it exists nowhere else: an agent's proposal)."""
        now = time.time()
        db.execute(
            "INSERT INTO deltas (id, title, status, owner, path, text, created_at, updated_at)"
            " VALUES (?, ?, 'proposed', ?, ?, ?, ?, ?)",
            (did, title, owner, path, text, now, now),
        )

    def delete_delta(self, did: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM deltas WHERE id = ?", (did,))

    def update_delta(
        self,
        did: str,
        *,
        db: sqlite3.Connection | None = None,
        status: DeltaState | _Unset = UNSET,
        title: str | _Unset = UNSET,
        path: str | None | _Unset = UNSET,
        text: str | None | _Unset = UNSET,
        worker: str | None | _Unset = UNSET,
        main_sha: str | None | _Unset = UNSET,
        fold_sha: str | None | _Unset = UNSET,
        fold_entry: int | None | _Unset = UNSET,
        fold_attempts: int | _Unset = UNSET,
        note: str | None | _Unset = UNSET,
    ) -> bool:
        """Update a delta's row, made on first use for a delta written by hand.

        A new `status` applies only where `model.delta_transition` allows it; False when refused (the
        other fields are written all the same).
        """
        fields = _given(
            title=title, path=path, text=text, worker=worker, main_sha=main_sha, fold_sha=fold_sha,
            fold_entry=fold_entry, fold_attempts=fold_attempts, note=note,
        )  # fmt: skip
        applied = True
        with self._within(db) as conn:
            now = time.time()
            conn.execute(
                "INSERT OR IGNORE INTO deltas (id, title, status, created_at, updated_at)"
                " VALUES (?, '', 'proposed', ?, ?)",
                (did, now, now),
            )
            if status is not UNSET:
                old = conn.execute("SELECT status FROM deltas WHERE id = ?", (did,)).fetchone()[0]
                applied = delta_transition(old, status)
                if applied:
                    fields["status"] = status
            fields["updated_at"] = now
            self._update(conn, "deltas", "id", did, fields)
        return applied

    def deltas_under_way(self) -> bool:
        """Is any delta in progress or merged (and so not done yet)?"""
        sql = "SELECT 1 FROM deltas WHERE status IN ('in-progress', 'merged') LIMIT 1"
        return self.db.execute(sql).fetchone() is not None

    def merged_deltas(self) -> list[MergedDelta]:
        """Merged queue entries whose delta is not done or rejected yet, oldest first."""
        rows = self.db.execute(
            "SELECT q.worker, q.delta, q.merged_as, d.status FROM queue q JOIN deltas d ON d.id = q.delta "
            "WHERE q.state = 'merged' AND d.status NOT IN ('done', 'rejected') ORDER BY q.id"
        ).fetchall()
        return [MergedDelta(*r) for r in rows]

    # --- checks: the gate's verdicts (check_cache), test counts, per-check observations ---

    def cached_result(self, tree: str, suite: str) -> tuple[bool, list[dict[str, Any]]] | None:
        row = self.db.execute(
            "SELECT ok, results FROM check_cache WHERE tree = ? AND suite = ?", (tree, suite)
        ).fetchone()
        return (bool(row["ok"]), json.loads(row["results"])) if row else None

    def record_run(
        self,
        sha: str,
        tree: str,
        stage: str,
        suite: str | None,
        ok: bool,
        results: list[dict[str, Any]],
        cached: bool,
    ) -> None:
        payload = json.dumps(results, default=str)
        with self.tx() as db:
            db.execute(
                "INSERT INTO check_runs (ts, sha, tree, stage, ok, cached, results) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), sha, tree, stage, int(ok), int(cached), payload),
            )
            if suite and not cached:
                db.execute(
                    "INSERT OR REPLACE INTO check_cache (tree, suite, ok, results, ts) VALUES (?, ?, ?, ?, ?)",
                    (tree, suite, int(ok), payload, time.time()),
                )

    def count_runs(self, cached: bool | None = None) -> int:
        sql = "SELECT COUNT(*) FROM check_runs"
        if cached is not None:
            sql += f" WHERE cached = {int(cached)}"
        return int(self.db.execute(sql).fetchone()[0])

    def remember_count(self, tree: str, check: str, count: int) -> None:
        """How many tests `check` collects on `tree` (the no-weakening guard compares with main's)."""
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO test_counts (tree, check_name, count, ts) VALUES (?, ?, ?, ?)",
                (tree, check, count, time.time()),
            )

    def test_count(self, tree: str, check: str) -> int | None:
        row = self.db.execute(
            "SELECT count FROM test_counts WHERE tree = ? AND check_name = ?", (tree, check)
        ).fetchone()
        return int(row[0]) if row else None

    def record_observation(
        self,
        tree: str,
        suite: str,
        check: str,
        ok: bool,
        feedback: str,
        tests: dict[str, str] | None,
        db: sqlite3.Connection,
    ) -> None:
        """What one check observed on `tree` with suite `suite`, per test (`tests`) where junit said."""
        db.execute(
            "INSERT OR REPLACE INTO check_observations (tree, suite, check_name, ok, feedback, tests, ts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (tree, suite, check, int(ok), feedback, json.dumps(tests) if tests is not None else None, time.time()),
        )

    def observation(self, tree: str, suite: str, check: str) -> tuple[bool, str, dict[str, str] | None] | None:
        """A recorded observation: (ok, feedback, per-test outcomes or None)."""
        row = self.db.execute(
            "SELECT ok, feedback, tests FROM check_observations WHERE tree = ? AND suite = ? AND check_name = ?",
            (tree, suite, check),
        ).fetchone()
        if row is None:
            return None
        return bool(row["ok"]), row["feedback"], json.loads(row["tests"]) if row["tests"] is not None else None


def _entry(r: sqlite3.Row) -> QueueEntry:
    d = dict(r)
    d["verdict"] = json.loads(d["verdict"]) if d["verdict"] else None
    return QueueEntry(**d)


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf.strip()
            buf = ""
    if buf.strip():
        yield buf.strip()


def _given(**fields: object) -> dict[str, Any]:
    """The keyword arguments a caller passed (not UNSET): the columns to write."""
    return {k: v for k, v in fields.items() if v is not UNSET}
