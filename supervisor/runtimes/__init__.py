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
    session_id: str | None = None  # a runtime that can resume a conversation gets its last session here
    root: Path | None = None  # the factory root


class Runtime(Protocol):
    name: str
    # How a message reaches the pane: False pastes `# ` comment lines (safe even at a shell prompt);
    # True pastes plain text and presses Enter (an agent's prompt box, where `#` means something).
    paste_plain: bool

    def check_available(self, launch: Launch) -> None: ...

    def argv(self, launch: Launch) -> list[str]: ...


def prepare(rt: Runtime, launch: Launch) -> None:
    """Let a runtime write what it needs into the worktree before its process starts (optional)."""
    hook = getattr(rt, "prepare", None)
    if hook is not None:
        hook(launch)


def pastes_plain(name: str) -> bool:
    """Whether runtime `name` takes messages as plain prompts (unknown or unavailable: comments)."""
    try:
        return bool(getattr(get(name), "paste_plain", False))
    except FacError:
        return False


def get(name: str) -> Runtime:
    if name == "command":
        from supervisor.runtimes.command import CommandRuntime

        return CommandRuntime()
    if name == "claude":
        from supervisor.runtimes.claude import ClaudeRuntime

        return ClaudeRuntime()
    if name == "anthropic":
        try:
            from supervisor.runtimes.anthropic import AnthropicRuntime
        except ImportError:
            raise FacError(
                "the anthropic runtime is not available in this build of fac",
                hint='use --runtime claude, or the command runtime: fac spawn ROLE --cmd "..."',
            ) from None
        return AnthropicRuntime()
    raise FacError(f"unknown runtime {name!r}", hint="use one of: command, claude, anthropic")
