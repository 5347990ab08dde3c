"""The transition functions: one rule per record, table-driven, no store needed."""

from __future__ import annotations

import itertools

import pytest

from supervisor import model
from supervisor.model import (
    DELTA_STATES,
    ENTRY_FINAL,
    ENTRY_STATES,
    LINE_STATES,
    TASK_STATES,
    WORKER_STATES,
    delta_transition,
    entry_transition,
    line_transition,
    task_transition,
    worker_transition,
)

HELD = ("needs-human", "red", "conflict", "queued", "merged")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("merged", "done"),
        ("working", "exited"),  # it exited without submitting: it used to say done, like a merge
        ("idle", "exited"),
        ("queued", "exited"),  # its verdict is still to come; the queue sets merged or red later
        ("red", "exited"),
        ("conflict", "exited"),
        ("needs-human", "exited"),
    ],
)
def test_a_process_that_exits_0_is_done_only_when_its_work_merged(
    old: model.WorkerState, new: model.WorkerState
) -> None:
    assert model.exit_state(old) == new


@pytest.mark.parametrize(
    ("old", "new", "by", "allowed"),
    [
        # a runtime's hooks never overwrite what the queue or andon set, nor a merge
        *[(old, new, "runtime", False) for old in HELD for new in ("working", "idle", "waiting-for-human")],
        ("queued", "idle", "runtime", False),  # `stop` right after `fac submit`: it still shows queued
        ("merged", "idle", "runtime", False),  # and a merged agent keeps showing merged
        # ... but a new prompt means the agent works on a new instruction
        *[(old, "working", "prompt", True) for old in HELD],
        # what runtimes report otherwise applies
        ("working", "waiting-for-human", "runtime", True),
        ("waiting-for-human", "working", "runtime", True),
        ("idle", "working", "runtime", True),
        ("working", "idle", "runtime", True),
        ("starting", "working", "runtime", True),
        # `fac check` marks the worker, and gives back its state only while nobody changed it
        ("queued", "waiting-for-check", "check", True),
        ("waiting-for-check", "queued", "check-done", True),
        ("merged", "queued", "check-done", False),
        ("red", "idle", "check-done", False),
        ("working", "idle", "check-done", False),
        # the trusted side decides
        ("queued", "merged", "fac", True),
        ("needs-human", "working", "fac", True),
        ("working", "crashed", "fac", True),
        ("crashed", "working", "fac", True),
        ("merged", "stopped", "fac", True),
    ],
)
def test_worker_transitions(
    old: model.WorkerState, new: model.WorkerState, by: model.WorkerCause, allowed: bool
) -> None:
    assert worker_transition(old, new, by) is allowed


def test_fac_may_set_any_worker_state() -> None:
    for old, new in itertools.product(WORKER_STATES, WORKER_STATES):
        assert worker_transition(old, new, "fac")


def test_a_runtime_changes_every_state_but_a_held_one() -> None:
    assert {"queued", "merged", "red", "conflict", "needs-human"} == set(HELD)
    for old, new in itertools.product(WORKER_STATES, WORKER_STATES):
        assert worker_transition(old, new, "runtime") is (old not in HELD)


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        ("queued", "testing", True),
        ("queued", "superseded", True),
        ("queued", "cancelled", True),
        ("queued", "held", True),
        ("queued", "conflict", True),
        ("queued", "red", True),  # a guard
        ("queued", "merged", True),  # already on main
        ("testing", "testing", True),  # bisection tests it again
        ("testing", "queued", True),  # back in line: main moved, or the queue restarted
        ("testing", "merged", True),
        ("testing", "red", True),
        ("held", "queued", True),  # fac approve
        ("held", "testing", False),
        ("queued", "queued", False),
        ("testing", "superseded", False),
    ],
)
def test_entry_transitions(old: model.EntryState, new: model.EntryState, allowed: bool) -> None:
    assert entry_transition(old, new) is allowed


def test_a_decided_entry_is_final() -> None:
    for old in ENTRY_FINAL:
        assert not any(entry_transition(old, new) for new in ENTRY_STATES)


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        ("proposed", "approved", True),
        ("proposed", "in-progress", True),  # a delta approved by hand on main, then spawned
        ("approved", "in-progress", True),
        ("in-progress", "merged", True),
        ("merged", "done", True),
        ("in-progress", "in-progress", True),
        ("in-progress", "approved", False),
        ("merged", "proposed", False),
        ("approved", "rejected", True),
        ("in-progress", "rejected", True),
        ("rejected", "in-progress", True),  # its file on main says it is open again
        ("done", "rejected", False),
        ("done", "merged", False),
        ("done", "done", True),
    ],
)
def test_delta_transitions(old: model.DeltaState, new: model.DeltaState, allowed: bool) -> None:
    assert delta_transition(old, new) is allowed


def test_nothing_leaves_done() -> None:
    assert [new for new in DELTA_STATES if delta_transition("done", new)] == ["done"]


@pytest.mark.parametrize(("old", "new"), list(itertools.product(LINE_STATES, LINE_STATES)))
def test_the_line_changes_only_when_it_changes(old: model.LineState, new: model.LineState) -> None:
    assert line_transition(old, new) is (old != new)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(TASK_STATES, TASK_STATES)))
def test_a_task_is_pulled_once_ends_once_and_only_a_human_retries_it(
    old: model.TaskState, new: model.TaskState
) -> None:
    allowed = {
        ("todo", "assigned"),
        ("todo", "failed"),
        ("assigned", "done"),  # its worker's work merged
        ("assigned", "abandoned"),  # its worker ended with its work not merged
        ("failed", "todo"),  # fac task retry
        ("abandoned", "todo"),  # fac task retry
    }
    assert task_transition(old, new) is ((old, new) in allowed)


def test_an_assigned_task_cannot_be_removed() -> None:
    assert [s for s in TASK_STATES if not model.task_removable(s)] == ["assigned"]


def test_the_model_imports_nothing_of_fac_but_errors() -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(model.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert {m for m in imported if m and m.startswith("supervisor")} <= {"supervisor.errors"}
