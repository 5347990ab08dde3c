"""The factory's state: SQLite in WAL mode at `.fac/state.db`.

Every write is one short `BEGIN IMMEDIATE` transaction, so many `fac` processes (one per pane)
can write at once without losing an update. The schema is versioned with `PRAGMA user_version`
and migrated forward on open. `events` is append-only: nothing updates or deletes its rows.
"""

from __future__ import annotations

from pathlib import Path

from supervisor.model import ENTRY_OPEN, Event, Message, QueueEntry, Worker
from supervisor.store.connection import UNSET, Connection
from supervisor.store.planning import MergedDelta, PlanRecords
from supervisor.store.queue import QueueRecords
from supervisor.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "MIGRATIONS",
    "QUEUE_OPEN",
    "SCHEMA_VERSION",
    "UNSET",
    "Connection",
    "Event",
    "MergedDelta",
    "Message",
    "QueueEntry",
    "Store",
    "Worker",
]

QUEUE_OPEN = ENTRY_OPEN


class Store(QueueRecords, PlanRecords):
    """A connection to `.fac/state.db`; cheap to open, one per process. Every SQL statement fac
    runs is a method of this class, split by record: workers.py, queue.py, planning.py."""

    @classmethod
    def open(cls, root: Path) -> Store:
        return cls(root / ".fac" / "state.db")
