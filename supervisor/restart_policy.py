"""When to restart a crashed agent: a pure decision over its recent crash times (no I/O).

Each crash waits the next step of `[supervisor] restart_delays` (the last step repeats); `crash_loop`
crashes within `crash_window` seconds are a crash loop, which a human must look at. An agent whose
program cannot run at all (the shell's exit 127, command not found, or 126, not executable) is not
restarted even once: the same command would fail the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class Action(enum.Enum):
    RESTART_NOW = "restart-now"
    RESTART_LATER = "restart-later"
    GIVE_UP = "give-up"  # a crash loop: needs a human
    CANNOT_RUN = "cannot-run"  # its program is missing or not executable: needs a human at once


CANNOT_RUN = {127: "command not found", 126: "not executable"}  # the shell's own exit codes


@dataclass(frozen=True)
class Decision:
    action: Action
    crashes: tuple[float, ...]  # the crash times to keep: those within the window, this one last
    delay: float = 0.0  # seconds until the restart (RESTART_NOW: 0 or less; GIVE_UP: unused)

    @property
    def restart_at(self) -> float | None:
        """When to restart (None when giving up)."""
        return None if self.action in (Action.GIVE_UP, Action.CANNOT_RUN) else self.crashes[-1] + self.delay


def decide(
    crashes: Sequence[float],
    now: float,
    *,
    restart_delays: Sequence[float],
    crash_loop: int,
    crash_window: float,
    exit_status: int | None = None,
) -> Decision:
    """What to do about a crash at `now` (ended with `exit_status`; None: killed by a signal or not
    known), given the earlier crash times of the same worker."""
    recent = tuple(t for t in crashes if now - t < crash_window) + (now,)
    if exit_status in CANNOT_RUN:
        return Decision(Action.CANNOT_RUN, recent)
    if len(recent) >= crash_loop:
        return Decision(Action.GIVE_UP, recent)
    delay = restart_delays[min(len(recent) - 1, len(restart_delays) - 1)]
    return Decision(Action.RESTART_NOW if delay <= 0 else Action.RESTART_LATER, recent, delay)
