"""Pure view helpers: the dashboard's verdict cell and the shared formats of shas and times."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path

import pytest
from helpers import fac_json, fac_ok
from queue_helpers import commit, passing_test, script_suite, spawn_worker, submit

from supervisor.dashboard import verdict_cell
from supervisor.text import clock, iso_time, short_sha, with_iso_times


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


@pytest.mark.parametrize(
    ("sha", "shown"),
    [("0123456789abcdef0123456789abcdef01234567", "0123456789"), ("abc", "abc"), (None, "-"), ("", "-")],
)
def test_a_sha_is_shown_with_ten_characters(sha: str | None, shown: str) -> None:
    assert short_sha(sha) == shown


def test_times_are_the_local_clock_in_text_and_iso_8601_next_to_epoch_seconds_in_json() -> None:
    ts = 1_700_000_000.25
    assert clock(ts) == time.strftime("%H:%M:%S", time.localtime(ts))
    assert re.fullmatch(r"\d\d:\d\d:\d\d", clock(ts)) and clock(None) == "-"
    iso = iso_time(ts)
    assert iso is not None and datetime.fromisoformat(iso).timestamp() == int(ts)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", iso)
    row = {"ts": ts, "since": None, "name": "w1"}
    assert with_iso_times(row, "ts", "since", "absent") == {**row, "ts_iso": iso, "since_iso": None}
    assert row == {"ts": ts, "since": None, "name": "w1"}  # the caller's dict is left alone


def test_status_queue_and_log_use_the_same_sha_and_time_formats(factory: Path, tmux_socket: str) -> None:
    script_suite(factory, {"always-red": "#!/bin/sh\nexit 3\n"})
    wt = spawn_worker(factory, "w1")
    sha = commit(wt, passing_test("w1"), "w1: add a test")
    submit("w1")

    [row] = fac_json("queue", "--json", cwd=factory)
    for key in ("submitted_at", "updated_at"):
        assert datetime.fromisoformat(row[f"{key}_iso"]).timestamp() == int(row[key])
    queue_text = fac_ok("queue", cwd=factory).stdout.splitlines()[1].split()
    assert queue_text[3] == sha[:10]

    data = fac_json("status", "--json", cwd=factory)
    [w] = data["workers"]
    assert datetime.fromisoformat(w["updated_at_iso"]).timestamp() == int(w["updated_at"])
    assert datetime.fromisoformat(data["line"]["since_iso"]).timestamp() == int(data["line"]["since"])
    assert w["head"] == sha and w["updated_at"] and "main_sha" in data["line"]  # existing keys stay
    status_text = fac_ok("status", cwd=factory).stdout
    [wline] = [ln for ln in status_text.splitlines() if ln.startswith("w1 ")]
    assert wline.split()[-1] == sha[:10]
    assert f"main {short_sha(data['main_sha'])}" in status_text

    [ev] = [json.loads(ln) for ln in fac_ok("log", "--json", cwd=factory).stdout.splitlines()][-1:]
    assert datetime.fromisoformat(ev["ts_iso"]).timestamp() == int(ev["ts"])
    assert fac_ok("log", cwd=factory).stdout.splitlines()[-1].split()[0] == clock(ev["ts"])
