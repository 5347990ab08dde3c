"""The gate cannot be fooled: hostile scripted workers, each carrying a real bug that main's tests catch,
try to change how their branch is judged, through the real queue. None reaches main, each owner is told
which rule fired, and an honest branch of the same shape still merges.

(The guards half: test infrastructure held for a human, the test-framework and symlink guards, and
guards that read git's bytes whatever attributes, textconv or merge drivers a worker plants.)
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from helpers import git
from queue_helpers import (
    SUT,
    commit,
    entries,
    fac,
    human_commit,
    inbox,
    run_queue,
    spawn_worker,
    submit,
    uncached_runs,
)

CODE = f"{SUT}/textstats/__init__.py"
TESTS = f"{SUT}/tests/test_textstats.py"
GOOD_LINE_COUNT = 'return text.count("\\n") + (0 if text.endswith("\\n") else 1)'

# pytest would say every test passed, whatever happened.
LYING_HOOK = """import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    outcome.get_result().outcome = "passed"
"""
PADDING = f"{SUT}/tests/test_padding.py"


def bug(root: Path) -> dict[str, str]:
    """A real bug: a last line without a newline is not counted (main's test_line_count_* catches it)."""
    src = (root / CODE).read_text()
    assert GOOD_LINE_COUNT in src
    return {CODE: src.replace(GOOD_LINE_COUNT, 'return text.count("\\n")')}


def pyproject_with(root: Path, extra: str) -> str:
    text = (root / SUT / "pyproject.toml").read_text()
    return text.replace('testpaths = ["tests"]', f'testpaths = ["tests"]\n{extra}')


def hostile(factory: Path, name: str, change: Callable[[Path], None]) -> None:
    """Spawn worker `name`, let `change` write its worktree (a scripted agent), commit and submit."""
    wt = spawn_worker(factory, name)
    change(wt)
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", f"{name}: tidy up")
    submit(name)


def writes(files: dict[str, str]) -> Callable[[Path], None]:
    def change(wt: Path) -> None:
        for rel, text in files.items():
            (wt / rel).parent.mkdir(parents=True, exist_ok=True)
            (wt / rel).write_text(text)

    return change


def assert_bug_not_on_main(factory: Path) -> None:
    assert GOOD_LINE_COUNT in git(factory, "show", f"main:{CODE}")


def last_message(name: str) -> str:
    return str(inbox(name)[-1]["body"])


# --- test infrastructure is for humans ---


def test_test_infrastructure_changes_are_held_with_their_reason_and_never_tested(factory: Path) -> None:
    human_commit(factory, {f"{SUT}/tests/conftest.py": "import pytest\n"}, "human: a conftest")
    b = bug(factory)
    padding = {PADDING: "def test_padding():\n    assert True\n"}
    cases = {
        "adds-conftest": (
            {**b, f"{SUT}/conftest.py": LYING_HOOK},
            f"{SUT}/conftest.py: conftest.py added",
        ),
        "changes-conftest": (
            {**b, f"{SUT}/tests/conftest.py": LYING_HOOK},
            f"{SUT}/tests/conftest.py: conftest.py changed",
        ),
        "pytest-ini-elsewhere": (
            {**b, f"{SUT}/pytest.ini": "[pytest]\ntestpaths = textstats\n"},
            f"{SUT}/pytest.ini: pytest configuration changes testpaths",
        ),
        "pyproject-k-padding": (
            {**b, **padding, f"{SUT}/pyproject.toml": pyproject_with(factory, "addopts = \"-k 'padding'\"")},
            "addopts adds -k padding deselects tests by name",
        ),
        "setup-cfg-functions": (
            {**b, f"{SUT}/setup.cfg": "[tool:pytest]\npython_functions = check_*\n"},
            f"{SUT}/setup.cfg: pytest configuration changes python_functions",
        ),
        "tox-ini-elsewhere": (
            {**b, f"{SUT}/tox.ini": "[tox]\nenvlist = py311\n\n[pytest]\ntestpaths = docs\n"},
            f"{SUT}/tox.ini: pytest configuration changes testpaths",
        ),
        "pyproject-plugin": (
            {**b, f"{SUT}/pyproject.toml": pyproject_with(factory, 'addopts = "-p tests.helpers"')},
            "addopts adds -p tests.helpers loads or blocks a plugin",
        ),
        "gitattributes": (
            {**b, f"{SUT}/.gitattributes": "*.py -diff\n"},
            f"{SUT}/.gitattributes: .gitattributes added",
        ),
    }
    for name, (files, _) in cases.items():
        hostile(factory, name, writes(files))
    main_before = git(factory, "rev-parse", "main")

    run_queue(factory)

    assert git(factory, "rev-parse", "main") == main_before
    assert_bug_not_on_main(factory)
    assert uncached_runs(factory) == 0, "a held branch is not tested"
    for name, (_, reason) in cases.items():
        e = entries(factory)[name]
        assert e.state == "held", name
        assert any(reason in why for why in e.verdict["why"]), (name, e.verdict)
        body = last_message(name)
        assert body.startswith(f"[fac] HELD: fac/{name}") and reason in body, body
        assert "rule: test infrastructure" in body and f"fac approve fac/{name}" in body, body
    # The hold and its reason show in `fac queue`, `fac status` and the dashboard.
    queue = fac("queue", "--json")
    assert queue.exit_code == 0, queue.output
    assert "conftest.py added" in queue.output
    status = fac("status")
    assert f"{len(cases)} held" in status.output
    assert "held: fac/adds-conftest" in status.output and "conftest.py added" in status.output
    from supervisor import dashboard
    from supervisor.factory import Factory

    snap = dashboard.snapshot(Factory(factory))
    assert snap["queue"]["held"] == len(cases)
    assert {h["branch"] for h in snap["held"]} == {f"fac/{n}" for n in cases}
    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(dashboard.render(snap))
    shown = console.export_text()
    assert "held for a human's approval" in shown and "conftest.py added" in shown


def test_a_plugin_module_is_red_and_its_hold_is_reported_in_the_same_round(factory: Path) -> None:
    plugin = f"{SUT}/textstats/_plugin.py"
    files = {
        **bug(factory),
        plugin: LYING_HOOK,
        f"{SUT}/pyproject.toml": pyproject_with(factory, 'addopts = "-p textstats._plugin"'),
    }
    hostile(factory, "plugin", writes(files))

    mq = run_queue(factory)

    assert mq.stats["red"] == 1 and uncached_runs(factory) == 0
    assert_bug_not_on_main(factory)
    e = entries(factory)["plugin"]
    assert e.state == "red"
    [failed] = [f for f in e.verdict["failed"]]
    assert failed["name"] == "guard:test-framework"
    feedback = failed["feedback"].splitlines()
    assert feedback[0].startswith("rule: code that is not a test never imports")
    assert f"{plugin}:1: imports pytest" in feedback
    assert f"{plugin}:5: defines the pytest hook pytest_runtest_makereport" in feedback
    body = last_message("plugin")
    # Everything at once: the guard and the hold that will follow.
    assert "check guard:test-framework failed" in body
    assert "a human must approve" in body and "-p textstats._plugin loads or blocks a plugin" in body


def test_an_honest_conftest_change_merges_after_a_human_approves_it(factory: Path) -> None:
    fixture = "import pytest\n\n\n@pytest.fixture\ndef sample():\n    return 'a b a'\n"
    test = (
        "def test_sample_words(sample):\n"
        "    from textstats import words\n\n"
        "    assert words(sample) == ['a', 'b', 'a']\n"
    )
    commit(
        spawn_worker(factory, "honest"),
        {f"{SUT}/tests/conftest.py": fixture, f"{SUT}/tests/test_sample.py": test},
        "honest: a fixture",
    )
    submit("honest")
    run_queue(factory)
    assert entries(factory)["honest"].state == "held"

    res = fac("approve", "honest")
    assert res.exit_code == 0, res.output
    run_queue(factory)

    assert entries(factory)["honest"].state == "merged"
    assert git(factory, "show", f"main:{SUT}/tests/conftest.py") == fixture.rstrip("\n")


# --- the test framework belongs to the tests ---


def test_code_that_imports_patches_or_shadows_pytest_is_red_with_file_and_line(factory: Path) -> None:
    src = bug(factory)[CODE]
    patched = src.replace(
        "import re\n",
        "import re\nimport sys\n\nimport _pytest.reports\n\n"
        "_pytest.reports.TestReport.passed = property(lambda self: True)\n"
        'sys.modules["pytest"].exit = lambda *a, **k: None\n',
    )
    lines = patched.splitlines()
    cases = {
        "patches-pytest": (
            {CODE: patched},
            [
                f"{CODE}:{lines.index('import _pytest.reports') + 1}: imports _pytest.reports",
                f"{CODE}:{next(i for i, t in enumerate(lines, 1) if 'sys.modules' in t)}: "
                "patches or reads the framework through sys.modules",
            ],
        ),
        "shadows-pytest": (
            {**bug(factory), f"{SUT}/pytest.py": "print('4 passed')\nraise SystemExit(0)\n"},
            [f"{SUT}/pytest.py: shadows the test framework module 'pytest'"],
        ),
        "startup-hook": (
            {**bug(factory), f"{SUT}/sitecustomize.py": "import os\n"},
            [f"{SUT}/sitecustomize.py: sitecustomize.py runs code when Python starts"],
        ),
    }
    for name, (files, _) in cases.items():
        hostile(factory, name, writes(files))
    # Honest: a test file may import pytest, and code may name pytest in its docs.
    honest = {
        f"{SUT}/tests/test_more.py": "import pytest\n\n\n@pytest.mark.parametrize('n', [1])\n"
        "def test_more(n):\n    assert n == 1\n",
        f"{SUT}/textstats/notes.py": '"""Tested with pytest; see tests/."""\n',
    }
    commit(spawn_worker(factory, "honest"), honest, "honest: more tests")
    submit("honest")

    run_queue(factory, max_batch=1)

    assert_bug_not_on_main(factory)
    assert entries(factory)["honest"].state == "merged"
    for name, (_, expected) in cases.items():
        e = entries(factory)[name]
        assert e.state == "red", name
        failed = {f["name"]: f["feedback"] for f in e.verdict["failed"]}
        assert set(failed) == {"guard:test-framework"}, (name, failed)
        for line in expected:
            assert line in failed["guard:test-framework"].splitlines(), (name, failed)
            assert line in last_message(name)


# --- symlinks ---


def test_symlinks_out_of_the_tree_or_into_protected_paths_are_refused(factory: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside_conftest.py"
    outside.write_text(LYING_HOOK)

    def link(rel: str, target: str, carries_bug: bool = True) -> Callable[[Path], None]:
        def change(wt: Path) -> None:
            if carries_bug:
                writes(bug(factory))(wt)
            (wt / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, wt / rel)

        return change

    cases = {
        "absolute": (link(f"{SUT}/textstats/extra.py", str(outside)), "an absolute target"),
        "escapes": (
            link(f"{SUT}/textstats/extra.py", "../../../outside_conftest.py"),
            "leaves the repository",
        ),
        "into-checks": (link(f"{SUT}/tests/suite", "../../checks"), "lands in the protected path checks"),
    }
    for name, (change, _) in cases.items():
        hostile(factory, name, change)
    hostile(factory, "honest", link(f"{SUT}/docs.md", "README.md", carries_bug=False))

    run_queue(factory, max_batch=1)

    assert_bug_not_on_main(factory)
    for name, (_, why) in cases.items():
        e = entries(factory)[name]
        assert e.state == "red", name
        failed = {f["name"]: f["feedback"] for f in e.verdict["failed"]}
        assert "guard:symlink" in failed, (name, failed)
        assert why in failed["guard:symlink"] and "check guard:symlink failed" in last_message(name)
    # A link that stays in the tree and off protected paths merges.
    assert entries(factory)["honest"].state == "merged"
    assert git(factory, "ls-tree", "main", f"{SUT}/docs.md").startswith("120000")


# --- the guards see the bytes ---


def test_attributes_and_drivers_planted_in_git_do_not_blind_the_guards(factory: Path, tmp_path: Path) -> None:
    marker = tmp_path / "driver-ran"
    # Merged first as a harmless-looking change (a human approved it): every .py file is "binary".
    human_commit(factory, {f"{SUT}/.gitattributes": "*.py -diff\n"}, "human: attributes")
    source = (factory / TESTS).read_text()
    skipped = "import pytest\n" + source.replace(
        "def test_line_count", "@pytest.mark.skip(reason='flaky')\ndef test_line_count"
    )
    removed = source[: source.index("def test_line_count")] + source[source.index("def test_top_words") :]
    hostile(factory, "skips", writes({**bug(factory), TESTS: skipped}))
    hostile(factory, "removes", writes({**bug(factory), TESTS: removed}))
    # Honest, and it changes the same file as a human's later commit on main: a content merge.
    wt = spawn_worker(factory, "honest")
    commit(wt, {CODE: (factory / CODE).read_text() + "\n\nVERSION = '0.1'\n"}, "honest: a version")
    submit("honest")
    code = (factory / CODE).read_text()
    human_commit(factory, {CODE: '"""textstats: statistics."""\n' + code.split("\n", 1)[1]}, "human: docs")
    # Then a worker without a sandbox plants a textconv driver, a merge driver and a filter in the
    # shared config, and selects them (and -diff) in the shared .git/info/attributes. (After the
    # test's own commits: the test's plain git would run them too.)
    common = factory / ".git"
    (common / "info").mkdir(exist_ok=True)
    (common / "info" / "attributes").write_text("* -diff diff=lie merge=lie filter=lie\n")
    with open(common / "config", "a") as f:
        # Double quotes keep git's config parser from reading `;` as the start of a comment.
        f.write(
            f'[diff "lie"]\n\ttextconv = "sh -c \'touch {marker}; echo\'"\n'
            f'[merge "lie"]\n\tdriver = "sh -c \'touch {marker}; cp %B %A\'"\n'
            f'[filter "lie"]\n\tsmudge = "sh -c \'touch {marker}; cat\'"\n'
            f"\tclean = \"sh -c 'touch {marker}; cat'\"\n"
        )
    # The drivers are live: plain git, as the guards ran it before, runs them.
    attrs = subprocess.run(
        ["git", "check-attr", "-a", "--", CODE], cwd=factory, capture_output=True, text=True
    )
    assert all(f"{kind}: lie" in attrs.stdout for kind in ("diff", "merge", "filter")), attrs.stdout
    subprocess.run(["git", "diff", "HEAD~1", "HEAD"], cwd=factory, capture_output=True, check=True)
    assert marker.exists(), "the planted textconv driver should run under plain git"
    marker.unlink()
    main_before = git(factory, "rev-parse", "main")

    run_queue(factory, max_batch=1)

    assert not marker.exists(), "a driver planted in the shared config ran on the trusted side"
    skip_line = skipped.splitlines().index("@pytest.mark.skip(reason='flaky')") + 1
    expect = {
        "skips": f"{TESTS}:{skip_line}: @pytest.mark.skip(reason='flaky')  (adds a skip/xfail/deselect)",
        "removes": f"{TESTS}::test_line_count_counts_a_last_line_without_newline: test removed",
    }
    for name, line in expect.items():
        e = entries(factory)[name]
        assert e.state == "red", name
        failed = {f["name"]: f["feedback"] for f in e.verdict["failed"]}
        assert line in failed["guard:no-weakening"].splitlines(), (name, failed)
        assert "rule: no test is skipped, deselected or removed" in last_message(name)
    # The honest branch merges by git's own three-way merge, not by the planted driver.
    assert entries(factory)["honest"].state == "merged"
    merged = git(factory, "cat-file", "blob", f"main:{CODE}")
    assert merged.startswith('"""textstats: statistics."""') and "VERSION = '0.1'" in merged
    assert git(factory, "rev-parse", "main") != main_before
    assert_bug_not_on_main(factory)
    assert not marker.exists()
