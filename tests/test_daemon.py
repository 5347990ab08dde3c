"""The supervisor (issue 4): liveness and restarts, receipts, jidoka, andon, kanban, crash recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import (
    capture_pane,
    fac_json,
    fac_ok,
    git,
    pane_script,
    run_fac,
    running_supervisor,
    session_of,
    tmux,
    wait_for,
)
from queue_helpers import commit, passing_test

from supervisor import line, tasks
from supervisor.daemon import Supervisor
from supervisor.factory import Factory
from supervisor.queue import MergeQueue


def configure(root: Path, text: str) -> None:
    """Append to factory.toml and commit it on main (gate checks and config come from main)."""
    with open(root / "factory.toml", "a", encoding="utf-8") as f:
        f.write("\n" + text)
    git(root, "commit", "-qam", "configure the test factory")


def worker(root: Path, name: str):
    return Factory(root).store.worker(name)


def spawn(root: Path, name: str, cmd: str, role: str = "worker") -> None:
    fac_ok("spawn", role, "--no-up", "--name", name, "--cmd", cmd, cwd=root)


def test_a_killed_agent_is_restarted_in_its_worktree_and_finishes(factory: Path) -> None:
    configure(factory, "[supervisor]\nrestart_delays = [0]\n")
    # In its run directory: the only place outside its worktree its sandbox lets it write.
    run_dir = factory / ".fac" / "runs" / "w1"
    marker, done = run_dir / "first-run", run_dir / "done"
    # First run: the agent is killed (SIGKILL). Second run: it finishes in its own worktree.
    cmd = (
        f"if [ -f {marker} ]; then pwd > {done}; git branch --show-current >> {done}; exit 0; "
        f"else touch {marker}; kill -9 $$; fi"
    )
    spawn(factory, "w1", cmd)
    with running_supervisor(factory):
        wait_for(done.exists, 60, "the restarted agent to finish")
        # It said done, like a worker whose work merged; it exited without submitting anything.
        wait_for(lambda: worker(factory, "w1").state == "exited", 60, "w1 to have exited")
    lines = done.read_text().split()
    assert lines[0] == str(factory / ".fac" / "worktrees" / "w1")
    assert lines[1] == "fac/w1"
    w = worker(factory, "w1")
    assert w.restarts == 1
    kinds = [e.kind for e in Factory(factory).store.events(worker="w1")]
    assert "crashed" in kinds and "restarted" in kinds and "finished" in kinds


def test_a_supervisor_pass_that_saw_the_window_vanish_does_not_revive_a_killed_worker(
    factory: Path, tmux_socket: str
) -> None:
    """Issue 12, item 6: `fac kill --rm` used to kill the window before the row went, and a
    supervisor pass in between restarted the agent, leaving it running untracked."""
    from supervisor import workers

    configure(factory, "[supervisor]\nrestart_delays = [0]\n")
    spawn(factory, "w1", "sleep 600")
    fac = Factory(factory)
    sup = Supervisor(fac)
    stale = fac.store.worker("w1")  # what a pass read just before the kill
    workers.kill(fac, "w1")  # stopped, then the window goes
    assert sup.check_worker(stale, None, time.time()) is None  # it sees no window: not a crash
    assert fac.store.worker("w1").state == "stopped"
    assert workers.restart(fac, "w1", reason="stale pass") is None  # nor a restart
    assert "w1" not in [p.window_name for p in fac.panes()]
    assert "crashed" not in [e.kind for e in fac.store.events(worker="w1")]


def test_a_kill_while_a_restart_makes_the_window_leaves_no_window(
    factory: Path, tmux_socket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor import workers

    spawn(factory, "w1", "sleep 600")
    fac = Factory(factory)
    with fac.store.tx() as db:
        fac.store.update_worker("w1", db=db, state="crashed")
    fac.tmux.kill_window(fac.store.worker("w1").window_id)
    real_new_window = Factory.new_window

    def new_window_then_kill(self: Factory, *args: object, **kw: object) -> tuple[str, str]:
        made = real_new_window(self, *args, **kw)  # type: ignore[arg-type]
        workers.kill(Factory(factory), "w1", rm=True, force=True)  # `fac kill --rm` from another shell
        return made

    monkeypatch.setattr(Factory, "new_window", new_window_then_kill)
    assert workers.restart(fac, "w1", reason="crashed") is None
    assert fac.store.worker("w1") is None
    assert [p.window_name for p in fac.panes()] == []


def test_a_crash_loop_pulls_the_andon_cord(factory: Path) -> None:
    configure(factory, "[supervisor]\nrestart_delays = [0]\ncrash_loop = 3\n")
    spawn(factory, "loopy", "echo broken; exit 7")
    with running_supervisor(factory):
        wait_for(lambda: worker(factory, "loopy").state == "needs-human", 60, "the crash loop to escalate")
    sup = Supervisor(Factory(factory))
    sup.reconcile()
    sup.reconcile()  # more passes: a parked worker is not restarted again
    w = worker(factory, "loopy")
    assert w.restarts == 2
    assert "crash loop: 3 crashes" in w.question
    status = fac_json("status", cwd=factory)
    assert [x["question"] for x in status["workers"] if x["name"] == "loopy"][0].startswith("crash loop")


def test_an_agent_whose_program_cannot_run_is_not_restarted_and_status_says_why(factory: Path) -> None:
    configure(factory, "[supervisor]\nrestart_delays = [0]\ncrash_loop = 100\n")
    # spawn cannot know what an inline script runs: bash starts, then its program is not found (127)
    spawn(factory, "nofile", "bash -c 'exec ./gone-4711.sh'")
    with running_supervisor(factory):
        wait_for(
            lambda: worker(factory, "nofile").state == "needs-human", 60, "the supervisor to give up at once"
        )
    sup = Supervisor(Factory(factory))
    sup.reconcile()
    sup.reconcile()  # more passes: still not restarted
    w = worker(factory, "nofile")
    assert w.restarts == 0
    assert w.question.startswith("its program cannot run (exit 127 (command not found)): not restarting it")
    crashed = [e.payload for e in Factory(factory).store.events(worker="nofile") if e.kind == "crashed"]
    assert len(crashed) == 1 and crashed[0]["cannot_run"] is True
    text = fac_ok("status", cwd=factory).stdout
    assert "nofile asks: its program cannot run (exit 127 (command not found))" in text, text


ACKING_AGENT = r"""
while IFS= read -r line; do
  case "$line" in
    *"(message "*) id=$(printf '%s' "$line" | sed -E 's/.*\(message ([0-9]+):.*/\1/')
                   until fac inbox --ack "$id" >/dev/null 2>&1; do sleep 0.2; done  # its channel may be down
                   echo "ACKED $id" ;;
  esac
done
"""


def test_a_message_is_delivered_once_with_a_receipt(factory: Path, tmux_socket: str) -> None:
    configure(factory, "[supervisor]\nredeliver = 600\n")
    script = pane_script(factory, "acking-agent.sh", ACKING_AGENT)  # where its sandbox can read it
    spawn(factory, "reader", f"bash --norc --noprofile {script}")
    spawn(factory, "deaf", "sleep 600")  # never acknowledges anything
    store = Factory(factory).store
    mid = fac_json("send", "reader", "please rebase", cwd=factory)["id"]  # pasted once, here
    with running_supervisor(factory):  # the reader acknowledges through its channel
        wait_for(lambda: store.message(mid).acked_at is not None, 60, "the receipt")
    toml = factory / "factory.toml"
    toml.write_text(toml.read_text().replace("redeliver = 600", "redeliver = 0.2"))
    git(factory, "commit", "-qam", "redeliver fast")
    deaf_mid = fac_json("send", "deaf", "are you there?", cwd=factory)["id"]
    with running_supervisor(factory):
        wait_for(
            lambda: store.message(deaf_mid).attempts >= 3, 60, "redelivery of the unacknowledged message"
        )
    assert store.message(mid).attempts == 1, "an acknowledged message must never be pasted again"
    pane = capture_pane(tmux_socket, f"={session_of()}:=reader")
    assert pane.count("please rebase") == 1
    assert f"ACKED {mid}" in pane


def test_a_red_main_stops_the_line_and_a_fix_restarts_it(factory: Path) -> None:
    # A human pushes a broken test straight to main.
    test = factory / "system-under-construction" / "tests" / "test_broken.py"
    test.write_text("def test_main_is_broken():\n    assert 'main' == 'green'\n")
    git(factory, "add", "-A")
    git(factory, "commit", "-qm", "a human breaks main")
    proc = run_fac("verify", cwd=factory)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    status = run_fac("status", cwd=factory).stdout
    stopped = run_fac("line", cwd=factory)
    assert stopped.returncode == 1 and "STOPPED" in stopped.stdout  # a script can wait on it
    as_json = run_fac("line", "--json", cwd=factory)
    assert as_json.returncode == 1 and "test_main_is_broken" in json.loads(as_json.stdout)["reason"]
    assert "STOPPED" in status

    spawn(factory, "w1", "sleep 600")
    spawn(factory, "fix", "sleep 600", role="fixer")
    with running_supervisor(factory):
        wait_for(
            lambda: any(m.kind == "line" for m in Factory(factory).store.messages("w1")),
            10,
            "the line-stopped notice to reach w1",
        )
    commit(factory / ".fac/worktrees/w1", passing_test("feature"))
    fac_ok("submit", "--worker", "w1", cwd=factory)
    fix_wt = factory / ".fac/worktrees/fix"
    commit(
        fix_wt,
        {
            "system-under-construction/tests/test_broken.py": (
                "def test_main_is_broken():\n    assert 'main' != 'green'\n"
            )
        },
        "fix main",
    )
    fac_ok("submit", "--worker", "fix", cwd=factory)

    fac = Factory(factory)
    MergeQueue(fac).run(once=True)
    # The fix merged, verify went green, the line resumed, and only then did w1 merge.
    assert not line.get(fac).stopped
    states = {e.worker: e.state for e in fac.store.queue()}
    assert states == {"fix": "merged", "w1": "merged"}
    order = [e.worker for e in fac.store.events() if e.kind in ("merged", "line-resumed")]
    assert order.index("fix") < order.index(None) < order.index("w1")


def test_ask_and_answer_round_trip(factory: Path) -> None:
    spawn(factory, "w1", "sleep 600")
    fac_ok("ask", "Should averages round?", cwd=factory, env={"FAC_WORKER": "w1"})
    w = fac_json("status", cwd=factory)["workers"][0]
    assert (w["state"], w["question"]) == ("needs-human", "Should averages round?")
    assert "Should averages round?" in run_fac("status", "--json", cwd=factory).stdout
    fac_ok("answer", "w1", "No: return the exact mean.", cwd=factory)
    w = fac_json("status", cwd=factory)["workers"][0]
    assert (w["state"], w["question"]) == ("working", None)
    inbox = fac_json("inbox", "--worker", "w1", cwd=factory)
    assert inbox[-1]["kind"] == "answer" and "No: return the exact mean." in inbox[-1]["body"]
    proc = run_fac("answer", "w1", "again?", cwd=factory)
    assert proc.returncode == 2 and "no open question" in proc.stderr


def test_the_wip_limit_holds_when_tasks_are_pulled(factory: Path) -> None:
    configure(factory, "[supervisor]\nmax_workers = 2\n")
    for i in range(4):
        fac_ok("task", "add", f"task {i}", "--cmd", "sleep 600", cwd=factory)
    fac = Factory(factory)
    sup = Supervisor(fac)
    sup.reconcile()
    sup.reconcile()
    assert tasks.wip(fac) == 2
    assert [t.state for t in tasks.all_tasks(fac)] == ["assigned", "assigned", "todo", "todo"]
    first = tasks.all_tasks(fac)[0].worker
    fac_ok("kill", first, cwd=factory)
    sup.reconcile()
    assert tasks.wip(fac) == 2
    # The killed worker's task used to stay assigned forever; it is abandoned, with the reason.
    assert [t.state for t in tasks.all_tasks(fac)] == ["abandoned", "assigned", "assigned", "todo"]
    assert fac_json("task", cwd=factory)[2]["worker"]
    assert (
        fac_json("task", "ls", cwd=factory)[0]["reason"]
        == f"its worker {first} was stopped before its work merged"
    )


def test_kill_9_of_supervisor_and_queue_mid_batch_then_up_merges_every_branch_once(
    factory: Path, tmux_socket: str
) -> None:
    configure(factory, '[checks.slow]\nrun = ["sleep", "2"]\nstage = ["gate"]\n')
    for i in range(3):
        spawn(factory, f"w{i}", "sleep 600")
        commit(factory / f".fac/worktrees/w{i}", passing_test(f"w{i}"), f"work {i}")
        fac_ok("submit", "--worker", f"w{i}", cwd=factory)
    fac_ok("up", cwd=factory)
    fac = Factory(factory)
    wait_for(lambda: fac.store.queue(("testing",)), 60, "the queue to start testing a batch")

    def pane_pid(window: str) -> int:
        return int(
            tmux(
                tmux_socket, "display-message", "-p", "-t", f"={session_of()}:={window}", "#{pane_pid}"
            ).stdout
        )

    os.kill(pane_pid("merge-queue"), signal.SIGKILL)
    os.kill(pane_pid("supervisor"), signal.SIGKILL)
    fac_ok("up", cwd=factory)  # restarts both windows; state comes back from SQLite, git and tmux
    fac_ok("queue", "wait", "--timeout", "60", cwd=factory)
    entries = fac.store.queue()
    assert sorted((e.worker, e.state) for e in entries) == [
        ("w0", "merged"),
        ("w1", "merged"),
        ("w2", "merged"),
    ]
    merges = git(factory, "log", "--first-parent", "--format=%s", "main").splitlines()
    for i in range(3):
        assert sum(1 for m in merges if m.startswith(f"Merge fac/w{i} ")) == 1, merges
    assert {w["name"] for w in fac_json("status", cwd=factory)["workers"]} == {"w0", "w1", "w2"}


def test_32_processes_submitting_reading_and_hooking_at_once_lose_no_update(factory: Path) -> None:
    from supervisor import workers as workersmod

    fac = Factory(factory)
    names = [f"p{i:02d}" for i in range(32)]
    with fac.store.tx() as db:
        for n in names:
            fac.store.add_worker(
                db,
                name=n,
                role="worker",
                runtime="command",
                branch=f"fac/{n}",
                worktree=str(factory / n),
                state="working",
            )
    base = git(factory, "rev-parse", "main")
    tree = git(factory, "rev-parse", "main^{tree}")
    for n in names:  # one commit per branch, made with plumbing (no worktrees needed)
        sha = subprocess.run(
            ["git", "commit-tree", tree, "-p", base, "-m", n],
            cwd=factory,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        git(factory, "update-ref", f"refs/heads/fac/{n}", sha)
    del workersmod
    procs = [
        subprocess.Popen(
            [
                "bash",
                "--norc",
                "--noprofile",
                "-c",
                "fac submit --worker $W >/dev/null && fac hook stop --worker $W"
                " && fac inbox --worker $W >/dev/null",
            ],
            cwd=factory,
            env={**os.environ, "W": n, "PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in names
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    entries = fac.store.queue(("queued",))
    assert sorted(e.worker for e in entries) == names
    events = fac.store.events()
    assert sum(1 for e in events if e.kind == "submitted") == 32
    assert sum(1 for e in events if e.kind == "hook:stop") == 32
    # The stop hook right after each submit did not paper over the queue's state (issue 12, item 7).
    assert {w.name: w.state for w in fac.store.workers()} == dict.fromkeys(names, "queued")
    assert json.loads(json.dumps([e.id for e in entries]))  # ids are distinct integers
    assert len({e.id for e in entries}) == 32


def test_auto_fix_spawns_a_fixer_whose_fix_restarts_the_line(factory: Path) -> None:
    fix = (
        "printf 'def test_main_is_broken():\\n    assert True\\n'"
        " > system-under-construction/tests/test_broken.py"
        " && git commit -qam 'fix main' && fac submit"
    )
    configure(factory, f'[supervisor]\nauto_fix = true\nfixer_command = "{fix}"\n')
    test = factory / "system-under-construction" / "tests" / "test_broken.py"
    test.write_text("def test_main_is_broken():\n    assert False\n")
    git(factory, "add", "-A")
    git(factory, "commit", "-qm", "a human breaks main")
    assert run_fac("verify", cwd=factory).returncode == 1
    fac = Factory(factory)
    # The supervisor sees the stopped line: notices, and a fixer with the failure as its task, which
    # submits through its channel.
    with running_supervisor(factory):
        wait_for(lambda: fac.store.queue(("queued",)), 60, "the fixer's submission")
    fixers = [w for w in fac.store.workers() if w.role == "fixer"]
    assert len(fixers) == 1 and "main is red" in fixers[0].task
    MergeQueue(fac).run(once=True)
    assert not line.get(fac).stopped
    assert fac.store.queue()[0].state == "merged"
    kinds = [e.kind for e in fac.store.events()]
    assert kinds.index("line-stopped") < kinds.index("merged") < kinds.index("line-resumed")


def test_approved_deltas_are_pulled_by_new_workers_under_the_wip_limit(factory: Path) -> None:
    configure(factory, '[supervisor]\nmax_workers = 1\nworker_command = "sleep 600"\n')
    statement = "`char_count` MUST count characters. [check: tests]"
    for title in ("Count characters", "Count vowels"):
        fac_ok("delta", "new", title, "--statement", statement, "--check", "tests", cwd=factory)
    fac_ok("delta", "approve", "1", cwd=factory)
    fac_ok("delta", "approve", "2", cwd=factory)
    fac = Factory(factory)
    Supervisor(fac).reconcile()
    (w,) = fac.store.workers()
    assert w.delta == "0001" and "Implement delta 0001: Count characters" in w.task
    assert fac_json("delta", "show", "1", cwd=factory)["status"] == "in-progress"
    assert [v.id for v in tasks.waiting_deltas(fac)] == ["0002"]  # the WIP limit holds it back
    fac_ok("kill", w.name, cwd=factory)
    Supervisor(fac).reconcile()
    assert sorted(x.delta for x in fac.store.workers() if x.state != "stopped") == ["0002"]


def test_the_line_notices_say_who_fixes_main_and_tell_everyone_when_it_runs_again(factory: Path) -> None:
    broken = factory / "system-under-construction" / "tests" / "test_broken.py"
    broken.write_text("def test_main_is_broken():\n    assert 'main' == 'green'\n")
    git(factory, "add", "-A")
    git(factory, "commit", "-qm", "a human breaks main")
    assert run_fac("verify", cwd=factory).returncode == 1
    spawn(factory, "w1", "sleep 600")
    spawn(factory, "w2", "sleep 600")

    def line_messages(name: str) -> list[str]:
        return [m.body for m in Factory(factory).store.messages(name) if m.kind == "line"]

    with running_supervisor(factory):
        wait_for(lambda: all(line_messages(n) for n in ("w1", "w2")), 10, "the line-stopped notices")
        (stopped,) = line_messages("w1")
        assert "LINE STOPPED" in stopped and "test_main_is_broken" in stopped
        assert "a fixer is on it" not in stopped  # there is none
        assert "no fixer is on it yet: a human must fix main" in stopped

        broken.unlink()
        git(factory, "add", "-A")
        git(factory, "commit", "-qm", "a human fixes main")
        sha = git(factory, "rev-parse", "main")
        fac_ok("verify", cwd=factory)
        assert fac_ok("line", cwd=factory).stdout.strip() == "running"  # exit 0 again
        assert fac_json("status", cwd=factory)["line"]["main_sha"] == sha  # not the red one
        for name in ("w1", "w2"):
            wait_for(
                lambda n=name: len(line_messages(n)) == 2, 10, f"the line-running notice to reach {name}"
            )
            assert (
                line_messages(name)[1]
                == f"[fac] LINE RUNNING again: main is green at {sha[:10]}; submit as usual."
            )


@pytest.mark.parametrize(
    ("fixers", "says"),
    [
        ([], "no fixer is on it yet: a human must fix main"),
        (["fix"], "fix (fixer) is on it"),
        (["f1", "f2"], "f1, f2 (fixer) are on it"),
    ],
)
def test_the_stop_notice_names_the_fixers_there_are(fixers: list[str], says: str) -> None:
    from supervisor.daemon import stop_notice

    text = stop_notice("main abc is red: tests", "main", fixers)
    assert text.startswith("[fac] LINE STOPPED: main abc is red: tests\n") and says in text


def test_a_line_resumed_by_hand_records_the_main_it_resumed_on(factory: Path) -> None:
    red = git(factory, "rev-parse", "main")
    assert line.stop(Factory(factory), "main is red: tests", red)
    assert fac_json("status", cwd=factory)["line"]["main_sha"] == red
    commit(factory, passing_test("later"), "a human fixes main")
    fac_ok("line", "resume", cwd=factory)
    assert fac_json("status", cwd=factory)["line"]["main_sha"] == git(factory, "rev-parse", "main") != red


@pytest.mark.parametrize(
    ("status", "signal_", "says"),
    [
        (127, None, "exit 127 (command not found)"),
        (126, None, "exit 126 (not executable)"),
        (1, None, "exit 1"),
        (None, 9, "killed by signal 9"),
        (None, None, "exit ?"),
    ],
)
def test_how_a_pane_ended_reads_the_shells_codes(status: int | None, signal_: int | None, says: str) -> None:
    from supervisor.daemon import how_it_ended
    from supervisor.tmux import PaneInfo

    pane = PaneInfo("s", "@1", "w1", "%1", 0, True, status, signal_, "")
    assert how_it_ended(pane) == says


def test_a_pass_that_reads_main_and_the_store_does_not_wake_the_next_one(factory: Path) -> None:
    """Idle means idle: the dashboard's redraw (the pass's `on_reconcile`) reads refs/heads/main and
    the store on every pass; once reads woke the watcher too, and the supervisor ran pass after pass
    at a fifth of a core with nothing happening. With a 30 s tick, a quiet second holds one pass."""
    import threading

    from supervisor import dashboard, repo

    configure(factory, "[supervisor]\ntick = 30\n")
    spawn(factory, "w1", "sleep 600")
    fac = Factory(factory)
    passes: list[float] = []

    def redraw() -> None:  # what `fac supervise` does after each pass, reading as it draws
        dashboard.render(dashboard.snapshot(fac))
        assert repo.rev_parse(factory, "refs/heads/main")
        passes.append(time.monotonic())

    stop = threading.Event()
    sup = Supervisor(Factory(factory), on_reconcile=redraw)
    t = threading.Thread(target=sup.run, kwargs={"should_stop": stop.is_set}, daemon=True)
    t.start()
    try:
        wait_for(lambda: passes, 20, "the first pass")
        time.sleep(1.5)
        quiet = len(passes)
        git(factory, "branch", "-f", "side", "main")  # a real change still wakes it at once
        wait_for(lambda: len(passes) > quiet, 10, "a pass after a branch moved")
    finally:
        stop.set()
        sup.wake.set()
        t.join(10)
        fac.store.close()
    assert quiet <= 2, f"{quiet} passes in a quiet 1.5 s with a 30 s tick: something woke it"
