"""The factory's state: SQLite in WAL mode at `.fac/state.db`.

Every write is one short `BEGIN IMMEDIATE` transaction, so many `fac` processes (one per pane)
can write at once without losing an update. The schema is versioned with `PRAGMA user_version`
and migrated forward on open. `events` is append-only: nothing updates or deletes its rows.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
]
SCHEMA_VERSION = len(MIGRATIONS)

QUEUE_OPEN = ("queued", "testing")


@dataclass(frozen=True)
class Worker:
    name: str
    role: str
    runtime: str
    branch: str
    worktree: str
    state: str
    task: str | None
    delta: str | None
    command: str | None
    window_id: str | None
    pane_id: str | None
    created_at: float
    updated_at: float
    restarts: int = 0
    crashes: str = "[]"  # JSON list of crash times, newest last
    next_restart: float | None = None
    question: str | None = None  # an open andon question
    red_streak: int = 0
    session_id: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0


@dataclass(frozen=True)
class QueueEntry:
    id: int
    worker: str
    branch: str
    sha: str
    delta: str | None
    state: str
    attempts: int
    submitted_at: float
    updated_at: float
    verdict: dict[str, Any] | None
    merged_as: str | None


@dataclass(frozen=True)
class Message:
    id: int
    worker: str
    ts: float
    sender: str
    kind: str
    body: str
    delivered_at: float | None
    read_at: float | None
    acked_at: float | None = None
    attempts: int = 0


@dataclass(frozen=True)
class Event:
    id: int
    ts: float
    kind: str
    worker: str | None
    correlation: str | None
    payload: dict[str, Any]


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

    # --- workers ---

    def add_worker(self, db: sqlite3.Connection, **fields: Any) -> None:
        now = time.time()
        fields.setdefault("created_at", now)
        fields.setdefault("updated_at", now)
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        db.execute(f"INSERT INTO workers ({cols}) VALUES ({marks})", list(fields.values()))

    def update_worker(self, name: str, db: sqlite3.Connection | None = None, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        stmt, args = f"UPDATE workers SET {sets} WHERE name = ?", [*fields.values(), name]
        if db is not None:
            db.execute(stmt, args)
        else:
            with self.tx() as conn:
                conn.execute(stmt, args)

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
                db.execute("UPDATE queue SET state = 'superseded', updated_at = ? WHERE id = ?", (now, qid))
            cur = db.execute(
                "INSERT INTO queue (worker, branch, sha, delta, state, submitted_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'queued', ?, ?)",
                (worker, branch, sha, delta, now, now),
            )
            qid = int(cur.lastrowid or 0)
            db.execute("UPDATE workers SET state = 'queued', updated_at = ? WHERE name = ?", (now, worker))
            self.event(
                "submitted", worker, correlation=f"q{qid}", db=db, sha=sha, branch=branch, superseded=old
            )
        return qid, old

    def queue(self, states: tuple[str, ...] | None = None) -> list[QueueEntry]:
        sql, args = "SELECT * FROM queue", []
        if states:
            sql += f" WHERE state IN ({', '.join('?' for _ in states)})"
            args = list(states)
        return [_entry(r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def queue_entry(self, qid: int) -> QueueEntry | None:
        row = self.db.execute("SELECT * FROM queue WHERE id = ?", (qid,)).fetchone()
        return _entry(row) if row else None

    def set_entry(self, qid: int, db: sqlite3.Connection | None = None, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        if "verdict" in fields and not isinstance(fields["verdict"], str | None):
            fields["verdict"] = json.dumps(fields["verdict"], default=str)
        sets = ", ".join(f"{k} = ?" for k in fields)
        stmt, args = f"UPDATE queue SET {sets} WHERE id = ?", [*fields.values(), qid]
        if db is not None:
            db.execute(stmt, args)
        else:
            with self.tx() as conn:
                conn.execute(stmt, args)

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

    def mark_messages(self, ids: list[int], column: str) -> None:
        assert column in ("read_at", "delivered_at", "acked_at")
        if not ids:
            return
        with self.tx() as db:
            db.executemany(
                f"UPDATE messages SET {column} = COALESCE({column}, ?) WHERE id = ?",
                [(time.time(), i) for i in ids],
            )

    # --- checks ---

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
