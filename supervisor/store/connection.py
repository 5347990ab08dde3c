"""The connection every part of the store shares: WAL, short write transactions, migrations, events.

Each thread gets its own SQLite connection to the file (the merge queue judges several candidates
at once from a pool of threads): one connection shared by threads would interleave their
transactions. WAL and the busy timeout let those connections write one after another.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from supervisor.model import Event
from supervisor.store.schema import MIGRATIONS, SCHEMA_VERSION, statements


class _Unset(enum.Enum):
    UNSET = 0


UNSET = _Unset.UNSET  # "leave this column as it is" (None is a value: it writes NULL)


class _Db(sqlite3.Connection):
    """A plain sqlite3 connection that a weak set can hold (the base type cannot be weakly referenced)."""


class Connection:
    """A connection to `.fac/state.db` and the helpers every record's methods share."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()
        # Every thread's connection, to close them all; a thread's goes when the thread ends.
        self._open: weakref.WeakSet[_Db] = weakref.WeakSet()
        self._open_lock = threading.Lock()
        try:
            self._connect()
            self._enable_wal()
            self._migrate()
        except sqlite3.DatabaseError as e:  # "file is not a database", a disk I/O error, ...
            from supervisor.errors import FacError

            raise FacError(
                f"{path} cannot be opened as fac's store: {e}",
                hint=f"move it aside (mv {path} {path}.broken) and fac starts an empty one; "
                "`fac doctor` checks the rest",
            ) from None

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection to the store (opened on first use)."""
        db: _Db | None = getattr(self._local, "db", None)
        return db if db is not None else self._connect()

    def _connect(self) -> _Db:
        db = sqlite3.connect(
            self.path, timeout=60, isolation_level=None, check_same_thread=False, factory=_Db
        )
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=60000")
        db.execute("PRAGMA synchronous=NORMAL")
        self._local.db = db
        with self._open_lock:
            self._open.add(db)
        return db

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

    def close(self) -> None:
        with self._open_lock:
            dbs = list(self._open)
            self._open.clear()
        for db in dbs:
            db.close()
        self._local = threading.local()

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
                for stmt in statements(MIGRATIONS[i]):
                    db.execute(stmt)
            if version != SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def data_version(self) -> int:
        """Changes whenever another connection commits: a cheap way to wait for news."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def integrity(self) -> str:
        """SQLite's quick_check of the file: "ok" when sound, else its first complaint."""
        row = self.db.execute("PRAGMA quick_check").fetchone()
        return str(row[0]) if row else "no answer"

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
            newest = f"{sql[: -len(' ORDER BY id')]} ORDER BY id DESC LIMIT {int(limit)}"
            sql = f"SELECT * FROM ({newest}) ORDER BY id"
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

    def _update(
        self, db: sqlite3.Connection, table: str, key: str, value: object, fields: dict[str, Any]
    ) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        db.execute(f"UPDATE {table} SET {sets} WHERE {key} = ?", [*fields.values(), value])


def _given(**fields: object) -> dict[str, Any]:
    """The keyword arguments a caller passed (not UNSET): the columns to write."""
    return {k: v for k, v in fields.items() if v is not UNSET}
