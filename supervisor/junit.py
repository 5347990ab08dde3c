"""Per-test outcomes of pytest checks: where their junit report goes, how to read it, whether it can
be believed (complete, agreeing with itself and with a collection of its own), and what a candidate
lost of main's passing tests (the ratchet). All but `reports_for`'s paths are pure.

A statement may link one test of a pytest check (`[check: tests::test_x]`); `junit_matches` tells
which of the report's test cases a link names.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from supervisor import checks
from supervisor.config import CheckDef
from supervisor.errors import FacError


def reports_for(defs: tuple[CheckDef, ...], report_dir: Path) -> dict[str, Path]:
    """Where each pytest check of `defs` writes its junit report: `report_dir`, outside the tree under
    test and outside what its sandbox may write (`checks.run_one` hands the file over)."""
    out = {}
    for c in defs:
        try:
            is_pytest = checks.pytest_at(checks.argv_of(c)) is not None
        except FacError:
            is_pytest = False
        if is_pytest:
            out[c.name] = report_dir / f"{checks.safe_name(c.name)}.xml"
    return out


def junit_outcomes(path: Path) -> dict[str, str]:
    """'classname::name' -> passed, failed or skipped, from a junit report ({} when unreadable)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    out: dict[str, str] = {}
    for tc in root.iter("testcase"):
        tags = {child.tag for child in tc}
        outcome = "failed" if tags & {"failure", "error"} else "skipped" if "skipped" in tags else "passed"
        key = f"{tc.get('classname', '')}::{tc.get('name', '')}"
        if out.get(key) != "failed":
            out[key] = outcome
    return out


def junit_matches(spec: str, key: str) -> bool:
    """Does link test `spec` name the junit test `key` ('tests.test_a.TestC::test_x[1]')?"""
    classname, _, name = key.rpartition("::")
    parts = spec.split("::")
    want = parts[-1]
    if name != want and (("[" in want) or name.split("[", 1)[0] != want):
        return False
    dotted = f".{classname}."
    for q in parts[:-1]:
        q = q.removesuffix(".py").replace("/", ".") if q.endswith(".py") else q
        if f".{q}." not in dotted:
            return False
    return True


# --- the gate's reading of a pytest run: is the report complete, what did main's tests lose ---

Outcome = Literal["passed", "failed", "skipped"]
_NODEID = re.compile(r"^(\S[^\s:]*\.py::\S.*)$")


@dataclass(frozen=True)
class Report:
    """A junit report as the gate reads it: per-test outcomes, and the totals it declares and has."""

    outcomes: dict[str, str]
    declared: dict[str, int]  # tests, failures, errors, skipped: the <testsuite> attributes, summed
    counted: dict[str, int]  # the same, counted from its <testcase> elements

    @property
    def failed(self) -> list[str]:
        return sorted(k for k, v in self.outcomes.items() if v == "failed")


def parse_report(text: str) -> Report | None:
    """A junit report from its text; None when it is empty or not junit XML."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    if root.tag not in ("testsuite", "testsuites") or not suites:
        return None
    keys = ("tests", "failures", "errors", "skipped")
    declared = dict.fromkeys(keys, 0)
    for s in suites:
        for k in keys:
            try:
                declared[k] += int(s.get(k, "0"))
            except ValueError:
                declared[k] = -1
    counted = dict.fromkeys(keys, 0)
    outcomes: dict[str, str] = {}
    for tc in root.iter("testcase"):
        tags = [child.tag for child in tc]
        counted["tests"] += 1
        counted["failures"] += tags.count("failure")
        counted["errors"] += tags.count("error")
        counted["skipped"] += tags.count("skipped")
        outcome = (
            "failed" if {"failure", "error"} & set(tags) else "skipped" if "skipped" in tags else "passed"
        )
        key = f"{tc.get('classname', '')}::{tc.get('name', '')}"
        if outcomes.get(key) != "failed":  # a teardown error after a pass is a second case: it fails
            outcomes[key] = outcome
    return Report(outcomes, declared, counted)


def read_report(path: Path) -> Report | None:
    """The report pytest wrote at `path`; None when it never wrote one (or wrote garbage)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return parse_report(text) if text.strip() else None


def nodeid_key(nodeid: str) -> str:
    """A pytest node id ('tests/test_a.py::TestC::test_x[1]') as its junit key
    ('tests.test_a.TestC::test_x[1]')."""
    parts = nodeid.split("::")
    parts[0] = re.sub(r"\.py$", "", parts[0].replace("/", "."))
    return f"{'.'.join(parts[:-1])}::{parts[-1]}"


def shown(key: str) -> str:
    """A junit key the way a person reads it: 'test_x (tests.test_a)'."""
    classname, _, name = key.rpartition("::")
    return f"{name} ({classname})" if classname else name


def collected_keys(output: str) -> list[str]:
    """The junit keys of the node ids a `pytest --collect-only -q` run printed, in order."""
    return [
        nodeid_key(m.group(1)) for m in (_NODEID.match(line.rstrip()) for line in output.splitlines()) if m
    ]


def collect_args(argv: list[str]) -> list[str]:
    """What to append to a pytest check's arguments so that it only collects and prints one node id per
    line (verbosity -1, whatever -q or -v the check already passes)."""
    level = 0
    for arg in argv[(checks.pytest_at(argv) or 0) + 1 :]:
        if arg in ("--quiet", "--verbose"):
            level += 1 if arg == "--verbose" else -1
        elif re.fullmatch(r"-[qv]+", arg):
            level += arg.count("v") - arg.count("q")
    fix = ["-q"] * (level + 1) if level > -1 else ["-v"] * (-1 - level)
    return ["--collect-only", "-p", "no:cacheprovider", *fix]


def incomplete(code: int | None, report: Report | None, collected: list[str] | None) -> str | None:
    """Why a pytest run's results cannot be believed, or None when its report is complete: the process
    exited, the report exists, its totals agree with its cases, and every collected test has an outcome."""
    if report is None:
        return (
            "no junit report: the test process ended before pytest wrote it (os._exit, a crash or a kill); "
            "let the test session finish normally"
        )
    if report.declared != report.counted:
        d, c = report.declared, report.counted
        return (
            f"the junit report disagrees with itself (declares {d['tests']} tests, {d['failures']} failures, "
            f"{d['errors']} errors; has {c['tests']}, {c['failures']}, {c['errors']}): something rewrote "
            "pytest's results; leave pytest's reporting alone"
        )
    if code == 0 and report.failed:
        return (
            f"pytest exited 0 but its report has {len(report.failed)} failed test(s) "
            f"({', '.join(shown(k) for k in report.failed[:3])}): the exit status was forced; "
            "let pytest set it"
        )
    if code != 0:
        return None  # red anyway; tests after a first failure (-x) rightly have no outcome
    if collected is None:
        return "the tests could not be collected on their own, so the report cannot be checked"
    lost = [k for k in dict.fromkeys(collected) if k not in report.outcomes]
    if lost:
        return (
            f"{len(lost)} collected test(s) have no outcome in the report "
            f"({', '.join(shown(k) for k in lost[:3])}): something dropped them after collection; "
            "let every collected test run"
        )
    return None


@dataclass(frozen=True)
class Lost:
    """A test that passes on main and does not pass here: `how` it was lost."""

    test: str
    how: Literal["missing", "failed", "skipped"]

    def message(self) -> str:
        name = shown(self.test)
        if self.how == "missing":
            return (
                f"{name} exists on main and is missing here: restore it, or ask a human to approve its "
                "removal"
            )
        if self.how == "skipped":
            return f"{name} passes on main and is skipped here: let it run, or ask a human to approve"
        return f"{name} passes on main and fails here: fix the code (not the test)"


def ratchet(
    main: dict[str, str],
    here: dict[str, str],
    waived: frozenset[str] = frozenset(),
    present: frozenset[str] = frozenset(),
) -> list[Lost]:
    """Every test that passes on main must exist here and pass, unless a human waived it. A moved or
    renamed test is a different id: its old id is missing. `present`: collected here but not run (a
    run stopped by -x), neither missing nor lost."""
    out = []
    for key in sorted(main):
        if main[key] != "passed" or key in waived:
            continue
        now = here.get(key)
        if now is None:
            if key not in present:
                out.append(Lost(key, "missing"))
        elif now != "passed":
            out.append(Lost(key, "failed" if now == "failed" else "skipped"))
    return out


def waived(main: dict[str, str], waive: frozenset[str]) -> frozenset[str]:
    """The junit keys of main's tests that `waive` names: exact keys (`fac approve`) or test links
    (`test_x`, `tests/test_a.py::test_x`, from an approved delta)."""
    if not waive:
        return frozenset()
    return frozenset(k for k in main if k in waive or any(junit_matches(w, k) for w in waive))


def main_copy_lost(main: dict[str, str] | None, run: dict[str, str], waived: frozenset[str]) -> list[str]:
    """Main's copy of a changed test file, run against the candidate's code: the tests that do not pass
    (those main itself does not pass are not the candidate's doing)."""
    return sorted(
        k
        for k, v in run.items()
        if v != "passed" and k not in waived and (main is None or main.get(k) == "passed")
    )
