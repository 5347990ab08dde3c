"""The warm spawner: a human's `fac spawn` served by a process with fac loaded, forked per request.

Every test drives the real thing: the supervisor's loop starts the spawner process, `fac spawn`
runs as a subprocess, and what it makes is looked at in git, tmux and the store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    assert_usage_error,
    capture_pane,
    fac_ok,
    git,
    needs_bwrap,
    pane_script,
    run_fac,
    running_supervisor,
    wait_for,
    wait_until_exited,
)

from supervisor import spawner
from supervisor.factory import Factory


def sock(root: Path) -> Path:
    return root / ".fac" / spawner.DIR_NAME / spawner.SOCKET_NAME


def served(root: Path) -> list[str]:
    """The requests the spawner logged (one line each)."""
    log = root / ".fac" / spawner.DIR_NAME / spawner.LOG_NAME
    return [ln for ln in log.read_text().splitlines() if " pid " in ln] if log.exists() else []


def ended(pid: int) -> bool:
    """Whether process `pid` has exited (gone, or a zombie its parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def spawner_pid(root: Path) -> int:
    out = subprocess.run(
        ["pgrep", "-f", f"supervisor {spawner.SERVE_ARG} {sock(root)}"], capture_output=True, text=True
    )
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 1, out
    return pids[0]


def test_spawn_goes_through_the_spawner_with_the_callers_directory_environment_and_stdin(
    factory: Path, tmux_socket: str
) -> None:
    (factory / "notes").mkdir()
    (factory / "notes" / "task.txt").write_text("the task from a file\n")
    with running_supervisor(factory):
        wait_for(sock(factory).exists, 30, "the spawner's socket")
        # A relative --task-file is read from the caller's directory; the caller's environment
        # reaches the pane (its git identity, as a cold spawn passes it).
        env = {"GIT_AUTHOR_NAME": "Ada from the terminal"}
        cmd = "sh -c 'echo \"author=$GIT_AUTHOR_NAME task=$FAC_TASK\"; sleep 600'"
        out = fac_ok(
            "spawn", "worker", "--name", "w1", "--task-file", "task.txt", "--cmd", cmd,
            cwd=factory / "notes", env=env,
        )  # fmt: skip
        piped = subprocess.run(
            [sys.executable, "-m", "supervisor", "spawn", "worker", "--name", "w2", "--task", "-", "--json",
             "--cmd", "sleep 600"],
            input="a task on stdin\n", capture_output=True, text=True, cwd=factory,
        )  # fmt: skip
        assert len(served(factory)) == 2, served(factory)
        w1 = Factory(factory).worker("w1")
        wait_for(lambda: "author=Ada" in capture_pane(tmux_socket, w1.pane_id or ""), 15, "w1's pane")
    assert out.stdout.startswith("spawned w1 (worker, command) on fac/w1 in "), out.stdout
    assert "task=the task from a file" in capture_pane(tmux_socket, w1.pane_id or "")
    assert piped.returncode == 0, piped.stderr
    assert '"name": "w2"' in piped.stdout
    assert Factory(factory).worker("w2").task == "a task on stdin\n"  # as stdin gave it, as without
    assert git(factory, "rev-parse", "fac/w1") == git(factory, "rev-parse", "main")
    assert (
        "fac spawn worker --name w1" in served(factory)[0]
        and f"cwd {factory / 'notes'}" in served(factory)[0]
    )


def test_errors_and_a_rollback_through_the_spawner_read_as_they_do_without_it(
    factory: Path, tmux_socket: str
) -> None:
    with running_supervisor(factory):
        wait_for(sock(factory).exists, 30, "the spawner's socket")
        fac_ok("spawn", "worker", "--name", "w1", "--cmd", "sleep 600", cwd=factory)
        warm = run_fac("spawn", "worker", "--name", "w1", "--cmd", "sleep 600", cwd=factory)
        cold = run_fac(
            "spawn", "worker", "--name", "w1", "--cmd", "sleep 600", cwd=factory, env={spawner.OFF_ENV: "1"}
        )
        fault = {"FAC_FAULT_INJECT": "window"}
        failed = run_fac("spawn", "worker", "--name", "w2", "--cmd", "sleep 600", cwd=factory, env=fault)
        assert len(served(factory)) == 3  # the cold one did not go there
    assert_usage_error(warm, "worker 'w1' already exists")
    assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert_usage_error(failed, "injected failure at spawn step 'window'")
    # All or nothing, as without the spawner: no row, branch, tree or window of w2.
    assert Factory(factory).store.worker("w2") is None
    assert git(factory, "branch", "--list", "fac/w2") == ""
    assert not (factory / ".fac" / "worktrees" / "w2").exists()


def test_without_its_spawner_fac_spawn_runs_in_its_own_process(factory: Path, tmux_socket: str) -> None:
    with running_supervisor(factory):
        wait_for(sock(factory).exists, 30, "the spawner's socket")
        os.kill(spawner_pid(factory), signal.SIGKILL)
        fac_ok("spawn", "worker", "--name", "w1", "--cmd", "sleep 600", cwd=factory)
        # A socket with nobody behind it (a spawner killed before it could remove it) is no socket.
        assert sock(factory).exists()
        assert served(factory) == []
    assert Factory(factory).worker("w1").state == "working"
    assert not sock(factory).exists()  # the supervisor removed it when it stopped


def test_the_spawner_ends_with_its_supervisor_even_a_killed_one(factory: Path, tmp_path: Path) -> None:
    # Its parent here is a throwaway process killed with SIGKILL, as a supervisor can be.
    path = tmp_path / "s.sock"
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         f"subprocess.Popen([sys.executable, '-m', 'supervisor', {spawner.SERVE_ARG!r}, {str(path)!r}])\n"
         "time.sleep(600)\n"],
        cwd=factory,
    )  # fmt: skip
    try:
        wait_for(path.exists, 30, "the spawner's socket")
    finally:
        parent.kill()
        parent.wait()
    wait_for(lambda: not path.exists(), 10, "the spawner to see its parent gone and remove its socket")


@needs_bwrap
def test_a_sandboxed_pane_can_neither_see_nor_use_the_spawner(factory: Path, tmux_socket: str) -> None:
    attempts = {
        "see-socket": 'test -e "$FAC_ROOT/.fac/spawner/spawner.sock"',
        "connect": (
            'python3 -c "import socket,os; s=socket.socket(socket.AF_UNIX);'
            " s.connect(os.environ['FAC_ROOT']+'/.fac/spawner/spawner.sock')\""
        ),
        "spawn-as-human": "env -u FAC_SOCKET -u FAC_WORKER fac spawn worker --name evil1 --cmd true",
        "spawn-on-channel": "fac spawn worker --name evil2 --cmd true",
    }
    lines = ["set +e"]
    for name, cmd in attempts.items():
        lines.append(
            f'( {cmd} ) >/dev/null 2>&1; echo "{name}: exit $?" >> "../../runs/$FAC_WORKER/attempts.log"'
        )
    script = pane_script(factory, "hostile-spawn.sh", "\n".join(lines) + "\n")
    with running_supervisor(factory):
        wait_for(sock(factory).exists, 30, "the spawner's socket")
        fac_ok("spawn", "worker", "--name", "attacker", "--cmd", f"bash {script}", cwd=factory)
        pane = Factory(factory).worker("attacker").pane_id or ""
        wait_until_exited(tmux_socket, pane, timeout=60)
        assert len(served(factory)) == 1  # the human's spawn of the attacker, nothing from its pane
    log = factory / ".fac" / "runs" / "attacker" / "attempts.log"
    got = dict(line.split(": ", 1) for line in log.read_text().splitlines())
    assert set(got) == set(attempts), got
    assert all(v != "exit 0" for v in got.values()), got
    assert [w.name for w in Factory(factory).store.workers()] == ["attacker"]


def test_a_request_for_anything_but_spawn_is_not_served(factory: Path, tmux_socket: str) -> None:
    import socket

    with running_supervisor(factory):
        wait_for(sock(factory).exists, 30, "the spawner's socket")
        for argv in (["approve", "w1"], ["spawn"]):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock(factory)))
                payload = spawner.encode(argv, str(factory), dict(os.environ))
                socket.send_fds(s, [payload], [0, 1, 2])
                s.settimeout(10)
                answer = s.recv(4)
            assert (argv[0] == "spawn") == (len(answer) == 4), (argv, answer)
        wait_for(lambda: served(factory), 10, "the spawner's line for the spawn it forked")
    assert [ln.split(": ", 1)[1].split(" (")[0] for ln in served(factory)] == ["fac spawn"]


def test_requests_encode_and_decode_every_byte_but_nul() -> None:
    env = {"A": "1", "EMPTY": "", "EQ": "a=b=c", "UTF": "ü ✓", "NL": "two\nlines"}
    argv = ["spawn", "worker", "--task", "with = and\nnewline", ""]
    body = spawner.encode(argv, "/some dir/ü", env)
    assert int.from_bytes(body[:4], "big") == len(body) - 4
    assert spawner.decode(body[4:]) == (argv, "/some dir/ü", env)
    with pytest.raises(ValueError):
        spawner.decode(b"/cwd\x000")
    with pytest.raises(ValueError):
        spawner.decode(b"/cwd\x001\x00spawn\x00NOEQUALS")


def test_root_for_finds_the_factory_as_fac_does(factory: Path) -> None:
    from supervisor.factory import find_root

    inside = factory / ".fac" / "worktrees" / "w1" / "system-under-construction"
    inside.mkdir(parents=True)
    (factory / ".fac" / "worktrees" / "w1" / "factory.toml").write_text("")
    for where in (factory, factory / "specs", inside):
        assert spawner.root_for(str(where), {}) == str(find_root(where))
    assert spawner.root_for("/", {}) is None
    assert spawner.root_for("/", {"FAC_ROOT": str(factory)}) == str(factory)


def test_ctrl_c_reaches_the_spawners_child_which_says_interrupted(factory: Path, tmux_socket: str) -> None:
    fifo = factory / "task.fifo"
    os.mkfifo(fifo)  # the child blocks reading its task from it: a spawn caught midway
    with running_supervisor(factory):
        wait_for(sock(factory).exists, 30, "the spawner's socket")
        argv = [
            sys.executable,
            "-m",
            "supervisor",
            "spawn",
            "worker",
            "--name",
            "w1",
            "--task-file",
            str(fifo),
        ]
        proc = subprocess.Popen(argv, cwd=factory, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: len(served(factory)) == 1, 30, "the request to reach the spawner")
        child = int(served(factory)[0].split(" pid ")[1].split(":")[0])
        wchan = Path(f"/proc/{child}/wchan")
        # Blocked opening the FIFO (no writer): long after it sent its pid, so the client forwards.
        wait_for(lambda: wchan.exists() and wchan.read_text() == "wait_for_partner", 30, "the child's open")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        # The child itself was interrupted (not only the client): it ends, the FIFO never written.
        wait_for(lambda: ended(child), 10, "the child to end")
    assert proc.returncode == 130, err
    assert err.strip() == "fac: interrupted"
    assert Factory(factory).store.worker("w1") is None
