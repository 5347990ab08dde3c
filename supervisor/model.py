"""fac's vocabulary: the states of its records, the one rule per record for changing them, and plain records.

Nothing here runs git, tmux or SQL, and it imports nothing of fac but `errors`: every layer may use it.
The store applies these rules on every state write, so a state changes in one place only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from supervisor.errors import FacError

# --- states and transitions -------------------------------------------------------------------

WorkerState = Literal[
    "starting",  # spawn is creating it
    "working",
    "idle",  # its runtime says it stopped and waits for input
    "waiting-for-human",  # a permission prompt or a dialog only a human can answer is open in its pane
    "waiting-for-check",  # `fac check` runs for it
    "needs-human",  # andon: an open question
    "queued",  # its branch waits in the merge queue
    "red",
    "conflict",
    "merged",
    "done",  # its process exited 0 after its work merged
    "exited",  # its process exited 0 with its work not merged (nothing submitted, or red)
    "crashed",
    "stopped",
]
WORKER_STATES: tuple[WorkerState, ...] = get_args(WorkerState)

# Who asks for a worker's state change; the rule depends on it.
WorkerCause = Literal[
    "fac",  # the trusted side decides (spawn, the queue, the supervisor, andon, kill): always applies
    "runtime",  # a runtime's hook reports what the agent does
    "prompt",  # a runtime's hook reports a new prompt: the agent works on a new instruction
    "check",  # `fac check` starts for the worker
    "check-done",  # `fac check` ended: the state it had before comes back
    "liveness",  # the supervisor saw the process end, or restarts it: never over a stopped worker
]

# States that a runtime's hooks never overwrite: the queue or andon set them (the agent keeps
# running after it submits or asks, but the worker still waits for that answer), or its work merged.
# Only a new prompt (the agent works on a new instruction) or the trusted side moves it on.
HELD_AGAINST_RUNTIME: frozenset[WorkerState] = frozenset(
    {"needs-human", "red", "conflict", "queued", "merged"}
)


def worker_transition(old: WorkerState, new: WorkerState, by: WorkerCause) -> bool:
    """May a worker in state `old` change to `new` at the request of `by`?"""
    if by == "runtime":
        return old not in HELD_AGAINST_RUNTIME
    if by == "liveness":
        # `fac kill` marks the worker stopped before its window goes; a supervisor pass that saw the
        # window vanish must not call that a crash and start the agent again.
        return old != "stopped"
    if by == "check-done":
        # Only undo what `fac check` did: a state set meanwhile (merged, red, ...) stays.
        return old == "waiting-for-check"
    return True


def exit_state(old: WorkerState) -> WorkerState:
    """The state of a worker whose process exited 0: done only when its work merged, else exited."""
    return "done" if old == "merged" else "exited"


EntryState = Literal["queued", "testing", "held", "merged", "red", "conflict", "cancelled", "superseded"]
ENTRY_STATES: tuple[EntryState, ...] = get_args(EntryState)
ENTRY_OPEN: tuple[EntryState, ...] = ("queued", "testing")
ENTRY_FINAL: frozenset[EntryState] = frozenset({"merged", "red", "conflict", "cancelled", "superseded"})

_ENTRY_NEXT: dict[EntryState, frozenset[EntryState]] = {
    "queued": frozenset({"testing", "held", "merged", "red", "conflict", "cancelled", "superseded"}),
    # testing -> testing: a batch's entries are tested again while it is bisected
    "testing": frozenset({"testing", "queued", "merged", "red", "conflict", "cancelled"}),
    "held": frozenset({"queued", "cancelled"}),
}


def entry_transition(old: EntryState, new: EntryState) -> bool:
    """May a queue entry in state `old` change to `new`? A decided entry (merged, red, ...) never changes."""
    return new in _ENTRY_NEXT.get(old, frozenset())


DeltaState = Literal["proposed", "approved", "in-progress", "merged", "done", "rejected"]
DELTA_STATES: tuple[DeltaState, ...] = get_args(DeltaState)
DELTA_ORDER: dict[DeltaState, int] = {s: i for i, s in enumerate(DELTA_STATES[:5])}


def delta_transition(old: DeltaState, new: DeltaState) -> bool:
    """May a delta's stored status go from `old` to `new`? Forward only, and done is final.

    Any delta not done may be rejected, and a rejected row comes back when its file on main says the
    delta is open again (a human re-opened it: the file's status wins over the store's).
    """
    if old == "done":
        return new == "done"
    if new == "rejected" or old == "rejected":
        return True
    return DELTA_ORDER[new] >= DELTA_ORDER[old]


LineState = Literal["running", "stopped"]
LINE_STATES: tuple[LineState, ...] = get_args(LineState)


def line_transition(old: LineState, new: LineState) -> bool:
    """May the line go from `old` to `new`? Only a real change: stopping a stopped line keeps its reason."""
    return old != new


TaskState = Literal[
    "todo",
    "assigned",  # a worker was spawned for it
    "done",  # its worker's work merged
    "failed",  # its spawn failed (event task-pull-failed); the reason is kept
    "abandoned",  # its worker ended with its work not merged (exited, stopped, removed); the reason is kept
]
TASK_STATES: tuple[TaskState, ...] = get_args(TaskState)
TASK_RETRYABLE: frozenset[TaskState] = frozenset({"failed", "abandoned"})

_TASK_NEXT: dict[TaskState, frozenset[TaskState]] = {
    "todo": frozenset({"assigned", "failed"}),  # a task is pulled once
    "assigned": frozenset({"done", "abandoned"}),
    "failed": frozenset({"todo"}),  # `fac task retry`
    "abandoned": frozenset({"todo"}),  # `fac task retry`
}


def task_transition(old: TaskState, new: TaskState) -> bool:
    """May a task go from `old` to `new`? Pulled once; it ends done or abandoned; a human retries."""
    return new in _TASK_NEXT.get(old, frozenset())


def task_removable(state: TaskState) -> bool:
    """May `fac task rm` delete a task? Not while a worker works on it (kill the worker first)."""
    return state != "assigned"


class TransitionError(FacError):
    """A state change that the record's transition function refuses."""

    def __init__(self, record: str, old: str, new: str) -> None:
        super().__init__(
            f"{record} cannot go from {old} to {new}",
            hint="this is a bug in fac: please report it with `fac log`",
        )
        self.record, self.old, self.new = record, old, new


# --- records ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Worker:
    name: str
    role: str
    runtime: str
    branch: str
    worktree: str
    state: WorkerState
    task: str | None
    delta: str | None
    command: str | None
    window_id: str | None
    pane_id: str | None
    created_at: float
    updated_at: float
    restarts: int = 0
    crashes: str = "[]"  # JSON list of crash times, newest last
    next_restart: float | None = None
    question: str | None = None  # an open andon question
    red_streak: int = 0
    session_id: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0


@dataclass(frozen=True)
class QueueEntry:
    id: int
    worker: str
    branch: str
    sha: str
    delta: str | None
    state: EntryState
    attempts: int
    submitted_at: float
    updated_at: float
    verdict: dict[str, Any] | None
    merged_as: str | None
    testing_since: float | None = None  # when its candidate last went under test
    running: tuple[str, ...] = ()  # the checks of that candidate running now


@dataclass(frozen=True)
class Message:
    id: int
    worker: str
    ts: float
    sender: str
    kind: str
    body: str
    delivered_at: float | None
    read_at: float | None
    acked_at: float | None = None
    attempts: int = 0
    claimed_by: str | None = None  # the deliverer pasting it right now
    claimed_at: float | None = None
    via: str | None = None  # how it reached the agent: paste, hook:stop, hook:prompt, ..., inbox


@dataclass(frozen=True)
class Event:
    id: int
    ts: float
    kind: str
    worker: str | None
    correlation: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Line:
    state: LineState
    reason: str | None
    since: float
    main_sha: str | None

    @property
    def stopped(self) -> bool:
        return self.state == "stopped"

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "since": self.since, "main_sha": self.main_sha}


@dataclass(frozen=True)
class Task:
    id: int
    text: str
    role: str
    delta: str | None
    runtime: str | None
    command: str | None
    state: TaskState
    worker: str | None
    created_at: float
    updated_at: float
    reason: str | None = None  # why it failed or was abandoned


# --- the runtime registry ---
# Runtimes are found by name here, so lower layers (messages, roles, the CLI's choices) learn what
# a runtime is like without importing `supervisor.runtimes`; `runtimes.get(name)` loads the module.


# How messages reach a runtime's agent (supervisor/delivery.py decides when): `# ` comment lines
# pasted into its pane, its hooks (and a pasted prompt while it sits at its prompt), or its own
# reads of the store.
DeliveryChannel = Literal["comment", "hooks", "inbox"]


@dataclass(frozen=True)
class RuntimeSpec:
    """A runtime's name, where its code lives, and the traits fac needs without loading it."""

    name: str
    module: str  # imported by runtimes.get(name)
    cls: str  # the class in `module` that implements runtimes.Runtime
    # How a message reaches the pane: False pastes `# ` comment lines (safe even at a shell prompt);
    # True pastes plain text and presses Enter (an agent's prompt box, where `#` means something).
    paste_plain: bool
    description: str
    # Why this runtime's panes cannot run in the agents' sandbox yet ("" when they can): they run
    # plainly, and `fac status` says so for each of its workers.
    unconfined: str = ""
    channel: DeliveryChannel = "comment"
    # Whether its agent reports its own start (a hook saying "working"): a restarted one stays
    # `starting` until it does; one that cannot is `working` as soon as its process runs again.
    reports_start: bool = False


RUNTIMES: dict[str, RuntimeSpec] = {
    spec.name: spec
    for spec in (
        RuntimeSpec(
            "command",
            "supervisor.runtimes.command",
            "CommandRuntime",
            paste_plain=False,
            description="any command line in the pane (scripted agents, tests, fac demo)",
        ),
        RuntimeSpec(
            "claude",
            "supervisor.runtimes.claude",
            "ClaudeRuntime",
            paste_plain=True,  # Claude Code reads a leading # as "remember this"
            description="Claude Code, reporting its state through hooks",
            channel="hooks",
            reports_start=True,
        ),
        RuntimeSpec(
            "anthropic",
            "supervisor.runtimes.anthropic",
            "AnthropicRuntime",
            paste_plain=False,
            description="fac's built-in agent on the Messages API",
            channel="inbox",  # it reads its inbox between model calls
            reports_start=True,
        ),
    )
}
RUNTIME_NAMES: tuple[str, ...] = tuple(RUNTIMES)


def unconfined_runtime(runtime: str) -> str:
    """Why runtime `runtime` runs outside the agents' sandbox ("" when it runs inside)."""
    spec = RUNTIMES.get(runtime)
    return spec.unconfined if spec is not None else ""


def runtime_spec(runtime: str) -> RuntimeSpec:
    """The registry's entry for `runtime`; an unknown one is treated as a command line."""
    return RUNTIMES.get(runtime) or RUNTIMES["command"]


def paste_plain(runtime: str) -> bool:
    """Whether runtime `runtime` takes messages as plain prompts (an unknown one gets comments)."""
    spec = RUNTIMES.get(runtime)
    return spec is not None and spec.paste_plain


# A worker's task reaches its pane as $FAC_TASK through tmux, whose whole command (every variable of
# the pane's environment included) must fit one of its messages (16 KiB): a larger task would fail
# only when the worker's window starts ("command too long"), or when the supervisor pulls the task.
MAX_TASK_BYTES = 8000


def check_task_size(task: str) -> None:
    """Refuse a task too large for a pane's environment, with what to do instead."""
    size = len(task.encode("utf-8", "surrogateescape"))
    if size > MAX_TASK_BYTES:
        raise FacError(
            f"the task is {size} bytes; a worker's task ($FAC_TASK) holds at most {MAX_TASK_BYTES}",
            hint="keep the task short and put the details in a file in the repository "
            "(e.g. docs/tasks/NAME.md), naming that file in the task",
        )
