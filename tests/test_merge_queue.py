"""The merge queue with real git repositories, real tmux (private socket) and real SQLite.

Workers are spawned for real; the test writes their branches with git in their worktrees (as a
scripted agent would), submits them, and runs the queue in-process or through the CLI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    assert_usage_error,
    capture_pane,
    dashboard_text,
    fac_json,
    fac_ok,
    git,
    run_fac,
    session_of,
    wait_for,
)
from queue_helpers import (
    SUT,
    assert_main_only_tested,
    commit,
    entries,
    events,
    fac,
    failing_test,
    human_commit,
    inbox,
    merge_commits,
    passing_test,
    run_queue,
    runs,
    script_suite,
    spawn_worker,
    submit,
    uncached_runs,
    worker_state,
)

from supervisor import worktrees
from supervisor.config import DEFAULT_TOML
from supervisor.factory import Factory
from supervisor.queue import planner

# For tests about the queue's plumbing rather than its checks: a real check, without pytest's start-up.
QUICK = {"readme": f"#!/bin/sh\ntest -s {SUT}/README.md\n"}


def fetched(root: Path, name: str) -> None:
    """The worker's head in the factory, as `fac submit` fetches it from the worker's own repository
    (before that, the factory does not have its commits)."""
    worktrees.collect(root, root / ".fac" / "worktrees" / name, f"fac/{name}")


def test_green_batch_merges_in_one_check_run(factory: Path) -> None:
    names = ["w1", "w2", "w3", "w4"]
    for name in names:
        commit(spawn_worker(factory, name), passing_test(name), f"{name}: add a test")
        submit(name)

    mq = run_queue(factory)

    assert mq.stats["check_runs"] == 1
    assert uncached_runs(factory) == 1
    assert {n: e.state for n, e in entries(factory).items()} == dict.fromkeys(names, "merged")
    merges = merge_commits(factory)
    assert len(merges) == 4
    assert sorted(line for m in merges for line in m.splitlines() if line.startswith("Fac-Worker:")) == [
        f"Fac-Worker: {n}" for n in names
    ]
    main = git(factory, "rev-parse", "main")
    assert [r for r in runs(factory) if r["sha"] == main] == [
        {"sha": main, "tree": git(factory, "rev-parse", "main^{tree}"), "stage": "gate", "ok": 1, "cached": 0}
    ]
    assert {e.merged_as for e in entries(factory).values()} == {main}
    assert_main_only_tested(factory)
    # The human's checkout of main was clean, so it moved along with main.
    assert git(factory, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(factory, "status", "--porcelain") == ""
    for name in names:
        assert (factory / SUT / "tests" / f"test_{name}.py").is_file()
        assert worker_state(factory, name) == "merged"


def test_red_batch_is_bisected_to_the_culprit_and_the_rest_merge(factory: Path, tmux_socket: str) -> None:
    names = [f"w{i}" for i in range(1, 7)]
    for name in names:
        change = failing_test(name) if name == "w4" else passing_test(name)
        commit(spawn_worker(factory, name), change, f"{name}: add a test")
        submit(name)

    mq = run_queue(factory)

    states = {n: e.state for n, e in entries(factory).items()}
    assert states == {**dict.fromkeys(names, "merged"), "w4": "red"}
    assert worker_state(factory, "w4") == "red"
    assert worker_state(factory, "w1") == "merged"
    assert mq.stats["red"] == 1 and mq.stats["merged"] == 5
    # Bisection re-tests the tree that just failed for free: the cache answers it.
    assert mq.stats["cache_hits"] >= 1
    assert mq.stats["check_runs"] == uncached_runs(factory)
    assert not (factory / SUT / "tests" / "test_w4.py").exists()
    assert sorted(
        line for m in merge_commits(factory) for line in m.splitlines() if "Fac-Worker" in line
    ) == [f"Fac-Worker: {n}" for n in names if n != "w4"]
    assert_main_only_tested(factory)

    # The owner hears why, in its inbox and in its pane: the check, the failing test, the tested
    # commit and the command that reproduces it.
    red = entries(factory)["w4"]
    tested = red.verdict["tested"]
    assert git(factory, "rev-parse", f"refs/fac/candidates/q{red.id}") == tested
    msgs = [m for m in inbox("w4") if m["kind"] == "red"]
    assert len(msgs) == 1
    body = msgs[0]["body"]
    for needle in (
        "RED: fac/w4",
        "check tests failed (exit 1)",
        "FAILED tests/test_w4.py::test_w4_is_wrong",
        "assert (1 + 1) == 3",
        tested[:10],
        f"fac check --ref {tested} --stage gate",
    ):
        assert needle in body, f"{needle!r} not in the red message:\n{body}"
    pane = wait_for(
        lambda: (text := capture_pane(tmux_socket, f"={session_of()}:w4")) and "reproduce:" in text and text,
        message="the red message in w4's pane",
    )
    for needle in (
        "RED: fac/w4",
        "FAILED tests/test_w4.py::test_w4_is_wrong",
        f"fac check --ref {tested} --stage gate",
    ):
        assert needle in pane, f"{needle!r} not in w4's pane:\n{pane}"
    # The command in the message reproduces the failure.
    again = fac("check", "--ref", tested, "--stage", "gate")
    assert again.exit_code == 1
    assert "FAILED tests/test_w4.py::test_w4_is_wrong" in again.output
    # The others got their merge notice, and nobody else was blamed.
    assert [m["kind"] for m in inbox("w5")] == ["merged"]
    assert [e.worker for e in events(factory, "red")] == ["w4"]


def test_conflict_is_routed_with_its_paths_without_running_checks(factory: Path) -> None:
    script_suite(factory, QUICK)
    readme = f"{SUT}/README.md"
    original = (factory / readme).read_text()
    commit(spawn_worker(factory, "w1"), {readme: "# textstats, by w1\n" + original}, "w1: title")
    commit(spawn_worker(factory, "w2"), {readme: "# textstats, by w2\n" + original}, "w2: title")
    submit("w1")
    mq = run_queue(factory)
    assert mq.stats["merged"] == 1
    before = uncached_runs(factory)

    submit("w2")
    mq = run_queue(factory)

    assert uncached_runs(factory) == before
    assert mq.stats == {"conflict": 1}
    e = entries(factory)["w2"]
    assert e.state == "conflict"
    assert e.verdict == {"ok": False, "reason": "conflict", "paths": [readme]}
    assert worker_state(factory, "w2") == "conflict"
    [msg] = [m for m in inbox("w2") if m["kind"] == "conflict"]
    assert "CONFLICT: fac/w2" in msg["body"]
    assert f"  {readme}" in msg["body"].splitlines()
    assert "git merge main" in msg["body"]
    assert (factory / readme).read_text().startswith("# textstats, by w1")


def test_branches_that_conflict_with_each_other_are_settled_one_after_the_other(factory: Path) -> None:
    script_suite(factory, QUICK)
    readme = f"{SUT}/README.md"
    original = (factory / readme).read_text()
    commit(spawn_worker(factory, "w1"), {readme: "# by w1\n" + original}, "w1: title")
    commit(spawn_worker(factory, "w2"), {readme: "# by w2\n" + original}, "w2: title")
    submit("w1")
    submit("w2")

    mq = run_queue(factory)

    # w2 merges cleanly with main but not with w1: it waits for the next round, then conflicts
    # with the new main, all without a second check run.
    assert mq.stats["check_runs"] == 1 and uncached_runs(factory) == 1
    assert {n: e.state for n, e in entries(factory).items()} == {"w1": "merged", "w2": "conflict"}
    assert entries(factory)["w2"].verdict["paths"] == [readme]


def test_max_batch_1_is_a_plain_serial_queue(factory: Path) -> None:
    script_suite(factory, QUICK)
    for name in ("w1", "w2", "w3"):
        commit(spawn_worker(factory, name), passing_test(name), f"{name}: add a test")
        submit(name)

    mq = run_queue(factory, max_batch=1)

    assert mq.stats["check_runs"] == 3 and mq.stats["merged"] == 3
    # One merge commit per candidate, oldest first, each on top of the one before.
    assert [m.splitlines()[0] for m in merge_commits(factory)] == [
        f"Merge fac/{n} ({n})" for n in ("w3", "w2", "w1")
    ]
    assert_main_only_tested(factory, git(factory, "rev-parse", "main~3"))


def test_cache_and_no_cache_are_one_spelling_for_every_command_and_cached_still_works(factory: Path) -> None:
    sha = commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: add a test")
    fetched(factory, "w1")
    fac_ok("check", "--ref", sha, "--stage", "gate")  # runs: a check of a commit is fresh by default
    for flag in ("--cache", "--cached"):  # the documented spelling, and the old one, hidden
        assert fac_json("check", "--ref", sha, "--stage", "gate", flag, "--json")["cached"] is True
    assert uncached_runs(factory) == 1
    assert fac_json("check", "--ref", sha, "--stage", "gate", "--no-cache", "--json")["cached"] is False
    assert uncached_runs(factory) == 2
    for flag in ("--cache", "--cache", "--no-cache"):  # the gate on main takes both spellings too
        fac_ok("verify", flag)
    assert uncached_runs(factory) == 4  # the second --cache reused main's first run; --no-cache ran
    for argv in (["check"], ["verify"], ["queue", "run"]):
        shown = fac_ok(*argv, "--help").stdout
        assert "--cache / --no-cache" in shown and "--cached" not in shown


def test_the_cache_prevents_a_second_run_of_an_identical_tree(factory: Path) -> None:
    sha = commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: add a test")
    fetched(factory, "w1")
    for _ in range(2):
        res = fac("check", "--ref", sha, "--stage", "gate", "--cache", "--json")
        assert res.exit_code == 0, res.output
    assert uncached_runs(factory) == 1
    assert json.loads(res.stdout)["cached"] is True

    # w2 makes exactly w1's change: once w1 is on main, main + w2 is a tree already verified.
    commit(spawn_worker(factory, "w2"), passing_test("w1"), "w2: the same test")

    # main + w1 is the tree `fac check --ref` verified above: the queue does not test it again.
    submit("w1")
    mq = run_queue(factory)
    assert mq.stats["check_runs"] == 0 and mq.stats["cache_hits"] == 1 and mq.stats["merged"] == 1
    submit("w2")
    mq = run_queue(factory)
    assert mq.stats["check_runs"] == 0 and mq.stats["cache_hits"] == 1
    assert uncached_runs(factory) == 1
    assert entries(factory)["w2"].state == "merged"
    assert_main_only_tested(factory)


def test_a_check_that_fails_once_is_retried_logged_as_flaky_and_merges(
    factory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check keeps a counter outside the tree under test, which a sandbox makes read-only.
    monkeypatch.setenv("FAC_SANDBOX", "none")
    counter = tmp_path / "flaky-runs"
    human = script_suite(
        factory,
        {
            "flaky": f"""#!/bin/sh
n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 ))
echo $n > {counter}
if [ $n -eq 1 ]; then echo "lost the race, first run"; exit 1; fi
echo fine
"""
        },
    )
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: add a test")
    submit("w1")

    mq = run_queue(factory)

    assert counter.read_text().strip() == "2"
    assert mq.stats["flaky"] == 1 and mq.stats["merged"] == 1 and mq.stats["red"] == 0
    [flaky] = events(factory, "flaky")
    assert flaky.worker == "w1" and flaky.payload["failed"] == ["flaky"]
    assert entries(factory)["w1"].state == "merged"
    assert git(factory, "rev-parse", "main") == flaky.payload["sha"]
    assert_main_only_tested(factory, human)


def test_a_branch_red_on_retry_too_is_blamed(factory: Path) -> None:
    script_suite(factory, {"always-red": "#!/bin/sh\necho 'database unreachable' >&2\nexit 3\n"})
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: add a test")
    submit("w1")

    mq = run_queue(factory)

    assert mq.stats["check_runs"] == 2 and mq.stats["red"] == 1 and "flaky" not in mq.stats
    e = entries(factory)["w1"]
    assert e.state == "red" and e.attempts == 2
    [failed] = e.verdict["failed"]
    assert failed["name"] == "always-red" and failed["exit_code"] == 3
    assert "database unreachable" in failed["feedback"]


def test_queue_wait_submit_errors_and_resubmit(factory: Path) -> None:
    script_suite(factory, QUICK)
    wt = spawn_worker(factory, "w1")
    assert_usage_error(run_fac("submit"), "which worker?", "--worker")
    assert_usage_error(run_fac("submit", "--worker", "w1"), "nothing to submit", "commit your work first")
    assert_usage_error(run_fac("submit", "--worker", "nobody"), "no worker named 'nobody'", "w1")
    assert run_fac("queue", "wait", "--timeout", "0.5").returncode == 0

    first = commit(wt, passing_test("w1"), "w1: first try")
    assert run_fac("submit", "--worker", "w1").returncode == 0
    second = commit(wt, {f"{SUT}/tests/test_w1.py": "def test_w1_again():\n    assert True\n"}, "w1: better")
    proc = run_fac("submit", "--json", env={"FAC_WORKER": "w1"})  # as in the worker's pane
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["sha"] == second and len(report["superseded"]) == 1

    waited = run_fac("queue", "wait", "--timeout", "0.5")
    assert waited.returncode == 1 and "timed out after 0.5s with 1 entry pending" in waited.stderr
    rows = json.loads(fac("queue", "--all", "--json").stdout)
    assert [(r["sha"], r["state"]) for r in rows] == [(first, "superseded"), (second, "queued")]

    run = run_fac("queue", "run", "--once")
    assert run.returncode == 0, run.stderr
    assert "merged" in run.stdout
    assert run_fac("queue", "wait", "--timeout", "0.5").returncode == 0
    assert [(r["sha"], r["state"]) for r in json.loads(fac("queue", "--all", "--json").stdout)] == [
        (first, "superseded"),
        (second, "merged"),
    ]
    assert uncached_runs(factory) == 1
    assert git(factory, "show", f"main:{SUT}/tests/test_w1.py").startswith("def test_w1_again")


def test_an_entry_caught_mid_test_is_requeued_and_merges_exactly_once(factory: Path) -> None:

    script_suite(factory, QUICK)
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: add a test")
    qid = submit("w1")
    store = Factory(factory).store
    store.set_entry(qid, state="testing", attempts=1)  # the queue died while testing it
    stale = factory / ".fac" / "tmp" / "cand-dead"
    git(factory, "worktree", "add", "-q", "--detach", str(stale), "main")

    mq = run_queue(factory)

    assert mq.stats["merged"] == 1 and mq.stats["check_runs"] == 1
    assert [e.correlation for e in events(factory, "requeued")] == [f"q{qid}"]
    assert [e.correlation for e in events(factory, "merged")] == [f"q{qid}"]
    assert [m for m in merge_commits(factory) if f"Fac-Queue-Entry: {qid}" in m] == [
        merge_commits(factory)[0]
    ]
    assert len(merge_commits(factory)) == 1
    assert not stale.exists() and str(stale) not in git(factory, "worktree", "list")
    # Running again finds nothing to do and merges nothing twice.
    assert run_queue(factory).stats["merged"] == 0
    assert len(merge_commits(factory)) == 1


def test_a_second_queue_is_refused_while_one_holds_the_lock(factory: Path) -> None:
    import os

    from supervisor.queue import MergeQueue

    holder = MergeQueue(Factory(factory))
    holder.lock()
    try:
        proc = run_fac("queue", "run", "--once")
        assert_usage_error(proc, "already running", f"pid {os.getpid()}")
    finally:
        holder.unlock()
    assert run_fac("queue", "run", "--once").returncode == 0


# --- the human's checkout of main ---


def _ahead_of_main(root: Path, changes: dict[str, str]) -> tuple[str, str]:
    """(old, new): main and a commit on top of it making `changes`, made in a scratch worktree."""
    old = git(root, "rev-parse", "main")
    scratch = root / ".fac" / "tmp" / "scratch"
    git(root, "worktree", "add", "-q", "--detach", str(scratch), old)
    new = commit(scratch, changes, "next")
    git(root, "worktree", "remove", "--force", str(scratch))
    return old, new


def test_a_clean_checkout_of_main_moves_with_main(factory: Path) -> None:
    from supervisor.mainline import move_main

    old, new = _ahead_of_main(factory, {f"{SUT}/NEW.md": "new\n"})

    assert move_main(Factory(factory), old, new)

    assert git(factory, "rev-parse", "main") == new
    assert git(factory, "symbolic-ref", "--short", "HEAD") == "main"
    assert (factory / SUT / "NEW.md").read_text() == "new\n"
    assert git(factory, "status", "--porcelain") == ""


def test_local_edits_to_files_main_does_not_change_are_kept_and_main_moves(factory: Path) -> None:
    from supervisor.mainline import move_main

    old, new = _ahead_of_main(factory, {f"{SUT}/NEW.md": "new\n"})
    readme = factory / SUT / "README.md"
    edited = readme.read_text() + "my own notes, not committed\n"
    readme.write_text(edited)
    (factory / "scratch.txt").write_text("untracked, mine\n")

    assert move_main(Factory(factory), old, new)

    assert git(factory, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(factory, "rev-parse", "HEAD") == new
    assert (factory / SUT / "NEW.md").read_text() == "new\n"
    assert readme.read_text() == edited
    assert (factory / "scratch.txt").read_text() == "untracked, mine\n"
    assert git(factory, "status", "--porcelain").splitlines() == [f" M {SUT}/README.md", "?? scratch.txt"]
    assert events(factory, "checkout-detached") == []


def test_local_edits_to_files_main_changes_are_never_touched(factory: Path) -> None:
    from supervisor.mainline import move_main

    readme = factory / SUT / "README.md"
    old, new = _ahead_of_main(
        factory, {f"{SUT}/README.md": "# rewritten by the queue\n", f"{SUT}/NEW.md": "new\n"}
    )
    edited = readme.read_text() + "my own notes, not committed\n"
    readme.write_text(edited)
    (factory / SUT / "NEW.md").write_text("mine, untracked, same path as main's new file\n")

    assert move_main(Factory(factory), old, new)

    assert git(factory, "rev-parse", "main") == new
    # The checkout stays where the human's edits make sense: detached at the old main.
    assert git(factory, "symbolic-ref", "-q", "HEAD", check=False) == ""
    assert git(factory, "rev-parse", "HEAD") == old
    assert readme.read_text() == edited
    assert (factory / SUT / "NEW.md").read_text() == "mine, untracked, same path as main's new file\n"
    [ev] = events(factory, "checkout-detached")
    assert (ev.payload["old"], ev.payload["new"]) == (old, new)


def test_main_moving_under_the_queue_mid_bisect_leaves_nothing_stuck(
    factory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAC_SANDBOX", "none")  # the check plays a human committing: it writes to the root
    # A check that, on its second run (the bisection's first half), sees a human commit land on
    # main: the compare-and-swap must fail, and every entry must end merged or red, none "testing".
    counter = tmp_path / "runs"
    gate = f"""#!/bin/sh
n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 ))
echo $n > {counter}
if [ $n -eq 2 ]; then
  new=$(git -C {factory} commit-tree -p main -m "human: meanwhile" "main^{{tree}}")
  git -C {factory} update-ref refs/heads/main "$new"
fi
if [ -e "$FAC_CANDIDATE/{SUT}/BROKEN" ]; then echo "BROKEN is present"; exit 1; fi
"""
    human = script_suite(factory, {"gate": gate})
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: fine")
    commit(spawn_worker(factory, "w2"), {f"{SUT}/BROKEN": "x\n"}, "w2: breaks the gate")
    submit("w1")
    submit("w2")

    mq = run_queue(factory)

    states = {n: e.state for n, e in entries(factory).items()}
    assert states == {"w1": "merged", "w2": "red"}
    meanwhile = git(factory, "log", "--format=%H", "--grep=human: meanwhile", "main")
    assert meanwhile and git(factory, "rev-parse", "main^1") == meanwhile
    assert mq.stats["merged"] == 1 and mq.stats["red"] == 1
    assert_main_only_tested(factory, human, meanwhile)


def test_candidate_merge_commits_carry_worker_entry_and_delta_trailers() -> None:
    from supervisor.queue import candidate_message
    from supervisor.store import QueueEntry

    def entry(i: int, delta: str | None = None) -> QueueEntry:
        return QueueEntry(i, f"w{i}", f"fac/w{i}", "0" * 40, delta, "queued", 0, 0.0, 0.0, None, None)

    assert candidate_message(entry(7, "0003-words")) == (
        "Merge fac/w7 (w7)\n\nFac-Worker: w7\nFac-Queue-Entry: 7\nFac-Delta: 0003-words\n"
    )
    assert "Fac-Delta" not in candidate_message(entry(8))


def test_a_factory_without_gate_checks_holds_the_queue_until_it_is_allowed(
    tmp_path: Path, tmux_socket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = fac_ok("init", "bare", cwd=tmp_path).stdout
    assert "no checks yet: the merge queue holds every submission" in out and "[checks.tests]" in out
    root = tmp_path / "bare"
    monkeypatch.chdir(root)
    assert fac_json("init", str(root), cwd=tmp_path)["gate_checks"] == []
    assert fac_json("config")["queue"]["allow_no_checks"] is False
    wt = spawn_worker(root, "w1")
    commit(wt, {"system-under-construction/app.py": "print('untested')\n"})
    entry = submit("w1")

    proc = run_fac("queue", "run", "--once")
    assert proc.returncode == 0, proc.stderr
    assert "no gate checks: nothing would be tested" in proc.stdout
    assert entries(root)["w1"].state == "queued"  # held, not merged, not lost
    assert git(root, "log", "-1", "--format=%s", "main") == "fac init: factory layout"
    (held,) = [e for e in Factory(root).store.events() if e.kind == "queue-held"]
    assert held.payload["entries"] == [entry]
    shown = dashboard_text(root)  # the dashboard shows the hold as a hold, with its reason
    assert "held: no gate checks" in shown and "nothing would be tested" in shown and "fac/w1" in shown

    human_commit(root, {"factory.toml": DEFAULT_TOML + "allow_no_checks = true\n"}, "human: merge untested")
    assert fac_json("config")["queue"]["allow_no_checks"] is True
    fac_ok("queue", "run", "--once")
    assert entries(root)["w1"].state == "merged"


@pytest.mark.parametrize(("gate", "allowed", "hold"), [(0, False, True), (0, True, False), (1, False, False)])
def test_the_queue_holds_only_while_there_is_no_gate_check_and_none_is_allowed(
    gate: int, allowed: bool, hold: bool
) -> None:
    assert planner.hold_for_no_checks(gate, allowed) is hold


def test_submit_inside_a_worktree_submits_that_workers_branch(factory: Path) -> None:
    wt = spawn_worker(factory, "w1")
    sha = commit(wt, passing_test("here"))
    sub = wt / "system-under-construction"  # anywhere inside the worktree

    queued = json.loads(fac_ok("submit", "--json", cwd=sub).stdout)
    assert (queued["worker"], queued["sha"]) == ("w1", sha)
    # Outside any worktree, with no --worker and no $FAC_WORKER, it still asks which worker.
    assert_usage_error(run_fac("submit", cwd=factory), "which worker?", "--worker")


def test_a_red_verdict_from_the_cache_says_its_log_is_an_earlier_runs(factory: Path) -> None:
    script_suite(factory, {"always-red": "#!/bin/sh\necho 'database unreachable' >&2\nexit 3\n"})
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: add a test")

    def full_output(msg: dict[str, Any]) -> str:
        [line] = [ln for ln in msg["body"].splitlines() if ln.startswith("full output")]
        return line

    submit("w1")
    run_queue(factory, retries=0)
    [first] = [m for m in inbox("w1") if m["kind"] == "red"]
    assert full_output(first).startswith("full output: ") and "cache" not in full_output(first)
    first_log = full_output(first).split(": ", 1)[1]
    ran = uncached_runs(factory)

    submit("w1")  # the same commit again: the same tree, answered by the cache
    run_queue(factory, retries=0)
    assert uncached_runs(factory) == ran
    second = [m for m in inbox("w1") if m["kind"] == "red"][-1]
    assert second["id"] != first["id"]
    line = full_output(second)
    assert "this verdict came from the cache" in line and "that earlier run's" in line
    assert line.endswith(first_log)  # it points at the run that really produced the output

    # With a retry, the fresh run's own log is the one the message points at.
    submit("w1")
    run_queue(factory)
    assert uncached_runs(factory) == ran + 1
    third = [m for m in inbox("w1") if m["kind"] == "red"][-1]
    assert third["id"] != second["id"]
    assert full_output(third).startswith("full output: ") and "cache" not in full_output(third)
    assert full_output(third).split(": ", 1)[1] != first_log


def test_the_dashboard_shows_entries_held_by_a_stopped_line_with_its_reason(factory: Path) -> None:
    script_suite(factory, {"always-red": "#!/bin/sh\nexit 3\n"})
    assert run_fac("verify").returncode == 1  # main is red: the line stops
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: add a test")
    submit("w1")
    run_queue(factory)
    assert entries(factory)["w1"].state == "queued"  # waits, not blamed

    shown = dashboard_text(factory)
    assert "held: line stopped" in shown and "only fixes merge" in shown, shown
    assert "always-red" in shown and "w1 fac/w1" in shown


def test_the_dashboard_shows_a_red_verdict_with_its_prefix_once(factory: Path) -> None:
    from supervisor import dashboard

    script_suite(factory, {"always-red": "#!/bin/sh\nexit 3\n"})
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: add a test")
    submit("w1")
    run_queue(factory)

    cell = dashboard.snapshot(Factory(factory))["last_verdict"]["w1"]
    assert cell == "red: always-red"


def test_fac_queue_shows_a_testing_entry_its_elapsed_time_and_its_running_check(factory: Path) -> None:
    # `slow` runs until the test lets it end: meanwhile `fac queue` must say what the entry is doing.
    import threading

    go = factory.parent / "go"
    script_suite(
        factory,
        {
            "fast": "#!/bin/sh\nexit 0\n",
            "slow": f"#!/bin/sh\nfor i in $(seq 1200); do [ -e {go} ] && exit 0; sleep 0.1; done; exit 1\n",
        },
    )
    commit(spawn_worker(factory, "w1"), {f"{SUT}/README.md": "more\n"}, "w1: readme")
    submit("w1")
    runner = threading.Thread(target=run_queue, args=(factory,))
    runner.start()
    try:
        row = wait_for(
            lambda: next(
                (r for r in fac_json("queue") if r["state"] == "testing" and r["running"] == ["slow"]), None
            ),
            timeout=90,
            message="the testing entry to show `slow` as its running check",
        )
        assert row["elapsed"] is not None and row["elapsed"] >= 0
        assert isinstance(row["testing_since"], float) and row["testing_since_iso"].startswith("20")
        assert row["progress"].startswith("testing ") and row["progress"].endswith(": running slow")
        text = fac_ok("queue").stdout
        assert "testing" in text and ": running slow" in text
        # the dashboard says the same, from the same rows
        assert re.search(r"w1 .*testing \d+s: running slow", dashboard_text(factory)), dashboard_text(factory)
    finally:
        go.touch()
        runner.join(timeout=120)
    assert entries(factory)["w1"].state == "merged"
    done = fac_json("queue")
    assert all(r["running"] == [] and r["elapsed"] is None and r["progress"] == "" for r in done)


def test_a_head_caught_under_test_when_its_worker_resubmitted_is_superseded_not_merged(factory: Path) -> None:
    # The first head was under test when the queue died; its worker submitted a better head since
    # (which supersedes only queued entries). Back up, the queue must not test or merge the old one.
    script_suite(factory, QUICK)
    wt = spawn_worker(factory, "w1")
    first = commit(wt, passing_test("w1"), "w1: first try")
    old = submit("w1")
    Factory(factory).store.start_testing([old])  # a queue took it, then died
    second = commit(wt, {f"{SUT}/tests/test_w1.py": "def test_w1_again():\n    assert True\n"}, "w1: better")
    new = submit("w1")
    mq = run_queue(factory)
    rows = [(r["sha"], r["state"]) for r in json.loads(fac("queue", "--all", "--json").stdout)]
    assert rows == [(first, "superseded"), (second, "merged")]
    assert mq.stats["check_runs"] == 1 and git(factory, "rev-parse", "main") != first
    assert [e.payload["by"] for e in events(factory, "superseded")] == [f"q{new}"]
