"""The built-in coding agent behind the `anthropic` runtime: a tool-use loop on the Messages API.

Its tools are exactly read_file, write_file, edit_file, list_dir, run, check, submit and ask. Every
path is confined to the worker's worktree, and `run` executes inside the sandbox the checks use. It
prints a readable transcript into its pane, reads its inbox between turns (reading is the receipt),
retries API errors with exponential backoff, records tokens and cost in the store after every turn,
and pulls the andon cord instead of calling the model once `[agents] max_tokens_per_worker` or
`max_turns` is spent. After submit() it waits for the queue's verdict: MERGED ends it (exit 0), RED or
CONFLICT goes back to the model.
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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from supervisor import andon, messages
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.store import Message

DEFAULT_MODEL = "claude-sonnet-4-6"
MAX_OUTPUT_TOKENS = 8192  # per model call
READ_MAX = 60_000  # characters of a file read_file returns
RUN_HEAD, RUN_TAIL = 2_000, 8_000  # characters of a command's output run returns (the tail matters most)
LIST_MAX = 500
RETRIES = 6  # attempts per model call for 429, 5xx and connection errors
BACKOFF_MAX = 60.0
ENV_FILE = "agent.env"  # in the worker's run dir, 0600: the ANTHROPIC_* of whoever spawned it
CONVERSATION_FILE = "conversation.json"  # in the run dir: a restarted agent resumes from it
KEY_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
ENV_VARS = (*KEY_VARS, "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL")
NOISE = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}

TOOLS: list[dict[str, Any]] = [
    {
        "name": "read_file",
        "description": "Read a text file of your worktree. Paths are relative to the worktree root.",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    },
    {
        "name": "write_file",
        "description": "Create or overwrite a file of your worktree with `content` (parent directories are created).",
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
            "properties": {"path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}},
            "required": ["path", "old", "new"],
        },
    },
    {
        "name": "list_dir",
        "description": "List a directory of your worktree (directories end with /). Use '.' for the root.",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    },
    {
        "name": "run",
        "description": (
            "Run one command in your worktree, inside a sandbox (no network; only the worktree is writable), "
            "with a timeout. The command is split like a shell would split it but no shell runs it: for pipes "
            "or `&&` run `bash -c '...'`. Returns the exit code and the output (long output keeps its end)."
        ),
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    },
    {
        "name": "check",
        "description": "Run the factory's fast (inner) checks on your worktree as it is now; returns the feedback.",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "submit",
        "description": (
            "Commit every change in your worktree (with `message`, or a default) and queue your branch for the "
            "merge queue. The verdict (MERGED, RED with the failing check, or CONFLICT) comes back to you."
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


# --- settings ---


@dataclass(frozen=True)
class Settings:
    model: str
    base_url: str | None
    api_key: str | None
    auth_token: str | None
    max_tokens_per_worker: int
    max_turns: int
    price_in: float
    price_out: float
    run_timeout: float


def agent_env(fac: Factory, worker: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """The ANTHROPIC_* variables the agent uses: its own environment, overridden by what spawn saved."""
    env = dict(os.environ if env is None else env)
    saved = fac.run_dir(worker) / ENV_FILE
    if saved.is_file():
        data = json.loads(saved.read_text(encoding="utf-8"))
        if any(k in data for k in KEY_VARS):
            for k in KEY_VARS:  # the spawner's credentials replace the pane's as a pair
                env.pop(k, None)
        env.update({k: v for k, v in data.items() if k in ENV_VARS and v})
    return env


def save_env(run_dir: Path, env: dict[str, str] | None = None) -> Path | None:
    """Keep the spawner's ANTHROPIC_* for the pane (tmux would hand it the server's environment)."""
    env = dict(os.environ if env is None else env)
    data = {k: env[k] for k in ENV_VARS if env.get(k)}
    if not data:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ENV_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.chmod(path, 0o600)
    return path


def settings(fac: Factory, env: dict[str, str]) -> Settings:
    from supervisor import config as configmod

    cfg = configmod.load(fac.root).agents  # fresh: a human may have raised the budget meanwhile
    return Settings(
        model=env.get("ANTHROPIC_MODEL") or cfg.model or DEFAULT_MODEL,
        base_url=env.get("ANTHROPIC_BASE_URL") or cfg.base_url,
        api_key=env.get("ANTHROPIC_API_KEY") or None,
        auth_token=None if env.get("ANTHROPIC_API_KEY") else (env.get("ANTHROPIC_AUTH_TOKEN") or None),
        max_tokens_per_worker=cfg.max_tokens_per_worker,
        max_turns=cfg.max_turns,
        price_in=cfg.price_in,
        price_out=cfg.price_out,
        run_timeout=cfg.run_timeout,
    )


def make_client(s: Settings) -> Any:
    import anthropic

    kwargs: dict[str, Any] = {"max_retries": 0, "timeout": 600.0}  # the agent retries itself, visibly
    if s.base_url:
        kwargs["base_url"] = s.base_url
    if s.api_key:
        kwargs["api_key"] = s.api_key
    elif s.auth_token:
        kwargs["auth_token"] = s.auth_token
    else:
        kwargs["api_key"] = "fac-no-key"  # a keyless local endpoint (check_available allowed it)
    return anthropic.Anthropic(**kwargs)


# --- confinement ---


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


# --- the transcript ---


class Transcript:
    """What the pane shows: who said what, each tool call and a one-line result."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        tty = getattr(out, "isatty", lambda: False)()
        self.bold = (lambda s: f"\033[1m{s}\033[0m") if tty else (lambda s: s)
        self.dim = (lambda s: f"\033[2m{s}\033[0m") if tty else (lambda s: s)

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def who(self, speaker: str, text: str) -> None:
        lines = text.strip().splitlines() or [""]
        self.say(f"{self.bold(speaker + ':')} {lines[0]}")
        for line in lines[1:]:
            self.say(f"  {line}")

    def call(self, name: str, args: dict[str, Any]) -> None:
        shown = ", ".join(f"{k}={_short_arg(v)}" for k, v in args.items())
        self.say(f"  -> {name}({shown})")

    def result(self, text: str, error: bool) -> None:
        lines = text.strip().splitlines() or ["(empty)"]
        first = lines[0] if len(lines[0]) <= 110 else lines[0][:107] + "..."
        more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
        self.say(f"  <- {'ERROR: ' if error else ''}{first}{self.dim(more)}")


def _short_arg(v: Any) -> str:
    if isinstance(v, str):
        if len(v) > 60 or "\n" in v:
            return f"<{len(v)} chars, {v.count(chr(10)) + 1} lines>"
        return repr(v)
    s = json.dumps(v)
    return s if len(s) <= 60 else s[:57] + "..."


# --- the agent ---


class Stop(Exception):
    """Ends the loop with an exit code (raised from deep inside waits)."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code
        self.why = why


class Agent:
    def __init__(
        self,
        fac: Factory,
        worker: str,
        *,
        env: dict[str, str] | None = None,
        client: Any = None,
        out: IO[str] | None = None,
        backoff: float = 1.0,
        wait_limit: float | None = None,
        poll: float = 0.1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        w = fac.store.worker(worker)
        if w is None:
            raise FacError(
                f"no worker named {worker!r}", hint="the anthropic runtime runs inside a spawned worker"
            )
        self.fac = fac
        self.worker = worker
        self.task = w.task
        self.root = Path(w.worktree)
        self.run_dir = fac.run_dir(worker)
        self.base_env = env
        self.env = agent_env(fac, worker, env)
        self.settings = settings(fac, self.env)
        self.client = client if client is not None else make_client(self.settings)
        self.t = Transcript(out or sys.stdout)
        self.backoff = backoff
        self.wait_limit = wait_limit  # seconds to wait for a message before giving up (None: forever)
        self.poll = poll
        self.sleep = sleep
        self.turns = 0
        self.carry: list[dict[str, Any]] = []  # a human's answers, for the next user message

    # --- the loop ---

    def run(self) -> int:
        try:
            return self._run()
        except Stop as s:
            self.t.say(f"[fac] {s.why}")
            return s.code

    def _run(self) -> int:
        s = self.settings
        self.t.say(f"fac agent {self.worker}: model {s.model} at {s.base_url or 'the Anthropic API'}, "
                   f"budget {s.max_tokens_per_worker:,} tokens, {s.max_turns} turns")  # fmt: skip
        self.t.say(f'worktree {self.root}; talk to me with: fac send {self.worker} "..."')
        self._report("working")
        convo, pending = self._resume()
        if self._submission_open():  # restarted while the queue had its branch: the verdict comes first
            pending += self._inbox_blocks(self._wait_verdict())
        while True:
            pending += self._inbox_blocks(self._read_inbox())
            if not pending:  # the model ended its turn and nobody wrote: wait for the inbox
                self._report("idle")
                pending += self._inbox_blocks(self._wait_inbox("a message"))
                self._report("working")
                continue
            self._within_limits()
            pending += self.carry
            self.carry = []
            convo.append({"role": "user", "content": pending})
            pending = []
            self._save(convo)
            resp = self._call(convo)
            if resp is None:  # the API refused and a human answered: the same turn again, with the answer
                pending = convo.pop()["content"]
                continue
            self.turns += 1
            self._account(resp)
            content = [_block(b) for b in resp.content] or [{"type": "text", "text": "(no answer)"}]
            convo.append({"role": "assistant", "content": content})
            self._save(convo)
            for b in content:
                if b["type"] == "text" and b["text"].strip():
                    self.t.who("model", b["text"])
            uses = [b for b in content if b["type"] == "tool_use"]
            if not uses:
                if resp.stop_reason == "max_tokens":
                    pending.append(
                        _text("(your answer was cut at the output limit; continue where it stopped)")
                    )
                continue
            submitted = False
            for b in uses:
                self.t.call(b["name"], b.get("input") or {})
                result, error = self.tool(b["name"], b.get("input") or {})
                self.t.result(result, error)
                block: dict[str, Any] = {"type": "tool_result", "tool_use_id": b["id"], "content": result}
                if error:
                    block["is_error"] = True
                pending.append(block)
                submitted = submitted or (b["name"] == "submit" and not error)
            if submitted:
                self._save(convo + [{"role": "user", "content": pending}])
                pending += self._inbox_blocks(self._wait_verdict())

    def _within_limits(self) -> None:
        """Enforce the budget before every call: past it, ask a human instead of calling the model."""
        while True:
            w = self.fac.store.worker(self.worker)
            used = (w.tokens_in + w.tokens_out) if w else 0
            s = self.settings
            if used >= s.max_tokens_per_worker:
                question = (f"token budget spent: {self.worker} used {used:,} tokens of [agents] max_tokens_per_worker "
                            f"= {s.max_tokens_per_worker:,}. Raise it in factory.toml and answer to let it go on "
                            f"(fac answer {self.worker} \"...\"), or stop it (fac kill {self.worker}).")  # fmt: skip
            elif self.turns >= s.max_turns:
                question = (f"turn limit reached: {self.worker} called the model {self.turns} times ([agents] "
                            f"max_turns = {s.max_turns}). Answer to give it another {s.max_turns} turns, "
                            f"or stop it (fac kill {self.worker}).")  # fmt: skip
            else:
                return
            self.fac.store.event("agent-limit", self.worker, used=used, turns=self.turns)
            self.carry += self._andon(question)
            self.settings = settings(self.fac, self.env)
            if self.turns >= s.max_turns:
                self.turns = 0
            w = self.fac.store.worker(self.worker)
            if w and (w.tokens_in + w.tokens_out) >= self.settings.max_tokens_per_worker:
                self.fac.store.update_worker(self.worker, state="stopped")
                self.fac.store.event("agent-stopped", self.worker, reason="token budget spent")
                raise Stop(0, "the budget is still spent after the answer; stopping (state: stopped)")

    # --- the model ---

    def _call(self, convo: list[dict[str, Any]]) -> Any:
        """One model call with backoff on 429, 5xx and connection errors; None after a refusal a human answered."""
        import anthropic

        s = self.settings
        system = [{"type": "text", "text": self._system(), "cache_control": {"type": "ephemeral"}}]
        delay = self.backoff
        for attempt in range(1, RETRIES + 1):
            try:
                return self.client.messages.create(model=s.model, max_tokens=MAX_OUTPUT_TOKENS, system=system,
                                                   tools=TOOLS, messages=_with_cache_mark(convo))  # fmt: skip
            except anthropic.APIStatusError as e:
                if e.status_code != 429 and e.status_code < 500:
                    self.t.say(f"[api] {e.status_code}: {_api_message(e)}")
                    question = (f"the Anthropic API refused {self.worker}'s request: {e.status_code} "
                                f"{_api_message(e)}. Fix the key or [agents] settings, then answer to retry.")  # fmt: skip
                    self.carry += self._andon(question)
                    self.env = agent_env(self.fac, self.worker, self.base_env)  # a human may have fixed it
                    self.settings = settings(self.fac, self.env)
                    self.client = make_client(self.settings)
                    return None
                what, wait = f"{e.status_code} {_api_message(e)}", _retry_after(e)
            except anthropic.APIConnectionError as e:
                what, wait = f"connection error: {e}", None
            if attempt == RETRIES:
                question = (f"the Anthropic API failed {RETRIES} times in a row for {self.worker} ({what}). "
                            "Answer to retry once it is reachable.")  # fmt: skip
                self.carry += self._andon(question)
                return None
            pause = min(BACKOFF_MAX, wait if wait is not None else delay)
            self.t.say(f"[api] {what}; retry {attempt}/{RETRIES - 1} in {pause:.1f}s")
            self.fac.store.event("agent-retry", self.worker, error=what, attempt=attempt)
            self.sleep(pause)
            delay *= 2
        return None  # unreachable

    def _system(self) -> str:
        ctx_path = self.env.get("FAC_CONTEXT") or str(self.run_dir / "context.md")
        try:
            ctx = Path(ctx_path).read_text(encoding="utf-8")
        except OSError:
            ctx = f"# Task\n\n{self.task or '(none given)'}\n"
        return f"{ctx.rstrip()}\n\n{HOW}"

    def _account(self, resp: Any) -> None:
        """Tokens and cost of one turn, added to the worker's row in one transaction."""
        u = resp.usage
        fresh = int(u.input_tokens or 0)
        written = int(getattr(u, "cache_creation_input_tokens", 0) or 0)
        read = int(getattr(u, "cache_read_input_tokens", 0) or 0)
        out = int(u.output_tokens or 0)
        s = self.settings
        # Cache writes cost 1.25x and cache reads 0.1x the input price.
        cost = ((fresh + 1.25 * written + 0.1 * read) * s.price_in + out * s.price_out) / 1e6
        tokens_in = fresh + written + read
        store = self.fac.store
        with store.tx() as db:
            totals = store.add_usage(self.worker, tokens_in, out, cost, db)
            if totals is None:
                raise Stop(1, f"worker {self.worker} was removed; stopping")
            total_in, total_out, total_cost = totals
            store.event("agent-turn", self.worker, db=db, turn=self.turns, tokens_in=tokens_in, tokens_out=out,
                        cost=round(cost, 6), stop_reason=resp.stop_reason)  # fmt: skip
        self.t.say(self.t.dim(f"[turn {self.turns}: {tokens_in:,} in + {out:,} out; total {total_in + total_out:,} "
                              f"of {s.max_tokens_per_worker:,} tokens, ${total_cost:.4f}]"))  # fmt: skip

    # --- the inbox ---

    def _read_inbox(self) -> list[Message]:
        """Unread messages, marked read and acknowledged (the agent saw them; nothing pastes them again)."""
        msgs = self.fac.store.messages(self.worker, unread_only=True)
        if not msgs:
            return []
        ids = [m.id for m in msgs]
        self.fac.store.mark_messages(ids, "read_at")
        messages.ack(self.fac, self.worker, ids)
        _flush_tty()  # the same text was pasted into this pane; the transcript shows it once, below
        for m in msgs:
            self.t.who(f"[inbox] {m.sender} ({m.kind})", m.body)
        return msgs

    def _wait_inbox(self, what: str) -> list[Message]:
        deadline = None if self.wait_limit is None else time.monotonic() + self.wait_limit
        seen = None
        while True:
            version = self.fac.store.data_version()
            if version != seen:
                seen = version
                msgs = self._read_inbox()
                if msgs:
                    return msgs
            if deadline is not None and time.monotonic() > deadline:
                raise Stop(1, f"no {what} within {self.wait_limit:g}s; stopping")
            self.sleep(self.poll)

    def _wait_verdict(self) -> list[Message]:
        """Messages up to and including the queue's verdict; MERGED ends the agent."""
        self.t.say("[fac] submitted; waiting for the merge queue's verdict")
        got: list[Message] = []
        while True:
            for m in self._wait_inbox("verdict"):
                got.append(m)
                kind = _verdict(m)
                if kind == "merged":
                    raise Stop(0, "merged into main. Done.")
                if kind in ("red", "conflict"):
                    return got

    def _inbox_blocks(self, msgs: list[Message]) -> list[dict[str, Any]]:
        for m in msgs:
            if _verdict(m) == "merged":
                raise Stop(0, "merged into main. Done.")
        return [_text(f"[inbox] message {m.id} from {m.sender} ({m.kind}):\n{m.body}") for m in msgs]

    def _andon(self, question: str) -> list[dict[str, Any]]:
        """Pull the cord and wait for the human's answer; returns it (and whatever came with it) as blocks."""
        andon.ask(self.fac, self.worker, question, by="agent")
        self.t.who("[andon] asked a human", question)
        got: list[Message] = []
        while not any(m.kind == "answer" for m in got):
            got += self._wait_inbox("answer")
        return self._inbox_blocks(got)

    def _submission_open(self) -> bool:
        from supervisor.store import QUEUE_OPEN

        return any(e.worker == self.worker for e in self.fac.store.queue(QUEUE_OPEN))

    def _report(self, event: str) -> None:
        from supervisor import daemon

        try:
            daemon.hook(self.fac, self.worker, event, {})
        except FacError:
            pass

    # --- the conversation, kept so a restarted agent resumes it ---

    def _resume(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        path = self.run_dir / CONVERSATION_FILE
        if path.is_file():
            try:
                convo = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                convo = []
            if convo:
                self.turns = sum(1 for m in convo if m.get("role") == "assistant")
                if convo[-1].get("role") == "user":
                    pending = convo.pop()["content"]
                else:  # it stopped in the middle of a turn: its tool calls did not run (or their results are lost)
                    pending = [{"type": "tool_result", "tool_use_id": b["id"], "is_error": True,
                                "content": "not run: fac restarted you before this tool call finished"}
                               for b in convo[-1]["content"] if b.get("type") == "tool_use"]  # fmt: skip
                pending.append(_text("(fac restarted you; your conversation so far is above. Continue.)"))
                self.t.say(f"[fac] resumed the conversation ({self.turns} turns so far)")
                return convo, pending
        task = self.task or "(no task was given: ask what to do)"
        return [], [_text(f"Your task: {task}\n\nStart by looking at the system under construction.")]

    def _save(self, convo: list[dict[str, Any]]) -> None:
        path = self.run_dir / CONVERSATION_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(convo), encoding="utf-8")
        tmp.replace(path)

    # --- the tools ---

    def tool(self, name: str, args: dict[str, Any]) -> tuple[str, bool]:
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
        sb = sandbox.detect(self.fac.root)
        if sb.kind != "none":
            # Hidden from the model's commands: the agent's run directory (its saved key) and the home
            # directory (ssh keys, cloud credentials), which a command could otherwise copy into a
            # commit; the Pythons and the factory come back read-only when they live under home.
            hide = [self.run_dir, Path.home()]
            reveal = [Path(sys.prefix), Path(sys.base_prefix), self.fac.root]
            argv = sb.wrap(argv, self.root, [self.root, tmp], hide=hide, reveal=reveal)
        log = self.run_dir / "run-output.log"
        start = time.monotonic()
        timeout = self.settings.run_timeout
        with open(log, "wb") as f:
            try:
                proc = subprocess.Popen(argv, cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=f,
                                        stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
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
        from supervisor import verify

        report = verify.check(self.fac, ref=None, worker=self.worker, stage="inner")
        v = report.verdict
        lines = [f"{'green' if v.ok else 'RED'}: {len(v.results)} inner check(s) ({report.sandbox})"]
        for r in v.results:
            lines.append(f"- {r.name}: {'pass' if r.ok else 'FAIL'} in {r.duration:.1f}s")
            if not r.ok and r.feedback:
                lines.extend(f"  {line}" for line in r.feedback.splitlines())
        lines.extend(report.notes)
        return "\n".join(lines)

    def t_submit(self, message: str | None = None) -> str:
        from supervisor import repo, submission

        msg = (message or "").strip() or f"{self.worker}: {(self.task or 'work').splitlines()[0][:60]}"
        if repo.git(self.root, "status", "--porcelain"):
            repo.git(self.root, "add", "-A")
            repo.git(self.root, "commit", "-q", "-m", msg)
        sub = submission.submit(self.fac, self.worker)
        extra = f"; it replaces entry {', '.join(map(str, sub.superseded))}" if sub.superseded else ""
        return (f"committed and queued {sub.branch} at {sub.sha[:10]} as entry {sub.id} (position {sub.position})"
                f"{extra}. The verdict comes back to you as a message.")  # fmt: skip

    def t_ask(self, question: str) -> str:
        if not isinstance(question, str) or not question.strip():
            raise ToolError("the question is empty")
        return "\n\n".join(b["text"] for b in self._andon(question.strip()))


# --- helpers ---


def _text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def _block(b: Any) -> dict[str, Any]:
    """An SDK content block as the plain dict the next request carries back."""
    if b.type == "text":
        return {"type": "text", "text": b.text}
    if b.type == "tool_use":
        return {"type": "tool_use", "id": b.id, "name": b.name, "input": dict(b.input or {})}
    return b.model_dump(exclude_none=True)


def _with_cache_mark(convo: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation with one cache breakpoint on its last block: each turn re-reads the rest cheaply."""
    msgs = list(convo)
    last = dict(msgs[-1])
    blocks = [dict(b) for b in last["content"]]
    blocks[-1]["cache_control"] = {"type": "ephemeral"}
    last["content"] = blocks
    msgs[-1] = last
    return msgs


def _verdict(m: Message) -> str | None:
    for kind in ("merged", "red", "conflict"):
        if m.kind == kind or m.body.startswith(f"[fac] {kind.upper()}"):
            return kind
    return None


def _api_message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return f"{err.get('type', 'error')}: {err['message']}"
    return str(getattr(e, "message", e))


def _retry_after(e: Any) -> float | None:
    try:
        value = e.response.headers.get("retry-after")
        return max(0.0, float(value)) if value is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


def _flush_tty() -> None:
    """Drop what tmux pasted into this pane's input: the agent reads the inbox, not its terminal."""
    try:
        import termios

        if sys.stdin.isatty():
            termios.tcflush(sys.stdin.fileno(), termios.TCIFLUSH)
    except (ImportError, OSError, ValueError):
        pass


def _quiet_tty() -> None:
    """No echo: pasted messages would interleave with the transcript (which prints them itself)."""
    try:
        import termios

        if sys.stdin.isatty():
            fd = sys.stdin.fileno()
            attrs = termios.tcgetattr(fd)
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except (ImportError, OSError, ValueError):
        pass


def main(worker: str) -> int:
    """`fac agent run`: the process in an anthropic worker's pane."""
    fac = Factory.find()
    _quiet_tty()
    return Agent(fac, worker).run()
