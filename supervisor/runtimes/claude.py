"""The `claude` runtime: Claude Code in the pane, reporting its own state through hooks.

Spawn writes `.claude/settings.local.json` in the worktree: hooks (SessionStart, UserPromptSubmit,
Stop, Notification) that call `fac hook ...`, so fac knows what the agent is doing instead of
guessing from the screen, and permissions that let it edit its worktree and run fac's and git's
commands. The Stop hook runs the inner checks and, while they are red, tells Claude why instead of
letting it stop (once per turn: `stop_hook_active` ends the loop). A restart resumes the session.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from supervisor.errors import FacError
from supervisor.runtimes import Launch

INSTALL = "npm install -g @anthropic-ai/claude-code"
DEFAULT_PERMISSION_MODE = (
    "acceptEdits"  # edits in its worktree without asking; shell commands per the allow list
)
SETTINGS = Path(".claude") / "settings.local.json"
SYSTEM_PROMPT_MAX = 100_000  # one argv string may not exceed 128 KiB on Linux
ALLOW = [
    "Bash(fac check:*)",
    "Bash(fac submit:*)",
    "Bash(fac inbox:*)",
    "Bash(fac ask:*)",
    "Bash(fac status:*)",
    "Bash(git status:*)",
    "Bash(git diff:*)",
    "Bash(git log:*)",
    "Bash(git add:*)",
    "Bash(git commit:*)",
    "Bash(git merge main:*)",
    "Bash(python -m pytest:*)",
    "Bash(pytest:*)",
]
DENY = ["Bash(git push:*)", "Bash(git reset --hard:*)", "Bash(rm -rf:*)"]


def hook_command(worker: str, event: str, *extra: str) -> str:
    """The shell command a Claude Code hook runs: this fac, by absolute path, for this worker."""
    argv = [sys.executable, "-m", "supervisor", "hook", event, "--worker", worker, *extra]
    return " ".join(shlex.quote(a) for a in argv)


def settings(worker: str) -> dict[str, Any]:
    def entry(event: str, *extra: str, timeout: int = 30) -> list[dict[str, Any]]:
        return [
            {
                "hooks": [
                    {"type": "command", "command": hook_command(worker, event, *extra), "timeout": timeout}
                ]
            }
        ]

    return {
        "hooks": {
            "SessionStart": entry("session-start"),
            "UserPromptSubmit": entry("prompt"),
            "Stop": entry("stop", "--check", timeout=900),
            "Notification": entry("notification"),
        },
        "permissions": {"allow": ALLOW, "deny": DENY},
    }


class ClaudeRuntime:
    name = "claude"

    def check_available(self, launch: Launch) -> None:
        if shutil.which("claude") is None:
            raise FacError(
                "the claude runtime needs Claude Code, and `claude` is not on PATH",
                hint=f"install it with `{INSTALL}` (Node.js >= 18), or use --runtime anthropic",
            )

    def prepare(self, launch: Launch) -> None:
        path = launch.worktree / SETTINGS
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings(launch.worker), indent=2) + "\n", encoding="utf-8")
        _exclude(launch.worktree, "/.claude/settings.local.json")

    def writable(self, launch: Launch) -> tuple[Path, ...]:
        """Claude Code's config (its login, its sessions), which it writes: the pane's sandbox binds it."""
        config = Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude").expanduser()
        return (config, Path.home() / ".claude.json")

    def readable(self, launch: Launch) -> tuple[Path, ...]:
        """Where Claude Code and Node.js are installed (under a home the sandbox hides, often)."""
        found = []
        # claude resolves into its package (npm) or its version directory (the native installer);
        # node into <prefix>/bin, whose prefix holds its libraries.
        for program, up in (("claude", 1), ("node", 2)):
            exe = shutil.which(program)
            if exe:
                found.append(Path(exe).resolve().parents[up - 1])
        return tuple(found)

    def permission_mode(self, launch: Launch) -> str:
        if launch.root is None:
            return DEFAULT_PERMISSION_MODE
        from supervisor import roles

        try:
            return roles.get(launch.root, launch.role).permission_mode or DEFAULT_PERMISSION_MODE
        except FacError:
            return DEFAULT_PERMISSION_MODE

    def argv(self, launch: Launch) -> list[str]:
        system = (
            launch.context_file.read_text(encoding="utf-8") if launch.context_file.exists() else launch.prompt
        )
        if len(system) > SYSTEM_PROMPT_MAX:
            system = (
                system[:SYSTEM_PROMPT_MAX] + f"\n... (cut; the whole context is in {launch.context_file})"
            )
        argv = ["claude", "--permission-mode", self.permission_mode(launch), "--append-system-prompt", system]
        if launch.session_id:
            return [*argv, "--resume", launch.session_id]
        first = launch.task or "Read your role and context in the system prompt, then start on your task."
        return [*argv, first]


def _exclude(worktree: Path, pattern: str) -> None:
    """Keep fac's files for Claude out of `git add -A` (the scope guard would reject them)."""
    from supervisor import repo

    path = repo.git_path(worktree, "info/exclude")
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    if pattern not in existing.splitlines():
        with path.open("a", encoding="utf-8") as f:
            f.write(("" if existing.endswith("\n") or not existing else "\n") + pattern + "\n")
