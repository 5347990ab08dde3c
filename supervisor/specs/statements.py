"""Statements: RFC 2119 requirements in Markdown, with their ids and check links.

A statement is a list item holding one RFC 2119 keyword (MUST, MUST NOT, SHOULD, SHOULD NOT, MAY):

    - `words(text)` MUST return the words lower-cased, in order. {#words-in-order} [check: tests::test_words]
    - Output SHOULD fit in 80 columns. Reason: it is read in tmux panes. [check: lint]

`{#id}` pins a stable id; without one the id is derived from the statement's own words, so it is
stable across edits of other lines. `[check: NAME]` links a check by name; `[check: NAME::TEST]`
links one pytest test of that check (`tests::test_x`, `tests::TestC::test_y`,
`tests::tests/test_a.py::test_x`). SHOULD and MAY statements carry `Reason:`.

Parsing never raises on a bad file: every problem is collected with file:line and a fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from supervisor.specs.source import Source, md_files

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


_STOP = {
    "a",
    "an",
    "the",
    "of",
    "in",
    "to",
    "and",
    "or",
    "is",
    "are",
    "be",
    "it",
    "its",
    "that",
    "this",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "must",
    "should",
    "may",
    "not",
}


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


# --- reading specs/current ---


def load_current(source: Source) -> list[SpecFile]:
    paths = md_files(source, CURRENT)
    texts = source.read_many(paths)
    return [parse(p, texts[p]) for p in paths if p in texts]
