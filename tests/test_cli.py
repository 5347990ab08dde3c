"""The `fac` command line: version, expected errors (exit 2, one or two lines, no traceback), attach, log."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import click
import pexpect
import pytest
from helpers import (
    FAC,
    assert_usage_error,
    branches,
    fac_json,
    fac_ok,
    git,
    run_fac,
    session_of,
    start_worker,
    status,
    tmux,
    wait_for,
    window_names,
)

from supervisor import __version__
from supervisor.cli import COMMANDS, cli

HEAVY = {"click", "libtmux", "git", "sqlite3", "anthropic", "watchdog", "rich", "tomli_w", "pexpect"}


def imported_modules(*args: str) -> set[str]:
    """Top-level names of the modules `python -m supervisor ARGS` imports (from -X importtime)."""
    proc = subprocess.run([*FAC[:1], "-X", "importtime", *FAC[1:], *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str, tmp_path: Path) -> None:
    proc = fac_ok(flag, cwd=tmp_path)
    assert proc.stdout == f"fac, version {__version__}\n"


def test_version_imports_nothing_heavy(tmp_path: Path) -> None:
    assert not imported_modules("--version") & (HEAVY | {"supervisor.cli"})


def test_help_imports_no_runtime_dependency(tmp_path: Path) -> None:
    assert not imported_modules("--help") & (HEAVY - {"click"})


def test_the_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "fac"
    if not script.exists():
        pytest.skip("no fac console script next to this Python")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("fac, version")
    out = subprocess.run([str(script), "nonsense-command"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2 and "No such command" in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["spawn", "worker", "--no-up", "--cmd", "true"],
        ["up"],
        ["down"],
        ["kill", "w1"],
        ["attach", "w1"],
        ["log"],
        ["roles"],
        ["roles", "new", "x"],
        ["config"],
    ],
    ids=lambda a: " ".join(a),
)
def test_outside_a_factory_every_command_says_how_to_make_one(tmp_path: Path, args: list[str]) -> None:
    proc = run_fac(*args, cwd=tmp_path)
    assert_usage_error(proc, "not inside a factory", "fac init")


def test_a_fac_root_that_is_not_a_factory_is_reported(tmp_path: Path) -> None:
    proc = run_fac("status", cwd=tmp_path, env={"FAC_ROOT": str(tmp_path)})
    assert_usage_error(proc, f"FAC_ROOT={tmp_path} is not a factory", "unset FAC_ROOT")


def test_duplicate_worker_name_is_refused_and_the_first_keeps_running(
    factory: Path, tmux_socket: str
) -> None:
    start_worker(factory, "w1")
    proc = run_fac("spawn", "worker", "--no-up", "--name", "w1", "--cmd", "true", cwd=factory)
    assert_usage_error(proc, "worker 'w1' already exists", "fac kill w1 --rm")
    assert window_names(tmux_socket, session_of()) == ["w1"]
    assert [w["process"] for w in status(factory)["workers"]] == ["running"]


def test_a_stopped_worker_still_holds_its_name(factory: Path) -> None:
    start_worker(factory, "w1")
    fac_ok("kill", "w1", cwd=factory)
    proc = run_fac("spawn", "worker", "--no-up", "--name", "w1", "--cmd", "true", cwd=factory)
    assert_usage_error(proc, "already exists (state stopped)")


@pytest.mark.parametrize(
    "name", ["bad name", "a:b", "a.b", "-x", "x/y", "é", "n" * 41, "supervisor", "merge-queue"]
)
def test_invalid_worker_names_are_refused(factory: Path, tmux_socket: str, name: str) -> None:
    proc = run_fac("spawn", "worker", "--no-up", "--name", name, "--cmd", "true", cwd=factory)
    assert_usage_error(proc, repr(name))
    assert "invalid worker name" in proc.stderr or "reserved" in proc.stderr
    assert [b for b in branches(factory) if b != "main"] == []
    assert status(factory)["workers"] == []


@pytest.mark.parametrize("runtime", ["claude", "anthropic"])
def test_a_runtime_that_is_not_available_says_so(factory: Path, tmp_path: Path, runtime: str) -> None:
    # no `claude` executable and no API key: whatever the runtime needs is missing
    path = _bin_dir(tmp_path, git=None, tmux=None, bash=None)
    proc = run_fac(
        "spawn",
        "worker",
        "--no-up",
        "--runtime",
        runtime,
        cwd=factory,
        env={"PATH": path, "ANTHROPIC_API_KEY": None},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2
    assert runtime in proc.stderr.lower()
    assert status(factory)["workers"] == []
    assert window_names(os.environ["FAC_TMUX_SOCKET"]) == []


def test_cmd_cannot_be_combined_with_another_runtime(factory: Path) -> None:
    proc = run_fac("spawn", "worker", "--no-up", "--runtime", "claude", "--cmd", "true", cwd=factory)
    assert_usage_error(proc, "--cmd runs the command runtime")


def test_the_command_runtime_needs_a_command(factory: Path) -> None:
    assert_usage_error(run_fac("spawn", "worker", "--no-up", cwd=factory), "needs a command", "--cmd")


def _bin_dir(tmp_path: Path, **tools: str | None) -> str:
    """A directory to be the whole PATH: each tool symlinked to the real one, or a script given as text."""
    d = tmp_path / "bin"
    d.mkdir()
    for name, script in tools.items():
        if script is None:
            real = shutil.which(name)
            assert real, name
            (d / name).symlink_to(real)
        else:
            (d / name).write_text(script)
            (d / name).chmod(0o755)
    return str(d)


def test_tmux_missing_is_reported_with_how_to_install_it(factory: Path, tmp_path: Path) -> None:
    path = _bin_dir(tmp_path, git=None)
    for args in (["spawn", "worker", "--no-up", "--cmd", "true"], ["up"]):
        proc = run_fac(*args, cwd=factory, env={"PATH": path})
        assert_usage_error(proc, "tmux is not installed", "apt-get install -y tmux")
    assert status(factory)["workers"] == []


def test_git_missing_is_reported_with_how_to_install_it(factory: Path, tmp_path: Path) -> None:
    start_worker(factory, "w1")
    path = _bin_dir(tmp_path, tmux=None)
    for args, cwd in (
        (["init", "new"], tmp_path),
        (["spawn", "worker", "--no-up", "--cmd", "true"], factory),
        (["kill", "w1", "--rm"], factory),
        (["status"], factory),
    ):
        proc = run_fac(*args, cwd=cwd, env={"PATH": path})
        assert_usage_error(proc, "git is not installed", "apt-get install -y git")
    assert (factory / ".fac" / "worktrees" / "w1").is_dir()


def test_git_older_than_2_38_is_refused(factory: Path, tmp_path: Path) -> None:
    path = _bin_dir(tmp_path, tmux=None, git='#!/bin/sh\necho "git version 2.30.0"\n')
    for args, cwd in (
        (["init", "new"], tmp_path),
        (["spawn", "worker", "--no-up", "--cmd", "true"], factory),
    ):
        proc = run_fac(*args, cwd=cwd, env={"PATH": path})
        assert_usage_error(proc, "git 2.30 is too old", ">= 2.38")
    assert not (tmp_path / "new").exists()


def test_attach_puts_a_terminal_on_the_workers_window(factory: Path, tmux_socket: str) -> None:
    start_worker(factory, "w2")  # the session's first, current window
    start_worker(factory, "w1")
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    env["TERM"] = "xterm-256color"
    child = pexpect.spawn(FAC[0], [*FAC[1:], "attach", "w1"], cwd=str(factory), env=env, dimensions=(40, 120))
    try:

        def attached_clients() -> list[str]:
            out = tmux(tmux_socket, "list-clients", "-F", "#{client_session} #{window_name}").stdout
            return out.splitlines()

        assert wait_for(attached_clients, 10, "a tmux client to attach") == [f"{session_of()} w1"]
        tmux(tmux_socket, "detach-client", "-s", f"={session_of()}")
        child.expect(pexpect.EOF, timeout=10)
    finally:
        child.close(force=True)
    assert attached_clients() == []


def test_attach_to_an_unknown_worker_lists_the_workers(factory: Path) -> None:
    start_worker(factory, "w1")
    assert_usage_error(run_fac("attach", "nobody", cwd=factory), "no worker named 'nobody'", "workers: w1")


def test_attach_to_a_worker_without_a_window_says_so(factory: Path) -> None:
    start_worker(factory, "w1")
    start_worker(factory, "w2")
    fac_ok("kill", "w1", cwd=factory)
    assert_usage_error(run_fac("attach", "w1", cwd=factory), "w1 has no window")


def test_attach_without_a_terminal_prints_the_command_to_run(factory: Path, tmux_socket: str) -> None:
    start_worker(factory, "w1")
    proc = run_fac("attach", "w1", cwd=factory)  # stdin is not a terminal
    assert_usage_error(proc, "needs a terminal", f"tmux -L {tmux_socket} attach-session")


def test_log_json_shows_each_workers_events(factory: Path) -> None:
    start_worker(factory, "w1")
    start_worker(factory, "w2")
    fac_ok("kill", "w1", cwd=factory)
    fac_ok("kill", "w1", "--rm", cwd=factory)

    events = [json.loads(line) for line in fac_ok("log", "--json", cwd=factory).stdout.splitlines()]
    assert [e["kind"] for e in events if e["worker"] == "w1"] == ["spawned", "stopped", "removed"]
    assert [e["kind"] for e in events if e["worker"] == "w2"] == ["spawned"]
    assert all({"id", "ts", "kind", "worker", "correlation", "payload"} <= set(e) for e in events)
    spawned = next(e for e in events if e["kind"] == "spawned" and e["worker"] == "w1")
    assert spawned["payload"]["branch"] == "fac/w1" and spawned["payload"]["role"] == "worker"

    only_w1 = [
        json.loads(line)
        for line in fac_ok("log", "--json", "--worker", "w1", cwd=factory).stdout.splitlines()
    ]
    assert {e["worker"] for e in only_w1} == {"w1"}
    assert [e["kind"] for e in only_w1] == ["spawned", "stopped", "removed"]


def test_log_prints_readable_lines_and_limits_them(factory: Path) -> None:
    start_worker(factory, "w1", task="count words")
    fac_ok("kill", "w1", cwd=factory)
    lines = fac_ok("log", cwd=factory).stdout.splitlines()
    spawned = next(line for line in lines if " spawned " in line)
    assert "w1" in spawned and "branch=fac/w1" in spawned and "task=count words" in spawned
    assert len(fac_ok("log", "-n", "1", cwd=factory).stdout.splitlines()) == 1


def test_log_text_is_columns_without_message_bookkeeping_unless_all(factory: Path) -> None:
    start_worker(factory, "w1", task="count words")
    fac_ok("send", "w1", "hello", cwd=factory)
    [msg] = fac_json("inbox", "--worker", "w1", "--all", cwd=factory)
    fac_ok("inbox", "--worker", "w1", "--ack", str(msg["id"]), cwd=factory)

    text = fac_ok("log", cwd=factory).stdout.splitlines()
    assert text and not any(" ack " in line for line in text)
    spawned = next(line for line in text if " spawned " in line)
    when, kind, who = spawned.split()[:3]
    assert re.fullmatch(r"\d\d:\d\d:\d\d", when) and (kind, who) == ("spawned", "w1")
    assert "=" not in when + kind + who  # columns first, key=value only in the summary
    assert any(
        " ack " in line and "ids=" in line for line in fac_ok("log", "--all", cwd=factory).stdout.splitlines()
    )

    events = [json.loads(line) for line in fac_ok("log", "--json", cwd=factory).stdout.splitlines()]
    [ack] = [e for e in events if e["kind"] == "ack"]
    assert ack["payload"] == {"ids": [msg["id"]], "via": "ack"} and ack["worker"] == "w1"  # fac inbox --ack
    for e in events:
        assert isinstance(e["ts"], float)
        assert datetime.fromisoformat(e["ts_iso"]).timestamp() == pytest.approx(e["ts"], abs=1)
    # -n counts the events shown: the hidden ones do not eat the budget.
    assert len(fac_ok("log", "-n", "2", cwd=factory).stdout.splitlines()) == 2
    assert " ack " in fac_ok("log", "-n", "1", "--all", cwd=factory).stdout


def test_log_follow_prints_new_events_as_they_happen(factory: Path, tmp_path: Path) -> None:
    out = (tmp_path / "follow.txt").open("w")
    follower = subprocess.Popen([*FAC, "log", "-f", "--worker", "w1"], cwd=factory, stdout=out, stderr=out)
    try:
        start_worker(factory, "w1")
        start_worker(factory, "w2")
        wait_for(
            lambda: " spawned " in (tmp_path / "follow.txt").read_text(), 10, "fac log -f to show the spawn"
        )
    finally:
        follower.terminate()
        follower.wait(10)
        out.close()
    assert "w2" not in (tmp_path / "follow.txt").read_text()


def test_a_task_for_the_command_runtime_without_a_command_is_refused(factory: Path) -> None:
    proc = run_fac("task", "add", "write multiply", cwd=factory)
    assert_usage_error(proc, "needs a command", "--cmd")
    assert json.loads(fac_ok("task", "--json", cwd=factory).stdout) == []


def test_a_task_whose_spawn_fails_is_parked_once_and_does_not_block_the_next(factory: Path) -> None:
    from supervisor import tasks
    from supervisor.factory import Factory

    fac_ok("roles", "new", "gone", cwd=factory)
    fac_ok("task", "add", "first", "--role", "gone", "--cmd", "sleep 600", cwd=factory)
    fac_ok("task", "add", "second", "--cmd", "sleep 600", cwd=factory)
    (factory / "roles" / "gone.md").unlink()
    fac = Factory(factory)
    tasks.pull(fac)
    tasks.pull(fac)
    assert [t.state for t in tasks.all_tasks(fac)] == ["failed", "assigned"]
    assert [e.kind for e in fac.store.events()].count("task-pull-failed") == 1


def test_a_task_for_a_role_at_max_instances_waits_without_failing(factory: Path) -> None:
    from supervisor import tasks
    from supervisor.factory import Factory

    fac_ok("roles", "new", "solo", cwd=factory)
    role = factory / "roles" / "solo.md"
    role.write_text(role.read_text().replace("max_instances = 0", "max_instances = 1"))
    fac_ok("task", "add", "one", "--role", "solo", "--cmd", "sleep 600", cwd=factory)
    fac_ok("task", "add", "two", "--role", "solo", "--cmd", "sleep 600", cwd=factory)
    fac = Factory(factory)
    tasks.pull(fac)
    tasks.pull(fac)
    assert [t.state for t in tasks.all_tasks(fac)] == ["assigned", "todo"]
    assert "task-pull-failed" not in [e.kind for e in fac.store.events()]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["send", "w1"], "Missing argument 'TEXT'"),
        (["spawn"], "Missing argument 'ROLE'"),
        (["queue", "bogus"], "No such command 'bogus'"),
        (["task", "bogus"], "No such command 'bogus'"),  # was task ls, which exists now
        (["check", "--stage", "bogus"], "'bogus' is not one of"),
        (["status", "--jsn"], "No such option '--jsn'"),
        (["--bogus"], "No such option '--bogus'"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else "",
)
def test_click_usage_errors_follow_the_one_line_contract(factory: Path, args: list[str], needle: str) -> None:
    proc = run_fac(*args, cwd=factory)
    assert_usage_error(proc, needle, "--help`")
    assert "Usage:" not in proc.stderr


def test_fac_alone_still_prints_its_help(tmp_path: Path) -> None:
    proc = run_fac(cwd=tmp_path)
    assert "Usage: fac" in proc.stdout + proc.stderr and "Commands:" in proc.stdout + proc.stderr


def test_small_usage_errors_name_the_workers_and_the_runtime_clash(factory: Path) -> None:
    from helpers import assert_usage_error, fac_ok, run_fac

    fac_ok("spawn", "worker", "--no-up", "--name", "w1", "--cmd", "sleep 600", cwd=factory)
    assert_usage_error(
        run_fac("log", "--worker", "nosuch", cwd=factory), "no worker named 'nosuch'", "workers: w1"
    )
    assert_usage_error(
        run_fac("inbox", "--worker", "nosuch", cwd=factory), "no worker named 'nosuch'", "workers: w1"
    )
    assert_usage_error(
        run_fac("task", "add", "x", "--runtime", "claude", "--cmd", "true", cwd=factory),
        "--cmd runs the command",
    )


def test_status_warns_when_the_main_branch_does_not_exist(factory: Path) -> None:
    from helpers import git, run_fac

    text = (factory / "factory.toml").read_text().replace('main = "main"', 'main = "trunk"')
    (factory / "factory.toml").write_text(text)
    git(factory, "commit", "-qam", "point at a branch that is not there")
    out = run_fac("status", cwd=factory).stdout
    assert "warning: branch trunk does not exist" in out


def loaded_modules(*args: str) -> set[str]:
    """Every module in sys.modules when `fac ARGS` exits (-X importtime misses importlib.import_module)."""
    code = (
        "import atexit, sys; atexit.register(lambda: print(*sys.modules, file=sys.stderr));"
        f" sys.argv = ['fac', *{list(args)!r}]; from supervisor.__main__ import main; main()"
    )
    proc = subprocess.run([FAC[0], "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stderr.split())


def test_help_lists_commands_without_importing_any_of_them(tmp_path: Path) -> None:
    names = loaded_modules("--help")
    assert "supervisor.cli" in names
    assert not {m for m in names if m.startswith("supervisor.commands")}
    assert not {m.split(".")[0] for m in names} & (HEAVY - {"click"})


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_commands_help_imports_only_its_own_module_and_nothing_heavy(name: str) -> None:
    names = loaded_modules(name, "--help")
    own = COMMANDS[name].target.split(":")[0]
    assert {m for m in names if m.startswith("supervisor.commands.")} == {own}
    assert not {m.split(".")[0] for m in names} & (HEAVY - {"click"})


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_registry_says_what_the_command_says(name: str) -> None:
    # `fac --help` shows the registry's summary; `fac NAME --help` the command's own docstring
    entry = COMMANDS[name]
    cmd = cli.get_command(click.Context(cli), name)
    assert cmd is not None and cmd.name == name and cmd.hidden == entry.hidden
    stand_in = click.Command(name, help=entry.summary)
    for limit in (10, 30, 45, 60, 80, 120, 200):
        assert stand_in.get_short_help_str(limit) == cmd.get_short_help_str(limit)


def test_help_lists_every_visible_command_with_its_summary(tmp_path: Path) -> None:
    out = fac_ok("--help", cwd=tmp_path).stdout
    listed = dict(
        line.strip().split(None, 1) for line in out.split("Commands:\n", 1)[1].splitlines() if line.strip()
    )
    assert sorted(listed) == sorted(n for n, e in COMMANDS.items() if not e.hidden)
    for name, shown in listed.items():  # cut to the terminal's width with "..."
        assert shown == COMMANDS[name].summary or COMMANDS[name].summary.startswith(shown.removesuffix("..."))
    assert "agent" in COMMANDS and "agent" not in listed


def test_no_command_module_shadows_a_shared_helper() -> None:
    # importing supervisor.commands.X rebinds the package's attribute X to the module
    import importlib

    import supervisor.commands as pkg

    tree = ast.parse(Path(pkg.__file__ or "").read_text())
    helpers = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    for entry in COMMANDS.values():
        importlib.import_module(entry.target.split(":")[0])
    assert helpers and all(callable(getattr(pkg, n)) for n in helpers)


# --- bad bytes and bad state: one line and a hint, or accepted with the odd bytes shown escaped ---


def test_init_where_no_directory_can_be_made_is_one_line_and_a_hint(tmp_path: Path) -> None:
    assert_usage_error(
        run_fac("init", "/proc/x", cwd=tmp_path), "cannot create a factory in /proc/x", "hint:"
    )
    assert not Path("/proc/x").exists()


def test_a_factory_toml_that_is_not_utf8_is_one_line_and_a_hint(factory: Path) -> None:
    (factory / "factory.toml").write_bytes(b'[factory]\nname = "caf\xe9"\n')
    assert_usage_error(run_fac("status", cwd=factory), "factory.toml is not UTF-8 text", "save")


def test_a_state_db_that_is_not_a_database_is_one_line_and_a_hint(factory: Path) -> None:
    (factory / ".fac").mkdir(exist_ok=True)
    (factory / ".fac" / "state.db").write_bytes(b"not a database, just bytes\n" * 200)
    for args in (["status"], ["queue"], ["log"]):
        assert_usage_error(run_fac(*args, cwd=factory), "cannot be opened as fac's store", "mv ")


def test_messages_that_are_not_utf8_are_accepted_with_their_bytes_shown_escaped(
    factory: Path, tmux_socket: str
) -> None:
    fac_ok("spawn", "worker", "--no-up", "--name", "w1", "--cmd", "sleep 600", cwd=factory)
    # An argument with a Latin-1 byte (Python passes it on as the byte 0xE9 itself).
    fac_ok("send", "w1", "caf\udce9 au lait", cwd=factory)
    piped = subprocess.run(
        [*FAC, "send", "w1", "-"], cwd=factory, input=b"th\xe9 from stdin\n", capture_output=True
    )
    assert piped.returncode == 0, piped.stderr
    fac_ok("ask", "na\udcefve?", cwd=factory, env={"FAC_WORKER": "w1"})

    bodies = [m["body"] for m in fac_json("inbox", "--worker", "w1", "--all", cwd=factory)]
    assert bodies[:2] == ["caf\\xe9 au lait", "th\\xe9 from stdin\n"]
    assert fac_json("status", cwd=factory)["workers"][0]["question"] == "na\\xefve?"


def test_verify_and_a_gate_check_after_mains_branch_was_deleted_are_one_line_and_a_hint(
    factory: Path,
) -> None:
    git(factory, "checkout", "-q", "-b", "elsewhere")
    git(factory, "branch", "-q", "-D", "main")
    assert_usage_error(run_fac("verify", cwd=factory), "branch main does not exist", "git branch main")
    assert_usage_error(
        run_fac("check", "--stage", "gate", "--ref", "main", cwd=factory), "'main' is not a commit"
    )


def test_a_failed_task_shows_why_and_can_be_retried_or_removed(factory: Path) -> None:
    fac_ok("roles", "new", "gone", cwd=factory)
    fac_ok("task", "add", "first", "--role", "gone", "--cmd", "sleep 600", cwd=factory)
    (factory / "roles" / "gone.md").unlink()
    from supervisor import tasks
    from supervisor.factory import Factory

    tasks.pull(Factory(factory))
    [t] = fac_json("task", "ls", cwd=factory)
    assert t["state"] == "failed" and "unknown role 'gone'" in t["reason"]
    listed = fac_ok("task", "ls", cwd=factory).stdout
    assert listed.splitlines()[0].split() == ["ID", "STATE", "ROLE", "WORKER", "TASK", "REASON"]
    assert "unknown role 'gone'" in listed
    assert_usage_error(run_fac("task", "retry", "7", cwd=factory), "no task 7", "tasks: 1")
    fac_ok("roles", "new", "gone", cwd=factory)  # the human fixes the cause, then retries
    assert "todo again" in fac_ok("task", "retry", "1", cwd=factory).stdout
    assert_usage_error(run_fac("task", "retry", "1", cwd=factory), "task 1 is todo", "fac task ls")
    [t] = fac_json("task", "ls", cwd=factory)
    assert t["state"] == "todo" and t["reason"] is None and t["worker"] is None
    tasks.pull(Factory(factory))
    [t] = fac_json("task", cwd=factory)
    assert t["state"] == "assigned"
    assert_usage_error(
        run_fac("task", "rm", "1", cwd=factory), f"assigned to worker {t['worker']}", "fac kill"
    )
    fac_ok("kill", t["worker"], cwd=factory)
    tasks.pull(Factory(factory))
    [t] = fac_json("task", cwd=factory)
    assert t["state"] == "abandoned" and "was stopped" in t["reason"]
    assert "removed (abandoned)" in fac_ok("task", "rm", "1", cwd=factory).stdout
    assert fac_json("task", cwd=factory) == []
    kinds = [e.kind for e in Factory(factory).store.events()]
    assert {"task-pull-failed", "task-retried", "task-pulled", "task-abandoned", "task-removed"} <= set(kinds)


# --- hints name the command that works in the user's shell ---

FAC_SCRIPT = Path(sys.executable).parent / "fac"


def path_without_fac() -> str:
    """The PATH of a user who ran scripts/setup and did not put .venv/bin on PATH."""
    here = str(FAC_SCRIPT.parent)
    return os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and p != here)


def test_the_command_names_hints_rewrite_are_the_clis_commands() -> None:
    from supervisor.text import COMMAND_NAMES

    assert set(COMMANDS) == COMMAND_NAMES


@pytest.mark.parametrize("on_path", [True, False])
def test_hints_name_fac_as_the_users_shell_can_run_it(
    tmp_path: Path, tmux_socket: str, on_path: bool
) -> None:
    assert FAC_SCRIPT.is_file()
    path = os.environ["PATH"] if on_path else path_without_fac()
    assert (shutil.which("fac", path=path) is not None) is on_path
    env = {"PATH": path}
    fac = "fac" if on_path else str(FAC_SCRIPT)

    init = run_fac("init", str(tmp_path / "f"), "--sample", cwd=tmp_path, env=env)
    assert init.returncode == 0, init.stderr
    (nxt,) = [ln for ln in init.stdout.splitlines() if ln.startswith("next: ")]
    assert nxt == f"next: cd {tmp_path / 'f'} && {fac} up"
    root = tmp_path / "f"
    # A FacError's hint, a next step and a status line: each names the same runnable command.
    bad = run_fac("spawn", "worker", "--name", "w1", "--cmd", "bash ./missing.sh", cwd=root, env=env)
    assert bad.returncode == 2
    status = run_fac("status", cwd=root, env=env)
    assert f'start one with `{fac} spawn worker --cmd "..."`' in status.stdout, status.stdout
    missing = run_fac("delta", "show", "99", cwd=root, env=env)
    assert missing.returncode == 2 and f"hint: list them with `{fac} delta ls`" in missing.stderr, (
        missing.stderr
    )
    usage = run_fac("spawn", "--bogus", cwd=root, env=env)
    assert f"hint: see `{fac} spawn --help`" in usage.stderr, usage.stderr
    if not on_path:
        assert "`fac " not in status.stdout and " fac spawn" not in status.stdout
    # The printed next step runs as printed, in a shell with exactly that PATH.
    ran = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", nxt.removeprefix("next: ")],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "supervisor" in ran.stdout or "started" in ran.stdout, ran.stdout
    run_fac("down", cwd=root, env=env)
