"""Built-in guards (poka-yoke): what a worker's branch may never do, whatever the configuration.

- scope: change only paths matching the role's `writable` globs;
- protected: never touch checks/, roles/, factory.toml, .ci/, specs/ or project-container/;
- no weakening: no added skip/xfail markers, no removed test functions, and (run on the candidate)
  no fewer collected tests than main;
- test framework: code that is not a test never imports, patches or shadows pytest;
- symlinks: never out of the tree, never into a protected path or onto test infrastructure;
- and, not red but held for a human (`holds`): changes to test infrastructure (`testinfra`).

The decisions are plain functions over plain data; `branch_guards` gathers that data from git, reading
blobs with `cat-file` (never a diff a `.gitattributes` or a textconv driver could blind).
"""

from __future__ import annotations

import ast
import difflib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from supervisor import repo, testinfra
from supervisor.checks import CheckResult

PROTECTED = ("checks/", "roles/", "factory.toml", ".ci/", "specs/", "project-container/")
WEAKENING = re.compile(
    r"(@pytest\.mark\.(skip|skipif|xfail)\b|pytest\.(skip|xfail|importorskip)\s*\(|@unittest\.(skip|skipIf|skipUnless|expectedFailure)\b"
    r"|unittest\.SkipTest|pytestmark\s*=.*\b(skip|xfail)|collect_ignore|--deselect|--ignore)"
)


def glob_to_regex(glob: str) -> re.Pattern[str]:
    """`**` matches across directories, `*` and `?` within one path segment."""
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif glob.startswith("**", i):
            out += ".*"
            i += 2
        elif glob[i] == "*":
            out += "[^/]*"
            i += 1
        elif glob[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(glob[i])
            i += 1
    return re.compile(f"^{out}$")


def scope_violations(paths: list[str], writable: tuple[str, ...]) -> list[str]:
    patterns = [glob_to_regex(g) for g in writable]
    return [p for p in paths if not any(rx.match(p) for rx in patterns)]


def protected_violations(paths: list[str]) -> list[str]:
    dirs = [x for x in PROTECTED if x.endswith("/")]
    files = [x for x in PROTECTED if not x.endswith("/")]
    return [p for p in paths if p in files or any(p == d.rstrip("/") or p.startswith(d) for d in dirs)]


def weakening_lines(diff: str) -> list[str]:
    """Added lines (file:line: text) that skip, xfail or deselect tests."""
    hits, path, lineno = [], "?", 0
    for line in diff.splitlines():
        if line.startswith("+++ "):
            path = line[6:] if line.startswith("+++ b/") else line[4:]
        elif line.startswith("@@"):
            m = re.search(r"\+(\d+)", line)
            lineno = int(m.group(1)) if m else 0
        elif line.startswith("+"):
            if WEAKENING.search(line[1:]):
                hits.append(f"{path}:{lineno}: {line[1:].strip()}")
            lineno += 1
        elif not line.startswith("-"):
            lineno += 1
    return hits


def is_test_file(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def test_functions(source: str | None) -> set[str]:
    """Qualified names of test functions in a test module (`test_x`, `TestC.test_y`)."""
    if not source:
        return set()
    try:
        tree = testinfra.parse_python(source)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef) and sub.name.startswith("test"):
                    names.add(f"{node.name}.{sub.name}")
    return names


def removed_tests(before: dict[str, str | None], after: dict[str, str | None]) -> list[str]:
    """Test functions present before and gone after, across all changed test files (moves are fine)."""
    old = {(name, path) for path, src in before.items() for name in test_functions(src)}
    new_names = {name for src in after.values() for name in test_functions(src)}
    return sorted(f"{path}::{name.replace('.', '::')}" for name, path in old if name not in new_names)


def unified_added(path: str, old: str | None, new: str | None) -> str:
    """A zero-context unified diff of two texts, computed here from the bytes git stored."""
    lines = difflib.unified_diff(
        (old or "").splitlines(), (new or "").splitlines(), f"a/{path}", f"b/{path}", n=0, lineterm=""
    )
    return "\n".join(lines)


@dataclass(frozen=True)
class GuardReport:
    """Every guard's result, and the reasons a human must approve the branch before it is tested."""

    results: list[CheckResult]
    holds: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def _result(name: str, problems: list[str], fix: str, rule: str = "") -> CheckResult:
    if not problems:
        return CheckResult(name=name, ok=True, exit_code=0, duration=0.0, feedback="", tail="")
    shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
    head = [f"rule: {rule}"] if rule else []
    feedback = "\n".join([*head, *shown, f"fix: {fix}"])
    return CheckResult(name=name, ok=False, exit_code=1, duration=0.0, feedback=feedback, tail="")


def branch_guards(root: Path, main: str, head: str, writable: tuple[str, ...]) -> GuardReport:
    """Judge what `head` changes relative to its merge base with `main`; every problem at once."""
    base = repo.merge_base(root, main, head) or main
    changes = repo.changes(root, base, head)
    changed = [c.path for c in changes]
    scope = scope_violations(changed, writable)
    protected = protected_violations(changed)
    scope = [p for p in scope if p not in protected]
    # Content is read as git stored it (cat-file), for every file judged by what it says.
    files = [c.path for c in changes if c.new_mode != SYMLINK and c.old_mode != SYMLINK]
    read = [p for p in files if p.endswith(".py") or _judged_by_content(p)]
    before, after = repo.read_blobs(root, base, read), repo.read_blobs(root, head, read)
    suspects = _test_like(read)
    weak = weakening_lines("\n".join(unified_added(p, before.get(p), after.get(p)) for p in suspects))
    tests = [p for p in changed if is_test_file(p)]
    gone = removed_tests({p: before.get(p) for p in tests}, {p: after.get(p) for p in tests})
    framework = [h for c in changes if c.new_mode != "000000" and (h := testinfra.shadowing(c.path))]
    for p in read:
        framework += testinfra.new_framework_uses(p, before.get(p), after.get(p))
    links = [c.path for c in changes if c.new_mode == SYMLINK]
    symlinks = testinfra.symlink_problems(links, _symlinks(root, head), PROTECTED) if links else []
    holds = [h for p in changed if (h := testinfra.infrastructure_change(p, before.get(p), after.get(p)))]
    return GuardReport(
        [
            _result(
                "guard:scope",
                [f"{p}: outside {', '.join(writable) or '(nothing is writable)'}" for p in scope],
                "revert changes to these paths; your role may write only its `writable` globs",
                "a branch changes only the paths its role may write",
            ),
            _result(
                "guard:protected",
                [f"{p}: protected" for p in protected],
                "checks, roles, specs, factory.toml and CI files are changed by humans only; revert them",
                "checks/, roles/, specs/, factory.toml and .ci/ are for humans",
            ),
            _result(
                "guard:no-weakening",
                [f"{h}  (adds a skip/xfail/deselect)" for h in weak] + [f"{t}: test removed" for t in gone],
                "keep every test and fix the code instead; a human can change tests through a delta",
                "no test is skipped, deselected or removed",
            ),
            _result(
                "guard:test-framework",
                framework,
                "remove these lines or files; only test files (test_*.py, *_test.py) may use pytest, and "
                "the code under test is tested from them, never by reaching into pytest",
                "code that is not a test never imports, patches or shadows the test framework",
            ),
            _result(
                "guard:symlink",
                symlinks,
                "commit the file itself instead of a link, or point the link at a file inside the "
                "repository that is not protected",
                "a symlink stays inside the repository and off protected paths and test infrastructure",
            ),
        ],
        holds=tuple(holds),
    )


SYMLINK = "120000"


def _symlinks(root: Path, rev: str) -> dict[str, str]:
    """Every symlink of `rev` and its target, for resolving a changed link through the others."""
    paths = [p for mode, _sha, p in repo.ls_tree(root, rev) if mode == SYMLINK]
    return repo.read_blobs(root, rev, paths)


def _judged_by_content(path: str) -> bool:
    name = PurePosixPath(path).name
    return name in TEST_CONFIG or name == ".gitattributes"


TEST_CONFIG = ("conftest.py", "pyproject.toml", "pytest.ini", ".pytest.ini", "setup.cfg", "tox.ini")


def _test_like(paths: list[str]) -> list[str]:
    """Files where a skip marker or a deselect option can hide a test: tests, conftest, pytest config."""
    return [p for p in paths if is_test_file(p) or PurePosixPath(p).name in TEST_CONFIG]


# "4 tests collected", "3/4 tests collected (1 deselected)" (-q) or "collected 4 items / 1 deselected /
# 3 selected": the number that would run, not the number found before deselection.
COLLECTED = re.compile(
    r"(\d+)(?:/\d+)? tests? collected|collected \d+ items? / .*?(\d+) selected|collected (\d+) items?"
)


def collect_argv(argv: list[str]) -> list[str] | None:
    """For a pytest check, the same command that only collects; None for other checks."""
    for i, arg in enumerate(argv):
        if PurePosixPath(arg).name in ("pytest", "py.test") or (
            arg == "pytest" and i > 0 and argv[i - 1] == "-m"
        ):
            return [*argv[: i + 1], "--collect-only", "-q", "-p", "no:cacheprovider"]
    return None


def collected_count(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> int | None:
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if "no tests collected" in proc.stdout or "no tests ran" in proc.stdout:
        return 0
    found = list(COLLECTED.finditer(proc.stdout))
    if not found:
        return None
    return int(next(g for g in found[-1].groups() if g is not None))


def factory_guards(root: Path, main: str, head: str) -> GuardReport:
    """The factory's own fold of a delta may change specs/ and nothing else.

    This is the one exemption from `protected`, and it is narrow: the queue grants it only to an
    entry fac made itself (worker `factory`, a reserved name; branch fac/factory/<delta>; the exact
    commit fac recorded), never to a worker's branch.
    """
    base = repo.merge_base(root, main, head) or main
    outside = [p for _status, p in repo.changed_paths(root, base, head) if not p.startswith("specs/")]
    return GuardReport(
        [
            _result(
                "guard:factory-scope",
                [f"{p}: outside specs/" for p in outside],
                "the factory's fold writes only specs/; anything else goes through a worker's branch",
            )
        ]
    )
