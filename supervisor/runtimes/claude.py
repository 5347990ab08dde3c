"""The `claude` runtime: Claude Code in the pane, reporting its own state through hooks.

Spawn writes `.claude/settings.local.json` in the worktree: hooks (SessionStart, UserPromptSubmit,
Stop, Notification) that call `fac hook ...`, so fac knows what the agent is doing instead of
guessing from the screen, and permissions that let it edit its worktree and run fac's and git's
commands. The Stop hook runs the inner checks and, while they are red, tells Claude why instead of
letting it stop (once per turn: `stop_hook_active` ends the loop). Messages that arrive mid-turn
reach Claude through those hooks instead of keystrokes (supervisor/delivery.py). A restart resumes
the session with a prompt to go on.

The pane starts through `supervisor.runtimes.launch`, which hands Claude the spawner's environment
(ANTHROPIC_*, CLAUDE_CODE_*, ... saved 0600 in the run directory; a pane would otherwise get the tmux
server's stale copy). Claude Code's first-run dialogs would stop a fresh agent (onboarding, "trust
this folder?", "use this API key?"); spawn settles them through the documented fields of the config
file, for what the user asked by spawning: onboarding done, the worker's own tree trusted, the key
the user exported approved. An OAuth user keeps their own config directory (their login is never
copied, so a token refresh cannot log them out); anyone else gets a config directory per worker.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supervisor.errors import FacError
from supervisor.runtimes import Launch

TESTED_VERSION = "2.1.332"  # the Claude Code that fac's suite runs (scripts/setup --test installs it)
PACKAGE = "@anthropic-ai/claude-code"
INSTALL = f"npm install -g {PACKAGE}@{TESTED_VERSION}"
ENV_FILE = "claude.env"  # in the worker's run dir, 0600: the spawner's variables for Claude
CONFIG_DIR = "claude-config"  # in the worker's run dir: its own CLAUDE_CONFIG_DIR (not for OAuth users)
CREDENTIALS = ".credentials.json"  # where Claude Code keeps an OAuth login on Linux
# What Claude Code reads from its environment: the API's address and credentials, its own switches,
# the cloud providers' settings, proxies.
PASSED_PREFIXES = ("ANTHROPIC_", "CLAUDE_CODE_", "DISABLE_", "AWS_", "CLOUD_ML_", "VERTEX_REGION_")
PASSED_NAMES = (
    "CLAUDE_CONFIG_DIR",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "GOOGLE_APPLICATION_CREDENTIALS",
)
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
    "Bash(python3 -m pytest:*)",
    "Bash(pytest:*)",
]
CONTINUE = (
    "fac restarted Claude Code after its process ended. Go on with your task where you left off: "
    "check `git status` and your last steps first. Messages that came meanwhile are in your context."
)
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


def passed_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The spawner's variables that Claude Code reads, to hand to its pane."""
    return {
        k: v
        for k, v in environ.items()
        if v and (k in PASSED_NAMES or any(k.startswith(p) for p in PASSED_PREFIXES))
    }


def user_config_dir(environ: Mapping[str, str]) -> Path:
    """The user's own Claude Code config directory: $CLAUDE_CONFIG_DIR, else ~/.claude."""
    if environ.get("CLAUDE_CONFIG_DIR"):
        return Path(environ["CLAUDE_CONFIG_DIR"])
    return Path(environ.get("HOME") or Path.home()) / ".claude"


def config_file(environ: Mapping[str, str]) -> Path:
    """Claude Code's global config file: in $CLAUDE_CONFIG_DIR when set, else ~/.claude.json."""
    if environ.get("CLAUDE_CONFIG_DIR"):
        return Path(environ["CLAUDE_CONFIG_DIR"]) / ".claude.json"
    return Path(environ.get("HOME") or Path.home()) / ".claude.json"


def settle_first_run(
    config: Mapping[str, Any], worktree: str, api_key: str | None
) -> tuple[dict[str, Any], list[str]]:
    """The config with Claude Code's first-run dialogs settled for one worker, and what was settled.

    Only what spawning asked for: onboarding done, the worker's own tree trusted, and the API key the
    user exported approved (Claude Code keeps the last 20 characters of an approved key).
    """
    out = dict(config)
    done: list[str] = []
    if not out.get("hasCompletedOnboarding"):
        out["hasCompletedOnboarding"] = True
        done.append("onboarding done")
    projects = dict(out.get("projects") or {})
    project = dict(projects.get(worktree) or {})
    if not project.get("hasTrustDialogAccepted"):
        project["hasTrustDialogAccepted"] = True
        done.append(f"trusted {worktree}")
    projects[worktree] = project
    out["projects"] = projects
    if api_key:
        responses = dict(out.get("customApiKeyResponses") or {})
        approved = list(responses.get("approved") or [])
        tail = api_key[-20:]
        if tail not in approved:
            responses["approved"] = [*approved, tail]
            responses["rejected"] = [k for k in responses.get("rejected") or [] if k != tail]
            out["customApiKeyResponses"] = responses
            done.append("approved the ANTHROPIC_API_KEY you exported")
    return out, done


def uses_own_login(environ: Mapping[str, str]) -> bool:
    """Does the user log in to Claude with OAuth (a credentials file, no key exported)? Then the worker
    shares their config directory: a copy of the login would go stale at the first token refresh."""
    if environ.get("ANTHROPIC_API_KEY") or environ.get("ANTHROPIC_AUTH_TOKEN"):
        return False
    return (user_config_dir(environ) / CREDENTIALS).is_file()


def _write_json(path: Path, data: Mapping[str, Any], mode: int = 0o600) -> None:
    """Whole or not at all: Claude Code may read the file at any moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.fac-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class ClaudeRuntime:
    name = "claude"

    def check_available(self, launch: Launch) -> None:
        if shutil.which("claude") is None:
            raise FacError(
                "the claude runtime needs Claude Code, and `claude` is not on PATH",
                hint=f"install it with `{INSTALL}` (the version fac is tested with; the package brings "
                "its own native binary), or use --runtime anthropic",
            )

    def prepare(self, launch: Launch) -> list[str]:
        path = launch.worktree / SETTINGS
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings(launch.worker), indent=2) + "\n", encoding="utf-8")
        _exclude(launch.worktree, "/.claude/settings.local.json")
        return self.settle(launch, os.environ)

    def settle(self, launch: Launch, environ: Mapping[str, str]) -> list[str]:
        """Save the pane's environment and settle the first-run dialogs; one line saying what was done."""
        run_dir = launch.context_file.parent
        env = passed_env(environ)
        if uses_own_login(environ):
            target = config_file(environ)
            where = f"your own Claude config ({target}; your login stays yours)"
        else:
            env["CLAUDE_CONFIG_DIR"] = str(run_dir / CONFIG_DIR)
            target = config_file(env)
            where = f"the worker's own Claude config ({target})"
        exe = shutil.which("claude", path=environ.get("PATH")) or "claude"
        families = [*PASSED_PREFIXES, *PASSED_NAMES]
        _write_json(run_dir / ENV_FILE, {"env": env, "unset": families, "exe": exe})
        config, done = settle_first_run(
            _read_json(target), str(launch.worktree), env.get("ANTHROPIC_API_KEY")
        )
        if done:
            _write_json(target, config)
            return [f"claude: in {where}, fac settled Claude Code's first-run dialogs: {', '.join(done)}"]
        return []

    def config_dir(self, launch: Launch) -> Path:
        """The CLAUDE_CONFIG_DIR the worker's Claude uses (and must be able to write)."""
        saved = _read_json(launch.context_file.parent / ENV_FILE).get("env") or {}
        return user_config_dir({"HOME": str(Path.home()), **saved})

    def writable(self, launch: Launch) -> tuple[Path, ...]:
        """Claude Code's config (its login, its sessions), which it writes: the pane's sandbox binds it."""
        saved = _read_json(launch.context_file.parent / ENV_FILE).get("env") or {}
        environ = {"HOME": str(Path.home()), **saved}
        return (user_config_dir(environ), config_file(environ))

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
        env_file = launch.context_file.parent / ENV_FILE
        exe = str(_read_json(env_file).get("exe") or "claude")
        launcher = [sys.executable, "-m", "supervisor.runtimes.launch", str(env_file), "--"]
        argv = [*launcher, exe, "--permission-mode", self.permission_mode(launch)]
        argv += ["--append-system-prompt", system]
        if launch.session_id:
            # Resumed with a prompt, so it goes on working (resumed alone it would sit at its prompt
            # while fac showed it working); what arrived while it was down comes with its
            # SessionStart hook.
            return [*argv, "--resume", launch.session_id, CONTINUE]
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
