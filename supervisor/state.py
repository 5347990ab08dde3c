"""`fac state`: what the specs claim, what main actually does, what is wanted, and the drift between them.

- current: every statement in specs/current with its observed status on main: pass, fail, or
  unverified (no check, or only skipped tests);
- deltas: the open ones; desired = current - removed + the statements of approved, in-progress and
  merged deltas (a statement with the id of a current one replaces it);
- drift: current statements whose linked checks fail on main.

Linked checks run on main in a throw-away worktree; a pytest check linked by test id runs once with
`--junitxml` for per-test outcomes. Results are cached in the store by (tree, suite, check), and a
check-level link reuses the merge queue's gate result for main's tree, so `fac state` on an unchanged
main runs nothing.
"""

from __future__ import annotations

import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from supervisor import checks, guards, repo, specs, worktrees
from supervisor.errors import FacError
from supervisor.specs import Link, Statement


@dataclass(frozen=True)
class Observation:
    """One check's outcome on a tree; `tests` maps 'classname::name' to passed/failed/skipped."""

    check: str
    ok: bool | None  # None: the check does not exist there
    feedback: str
    tests: dict[str, str] | None
    cached: bool

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "feedback": self.feedback, "cached": self.cached,
                "tests": self.tests}  # fmt: skip


def with_junit(argv: list[str], path: Path) -> list[str] | None:
    """The pytest command with a junit report for per-test outcomes; None when it is not pytest."""
    if guards.collect_argv(argv) is None:
        return None
    for i, arg in enumerate(argv):
        if Path(arg).name in ("pytest", "py.test") or (arg == "pytest" and i > 0 and argv[i - 1] == "-m"):
            return [*argv[: i + 1], f"--junitxml={path}", *argv[i + 1 :]]
    return None


def instrument(defs: tuple[Any, ...], workdir: Path) -> tuple[tuple[Any, ...], dict[str, Path]]:
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


def record(fac: Any, tree: str, suite_hash: str, results: list[Any], reports: dict[str, Path],
           *, only_reports: bool = False) -> list[Observation]:  # fmt: skip
    """Store what a run of checks on `tree` observed, per test where a junit report exists.

    The merge queue's gate calls this for every candidate, so the main it lands already knows its
    per-test outcomes: acceptance checks and `fac state` right after a merge run nothing.
    """
    out = []
    with fac.store.tx() as db:
        for r in results:
            if r.name not in reports and (only_reports or r.name.startswith("guard:")):
                continue
            tests = junit_outcomes(reports[r.name]) if r.name in reports else None
            o = Observation(r.name, r.ok, r.feedback, tests, False)
            fac.store.record_observation(tree, suite_hash, r.name, bool(o.ok), o.feedback, o.tests, db)
            out.append(o)
    return out


def junit_outcomes(path: Path) -> dict[str, str]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    out: dict[str, Any] = {}
    for tc in root.iter("testcase"):
        tags = {child.tag for child in tc}
        outcome = "failed" if tags & {"failure", "error"} else "skipped" if "skipped" in tags else "passed"
        key = f"{tc.get('classname', '')}::{tc.get('name', '')}"
        if out.get(key) != "failed":
            out[key] = outcome
    return out


def observe(fac: Any, sha: str, links: Iterable[Link]) -> dict[str, Observation]:
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


def _run(fac: Any, sha: str, tree: str, suite_hash: str, todo: list[Any]) -> list[Observation]:
    from supervisor import sandbox

    label = f"{os.getpid()}-{time.monotonic_ns()}"
    with worktrees.detached(fac.root, fac.fac_dir / "tmp" / f"state-{sha[:10]}-{label}", sha) as wt:
        defs, reports = instrument(tuple(todo), wt)
        log_dir = fac.fac_dir / "logs" / "checks" / f"state-{sha[:12]}-{label}"
        results = checks.run_suite(defs, wt, "gate", parallel=fac.config.queue.parallel, log_dir=log_dir,
                                   sandbox=sandbox.detect(fac.root))  # fmt: skip
        return record(fac, tree, suite_hash, results, reports)


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


def statement_status(st: Statement, obs: dict[str, Observation]) -> tuple[str, list[dict[str, str]]]:
    if not st.links:
        return "unverified", []
    evidence = []
    for link in st.links:
        status, detail = link_status(link, obs)
        evidence.append({"link": str(link), "status": status, "detail": detail})
    statuses = {e["status"] for e in evidence}
    overall = "fail" if "fail" in statuses else "unverified" if "unverified" in statuses else "pass"
    return overall, evidence


def desired(
    current: list[Statement], open_deltas: list[Any]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Current statements with the wanted deltas applied, in order; and what they remove."""
    rows: dict[str, dict[str, Any]] = {
        st.id: {"id": st.id, "keyword": st.keyword, "text": st.text, "links": [str(x) for x in st.links],
                "origin": "current", "change": "unchanged"}
        for st in current
    }  # fmt: skip
    removed = []
    for v in open_deltas:
        for rid in v.delta.removes:
            if rows.pop(rid, None) is not None:
                removed.append({"id": rid, "delta": v.id})
        for st in v.delta.statements:
            change = "changed" if st.id in rows else "added"
            rows[st.id] = {"id": st.id, "keyword": st.keyword, "text": st.text,
                           "links": [str(x) for x in st.links], "origin": v.id, "change": change}  # fmt: skip
    return list(rows.values()), removed


def build(fac: Any, ref: str | None = None) -> dict[str, Any]:
    """The whole picture for `fac state`, as plain data."""
    from supervisor import deltas

    ref = ref or fac.main
    sha = repo.rev_parse(fac.root, ref)
    if sha is None:
        raise FacError(f"{ref!r} is not a commit", hint="pass a branch, tag or sha")
    source = specs.GitSource(fac.root, sha, f"{ref}@{sha[:10]}")
    files = specs.load_current(source)
    current = [st for f in files for st in f.statements]
    views = deltas.views(fac, source=source)
    open_views = [v for v in views if v.status in deltas.OPEN]
    wanted = [v for v in open_views if v.status in ("approved", "in-progress", "merged")]
    merged = [v for v in open_views if v.status == "merged"]
    links = {link for st in current for link in st.links} | {
        link for v in merged for link in v.delta.checks()
    }
    obs = observe(fac, sha, links)
    rows = []
    for st in current:
        status, evidence = statement_status(st, obs)
        rows.append({**st.as_dict(), "status": status, "evidence": evidence})
    delta_rows = []
    for v in open_views:
        d = v.as_dict()
        if v.status == "merged":
            d["acceptance_status"] = [
                {"link": str(link), "status": s, "detail": detail}
                for link in v.delta.checks()
                for s, detail in [link_status(link, obs)]
            ]
        delta_rows.append(d)
    want, removed = desired(current, wanted)
    suite = checks.suite_from_rev(fac.root, sha, fac.fac_dir / "suites")
    lint = specs.lint(source, suite)
    drift = [r for r in rows if r["status"] == "fail"]
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("pass", "fail", "unverified")}
    return {
        "ref": ref, "sha": sha, "tree": repo.tree_of(fac.root, sha), "counts": counts,
        "current": rows, "deltas": delta_rows, "desired": want, "removed": removed,
        "drift": [{"id": r["id"], "path": r["path"], "line": r["line"], "text": r["text"],
                   "failed": [e for e in r["evidence"] if e["status"] == "fail"]} for r in drift],
        "lint": [e.as_dict() for e in lint],
        "ran": sorted(o.check for o in obs.values() if not o.cached and o.ok is not None),
        "ok": not drift,
    }  # fmt: skip


def render(data: dict[str, Any]) -> str:
    from supervisor.text import table

    c = data["counts"]
    out = [f"current state on {data['ref']} {data['sha'][:10]}: {len(data['current'])} statement(s): "
           f"{c['pass']} pass, {c['fail']} fail, {c['unverified']} unverified"]  # fmt: skip
    if data["current"]:
        out.append(table([[r["status"].upper(), r["id"], f"{r['path']}:{r['line']}", _clip(r["text"])]
                          for r in data["current"]], ["STATUS", "ID", "WHERE", "STATEMENT"]))  # fmt: skip
    else:
        out.append("  no statements yet: write specs/current/*.md (see specs/README.md)")
    if data["deltas"]:
        out.append(f"open deltas: {len(data['deltas'])}")
        out.append(table([[d["id"], d["status"], d["title"], str(len(d["statements"])),
                           ", ".join(d["acceptance"]) or "-"] for d in data["deltas"]],
                         ["DELTA", "STATUS", "TITLE", "STATEMENTS", "ACCEPTANCE"]))  # fmt: skip
        for d in data["deltas"]:
            for a in d.get("acceptance_status", []):
                if a["status"] != "pass":
                    out.append(f"  delta {d['id']} acceptance {a['link']}: {a['status']} ({a['detail']})")
    else:
        out.append("open deltas: none")
    added = sum(1 for r in data["desired"] if r["change"] == "added")
    changed = sum(1 for r in data["desired"] if r["change"] == "changed")
    out.append(f"desired state: {len(data['desired'])} statement(s) ({added} added, {changed} changed, "
               f"{len(data['removed'])} removed by approved or running deltas)")  # fmt: skip
    if data["lint"]:
        out.append(f"spec lint: {len(data['lint'])} problem(s); see `fac spec lint --ref {data['ref']}`")
    if data["drift"]:
        out.append(f"DRIFT: {len(data['drift'])} statement(s) that {data['ref']} contradicts:")
        for d in data["drift"]:
            out.append(f"  {d['path']}:{d['line']} {{#{d['id']}}} {_clip(d['text'])}")
            for e in d["failed"]:
                out.append(f"    {e['link']}: {e['detail']}")
    else:
        out.append("drift: none")
    return "\n".join(out)


def _clip(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
