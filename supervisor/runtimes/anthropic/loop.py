"""The built-in coding agent behind the `anthropic` runtime: a tool-use loop on the Messages API.

Its tools (tools.py) are exactly read_file, write_file, edit_file, list_dir, run, check, submit and
ask. It prints a readable transcript into its pane, reads its inbox between turns (reading is the
receipt), retries API errors with exponential backoff, records tokens and cost after every turn,
and pulls the andon cord instead of calling the model once `[agents] max_tokens_per_worker` or
`max_turns` is spent. After submit() it waits for the queue's verdict: MERGED ends it (exit 0),
RED or CONFLICT goes back to the model.

It runs in its worker's sandbox like every agent and never opens the store: everything it asks of
the factory goes over its worker's channel (link.py), as `fac` requests whose identity is the
socket's. Waiting for a message is one blocking `fac inbox --wait` request at a time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from supervisor.channel import ChannelDown
from supervisor.errors import EXIT_FAILED, FacError
from supervisor.factory import Factory
from supervisor.identity import HUMAN, SOCKET_ENV, SOCKET_NAME, is_verdict
from supervisor.runtimes.anthropic.client import (
    BACKOFF_MAX,
    MAX_OUTPUT_TOKENS,
    RETRIES,
    agent_env,
    api_message,
    block,
    make_client,
    retry_after,
    settings,
    with_cache_mark,
)
from supervisor.runtimes.anthropic.conversation import Conversation, text
from supervisor.runtimes.anthropic.link import Link, failure
from supervisor.runtimes.anthropic.tools import HOW, TOOLS, Tools
from supervisor.runtimes.anthropic.transcript import Transcript, flush_tty, quiet_tty

WAIT_SLICE = 60.0  # seconds one `fac inbox --wait` request blocks for a message


@dataclass(frozen=True)
class Message:
    """A message of the agent's inbox, as `fac inbox --json` prints it."""

    id: int
    sender: str
    kind: str
    body: str


class Stop(Exception):
    """Ends the loop with an exit code (raised from deep inside waits)."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code
        self.why = why


class Agent:
    """One worker's agent: the loop of model turns, tool calls and inbox reads in its pane."""

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
        socket: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.fac = fac  # for paths and factory.toml only: the store is out of the sandbox's reach
        self.worker = worker
        self.run_dir = fac.run_dir(worker)
        if socket is None:
            socket = Path(os.environ.get(SOCKET_ENV) or self.run_dir / SOCKET_NAME)
        self.link = Link(socket, fac.root)
        me = self._me()
        self.used = int(me["tokens_in"]) + int(me["tokens_out"])  # then kept by each turn's record
        self.queued_at_start = bool(me["submission_open"])
        self.task: str | None = me["task"]
        self.root = Path(me["worktree"])
        self.link.cwd = self.root
        self.base_env = env
        self.env = agent_env(fac, worker, env)
        self.settings = settings(fac, self.env)
        self.client = client if client is not None else make_client(self.settings)
        self.t = Transcript(out or sys.stdout)
        self.backoff = backoff
        self.wait_limit = wait_limit  # seconds to wait for a message before giving up (None: forever)
        self.sleep = sleep
        self.turns = 0
        self.carry: list[dict[str, Any]] = []  # a human's answers, for the next user message
        self.conversation = Conversation(self.run_dir)
        self.tools = Tools(
            fac,
            worker,
            self.task,
            self.root,
            self.run_dir,
            link=self.link,
            run_timeout=lambda: self.settings.run_timeout,
            ask=self._andon,
        )

    # --- the loop ---

    def run(self) -> int:
        try:
            return self._run()
        except Stop as s:
            self.t.say(f"[fac] {s.why}")
            return s.code
        except ChannelDown as e:  # the supervisor restarts the pane; the conversation resumes
            self.t.say(f"[fac] {e.message}; stopping")
            return 1

    def _run(self) -> int:
        s = self.settings
        self.t.say(
            f"fac agent {self.worker}: model {s.model} at {s.base_url or 'the Anthropic API'}, "
            f"budget {s.max_tokens_per_worker:,} tokens, {s.max_turns} turns"
        )
        self.t.say(f'worktree {self.root}; talk to me with: fac send {self.worker} "..."')
        self._report("working")
        convo, pending = self._resume()
        if self.queued_at_start:  # restarted while the queue had its branch: the verdict comes first
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
            content = [block(b) for b in resp.content] or [text("(no answer)")]
            convo.append({"role": "assistant", "content": content})
            self._save(convo)
            for b in content:
                if b["type"] == "text" and b["text"].strip():
                    self.t.who("model", b["text"])
            uses = [b for b in content if b["type"] == "tool_use"]
            if not uses:
                if resp.stop_reason == "max_tokens":
                    pending.append(
                        text("(your answer was cut at the output limit; continue where it stopped)")
                    )
                continue
            submitted = False
            for b in uses:
                self.t.call(b["name"], b.get("input") or {})
                result, error = self.tool(b["name"], b.get("input") or {})
                self.t.result(result, error)
                answer: dict[str, Any] = {"type": "tool_result", "tool_use_id": b["id"], "content": result}
                if error:
                    answer["is_error"] = True
                pending.append(answer)
                submitted = submitted or (b["name"] == "submit" and not error)
            if submitted:
                self._save(convo + [{"role": "user", "content": pending}])
                pending += self._inbox_blocks(self._wait_verdict())

    def _within_limits(self) -> None:
        """Enforce the budget before every call: past it, ask a human instead of calling the model."""
        while True:
            used = self.used
            s = self.settings
            if used >= s.max_tokens_per_worker:
                question = (
                    f"token budget spent: {self.worker} used {used:,} tokens of [agents] "
                    f"max_tokens_per_worker = {s.max_tokens_per_worker:,}. "
                    "Raise it in factory.toml and answer to let it go on "
                    f'(fac answer {self.worker} "..."), or stop it (fac kill {self.worker}).'
                )
            elif self.turns >= s.max_turns:
                question = (
                    f"turn limit reached: {self.worker} called the model {self.turns} times ([agents] "
                    f"max_turns = {s.max_turns}). Answer to give it another {s.max_turns} turns, "
                    f"or stop it (fac kill {self.worker})."
                )
            else:
                return
            self.link.ok("agent", "event", "agent-limit", f"used={used}", f"turns={self.turns}")
            self.carry += self._andon(question)
            self.settings = settings(self.fac, self.env)
            if self.turns >= s.max_turns:
                self.turns = 0
            if self.used >= self.settings.max_tokens_per_worker:
                self.link.ok("agent", "stop", "--reason", "token budget spent")
                raise Stop(0, "the budget is still spent after the answer; stopping (state: stopped)")

    # --- the model ---

    def _call(self, convo: list[dict[str, Any]]) -> Any:
        """One model call with backoff on 429, 5xx and connection errors.

        None after a refusal a human answered."""
        import anthropic

        s = self.settings
        system = [{"type": "text", "text": self._system(), "cache_control": {"type": "ephemeral"}}]
        delay = self.backoff
        for attempt in range(1, RETRIES + 1):
            try:
                return self.client.messages.create(
                    model=s.model,
                    max_tokens=MAX_OUTPUT_TOKENS,
                    system=system,
                    tools=TOOLS,
                    messages=with_cache_mark(convo),
                )
            except anthropic.APIStatusError as e:
                if e.status_code != 429 and e.status_code < 500:
                    self.t.say(f"[api] {e.status_code}: {api_message(e)}")
                    question = (
                        f"the Anthropic API refused {self.worker}'s request: {e.status_code} "
                        f"{api_message(e)}. Fix the key or [agents] settings, then answer to retry."
                    )
                    self.carry += self._andon(question)
                    self.env = agent_env(self.fac, self.worker, self.base_env)  # a human may have fixed it
                    self.settings = settings(self.fac, self.env)
                    self.client = make_client(self.settings)
                    return None
                what, wait = f"{e.status_code} {api_message(e)}", retry_after(e)
            except anthropic.APIConnectionError as e:
                what, wait = f"connection error: {e}", None
            if attempt == RETRIES:
                question = (
                    f"the Anthropic API failed {RETRIES} times in a row for {self.worker} ({what}). "
                    "Answer to retry once it is reachable."
                )
                self.carry += self._andon(question)
                return None
            pause = min(BACKOFF_MAX, wait if wait is not None else delay)
            self.t.say(f"[api] {what}; retry {attempt}/{RETRIES - 1} in {pause:.1f}s")
            self.link.ok("agent", "event", "agent-retry", f"error={what}", f"attempt={attempt}")
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
        """Tokens and cost of one turn, added to the worker's row (one transaction, on the channel)."""
        u = resp.usage
        fresh = int(u.input_tokens or 0)
        written = int(getattr(u, "cache_creation_input_tokens", 0) or 0)
        read = int(getattr(u, "cache_read_input_tokens", 0) or 0)
        out = int(u.output_tokens or 0)
        s = self.settings
        # Cache writes cost 1.25x and cache reads 0.1x the input price.
        cost = ((fresh + 1.25 * written + 0.1 * read) * s.price_in + out * s.price_out) / 1e6
        tokens_in = fresh + written + read
        argv = ["agent", "usage", f"--turn={self.turns}", f"--tokens-in={tokens_in}", f"--tokens-out={out}"]
        argv += [f"--cost={cost!r}", f"--stop-reason={resp.stop_reason or ''}"]
        try:
            totals = self.link.json(*argv)
        except FacError as e:
            raise Stop(1, f"cannot record the turn's usage ({e.message}); stopping") from None
        total_in, total_out, total_cost = totals["tokens_in"], totals["tokens_out"], totals["cost"]
        self.used = int(total_in) + int(total_out)  # only this agent's turns add to its usage
        self.t.say(
            self.t.dim(
                f"[turn {self.turns}: {tokens_in:,} in + {out:,} out; total {total_in + total_out:,} "
                f"of {s.max_tokens_per_worker:,} tokens, ${total_cost:.4f}]"
            )
        )

    # --- the inbox ---

    def _me(self) -> dict[str, Any]:
        """The agent's own worker, as `fac agent self` prints it."""
        try:
            me: dict[str, Any] = self.link.json("agent", "self")
        except FacError as e:
            raise FacError(e.message, hint="the anthropic runtime runs inside a spawned worker") from None
        return me

    def _read_inbox(self, wait: float | None = None) -> list[Message]:
        """Unread messages, marked read and acknowledged (the agent saw them; nothing pastes them again):
        `fac inbox` on the channel, blocking up to `wait` seconds for one when given."""
        argv = ["inbox", "--json"] + ([f"--wait={wait:g}"] if wait is not None else [])
        reply = self.link.call(*argv)
        if reply.code == EXIT_FAILED and wait is not None:
            return []  # nothing came within the wait
        if reply.code != 0:
            raise Stop(1, f"cannot read the inbox ({failure(reply).message}); stopping")
        msgs = [Message(int(m["id"]), m["sender"], m["kind"], m["body"]) for m in json.loads(reply.out)]
        if not msgs:
            return []
        flush_tty()  # nothing is pasted here (its channel is the inbox); drop what a human typed
        for m in msgs:
            self.t.who(f"[inbox] {m.sender} ({m.kind})", m.body)
        return msgs

    def _wait_inbox(self, what: str) -> list[Message]:
        deadline = None if self.wait_limit is None else time.monotonic() + self.wait_limit
        while True:
            left = WAIT_SLICE if deadline is None else max(0.0, deadline - time.monotonic())
            msgs = self._read_inbox(wait=min(WAIT_SLICE, left))
            if msgs:
                return msgs
            if deadline is not None and time.monotonic() >= deadline:
                raise Stop(1, f"no {what} within {self.wait_limit:g}s; stopping")

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
        return [text(f"[inbox] message {m.id} from {m.sender} ({m.kind}):\n{m.body}") for m in msgs]

    def _andon(self, question: str) -> list[dict[str, Any]]:
        """Pull the cord and wait for the human's answer; returns it (and whatever came with it) as blocks."""
        self.link.ok("ask", "--", question)
        self.t.who("[andon] asked a human", question)
        got: list[Message] = []
        while not any(m.kind == "answer" and m.sender == HUMAN for m in got):
            got += self._wait_inbox("answer")
        return self._inbox_blocks(got)

    def _report(self, event: str) -> None:
        self.link.call("hook", event)  # a report that fails changes nothing the agent does

    # --- the conversation, kept so a restarted agent resumes it ---

    def _resume(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        r = self.conversation.resume(self.task)
        if r.resumed:
            self.turns = r.turns
            self.t.say(f"[fac] resumed the conversation ({self.turns} turns so far)")
        return r.convo, r.pending

    def _save(self, convo: list[dict[str, Any]]) -> None:
        self.conversation.save(convo)

    # --- the tools ---

    def tool(self, name: str, args: dict[str, Any]) -> tuple[str, bool]:
        """Run one tool call; (result text, is_error)."""
        return self.tools.call(name, args)


def _verdict(m: Message) -> str | None:
    """The queue's verdict a message carries: by its sender and kind, never by its text (a peer can
    write "[fac] MERGED" in a note; it stays a note from that peer)."""
    if is_verdict(m.sender, m.kind) and m.kind in ("merged", "red", "conflict"):
        return m.kind
    return None


def main(worker: str) -> int:
    """`fac agent run`: the process in an anthropic worker's pane."""
    fac = Factory.find()
    quiet_tty()
    return Agent(fac, worker).run()
