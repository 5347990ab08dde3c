"""Built-in guards: the pure decisions, and each hostile branch rejected by the real queue."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import git
from queue_helpers import (
    SUT,
    commit,
    entries,
    fac,
    inbox,
    run_queue,
    spawn_worker,
    submit,
    uncached_runs,
    worker_state,
)

from supervisor import guards

TESTS = f"{SUT}/tests/test_textstats.py"


# --- the pure decisions ---


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("system-under-construction/**", "system-under-construction/a.py", True),
        ("system-under-construction/**", "system-under-construction/pkg/deep/a.py", True),
        ("system-under-construction/**", "system-under-construction-2/a.py", False),
        ("system-under-construction/**", "README.md", False),
        ("docs/*.md", "docs/a.md", True),
        ("docs/*.md", "docs/sub/a.md", False),
        ("**/*.py", "a.py", True),
        ("**/*.py", "x/y/a.py", True),
        ("**/*.py", "x/y/a.pyc", False),
        ("src/?.c", "src/a.c", True),
        ("src/?.c", "src/ab.c", False),
        ("a+b(c)/[x].txt", "a+b(c)/[x].txt", True),
        ("a+b(c)/[x].txt", "aab(c)/x.txt", False),
    ],
)
def test_glob_to_regex(glob: str, path: str, matches: bool) -> None:
    assert bool(guards.glob_to_regex(glob).match(path)) is matches


def test_scope_violations_lists_paths_outside_every_writable_glob() -> None:
    paths = ["system-under-construction/a.py", "NOTES.md", "docs/x.md", ".github/workflows/ci.yml"]
    assert guards.scope_violations(paths, ("system-under-construction/**",)) == [
        "NOTES.md",
        "docs/x.md",
        ".github/workflows/ci.yml",
    ]
    assert guards.scope_violations(paths, ("system-under-construction/**", "docs/**")) == [
        "NOTES.md",
        ".github/workflows/ci.yml",
    ]
    assert guards.scope_violations(paths, ()) == paths


def test_protected_violations() -> None:
    paths = [
        "checks/tests",
        "checks",
        "roles/worker.md",
        "factory.toml",
        ".ci/run",
        "specs/current/a.md",
        "project-container/requirements.txt",
        "system-under-construction/checks/x.py",
        "system-under-construction/factory.toml",
        "factory.toml.bak",
        "checksum.txt",
    ]
    assert guards.protected_violations(paths) == [
        "checks/tests",
        "checks",
        "roles/worker.md",
        "factory.toml",
        ".ci/run",
        "specs/current/a.md",
        "project-container/requirements.txt",
    ]


def test_weakening_lines_name_file_and_line() -> None:
    diff = "\n".join(
        [
            "diff --git a/t/test_a.py b/t/test_a.py",
            "--- a/t/test_a.py",
            "+++ b/t/test_a.py",
            "@@ -1,0 +2,2 @@",
            "+import pytest",
            "+@pytest.mark.skip(reason='later')",
            "@@ -10 +12 @@",
            "-    assert x",
            "+    pytest.xfail('flaky')",
            "diff --git a/conftest.py b/conftest.py",
            "--- /dev/null",
            "+++ b/conftest.py",
            "@@ -0,0 +1 @@",
            '+collect_ignore = ["t/test_b.py"]',
            "diff --git a/t/test_c.py b/t/test_c.py",
            "--- a/t/test_c.py",
            "+++ b/t/test_c.py",
            "@@ -3 +3 @@",
            "-@pytest.mark.skip",
            "+def test_fine(): pass",
        ]
    )
    assert guards.weakening_lines(diff) == [
        "t/test_a.py:3: @pytest.mark.skip(reason='later')",
        "t/test_a.py:12: pytest.xfail('flaky')",
        'conftest.py:1: collect_ignore = ["t/test_b.py"]',
    ]


@pytest.mark.parametrize(
    "line",
    [
        "@pytest.mark.skipif(True, reason='x')",
        "@pytest.mark.xfail",
        "pytest.skip('no')",
        "pytest.importorskip('numpy')",
        "@unittest.skip('x')",
        "raise unittest.SkipTest('x')",
        "pytestmark = pytest.mark.skip",
        "collect_ignore_glob = ['*']",
        'addopts = "--deselect tests/test_a.py::test_x"',
        'addopts = "--ignore=tests"',
    ],
)
def test_every_kind_of_skip_is_weakening(line: str) -> None:
    diff = f"+++ b/tests/test_a.py\n@@ -1 +1 @@\n+{line}\n"
    assert guards.weakening_lines(diff) == [f"tests/test_a.py:1: {line}"]


def test_removed_tests_name_file_and_test_and_allow_moves() -> None:
    before = {
        "tests/test_a.py": (
            "def test_one():\n    pass\n\nclass TestK:\n    def test_two(self):\n        pass\n"
        ),
        "tests/test_b.py": "def test_three():\n    pass\n",
    }
    moved = {
        "tests/test_a.py": "class TestK:\n    def test_two(self):\n        pass\n",
        "tests/test_b.py": "def test_three():\n    pass\n\ndef test_one():\n    pass\n",
    }
    assert guards.removed_tests(before, moved) == []
    gone = {"tests/test_a.py": "def test_one():\n    pass\n", "tests/test_b.py": None}
    assert guards.removed_tests(before, gone) == [
        "tests/test_a.py::TestK::test_two",
        "tests/test_b.py::test_three",
    ]
    # A file that does not parse has no tests in it: it cannot hide a removal.
    assert guards.removed_tests(
        {"t/test_x.py": "def test_x(): pass\n"}, {"t/test_x.py": "def test_x(:\n"}
    ) == ["t/test_x.py::test_x"]


def test_collected_count_reads_deselected_runs_as_the_number_that_runs(tmp_path: Path) -> None:
    import sys

    (tmp_path / "test_a.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    argv = guards.collect_argv([sys.executable, "-m", "pytest", "-q"])
    assert argv is not None
    env = dict(os.environ)
    assert guards.collected_count(argv, tmp_path, env, 60) == 2
    assert guards.collected_count([*argv, "-k", "not test_b"], tmp_path, env, 60) == 1
    (tmp_path / "test_a.py").unlink()
    assert guards.collected_count(argv, tmp_path, env, 60) == 0
    assert guards.collect_argv(["ruff", "check", "."]) is None
    assert guards.collect_argv(["/venv/bin/pytest", "-x"]) == [
        "/venv/bin/pytest",
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
    ]


# --- hostile branches through the real queue ---


def _add_exec(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def test_each_guard_rejects_its_hostile_branch_without_a_check_run(factory: Path) -> None:
    source = (factory / TESTS).read_text()
    assert "def test_top_words_breaks_ties_alphabetically" in source
    deleted = source[: source.index("def test_top_words_breaks_ties_alphabetically")].rstrip() + "\n"
    skipped = "import pytest\n" + source.replace(
        "def test_top_words", "@pytest.mark.skip(reason='flaky')\ndef test_top_words"
    )
    skip_line = skipped.splitlines().index("@pytest.mark.skip(reason='flaky')") + 1
    hostile = {
        "edits-check": (
            lambda wt: _add_exec(wt / "checks" / "always-green", "#!/bin/sh\nexit 0\n"),
            "guard:protected",
            "checks/always-green: protected",
        ),
        "edits-config": (
            lambda wt: (wt / "factory.toml").write_text(
                (wt / "factory.toml").read_text() + "\n[checks.x]\nrun = 'true'\n"
            ),
            "guard:protected",
            "factory.toml: protected",
        ),
        "edits-role": (
            lambda wt: (wt / "roles" / "worker.md").write_text(
                "+++\nname = 'worker'\nwritable = ['**']\n+++\nanything\n"
            ),
            "guard:protected",
            "roles/worker.md: protected",
        ),
        "adds-skip": (
            lambda wt: (wt / TESTS).write_text(skipped),
            "guard:no-weakening",
            f"{TESTS}:{skip_line}: @pytest.mark.skip(reason='flaky')  (adds a skip/xfail/deselect)",
        ),
        "deletes-test": (
            lambda wt: (wt / TESTS).write_text(deleted),
            "guard:no-weakening",
            f"{TESTS}::test_top_words_breaks_ties_alphabetically: test removed",
        ),
        "ignores-tests": (
            lambda wt: (wt / SUT / "conftest.py").write_text(
                'collect_ignore = ["tests/test_textstats.py"]\n'
            ),
            "guard:no-weakening",
            f'{SUT}/conftest.py:1: collect_ignore = ["tests/test_textstats.py"]'
            "  (adds a skip/xfail/deselect)",
        ),
        "renames-tests-away": (
            lambda wt: git(wt, "mv", TESTS, f"{SUT}/tests/textstats_checks.py"),
            "guard:no-weakening",
            f"{TESTS}::test_words_are_lower_cased_in_order: test removed",
        ),
        "out-of-scope": (
            lambda wt: (wt / "NOTES.md").write_text("notes\n"),
            "guard:scope",
            "NOTES.md: outside system-under-construction/**",
        ),
    }
    for name, (change, _, _) in hostile.items():
        wt = spawn_worker(factory, name)
        change(wt)
        git(wt, "add", "-A")
        git(wt, "commit", "-q", "-m", f"{name}: hostile")
        submit(name)
    main_before = git(factory, "rev-parse", "main")

    mq = run_queue(factory)

    assert uncached_runs(factory) == 0 and mq.stats["check_runs"] == 0
    assert mq.stats["red"] == len(hostile)
    assert git(factory, "rev-parse", "main") == main_before
    for name, (_, guard, feedback) in hostile.items():
        e = entries(factory)[name]
        assert e.state == "red", name
        assert worker_state(factory, name) == "red"
        failed = {f["name"]: f["feedback"] for f in e.verdict["failed"]}
        # Deleting a test can also break a spec's link to it (guard:spec-lint); the guard under test
        # must be there, with its precise feedback.
        assert set(failed) - {"guard:spec-lint"} == {guard}, (name, failed)
        assert feedback in failed[guard].splitlines(), (name, failed)
        [msg] = inbox(name)
        assert msg["kind"] == "red"
        assert f"check {guard} failed" in msg["body"] and feedback in msg["body"], msg["body"]
        assert "fix: " in msg["body"]


def test_fewer_collected_tests_is_red_even_when_no_line_says_skip(factory: Path) -> None:
    pyproject = f"{SUT}/pyproject.toml"
    text = (factory / pyproject).read_text()
    tricks = {
        # -k in addopts deselects a test; no skip marker anywhere (pytest reports "3/4 tests collected").
        "deselects": text.replace(
            'testpaths = ["tests"]', 'testpaths = ["tests"]\naddopts = "-k \'not top_words\'"'
        ),
        # Only functions named test_w* are collected any more.
        "narrows": text.replace(
            'testpaths = ["tests"]', 'testpaths = ["tests"]\npython_functions = ["test_w*"]'
        ),
    }
    for name, new in tricks.items():
        assert new != text
        commit(spawn_worker(factory, name), {pyproject: new}, f"{name}: tidy pytest config")
        submit(name)
    main_before = git(factory, "rev-parse", "main")

    # pytest configuration is test infrastructure: held for a human first, untested.
    run_queue(factory, max_batch=1, retries=0)
    assert {n: entries(factory)[n].state for n in tricks} == dict.fromkeys(tricks, "held")
    held = entries(factory)["deselects"].verdict["why"]
    assert held == [
        f"{pyproject}: pytest configuration changes ini_options.addopts; addopts adds "
        "-k not top_words deselects tests by name"
    ]
    assert uncached_runs(factory) == 0
    # A human's approval lets the branch be tested, not judged by its own configuration.
    for name in tricks:
        assert fac("approve", name).exit_code == 0
    mq = run_queue(factory, max_batch=1, retries=0)

    assert git(factory, "rev-parse", "main") == main_before
    assert mq.stats["red"] == 2
    for name, have in (("deselects", 3), ("narrows", 2)):
        e = entries(factory)[name]
        assert e.state == "red"
        by_name = {f["name"]: f for f in e.verdict["failed"]}
        failed = by_name["guard:test-count:tests"]
        assert f"the candidate collects {have} tests, main collects 4" in failed["feedback"]
        # The per-test ratchet names what went missing too (main's tests pass there).
        assert "exists on main and is missing here" in by_name["tests"]["feedback"]
        assert "guard:test-count:tests" in inbox(name)[-1]["body"]
