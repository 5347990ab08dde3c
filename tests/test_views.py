"""Pure view helpers: the dashboard's verdict cell and the shared formats of shas and times."""

from __future__ import annotations

import pytest

from supervisor.dashboard import verdict_cell


@pytest.mark.parametrize(
    ("state", "verdict", "cell"),
    [
        ("red", "red: tests", "red: tests"),
        ("red", "guard: tests", "red: guard: tests"),
        ("held", "held: a new test file", "held: a new test file"),
        ("merged", "green", "merged: green"),
        ("merged", "green (flaky: t)", "merged: green (flaky: t)"),
        ("conflict", "conflict: README.md", "conflict: README.md"),
        ("queued", "", "queued"),
        ("red", "redo: x", "red: redo: x"),
    ],
)
def test_the_verdict_cell_never_repeats_the_state(state: str, verdict: str, cell: str) -> None:
    assert verdict_cell(state, verdict) == cell
