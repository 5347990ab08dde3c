"""The gate cannot be fooled (issue 10, the results half): hostile scripted workers through the real queue.

Every hostile branch carries the same real bug (`words` stops lower-casing, which main's
`test_words_are_lower_cased_in_order` catches) plus one way of making pytest lie about it. None may
reach main, and each owner must be told which rule fired. Honest branches of the same shape merge.
The pure parts (report completeness, the ratchet, what a run's result is) get table tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import git
from queue_helpers import SUT, commit, entries, fac, inbox, run_queue, spawn_worker, submit

from supervisor import gate, junit
from supervisor.checks import CheckResult
from supervisor.queue import planner

CODE = f"{SUT}/textstats/__init__.py"
TESTS = f"{SUT}/tests/test_textstats.py"
WORDS_TEST = "tests.test_textstats::test_words_are_lower_cased_in_order"


def buggy(root: Path) -> str:
    """textstats with the real bug: words are no longer lower-cased."""
    text = (root / CODE).read_text()
    bad = text.replace("return [w.lower() for w in WORD.findall(text)]", "return list(WORD.findall(text))")
    assert bad != text
    return bad


def main_tests(root: Path) -> str:
    return (root / TESTS).read_text()


def hostile(root: Path, name: str, changes: dict[str, str | None]) -> None:
    commit(spawn_worker(root, name), {CODE: buggy(root), **changes}, f"{name}: tidy up")
    submit(name)


def red_body(name: str) -> str:
    msgs = [m for m in inbox(name) if m["kind"] == "red"]
    assert len(msgs) == 1, inbox(name)
    return str(msgs[0]["body"])


def assert_bug_not_on_main(root: Path) -> None:
    code = git(root, "show", f"main:{CODE}")
    assert "w.lower()" in code, "the bug reached main"


# A conftest or pytest configuration in the branch is also held for a human by the guards (the other
# half of issue 10). The gate itself never uses the branch's: main's test infrastructure judges it.
def assert_refused_by(root: Path, name: str, *needles: str, may_be_held: bool = False) -> None:
    e = entries(root)[name]
    if may_be_held and e.state == "held":
        return
    assert e.state == "red", (name, e.state, e.verdict)
    body = red_body(name)
    for needle in needles:
        assert needle in body, f"{needle!r} not in {name}'s red message:\n{body}"


REWRITE_REPORTS = """\
import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
    report.longrepr = None
"""

FORCE_EXIT = """\
def pytest_sessionfinish(session, exitstatus):
    session.exitstatus = 0
"""

DROP_TEST = """\
def pytest_collection_modifyitems(session, config, items):
    items[:] = [i for i in items if "lower_cased" not in i.name]
"""

PATCH_PYTEST = """\
import _pytest.runner

_real = _pytest.runner.call_and_report

def _always_green(item, when, log=True, **kw):
    report = _real(item, when, log=False, **kw)
    report.outcome = "passed"
    report.longrepr = None
    if log:
        item.ihook.pytest_runtest_logreport(report=report)
    return report

_pytest.runner.call_and_report = _always_green
"""

# Exits 0 after pytest has written its (red) report: the exit status is forced.
ATEXIT_ZERO = """\
import atexit
import os

atexit.register(lambda: os._exit(0))


def test_cleanup_is_registered():
    assert True
"""

# Ends the session with exit status 0 before pytest writes any report.
EXIT_AT_SESSION_END = """\
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _finish():
    yield
    os._exit(0)


def test_zz_last():
    assert True
"""

SHADOW_PYTEST = """\
import sys

print("4 passed in 0.01s")
sys.exit(0)
"""


def test_hostile_branches_with_a_real_bug_never_reach_main_and_each_owner_hears_the_rule(
    factory: Path,
) -> None:
    tests = main_tests(factory)
    attacks: dict[str, dict[str, str | None]] = {
        # Code that makes pytest lie, from a conftest: main's (none) is used instead.
        "rewrites": {f"{SUT}/tests/conftest.py": REWRITE_REPORTS},
        "forces-exit": {f"{SUT}/conftest.py": FORCE_EXIT},
        "drops": {f"{SUT}/tests/conftest.py": DROP_TEST},
        "patches-conftest": {f"{SUT}/conftest.py": PATCH_PYTEST},
        # A new test module that forces the exit status, or ends the session before any report.
        "atexit": {f"{SUT}/tests/test_cleanup.py": ATEXIT_ZERO},
        "exits-early": {f"{SUT}/tests/test_zz.py": EXIT_AT_SESSION_END},
        # A pytest.py in the system's root: safe-path mode (-P) keeps the real pytest.
        "shadows": {f"{SUT}/pytest.py": SHADOW_PYTEST},
        # Tests neutered in place: main's copy of the file still runs against the code.
        "asserts-true": {
            TESTS: tests.replace(
                'assert words("The cat, the HAT.") == ["the", "cat", "the", "hat"]', "assert True"
            )
        },
        "no-assert": {
            TESTS: tests.replace(
                'assert words("The cat, the HAT.") == ["the", "cat", "the", "hat"]',
                'words("The cat, the HAT.") == ["the", "cat", "the", "hat"]',
            )
        },
        "redefines": {
            TESTS: tests.replace(
                "\n\ndef test_words_are_lower_cased_in_order",
                "\n\ndef words(text):\n"
                "    return [w.lower() for w in text.replace(',', ' ').replace('.', ' ').split()]"
                "\n\n\ndef test_words_are_lower_cased_in_order",
            )
        },
        # A test "moved": gone from its file, a trivial one of the same name in another.
        "moves": {
            TESTS: tests.replace(
                'def test_words_are_lower_cased_in_order():\n    assert words("The cat, the HAT.") == '
                '["the", "cat", "the", "hat"]\n',
                "",
            ),
            f"{SUT}/tests/test_moved.py": "def test_words_are_lower_cased_in_order():\n    assert True\n",
        },
    }
    for name, changes in attacks.items():
        for path, text in changes.items():
            assert text is None or path not in (TESTS,) or text != tests, (
                f"{name}: the attack changes nothing"
            )
        hostile(factory, name, changes)
    main_before = git(factory, "rev-parse", "main")

    mq = run_queue(factory, max_batch=1, retries=1)

    assert git(factory, "rev-parse", "main") == main_before
    assert_bug_not_on_main(factory)
    assert mq.stats["merged"] == 0 and mq.stats["flaky"] == 0
    ratchet_fails = (
        "rule ratchet: test_words_are_lower_cased_in_order (tests.test_textstats) "
        "passes on main and fails here"
    )
    for name in ("rewrites", "forces-exit", "drops", "patches-conftest"):
        assert_refused_by(
            factory, name, "FAILED tests/test_textstats.py::test_words", ratchet_fails, may_be_held=True
        )
    assert_refused_by(
        factory, "atexit", "rule per-test report: pytest exited 0 but its report has 1 failed test(s)"
    )
    assert_refused_by(factory, "exits-early", "rule per-test report: no junit report")
    # The guards refuse a pytest.py outright; were one to get past them, safe-path mode keeps the real
    # pytest (test_a_pytest_py_in_the_tree_cannot_shadow_pytest).
    assert entries(factory)["shadows"].state == "red"
    shadows = red_body("shadows")
    assert "guard:test-framework" in shadows or ratchet_fails in shadows, shadows
    main_copy = (
        "rule main's tests: test_words_are_lower_cased_in_order (tests.test_textstats) in main's copy of "
        f"{TESTS} fails against your code"
    )
    for name in ("asserts-true", "no-assert", "redefines"):
        assert_refused_by(factory, name, main_copy)
    assert_refused_by(
        factory,
        "moves",
        main_copy,
        "rule ratchet: test_words_are_lower_cased_in_order (tests.test_textstats) exists on main and is "
        "missing here: restore it, or ask a human to approve its removal",
    )
    assert all(entries(factory)[n].state in ("red", "held") for n in attacks)


def test_honest_branches_of_the_same_shapes_merge(factory: Path) -> None:
    tests = main_tests(factory)
    # Edits a test file main has (the second run of main's copy passes) and adds one of its own.
    honest = {
        TESTS: tests + '\n\ndef test_words_keeps_apostrophes():\n    assert words("It\'s") == ["it\'s"]\n',
        f"{SUT}/tests/test_more.py": "from textstats import word_count\n\n\ndef test_empty():\n"
        '    assert word_count("") == 0\n',
    }
    commit(spawn_worker(factory, "honest"), honest, "honest: more tests")
    submit("honest")

    mq = run_queue(factory, max_batch=1, retries=0)

    assert entries(factory)["honest"].state == "merged", entries(factory)["honest"].verdict
    assert mq.stats["merged"] == 1
    assert "test_words_keeps_apostrophes" in git(factory, "show", f"main:{TESTS}")


def test_a_moved_test_needs_a_human_and_then_merges(factory: Path) -> None:
    tests = main_tests(factory)
    block = (
        "def test_words_are_lower_cased_in_order():\n"
        '    assert words("The cat, the HAT.") == ["the", "cat", "the", "hat"]\n'
    )
    assert block in tests
    moved = {
        TESTS: tests.replace(block, ""),
        f"{SUT}/tests/test_words.py": "from textstats import words\n\n\n" + block,
    }
    commit(spawn_worker(factory, "mover"), moved, "mover: words tests in their own file")
    submit("mover")
    run_queue(factory, max_batch=1, retries=1)
    assert entries(factory)["mover"].state == "red"
    body = red_body("mover")
    assert "exists on main and is missing here: restore it, or ask a human to approve its removal" in body
    assert "fac approve" in body

    res = fac("approve", "fac/mover")
    assert res.exit_code == 0, res.output
    run_queue(factory, max_batch=1, retries=1)

    assert entries(factory)["mover"].state == "merged", entries(factory)["mover"].verdict
    assert "test_words_are_lower_cased_in_order" in git(factory, "show", f"main:{SUT}/tests/test_words.py")


def test_a_failing_new_test_is_never_retried(factory: Path) -> None:
    new = {f"{SUT}/tests/test_new.py": "def test_new_thing():\n    assert 1 + 1 == 3\n"}
    commit(spawn_worker(factory, "newbie"), new, "newbie: a new test")
    submit("newbie")

    mq = run_queue(factory, max_batch=1, retries=3)

    assert entries(factory)["newbie"].state == "red"
    assert mq.stats["check_runs"] == 1, "a failing new test was retried"


# --- the pure parts ---


def report(cases: str, tests: int | None = None, failures: int = 0, errors: int = 0, skipped: int = 0) -> str:
    n = cases.count("<testcase") if tests is None else tests
    return (
        f'<testsuites><testsuite name="pytest" tests="{n}" failures="{failures}" errors="{errors}" '
        f'skipped="{skipped}">{cases}</testsuite></testsuites>'
    )


OK = '<testcase classname="tests.test_a" name="test_ok"/>'
BAD = '<testcase classname="tests.test_a" name="test_bad"><failure message="x"/></testcase>'
KEYS = ["tests.test_a::test_ok", "tests.test_a::test_bad"]


@pytest.mark.parametrize(
    ("code", "text", "collected", "why"),
    [
        (0, report(OK + OK.replace("test_ok", "test_bad")), KEYS, None),
        (1, report(OK + BAD, failures=1), KEYS, None),  # red, but believable
        (0, None, KEYS, "no junit report"),
        (0, "", KEYS, "no junit report"),
        (0, "<html>forged</html>", KEYS, "no junit report"),
        (0, report(OK + BAD, failures=0), KEYS, "disagrees with itself"),
        (0, report(OK, tests=2), KEYS, "disagrees with itself"),
        (0, report(OK + BAD, failures=1), KEYS, "pytest exited 0 but its report has 1 failed"),
        (0, report(OK), KEYS, "1 collected test(s) have no outcome"),
        (0, report(OK), None, "could not be collected"),
        (1, report(OK), KEYS, None),  # -x stopped it: red anyway, the missing outcome is not the point
    ],
)
def test_a_report_is_believed_only_when_complete(
    code: int, text: str | None, collected: list[str] | None, why: str | None
) -> None:
    rep = junit.parse_report(text) if text else None
    got = junit.incomplete(code, rep, collected)
    assert (got is None) if why is None else (got is not None and why in got), got


@pytest.mark.parametrize(
    ("main", "here", "waived", "present", "lost"),
    [
        ({"a::t1": "passed"}, {"a::t1": "passed", "a::t2": "failed"}, (), (), []),
        ({"a::t1": "passed"}, {}, (), (), [("a::t1", "missing")]),
        ({"a::t1": "passed"}, {"b::t1": "passed"}, (), (), [("a::t1", "missing")]),  # moved: removed + added
        ({"a::t1": "passed"}, {"a::t1": "failed"}, (), (), [("a::t1", "failed")]),
        ({"a::t1": "passed"}, {"a::t1": "skipped"}, (), (), [("a::t1", "skipped")]),
        ({"a::t1": "passed"}, {}, ("a::t1",), (), []),  # a human approved its removal
        ({"a::t1": "failed", "a::t2": "skipped"}, {}, (), (), []),  # main does not pass them
        ({"a::t1": "passed"}, {}, (), ("a::t1",), []),  # collected, not run (-x): not missing
    ],
)
def test_the_ratchet_keeps_every_test_main_passes(
    main: dict[str, str], here: dict[str, str], waived: tuple[str, ...], present: tuple[str, ...], lost: list
) -> None:
    got = junit.ratchet(main, here, frozenset(waived), frozenset(present))
    assert [(x.test, x.how) for x in got] == lost


def run_result(code: int, feedback: str = "") -> CheckResult:
    return CheckResult("tests", code == 0, code, 1.0, feedback, "")


@pytest.mark.parametrize(
    ("code", "cases", "main", "ok", "retryable", "rule"),
    [
        (0, OK, {"tests.test_a::test_ok": "passed"}, True, True, None),
        # A test main passes fails here: red, and a rerun may clear it (it could be flaky).
        (1, BAD, {"tests.test_a::test_bad": "passed"}, False, True, "rule ratchet"),
        # A new test fails: never retried.
        (1, BAD, {}, False, False, None),
        # Green exit, but a test main passes is gone.
        (
            0,
            OK,
            {"tests.test_a::test_ok": "passed", "tests.test_a::test_gone": "passed"},
            False,
            False,
            "missing",
        ),
        (0, BAD, {}, False, False, "rule per-test report"),
    ],
)
def test_a_pytest_result_names_its_rule_and_says_whether_a_rerun_may_clear_it(
    code: int, cases: str, main: dict[str, str], ok: bool, retryable: bool, rule: str | None
) -> None:
    failures = cases.count("<failure")
    rep = junit.parse_report(report(cases, failures=failures))
    collected = list(rep.outcomes) if rep else None
    got = gate.verdict_of(
        run_result(code, "FAILED x" if code else ""), rep, collected, main, None, frozenset()
    )
    assert got.ok is ok
    if not ok:
        assert got.retryable is retryable
    if rule:
        assert rule in got.feedback


def test_the_plan_takes_main_infrastructure_and_main_copies_of_changed_test_files() -> None:
    changed = [
        ("M", "sut/tests/test_a.py"),
        ("D", "sut/tests/test_b.py"),
        ("A", "sut/tests/test_new.py"),
        ("M", "sut/tests/helpers.py"),
        ("A", "sut/tests/conftest.py"),
        ("M", "sut/pyproject.toml"),
        ("M", "sut/code.py"),
    ]
    infra, tests = gate.plan_for(changed)
    assert infra == ["sut/tests/conftest.py", "sut/pyproject.toml"]
    assert tests == ["sut/tests/test_a.py", "sut/tests/test_b.py", "sut/tests/helpers.py"]


@pytest.mark.parametrize(
    ("argv", "fix"),
    [
        (["python", "-m", "pytest"], ["-q"]),
        (["python", "-m", "pytest", "-q"], []),
        (["pytest", "-qq"], ["-v"]),
        (["pytest", "-v", "--verbose"], ["-q", "-q", "-q"]),
    ],
)
def test_collection_prints_one_node_id_per_line_whatever_the_verbosity(
    argv: list[str], fix: list[str]
) -> None:
    assert junit.collect_args(argv) == ["--collect-only", "-p", "no:cacheprovider", *fix]


def test_node_ids_and_junit_keys_agree() -> None:
    out = "tests/test_a.py::test_x\ntests/sub/test_b.py::TestC::test_y[a b]\n\n2 tests collected in 0.01s\n"
    assert junit.collected_keys(out) == ["tests.test_a::test_x", "tests.sub.test_b.TestC::test_y[a b]"]


@pytest.mark.parametrize(
    ("retries", "reruns", "retryable", "step"),
    [
        (1, [], True, planner.Retry(1, 1)),
        (1, [], False, planner.Alone.BLAME),
        (1, [True], True, planner.Alone.FLAKY),
        (1, [False], True, planner.Alone.BLAME),
    ],
)
def test_only_a_failure_main_knows_is_retried(
    retries: int, reruns: list[bool], retryable: bool, step: planner.Retry | planner.Alone
) -> None:
    assert planner.retry_or_blame(retries, reruns, retryable=retryable) == step


def test_an_approved_delta_lets_its_branch_change_the_test_it_replaces(factory: Path) -> None:
    statement = (
        "`words(text)` MUST return the words of `text` as written, in order. {#words-lower-cased-in-order} "
        "[check: tests::test_words_keep_their_case]"
    )
    res = fac("delta", "new", "Words keep their case", "--statement", statement, "--json")
    assert res.exit_code == 0, res.output
    assert fac("delta", "approve", "1").exit_code == 0
    tests = main_tests(factory)
    old = 'assert words("The cat, the HAT.") == ["the", "cat", "the", "hat"]'
    change = {
        CODE: buggy(factory),  # the "bug" is now the requested behaviour
        TESTS: tests.replace(old, 'assert words("the cat") == ["the", "cat"]')
        + '\n\ndef test_words_keep_their_case():\n    assert words("The HAT") == ["The", "HAT"]\n',
    }
    # The same change without the delta (judged first): main's copy of the test still judges it.
    commit(spawn_worker(factory, "unasked"), change, "unasked: words keep their case")
    submit("unasked")
    assert fac("spawn", "worker", "--name", "asked", "--cmd", "sleep 600", "--delta", "1").exit_code == 0
    commit(factory / ".fac" / "worktrees" / "asked", change, "asked: words keep their case")
    submit("asked")

    run_queue(factory, max_batch=1, retries=0)

    assert entries(factory)["unasked"].state == "red"
    assert "rule main's tests: test_words_are_lower_cased_in_order" in red_body("unasked")
    assert entries(factory)["asked"].state == "merged", entries(factory)["asked"].verdict


def test_a_delta_releases_the_tests_of_what_it_removes_or_replaces() -> None:
    from supervisor import deltas
    from supervisor.specs import parse as parse_spec
    from supervisor.specs.deltafiles import parse as parse_delta

    current = parse_spec(
        "specs/current/x.md",
        "- A MUST be. {#a} [check: tests::test_a]\n"
        "- B MUST be. {#b} [check: tests::test_b] [check: tests::test_b2]\n"
        "- C MUST be. {#c} [check: tests::test_c]\n",
    ).statements
    delta = parse_delta(
        "specs/deltas/0001-x.md",
        '+++\nid = "0001"\ntitle = "x"\nstatus = "approved"\nowner = "h"\nremoves = ["a"]\n+++\n'
        "- B MUST be new. {#b} [check: tests::test_b2] [check: tests::test_b3]\n",
    )
    assert not delta.problems, delta.problems
    assert deltas.released_tests(delta, current) == ["test_a", "test_b"]


def test_the_junit_report_is_written_where_the_tests_cannot_write(tmp_path: Path) -> None:
    from supervisor import checks, sandbox
    from supervisor.config import CheckDef

    sb = sandbox.detect(tmp_path)
    if sb.kind != "bwrap":
        pytest.skip(f"needs bubblewrap (checks run in: {sb.detail})")
    tree = tmp_path / "tree"
    reports = tmp_path / "reports"
    (tree / "tests").mkdir(parents=True)
    (tree / "tests" / "test_forge.py").write_text(
        "import pathlib\n\n\n"
        "def test_cannot_leave_a_report_beside_the_real_one():\n"
        f"    target = pathlib.Path({str(reports)!r}) / 'forged.xml'\n"
        "    try:\n"
        "        target.write_text('<testsuites/>')\n"
        "    except OSError:\n"
        "        return\n"
        "    raise AssertionError('wrote into the report directory')\n"
    )
    check = CheckDef(name="tests", run=("python", "-m", "pytest", "-q", "-p", "no:cacheprovider"))
    report = reports / "tests.xml"

    r = checks.run_one(check, tree, "gate", tmp_path / "logs", sb, report=report)

    assert r.ok, r.feedback
    got = junit.read_report(report)
    assert got is not None
    assert got.outcomes == {"tests.test_forge::test_cannot_leave_a_report_beside_the_real_one": "passed"}
    assert not (reports / "forged.xml").exists()
    assert not list(tree.rglob("*.xml")), "a report inside the tree under test"


@pytest.mark.parametrize(
    ("code", "cases", "main_ids", "second_cases", "needed"),
    [
        (0, OK, ["tests.test_a::test_ok"], None, False),  # green: main's collection is enough
        (1, BAD, ["tests.test_a::test_bad"], None, True),  # red: which failures does main know?
        (0, OK, None, None, True),  # main's tests could not be collected
        (0, '<testcase classname="tests.test_a" name="test_ok"><skipped/></testcase>', KEYS[:1], None, True),
        (0, OK, KEYS[:1], BAD, True),  # main's copy fails: does it fail on main too?
        (0, OK, KEYS[:1], OK, False),
    ],
)
def test_main_runs_its_own_tests_only_when_the_answer_depends_on_it(
    code: int, cases: str, main_ids: list[str] | None, second_cases: str | None, needed: bool
) -> None:
    rep = junit.parse_report(report(cases, failures=cases.count("<failure"), skipped=cases.count("<skipped")))
    second = None
    if second_cases is not None:
        rep2 = junit.parse_report(report(second_cases, failures=second_cases.count("<failure")))
        second = (run_result(0), rep2, ("tests/test_a.py",))
    assert gate.needs_main_run(run_result(code), rep, main_ids, second) is needed


def test_a_pytest_py_in_the_tree_cannot_shadow_pytest(tmp_path: Path) -> None:
    from supervisor import checks
    from supervisor.config import CheckDef

    tree = tmp_path / "tree"
    (tree / "tests").mkdir(parents=True)
    (tree / "pytest.py").write_text(SHADOW_PYTEST)
    (tree / "tests" / "test_x.py").write_text("def test_x():\n    assert 1 + 1 == 3\n")
    check = CheckDef(name="tests", run=("python", "-m", "pytest", "-q", "-p", "no:cacheprovider"))
    report = tmp_path / "reports" / "tests.xml"

    r = checks.run_one(check, tree, "gate", tmp_path / "logs", None, report=report)

    assert not r.ok and r.exit_code == 1, r.tail
    assert "4 passed" not in r.tail
    got = junit.read_report(report)
    assert got is not None and got.outcomes == {"tests.test_x::test_x": "failed"}
