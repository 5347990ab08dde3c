"""When and how a message reaches an agent: pure decisions over plain data (no I/O).

Where the agent is (its *position*) comes from what its runtime last reported through its hooks,
never from its screen: at its prompt (a Stop hook), busy in a turn, in a dialog (a permission
prompt), or starting (a new process whose input is not ready yet). Each runtime takes messages on
one channel (`model.RuntimeSpec.channel`):

- `comment`: `# ` comment lines pasted into the pane (a shell or a script reads them harmlessly),
  at any time except while a dialog is open;
- `hooks` (Claude Code): pasted as a prompt only while the agent sits at its prompt; mid-turn and
  at start-up its hooks hand the messages over instead (the Stop hook's `reason`, UserPromptSubmit's
  and SessionStart's `additionalContext`), and the hook that injected them is their receipt;
- `inbox`: the runtime reads the store itself (fac's built-in agent); nothing is pasted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from supervisor.model import DeliveryChannel

Position = Literal["starting", "busy", "prompt", "dialog"]

# Events that start a new process in a worker's pane: its input is not ready until its runtime says so.
START_EVENTS = ("spawned", "restarted")

# A Notification's type (Claude Code's `notification_type`): which ones mean a dialog is open, and
# which one means the agent sits idle at its prompt. Others (auth_success, ...) say nothing of where it is.
DIALOG_NOTIFICATIONS = frozenset({"permission_prompt", "elicitation_dialog"})
IDLE_NOTIFICATIONS = frozenset({"idle_prompt"})

# A claim older than this belongs to a deliverer that died between its claim and its paste.
CLAIM_TTL = 30.0


def hook_position(event: str, data: dict[str, Any], *, blocked: bool = False) -> Position | None:
    """Where a runtime's hook `event` (with Claude Code's JSON `data`) puts the agent; None: no news.

    `blocked`: a Stop hook that kept the agent working (red checks, or messages it was given).
    """
    if event in ("session-start", "prompt", "working"):
        return "busy"
    if event in ("stop", "idle"):
        return "busy" if blocked else "prompt"
    if event == "notification":
        kind = str(data.get("notification_type") or "")
        untyped_idle = not kind and "waiting for your input" in str(data.get("message") or "").lower()
        if kind in IDLE_NOTIFICATIONS or untyped_idle:
            return "prompt"
        if kind in DIALOG_NOTIFICATIONS or not kind:  # an untyped notification: assume the worst
            return "dialog"
        return None
    return None


def position_of(kind: str | None, payload: dict[str, Any]) -> Position:
    """The position recorded by an event: a (re)start, or a hook's `at`; no event yet: starting."""
    if kind is None or kind in START_EVENTS:
        return "starting"
    at = payload.get("at")
    return at if at in ("starting", "busy", "prompt", "dialog") else "starting"


Action = Literal["paste", "enter", "wait", "skip"]


@dataclass(frozen=True)
class Plan:
    """What to do with one unacknowledged message now.

    paste: paste it; enter: press Enter again (the text is in the prompt box, its Enter was lost);
    wait: not now (`due`: when to look again; None: when a hook or the agent's position changes);
    skip: never by paste (no pane, gave up, or the runtime reads the store itself).
    """

    action: Action
    reason: str = ""
    due: float | None = None


def plan(
    channel: DeliveryChannel,
    position: Position,
    position_since: float,
    *,
    pane_alive: bool,
    delivered_at: float | None,
    attempts: int,
    now: float,
    redeliver: float,
    max_deliveries: int,
) -> Plan:
    """Whether to paste an unacknowledged message into its agent's pane now, and if not, why."""
    if channel == "inbox":
        return Plan("skip", "the agent reads its inbox itself")
    if not pane_alive:
        return Plan("skip", "no live pane")
    if attempts >= max_deliveries:
        return Plan("skip", f"pasted {attempts} times without a receipt")
    if position == "dialog":
        return Plan("wait", "a dialog is open in its pane (a permission prompt)")
    retry = None if delivered_at is None else delivered_at + redeliver * (2 ** max(0, attempts - 1))
    if channel == "hooks":
        if position == "starting":
            return Plan("wait", "its input is not ready yet; its SessionStart hook hands it over")
        if position == "busy":
            return Plan("wait", "mid-turn; its Stop or UserPromptSubmit hook hands it over")
        if delivered_at is None or delivered_at < position_since:
            return Plan("paste")  # at its prompt, not yet pasted at this prompt
        # Pasted at this very prompt and no prompt hook came: the Enter was lost; a second paste
        # would put a second copy into the prompt box.
        if retry is not None and retry > now:
            return Plan("wait", "pasted; waiting for its receipt", retry)
        return Plan("enter", "pasted; no receipt: pressing Enter again")
    # comment lines: harmless anywhere but in a dialog
    if delivered_at is None:
        return Plan("paste")
    if position in ("prompt", "starting") and position_since > delivered_at:
        # it stopped working with this message unread, or a new process never saw it
        return Plan("paste", "pasted again: not read since it was pasted")
    if retry is not None and retry > now:
        return Plan("wait", "pasted; waiting for its receipt", retry)
    return Plan("paste", "no receipt yet: pasted again")
