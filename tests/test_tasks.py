"""How an assigned task ends, decided from its worker's state (a pure function, table-tested)."""

from __future__ import annotations

import pytest

from supervisor import model, tasks


@pytest.mark.parametrize(
    ("worker", "submitted", "expected"),
    [
        ("merged", False, ("done", None)),
        ("done", False, ("done", None)),
        ("exited", False, ("abandoned", "its worker w1 exited without its work merged")),
        ("exited", True, None),  # it submitted and exited: the verdict is still to come
        ("stopped", False, ("abandoned", "its worker w1 was stopped before its work merged")),
        (None, False, ("abandoned", "its worker w1 was removed before its work merged")),
        ("working", False, None),
        ("queued", True, None),
        ("red", False, None),  # the agent still runs and may fix it
        ("crashed", False, None),  # the supervisor restarts it
        ("needs-human", False, None),  # a human is asked
    ],
)
def test_an_assigned_task_ends_when_its_worker_is_done_with_it(
    worker: model.WorkerState | None, submitted: bool, expected: tuple[str, str | None] | None
) -> None:
    assert tasks.outcome(worker, "w1", submitted) == expected


def test_every_worker_state_that_ends_a_task_ends_it_in_a_task_state() -> None:
    for state in (*model.WORKER_STATES, None):
        result = tasks.outcome(state, "w1", False)
        assert result is None or result[0] in model.TASK_STATES
