"""The merge queue, "the bot on main": plain deterministic code, no LLM.

`planner` decides (what to take, the batch size, the search over a red batch, retry before
blame) from plain data; `candidates` builds merge commits without a worktree; `screening` runs
the gates that need no check; `outcomes` routes every result; `views` shows the queue;
`runner.MergeQueue` is the process loop that wires them.
"""

from __future__ import annotations

from supervisor.queue.candidates import Candidate, candidate_message
from supervisor.queue.runner import MergeQueue, QueueLocked, Settled
from supervisor.queue.screening import approval_needed, approve, refuse_agent_approval
from supervisor.queue.views import queue_rows

__all__ = [
    "Candidate",
    "MergeQueue",
    "QueueLocked",
    "Settled",
    "approval_needed",
    "approve",
    "candidate_message",
    "queue_rows",
    "refuse_agent_approval",
]
