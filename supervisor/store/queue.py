"""Queue entries and check runs: what the merge queue records (the gate's verdicts, counts, observations)."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from supervisor.model import (
    EntryState,
    QueueEntry,
    entry_transition,
)
from supervisor.store.connection import UNSET, _given, _Unset
from supervisor.store.workers import WorkerRecords


class QueueRecords(WorkerRecords):
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

    def recent_reds(self, n: int) -> list[bool]:
        """For the latest `n` entries the queue decided (merged or red), newest first: whether the
        gate blamed it (a red verdict, not a guard's)."""
        rows = self.db.execute(
            "SELECT state, verdict FROM queue WHERE state IN ('merged', 'red') ORDER BY id DESC LIMIT ?", (n,)
        ).fetchall()
        return [s == "red" and json.loads(v or "{}").get("reason") == "red" for s, v in rows]

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
        """Change a queue entry; False when `model.entry_transition` refuses its new state (then
        nothing is written)."""
        fields = _given(attempts=attempts, merged_as=merged_as)
        if not isinstance(verdict, _Unset):
            fields["verdict"] = json.dumps(verdict, default=str) if verdict is not None else None
        with self._within(db) as conn:
            return self._set_entry(conn, qid, state, fields)

    def _set_entry(
        self, db: sqlite3.Connection, qid: int, state: EntryState | _Unset, fields: dict[str, Any]
    ) -> bool:
        if state is not UNSET:
            row = db.execute("SELECT state FROM queue WHERE id = ?", (qid,)).fetchone()
            if row is None or not entry_transition(row[0], state):
                return False
            fields["state"] = state
        fields["updated_at"] = time.time()
        self._update(db, "queue", "id", qid, fields)
        return True

    def requeue(self, qid: int) -> EntryState | None:
        """An entry whose test ended without a verdict (cancelled, main moved, the queue restarted)
        goes back in line: `queued`, or `superseded` when its worker submitted a newer head meanwhile
        (`enqueue` supersedes only what is queued, not what is under test). None when its state
        allows neither (it was decided meanwhile)."""
        with self.tx() as db:
            row = db.execute("SELECT worker FROM queue WHERE id = ?", (qid,)).fetchone()
            if row is None or not self._set_entry(db, qid, "queued", {}):
                return None
            newer = db.execute(
                "SELECT id FROM queue WHERE worker = ? AND id > ? AND state IN ('queued', 'testing', 'held')",
                (row[0], qid),
            ).fetchone()
            if newer is None:
                return "queued"
            self._set_entry(db, qid, "superseded", {})
            self.event("superseded", row[0], correlation=f"q{qid}", db=db, by=f"q{newer[0]}")
            return "superseded"

    def start_testing(self, ids: list[int]) -> None:
        """The entries of a candidate go under test: testing, one attempt more."""
        with self.tx() as db:
            for qid in ids:
                row = db.execute("SELECT attempts FROM queue WHERE id = ?", (qid,)).fetchone()
                if row is not None:
                    fields = {"attempts": row[0] + 1, "testing_since": time.time(), "running": "[]"}
                    self._set_entry(db, qid, "testing", fields)

    def set_running(self, ids: list[int], running: list[str]) -> bool:
        """The checks of the candidate of entries `ids` that are running now (progress, for `fac queue`).

        One statement, no transaction of its own: it is told from the threads that run the checks.
        Progress only: a store too busy to take it (False) must not fail the check that told it."""
        marks = ", ".join("?" for _ in ids)
        try:
            self.db.execute(
                f"UPDATE queue SET running = ? WHERE state = 'testing' AND id IN ({marks})",
                [json.dumps(running), *ids],
            )
        except sqlite3.OperationalError:
            return False
        return True

    def cancel_queued(self, worker: str, db: sqlite3.Connection) -> None:
        """A removed worker's waiting entries are cancelled."""
        for (qid,) in db.execute(
            "SELECT id FROM queue WHERE worker = ? AND state = 'queued'", (worker,)
        ).fetchall():
            self._set_entry(db, qid, "cancelled", {})

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
                "INSERT INTO check_runs (ts, sha, tree, stage, ok, cached, results)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), sha, tree, stage, int(ok), int(cached), payload),
            )
            if suite and not cached:
                db.execute(
                    "INSERT OR REPLACE INTO check_cache (tree, suite, ok, results, ts)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (tree, suite, int(ok), payload, time.time()),
                )

    def count_runs(self, cached: bool | None = None) -> int:
        sql = "SELECT COUNT(*) FROM check_runs"
        if cached is not None:
            sql += f" WHERE cached = {int(cached)}"
        return int(self.db.execute(sql).fetchone()[0])

    # Test counts: the gate now compares per-test ids (observations), so it no longer writes these;
    # the table keeps what older versions recorded (migration 4), readable for `fac` tooling and tests.
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
            (
                tree,
                suite,
                check,
                int(ok),
                feedback,
                json.dumps(tests) if tests is not None else None,
                time.time(),
            ),
        )

    def observation(
        self, tree: str, suite: str, check: str
    ) -> tuple[bool, str, dict[str, str] | None] | None:
        """A recorded observation: (ok, feedback, per-test outcomes or None)."""
        row = self.db.execute(
            "SELECT ok, feedback, tests FROM check_observations"
            " WHERE tree = ? AND suite = ? AND check_name = ?",
            (tree, suite, check),
        ).fetchone()
        if row is None:
            return None
        return (
            bool(row["ok"]),
            row["feedback"],
            json.loads(row["tests"]) if row["tests"] is not None else None,
        )

    # --- the executor's availability: one row, written by the queue, read by `fac status` ---

    def executor_state(self) -> tuple[int, str | None, float | None, float | None, float | None]:
        """(failures in a row, why the last one failed, when the first and the last happened, when
        the queue tries again)."""
        sql = "SELECT failures, reason, since, failed_at, retry_at FROM executor WHERE id = 1"
        row = self.db.execute(sql).fetchone()
        return (int(row[0]), row[1], row[2], row[3], row[4])

    def set_executor_state(
        self,
        failures: int,
        reason: str | None,
        since: float | None,
        failed_at: float | None,
        retry_at: float | None,
    ) -> None:
        fields = {
            "failures": failures,
            "reason": reason,
            "since": since,
            "failed_at": failed_at,
            "retry_at": retry_at,
        }
        with self.tx() as db:
            self._update(db, "executor", "id", 1, fields)


def _entry(r: sqlite3.Row) -> QueueEntry:
    d = dict(r)
    d["verdict"] = json.loads(d["verdict"]) if d["verdict"] else None
    d["running"] = tuple(json.loads(d["running"] or "[]"))
    return QueueEntry(**d)
