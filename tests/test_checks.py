"""Checks: discovery from main (not the branch), running with timeouts and in parallel, feedback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import git, wait_for
from queue_helpers import commit, fac, spawn_worker

from supervisor import checks, sandbox, worktrees
from supervisor.config import CheckDef
from supervisor.factory import Factory
from supervisor.sandbox import Sandbox


def _sandbox(kind: str) -> Sandbox | None:
    if kind == "none":
        return None
    if not sandbox._bwrap_works():
        pytest.skip("bubblewrap cannot run here")
    return Sandbox("bwrap", "test")


@pytest.mark.parametrize("kind", ["none", "bwrap"])
def test_timeout_kills_the_whole_process_group(tmp_path: Path, kind: str) -> None:
    # A unique sleep length marks the check's processes, so they can be found from the host even
    # when the sandbox gives them pids of their own namespace.
    marker = f"1000.{uuid.uuid4().int % 10**9:09d}"
    script = f"sleep {marker} & sleep {marker}"
    check = CheckDef(name="hangs", run=("bash", "-c", script), timeout=0.5)

    r = checks.run_one(check, tmp_path, "gate", tmp_path / "logs", _sandbox(kind))

    assert not r.ok and r.timed_out and r.exit_code is None
    assert "timed out after 0.5s (process group killed)" in r.feedback
    wait_for(lambda: not _processes_with(marker), message="every process of the check to be killed")


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _pytest_output(tmp_path: Path) -> tuple[str, int]:
    (tmp_path / "test_calc.py").write_text(
        "def add(a, b):\n    return a - b\n\n\n"
        "def test_add():\n    assert add(2, 2) == 4\n\n\n"
        "def test_fine():\n    assert add(2, 0) == 2\n\n\n"
        "class TestMore:\n    def test_negative(self):\n"
        "        assert add(-1, -1) == -2, 'negatives add up'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    return proc.stdout, proc.returncode


def test_feedback_from_real_pytest_output_names_failing_ids_and_assertions(tmp_path: Path) -> None:
    out, code = _pytest_output(tmp_path)
    assert code == 1

    fb = checks.feedback_from(out, code)

    lines = fb.splitlines()
    assert lines[0].startswith("FAILED test_calc.py::test_add - assert 0 == 4")
    assert lines[1].startswith(
        "FAILED test_calc.py::TestMore::test_negative - AssertionError: negatives add up"
    )
    assert "test_fine" not in fb
    assert "test_calc.py:6" in fb and "test_calc.py:15" in fb
    assert "  assert 0 == 4" in lines
    assert "2 failed, 1 passed" in fb
    assert len(fb) <= checks.FEEDBACK_CHARS


def test_a_failing_pytest_check_reports_its_feedback(tmp_path: Path) -> None:
    _pytest_output(tmp_path)
    check = CheckDef(name="tests", run="python -m pytest -q -p no:cacheprovider")

    [r] = checks.run_suite((check,), tmp_path, "inner", parallel=2, log_dir=tmp_path / "logs")

    assert (r.name, r.ok, r.exit_code) == ("tests", False, 1)
    assert "FAILED test_calc.py::test_add" in r.feedback
    assert r.log and "2 failed" in Path(r.log).read_text()
    assert "2 failed" in r.tail


def test_feedback_without_pytest_gives_the_exit_code_and_last_lines() -> None:
    assert checks.feedback_from("", 3) == "exit code 3 and no output"
    fb = checks.feedback_from("\n".join(f"line {i}" for i in range(40)), 1)
    assert fb.startswith("exit code 1; last output:\nline 25\n") and fb.endswith("line 39")
    assert len(checks.feedback_from("x" * 10_000, 1)) <= checks.FEEDBACK_CHARS


def test_feedback_keeps_the_end_of_long_output_where_the_reason_is() -> None:
    out = "y" * 3900 + "\nerror: database unreachable at db:5432\n"

    fb = checks.feedback_from(out, 1)

    assert fb.startswith("exit code 1; last output:\n...yyy")
    assert fb.endswith("error: database unreachable at db:5432")
    assert len(fb) <= checks.FEEDBACK_CHARS


def test_a_command_that_does_not_exist_says_so(tmp_path: Path) -> None:
    check = CheckDef(name="lint", run="no-such-linter-xyz --strict")

    r = checks.run_one(check, tmp_path, "gate", tmp_path / "logs")

    assert not r.ok and r.exit_code is None
    assert r.feedback == "command not found: no-such-linter-xyz"
    missing = CheckDef(name="lint", run="true", cwd="nowhere")
    assert (
        "cwd 'nowhere' does not exist"
        in checks.run_one(missing, tmp_path, "gate", tmp_path / "logs").feedback
    )


@pytest.mark.parametrize("kind", ["none", "bwrap"])
@pytest.mark.parametrize("run", ["no-such-linter-xyz --strict", "./bin/no-such-script"])
def test_a_missing_program_reads_command_not_found_not_the_sandboxs_internals(
    tmp_path: Path, kind: str, run: str
) -> None:
    r = checks.run_one(CheckDef(name="lint", run=run), tmp_path, "gate", tmp_path / "logs", _sandbox(kind))

    assert not r.ok
    assert r.feedback == f"command not found: {run.split()[0]}"
    assert "bwrap" not in r.feedback and "execvp" not in r.feedback


@pytest.mark.parametrize(
    "output,code,program",
    [
        ("bwrap: execvp nosuch: No such file or directory\n", 1, "nosuch"),
        ("bash: line 1: nosuch: command not found\n", 127, "nosuch"),
        ("sh: 1: nosuch: not found\n", 127, "nosuch"),
        ('Error: runc: exec: "nosuch": executable file not found in $PATH', 127, "nosuch"),
        ("bash: line 1: nosuch: command not found\n", 1, None),  # not the shell's exit code: a test said it
        ("FAILED test_x.py::test_y - bwrap: execvp nosuch: No such file or directory", 1, None),
    ],
)
def test_a_program_not_found_is_read_from_what_a_sandbox_or_shell_prints(
    output: str, code: int, program: str | None
) -> None:
    assert checks._not_found_in(output, code) == program


def test_a_script_whose_program_is_missing_reads_command_not_found(tmp_path: Path) -> None:
    check = CheckDef(name="ci", run=("bash", "-c", "no-such-tool-xyz --all"))

    r = checks.run_one(check, tmp_path, "gate", tmp_path / "logs")

    assert not r.ok and r.exit_code == 127
    assert r.feedback == "command not found: no-such-tool-xyz"


def test_checks_run_in_parallel(tmp_path: Path) -> None:
    # Each check announces itself, then waits for the other to have started: run one after the
    # other, the first would give up waiting and fail. No clock is read.
    def waits_for(me: str, other: str) -> CheckDef:
        script = (
            f"touch {tmp_path}/{me}.started; "
            f"for i in $(seq 200); do [ -e {tmp_path}/{other}.started ] && exit 0; sleep 0.05; done; exit 1"
        )
        return CheckDef(name=me, run=("bash", "-c", script))

    results = checks.run_suite(
        (waits_for("a", "b"), waits_for("b", "a")), tmp_path, "gate", parallel=2, log_dir=tmp_path / "logs"
    )

    assert [(r.name, r.ok) for r in results] == [("a", True), ("b", True)]


def test_gate_suite_comes_from_main_even_when_the_branch_changes_it(factory: Path) -> None:
    (factory / "checks" / "lint").write_text("#!/bin/sh\necho from main\nexit 0\n")
    (factory / "checks" / "lint").chmod(0o755)
    git(factory, "add", "checks/lint")
    git(factory, "commit", "-q", "-m", "human: add a lint check")
    wt = spawn_worker(factory, "w1")
    (wt / "checks" / "sneaky").touch(mode=0o755)
    toml = (wt / "factory.toml").read_text().replace('run = "python -m pytest -q"', 'run = "true"')
    changes = {
        "factory.toml": toml,
        "checks/lint": "#!/bin/sh\necho from the branch\nexit 1\n",
        "checks/sneaky": "#!/bin/sh\nexit 0\n",
    }
    sha = commit(wt, changes, "w1: rewrites the checks")
    # The factory sees the branch once fac fetches it from the worker's own repository (on submit).
    assert worktrees.collect(factory, wt, "fac/w1") == sha
    fac_dir = factory / ".fac"

    gate = checks.suite_from_rev(factory, "main", fac_dir / "suites")
    branch = checks.suite_from_rev(factory, sha, fac_dir / "suites")
    inner = checks.suite_from_dir(wt)

    assert [c.name for c in gate.checks] == ["tests", "lint"]
    assert gate.checks[0].run == "python -m pytest -q"
    assert gate.files_dir is not None and "from main" in (gate.files_dir / "lint").read_text()
    assert [c.name for c in branch.checks] == ["tests", "lint", "sneaky"]
    assert gate.hash != branch.hash
    assert [c.name for c in inner.checks] == ["tests", "lint", "sneaky"]
    # `fac check --ref` at the gate judges the branch's commit with main's suite.
    res = fac("check", "--ref", sha, "--stage", "gate", "--json")
    report = json.loads(res.stdout)
    assert report["suite"].startswith("main@")
    assert [r["name"] for r in report["results"]] == ["tests", "lint", "guard:test-count:tests"]
    assert res.exit_code == 0, res.output
    assert Factory(factory).store.count_runs(cached=False) == 1


def test_run_suite_tells_progress_of_each_check_as_it_starts_and_ends(tmp_path: Path) -> None:
    heard: list[tuple[str, bool | None]] = []

    def progress(name: str, r: checks.CheckResult | None) -> None:
        heard.append((name, None if r is None else r.ok))

    suite = (CheckDef(name="a", run="true"), CheckDef(name="b", run="false"))
    extra = [lambda: checks.CheckResult("guard", True, 0, 0.0, "", "")]
    results = checks.run_suite(
        suite,
        tmp_path,
        "gate",
        parallel=1,
        log_dir=tmp_path / "logs",
        extra=extra,
        extra_names=("guard",),
        progress=progress,
    )

    assert [r.name for r in results] == ["a", "b", "guard"]
    assert heard == [("a", None), ("a", True), ("b", None), ("b", False), ("guard", None), ("guard", True)]


@pytest.mark.parametrize(
    "result,line",
    [
        (None, "12:00:01  start tests"),
        (checks.CheckResult("tests", True, 0, 1.25, "", ""), "12:00:01  PASS  tests (1.2s)"),
        (checks.CheckResult("tests", False, 1, 3.0, "x", ""), "12:00:01  FAIL  tests (3.0s)"),
        (checks.CheckResult("tests", False, 1, 0.0, "x", "", required=False), "12:00:01  warn  tests (0.0s)"),
    ],
)
def test_a_progress_line_names_the_check_its_verdict_and_its_time(
    result: checks.CheckResult | None, line: str
) -> None:
    assert checks.progress_line("tests", result, "12:00:01") == line


def _streamed_until(proc: subprocess.Popen[str], needle: str) -> list[str]:
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:
        seen.append(line.rstrip("\n"))
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never printed; stderr was:\n" + "\n".join(seen))


@pytest.mark.parametrize("command", [["check"], ["check", "--stage", "gate"], ["verify"]])
def test_fac_check_and_verify_print_each_check_while_the_others_still_run(
    factory: Path, command: list[str]
) -> None:
    # `slow` ends only once the test has seen `fast` end: printed after every check ended, the
    # test would never see it, and `slow` would give up and fail.
    go = factory.parent / "go"
    (factory / "factory.toml").write_text(
        "[queue]\nparallel = 2\n"
        '[checks.fast]\nrun = "true"\n'
        "[checks.slow]\n"
        f'run = ["bash", "-c", "for i in $(seq 600); do [ -e {go} ] && exit 0; sleep 0.1; done; exit 1"]\n'
    )
    git(factory, "commit", "-qam", "two checks")
    from helpers import FAC

    proc = subprocess.Popen(
        [*FAC, *command], cwd=factory, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        seen = _streamed_until(proc, "PASS  fast")
        assert any(line.endswith("start slow") for line in seen), seen
        assert not any("slow (" in line for line in seen), seen
        go.touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert "PASS  slow (" in err
    assert "green" in out or ": green" in out


def test_fac_check_json_stays_one_document_without_progress(factory: Path) -> None:
    (factory / "factory.toml").write_text('[checks.fast]\nrun = "true"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor", "check", "--json"], cwd=factory, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["name"] == "fast"
    assert "start fast" not in proc.stderr
