"""What a runtime reports about itself: `fac hook EVENT` (Claude Code's hooks) and the built-in agent.

fac does not guess an agent's state from its screen; the runtime says it, and these functions record
it, hand back unread messages, take receipts, and hold a stop while the inner checks are red.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from supervisor import delivery, messages, model
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.model import WorkerCause, WorkerState
from supervisor.store import UNSET


def workers_state(
    fac: Factory, name: str, state: WorkerState, event: str, *, by: WorkerCause = "fac", **payload: Any
) -> None:
    """Set a worker's state (as `by` may) and log why, in one transaction."""
    with fac.store.tx() as db:
        fac.store.update_worker(name, db=db, state=state, by=by)
        fac.store.event(event, name, db=db, **payload)


HOOK_STATES: dict[str, WorkerState] = {
    "session-start": "working",
    "prompt": "working",
    "working": "working",
    "stop": "idle",
    "idle": "idle",
    "notification": "waiting-for-human",  # unless `notification_state` says otherwise
}


def notification_state(worker: str, data: dict[str, Any]) -> tuple[WorkerState, str | None]:
    """What a Claude Code Notification means, and what a human should do about it (None: nothing).

    `idle_prompt` (sent a while after each turn) means the agent waits at its prompt, not for a
    human; a permission prompt, a question of Claude's (elicitation) or any dialog fac does not know
    needs someone at the window.
    """
    kind = str(data.get("notification_type") or "")
    message = str(data.get("message") or "").strip()
    if kind == "idle_prompt" or (not kind and "waiting for your input" in message.lower()):
        return "idle", None
    if kind == "auth_success":
        return "working", None
    attach = f"answer it in its window: fac attach {worker}"
    if kind == "permission_prompt" or (not kind and "permission" in message.lower()):
        todo = (
            f"{attach}; to let the role run such commands without asking, set its permission_mode "
            "in roles/ (one of Claude Code's modes: default, acceptEdits, plan, bypassPermissions)"
        )
    else:
        todo = attach
    return "waiting-for-human", f"{message or 'Claude Code shows a dialog'}: {todo}"


MESSAGE_REF = re.compile(r"\(message (\d+):")


def hook(
    fac: Factory, worker: str, event: str, data: dict[str, Any], *, check: bool = False
) -> dict[str, Any]:
    """A runtime reports its own state (Claude Code hooks call this); fac does not guess from the screen.

    What the runtime should read back is in the result's "stdout", as Claude Code's hook JSON: the
    messages that arrived while it worked or was down (SessionStart's and UserPromptSubmit's
    additionalContext, a Stop hook's block reason: that hook is their receipt), and for
    `stop --check` a block decision while the inner checks are red. Each hook records where the
    agent is (`at`: busy, at its prompt, in a dialog), which decides when fac may paste into it.
    """
    w = fac.worker(worker)
    if event not in HOOK_STATES and event != "ack":
        raise FacError(f"unknown hook event {event!r}", hint=f"one of: {', '.join([*HOOK_STATES, 'ack'])}")
    out: dict[str, Any] = {"worker": worker, "event": event}
    if event == "ack":
        ids = [int(i) for i in data.get("ids", [])]
        out["acked"] = messages.ack(fac, worker, ids)
        return out
    # model.worker_transition keeps what the queue or andon set against a runtime saying "working"
    session = str(data["session_id"]) if data.get("session_id") else UNSET
    by: WorkerCause = "prompt" if event == "prompt" else "runtime"
    new_state, todo = (
        notification_state(worker, data) if event == "notification" else (HOOK_STATES[event], None)
    )
    if event == "prompt":
        ids = [int(i) for i in MESSAGE_REF.findall(str(data.get("prompt", "")))]
        known = [i for i in ids if (m := fac.store.message(i)) is not None and m.worker == worker]
        if known:  # pasted messages Claude now reads as its prompt: that is their receipt
            out["acked"] = messages.ack(fac, worker, known, via="hook:prompt")
    reason: list[str] = []
    failed: list[str] = []
    if event == "stop" and check and not data.get("stop_hook_active"):
        verdict = _stop_check(fac, worker)
        out["checks"] = verdict["checks"]
        failed = verdict.get("failed", [])
        reason += verdict.get("reason", [])
    # Messages that came while the agent worked (or was down) go in through its hooks, not keystrokes.
    injects = event in INJECTING and model.runtime_spec(w.runtime).channel == "hooks"
    given = messages.take(fac, worker, via=f"hook:{event}") if injects else []
    if given:
        out["given"] = [m.id for m in given]
        reason.append(messages.hook_text(given))
    blocked = event == "stop" and bool(reason)
    if blocked:
        new_state = "working"
    at = delivery.hook_position(event, data, blocked=blocked)
    with fac.store.tx() as db:
        state = fac.store.update_worker(worker, db=db, state=new_state, by=by, session_id=session)
        state = state or w.state
        extra = {"todo": todo, "type": data.get("notification_type")} if event == "notification" else {}
        if at:
            extra["at"] = at
        fac.store.event(f"hook:{event}", worker, db=db, state=state, **extra)
        if blocked:
            fac.store.event("stop-blocked", worker, db=db, failed=failed, given=out.get("given", []))
    out["state"] = state
    if reason:
        out["stdout"] = json.dumps(_hook_output(event, "\n\n".join(reason)))
    return out


INJECTING = ("session-start", "prompt", "stop")  # the hooks whose output reaches Claude's model


def _hook_output(event: str, text: str) -> dict[str, Any]:
    """Claude Code's JSON for a hook that gives the model `text`: a Stop hook's block decision (the
    reason is what the model reads as it keeps working), or another hook's additionalContext."""
    if event == "stop":
        return {"decision": "block", "reason": text}
    name = {"session-start": "SessionStart", "prompt": "UserPromptSubmit"}[event]
    return {"hookSpecificOutput": {"hookEventName": name, "additionalContext": text}}


def _stop_check(fac: Factory, worker: str) -> dict[str, Any]:
    """The agent wants to stop: if its inner checks are red, say why (the reason keeps it working)."""
    from supervisor import verify

    report = verify.check(fac, ref=None, worker=worker, stage="inner")
    if report.verdict.ok:
        return {"checks": "green"}
    lines = ["fac check (inner) is red; fix this before you stop:"]
    for r in report.verdict.failed():
        lines.append(f"- {r.name}: " + (r.feedback or f"exit {r.exit_code}"))
    lines.append("Then commit and run `fac submit`.")
    failed = [r.name for r in report.verdict.failed()]
    return {"checks": "red", "failed": failed, "reason": ["\n".join(lines)]}


def read_hook_input() -> dict[str, Any]:
    """Claude Code hooks send one JSON object on stdin; other callers may send nothing."""
    if sys.stdin is None or sys.stdin.isatty():
        return {}
    raw = sys.stdin.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}
