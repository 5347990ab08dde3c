"""Agent runtimes: what runs in a worker's pane. One module per runtime, one small interface."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from supervisor.errors import FacError


@dataclass(frozen=True)
class Launch:
    """Everything a runtime needs to start an agent in its pane."""

    worker: str
    role: str
    worktree: Path
    context_file: Path
    task: str | None
    command: str | None
    prompt: str


class Runtime(Protocol):
    name: str

    def check_available(self, launch: Launch) -> None: ...

    def argv(self, launch: Launch) -> list[str]: ...


def get(name: str) -> Runtime:
    if name == "command":
        from supervisor.runtimes.command import CommandRuntime

        return CommandRuntime()
    if name in ("claude", "anthropic"):
        raise FacError(
            f"the {name} runtime is not available in fac yet",
            hint='use the command runtime for now: fac spawn ROLE --cmd "your-agent-command"',
        )
    raise FacError(f"unknown runtime {name!r}", hint="use one of: command, claude, anthropic")
