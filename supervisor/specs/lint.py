"""The spec lint: every problem in specs/current and specs/deltas, with file:line and a fix.

It reads specs from a `Source` (a directory or a git tree) and judges check links against a suite's
checks; `lint_guard` is the queue's guard that blames a branch only for the problems it brings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from supervisor import checks, guards, repo
from supervisor.checks import CheckResult, Suite
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.specs import deltafiles
from supervisor.specs.source import DirSource, GitSource, Source
from supervisor.specs.statements import Link, LintError, Statement, load_current

# --- what checks and tests exist ---


class Catalog:
    """The checks a suite defines and, lazily, the test functions each pytest check would collect."""

    def __init__(self, suite: Suite, source: Source) -> None:
        self.checks = {c.name: c for c in suite.checks}
        self.source = source
        self._tests: dict[str, list[tuple[str, set[str]]]] = {}

    def is_pytest(self, name: str) -> bool:
        c = self.checks.get(name)
        if c is None:
            return False
        try:
            return guards.collect_argv(checks.argv_of(c)) is not None
        except Exception:
            return False

    def tests(self, name: str) -> list[tuple[str, set[str]]]:
        """(test file, qualified test names) under the check's cwd."""
        if name not in self._tests:
            cwd = self.checks[name].cwd
            files = [p for p in self.source.files(cwd) if guards.is_test_file(p)]
            texts = self.source.read_many(files)
            self._tests[name] = [(p, guards.test_functions(texts.get(p))) for p in files]
        return self._tests[name]

    def has_test(self, link: Link) -> bool:
        assert link.test
        return any(
            test_matches(link.test, path, name) for path, names in self.tests(link.check) for name in names
        )


def test_matches(spec: str, path: str, qualname: str) -> bool:
    """Does link `spec` (test_x, TestC::test_x, dir/test_a.py::test_x) name `qualname` in file `path`?"""
    parts = spec.split("::")
    func = re.sub(r"\[.*\]$", "", parts[-1])
    names = qualname.split(".")
    if names[-1] != func:
        return False
    for q in parts[:-1]:
        if q.endswith(".py"):
            if not (path == q or path.endswith("/" + q)):
                return False
        elif q not in names[:-1]:
            return False
    return True


# --- the lint ---


def lint(source: Source, suite: Suite) -> list[LintError]:
    """Every problem in specs/current and specs/deltas of `source`, judged against `suite`'s checks."""
    catalog = Catalog(suite, source)
    errors: list[LintError] = []
    current = load_current(source)
    seen: dict[str, Statement] = {}
    for f in current:
        errors += f.problems
        for st in f.statements:
            other = seen.get(st.id)
            if other is not None:
                errors.append(_duplicate(st, other))
            else:
                seen[st.id] = st
            errors += check_links(st.links, catalog, st.path, st.line, require_tests=True)
    for d in deltafiles.load(source):
        errors += d.problems
        if d.status in ("done", "rejected") or d.problems and d.meta is None:
            continue
        mine: dict[str, Statement] = {}
        for st in d.statements:
            if st.id in mine:
                errors.append(_duplicate(st, mine[st.id]))
            mine[st.id] = st
            errors += check_links(st.links, catalog, st.path, st.line, require_tests=False)
        errors += check_links(d.acceptance, catalog, d.path, d.meta_line("acceptance"), require_tests=False)
        for rid in d.removes:
            if rid not in seen:
                errors.append(
                    LintError(
                        d.path,
                        d.meta_line("removes"),
                        f"removes '{rid}', which is not a statement id in specs/current",
                        "remove it from `removes`, or fix the id",
                        "removes",
                    )
                )
    return sorted(errors, key=lambda e: (e.path, e.line, e.message))


def _duplicate(st: Statement, other: Statement) -> LintError:
    how = (
        "give one of them another {#id}"
        if st.explicit_id
        else "the two statements derive the same id from the same words: add an explicit {#id} to one"
    )
    return LintError(
        st.path, st.line, f"duplicate id '{st.id}' (also at {other.path}:{other.line})", how, "duplicate"
    )


def check_links(
    links: Iterable[Link], catalog: Catalog, path: str, line: int, *, require_tests: bool
) -> list[LintError]:
    """Links to checks that exist; test links to pytest checks (and, with `require_tests`, to real tests)."""
    errors = []
    known = ", ".join(catalog.checks)
    for link in links:
        if link.check not in catalog.checks:
            hint = f"define [checks.{link.check}] in factory.toml" + (
                f", or use one of: {known}" if known else " (main has no checks yet)"
            )
            errors.append(
                LintError(path, line, f"links to check '{link.check}', which does not exist", hint, "link")
            )
        elif link.test and not catalog.is_pytest(link.check):
            errors.append(
                LintError(
                    path,
                    line,
                    f"'{link}' names a test, but check '{link.check}' does not run pytest",
                    f"link the whole check instead: [check: {link.check}]",
                    "link",
                )
            )
        elif link.test and require_tests and not catalog.has_test(link):
            cwd = catalog.checks[link.check].cwd
            n = len(catalog.tests(link.check))
            errors.append(
                LintError(
                    path,
                    line,
                    f"links to test '{link.test}', which is not in check "
                    f"'{link.check}' ({n} test files under {cwd})",
                    "fix the test name, or write the test first (only a delta may link tests "
                    "that do not exist yet)",
                    "link",
                )
            )
    return errors


def lint_source(root: Path, ref: str | None, fac_dir: Path) -> tuple[Source, list[LintError]]:
    """Lint the working tree at `root` with its own suite, or commit `ref` with that commit's suite."""
    if ref is None:
        source: Source = DirSource(root)
        suite = checks.suite_from_dir(root)
    else:
        sha = repo.rev_parse(root, ref)
        if sha is None:
            raise FacError(f"{ref!r} is not a commit", hint="pass a branch, tag or sha")
        source = GitSource(root, sha, f"{ref}@{sha[:10]}")
        suite = checks.suite_from_rev(root, sha, fac_dir / "suites")
    return source, lint(source, suite)


_MAIN_LINT: dict[tuple[str, str, str], set[tuple[str, str]]] = {}


def _lint_keys(errors: list[LintError]) -> set[tuple[str, str]]:
    # Line numbers move when lines above change; the problem is the same one.
    return {(e.path, re.sub(r":\d+\)", ")", e.message)) for e in errors}


def lint_guard(fac: Factory, main: str, head: str) -> CheckResult:
    """guard:spec-lint for one queue entry: the spec problems main + this branch has that main has not.

    Runs for every entry (no configuration turns it off). Only problems the branch brings are
    blamed on it, e.g. a test that a statement links is renamed away, or a fold that does not
    lint; problems already on main are for humans (`fac spec lint --ref main`).
    """
    name = "guard:spec-lint"
    base = repo.merge_base(fac.root, main, head) or main
    changes = repo.changed_paths(fac.root, base, head)
    # A link can only break where a spec changes or an existing test file changes or goes;
    # a branch that only adds test files cannot take a linked test away.
    if not any(p.startswith("specs/") or (guards.is_test_file(p) and s != "A") for s, p in changes):
        return CheckResult(name, True, 0, 0.0, "", "no spec changed and no existing test file touched")
    merged = repo.merge_tree(fac.root, main, head)
    if merged.tree is None:  # the conflict is reported on its own
        return CheckResult(name, True, 0, 0.0, "", "not linted: conflicts with main")
    suite = checks.suite_from_rev(fac.root, main, fac.fac_dir / "suites")
    key = (str(fac.root), repo.tree_of(fac.root, main), suite.hash)
    if key not in _MAIN_LINT:
        _MAIN_LINT[key] = _lint_keys(lint(GitSource(fac.root, main), suite))
    errors = [e for e in lint(GitSource(fac.root, merged.tree), suite) if _lint_keys([e]) - _MAIN_LINT[key]]
    if not errors:
        return CheckResult(name, True, 0, 0.0, "", "specs lint clean")
    shown = [str(e) for e in errors[:20]] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
    return CheckResult(name, False, 1, 0.0, "\n".join(shown), "")
