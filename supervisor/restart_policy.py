"""When to restart a crashed agent: a pure decision over its recent crash times (no I/O).

Each crash waits the next step of `[supervisor] restart_delays` (the last step repeats); `crash_loop`
crashes within `crash_window` seconds are a crash loop, which a human must look at.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class Action(enum.Enum):
    RESTART_NOW = "restart-now"
    RESTART_LATER = "restart-later"
    GIVE_UP = "give-up"  # a crash loop: needs a human


@dataclass(frozen=True)
class Decision:
    action: Action
    crashes: tuple[float, ...]  # the crash times to keep: those within the window, this one last
    delay: float = 0.0  # seconds until the restart (RESTART_NOW: 0 or less; GIVE_UP: unused)

    @property
    def restart_at(self) -> float | None:
        """When to restart (None when giving up)."""
        return None if self.action is Action.GIVE_UP else self.crashes[-1] + self.delay


def decide(
    crashes: Sequence[float],
    now: float,
    *,
    restart_delays: Sequence[float],
    crash_loop: int,
    crash_window: float,
) -> Decision:
    """What to do about a crash at `now`, given the earlier crash times of the same worker."""
    recent = tuple(t for t in crashes if now - t < crash_window) + (now,)
    if len(recent) >= crash_loop:
        return Decision(Action.GIVE_UP, recent)
    delay = restart_delays[min(len(recent) - 1, len(restart_delays) - 1)]
    return Decision(Action.RESTART_NOW if delay <= 0 else Action.RESTART_LATER, recent, delay)
