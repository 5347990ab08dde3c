"""The speculative pipeline's decisions, as plain functions over plain data: no git, no SQL, no checks.

With `[executor] slots` above 1 the queue keeps a chain of candidates under test at once (as Zuul's
dependent pipelines): the first is built on main, each next one on top of the one before it, so a
green chain lands one candidate after another, in order. These functions decide how new entries
are spread over free slots, when the youngest candidate takes in late arrivals, which prefixes a
red batch is probed at (a P-ary split over the slots) and how many retries of a red single
candidate run at once. The runner (`queue.runner`) performs what they decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from supervisor.queue.planner import Alone, retry_or_blame

# --- new candidates over the free slots ---


@dataclass(frozen=True)
class Running:
    """A candidate under test, as the planner sees it: how many entries it adds on top of the one
    before it, and for how long it has run (None when its run has ended)."""

    size: int
    elapsed: float | None


@dataclass(frozen=True)
class Starts:
    """What to start now. `absorb`: that many waiting entries join the youngest candidate, which
    is cancelled and started again with them (it adds `absorb` more entries). `sizes`: new
    candidates, chained on the youngest, oldest first, taking the waiting entries in order."""

    absorb: int = 0
    sizes: tuple[int, ...] = ()

    @property
    def taken(self) -> int:
        return self.absorb + sum(self.sizes)


def split(n: int, parts: int) -> tuple[int, ...]:
    """`n` entries in `parts` chunks as even as can be, the larger ones first (oldest entries)."""
    parts = max(1, min(parts, n))
    q, r = divmod(n, parts)
    return tuple(q + 1 if i < r else q for i in range(parts))


def starts(
    waiting: int,
    running: Sequence[Running],
    slots: int,
    max_batch: int,
    typical: float | None,
    *,
    hedge: bool = True,
) -> Starts:
    """New candidates for `waiting` screened entries, given the chain under test (oldest first).

    Start at once: with free slots and `hedge` (red verdicts are about: see `hedge_now`), the
    waiting entries are spread over them, each chunk one candidate on top of the previous (small
    batches while slots are free; a red one is then narrowed down by the others already). Without
    `hedge` they go in one candidate (up to `max_batch`; more make more candidates), and the free
    slots stay free for the next arrivals: when nothing fails, one gate run instead of several
    slower ones competing for the same cores. With every slot busy the batch grows instead: the
    youngest candidate, when it builds on another one (it cannot land before that one anyway) and
    has run for less than half a `typical` gate run (unknown: always), is started again with the
    waiting entries, up to `max_batch`; otherwise they wait for a free slot and go in together.
    """
    if waiting <= 0:
        return Starts()
    free = slots - len(running)
    if free > 0:
        take = min(waiting, free * max_batch)
        if not hedge:
            return Starts(sizes=split(take, -(-take // max_batch)))
        return Starts(sizes=split(take, free))
    if len(running) < 2:
        return Starts()
    tail = running[-1]
    young = tail.elapsed is not None and (typical is None or tail.elapsed < typical / 2)
    room = max_batch - tail.size
    if not young or room <= 0:
        return Starts()
    return Starts(absorb=min(waiting, room))


RECENT = 16  # decided entries `hedge_now` looks at


def hedge_now(recent: Sequence[bool]) -> bool:
    """Whether new entries are spread over the free slots: when any of the latest decided entries
    (True: blamed by the gate, newest first) went red. A factory where nothing failed lately tests
    everything waiting in one candidate."""
    return any(recent[:RECENT])


def typical_run(durations: Sequence[float]) -> float | None:
    """A gate run's typical wall time, from the latest ones (their median); None before any."""
    if not durations:
        return None
    s = sorted(durations[-9:])
    return s[len(s) // 2]


# --- the search over a red batch, with several probes at once ---


def cuts(lo: int, hi: int, probes: int) -> tuple[int, ...]:
    """The prefix ends to test at once inside a red range: entries[:hi] is red and entries[:lo]
    merged, so the shortest red prefix ends in (lo, hi]. Up to `probes` ends strictly between,
    evenly spaced (one probe: the midpoint, a binary search)."""
    width = hi - lo
    if width <= 1:
        return ()
    k = min(probes, width - 1)
    return tuple(dict.fromkeys(lo + (width * (i + 1)) // (k + 1) for i in range(k)))


@dataclass(frozen=True)
class Narrowed:
    """After a round of probes: land the green prefix ending at `land` (None: nothing lands), and
    the shortest red prefix now ends in (lo, hi]."""

    land: int | None
    lo: int
    hi: int


def narrow(lo: int, hi: int, ends: Sequence[int], green: Sequence[bool]) -> Narrowed:
    """The range left once the prefixes ending at `ends` (ascending) came back `green` or red. The
    first red end bounds it; the longest green prefix before that lands (a green prefix after a
    red one says nothing: main moves in order)."""
    red = next((e for e, ok in zip(ends, green, strict=True) if not ok), hi)
    greens = [e for e, ok in zip(ends, green, strict=True) if ok and e < red]
    land = greens[-1] if greens else None
    return Narrowed(land, land if land is not None else lo, red)


# --- retries of a red single candidate, several at once ---


def retries_now(retries: int, reruns: Sequence[bool], slots: int, *, retryable: bool = True) -> int | Alone:
    """How many fresh reruns of a red single candidate to start at once (up to the slots), or how it
    ends: FLAKY once any rerun passed, BLAME when every allowed rerun failed (or none is allowed:
    see `planner.retry_or_blame`). With one slot this is exactly the one-at-a-time retry."""
    if any(reruns):  # the order of reruns run at once means nothing: one pass is enough
        return Alone.FLAKY
    step = retry_or_blame(retries, reruns, retryable=retryable)
    if isinstance(step, Alone):
        return step
    return min(step.of - step.attempt + 1, max(1, slots))
