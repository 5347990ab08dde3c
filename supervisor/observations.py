"""What a commit actually does: the outcome of each linked check on its tree, per test where it can.

Linked checks run in a throw-away worktree; a pytest check linked by test id runs once with a junit
report (outside the tree, see `checks.run_one`) for per-test outcomes. Results are cached in the
store by (tree, suite, check), and a check-level link reuses the merge queue's gate result for the
tree, so asking again about an unchanged main runs nothing. `fac state` (drift.py) and a delta's
acceptance (deltas.py) read it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor import checks, env, repo, worktrees
from supervisor.checks import CheckResult
from supervisor.config import CheckDef
from supervisor.factory import Factory
from supervisor.junit import junit_matches, junit_outcomes, reports_for
from supervisor.specs import Link


@dataclass(frozen=True)
class Observation:
    """One check's outcome on a tree; `tests` maps 'classname::name' to passed/failed/skipped."""

    check: str
    ok: bool | None  # None: the check does not exist there
    feedback: str
    tests: dict[str, str] | None
    cached: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "ok": self.ok,
            "feedback": self.feedback,
            "cached": self.cached,
            "tests": self.tests,
        }


def record(
    fac: Factory,
    tree: str,
    suite_hash: str,
    results: list[CheckResult],
    reports: dict[str, Path],
) -> list[Observation]:
    """Store what a run of linked checks on `tree` observed, per test where a junit report exists."""
    out = []
    with fac.store.tx() as db:
        for r in results:
            if r.name not in reports and r.name.startswith("guard:"):
                continue
            tests = junit_outcomes(reports[r.name]) if r.name in reports else None
            o = Observation(r.name, r.ok, r.feedback, tests, False)
            fac.store.record_observation(tree, suite_hash, r.name, bool(o.ok), o.feedback, o.tests, db)
            out.append(o)
    return out


def record_tests(
    fac: Factory, tree: str, suite_hash: str, results: list[CheckResult], tests: dict[str, dict[str, str]]
) -> None:
    """Store the per-test outcomes a gate run observed on `tree` (`tests`: check name -> outcomes),
    wherever it ran. The gate records every candidate's, so the main it lands already knows its
    per-test outcomes: acceptance checks and `fac state` right after a merge run nothing."""
    with fac.store.tx() as db:
        for r in results:
            fac.store.record_observation(tree, suite_hash, r.name, r.ok, r.feedback, tests[r.name], db)


def observe(fac: Factory, sha: str, links: Iterable[Link]) -> dict[str, Observation]:
    """Run (or recall) every check `links` name on commit `sha`, with main's suite at that commit."""
    links = list(links)
    if not links:
        return {}
    store = fac.store
    suite = checks.suite_from_rev(fac.root, sha, fac.fac_dir / "suites")
    tree = repo.tree_of(fac.root, sha)
    by_name = {c.name: c for c in suite.checks}
    need_tests = {link.check for link in links if link.test}
    gate = store.cached_result(tree, suite.hash)
    gate_results = {r["name"]: r for r in gate[1]} if gate else {}
    out: dict[str, Observation] = {}
    todo = []
    for name in sorted({link.check for link in links}):
        if name not in by_name:
            out[name] = Observation(name, None, f"no check named {name!r} at {sha[:10]}", None, False)
            continue
        seen = store.observation(tree, suite.hash, name)
        if seen:
            out[name] = Observation(name, seen[0], seen[1], seen[2], True)
        elif name not in need_tests and name in gate_results:
            r = gate_results[name]
            out[name] = Observation(name, bool(r["ok"]), r.get("feedback", ""), None, True)
        else:
            todo.append(by_name[name])
    if todo:
        for o in _run(fac, sha, tree, suite.hash, todo):
            out[o.check] = o
    return out


def _run(fac: Factory, sha: str, tree: str, suite_hash: str, todo: list[CheckDef]) -> list[Observation]:
    label = f"{os.getpid()}-{time.monotonic_ns()}"
    with worktrees.detached(fac.root, fac.fac_dir / "tmp" / f"state-{sha[:10]}-{label}", sha) as wt:
        defs = tuple(todo)
        reports = reports_for(defs, fac.fac_dir / "tmp" / f"junit-state-{sha[:10]}-{label}")
        log_dir = fac.fac_dir / "logs" / "checks" / f"state-{sha[:12]}-{label}"
        results = checks.run_suite(
            defs,
            wt,
            "gate",
            parallel=fac.config.queue.parallel,
            log_dir=log_dir,
            sandbox=env.sandbox_for(fac, env.ensure(fac)),
            reports=reports,
        )
        try:
            return record(fac, tree, suite_hash, results, reports)
        finally:
            for path in reports.values():
                path.unlink(missing_ok=True)


def link_status(link: Link, obs: dict[str, Observation]) -> tuple[str, str]:
    """pass, fail or unverified for one link, with a one-line reason."""
    o = obs.get(link.check)
    if o is None or o.ok is None:
        return "fail", o.feedback if o else f"check {link.check} did not run"
    if not link.test:
        return ("pass", "") if o.ok else ("fail", _first(o.feedback))
    if o.tests is None:
        return "fail", f"check {link.check} gave no per-test results (is it a pytest run?)"
    hits = {k: v for k, v in o.tests.items() if junit_matches(link.test, k)}
    if not hits:
        return "fail", f"no test matching {link.test} ran in check {link.check}"
    failed = [k for k, v in hits.items() if v == "failed"]
    if failed:
        func = link.test.split("::")[-1]
        lines = [ln.strip() for ln in o.feedback.splitlines() if func in ln]
        return "fail", lines[0] if lines else f"{len(failed)} test(s) failed: {', '.join(failed)}"
    if all(v == "skipped" for v in hits.values()):
        return "unverified", f"{link.test} was skipped"
    return "pass", ""


def _first(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[:2]) if lines else "failed"
