"""The store's schema: migrations applied in order, the version kept in `PRAGMA user_version`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

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
        SELECT tree,
               substr(suite, 7, instr(substr(suite, 7), ':') - 1),
               substr(suite, 7 + instr(substr(suite, 7), ':')),
               ok, COALESCE(json_extract(results, '$.feedback'), ''), json_extract(results, '$.tests'), ts
        FROM check_cache WHERE substr(suite, 1, 6) = 'state:' AND instr(substr(suite, 7), ':') > 0;
    DELETE FROM check_cache WHERE substr(suite, 1, 8) = 'collect:' OR substr(suite, 1, 6) = 'state:';
    """,
    # 5: why a task failed or was abandoned
    """
    ALTER TABLE tasks ADD COLUMN reason TEXT;
    """,
    # 6: progress of a testing entry: since when its candidate is under test, and its running checks
    """
    ALTER TABLE queue ADD COLUMN testing_since REAL;
    ALTER TABLE queue ADD COLUMN running TEXT NOT NULL DEFAULT '[]';
    """,
    # 7: every sha fac writes to main (the queue, the delta commands) or adopts after a move outside
    # fac: before each round the queue compares main with the last one
    """
    CREATE TABLE main_writes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        sha TEXT NOT NULL,
        old TEXT,
        by TEXT NOT NULL
    );
    """,
    # 8: one deliverer per message: its claim (who, since when), and how the message reached the
    # agent (a paste, the hook that injected it, its own read)
    """
    ALTER TABLE messages ADD COLUMN claimed_by TEXT;
    ALTER TABLE messages ADD COLUMN claimed_at REAL;
    ALTER TABLE messages ADD COLUMN via TEXT;
    """,
    # 9: the executor's availability as the queue last found it (failures in a row, why, when it
    # is tried again), for `fac status` and the dashboard
    """
    CREATE TABLE executor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        failures INTEGER NOT NULL,
        reason TEXT,
        since REAL,
        failed_at REAL,
        retry_at REAL
    );
    INSERT INTO executor (id, failures) VALUES (1, 0);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def statements(script: str) -> Iterator[str]:
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
