"""Per-test outcomes of pytest checks: run them with `--junitxml`, read the report, match test ids.

A statement may link one test of a pytest check (`[check: tests::test_x]`); these helpers make such
a check write a junit report and tell which of the report's test cases a link names.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

from supervisor import checks, guards
from supervisor.config import CheckDef


def with_junit(argv: list[str], path: Path) -> list[str] | None:
    """The pytest command with a junit report for per-test outcomes; None when it is not pytest."""
    if guards.collect_argv(argv) is None:
        return None
    for i, arg in enumerate(argv):
        if Path(arg).name in ("pytest", "py.test") or (arg == "pytest" and i > 0 and argv[i - 1] == "-m"):
            return [*argv[: i + 1], f"--junitxml={path}", *argv[i + 1 :]]
    return None


def instrument(defs: tuple[CheckDef, ...], workdir: Path) -> tuple[tuple[CheckDef, ...], dict[str, Path]]:
    """Pytest checks also write a junit report, inside the tree under test (writable in every sandbox)."""
    out, reports = [], {}
    for c in defs:
        report = workdir / f".fac-junit-{re.sub(r'[^A-Za-z0-9_.-]', '_', c.name)}.xml"
        argv = with_junit(checks.argv_of(c), report)
        if argv is not None:
            reports[c.name] = report
            c = replace(c, run=tuple(argv))
        out.append(c)
    return tuple(out), reports


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
