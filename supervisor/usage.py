"""What an agent may record about itself: its model usage, its own agent-* events, its own stop.

The built-in agent (the anthropic runtime) runs in its sandbox and reaches the store only through
its channel (`fac agent self|usage|event|stop`), whose socket fixes the worker: these functions
take that worker and nothing else, and record only the kinds listed here, so an agent can neither
write another worker's usage nor an event or a state the queue or a human owns.
"""

from __future__ import annotations

import math
from typing import Any

from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.model import ENTRY_OPEN

# The events an agent records about itself (`fac agent event KIND`); agent-turn comes with its
# usage (`fac agent usage`), agent-stopped with its stop (`fac agent stop`).
AGENT_EVENTS = ("agent-limit", "agent-retry")
RESERVED = frozenset({"kind", "worker", "correlation", "db"})  # the event's own, not its payload's
FIELD_MAX = 2_000  # characters of one field of an agent's event


def me(fac: Factory, worker: str) -> dict[str, Any]:
    """What the agent needs to know about its own worker: its task, tree, usage, and whether the
    queue holds a submission of it."""
    w = fac.worker(worker)
    return {
        "name": w.name,
        "task": w.task,
        "worktree": w.worktree,
        "state": w.state,
        "tokens_in": w.tokens_in,
        "tokens_out": w.tokens_out,
        "cost": w.cost,
        "submission_open": any(e.worker == worker for e in fac.store.queue(ENTRY_OPEN)),
    }


def record_turn(
    fac: Factory,
    worker: str,
    *,
    turn: int,
    tokens_in: int,
    tokens_out: int,
    cost: float,
    stop_reason: str | None,
) -> dict[str, Any]:
    """Add one model call's tokens and cost to the worker and log its agent-turn, in one transaction;
    the worker's new totals."""
    if min(turn, tokens_in, tokens_out) < 0 or not math.isfinite(cost) or cost < 0:
        raise FacError("usage is never negative", hint="pass the tokens and cost of one model call")
    store = fac.store
    with store.tx() as db:
        totals = store.add_usage(worker, tokens_in, tokens_out, cost, db)
        if totals is None:
            raise FacError(f"worker {worker} was removed", hint="its agent stops")
        store.event(
            "agent-turn",
            worker,
            db=db,
            turn=turn,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost=round(cost, 6),
            stop_reason=(stop_reason or "")[:FIELD_MAX] or None,
        )
    total_in, total_out, total_cost = totals
    return {"tokens_in": total_in, "tokens_out": total_out, "cost": total_cost}


def record_event(fac: Factory, worker: str, kind: str, fields: dict[str, Any]) -> None:
    """Log one of the agent's own events (AGENT_EVENTS only) for its worker."""
    if kind not in AGENT_EVENTS:
        raise FacError(f"an agent records only {', '.join(AGENT_EVENTS)} events, not {kind!r}")
    reserved = sorted(set(fields) & RESERVED)
    if reserved:
        raise FacError(f"an event's field may not be called {', '.join(reserved)}")
    fac.worker(worker)
    clean: dict[str, Any] = {k: v[:FIELD_MAX] if isinstance(v, str) else v for k, v in fields.items()}
    fac.store.event(kind, worker, **clean)


def stop(fac: Factory, worker: str, reason: str) -> str | None:
    """The agent stops itself (its budget is spent): its worker is `stopped`; the state it is in after."""
    fac.worker(worker)
    with fac.store.tx() as db:
        now = fac.store.update_worker(worker, db=db, state="stopped")
        fac.store.event("agent-stopped", worker, db=db, reason=reason[:FIELD_MAX])
    return now
