"""Who is speaking: a human at a terminal, or an agent, and which commands an agent may run.

Identity comes from the channel, not from the environment. A worker's pane has `FAC_SOCKET` (its
own socket, `.fac/runs/<worker>/fac.sock`, served by the supervisor); `fac` there sends its request
over that socket, and the supervisor runs it with the identity of the socket that accepted the
connection (it sets CHANNEL_ENV for that run; nothing the agent sends can change it).

Without the sandbox this is only as strong as the pane's discipline: a process in a pane can
`unset FAC_SOCKET FAC_WORKER` and open the store itself, and nothing here can tell it from a
human's terminal. The sandbox (sandbox.py: the store and the factory root are out of its reach)
closes that; here a pane with FAC_WORKER or FAC_SOCKET set counts as that agent whether or not its
channel answers, so the human-only commands fail closed in it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from supervisor.errors import FacError

SOCKET_ENV = "FAC_SOCKET"  # in a worker's pane: the path of its channel
CHANNEL_ENV = "FAC_CHANNEL_PEER"  # set by the supervisor only, for a request it serves: who sent it
SOCKET_NAME = "fac.sock"  # in the worker's run directory

HUMAN = "human"
QUEUE = "merge-queue"
SUPERVISOR = "supervisor"
TRUSTED_SENDERS = (HUMAN, QUEUE, SUPERVISOR)


class Caller:
    """The one speaking: `worker` is None for a human.

    A plain class, not a dataclass: every `fac` in a pane imports this module before it relays its
    request, and a human's `fac spawn` before it goes to the spawner; dataclasses (with inspect)
    would add some 20 ms to each.
    """

    __slots__ = ("worker", "channel")

    def __init__(self, worker: str | None, channel: bool = False) -> None:
        self.worker = worker
        self.channel = channel  # the identity was fixed by the supervisor's socket

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Caller):
            return NotImplemented
        return (self.worker, self.channel) == (other.worker, other.channel)

    def __hash__(self) -> int:
        return hash((self.worker, self.channel))

    def __repr__(self) -> str:
        return f"Caller(worker={self.worker!r}, channel={self.channel!r})"

    @property
    def is_agent(self) -> bool:
        return self.worker is not None

    @property
    def sender(self) -> str:
        """The sender a message from this caller carries."""
        return self.worker or HUMAN

    def where(self) -> str:
        if self.channel:
            return f"on worker {self.worker}'s channel"
        return f"in worker {self.worker}'s pane (FAC_WORKER={self.worker})"


def caller(environ: Mapping[str, str] | None = None) -> Caller:
    """Who runs this process: the channel's peer, else the pane's worker, else a human."""
    env = os.environ if environ is None else environ
    peer = env.get(CHANNEL_ENV)
    if peer:
        return Caller(peer, channel=True)
    # Not through the channel: a pane without its socket (the supervisor is down, or FAC_SOCKET was
    # unset). Still that agent, so human-only commands stay refused; see the module's docstring.
    worker = env.get("FAC_WORKER")
    if worker:
        return Caller(worker)
    if env.get(SOCKET_ENV):
        return Caller(os.path.basename(os.path.dirname(env[SOCKET_ENV])) or "?")
    return Caller(None)


def relay_socket(environ: Mapping[str, str] | None = None) -> str | None:
    """The socket this process must send its request through, or None to run it here."""
    env = os.environ if environ is None else environ
    if env.get(CHANNEL_ENV):  # already the supervisor's run of a channel request
        return None
    return env.get(SOCKET_ENV) or None


# Kinds only one sender may write: a verdict is the queue's, an answer a human's, a line notice the
# supervisor's. A worker's message is a note, whatever its text says.
SENDER_OF = {
    "merged": QUEUE,
    "red": QUEUE,
    "conflict": QUEUE,
    "held": QUEUE,
    "answer": HUMAN,
    "line": SUPERVISOR,
}


def may_send(sender: str, kind: str) -> str | None:
    """Why `sender` may not write a message of `kind`, or None when it may."""
    owner = SENDER_OF.get(kind)
    if owner is not None and sender != owner:
        return f"a {kind} message comes only from {owner}, not from {sender}"
    if sender not in TRUSTED_SENDERS and kind != "note":
        return f"a worker ({sender}) sends notes only, not {kind}"
    return None


def is_verdict(sender: str, kind: str) -> bool:
    """A real verdict of the merge queue: by who sent it, never by what its text says."""
    return sender == QUEUE and SENDER_OF.get(kind) == QUEUE


HUMAN_ONLY = "a human runs it in a terminal outside the workers' panes"

# What an agent may run, by command path (("delta", "new") is `fac delta new`); a group alone runs
# its default (a listing). Everything else is refused: the list names what is allowed, not what is not.
AGENT_COMMANDS = frozenset(
    {
        (),
        ("submit",),
        ("check",),
        ("inbox",),
        ("ask",),
        ("hook",),
        ("context",),
        ("send",),
        ("delta",),
        ("delta", "new"),
        ("delta", "ls"),
        ("delta", "show"),
        ("status",),
        ("queue",),
        ("queue", "wait"),
        ("log",),
        ("line",),
        ("spec",),
        ("spec", "lint"),
        ("state",),
        ("config",),
        ("roles",),
        ("roles", "ls"),
        ("report",),
        ("task",),
        ("task", "ls"),
        ("env",),
        ("llm-review",),  # a judgment check, run by `fac check`
        # the built-in agent's own records, for its own worker only (supervisor/usage.py)
        ("agent", "self"),
        ("agent", "usage"),
        ("agent", "event"),
        ("agent", "stop"),
    }
)

REASONS = {
    ("approve",): "approval is the human gate",
    ("answer",): "an andon question is answered by a human (an agent asks with `fac ask`)",
    ("delta", "approve"): "agents may propose deltas (`fac delta new`) but not approve them",
    ("delta", "reject"): "agents may propose deltas (`fac delta new`) but not reject them",
    ("line", "resume"): "restarting a stopped line is a human's decision",
    ("kill",): "stopping a worker is a human's decision",
    ("down",): "stopping the factory is a human's decision",
}


# Run in the pane itself, never through the channel: the built-in agent's loop is the pane's process.
PANE_COMMANDS = frozenset({("agent", "run")})


def refusal(path: tuple[str, ...], *, channel: bool = True) -> str | None:
    """Why an agent may not run the command at `path`, or None when it may."""
    if path in AGENT_COMMANDS or (not channel and path in PANE_COMMANDS):
        return None
    return REASONS.get(path, "it is for humans")


def refuse(path: tuple[str, ...], who: Caller) -> None:
    """Raise (exit 2, one line) when `who` is an agent and the command at `path` is not one of theirs."""
    if not who.is_agent:
        return
    why = refusal(path, channel=who.channel)
    if why:
        raise FacError(f"`fac {' '.join(path)}` is refused {who.where()}: {why}", hint=HUMAN_ONLY)


def require_human(action: str, who: Caller | None = None) -> None:
    """For the library calls behind human-only commands: refuse any agent."""
    who = who or caller()
    if who.is_agent:
        raise FacError(f"agents cannot {action} (refused {who.where()})", hint=HUMAN_ONLY)


def own(requested: str | None, who: Caller | None = None) -> str | None:
    """The worker a command acts for: an agent acts only for itself (--worker OTHER is refused)."""
    who = who or caller()
    if not who.is_agent:
        return requested
    if requested and requested != who.worker:
        raise FacError(
            f"acting for another worker ({requested}) is refused {who.where()}",
            hint="an agent acts only for itself: leave out --worker",
        )
    return who.worker
