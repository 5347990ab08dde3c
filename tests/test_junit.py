"""Per-test outcomes: which junit test cases a link names, and how a pytest check is made to report them."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.config import CheckDef
from supervisor.junit import junit_matches, junit_outcomes, reports_for


@pytest.mark.parametrize(
    ("spec", "key", "matches"),
    [
        ("test_x", "tests.test_a::test_x", True),
        ("test_x", "tests.test_a::test_x[1]", True),  # every parameter of a linked test
        ("test_x[1]", "tests.test_a::test_x[1]", True),
        ("test_x[1]", "tests.test_a::test_x[2]", False),
        ("test_x", "tests.test_a::test_xy", False),
        ("TestC::test_x", "tests.test_a.TestC::test_x", True),
        ("TestC::test_x", "tests.test_a.TestD::test_x", False),
        ("tests/test_a.py::test_x", "sut.tests.test_a::test_x", True),
        ("test_a.py::test_x", "tests.test_b::test_x", False),
    ],
)
def test_a_link_names_the_junit_cases_of_its_test(spec: str, key: str, matches: bool) -> None:
    assert junit_matches(spec, key) is matches


def test_only_pytest_checks_get_a_junit_report_outside_the_tree(tmp_path: Path) -> None:
    reports = reports_for(
        (
            CheckDef(name="tests", run=("pytest", "-q")),
            CheckDef(name="lint", run=("ruff", "check")),
            CheckDef(name="unit:py", run="python -m pytest"),
        ),
        tmp_path / "junit",
    )
    assert reports == {
        "tests": tmp_path / "junit" / "tests.xml",
        "unit:py": tmp_path / "junit" / "unit_py.xml",
    }


def test_junit_outcomes_reads_pass_fail_and_skip_and_a_failure_wins(tmp_path: Path) -> None:
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_a" name="test_bad"/>'
        '<testcase classname="tests.test_a" name="test_later"><skipped/></testcase>'
        '<testcase classname="tests.test_a" name="test_err"><error/></testcase>'
        "</testsuite></testsuites>"
    )
    assert junit_outcomes(report) == {
        "tests.test_a::test_ok": "passed",
        "tests.test_a::test_bad": "failed",
        "tests.test_a::test_later": "skipped",
        "tests.test_a::test_err": "failed",
    }
    assert junit_outcomes(tmp_path / "missing.xml") == {}
