"""Agent runtimes: what runs in a worker's pane. One module per runtime, one small interface.

Which runtimes exist, and their static traits, is `supervisor.model.RUNTIMES`; `get(name)` loads
the module the registry names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, cast

from supervisor.errors import FacError
from supervisor.model import RUNTIMES


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
    # What the agent's sandbox must let it write and read beyond its worktree and run directory
    # (a runtime's config directory, a program installed under the hidden home): `confined` fills them.
    writable: tuple[Path, ...] = ()
    readable: tuple[Path, ...] = ()


class Runtime(Protocol):
    name: str

    def check_available(self, launch: Launch) -> None: ...

    def argv(self, launch: Launch) -> list[str]: ...


def prepare(rt: Runtime, launch: Launch) -> list[str]:
    """Let a runtime write what it needs before its process starts (optional); what it says it did
    on the user's behalf, for spawn to print once."""
    hook = getattr(rt, "prepare", None)
    notes = hook(launch) if hook is not None else None
    return list(notes or [])


def config_dir(rt: Runtime, launch: Launch) -> Path | None:
    """The directory a runtime's own configuration lives in, which its agent must be able to write
    (Claude Code's CLAUDE_CONFIG_DIR); None for a runtime without one."""
    hook = getattr(rt, "config_dir", None)
    return Path(hook(launch)) if hook is not None else None


def confined(rt: Runtime, launch: Launch) -> Launch:
    """`launch` with what the runtime needs in its sandbox (its optional `writable(launch)` and
    `readable(launch)`, each a tuple of paths)."""
    writable = getattr(rt, "writable", None)
    readable = getattr(rt, "readable", None)
    return replace(
        launch,
        writable=tuple(writable(launch)) if writable else launch.writable,
        readable=tuple(readable(launch)) if readable else launch.readable,
    )


def get(name: str) -> Runtime:
    """The runtime called `name`, loaded from the module the registry names."""
    spec = RUNTIMES.get(name)
    if spec is None:
        raise FacError(f"unknown runtime {name!r}", hint=f"use one of: {', '.join(RUNTIMES)}")
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        others = [n for n in RUNTIMES if n not in (name, "command")]
        raise FacError(
            f"the {name} runtime is not available in this build of fac",
            hint=f'use --runtime {" or ".join(others)}, or the command runtime: fac spawn ROLE --cmd "..."',
        ) from None
    return cast(Runtime, getattr(module, spec.cls)())
