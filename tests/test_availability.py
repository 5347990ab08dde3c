"""The executor's backoff after failures: a pure decision, table-driven."""

from __future__ import annotations

import pytest

from supervisor import availability
from supervisor.availability import Availability


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(0, 0.0), (1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (5, 80.0), (6, 120.0), (7, 120.0), (500, 120.0)],
)
def test_the_delay_doubles_from_5_s_up_to_2_min(failures: int, seconds: float) -> None:
    assert availability.delay(failures) == seconds


def test_failures_in_a_row_back_off_and_a_verdict_resets_it() -> None:
    a = Availability()
    assert a.available and availability.may_try(a, 0.0) and availability.describe(a, 0.0) == ""

    why = "the Dask scheduler does not answer"
    a = availability.failed(a, why, 100.0)
    assert (a.failures, a.since, a.failed_at, a.retry_at) == (1, 100.0, 100.0, 105.0)
    # (now, may the queue try, seconds left, what the queue line says)
    table = [
        (100.0, False, 5.0, "retrying in 5s"),
        (103.5, False, 1.5, "retrying in 2s"),
        (105.0, True, 0.0, "retrying now"),
        (300.0, True, 0.0, "retrying now"),
    ]
    for now, may, left, says in table:
        assert availability.may_try(a, now) is may, now
        assert availability.wait(a, now) == left, now
        assert (
            availability.describe(a, now)
            == f"executor unavailable: the Dask scheduler does not answer; {says}"
        )

    a = availability.failed(a, "lost the task", 106.0)  # the retry failed too: twice as long
    assert (a.failures, a.since, a.failed_at, a.retry_at, a.reason) == (
        2,
        100.0,
        106.0,
        116.0,
        "lost the task",
    )
    assert not availability.may_try(a, 115.9) and availability.may_try(a, 116.0)

    a = availability.succeeded(a)
    assert a == Availability() and availability.may_try(a, 116.0)
    assert availability.failed(a, "down again", 200.0).retry_at == 205.0  # from 5 s again


def test_the_state_for_scripts_says_when_the_queue_tries_again() -> None:
    a = availability.failed(Availability(), "down", 10.0)
    assert a.as_dict(12.0) == {
        "state": "unavailable",
        "failures": 1,
        "reason": "down",
        "since": 10.0,
        "failed_at": 10.0,
        "retry_at": 15.0,
        "retry_in": 3.0,
    }
    assert Availability().as_dict(12.0)["state"] == "available"
