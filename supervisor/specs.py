"""Specs: RFC 2119 statements in Markdown, their ids and check links, and the spec lint.

A statement is a list item holding one RFC 2119 keyword (MUST, MUST NOT, SHOULD, SHOULD NOT, MAY):

    - `words(text)` MUST return the words lower-cased, in order. {#words-in-order} [check: tests::test_words]
    - Output SHOULD fit in 80 columns. Reason: it is read in tmux panes. [check: lint]

`{#id}` pins a stable id; without one the id is derived from the statement's own words, so it is
stable across edits of other lines. `[check: NAME]` links a check by name; `[check: NAME::TEST]`
links one pytest test of that check (`tests::test_x`, `tests::TestC::test_y`,
`tests::tests/test_a.py::test_x`). SHOULD and MAY statements carry `Reason:`.

The lint reads specs from a `Source` (a directory or a git tree), never raises on a bad file, and
reports every problem with file:line and a fix.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

CURRENT = "specs/current"
DELTAS = "specs/deltas"
KEYWORDS = ("MUST NOT", "MUST", "SHOULD NOT", "SHOULD", "MAY")
NEEDS_REASON = ("SHOULD", "SHOULD NOT", "MAY")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

_KEYWORD = re.compile(r"\b(MUST NOT|MUST|SHOULD NOT|SHOULD|MAY)\b")
_OTHER_CAPS = re.compile(r"\b(SHALL NOT|SHALL|NOT RECOMMENDED|RECOMMENDED|REQUIRED|OPTIONAL)\b")
_SOFT = re.compile(r"\b(must|should|shall)\b", re.IGNORECASE)
_ITEM = re.compile(r"^(\s*)(?:[-*+]|\d{1,3}[.)])\s+(.*)$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_ID = re.compile(r"\{#([^}]*)\}")
_LINK = re.compile(r"\[check:([^\]]*)\]")
_REASON = re.compile(r"\bReason:")
_CODE = re.compile(r"`[^`]*`")


@dataclass(frozen=True)
class Link:
    """`[check: NAME]` or `[check: NAME::TEST]`: a check, optionally one test of a pytest check."""

    check: str
    test: str | None = None

    def __str__(self) -> str:
        return f"{self.check}::{self.test}" if self.test else self.check

    @classmethod
    def parse(cls, text: str) -> Link:
        text = text.strip()
        check, sep, test = text.partition("::")
        if not check or (sep and not test) or any(c.isspace() for c in text):
            raise ValueError(text)
        return cls(check, test or None)


@dataclass(frozen=True)
class LintError:
    path: str
    line: int
    message: str
    hint: str
    code: str = "spec"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}\n  fix: {self.hint}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Statement:
    id: str
    explicit_id: bool
    keyword: str
    text: str  # the statement without its id, links and reason
    reason: str | None
    links: tuple[Link, ...]
    path: str
    line: int
    end_line: int
    raw: str  # the item's lines as written

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["links"] = [str(link) for link in self.links]
        return d


@dataclass
class SpecFile:
    path: str
    statements: list[Statement] = field(default_factory=list)
    problems: list[LintError] = field(default_factory=list)


# --- parsing ---


_STOP = {"a", "an", "the", "of", "in", "to", "and", "or", "is", "are", "be", "it", "its", "that", "this", "for",
         "on", "with", "as", "by", "at", "from", "must", "should", "may", "not"}  # fmt: skip


def derive_id(text: str) -> str:
    """A stable id from the statement's own words (never its position): six significant words, slugged."""
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP]
    return "-".join(words[:6])[:60].strip("-") or "statement"


def _items(lines: list[str], first_line: int) -> Iterable[tuple[int, int, str, str]]:
    """List items as (first line, last line, text joined, raw lines), skipping fenced code."""
    in_fence = False
    cur: list[str] | None = None
    start = indent = 0
    last = 0
    blank = False

    def flush() -> Iterable[tuple[int, int, str, str]]:
        if cur is not None:
            text = " ".join(x.strip() for x in cur)
            yield start, last, text, "\n".join(lines[start - first_line : last - first_line + 1])

    for i, line in enumerate(lines):
        n = i + first_line
        if _FENCE.match(line):
            in_fence = not in_fence
            yield from flush()
            cur = None
            continue
        if in_fence:
            continue
        m = _ITEM.match(line)
        if m:
            yield from flush()
            cur, start, last, indent, blank = [m.group(2)], n, n, len(m.group(1)), False
            continue
        if cur is None:
            continue
        if not line.strip():
            blank = True
            continue
        lead = len(line) - len(line.lstrip())
        if _HEADING.match(line) or (blank and lead <= indent):
            yield from flush()
            cur = None
            continue
        cur.append(line)
        last, blank = n, False
    yield from flush()


def _clean(text: str) -> str:
    text = _LINK.sub("", _ID.sub("", text))
    return re.sub(r"\s+", " ", text).strip()


def parse(path: str, text: str, first_line: int = 1) -> SpecFile:
    """Statements of one Markdown file (or a delta's body, starting at `first_line`), with problems."""
    out = SpecFile(path)
    for start, end, item, raw in _items(text.splitlines(), first_line):
        st = _statement(path, start, end, item, raw, out.problems)
        if st is not None:
            out.statements.append(st)
    return out


def _statement(
    path: str, start: int, end: int, item: str, raw: str, problems: list[LintError]
) -> Statement | None:
    def problem(message: str, hint: str, code: str) -> None:
        problems.append(LintError(path, start, message, hint, code))

    ids = _ID.findall(item)
    link_texts = _LINK.findall(item)
    body = _clean(item)
    main, has_reason, reason = body, False, None
    m = _REASON.search(body)
    if m:
        main, has_reason, reason = body[: m.start()].strip(), True, body[m.end() :].strip() or None
    scan = _CODE.sub("", main)
    found = _KEYWORD.findall(scan)
    soft = [w for w in _SOFT.findall(scan) if not w.isupper()]
    for w in dict.fromkeys(soft):
        problem(
            f"'{w}' is not in capitals: requirement keywords are MUST, MUST NOT, SHOULD, SHOULD NOT, MAY",
            f"write {w.upper()} if this is a requirement; otherwise rephrase it without '{w}'",
            "keyword-case",
        )
    for w in dict.fromkeys(_OTHER_CAPS.findall(scan)):
        problem(
            f"'{w}' is not one of the keywords fac reads",
            "use MUST, MUST NOT, SHOULD, SHOULD NOT or MAY (SHALL is MUST, RECOMMENDED is SHOULD)",
            "keyword",
        )
    if not found:
        if ids or link_texts:
            problem(
                "this list item has an id or a check link but no RFC 2119 keyword",
                "state it with MUST, MUST NOT, SHOULD, SHOULD NOT or MAY, or drop its {#id} and [check: ...]",
                "keyword",
            )
        return None
    kinds = list(dict.fromkeys(found))
    if len(kinds) > 1:
        problem(
            f"one statement holds several keywords ({', '.join(kinds)})",
            "split it into one list item per requirement",
            "keyword-mix",
        )
    keyword = kinds[0]
    if keyword in NEEDS_REASON and not reason:
        problem(
            f"a {keyword} statement needs a reason" + (" (the Reason: is empty)" if has_reason else ""),
            f"append 'Reason: <why this is {keyword} and not MUST>' to the statement",
            "reason",
        )
    sid, explicit = derive_id(main), False
    if len(ids) > 1:
        problem(
            f"several ids on one statement: {', '.join('{#' + i + '}' for i in ids)}", "keep one {#id}", "id"
        )
    if ids:
        sid, explicit = ids[0].strip(), True
        if not ID_RE.match(sid):
            problem(
                f"invalid id {{#{sid}}}",
                "an id is 1-64 lower-case letters, digits, '.', '_' or '-', e.g. {#health-endpoint}",
                "id",
            )
    links: list[Link] = []
    for lt in link_texts:
        parts = [p for p in re.split(r"[,\s]+", lt.strip()) if p]
        if not parts:
            problem(
                "empty check link [check: ]", "name a check: [check: tests] or [check: tests::test_x]", "link"
            )
        for p in parts:
            try:
                links.append(Link.parse(p))
            except ValueError:
                problem(f"bad check link '{p}'", "write [check: NAME] or [check: NAME::TEST_ID]", "link")
    return Statement(sid, explicit, keyword, main, reason, tuple(dict.fromkeys(links)), path, start, end, raw)


# --- where specs are read from ---


class Source(Protocol):
    """A tree of files: the working tree on disk, or a commit or tree in git."""

    label: str

    def files(self, prefix: str) -> list[str]: ...

    def read_many(self, paths: list[str]) -> dict[str, str]: ...


class DirSource:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def files(self, prefix: str) -> list[str]:
        import os

        base = self.root / prefix if prefix not in ("", ".") else self.root
        skip = {".git", ".fac", "__pycache__", ".venv", "node_modules", ".pytest_cache"}
        out = []
        for d, dirs, names in os.walk(base):
            dirs[:] = sorted(x for x in dirs if x not in skip)
            out += [(Path(d) / n).relative_to(self.root).as_posix() for n in names]
        return sorted(out)

    def read_many(self, paths: list[str]) -> dict[str, str]:
        out = {}
        for p in paths:
            try:
                out[p] = (self.root / p).read_text(encoding="utf-8", errors="replace")
            except OSError:
                pass
        return out


class GitSource:
    def __init__(self, root: Path, rev: str, label: str | None = None) -> None:
        self.root = root
        self.rev = rev
        self.label = label or rev

    def files(self, prefix: str) -> list[str]:
        from supervisor import repo

        path = "" if prefix in ("", ".") else prefix
        return [p for _mode, _sha, p in repo.ls_tree(self.root, self.rev, path)]

    def read_many(self, paths: list[str]) -> dict[str, str]:
        """Many blobs through one `git cat-file --batch`."""
        if not paths:
            return {}
        query = "".join(f"{self.rev}:{p}\n" for p in paths).encode()
        data = subprocess.run(
            ["git", "cat-file", "--batch"], cwd=self.root, input=query, capture_output=True, check=True
        ).stdout
        out, pos = {}, 0
        for p in paths:
            nl = data.index(b"\n", pos)
            header = data[pos:nl].split()
            pos = nl + 1
            if len(header) < 3 or header[1] != b"blob":
                continue
            size = int(header[2])
            out[p] = data[pos : pos + size].decode("utf-8", errors="replace")
            pos += size + 1
        return out


def read(source: Source, path: str) -> str | None:
    return source.read_many([path]).get(path)


def md_files(source: Source, directory: str) -> list[str]:
    return [
        p for p in source.files(directory) if p.endswith(".md") and p.count("/") == directory.count("/") + 1
    ]


def load_current(source: Source) -> list[SpecFile]:
    paths = md_files(source, CURRENT)
    texts = source.read_many(paths)
    return [parse(p, texts[p]) for p in paths if p in texts]


# --- what checks and tests exist ---


class Catalog:
    """The checks a suite defines and, lazily, the test functions each pytest check would collect."""

    def __init__(self, suite: Any, source: Source) -> None:
        self.checks = {c.name: c for c in suite.checks}
        self.source = source
        self._tests: dict[str, list[tuple[str, set[str]]]] = {}

    def is_pytest(self, name: str) -> bool:
        from supervisor import checks, guards

        c = self.checks.get(name)
        if c is None:
            return False
        try:
            return guards.collect_argv(checks.argv_of(c)) is not None
        except Exception:
            return False

    def tests(self, name: str) -> list[tuple[str, set[str]]]:
        """(test file, qualified test names) under the check's cwd."""
        from supervisor import guards

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


def lint(source: Source, suite: Any) -> list[LintError]:
    """Every problem in specs/current and specs/deltas of `source`, judged against `suite`'s checks."""
    from supervisor import deltas as deltasmod

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
    for d in deltasmod.load(source):
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
                errors.append(LintError(d.path, d.meta_line("removes"), f"removes '{rid}', which is not a "
                                        "statement id in specs/current", "remove it from `removes`, or fix the id",
                                        "removes"))  # fmt: skip
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
            hint = f"define [checks.{link.check}] in factory.toml" + (f", or use one of: {known}" if known else
                                                                      " (main has no checks yet)")  # fmt: skip
            errors.append(LintError(path, line, f"links to check '{link.check}', which does not exist", hint,
                                    "link"))  # fmt: skip
        elif link.test and not catalog.is_pytest(link.check):
            errors.append(LintError(path, line, f"'{link}' names a test, but check '{link.check}' does not run pytest",
                                    f"link the whole check instead: [check: {link.check}]", "link"))  # fmt: skip
        elif link.test and require_tests and not catalog.has_test(link):
            cwd = catalog.checks[link.check].cwd
            n = len(catalog.tests(link.check))
            errors.append(LintError(path, line, f"links to test '{link.test}', which is not in check "
                                    f"'{link.check}' ({n} test files under {cwd})",
                                    "fix the test name, or write the test first (only a delta may link tests "
                                    "that do not exist yet)", "link"))  # fmt: skip
    return errors


def lint_source(root: Path, ref: str | None, fac_dir: Path) -> tuple[Source, list[LintError]]:
    """Lint the working tree at `root` with its own suite, or commit `ref` with that commit's suite."""
    from supervisor import checks, repo

    if ref is None:
        source: Source = DirSource(root)
        suite = checks.suite_from_dir(root)
    else:
        sha = repo.rev_parse(root, ref)
        if sha is None:
            from supervisor.errors import FacError

            raise FacError(f"{ref!r} is not a commit", hint="pass a branch, tag or sha")
        source = GitSource(root, sha, f"{ref}@{sha[:10]}")
        suite = checks.suite_from_rev(root, sha, fac_dir / "suites")
    return source, lint(source, suite)


_MAIN_LINT: dict[tuple[str, str, str], set[tuple[str, str]]] = {}


def _lint_keys(errors: list[LintError]) -> set[tuple[str, str]]:
    # Line numbers move when lines above change; the problem is the same one.
    return {(e.path, re.sub(r":\d+\)", ")", e.message)) for e in errors}


def lint_guard(fac: Any, main: str, head: str) -> Any:
    """guard:spec-lint for one queue entry: the spec problems main + this branch has that main has not.

    Runs for every entry (no configuration turns it off). Only problems the branch brings are
    blamed on it, e.g. a test that a statement links is renamed away, or a fold that does not
    lint; problems already on main are for humans (`fac spec lint --ref main`).
    """
    from supervisor import checks, guards, repo
    from supervisor.checks import CheckResult

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
