"""The queue's pure planner, table-driven, in milliseconds: no git, no tmux, no checks.

A small model of the world stands in for git and the gate: entries are numbers, a candidate's tree
is the set of entries in main plus the candidate's (merges are clean, so the tree does not depend
on the order they merged in), a tree is red when it holds a culprit, and the gate's cache answers
a tree it has judged before. The planner drives the search as the runner does, and is compared run
for run with a transcription of the algorithm as it was before the planner existed.
"""

from __future__ import annotations

import ast
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from supervisor.queue import planner
from supervisor.queue.planner import After, Alone, Probe, Retry, Search


@pytest.fixture(autouse=True)
def _hermetic_env() -> None:
    """Overrides conftest's: pure functions need no isolated environment and no tmux server to stop."""


@dataclass
class World:
    culprits: frozenset[int]
    noise: frozenset[int] = frozenset()  # real runs (1-based) that come back red although green: flaky
    main: list[int] = field(default_factory=list)
    cache: dict[frozenset[int], bool] = field(default_factory=dict)
    runs: int = 0
    hits: int = 0
    flaky: int = 0
    blamed: list[int] = field(default_factory=list)
    log: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)

    def test(self, entries: list[int], *, fresh: bool = False) -> bool:
        tree = frozenset(self.main) | frozenset(entries)
        if not fresh and tree in self.cache:
            self.hits += 1
            self.log.append(("hit", tuple(entries)))
            return self.cache[tree]
        self.runs += 1
        green = not (tree & self.culprits) and self.runs not in self.noise
        self.cache[tree] = green
        self.log.append(("run", tuple(entries)))
        return green

    def land(self, entries: list[int]) -> None:
        self.main.extend(entries)
        self.log.append(("land", tuple(entries)))

    def blame(self, e: int) -> None:
        self.blamed.append(e)
        self.log.append(("blame", (e,)))


Settle = Callable[[World, list[int], int, int, int], int]


# --- the algorithm before the planner (merge_queue.py's settle/single/bisect), transcribed ---


def before_settle(w: World, entries: list[int], size: int, max_batch: int, retries: int) -> int:
    if w.test(entries):
        w.land(entries)
        return min(max_batch, size * 2)
    if len(entries) == 1:
        before_single(w, entries[0], retries)
        return size
    size = max(1, size // 2)
    lo, hi = 0, len(entries)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if w.test(entries[lo:mid]):
            w.land(entries[lo:mid])
            lo = mid
        else:
            hi = mid
    if w.test(entries[lo : lo + 1]):
        w.land(entries[lo : lo + 1])
    else:
        before_single(w, entries[lo], retries)
    return size


def before_single(w: World, e: int, retries: int) -> None:
    for _attempt in range(retries):
        if w.test([e], fresh=True):
            w.flaky += 1
            w.land([e])
            return
    w.blame(e)


# --- the planner, driven the way queue.runner drives it ---


def planned_settle(w: World, entries: list[int], size: int, max_batch: int, retries: int) -> int:
    after = planner.after_batch(len(entries), w.test(entries))
    if after is After.LAND:
        w.land(entries)
        return planner.resize(size, max_batch, after)
    if after is After.RETRY:
        planned_single(w, entries[0], retries)
        return planner.resize(size, max_batch, after)
    size = planner.resize(size, max_batch, after)
    search = Search.over(len(entries))
    while not (probe := search.probe()).last:
        green = w.test(entries[probe.lo : probe.hi])
        if green:
            w.land(entries[probe.lo : probe.hi])
        search = search.after(green)
    if w.test(entries[probe.lo : probe.hi]):
        w.land(entries[probe.lo : probe.hi])
    else:
        planned_single(w, entries[probe.lo], retries)
    return size


def planned_single(w: World, e: int, retries: int) -> None:
    reruns: list[bool] = []
    while isinstance(step := planner.retry_or_blame(retries, reruns), Retry):
        reruns.append(w.test([e], fresh=True))
    if step is Alone.FLAKY:
        w.flaky += 1
        w.land([e])
    else:
        w.blame(e)


def drain(settle: Settle, w: World, n: int, max_batch: int, retries: int) -> list[int]:
    """The whole queue until nothing is pending; returns the batch size before each round."""
    pending, size, sizes = list(range(n)), max_batch, []
    while pending:
        batch: list[int] = []
        for e in planner.eligible(pending, line_stopped=False, is_fix=lambda _e: False):
            if planner.batch_full(len(batch), size):
                break
            batch.append(e)
        sizes.append(size)
        size = settle(w, batch, size, max_batch, retries)
        pending = [e for e in pending if e not in w.main and e not in w.blamed]
    return sizes


def culprit_sets() -> list[tuple[int, frozenset[int]]]:
    """Every batch size 1..8 with no culprit, every single culprit position, and every pair."""
    out: list[tuple[int, frozenset[int]]] = []
    for n in range(1, 9):
        out.append((n, frozenset()))
        out += [(n, frozenset({c})) for c in range(n)]
        out += [(n, frozenset(pair)) for pair in itertools.combinations(range(n), 2)]
    return out


# --- the search over one red batch ---


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_search_finds_the_first_culprit_at_every_position_with_todays_runs(retries: int) -> None:
    for n, culprits in culprit_sets():
        if not culprits:
            continue
        first = min(culprits)
        now, before = World(culprits), World(culprits)
        planned_settle(now, list(range(n)), n, n, retries)
        before_settle(before, list(range(n)), n, n, retries)
        case = f"n={n} culprits={sorted(culprits)}"
        assert now.log == before.log, case
        assert (now.runs, now.hits) == (before.runs, before.hits), case
        assert now.main == list(range(first)), case  # everything before the first culprit merged
        assert now.blamed == [first], case  # only the first culprit is blamed; the rest waits
        if n > 1:  # the full batch, a binary search, the retries; the last probe is a cache hit
            assert now.runs <= 1 + math.ceil(math.log2(n)) + retries, case
            assert now.hits >= 1, case


def trace(w: World) -> str:
    """The world's log, compactly: `run 0123 | land 0 | hit 1 | blame 1`."""
    return " | ".join(f"{what} {''.join(map(str, entries))}" for what, entries in w.log)


@pytest.mark.parametrize(
    "n, culprit, retries, runs, hits, log",
    [
        (1, 0, 1, 2, 0, "run 0 | run 0 | blame 0"),
        (2, 0, 1, 3, 1, "run 01 | run 0 | hit 0 | run 0 | blame 0"),
        (2, 1, 0, 2, 1, "run 01 | run 0 | land 0 | hit 1 | blame 1"),
        (8, 0, 1, 5, 1, "run 01234567 | run 0123 | run 01 | run 0 | hit 0 | run 0 | blame 0"),
        (
            8,
            7,
            0,
            4,
            1,
            "run 01234567 | run 0123 | land 0123 | run 45 | land 45 | run 6 | land 6 | hit 7 | blame 7",
        ),
        (5, 2, 0, 3, 1, "run 01234 | run 01 | land 01 | run 2 | hit 2 | blame 2"),
        (6, 4, 1, 5, 1, "run 012345 | run 012 | land 012 | run 3 | land 3 | run 4 | hit 4 | run 4 | blame 4"),
    ],
)
def test_red_batch_is_searched_probe_by_probe(
    n: int, culprit: int, retries: int, runs: int, hits: int, log: str
) -> None:
    w = World(frozenset({culprit}))
    planned_settle(w, list(range(n)), n, n, retries)
    assert trace(w) == log
    assert (w.runs, w.hits) == (runs, hits)


def test_search_probes_halve_the_red_range() -> None:
    s = Search.over(8)
    assert s.probe() == Probe(0, 4, last=False)
    assert s.after(green=True).probe() == Probe(4, 6, last=False)
    assert s.after(green=False).probe() == Probe(0, 2, last=False)
    assert Search(3, 4).probe() == Probe(3, 4, last=True)
    assert Search.over(1).probe() == Probe(0, 1, last=True)
    with pytest.raises(ValueError):
        Search(3, 4).after(green=True)
    with pytest.raises(ValueError):
        Search(2, 2)


# --- the whole queue, round after round ---


@pytest.mark.parametrize("max_batch, retries", [(1, 1), (4, 1), (8, 0), (8, 2)])
def test_whole_queue_matches_todays_algorithm(max_batch: int, retries: int) -> None:
    for n, culprits in culprit_sets():
        now, before = World(culprits), World(culprits)
        sizes_now = drain(planned_settle, now, n, max_batch, retries)
        sizes_before = drain(before_settle, before, n, max_batch, retries)
        case = f"n={n} culprits={sorted(culprits)}"
        assert now.log == before.log and sizes_now == sizes_before, case
        assert sorted(now.blamed) == sorted(culprits), case  # every culprit, and only they, blamed
        assert sorted(now.main) == [e for e in range(n) if e not in culprits], case


@pytest.mark.parametrize("noise", [frozenset({1}), frozenset({2}), frozenset({1, 2}), frozenset({2, 3, 5})])
def test_flaky_runs_are_retried_before_blame_as_today(noise: frozenset[int]) -> None:
    for n, culprits in culprit_sets():
        now, before = World(culprits, noise), World(culprits, noise)
        drain(planned_settle, now, n, 4, 1)
        drain(before_settle, before, n, 4, 1)
        assert now.log == before.log and now.flaky == before.flaky, f"n={n} culprits={sorted(culprits)}"


def test_batch_grows_after_green_and_shrinks_after_red() -> None:
    # 12 entries, max batch 8, a culprit at 2: the first batch of 8 is red (size 4 next), the rest
    # is green at 4 (size 8 next), then the last 1 lands.
    w = World(frozenset({2}))
    assert drain(planned_settle, w, 12, 8, 0) == [8, 4, 8]
    assert w.blamed == [2] and len(w.main) == 11


# --- the small decisions, as tables ---


@pytest.mark.parametrize(
    "size, max_batch, after, new",
    [
        (1, 8, After.LAND, 2),
        (4, 8, After.LAND, 8),
        (5, 8, After.LAND, 8),
        (8, 8, After.LAND, 8),
        (8, 8, After.SEARCH, 4),
        (3, 8, After.SEARCH, 1),
        (1, 8, After.SEARCH, 1),
        (4, 8, After.RETRY, 4),
        (1, 1, After.LAND, 1),
    ],
)
def test_batch_size_doubles_on_green_and_halves_on_red(
    size: int, max_batch: int, after: After, new: int
) -> None:
    assert planner.resize(size, max_batch, after) == new


@pytest.mark.parametrize(
    "taken, green, after",
    [(1, True, After.LAND), (5, True, After.LAND), (1, False, After.RETRY), (2, False, After.SEARCH)],
)
def test_a_tested_batch_lands_retries_or_is_searched(taken: int, green: bool, after: After) -> None:
    assert planner.after_batch(taken, green) is after


@pytest.mark.parametrize(
    "retries, reruns, step",
    [
        (0, [], Alone.BLAME),
        (1, [], Retry(1, 1)),
        (1, [False], Alone.BLAME),
        (1, [True], Alone.FLAKY),
        (2, [False], Retry(2, 2)),
        (2, [False, True], Alone.FLAKY),
        (2, [False, False], Alone.BLAME),
    ],
)
def test_red_alone_is_retried_before_blame(retries: int, reruns: list[bool], step: Retry | Alone) -> None:
    assert planner.retry_or_blame(retries, reruns) == step


def test_only_fixes_are_eligible_while_the_line_is_stopped() -> None:
    pending = ["a", "fix1", "b", "fix2"]
    is_fix = str.startswith
    assert planner.eligible(pending, line_stopped=False, is_fix=lambda e: is_fix(e, "fix")) == pending
    assert planner.eligible(pending, line_stopped=True, is_fix=lambda e: is_fix(e, "fix")) == ["fix1", "fix2"]


@pytest.mark.parametrize("size, ahead", [(1, []), (2, [0, 1]), (4, [0, 1, 2]), (8, [0, 1, 2])])
def test_screening_is_prefetched_for_what_a_round_takes(size: int, ahead: list[int]) -> None:
    assert planner.prefetch([0, 1, 2], size) == ahead
    assert not planner.batch_full(size - 1, size) and planner.batch_full(size, size)


@pytest.mark.parametrize("module", ["queue/planner.py", "restart_policy.py"])
def test_the_planner_and_restart_policy_import_nothing_that_does_io(module: str) -> None:
    """They decide from plain data (which is why their tables run in milliseconds): the standard
    library's pure parts and fac's vocabulary only, never git, tmux, SQLite or a subprocess."""
    import supervisor

    source = (Path(supervisor.__file__).parent / module).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    allowed = {"__future__", "collections.abc", "dataclasses", "enum", "typing", "supervisor.model"}
    assert imported <= allowed, imported - allowed
