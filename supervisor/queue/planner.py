"""The merge queue's decisions, as plain functions over plain data: no git, no SQL, no checks.

What a round may take (jidoka: only fixes while the line is stopped), how big the next batch is
(double after a green batch, halve after a red one), which prefix of a red batch to test next (a
binary search for the shortest red prefix, oldest first) and whether a red single candidate is
retried or blamed. The runner (`queue.runner`) performs what these decide.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

T = TypeVar("T")


# --- the batch to take ---


def eligible(pending: Sequence[T], *, line_stopped: bool, is_fix: Callable[[T], bool]) -> list[T]:
    """What may merge this round, oldest first: everything, or only fixes while the line is stopped."""
    return [e for e in pending if is_fix(e)] if line_stopped else list(pending)


def hold_for_no_checks(gate_checks: int, allow_no_checks: bool) -> bool:
    """Whether the queue holds every entry: with no gate check on main, green would mean untested."""
    return gate_checks == 0 and not allow_no_checks


def prefetch(pending: Sequence[T], size: int) -> list[T]:
    """The entries whose (read-only) screening is worth starting at once: those a round of `size`
    will probably take. A serial queue screens one at a time."""
    return list(pending[:size]) if size > 1 else []


def batch_full(taken: int, size: int) -> bool:
    """A round stops screening once it has taken `size` entries."""
    return taken >= size


# --- what a tested batch leads to, and the next batch size ---


class After(Enum):
    """What follows the first test of a batch."""

    LAND = "land"  # green: main moves to the candidate
    RETRY = "retry"  # one branch, red: retry it before blaming its owner
    SEARCH = "search"  # several branches, red: search for the shortest red prefix


def after_batch(taken: int, green: bool) -> After:
    if green:
        return After.LAND
    return After.RETRY if taken == 1 else After.SEARCH


def resize(size: int, max_batch: int, after: After) -> int:
    """Adaptive batch size: doubled (up to `max_batch`) after a green batch lands, halved (down to 1)
    when a batch of several is red, unchanged when a single branch is red (that says nothing of
    how many branches batch well together)."""
    if after is After.LAND:
        return min(max_batch, size * 2)
    if after is After.SEARCH:
        return max(1, size // 2)
    return size


# --- the search over a red batch ---


@dataclass(frozen=True)
class Probe:
    """Test entries[lo:hi] on the current base (entries[:lo] have merged by now).

    The `last` probe is the single entry the search ends on: green lands it, red is retried, then
    blamed. Any other green probe lands and the search goes on after it.
    """

    lo: int
    hi: int
    last: bool


@dataclass(frozen=True)
class Search:
    """The shortest red prefix of a red batch: entries[:lo] are merged, base + entries[lo:hi] is red.

    One culprit among n costs about log2(n) runs, plus its retries and one run for the rest (in the
    next round); a probe whose tree was tested before is answered by the gate's cache.
    """

    lo: int
    hi: int

    def __post_init__(self) -> None:
        if not 0 <= self.lo < self.hi:
            raise ValueError(f"an empty search: lo={self.lo}, hi={self.hi}")

    @classmethod
    def over(cls, n: int) -> Search:
        """The search over a red batch of `n` entries."""
        return cls(0, n)

    def probe(self) -> Probe:
        if self.hi - self.lo > 1:
            return Probe(self.lo, (self.lo + self.hi) // 2, last=False)
        return Probe(self.lo, self.lo + 1, last=True)

    def after(self, green: bool) -> Search:
        """The search once the (non-last) probe came back green (it merged) or red."""
        p = self.probe()
        if p.last:
            raise ValueError("the last probe ends the search")
        return Search(p.hi, self.hi) if green else Search(self.lo, p.hi)


# --- retry before blame ---


@dataclass(frozen=True)
class Retry:
    """Run the red single candidate again, without the cache (`attempt` of `of`)."""

    attempt: int
    of: int


class Alone(Enum):
    """How a red single candidate ends."""

    FLAKY = "flaky"  # a retry passed: it lands, counted as flaky
    BLAME = "blame"  # red every time: its owner gets the first red verdict


def retry_or_blame(retries: int, reruns: Sequence[bool], *, retryable: bool = True) -> Retry | Alone:
    """The next step for a red single candidate, given the results of its reruns so far (True: green).

    Only a failure a rerun could honestly clear is `retryable`: a test main knows (it passes there)
    failing; never a guard, a new test that fails (a flaky new test cannot merge), a test lost from
    main or a report that cannot be believed."""
    if reruns and reruns[-1]:
        return Alone.FLAKY
    if retryable and len(reruns) < retries:
        return Retry(len(reruns) + 1, retries)
    return Alone.BLAME
