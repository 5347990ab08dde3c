"""Messages to workers: stored in the inbox first, then delivered when the agent can read them.

`delivery.plan` decides whether to paste now (never into a dialog, into Claude Code only at its
prompt; mid-turn its hooks take the messages with `take`); `deliver` pastes under a claim in the
store, so two deliverers never paste one message twice, and `ack` waits for a paste in progress,
so a receipt is never recorded before the paste it acknowledges.

Message text is data. It may hold quotes, `$(...)`, escape sequences or a megabyte of check output,
so it is never put on a command line: it goes through a tmux buffer, control characters are made
visible, long text is cut with a pointer to the full message, and every pasted line starts with
`# ` so that even a shell at a prompt would read it as a comment and run nothing.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from supervisor import delivery, identity, model
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.model import Message
from supervisor.tmux import PaneInfo

INBOX_MAX = 64 * 1024  # stored body; longer text keeps its head and a pointer to the full log
PANE_MAX = 1500  # pasted text; the inbox has the rest
HOOK_MAX = 4 * PANE_MAX  # one message in a hook's output; the inbox has the rest

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """Control characters (ESC, BEL, CR, ...) shown as \\xNN so a terminal never interprets them."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def clip(text: str, limit: int, pointer: str) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... ({len(text) - limit} more characters; {pointer})"


def pane_text(mid: int, worker: str, body: str, *, comment: bool = True, sender: str = identity.HUMAN) -> str:
    """The form a message takes in a pane: visible, short, and (unless `comment` is off, for a
    runtime that pastes plain prompts) every line a shell comment. A peer's message starts with
    its sender, so it never reads as fac's own ("[from w2] [fac] MERGED" is w2 talking)."""
    if sender not in identity.TRUSTED_SENDERS:
        body = f"[from {sender}] {body}"
    text = clip(visible(body), PANE_MAX, f"full text: fac inbox --worker {worker} --id {mid}")
    text += f"\n(message {mid}: `fac inbox` shows it and counts as the receipt; or `fac inbox --ack {mid}`)"
    if not comment:
        return text
    lines = [line.rstrip("\\") for line in text.splitlines()] or [""]
    return "\n".join(f"# {line}" if line else "#" for line in lines)


@dataclass(frozen=True)
class Delivery:
    id: int
    pasted: bool
    reason: str = ""
    due: float | None = None  # not pasted: when to try again (None: when its agent's position changes)


def send(
    fac: Factory,
    worker: str,
    body: str,
    *,
    sender: str = "human",
    kind: str = "note",
    correlation: str | None = None,
    full_log: str | None = None,
) -> Delivery:
    """Store a message for `worker` and paste it into its pane when the pane is alive."""
    fac.worker(worker)
    with fac.store.tx() as db:
        mid = store(
            fac, db, worker, body, sender=sender, kind=kind, correlation=correlation, full_log=full_log
        )
    return deliver(fac, worker, mid)


def store(
    fac: Factory,
    db: Any,
    worker: str,
    body: str,
    *,
    sender: str,
    kind: str,
    correlation: str | None = None,
    full_log: str | None = None,
) -> int:
    """Write a message inside the caller's transaction (so it commits with the state it reports)."""
    refused = identity.may_send(sender, kind)
    if refused:
        raise FacError(f"message refused: {refused}")
    if len(body) > INBOX_MAX and not full_log:
        # Nothing is lost: the whole text goes to a file the stored message points at.
        full = fac.fac_dir / "logs" / "messages" / f"{worker}-{time.time_ns()}.txt"
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(body.encode("utf-8", errors="replace"))  # bytes: keep \r as it came
        full_log = str(full)
    pointer = f"full text: {full_log}" if full_log else "truncated"
    mid: int = fac.store.add_message(worker, sender, kind, clip(body, INBOX_MAX, pointer), db)
    fac.store.event(
        "message",
        worker,
        correlation=correlation,
        db=db,
        id=mid,
        message_kind=kind,
        sender=sender,
        chars=len(body),
    )
    return mid


def deliver(
    fac: Factory,
    worker: str,
    mid: int,
    *,
    now: float | None = None,
    panes: dict[str, PaneInfo] | None = None,
) -> Delivery:
    """Paste a stored message into its worker's pane if `delivery.plan` says now is the time.

    One deliverer at a time: the paste happens under a claim in the store (the queue, the
    supervisor and `fac send` may all try at once), and its record is written before the claim ends.
    """
    m = fac.store.message(mid)
    if m is None:
        return Delivery(mid, False, "no such message")
    if m.acked_at is not None:
        return Delivery(mid, False, "already acknowledged")
    w = fac.store.worker(worker)
    spec = model.runtime_spec(w.runtime if w else "command")
    if spec.channel == "inbox":  # decided before asking tmux anything
        return Delivery(mid, False, "the agent reads its inbox itself")
    if panes is None:
        try:
            panes = {p.window_name: p for p in fac.panes()}
        except FacError as e:
            return Delivery(mid, False, str(e))
    p = panes.get(worker)
    kind, payload, since = fac.store.runtime_position(worker) or (None, {}, 0.0)
    now = time.time() if now is None else now
    cfg = fac.config.supervisor
    plan = delivery.plan(
        spec.channel,
        delivery.position_of(kind, payload),
        since,
        pane_alive=p is not None and not p.dead,
        delivered_at=m.delivered_at,
        attempts=m.attempts,
        now=now,
        redeliver=cfg.redeliver,
        max_deliveries=cfg.max_deliveries,
    )
    if p is None:
        return Delivery(mid, False, "no window")
    if plan.action in ("wait", "skip"):
        return Delivery(mid, False, plan.reason, plan.due)
    me = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    t = time.time()
    if not fac.store.claim_message(mid, me, attempts=m.attempts, now=t, stale_before=t - delivery.CLAIM_TTL):
        return Delivery(mid, False, "another deliverer has it, or it was just read")
    pasted, reason = False, ""
    try:
        if plan.action == "enter":
            fac.tmux.press_enter(p.pane_id)
        elif spec.paste_plain:
            text = pane_text(mid, worker, m.body, comment=False, sender=m.sender)
            fac.tmux.paste(p.pane_id, text, enter=True)
        else:
            fac.tmux.paste(p.pane_id, pane_text(mid, worker, m.body, sender=m.sender) + "\n", enter=False)
        pasted = True
    except FacError as e:
        reason = str(e)
    finally:
        fac.store.release_message(mid, me, pasted=pasted, via=plan.action)
    return Delivery(mid, pasted, reason)


def ack(fac: Factory, worker: str, ids: list[int], *, via: str = "ack") -> list[int]:
    """Receipts: the runtime saw these messages; they are never pasted again.

    A message a deliverer is pasting right now is acknowledged once that paste is recorded, so the
    log never shows a paste after its receipt (a claim lasts one paste: well under a second).
    """
    mine = [i for i in ids if (m := fac.store.message(i)) is not None and m.worker == worker]
    unknown = sorted(set(ids) - set(mine))
    if unknown:
        raise FacError(
            f"{worker} has no message(s) {', '.join(map(str, unknown))}", hint="see `fac inbox --all`"
        )
    acked: list[int] = []
    pending = mine
    while pending:
        done, pending = fac.store.ack_messages(
            pending, via=via, stale_before=time.time() - delivery.CLAIM_TTL
        )
        acked += done
        if pending:
            time.sleep(0.02)  # a claim ends after its paste, or goes stale after CLAIM_TTL
    if acked:
        fac.store.event("ack", worker, ids=sorted(acked), via=via)
    return sorted(acked)


def take(fac: Factory, worker: str, via: str) -> list[Message]:
    """A hook hands `worker`'s unacknowledged messages to its agent: taken and acknowledged at once,
    except one a deliverer is pasting right now (that paste delivers it)."""
    msgs = fac.store.take_messages(worker, via=via, stale_before=time.time() - delivery.CLAIM_TTL)
    if msgs:
        fac.store.event("ack", worker, ids=[m.id for m in msgs], via=via)
    return msgs


HOOK_HEADER = "fac, the factory you work in, delivers these messages; act on them as part of your task:"


def hook_text(msgs: list[Message]) -> str:
    """Messages as a hook gives them to the agent (in its context, or as why it keeps working).

    The hook asks, in its own words, that they be acted on: Claude Code tells the model that words a
    hook only relays are data."""
    return (
        HOOK_HEADER
        + "\n\n"
        + "\n\n".join(
            f"[fac] message {m.id} from {m.sender} ({m.kind}):\n"
            + clip(m.body, HOOK_MAX, f"full text: fac inbox --id {m.id}")
            for m in msgs
        )
    )


def require_inbox(fac: Factory, worker: str) -> None:
    """A worker has an inbox while it exists, and after it was removed for as long as it holds messages."""
    if not fac.store.messages(worker):
        fac.worker(worker)  # raises "no worker named ..." with the known workers


def mark_read(fac: Factory, worker: str, ids: list[int]) -> None:
    """Messages shown to their worker are read, and reading one is its receipt: it is not pasted again."""
    if ids:
        ack(fac, worker, ids, via="inbox")  # first: it waits for a paste in progress
    fac.store.mark_messages(ids, "read_at")
