"""Workers and their messages: the rows the supervisor, the hooks and the panes read and write."""

from __future__ import annotations

import json
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

    def claim_message(self, mid: int, by: str, *, attempts: int, now: float, stale_before: float) -> bool:
        """Take message `mid` for one paste, as one deliverer: only while it is unacknowledged, nobody
        else holds it (or its holder died: a claim older than `stale_before`) and it was pasted
        `attempts` times, as the caller saw it. Two deliverers racing: exactly one gets True."""
        with self.tx() as db:
            cur = db.execute(
                "UPDATE messages SET claimed_by = ?, claimed_at = ? WHERE id = ? AND acked_at IS NULL"
                " AND attempts = ? AND (claimed_at IS NULL OR claimed_at < ?)",
                (by, now, mid, attempts, stale_before),
            )
            return cur.rowcount == 1

    def release_message(self, mid: int, by: str, *, pasted: bool, via: str) -> None:
        """End `by`'s claim on `mid`; after a paste, record it (when, how often, how) and log it in the
        same transaction, so a receipt waiting for the claim always comes after the paste."""
        with self.tx() as db:
            if not pasted:
                db.execute(
                    "UPDATE messages SET claimed_by = NULL, claimed_at = NULL"
                    " WHERE id = ? AND claimed_by = ?",
                    (mid, by),
                )
                return
            rows = db.execute(
                "UPDATE messages SET claimed_by = NULL, claimed_at = NULL, delivered_at = ?,"
                " attempts = attempts + 1, via = ? WHERE id = ? AND claimed_by = ?"
                " RETURNING worker, attempts",
                (time.time(), via, mid, by),
            ).fetchall()  # all of it: a RETURNING statement still stepping would block the COMMIT
            for row in rows:
                self.event("delivered", row["worker"], db=db, id=mid, attempt=row["attempts"], via=via)

    def ack_messages(self, ids: list[int], *, via: str, stale_before: float) -> tuple[list[int], list[int]]:
        """Receipts for `ids`: (acknowledged now, held by a deliverer pasting them right now).

        A held message is not acknowledged yet: its paste would then come after its receipt. The
        caller asks again once the deliverer lets go (a claim older than `stale_before` is ignored).
        """
        if not ids:
            return [], []
        done: list[int] = []
        with self.tx() as db:
            for i in ids:
                cur = db.execute(
                    "UPDATE messages SET acked_at = COALESCE(acked_at, ?), via = COALESCE(via, ?)"
                    " WHERE id = ? AND (claimed_at IS NULL OR claimed_at < ?)",
                    (time.time(), via, i, stale_before),
                )
                if cur.rowcount:
                    done.append(i)
        return done, [i for i in ids if i not in done]

    def take_messages(self, worker: str, *, via: str, stale_before: float) -> list[Message]:
        """Hand `worker`'s unacknowledged messages that no deliverer holds to a hook, which gives them to
        the agent: acknowledged in the same statement (the hook is the receipt), oldest first."""
        with self.tx() as db:
            rows = db.execute(
                "UPDATE messages SET acked_at = ?, via = ? WHERE worker = ? AND acked_at IS NULL"
                " AND (claimed_at IS NULL OR claimed_at < ?) RETURNING *",
                (time.time(), via, worker, stale_before),
            ).fetchall()
        return sorted((Message(**dict(r)) for r in rows), key=lambda m: m.id)

    def runtime_position(self, worker: str) -> tuple[str, dict[str, Any], float] | None:
        """The latest event that tells where `worker`'s agent is: its (re)start, or a hook that
        recorded `at` (see delivery.hook_position); as (kind, payload, ts)."""
        row = self.db.execute(
            "SELECT kind, payload, ts FROM events WHERE worker = ? AND (kind IN ('spawned', 'restarted')"
            " OR json_extract(payload, '$.at') IS NOT NULL) ORDER BY id DESC LIMIT 1",
            (worker,),
        ).fetchone()
        return (row["kind"], json.loads(row["payload"]), row["ts"]) if row else None

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
