"""The speculative pipeline's decisions (queue/speculation.py): table tests, no git, no checks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from supervisor.queue import planner
from supervisor.queue.speculation import (
    Narrowed,
    Running,
    Starts,
    cuts,
    hedge_now,
    narrow,
    retries_now,
    split,
    starts,
    typical_run,
)

BUSY = Running(size=1, elapsed=0.1)  # a candidate under test for 0.1 s


@pytest.mark.parametrize(
    ("n", "parts", "want"),
    [
        (1, 1, (1,)),
        (1, 4, (1,)),  # never an empty chunk
        (4, 2, (2, 2)),
        (5, 2, (3, 2)),  # the larger chunk first: the oldest entries
        (7, 3, (3, 2, 2)),
        (3, 0, (3,)),
    ],
)
def test_split_spreads_entries_evenly_oldest_chunks_larger(n: int, parts: int, want: tuple[int, ...]) -> None:
    assert split(n, parts) == want
    assert sum(want) == n


@pytest.mark.parametrize(
    ("waiting", "running", "slots", "max_batch", "typical", "want"),
    [
        # nothing waiting: nothing starts
        (0, [], 4, 16, None, Starts()),
        # idle: start at once, spread over the free slots
        (1, [], 4, 16, None, Starts(sizes=(1,))),
        (4, [], 2, 16, None, Starts(sizes=(2, 2))),
        (8, [], 4, 16, None, Starts(sizes=(2, 2, 2, 2))),
        # a free slot while another candidate is under test: the newcomers start on top of it
        (3, [BUSY], 2, 16, None, Starts(sizes=(3,))),
        (3, [BUSY], 4, 16, None, Starts(sizes=(1, 1, 1))),
        # more than the free slots hold: max_batch per candidate, the rest waits
        (40, [], 2, 16, None, Starts(sizes=(16, 16))),
        (40, [BUSY], 2, 16, None, Starts(sizes=(16,))),
        # every slot busy: the youngest grows while it is young (unknown typical run: young)
        (3, [BUSY, BUSY], 2, 16, None, Starts(absorb=3)),
        (3, [BUSY, Running(1, 0.4)], 2, 16, 1.0, Starts(absorb=3)),
        # ... not once it has run for half a typical gate run: the newcomers wait for a slot
        (3, [BUSY, Running(1, 0.5)], 2, 16, 1.0, Starts()),
        (3, [BUSY, Running(1, 0.9)], 2, 16, 1.0, Starts()),
        # ... not when its run has ended (its verdict is in)
        (3, [BUSY, Running(1, None)], 2, 16, None, Starts()),
        # ... only up to max_batch
        (5, [BUSY, Running(14, 0.1)], 2, 16, None, Starts(absorb=2)),
        (5, [BUSY, Running(16, 0.1)], 2, 16, None, Starts()),
        # one slot, busy: the only candidate builds on main, so it is never restarted
        (3, [BUSY], 1, 16, None, Starts()),
    ],
)
def test_starts_spread_over_free_slots_and_grow_the_youngest_when_all_are_busy(
    waiting: int,
    running: list[Running],
    slots: int,
    max_batch: int,
    typical: float | None,
    want: Starts,
) -> None:
    got = starts(waiting, running, slots, max_batch, typical)
    assert got == want
    assert got.taken <= waiting
    assert len(running) + len(got.sizes) <= slots


@pytest.mark.parametrize(
    ("waiting", "running", "slots", "max_batch", "want"),
    [
        # nothing red lately: everything waiting in one candidate, the free slots stay free
        (4, [], 2, 16, Starts(sizes=(4,))),
        (8, [], 4, 16, Starts(sizes=(8,))),
        (3, [BUSY], 4, 16, Starts(sizes=(3,))),
        # more than max_batch: as few candidates as hold them, as even as can be
        (20, [], 4, 16, Starts(sizes=(10, 10))),
        (40, [], 2, 16, Starts(sizes=(16, 16))),
        (5, [], 4, 2, Starts(sizes=(2, 2, 1))),
        # every slot busy: the same growth as with the hedge
        (3, [BUSY, BUSY], 2, 16, Starts(absorb=3)),
        (0, [], 2, 16, Starts()),
    ],
)
def test_without_a_hedge_waiting_entries_go_in_as_few_candidates_as_hold_them(
    waiting: int, running: list[Running], slots: int, max_batch: int, want: Starts
) -> None:
    got = starts(waiting, running, slots, max_batch, None, hedge=False)
    assert got == want
    assert got.taken <= waiting and len(running) + len(got.sizes) <= slots


@pytest.mark.parametrize(
    ("recent", "want"),
    [
        ([], False),  # a new factory: nothing failed
        ([False] * 40, False),
        ([True], True),
        ([False] * 15 + [True], True),  # the 16th newest still counts
        ([False] * 16 + [True], False),  # older ones do not
    ],
)
def test_the_queue_hedges_over_free_slots_while_a_recent_verdict_is_red(
    recent: list[bool], want: bool
) -> None:
    assert hedge_now(recent) is want


@pytest.mark.parametrize(
    ("durations", "want"),
    [([], None), ([2.0], 2.0), ([1.0, 3.0, 2.0], 2.0), ([9.0] * 3 + [1.0] * 9, 1.0)],
)
def test_typical_run_is_the_median_of_the_latest_runs(durations: list[float], want: float | None) -> None:
    assert typical_run(durations) == want


@pytest.mark.parametrize(
    ("lo", "hi", "probes", "want"),
    [
        (0, 1, 4, ()),  # one entry left: no prefix to probe, the search ends on it
        (0, 2, 1, (1,)),
        (0, 8, 1, (4,)),  # one probe: the binary search's midpoint
        (0, 9, 2, (3, 6)),
        (0, 16, 3, (4, 8, 12)),
        (0, 4, 8, (1, 2, 3)),  # never more probes than prefixes
        (5, 7, 4, (6,)),
        (3, 10, 2, (5, 7)),
    ],
)
def test_cuts_spread_the_probes_evenly_inside_the_red_range(
    lo: int, hi: int, probes: int, want: tuple[int, ...]
) -> None:
    got = cuts(lo, hi, probes)
    assert got == want
    assert all(lo < e < hi for e in got)
    assert list(got) == sorted(set(got))


@pytest.mark.parametrize(
    ("lo", "hi", "ends", "green", "want"),
    [
        # all green: the longest lands, the culprit is after it
        (0, 9, [3, 6], [True, True], Narrowed(6, 6, 9)),
        # the first red bounds the range; the green before it lands
        (0, 9, [3, 6], [True, False], Narrowed(3, 3, 6)),
        # all red: nothing lands, the culprit is in the first part
        (0, 9, [3, 6], [False, False], Narrowed(None, 0, 3)),
        # a green after a red (a flaky or interacting pair) is ignored: main moves in order
        (0, 9, [3, 6], [False, True], Narrowed(None, 0, 3)),
        (2, 10, [4, 6, 8], [True, False, True], Narrowed(4, 4, 6)),
        # one probe: exactly planner.Search's step
        (0, 8, [4], [True], Narrowed(4, 4, 8)),
        (0, 8, [4], [False], Narrowed(None, 0, 4)),
    ],
)
def test_narrow_lands_the_longest_green_prefix_before_the_first_red(
    lo: int, hi: int, ends: list[int], green: list[bool], want: Narrowed
) -> None:
    assert narrow(lo, hi, ends, green) == want


@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 16])
@pytest.mark.parametrize("culprit_at", [0, 1, 4, 7, 12, 15])
@pytest.mark.parametrize("probes", [1, 2, 4])
def test_the_probe_search_finds_the_first_culprit(n: int, culprit_at: int, probes: int) -> None:
    culprit = min(culprit_at, n - 1)
    lo, hi, rounds = 0, n, 0
    while ends := cuts(lo, hi, probes):
        step = narrow(lo, hi, ends, [end <= culprit for end in ends])  # green: the prefix lacks it
        lo, hi, rounds = step.lo, step.hi, rounds + 1
    assert (lo, hi) == (culprit, culprit + 1)
    # P probes at a time cut the range (P+1)-fold per round
    width, bound = n, 0
    while width > 1:
        width, bound = -(-width // (probes + 1)), bound + 1
    assert rounds <= bound


def test_one_probe_searches_exactly_like_the_binary_search() -> None:
    for n in range(2, 17):
        for culprit in range(n):
            search = planner.Search.over(n)
            lo, hi = 0, n
            while not (p := search.probe()).last:
                [end] = cuts(lo, hi, 1)
                assert (p.lo, p.hi) == (lo, end)
                green = end <= culprit
                step = narrow(lo, hi, [end], [green])
                search = search.after(green)
                lo, hi = step.lo, step.hi
                assert (search.lo, search.hi) == (lo, hi)
            assert (p.lo, p.hi) == (lo, hi) == (culprit, culprit + 1)


@pytest.mark.parametrize(
    ("retries", "reruns", "slots", "retryable", "want"),
    [
        (1, [], 1, True, 1),
        (3, [], 1, True, 1),  # one slot: one at a time
        (3, [], 2, True, 2),  # several at once, up to the slots
        (3, [], 8, True, 3),
        (3, [False, False], 4, True, 1),  # what is left
        (3, [False, False, False], 4, True, planner.Alone.BLAME),
        (3, [False, True], 4, True, planner.Alone.FLAKY),  # any pass: flaky
        (3, [True, False], 4, True, planner.Alone.FLAKY),
        (0, [], 4, True, planner.Alone.BLAME),
        (3, [], 4, False, planner.Alone.BLAME),  # not retryable: blamed at once
    ],
)
def test_retries_now_runs_reruns_at_once_then_flaky_or_blame(
    retries: int, reruns: list[bool], slots: int, retryable: bool, want: int | planner.Alone
) -> None:
    assert retries_now(retries, reruns, slots, retryable=retryable) == want


@pytest.mark.parametrize("retries", [0, 1, 2, 3])
@pytest.mark.parametrize(
    "outcomes", [[False] * 4, [True] * 4, [False, True, False, False], [False, False, True, True]]
)
@pytest.mark.parametrize("retryable", [True, False])
def test_with_one_slot_retries_equal_todays_retry_or_blame(
    retries: int, outcomes: list[bool], retryable: bool
) -> None:
    def drive(next_step: Callable[[list[bool]], object]) -> tuple[object, list[bool]]:
        reruns: list[bool] = []
        while not isinstance(step := next_step(reruns), planner.Alone):
            reruns.append(outcomes[len(reruns)])
        return step, reruns

    today = drive(lambda r: planner.retry_or_blame(retries, r, retryable=retryable))
    pipeline = drive(lambda r: retries_now(retries, r, 1, retryable=retryable))
    assert pipeline == today
