"""The anthropic agent's tools: read_file, write_file, edit_file, list_dir, run, check, submit, ask.

Every path is confined to the worker's worktree, and `run` executes inside the sandbox the checks use
(within the agent's own). check, submit and ask are `fac check`, `fac submit` and `fac ask` on the
worker's channel.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.runtimes.anthropic.link import Link, failure

READ_MAX = 60_000  # characters of a file read_file returns
RUN_HEAD, RUN_TAIL = 2_000, 8_000  # characters of a command's output run returns (the tail matters most)
LIST_MAX = 500
NOISE = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}

PATH_ONLY = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
TOOLS: list[dict[str, Any]] = [
    {
        "name": "read_file",
        "description": "Read a text file of your worktree. Paths are relative to the worktree root.",
        "input_schema": PATH_ONLY,
    },
    {
        "name": "write_file",
        "description": (
            "Create or overwrite a file of your worktree with `content` (parent directories are created)."
        ),
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
    {
        "name": "edit_file",
        "description": "Replace the text `old`, which must occur exactly once in the file, with `new`.",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "old": {"type": "string"},
                "new": {"type": "string"},
            },
            "required": ["path", "old", "new"],
        },
    },
    {
        "name": "list_dir",
        "description": "List a directory of your worktree (directories end with /). Use '.' for the root.",
        "input_schema": PATH_ONLY,
    },
    {
        "name": "run",
        "description": (
            "Run one command in your worktree, inside a sandbox (no network; only the worktree is "
            "writable), with a timeout. The command is split like a shell would split it but no shell "
            "runs it: for pipes or `&&` run `bash -c '...'`. Returns the exit code and the output "
            "(long output keeps its end)."
        ),
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    },
    {
        "name": "check",
        "description": (
            "Run the factory's fast (inner) checks on your worktree as it is now; returns the feedback."
        ),
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "submit",
        "description": (
            "Commit every change in your worktree (with `message`, or a default) and queue your branch "
            "for the merge queue. The verdict (MERGED, RED with the failing check, or CONFLICT) "
            "comes back to you."
        ),
        "input_schema": {"type": "object", "properties": {"message": {"type": "string"}}},
    },
    {
        "name": "ask",
        "description": "Ask a human (pull the andon cord) when only a human can decide; returns the answer.",
        "input_schema": {
            "type": "object",
            "properties": {"question": {"type": "string"}},
            "required": ["question"],
        },
    },
]

HOW = """\
# How you work as fac's built-in agent

You act only through your tools; there is no shell prompt. Paths are relative to your worktree.
- `check()` is `fac check`: run it before you submit.
- `submit(message)` commits everything and runs `fac submit`; the queue's verdict comes back to you
  as a message. MERGED ends your task. RED and CONFLICT come with what to fix: fix it and submit again.
- `ask(question)` is `fac ask`: use it only for decisions a human must make.
- `run(command)` runs a program in a sandbox, e.g. `python -m pytest -q` in system-under-construction.
Messages from the factory and from humans arrive as user messages that start with [inbox].
"""


class ToolError(Exception):
    """A tool call the agent got wrong: returned to the model as an error tool_result."""


def confine(root: Path, path: Any) -> Path:
    """The real path of `path` inside the worktree `root`, or ToolError: no absolute paths, no `..`,
    no symlink that leads outside, and nothing inside `.git`."""
    if not isinstance(path, str):
        raise ToolError("path must be a string")
    raw = path.strip() or "."
    if "\0" in raw:
        raise ToolError("path contains a NUL character")
    pure = PurePosixPath(raw)
    if pure.is_absolute() or raw.startswith("~"):
        raise ToolError(
            f"{path!r} is absolute; use a path relative to your worktree, e.g. system-under-construction"
        )
    if ".." in pure.parts:
        raise ToolError(f"{path!r} contains '..'; paths may not leave your worktree")
    base = root.resolve()
    real = (base / pure).resolve()
    if real != base and base not in real.parents:
        raise ToolError(f"{path!r} resolves to {real}, outside your worktree (through a symlink); refused")
    rel = real.relative_to(base)
    if rel.parts[:1] == (".git",):
        raise ToolError(f"{path!r} is inside .git, which is git's, not yours; submit() commits for you")
    return real


def clip_output(text: str, head: int = RUN_HEAD, tail: int = RUN_TAIL) -> str:
    if len(text) <= head + tail:
        return text
    return f"{text[:head]}\n... ({len(text) - head - tail} characters omitted) ...\n{text[-tail:]}"


class Tools:
    """The tool calls of one worker's agent, run on its worktree and its run directory."""

    def __init__(
        self,
        fac: Factory,
        worker: str,
        task: str | None,
        root: Path,
        run_dir: Path,
        *,
        link: Link,
        run_timeout: Callable[[], float],
        ask: Callable[[str], list[dict[str, Any]]],
    ) -> None:
        self.fac = fac
        self.worker = worker
        self.task = task
        self.root = root
        self.run_dir = run_dir
        self.link = link
        self.run_timeout = run_timeout  # read at each call: a human may change [agents] run_timeout
        self.ask = ask  # pulls the andon cord and waits for the answer

    def call(self, name: str, args: dict[str, Any]) -> tuple[str, bool]:
        """Run one tool call; (result text, is_error)."""
        fn = getattr(self, f"t_{name}", None)
        if fn is None or name not in {t["name"] for t in TOOLS}:
            return f"unknown tool {name!r}; the tools are: {', '.join(t['name'] for t in TOOLS)}", True
        try:
            return fn(**args), False
        except TypeError as e:
            return f"bad arguments for {name}: {e}", True
        except ToolError as e:
            return str(e), True
        except FacError as e:
            return e.message + (f" ({e.hint})" if e.hint else ""), True
        except OSError as e:
            return f"{name} failed: {e.strerror or e}", True

    def t_read_file(self, path: str) -> str:
        p = confine(self.root, path)
        if not p.is_file():
            raise ToolError(
                f"{path!r} is not a file" + (" (it is a directory: use list_dir)" if p.is_dir() else "")
            )
        text = p.read_text(encoding="utf-8", errors="replace")
        if len(text) > READ_MAX:
            return text[:READ_MAX] + f"\n... ({len(text) - READ_MAX} more characters not shown)"
        return text or "(empty file)"

    def t_write_file(self, path: str, content: str) -> str:
        if not isinstance(content, str):
            raise ToolError("content must be a string")
        p = confine(self.root, path)
        if p.is_dir():
            raise ToolError(f"{path!r} is a directory")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content, encoding="utf-8")
        return f"wrote {path} ({len(content)} characters, {content.count(chr(10))} lines)"

    def t_edit_file(self, path: str, old: str, new: str) -> str:
        if not isinstance(old, str) or not isinstance(new, str) or not old:
            raise ToolError("old must be non-empty text and new must be text")
        p = confine(self.root, path)
        if not p.is_file():
            raise ToolError(f"{path!r} is not a file")
        text = p.read_text(encoding="utf-8")
        n = text.count(old)
        if n == 0:
            raise ToolError(f"the old text is not in {path}; read_file it and copy the text exactly")
        if n > 1:
            raise ToolError(f"the old text occurs {n} times in {path}; include more lines so it is unique")
        p.write_text(text.replace(old, new, 1), encoding="utf-8")
        return f"edited {path}: {old.count(chr(10)) + 1} line(s) replaced by {new.count(chr(10)) + 1}"

    def t_list_dir(self, path: str = ".") -> str:
        p = confine(self.root, path)
        if not p.is_dir():
            raise ToolError(f"{path!r} is not a directory")
        entries = sorted(e for e in os.listdir(p) if e not in NOISE)
        shown = [e + ("/" if (p / e).is_dir() else "") for e in entries[:LIST_MAX]]
        if len(entries) > LIST_MAX:
            shown.append(f"... ({len(entries) - LIST_MAX} more)")
        return "\n".join(shown) if shown else "(empty directory)"

    def t_run(self, command: str) -> str:
        from supervisor import env as sysenv
        from supervisor import sandbox

        if not isinstance(command, str):
            raise ToolError("command must be a string")
        try:
            argv = shlex.split(command)
        except ValueError as e:
            raise ToolError(f"cannot split the command: {e}") from None
        if not argv:
            raise ToolError("the command is empty")
        tmp = self.run_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        # The model's commands get no API credentials.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
        env.update(TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1")
        # The system's environment that serves now, as the panes find it (the queue builds it).
        env_bin = sysenv.pane_path(self.fac)
        sb = sandbox.detect(self.fac.root).with_env(env_bin if env_bin.is_dir() else None)
        if sb.env_bin:
            env["PATH"] = f"{sb.env_bin}{os.pathsep}{env.get('PATH', '')}"
        if sb.kind != "none":
            # Hidden from the model's commands: the agent's run directory (its saved key) and the home
            # directory (ssh keys, cloud credentials), which a command could otherwise copy into a
            # commit; the Pythons and the factory come back read-only when they live under home.
            hide = [self.run_dir, Path.home()]
            reveal = [Path(sys.prefix), Path(sys.base_prefix), self.fac.root]
            argv = sb.wrap(argv, self.root, [self.root, tmp], hide=hide, reveal=reveal)
        log = self.run_dir / "run-output.log"
        start = time.monotonic()
        timeout = self.run_timeout()
        with open(log, "wb") as f:
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=self.root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except (FileNotFoundError, PermissionError) as e:
                raise ToolError(f"cannot run {argv[0]!r}: {e.strerror}") from None
            try:
                code: int | None = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
                code = None
        output = clip_output(log.read_bytes().decode("utf-8", errors="replace"))
        took = time.monotonic() - start
        status = f"timed out after {timeout:g}s (killed)" if code is None else f"exit {code}"
        return f"{status} in {took:.1f}s (sandbox: {sb.kind})\n{output}".rstrip()

    def t_check(self) -> str:
        reply = self.link.call("check", "--json")
        if reply.code not in (0, 1):  # 1 is red, with its report
            raise failure(reply)
        report = json.loads(reply.out)
        results = report["results"]
        lines = [f"{'green' if report['ok'] else 'RED'}: {len(results)} inner check(s) ({report['sandbox']})"]
        for r in results:
            lines.append(f"- {r['name']}: {'pass' if r['ok'] else 'FAIL'} in {r['duration']:.1f}s")
            if not r["ok"] and r.get("feedback"):
                lines.extend(f"  {line}" for line in r["feedback"].splitlines())
        lines.extend(report["notes"])
        return "\n".join(lines)

    def t_submit(self, message: str | None = None) -> str:
        from supervisor import repo

        msg = (message or "").strip() or f"{self.worker}: {(self.task or 'work').splitlines()[0][:60]}"
        if repo.git(self.root, "status", "--porcelain"):
            repo.git(self.root, "add", "-A")
            repo.git(self.root, "commit", "-q", "-m", msg)
        sub = self.link.json("submit", "--json")
        superseded = sub["superseded"]
        extra = f"; it replaces entry {', '.join(map(str, superseded))}" if superseded else ""
        return (
            f"committed and queued {sub['branch']} at {sub['sha'][:10]} as entry {sub['id']} "
            f"(position {sub['position']}){extra}. The verdict comes back to you as a message."
        )

    def t_ask(self, question: str) -> str:
        if not isinstance(question, str) or not question.strip():
            raise ToolError("the question is empty")
        return "\n\n".join(b["text"] for b in self.ask(question.strip()))
