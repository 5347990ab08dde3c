"""The line, tasks and deltas: the flow of work into the factory and its stop-the-line state."""

from __future__ import annotations

import sqlite3
import time
from typing import Any, NamedTuple

from supervisor.model import (
    DeltaState,
    Line,
    LineState,
    Task,
    TaskState,
    delta_transition,
    line_transition,
    task_removable,
    task_transition,
)
from supervisor.store.connection import UNSET, Connection, _given, _Unset


class MergedDelta(NamedTuple):
    """A merged queue entry that carries a delta not yet done or rejected."""

    worker: str
    delta: str
    merged_as: str | None
    status: DeltaState


class PlanRecords(Connection):
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

    # --- main: the shas fac wrote (or adopted) ---

    def record_main(
        self, sha: str, old: str | None, by: str, *, db: sqlite3.Connection | None = None
    ) -> None:
        """fac wrote `sha` to main (from `old`), or adopted it after a move outside fac: `by` says which."""
        with self._within(db) as conn:
            conn.execute(
                "INSERT INTO main_writes (ts, sha, old, by) VALUES (?, ?, ?, ?)", (time.time(), sha, old, by)
            )

    def last_main(self) -> str | None:
        """The last sha fac wrote to main or adopted (None before the first)."""
        row = self.db.execute("SELECT sha FROM main_writes ORDER BY id DESC LIMIT 1").fetchone()
        return str(row["sha"]) if row else None

    # --- tasks ---

    def add_task(
        self,
        text: str,
        role: str,
        delta: str | None,
        runtime: str | None,
        command: str | None,
        db: sqlite3.Connection,
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

    def task(self, tid: int) -> Task | None:
        row = self.db.execute("SELECT * FROM tasks WHERE id = ?", (tid,)).fetchone()
        return Task(**dict(row)) if row else None

    def set_task(
        self,
        tid: int,
        state: TaskState,
        *,
        db: sqlite3.Connection,
        worker: str | None | _Unset = UNSET,
        reason: str | None | _Unset = UNSET,
    ) -> bool:
        """Move a task on; False when `model.task_transition` refuses (nothing is written)."""
        row = db.execute("SELECT state FROM tasks WHERE id = ?", (tid,)).fetchone()
        if row is None or not task_transition(row[0], state):
            return False
        fields = {"state": state, **_given(worker=worker, reason=reason), "updated_at": time.time()}
        self._update(db, "tasks", "id", tid, fields)
        return True

    def remove_task(self, tid: int, *, db: sqlite3.Connection) -> bool:
        """Delete a task; False when `model.task_removable` refuses (a worker works on it) or it is gone."""
        row = db.execute("SELECT state FROM tasks WHERE id = ?", (tid,)).fetchone()
        if row is None or not task_removable(row[0]):
            return False
        db.execute("DELETE FROM tasks WHERE id = ?", (tid,))
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
            title=title,
            path=path,
            text=text,
            worker=worker,
            main_sha=main_sha,
            fold_sha=fold_sha,
            fold_entry=fold_entry,
            fold_attempts=fold_attempts,
            note=note,
        )
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
