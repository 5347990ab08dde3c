"""Workers and their messages: the rows the supervisor, the hooks and the panes read and write."""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Literal

from supervisor.model import (
    Message,
    Worker,
    WorkerCause,
    WorkerState,
    worker_transition,
)
from supervisor.store.connection import UNSET, Connection, _given, _Unset


class WorkerRecords(Connection):
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
            window_id=window_id,
            pane_id=pane_id,
            restarts=restarts,
            crashes=crashes,
            next_restart=next_restart,
            question=question,
            red_streak=red_streak,
            session_id=session_id,
        )
        with self._within(db) as conn:
            return self._set_worker(conn, name, state, by, fields)

    def _set_worker(
        self,
        db: sqlite3.Connection,
        name: str,
        state: WorkerState | _Unset,
        by: WorkerCause,
        fields: dict[str, Any],
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
