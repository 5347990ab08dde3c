"""Whether the queue may try its executor now: a pure decision over its recent failures (no I/O).

An executor that gave no verdict (a Dask scheduler that does not answer, a lost task) is tried
again only after a backoff: `FIRST` seconds after the first failure, doubling with each failure
in a row up to `CAP`; a verdict resets it. Without it every queue tick would pay the scheduler's
connect timeout again.
"""

from __future__ import annotations

from dataclasses import dataclass

FIRST = 5.0
CAP = 120.0


@dataclass(frozen=True)
class Availability:
    """The executor as the queue last found it: `failures` in a row (0: it gave its last verdict),
    why the last one failed, when (wall-clock times), and when it may be tried again."""

    failures: int = 0
    reason: str | None = None
    since: float | None = None  # when the first of these failures happened
    failed_at: float | None = None  # and the last one
    retry_at: float | None = None

    @property
    def available(self) -> bool:
        return self.failures == 0

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "state": "available" if self.available else "unavailable",
            "failures": self.failures,
            "reason": self.reason,
            "since": self.since,
            "failed_at": self.failed_at,
            "retry_at": self.retry_at,
            "retry_in": None if self.available else wait(self, now),
        }


def delay(failures: int, *, first: float = FIRST, cap: float = CAP) -> float:
    """Seconds to wait after `failures` failures in a row (none: 0)."""
    if failures <= 0:
        return 0.0
    return float(min(cap, first * 2 ** min(failures - 1, 32)))


def failed(a: Availability, reason: str, now: float) -> Availability:
    """After one more failure at `now`."""
    n = a.failures + 1
    return Availability(n, reason, a.since if a.since is not None else now, now, now + delay(n))


def succeeded(a: Availability) -> Availability:
    """After a verdict: tried again at once, whatever came before."""
    return Availability() if not a.available else a


def wait(a: Availability, now: float) -> float:
    """Seconds until the executor may be tried again (0: now)."""
    if a.available or a.retry_at is None:
        return 0.0
    return max(0.0, a.retry_at - now)


def may_try(a: Availability, now: float) -> bool:
    return wait(a, now) <= 0


def describe(a: Availability, now: float) -> str:
    """What the queue line says while the executor is unavailable ("" while it is available)."""
    if a.available:
        return ""
    left = wait(a, now)
    when = f"retrying in {left:.0f}s" if left > 0 else "retrying now"
    return f"executor unavailable: {a.reason}; {when}"
