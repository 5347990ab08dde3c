"""Executors and main on a remote, for real: a `dask scheduler` and two `dask worker` processes on
127.0.0.1 (started once for the session, killed at the end) and a bare repository as the remote.

Branches merge through Dask; a worker killed mid-candidate costs a rerun on the other worker and
nothing merges twice; a push race (another pusher moves the remote's main between fetch and push)
ends with every green branch merged once and nothing untested on main.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import GIT_IDENTITY
from helpers import fac_json, fac_ok, git, run_fac, wait_for
from queue_helpers import (
    assert_main_only_tested,
    commit,
    entries,
    events,
    human_commit,
    merge_commits,
    passing_test,
    runs,
    script_suite,
    spawn_worker,
    submit,
)
from rich.console import Console

from supervisor import availability, checks, dashboard, executors, gate
from supervisor.config import DEFAULT_TOML
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.queue import MergeQueue, views

distributed = pytest.importorskip("distributed", reason='the Dask executor needs pip install "fac[dask]"')

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A real Dask cluster on 127.0.0.1: its scheduler and workers are processes of this session."""

    scheduler: str
    env: dict[str, str]
    logs: Path
    cache: Path
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_worker(self) -> str:
        port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        log = open(self.logs / f"worker-{port}.log", "wb")  # noqa: SIM115 - the process keeps it
        self.workers[address] = subprocess.Popen(
            [
                str(BIN / "dask"),
                "worker",
                self.scheduler,
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--worker-port",
                str(port),
                "--death-timeout",
                "60",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with distributed.Client(self.scheduler, timeout=30) as client:
            wait_for(
                lambda: address in client.scheduler_info()["workers"], timeout=60, message=f"worker {address}"
            )
        return address

    def kill(self, address: str) -> None:
        proc = self.workers.pop(address)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("dask")
    home = base / "home"
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FAC_", "GIT_", "TMUX"))},
        **GIT_IDENTITY,
        "HOME": str(home),
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "PIP_NO_INDEX": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAC_EXECUTOR_CACHE": str(base / "replicas"),
        "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
    }
    port = free_port()
    sched = start_scheduler(port, env, base)
    c = Cluster(f"tcp://127.0.0.1:{port}", env, base, base / "replicas")
    try:
        c.start_worker()
        c.start_worker()
        yield c
    finally:
        for address in list(c.workers):
            c.kill(address)
        os.killpg(sched.pid, signal.SIGKILL)
        sched.wait()


def start_scheduler(port: int, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    log = open(logs / f"scheduler-{port}.log", "wb")  # noqa: SIM115 - the process keeps it
    return subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def with_remote(root: Path, tmp: Path) -> Path:
    """A bare repository as the factory's `origin`, holding main."""
    bare = tmp / "remote.git"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(bare))
    git(root, "remote", "add", "origin", str(bare))
    git(root, "push", "-q", "origin", "main")
    return bare


def configure(root: Path, extra: str) -> None:
    """main's factory.toml with `[factory] remote = "origin"` and `extra`, committed by a human."""
    text = (root / "factory.toml").read_text(encoding="utf-8")
    assert '[factory]\nmain = "main"\n' in text
    text = text.replace('[factory]\nmain = "main"\n', '[factory]\nmain = "main"\nremote = "origin"\n')
    human_commit(root, {"factory.toml": text + extra})


def dask_factory(root: Path, tmp: Path, cluster: Cluster) -> Path:
    bare = with_remote(root, tmp)
    configure(root, f'\n[executor]\nkind = "dask"\nscheduler = "{cluster.scheduler}"\n')
    git(root, "push", "-q", "origin", "main")
    return bare


def replica_of(cluster: Cluster, root: Path) -> Path:
    """The replica of the factory at `root` that the cluster's workers keep (one per remote URL)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAC_EXECUTOR_CACHE", str(cluster.cache))
        path = executors.replica_dir(git(root, "remote", "get-url", "origin"))
    assert (path / ".git").is_dir(), path
    return path


def candidate_events(root: Path) -> list[dict[str, Any]]:
    """The payloads of the `candidate` events in `fac log --json` (one JSON object a line)."""
    out = fac_ok("log", "--json", "--all", cwd=root).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [e["payload"] for e in lines if e["kind"] == "candidate"]


def test_branches_merge_through_dask_and_the_log_says_where(
    factory: Path, tmp_path: Path, cluster: Cluster
) -> None:
    bare = dask_factory(factory, tmp_path, cluster)
    stale = git(factory, "rev-parse", "main")  # a ref an earlier queue left behind (it was stopped)
    git(factory, "push", "-q", "origin", f"main:refs/fac/candidates/{stale}")
    mq = MergeQueue(Factory(factory))
    for name in ("w1", "w2"):  # one round each: two candidates, two pushes to the remote's main
        commit(spawn_worker(factory, name), passing_test(name), f"{name}: add a test")
        submit(name)
        mq.run(once=True)

    assert {n: e.state for n, e in entries(factory).items()} == {"w1": "merged", "w2": "merged"}
    assert git(bare, "rev-parse", "main") == git(factory, "rev-parse", "main")  # landed on the remote
    assert len(merge_commits(factory)) == 2
    ran = candidate_events(factory)
    assert ran and all(e["executor"] == "dask" for e in ran)
    assert {e["executor_worker"] for e in ran} <= set(cluster.workers)
    # The candidate was pushed for the workers, and the verdict is cached in the factory's store:
    # asking again about main's tree runs nothing, whichever executor produced it.
    main = git(factory, "rev-parse", "main")
    assert len(ran) == 2
    # The workers fetched each candidate by its ref; the ref leaves the remote once its verdict is in
    # (the stale one went with the first push), and the replica keeps neither the ref nor the run's
    # worktrees.
    assert git(bare, "for-each-ref", "--format=%(refname)", "refs/fac/") == ""
    replica = replica_of(cluster, factory)
    assert git(replica, "for-each-ref", "--format=%(refname)", "refs/fac/") == ""
    assert git(replica, "worktree", "list", "--porcelain").count("worktree ") == 1  # its own checkout only
    fac = Factory(factory)
    suite = checks.suite_from_rev(factory, main, fac.fac_dir / "suites")
    again = gate.judge(fac, main, suite)
    assert again.ok and again.cached
    # What the replica observed per test reached the factory's store.
    tree = git(factory, "rev-parse", "main^{tree}")
    seen = fac.store.observation(tree, suite.hash, "tests")
    assert seen is not None and seen[2] is not None
    assert {"tests.test_w1::test_w1_works", "tests.test_w2::test_w2_works"} <= set(seen[2]), seen[2]


def test_a_worker_killed_mid_candidate_costs_a_rerun_and_nothing_merges_twice(
    factory: Path, tmp_path: Path, cluster: Cluster
) -> None:
    # A check that announces itself in its tree, then takes a while: long enough to kill its worker.
    script_suite(factory, {"slow": "#!/bin/sh\ntouch started-here\nsleep 4\n"})
    dask_factory(factory, tmp_path, cluster)
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: add a test")
    submit("w1")
    mq = MergeQueue(Factory(factory))
    done: list[Any] = []

    def run() -> None:
        try:
            done.append(mq.run(once=True))
        except BaseException as e:  # shown by the assertion below
            done.append(e)

    t = threading.Thread(target=run)
    t.start()
    try:
        started = lambda: sorted(cluster.cache.glob("*/.fac/tmp/cand-*/started-here"))  # noqa: E731
        wait_for(lambda: started(), timeout=120, message="the candidate's check to start on a worker")
        with distributed.Client(cluster.scheduler, timeout=30) as client:
            busy = [w for w, keys in client.processing().items() if any("fac-gate-" in str(k) for k in keys)]
        assert len(busy) == 1, busy
        cluster.kill(busy[0])
    finally:
        t.join(timeout=180)
        replacement = cluster.start_worker()  # the session's other tests keep two workers
    assert not t.is_alive() and done and not isinstance(done[0], BaseException), done
    assert replacement
    assert entries(factory)["w1"].state == "merged"
    assert len(merge_commits(factory)) == 1
    assert len(events(factory, "merged")) == 1
    ran = candidate_events(factory)
    assert len(ran) == 1 and ran[0]["ok"] is True
    assert ran[0]["executor"] == "dask" and ran[0]["executor_worker"] != busy[0]
    # The killed worker's run left its worktree in the replica; the rerun removed it (its process is
    # gone), and its own once it ended.
    replica = replica_of(cluster, factory)
    assert not list((replica / ".fac" / "tmp").glob("cand-*")), list((replica / ".fac" / "tmp").iterdir())
    assert git(replica, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_a_push_race_merges_every_green_branch_once_and_nothing_untested(
    factory: Path, tmp_path: Path
) -> None:
    bare = with_remote(factory, tmp_path)
    git(bare, "config", "core.logAllRefUpdates", "always")  # the remote's reflog: where its main has been
    configure(factory, "")
    git(factory, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(bare), str(other))
    for name in ("w1", "w2"):
        commit(spawn_worker(factory, name), passing_test(name), f"{name}: add a test")
        submit(name)
    raced: list[str] = []

    def say(msg: str) -> None:
        # Between the queue's fetch and its push: another pusher lands a commit on the remote's main.
        if msg.startswith("  candidate ") and not raced:
            raced.append(commit(other, {"NOTES.md": "another pusher\n"}, "someone else: notes"))
            git(other, "push", "-q", "origin", "main")

    mq = MergeQueue(Factory(factory), say=say)
    mq.run(once=True)

    assert raced
    assert {n: e.state for n, e in entries(factory).items()} == {"w1": "merged", "w2": "merged"}
    remote_main = git(bare, "rev-parse", "main")
    assert git(factory, "rev-parse", "main") == remote_main  # the local main follows the remote
    assert git(bare, "merge-base", "--is-ancestor", raced[0], "main", check=False) == ""  # never forced away
    # Every commit the remote's main pointed at is a human's, the other pusher's, or a tested candidate.
    pointed = git(bare, "reflog", "show", "--format=%H", "refs/heads/main").split()
    green = {r["sha"] for r in runs(factory) if r["ok"] and r["stage"] == "gate"}
    humans = set(git(factory, "rev-list", "--first-parent", "--no-merges", "main").split())
    untested = [sha for sha in pointed if sha not in green and sha not in humans]
    assert not untested, f"the remote's main pointed at untested commits: {untested}"
    assert_main_only_tested(factory, *humans)
    # The other pusher's commit is not fac's write: the queue judged it before building on it.
    assert [e.payload["new"] for e in events(factory, "main-moved-outside")] == [raced[0]]
    assert [e.payload["sha"] for e in events(factory, "main-adopted")] == [raced[0]]
    merged = events(factory, "merged")
    assert sorted(e.worker for e in merged) == ["w1", "w2"]
    assert len(merge_commits(factory)) == 2
    assert events(factory, "candidate")[0].payload["executor"] == "local"


def test_the_queue_holds_when_the_local_main_has_commits_the_remote_lacks(
    factory: Path, tmp_path: Path
) -> None:
    bare = with_remote(factory, tmp_path)
    configure(factory, "")  # committed locally, not pushed: the local main is ahead
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: add a test")
    submit("w1")
    said: list[str] = []

    MergeQueue(Factory(factory), say=said.append).run(once=True)

    assert entries(factory)["w1"].state == "queued"
    assert any("holding: the local main has commits origin/main lacks" in m for m in said), said
    assert git(bare, "rev-parse", "main") != git(factory, "rev-parse", "main")  # nothing forced


def test_dask_config_needs_a_scheduler_and_a_remote(factory: Path) -> None:
    (factory / "factory.toml").write_text(DEFAULT_TOML + '\n[executor]\nkind = "dask"\n', encoding="utf-8")
    with pytest.raises(FacError) as err:
        Factory(factory).config  # noqa: B018
    assert "needs the scheduler's address" in str(err.value) and "needs [factory] remote" in str(err.value)
    (factory / "factory.toml").write_text(DEFAULT_TOML + '\n[executor]\nkind = "ray"\n', encoding="utf-8")
    with pytest.raises(FacError, match='"local" or "dask"'):
        Factory(factory).config  # noqa: B018


def test_a_scheduler_that_does_not_answer_is_a_clear_error() -> None:
    ex = executors.Dask(f"tcp://127.0.0.1:{free_port()}", "origin", timeout=1.0)
    with pytest.raises(FacError) as err:
        ex.client()
    assert "does not answer" in err.value.message and "dask scheduler" in (err.value.hint or "")


def test_the_local_executor_is_the_default(factory: Path) -> None:
    assert executors.for_factory(Factory(factory)) is gate.LOCAL
    assert fac_json("config", "--json")["executor"] == {
        "kind": "local",
        "scheduler": None,
        "slots": os.cpu_count() or 2,
    }


def test_without_distributed_the_dask_executor_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # what Python does for a module not installed
    with pytest.raises(FacError) as err:
        executors.Dask("tcp://127.0.0.1:8786", "origin").client()
    assert "`distributed` is not installed" in err.value.message
    assert err.value.hint == 'pip install "fac[dask]"'


def test_a_local_queue_never_imports_dask(factory: Path) -> None:
    code = (
        "import sys\n"
        "from supervisor.factory import Factory\n"
        "from supervisor.queue import MergeQueue\n"
        "MergeQueue(Factory.find()).run(once=True)\n"
        "print('distributed' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=factory, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False", out.stderr


def test_no_scheduler_blames_nobody_and_the_entries_wait(factory: Path, tmp_path: Path) -> None:
    with_remote(factory, tmp_path)
    configure(factory, f'\n[executor]\nkind = "dask"\nscheduler = "tcp://127.0.0.1:{free_port()}"\n')
    git(factory, "push", "-q", "origin", "main")
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: add a test")
    submit("w1")
    said: list[str] = []

    MergeQueue(Factory(factory), say=said.append).run(once=True)

    assert entries(factory)["w1"].state == "queued"
    assert any("does not answer" in m and "not a red verdict" in m for m in said), said
    assert [e.payload["entries"] for e in events(factory, "executor-unavailable")] == [
        [entries(factory)["w1"].id]
    ]
    assert not events(factory, "red") and not events(factory, "candidate")


def test_the_queue_holds_when_the_remote_has_no_main_or_diverged(factory: Path, tmp_path: Path) -> None:
    bare = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(factory, "remote", "add", "origin", str(bare))
    configure(factory, "")
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: add a test")
    submit("w1")
    said: list[str] = []
    MergeQueue(Factory(factory), say=said.append).run(once=True)
    assert any("origin/main does not exist: push main there (git push origin main)" in m for m in said), said

    other = tmp_path / "other"  # someone else's history on the remote's main: diverged from ours
    git(tmp_path, "init", "-q", "-b", "main", str(other))
    commit(other, {"README.md": "another project\n"}, "unrelated")
    git(other, "push", "-q", str(bare), "main")
    said.clear()
    MergeQueue(Factory(factory), say=said.append).run(once=True)
    assert any("the local main and origin/main diverged" in m for m in said), said
    assert entries(factory)["w1"].state == "queued"
    assert git(bare, "log", "--format=%s", "main") == "unrelated"  # fac forced nothing


def test_doctor_checks_the_remote_and_the_dask_executor(
    factory: Path, tmp_path: Path, cluster: Cluster
) -> None:
    dask_factory(factory, tmp_path, cluster)
    found = {f["name"]: f for f in json.loads(run_fac("doctor", "--json", cwd=factory).stdout)["findings"]}
    assert found["remote"]["level"] == "ok" and "origin/main at" in found["remote"]["detail"]
    assert found["executor"]["level"] == "ok", found["executor"]
    assert all(w in found["executor"]["detail"] for w in cluster.workers)

    human_commit(factory, {"NOTES.md": "not pushed\n"})  # the local main has a commit the remote lacks
    (factory / "factory.toml").write_text(
        (factory / "factory.toml")
        .read_text(encoding="utf-8")
        .replace(cluster.scheduler, f"tcp://127.0.0.1:{free_port()}"),
        encoding="utf-8",
    )
    found = {f["name"]: f for f in json.loads(run_fac("doctor", "--json", cwd=factory).stdout)["findings"]}
    assert found["remote"]["level"] == "fail" and "has commits it lacks" in found["remote"]["detail"]
    assert found["executor"]["level"] == "fail" and "does not answer" in found["executor"]["detail"]


def test_a_scheduler_that_is_down_is_retried_with_a_backoff_then_the_entries_merge(
    factory: Path, tmp_path: Path, cluster: Cluster
) -> None:
    port = free_port()  # nobody listens there yet
    bare = with_remote(factory, tmp_path)
    configure(factory, f'\n[executor]\nkind = "dask"\nscheduler = "tcp://127.0.0.1:{port}"\n')
    git(factory, "push", "-q", "origin", "main")
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: add a test")
    submit("w1")
    mq = MergeQueue(Factory(factory))
    assert isinstance(mq.executor, executors.Dask)
    mq.executor.timeout = 1.0  # the connect timeout: a refused connection fails within it
    stop = threading.Event()
    done: list[Any] = []
    t = threading.Thread(target=lambda: done.append(mq.run(should_stop=stop.is_set)))
    t.start()
    sched = None
    up = Cluster(f"tcp://127.0.0.1:{port}", cluster.env, cluster.logs, cluster.cache)
    try:
        # Two failed tries, the second one only once the first one's backoff is over.
        def two_tries() -> list[Any]:
            got = events(factory, "executor-unavailable")
            return got if len(got) >= 2 else []

        first, second = wait_for(two_tries, timeout=120, message="two tries of the scheduler that is down")[
            :2
        ]
        assert second.ts - first.ts >= availability.FIRST
        status = fac_json("status", "--json", cwd=factory)["executor"]
        assert status["kind"] == "dask" and status["state"] == "unavailable", status
        assert status["failures"] >= 2 and status["since"] <= first.ts
        assert status["retry_at"] == status["failed_at"] + availability.delay(status["failures"])
        down = f"executor unavailable: the Dask scheduler at tcp://127.0.0.1:{port} does not answer"
        assert status["note"].startswith(down), status
        assert "; retrying " in status["note"]
        [hold] = views.line_holds(Factory(factory))
        assert hold["reason"] == "executor unavailable" and hold["why"].startswith(down)
        assert [e["worker"] for e in hold["entries"]] == ["w1"]
        assert f"queue: {down}" in run_fac("status", cwd=factory).stdout
        console = Console(width=400, record=True)
        console.print(dashboard.render(dashboard.snapshot(Factory(factory))))
        shown = console.export_text()
        assert "held: executor unavailable" in shown and shown.count(down) == 2, shown  # head and panel
        assert entries(factory)["w1"].state == "queued" and not events(factory, "red")

        sched = start_scheduler(port, cluster.env, cluster.logs)
        up.start_worker()
        wait_for(lambda: entries(factory)["w1"].state == "merged", timeout=180, message="w1 merged")
    finally:
        stop.set()
        t.join(timeout=120)
        for address in list(up.workers):
            up.kill(address)
        if sched is not None:
            os.killpg(sched.pid, signal.SIGKILL)
            sched.wait()
    assert not t.is_alive() and done
    assert git(bare, "rev-parse", "main") == git(factory, "rev-parse", "main")
    assert not events(factory, "red") and not events(factory, "blamed")
    [back] = events(factory, "executor-available")
    assert back.payload["after"] >= 2
    status = fac_json("status", "--json", cwd=factory)["executor"]
    assert status["state"] == "available" and status["note"] == "" and status["retry_in"] is None


def sleeping(token: str) -> list[int]:
    """The pids of the live processes running `sleep <token>` on this host (any sandbox)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", token.encode()] or argv[:2] == [b"/bin/sleep", token.encode()]:
            found.append(int(proc.name))
    return found


def test_cancelling_a_run_on_a_dask_worker_kills_its_check_there(
    factory: Path, tmp_path: Path, cluster: Cluster
) -> None:
    token = f"{4000 + os.getpid() % 1000}.{secrets.randbelow(90) + 10}"  # this test's own sleep
    script_suite(factory, {"slow": f"#!/bin/sh\nexec sleep {token}\n"})
    bare = dask_factory(factory, tmp_path, cluster)
    fac = Factory(factory)
    main = git(factory, "rev-parse", "main")
    suite = checks.suite_from_rev(factory, main, fac.fac_dir / "suites")
    executor = executors.for_factory(fac)
    cancel = checks.Cancel()
    out: list[Any] = []

    def judge() -> None:
        try:
            out.append(gate.judge(fac, main, suite, cache="off", executor=executor, cancel=cancel))
        except BaseException as e:  # shown by the assertion below
            out.append(e)

    t = threading.Thread(target=judge)
    t.start()
    try:
        pids = wait_for(lambda: sleeping(token), timeout=120, message="the slow check on a worker")
        cancel.cancel()
        wait_for(lambda: not sleeping(token), timeout=60, message=f"the check's processes {pids} killed")
        t.join(timeout=60)
    finally:
        cancel.cancel()
        t.join(timeout=60)
        executor.close()
    assert not t.is_alive() and len(out) == 1 and isinstance(out[0], checks.Cancelled), out
    assert fac.store.count_runs() == 0  # a cancelled run is never recorded
    assert git(bare, "for-each-ref", "--format=%(refname)", "refs/fac/") == ""
    with distributed.Client(cluster.scheduler, timeout=30) as client:  # the task left the cluster
        wait_for(lambda: not any(client.processing().values()), timeout=60, message="no task on the cluster")


def test_a_red_verdict_from_a_dask_worker_brings_its_evidence_to_the_owner(
    factory: Path, tmp_path: Path, cluster: Cluster
) -> None:
    # The reason is early in the output; its end (what a message's feedback keeps) is noise.
    why = "lint: remove the file system-under-construction/bad"
    lint = f"#!/bin/sh\n[ -f system-under-construction/bad ] || exit 0\necho '{why}'\nseq 1 100\nexit 1\n"
    script_suite(factory, {"lint": lint})
    dask_factory(factory, tmp_path, cluster)
    commit(spawn_worker(factory, "w1"), {"system-under-construction/bad": "x\n"}, "w1: a bad file")
    submit("w1")

    MergeQueue(Factory(factory), retries=0).run(once=True)

    e = entries(factory)["w1"]
    assert e.state == "red"
    assert e.verdict is not None and e.verdict["executor"] == "dask"
    assert e.verdict["executor_worker"] in cluster.workers
    [failed] = e.verdict["failed"]
    log = Path(failed["log"])
    assert log.is_relative_to(factory / ".fac" / "logs"), log  # on the factory's host, not the worker's
    assert why in log.read_text(encoding="utf-8")
    assert why not in failed["feedback"]  # the log carries what the feedback lost
    [msg] = [m for m in Factory(factory).store.messages("w1") if m.kind == "red"]
    assert f"ran on the dask worker {e.verdict['executor_worker']}" in msg.body
    assert f"full output: {log}" in msg.body
    [red] = events(factory, "red")
    assert red.payload["executor_worker"] == e.verdict["executor_worker"]
