"""The speculative pipeline (`[executor] slots` > 1) through the real queue: real git, real check
processes, real SQLite, workers spawned on a private tmux server, submissions arriving while the
queue runs in a thread (as in a factory: `fac submit` from the panes, the queue in its window).

No timing thresholds: the checks synchronise through files outside the tree under test (the
sandbox is off for that), and the assertions hold whatever the order of arrivals.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import git, wait_for
from queue_helpers import (
    SUT,
    assert_main_only_tested,
    commit,
    entries,
    events,
    fac,
    inbox,
    merge_commits,
    passing_test,
    run_queue,
    runs,
    script_suite,
    spawn_worker,
    submit,
)

from supervisor import line
from supervisor.factory import Factory
from supervisor.queue import MergeQueue


@contextmanager
def queue_in_thread(root: Path, slots: int) -> Iterator[MergeQueue]:
    """The queue running (not `once`: it waits for submissions) until the block ends."""
    stop = threading.Event()
    mq = MergeQueue(Factory(root), slots=slots)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            mq.run(should_stop=stop.is_set)
        except BaseException as e:  # surfaced by the test, not lost in the thread
            failed.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield mq
    finally:
        stop.set()
        t.join(timeout=120)
    assert not failed, failed
    assert not t.is_alive(), "the queue did not stop"


def decided(root: Path, names: list[str]) -> dict[str, str] | None:
    """Every named worker's latest entry, once none is open any more."""
    got = {n: e.state for n, e in entries(root).items() if n in names}
    return got if len(got) == len(names) and not {"queued", "testing"} & set(got.values()) else None


def merged_entry_ids(root: Path) -> list[int]:
    """The queue entries of main's merge commits, oldest first."""
    ids = [int(m) for msg in merge_commits(root) for m in re.findall(r"Fac-Queue-Entry: (\d+)", msg)]
    return ids[::-1]


@pytest.fixture
def sig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory outside every tree for checks and the test to signal through (sandbox off)."""
    monkeypatch.setenv("FAC_SANDBOX", "none")
    d = tmp_path / "signals"
    d.mkdir()
    return d


def test_candidates_built_on_a_red_one_are_cancelled_and_requeued_never_blamed(
    factory: Path, sig: Path
) -> None:
    # w1 breaks the gate. Its candidate waits until the one built on top of it (w1 + w2) runs,
    # then fails; the speculative one would run forever, so only a cancel (its process group
    # killed) ends it. w2 alone, on main, is green.
    gate = f"""#!/bin/sh
if [ -e "$FAC_CANDIDATE/{SUT}/BROKEN" ] && [ -e "$FAC_CANDIDATE/{SUT}/W2" ]; then
  echo $$ > {sig}/speculative-started
  while true; do sleep 0.05; done
  touch {sig}/speculative-finished
fi
if [ -e "$FAC_CANDIDATE/{SUT}/BROKEN" ]; then
  while [ ! -e {sig}/speculative-started ]; do sleep 0.05; done
  echo "BROKEN is present"; exit 1
fi
echo fine
"""
    human = script_suite(factory, {"gate": gate})
    commit(spawn_worker(factory, "w1"), {f"{SUT}/BROKEN": "x\n"}, "w1: breaks the gate")
    commit(spawn_worker(factory, "w2"), {f"{SUT}/W2": "fine\n"}, "w2: fine")

    with queue_in_thread(factory, slots=2):
        submit("w1")
        wait_for(lambda: entries(factory)["w1"].state == "testing", timeout=60, message="w1 under test")
        submit("w2")
        states = wait_for(lambda: decided(factory, ["w1", "w2"]), timeout=120, message="both decided")

    assert states == {"w1": "red", "w2": "merged"}
    # The speculative candidate was cancelled: its check was killed mid-run and recorded nothing.
    assert (sig / "speculative-started").exists()
    assert not (sig / "speculative-finished").exists()
    pid = int((sig / "speculative-started").read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    [cancelled] = [
        e for e in events(factory, "speculation-cancelled") if e.payload["reason"].startswith("built on")
    ]
    [speculative] = cancelled.payload["candidates"]
    w2 = entries(factory)["w2"]
    assert cancelled.payload["entries"] == [w2.id]
    assert speculative not in {r["sha"] for r in runs(factory)}
    # w2 went back in line, not blamed, and merged on its own run (on main, without w1).
    requeued = [e for e in events(factory, "requeued") if e.worker == "w2"]
    assert [e.payload["reason"] for e in requeued] == [cancelled.payload["reason"]]
    assert [e.worker for e in events(factory, "red")] == ["w1"]
    assert [m["kind"] for m in inbox("w2")] == ["merged"]
    assert not (factory / SUT / "BROKEN").exists() and (factory / SUT / "W2").exists()
    assert_main_only_tested(factory, human)


@pytest.mark.parametrize("slots", [2, 3])
def test_live_arrivals_merge_every_green_branch_once_in_order_and_only_tested_commits(
    factory: Path, slots: int
) -> None:
    # A real check per candidate (a process reading the tree under test); two of seven break it.
    human = script_suite(
        factory,
        {
            "gate": f"""#!/bin/sh
for f in "$FAC_CANDIDATE/{SUT}"/BROKEN-*; do
  [ -e "$f" ] && {{ echo "broken: $f"; exit 1; }}
done
sleep 0.2
echo fine
"""
        },
    )
    names = [f"w{i}" for i in range(1, 8)]
    bad = {"w3", "w6"}
    for name in names:
        change = {f"{SUT}/BROKEN-{name}": "x\n"} if name in bad else passing_test(name)
        commit(spawn_worker(factory, name), change, f"{name}: change")

    with queue_in_thread(factory, slots=slots):
        ids = {}
        for name in names:  # they arrive while the queue runs
            ids[name] = submit(name)
        states = wait_for(lambda: decided(factory, names), timeout=180, message="every entry decided")

    assert states == {n: "red" if n in bad else "merged" for n in names}
    assert [e.worker for e in events(factory, "red")] == sorted(bad)
    merged = merged_entry_ids(factory)
    # every green branch merged exactly once, in the order they were submitted
    assert merged == [ids[n] for n in names if n not in bad]
    for name in names:
        kinds = [m["kind"] for m in inbox(name)]
        assert kinds == (["red"] if name in bad else ["merged"]), (name, kinds)
    assert_main_only_tested(factory, human)


def test_slots_come_from_factory_toml_and_one_slot_is_todays_queue(factory: Path) -> None:
    names = ["w1", "w2", "w3", "w4"]
    for name in names:
        commit(spawn_worker(factory, name), passing_test(name), f"{name}: add a test")
    human_toml = (factory / "factory.toml").read_text(encoding="utf-8")
    for slots, want_runs in ((1, 1), (2, 1)):
        (factory / "factory.toml").write_text(
            human_toml + f"\n[executor]\nslots = {slots}\n", encoding="utf-8"
        )
        git(factory, "commit", "-qam", f"human: {slots} slot(s)")
        for name in names:
            commit(factory / ".fac" / "worktrees" / name, passing_test(f"{name}_{slots}"), f"{name}: more")
            submit(name)
        before = len(events(factory, "candidate"))
        res = fac("queue", "run", "--once")
        assert res.exit_code == 0, res.output
        # One slot: the four in one candidate, as ever. Two, with nothing red lately: one candidate
        # too (no hedge: see the next test). (The human's commit to main is judged too: not counted.)
        tested = events(factory, "candidate")[before:]
        assert len(tested) == want_runs
        assert sorted(i for e in tested for i in e.payload["entries"]) == sorted(
            e.id for e in entries(factory).values()
        )
        assert {n: e.state for n, e in entries(factory).items()} == dict.fromkeys(names, "merged")
    shown = fac("config", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["executor"]["slots"] == 2
    assert "slots=2" in fac("config").output
    # --slots overrides the file for one run
    for name in names:
        commit(factory / ".fac" / "worktrees" / name, passing_test(f"{name}_cli"), f"{name}: more")
        submit(name)
    before = len(events(factory, "candidate"))
    res = fac("queue", "run", "--once", "--slots", "1")
    assert res.exit_code == 0, res.output
    assert len(events(factory, "candidate")[before:]) == 1


def test_bad_slots_is_a_clear_config_error(factory: Path) -> None:
    (factory / "factory.toml").write_text("[executor]\nslots = 0\n", encoding="utf-8")
    res = fac("config")
    assert res.exit_code == 2
    assert "[executor] slots: expected an integer >= 1, got 0" in res.output


def test_one_slot_runs_the_queue_of_before(factory: Path) -> None:
    # The same six branches, one red: one slot searches one probe at a time, exactly as before
    # (the binary search and its cache hit), and lands everything green.
    script_suite(factory, {"gate": f'#!/bin/sh\n[ -e "$FAC_CANDIDATE/{SUT}/BROKEN" ] && exit 1\necho fine\n'})
    names = [f"w{i}" for i in range(1, 7)]
    for name in names:
        change = {f"{SUT}/BROKEN": "x\n"} if name == "w4" else passing_test(name)
        commit(spawn_worker(factory, name), change, f"{name}: change")
        submit(name)

    mq = run_queue(factory, slots=1)

    assert {n: e.state for n, e in entries(factory).items()} == {
        **dict.fromkeys(names, "merged"),
        "w4": "red",
    }
    assert not events(factory, "speculation-cancelled")
    assert mq.stats["cache_hits"] >= 1
    assert mq.chain == []


def test_main_moving_under_the_pipeline_rebuilds_it_and_lands_only_tested_commits(
    factory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAC_SANDBOX", "none")  # the check plays a human committing: it writes to the root
    once = tmp_path / "once"
    # The first gate run (mkdir is atomic: exactly one of the runs at once wins) sees a human commit
    # land on main meanwhile: the head's compare-and-swap fails, the chain is cancelled and rebuilt
    # on the new main, and every branch merges once.
    gate = f"""#!/bin/sh
if [ -e "$FAC_CANDIDATE/{SUT}/BROKEN" ]; then echo broken; exit 1; fi
if mkdir {once} 2>/dev/null; then
  new=$(git -C {factory} commit-tree -p main -m "human: meanwhile" "main^{{tree}}")
  git -C {factory} update-ref refs/heads/main "$new"
fi
echo fine
"""
    human = script_suite(factory, {"gate": gate})
    # A red verdict first, so that the queue hedges: the three arrivals go in a chain of two.
    commit(spawn_worker(factory, "w0"), {f"{SUT}/BROKEN": "x\n"}, "w0: breaks the gate")
    submit("w0")
    run_queue(factory, slots=2)
    names = ["w1", "w2", "w3"]
    for name in names:
        commit(spawn_worker(factory, name), passing_test(name), f"{name}: fine")
        submit(name)

    mq = run_queue(factory, slots=2)

    states = {n: e.state for n, e in entries(factory).items()}
    assert states == {**dict.fromkeys(names, "merged"), "w0": "red"}
    meanwhile = git(factory, "log", "--format=%H", "--grep=human: meanwhile", "main")
    assert meanwhile
    assert [e.payload["reason"] for e in events(factory, "speculation-cancelled")][:1] == [
        "main moved under the queue"
    ]
    assert mq.stats["merged"] == 3
    assert len(merged_entry_ids(factory)) == 3
    assert_main_only_tested(factory, human, meanwhile)


def test_a_green_candidate_in_flight_when_the_line_stops_waits_for_the_human_and_lands_after(
    factory: Path, sig: Path
) -> None:
    # Every run waits for the test's go; w1's and w2's candidates are both under test when the line
    # stops (jidoka: only fixes merge). Green, they must still wait for the human.
    gate = f"""#!/bin/sh
touch {sig}/started-$$
while [ ! -e {sig}/go ]; do sleep 0.05; done
echo fine
"""
    human = script_suite(factory, {"gate": gate})
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: fine")
    commit(spawn_worker(factory, "w2"), passing_test("w2"), "w2: fine")
    main_before = git(factory, "rev-parse", "main")
    fac_ = Factory(factory)

    with queue_in_thread(factory, slots=2):
        submit("w1")
        wait_for(lambda: entries(factory)["w1"].state == "testing", timeout=60, message="w1 under test")
        submit("w2")
        wait_for(lambda: len(list(sig.glob("started-*"))) >= 2, timeout=60, message="two candidates running")
        assert line.stop(fac_, "a human pulled the cord", main_before)
        (sig / "go").touch()
        wait_for(
            lambda: {e.worker for e in events(factory, "requeued")} >= {"w1", "w2"},
            timeout=60,
            message="both back in line",
        )
        assert git(factory, "rev-parse", "main") == main_before  # nothing landed while stopped
        assert {n: e.state for n, e in entries(factory).items()} == {"w1": "queued", "w2": "queued"}
        assert line.resume(fac_, by="human")
        states = wait_for(lambda: decided(factory, ["w1", "w2"]), timeout=120, message="both decided")

    assert states == {"w1": "merged", "w2": "merged"}
    assert not events(factory, "red")
    # w1 (green, on main) went back in line itself; w2, built on it, with the cancelled chain.
    reasons = {e.worker: e.payload["reason"] for e in events(factory, "requeued")}
    assert reasons == {"w1": "the line stopped: only fixes merge", "w2": "the line stopped"}
    assert_main_only_tested(factory, human)


def test_arrivals_go_in_one_candidate_until_a_red_verdict_then_spread_over_the_free_slots(
    factory: Path,
) -> None:
    script_suite(factory, {"gate": f'#!/bin/sh\n[ -e "$FAC_CANDIDATE/{SUT}/BROKEN" ] && exit 1\necho fine\n'})
    names = ["w1", "w2", "w3", "w4"]
    for name in names:
        commit(spawn_worker(factory, name), passing_test(name), f"{name}: add a test")
        submit(name)
    run_queue(factory, slots=2)
    # Nothing failed lately: the four in one candidate, one gate run, the other slot left free.
    first = events(factory, "candidate")
    assert [len(e.payload["entries"]) for e in first] == [4]

    commit(spawn_worker(factory, "w5"), {f"{SUT}/BROKEN": "x\n"}, "w5: breaks the gate")
    submit("w5")
    run_queue(factory, slots=2)
    assert entries(factory)["w5"].state == "red"
    for name in names:
        commit(factory / ".fac" / "worktrees" / name, passing_test(f"{name}_again"), f"{name}: more")
        submit(name)
    before = len(events(factory, "candidate"))
    run_queue(factory, slots=2)
    # A red verdict among the latest: the four are spread over both slots, the second on the first.
    after = events(factory, "candidate")[before:]
    assert [len(e.payload["entries"]) for e in after] == [2, 2]
    assert after[1].payload["base"] == after[0].payload["sha"]
    states = {n: e.state for n, e in entries(factory).items()}
    assert states == {**dict.fromkeys(names, "merged"), "w5": "red"}
