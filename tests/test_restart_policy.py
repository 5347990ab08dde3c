"""The supervisor's restart policy (restart_policy.decide): pure, table-driven, no tmux, milliseconds."""

from __future__ import annotations

import pytest

from supervisor.restart_policy import Action, Decision, decide

DELAYS = (0.0, 5.0, 15.0, 60.0)  # the defaults of [supervisor] restart_delays
NOW = 10_000.0


def policy(
    crashes: list[float],
    now: float = NOW,
    *,
    delays: tuple[float, ...] = DELAYS,
    loop: int = 4,
    window: float = 900.0,
) -> Decision:
    return decide(crashes, now, restart_delays=delays, crash_loop=loop, crash_window=window)


@pytest.mark.parametrize(
    ("earlier", "action", "delay"),
    [
        ([], Action.RESTART_NOW, 0.0),  # the first crash: restart_delays[0]
        ([NOW - 10], Action.RESTART_LATER, 5.0),  # the second: the next step
        ([NOW - 20, NOW - 10], Action.RESTART_LATER, 15.0),
        ([NOW - 30, NOW - 20, NOW - 10], Action.GIVE_UP, 0.0),  # the fourth within the window: a loop
    ],
)
def test_each_crash_within_the_window_waits_the_next_backoff_step_until_it_is_a_loop(
    earlier: list[float], action: Action, delay: float
) -> None:
    d = policy(earlier)
    assert d.action is action
    assert d.delay == delay
    assert d.crashes == (*earlier, NOW)


@pytest.mark.parametrize(
    ("n_earlier", "delay"),
    [(0, 1.0), (1, 2.0), (2, 2.0), (5, 2.0), (20, 2.0)],
)
def test_the_last_backoff_step_repeats_once_the_steps_run_out(n_earlier: int, delay: float) -> None:
    d = policy([NOW - 1 - i for i in range(n_earlier)], delays=(1.0, 2.0), loop=100)
    assert (d.action, d.delay) == (Action.RESTART_LATER, delay)
    assert d.restart_at == NOW + delay


@pytest.mark.parametrize(
    ("earlier", "kept"),
    [
        ([NOW - 900.0], ()),  # exactly the window's length ago: out (the window is open at its far end)
        ([NOW - 899.9], (NOW - 899.9,)),
        ([NOW - 5000, NOW - 3000, NOW - 1000], ()),  # a slow crasher never becomes a loop
        ([NOW - 2000, NOW - 1000, NOW - 100, NOW - 50], (NOW - 100, NOW - 50)),
    ],
)
def test_crashes_older_than_the_window_are_forgotten(earlier: list[float], kept: tuple[float, ...]) -> None:
    d = policy(earlier)
    assert d.crashes == (*kept, NOW)
    assert d.action is not Action.GIVE_UP
    assert d.delay == DELAYS[len(kept)]


@pytest.mark.parametrize(
    ("loop", "n_earlier", "action"),
    [
        (1, 0, Action.GIVE_UP),  # crash_loop = 1: the first crash already needs a human
        (2, 0, Action.RESTART_NOW),
        (2, 1, Action.GIVE_UP),
        (3, 1, Action.RESTART_LATER),
        (3, 2, Action.GIVE_UP),
        (3, 7, Action.GIVE_UP),  # more crashes than the loop size (a human restarted it): still a loop
    ],
)
def test_crash_loop_counts_this_crash_too(loop: int, n_earlier: int, action: Action) -> None:
    d = policy([NOW - 1 - i for i in range(n_earlier)], loop=loop)
    assert d.action is action
    if action is Action.GIVE_UP:
        assert d.restart_at is None


def test_a_zero_delay_restarts_now_and_a_positive_one_later() -> None:
    assert policy([], delays=(0.0,)).action is Action.RESTART_NOW
    assert policy([], delays=(0.0,)).restart_at == NOW
    assert policy([], delays=(0.5,)).action is Action.RESTART_LATER
    assert policy([NOW - 1], delays=(0.0,), loop=10).action is Action.RESTART_NOW


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (127, Action.CANNOT_RUN),  # command not found: the same command fails the same way
        (126, Action.CANNOT_RUN),  # not executable
        (1, Action.RESTART_NOW),
        (7, Action.RESTART_NOW),
        (None, Action.RESTART_NOW),  # killed by a signal, or not known
    ],
)
def test_a_program_that_cannot_run_is_not_restarted_even_once(status: int | None, action: Action) -> None:
    d = decide([], NOW, restart_delays=DELAYS, crash_loop=4, crash_window=900.0, exit_status=status)
    assert d.action is action
    assert (d.restart_at is None) is (action is Action.CANNOT_RUN)
