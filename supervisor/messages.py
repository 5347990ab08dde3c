"""Messages to workers: stored in the inbox first, then pasted into the worker's pane.

Message text is data. It may hold quotes, `$(...)`, escape sequences or a megabyte of check output,
so it is never put on a command line: it goes through a tmux buffer, control characters are made
visible, long text is cut with a pointer to the full message, and every pasted line starts with
`# ` so that even a shell at a prompt would read it as a comment and run nothing.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from supervisor import identity, model
from supervisor.errors import FacError
from supervisor.factory import Factory

INBOX_MAX = 64 * 1024  # stored body; longer text keeps its head and a pointer to the full log
PANE_MAX = 1500  # pasted text; the inbox has the rest

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


def deliver(fac: Factory, worker: str, mid: int) -> Delivery:
    """Paste a stored message into the worker's pane; records the delivery time when it got there."""
    m = fac.store.message(mid)
    if m is None:
        return Delivery(mid, False, "no such message")
    if m.acked_at is not None:
        return Delivery(mid, False, "already acknowledged")
    pasted, reason = paste(fac, worker, mid, m.body, m.sender)
    if pasted:
        fac.store.note_delivery(mid)
    return Delivery(mid, pasted, reason)


def ack(fac: Factory, worker: str, ids: list[int]) -> list[int]:
    """Receipts: the runtime saw these messages; they are never pasted again."""
    mine = [i for i in ids if (m := fac.store.message(i)) is not None and m.worker == worker]
    unknown = sorted(set(ids) - set(mine))
    if unknown:
        raise FacError(
            f"{worker} has no message(s) {', '.join(map(str, unknown))}", hint="see `fac inbox --all`"
        )
    fac.store.mark_messages(mine, "acked_at")
    if mine:
        fac.store.event("ack", worker, ids=mine)
    return mine


def paste(fac: Factory, worker: str, mid: int, body: str, sender: str = identity.HUMAN) -> tuple[bool, str]:
    try:
        panes = {p.window_name: p for p in fac.panes()}
    except FacError as e:
        return False, str(e)
    p = panes.get(worker)
    if p is None:
        return False, "no window"
    if p.dead:
        return False, "pane process has exited"
    w = fac.store.worker(worker)
    try:
        if w is not None and model.paste_plain(w.runtime):
            fac.tmux.paste(p.pane_id, pane_text(mid, worker, body, comment=False, sender=sender), enter=True)
        else:
            fac.tmux.paste(p.pane_id, pane_text(mid, worker, body, sender=sender) + "\n", enter=False)
    except FacError as e:
        return False, str(e)
    return True, ""


def require_inbox(fac: Factory, worker: str) -> None:
    """A worker has an inbox while it exists, and after it was removed for as long as it holds messages."""
    if not fac.store.messages(worker):
        fac.worker(worker)  # raises "no worker named ..." with the known workers


def mark_read(fac: Factory, worker: str, ids: list[int]) -> None:
    """Messages shown to their worker are read, and reading one is its receipt: it is not pasted again."""
    fac.store.mark_messages(ids, "read_at")
    if ids:
        ack(fac, worker, ids)
