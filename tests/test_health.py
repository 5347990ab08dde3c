"""The health of fac's own processes: liveness from their locks, each restarting the other; `fac doctor`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import dashboard_text, fac_json, fac_ok, run_fac, session_of, tmux, wait_for

from supervisor import health, locks

PROCS = ("supervisor", "merge-queue")


@pytest.mark.parametrize(
    ("pid", "window", "restart"),
    [
        (None, "dead", True),  # killed: its pane is dead, nothing holds its lock
        (None, "missing", True),  # its window was killed
        (None, "alive", False),  # starting: not holding its lock yet
        (1234, "alive", False),  # running
        (1234, "missing", False),  # running outside its window (a human's `fac queue run`)
        (1234, "dead", False),
    ],
)
def test_a_process_is_restarted_only_when_nothing_holds_its_lock_and_its_window_runs_nothing(
    pid: int | None, window: health.WindowState, restart: bool
) -> None:
    assert health.needs_restart(health.ProcessHealth("merge-queue", pid, window)) is restart


def test_the_lock_holder_is_known_until_it_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "queue.lock"
    assert locks.holder(path) is None
    code = f"import sys,time; sys.path.insert(0, {str(Path(health.__file__).parent.parent)!r})\n"
    code += "from supervisor import locks; from pathlib import Path\n"
    code += f"locks.acquire(Path({str(path)!r}), 'x', 'h')\n"
    code += "print('held', flush=True); time.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        assert locks.holder(path) == proc.pid
        assert locks.holder(path) == proc.pid  # asking does not take the lock
    finally:
        proc.kill()
        proc.wait()
    assert locks.holder(path) is None


def _processes(root: Path) -> dict[str, Any]:
    procs: dict[str, Any] = fac_json("status", cwd=root)["processes"]
    return procs


def _both_running(root: Path) -> dict[str, Any]:
    procs = _processes(root)
    return procs if all(procs[n]["running"] and procs[n]["window"] == "alive" for n in PROCS) else {}


def _events(root: Path, kind: str) -> list[dict[str, Any]]:
    out = fac_ok("log", "--json", cwd=root).stdout
    return [e for e in map(json.loads, out.splitlines()) if e["kind"] == kind]


@pytest.mark.parametrize(("victim", "keeper"), [("merge-queue", "supervisor"), ("supervisor", "merge-queue")])
def test_a_kill_9_of_one_of_facs_processes_is_noticed_and_restarted_by_the_other(
    factory: Path, tmux_socket: str, victim: str, keeper: str
) -> None:
    fac_ok("up", cwd=factory)
    before = wait_for(lambda: _both_running(factory), 30, "the supervisor and the queue to run")

    os.kill(before[victim]["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any]:
        procs = _both_running(factory)
        return procs if procs and procs[victim]["pid"] != before[victim]["pid"] else {}

    after = wait_for(restarted, 60, f"{keeper} to restart {victim}")
    assert after[keeper]["pid"] == before[keeper]["pid"]  # the keeper itself was never restarted
    (event,) = _events(factory, "process-restarted")
    assert event["payload"]["process"] == victim and event["payload"]["by"] == keeper
    assert event["payload"]["window"] == "dead"  # it was killed, and its pane showed it
    assert "process-restarted" in fac_ok("log", cwd=factory).stdout


def test_status_and_doctor_tell_when_facs_processes_are_dead(factory: Path, tmux_socket: str) -> None:
    fac_ok("up", cwd=factory)
    running = wait_for(lambda: _both_running(factory), 30, "the supervisor and the queue to run")
    doctor = run_fac("doctor", "--json", cwd=factory)
    found = {f["name"]: f for f in json.loads(doctor.stdout)["findings"]}
    for name in ("session", "store", "gate checks", "main", "factory.toml", *PROCS):
        assert found[name]["level"] == "ok", found[name]
    assert doctor.returncode == (0 if all(f["level"] != "fail" for f in found.values()) else 1)

    # Both at once: nobody is left to restart the other.
    os.kill(running["supervisor"]["pid"], signal.SIGKILL)
    os.kill(running["merge-queue"]["pid"], signal.SIGKILL)
    wait_for(lambda: not any(p["running"] for p in _processes(factory).values()), 30, "both to be dead")

    procs = _processes(factory)
    assert {n: (procs[n]["running"], procs[n]["pid"]) for n in PROCS} == {n: (False, None) for n in PROCS}
    text = fac_ok("status", cwd=factory).stdout
    assert "supervisor: DEAD" in text and "merge-queue: DEAD" in text
    assert "`fac up` starts them again" in text

    doctor = run_fac("doctor", cwd=factory)
    assert doctor.returncode == 1
    assert "FAIL  supervisor: the supervisor: DEAD" in doctor.stdout
    assert "FAIL  merge-queue: the merge queue: DEAD" in doctor.stdout
    assert "fix: fac up" in doctor.stdout

    assert sorted(fac_json("up", cwd=factory)["started"]) == sorted(PROCS)
    wait_for(lambda: _both_running(factory), 30, "the supervisor and the queue to run again")
    assert tmux(tmux_socket, "has-session", "-t", f"={session_of()}").returncode == 0


def test_doctor_outside_a_factory_checks_the_machine_and_says_how_to_make_one(tmp_path: Path) -> None:
    proc = run_fac("doctor", "--json", cwd=tmp_path)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    found = {f["name"]: f for f in data["findings"]}
    assert data["ok"] is False and data["root"] is None
    assert found["git"]["level"] == "ok" and found["tmux"]["level"] == "ok"
    assert {"bubblewrap", "container engine"} <= set(found)
    assert found["factory"]["level"] == "fail" and "fac init" in found["factory"]["fix"]


def test_doctor_names_a_store_that_is_not_a_database(factory: Path) -> None:
    (factory / ".fac").mkdir(exist_ok=True)
    (factory / ".fac" / "state.db").write_bytes(b"this is not sqlite\n" * 100)
    proc = run_fac("doctor", "--json", cwd=factory)
    assert proc.returncode == 1
    (store,) = [f for f in json.loads(proc.stdout)["findings"] if f["name"] == "store"]
    assert store["level"] == "fail" and "cannot be opened as fac's store" in store["detail"]
    assert "mv " in store["fix"]


def test_the_dashboard_shows_whether_facs_processes_run(factory: Path, tmux_socket: str) -> None:
    text = dashboard_text(factory)
    assert "supervisor: not running (no window)" in text and "merge-queue: not running (no window)" in text
