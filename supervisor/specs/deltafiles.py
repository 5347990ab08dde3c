"""Delta files: `specs/deltas/NNNN-slug.md`, parsed, rendered, scaffolded and folded.

A delta file is TOML front matter between `+++` lines, then Markdown whose list items are
statements in the same form as `specs/current`:

    +++
    id = "0001"
    title = "Count characters"
    status = "approved"          # proposed | approved | in-progress | merged | done | rejected
    owner = "alice"
    acceptance = ["tests::test_char_count"]   # checks that must pass on main for it to be done
    removes = []                 # ids of current statements this delta drops (optional)
    spec = "textstats.md"        # the specs/current file its statements go to (optional)
    +++

This module is the format only; the lifecycle (who moves a delta from one status to the next, and
when) is `supervisor/deltas.py`.
"""

from __future__ import annotations

import re
import textwrap
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.errors import FacError
from supervisor.specs.source import Source, md_files
from supervisor.specs.statements import CURRENT, DELTAS, Link, LintError, Statement, load_current
from supervisor.specs.statements import parse as parse_statements

STATUSES = ("proposed", "approved", "in-progress", "merged", "done", "rejected")
ORDER = {s: i for i, s in enumerate(STATUSES[:5])}
OPEN = ("proposed", "approved", "in-progress", "merged")
ASSIGNABLE = ("approved", "in-progress", "merged")
KEYS = ("id", "title", "status", "owner", "acceptance", "removes", "spec", "reason", "created")
FILE_RE = re.compile(r"^(\d{4})-([a-z0-9][a-z0-9-]*)\.md$")


@dataclass
class Delta:
    id: str
    title: str
    status: str
    owner: str
    acceptance: tuple[Link, ...]
    removes: tuple[str, ...]
    spec: str | None
    reason: str | None
    statements: list[Statement]
    path: str
    text: str
    meta: dict[str, Any] | None
    problems: list[LintError] = field(default_factory=list)
    meta_lines: dict[str, int] = field(default_factory=dict)

    def meta_line(self, key: str) -> int:
        return self.meta_lines.get(key, 1)

    @property
    def slug(self) -> str:
        m = FILE_RE.match(Path(self.path).name)
        return m.group(2) if m else slugify(self.title)

    def checks(self) -> tuple[Link, ...]:
        """What must pass on main: the acceptance checks, else every check its statements link."""
        if self.acceptance:
            return self.acceptance
        return tuple(dict.fromkeys(link for st in self.statements for link in st.links))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "file_status": self.status,
            "owner": self.owner,
            "acceptance": [str(a) for a in self.acceptance],
            "removes": list(self.removes),
            "spec": self.spec,
            "reason": self.reason,
            "path": self.path,
            "statements": [st.as_dict() for st in self.statements],
        }


def slugify(title: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", title.lower())[:6])[:40].strip("-") or "delta"


def normalize_id(ident: str) -> str:
    """'1', '0001', '0001-slug', 'specs/deltas/0001-slug.md' -> '0001'."""
    name = Path(ident.strip()).name
    m = re.match(r"^(\d{1,9})(?:-[A-Za-z0-9-]*)?(?:\.md)?$", name)
    if not m:
        raise FacError(f"{ident!r} is not a delta id", hint="use the number, e.g. `fac delta show 1` or 0001")
    return f"{int(m.group(1)):04d}"


# --- parsing ---


def parse(path: str, text: str) -> Delta:
    """A delta file; problems (bad front matter, bad statements) are collected, never raised."""
    problems: list[LintError] = []

    def problem(line: int, message: str, hint: str) -> None:
        problems.append(LintError(path, line, message, hint, "delta"))

    lines = text.splitlines()
    m = FILE_RE.match(Path(path).name)
    if not m:
        problem(
            1,
            f"delta file name {Path(path).name!r} is not NNNN-slug.md",
            "rename it like 0007-count-characters.md (four digits, a dash, lower-case words)",
        )
    meta: dict[str, Any] | None = None
    end = -1
    meta_lines: dict[str, int] = {}
    if not lines or lines[0].strip() != "+++":
        problem(
            1,
            "a delta starts with a `+++` line, then TOML front matter, then `+++`",
            "add the front matter: id, title, status, owner, acceptance (see specs/README.md)",
        )
    else:
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "+++"), -1)
        if end < 0:
            problem(1, "the front matter is not closed by a second `+++` line", "add a `+++` line after it")
        else:
            for i in range(1, end):
                km = re.match(r"^\s*([A-Za-z_][\w-]*)\s*=", lines[i])
                if km:
                    meta_lines.setdefault(km.group(1), i + 1)
            try:
                meta = tomllib.loads("\n".join(lines[1:end]))
            except tomllib.TOMLDecodeError as e:
                ln = re.search(r"line (\d+)", str(e))
                problem(
                    1 + int(ln.group(1)) if ln else 2,
                    f"front matter is not valid TOML: {e}",
                    'fix the syntax, e.g. title = "Count characters"',
                )
    meta_ok = meta is not None
    meta = meta or {}
    at = meta_lines.get

    for key in sorted(set(meta) - set(KEYS)):
        problem(at(key, 2), f"unknown front matter key {key!r}", f"known keys: {', '.join(KEYS)}")
    raw_id = meta.get("id")
    did = m.group(1) if m else "0000"
    if meta_ok and raw_id is None:
        problem(2, "the front matter has no id", f'add id = "{did}"')
    elif raw_id is not None:
        if isinstance(raw_id, bool) or not isinstance(raw_id, int | str) or not str(raw_id).isdigit():
            problem(at("id", 2), f"id {raw_id!r} is not a number", f'write id = "{did}"')
        else:
            did = f"{int(raw_id):04d}"
            if m and did != m.group(1):
                problem(
                    at("id", 2),
                    f"id {did} differs from the file name's {m.group(1)}",
                    f'make them agree: id = "{m.group(1)}", or rename the file',
                )
    title = meta.get("title")
    if meta_ok and (not isinstance(title, str) or not title.strip()):
        problem(
            at("title", 2), "the front matter needs a title", 'add title = "what changes, in a few words"'
        )
    status = meta.get("status", "proposed")
    if status not in STATUSES:
        problem(
            at("status", 2),
            f"status {status!r} is not one of {', '.join(STATUSES)}",
            'write e.g. status = "proposed"',
        )
        status = "proposed"
    owner = meta.get("owner", "")
    if not isinstance(owner, str):
        problem(at("owner", 2), "owner must be a string", 'write e.g. owner = "alice"')
        owner = ""
    acceptance: list[Link] = []
    raw_acc = meta.get("acceptance", [])
    if not isinstance(raw_acc, list) or not all(isinstance(x, str) for x in raw_acc):
        problem(
            at("acceptance", 2),
            "acceptance must be a list of check links",
            'e.g. acceptance = ["tests::test_char_count", "lint"]',
        )
    else:
        for x in raw_acc:
            try:
                acceptance.append(Link.parse(x))
            except ValueError:
                problem(at("acceptance", 2), f"bad acceptance check {x!r}", "write NAME or NAME::TEST_ID")
    removes = meta.get("removes", [])
    if not isinstance(removes, list) or not all(isinstance(x, str) for x in removes):
        problem(at("removes", 2), "removes must be a list of statement ids", 'e.g. removes = ["old-id"]')
        removes = []
    spec = meta.get("spec")
    if spec is not None and (not isinstance(spec, str) or "/" in spec or not spec.endswith(".md")):
        problem(
            at("spec", 2), f"spec {spec!r} is not a file name in specs/current", 'e.g. spec = "textstats.md"'
        )
        spec = None
    reason = meta.get("reason")
    body_start = end + 1 if end >= 0 else 0
    body = parse_statements(path, "\n".join(lines[body_start:]), first_line=body_start + 1)
    problems += body.problems
    if meta_ok and not body.statements and not acceptance:
        problem(
            2,
            "the delta states nothing and names no acceptance check",
            "add statements (list items with MUST/SHOULD/MAY) or acceptance checks",
        )
    return Delta(
        id=did,
        title=title if isinstance(title, str) else "",
        status=status,
        owner=owner,
        acceptance=tuple(acceptance),
        removes=tuple(removes),
        spec=spec,
        reason=reason if isinstance(reason, str) else None,
        statements=body.statements,
        path=path,
        text=text,
        meta=meta if meta_ok else None,
        problems=problems,
        meta_lines=meta_lines,
    )


def load(source: Source) -> list[Delta]:
    paths = [p for p in md_files(source, DELTAS) if Path(p).name.lower() != "readme.md"]
    texts = source.read_many(paths)
    return [parse(p, texts[p]) for p in paths if p in texts]


def render(meta: dict[str, Any], body: str) -> str:
    import tomli_w

    ordered = {k: meta[k] for k in KEYS if k in meta and meta[k] not in (None, "")}
    return "+++\n" + tomli_w.dumps(ordered) + "+++\n" + body


def with_meta(d: Delta, **changes: Any) -> str:
    """The delta's text with front matter keys changed (the body is kept byte for byte)."""
    lines = d.text.splitlines(keepends=True)
    end = next(i for i in range(1, len(lines)) if lines[i].strip() == "+++")
    meta = dict(d.meta or {})
    meta.update(changes)
    meta["id"] = d.id
    return render(meta, "".join(lines[end + 1 :]))


def scaffold(
    did: str, title: str, owner: str, statements: list[str], checks: list[str], spec: str | None
) -> str:
    meta: dict[str, Any] = {
        "id": did,
        "title": title,
        "status": "proposed",
        "owner": owner,
        "acceptance": checks,
        "spec": spec,
        "created": time.strftime("%Y-%m-%d"),
    }
    body = [f"# {did}: {title}", "", "## Statements", ""]
    body += [f"- {s.strip().removeprefix('- ')}" for s in statements] or [
        "(none: the acceptance checks say it all)"
    ]
    return render(meta, "\n".join(body) + "\n")


# --- the fold: the delta's statements into specs/current ---


def fold_changes(source: Source, d: Delta) -> dict[str, str]:
    """The files the fold writes: specs/current with the delta's statements, the delta marked done."""
    current = load_current(source)
    texts = source.read_many([f.path for f in current])
    by_id = {st.id: st for f in current for st in f.statements}
    edits: dict[str, list[tuple[int, int, str | None]]] = {}
    for rid in d.removes:
        if rid in by_id:
            st = by_id[rid]
            edits.setdefault(st.path, []).append((st.line, st.end_line, None))
    added = []
    for st in d.statements:
        raw = textwrap.dedent(st.raw).strip("\n")
        raw = raw if st.explicit_id else f"{raw} {{#{st.id}}}"
        old = by_id.get(st.id)
        if old is not None:
            edits.setdefault(old.path, []).append((old.line, old.end_line, raw))
        else:
            added.append(raw)
    target: str | None = f"{CURRENT}/{d.spec}" if d.spec else None
    if target is None and edits:
        target = next(iter(edits))
    if target is None:
        target = str(current[0].path) if len(current) == 1 else f"{CURRENT}/{d.slug}.md"
    assert target is not None
    out: dict[str, str] = {}
    for path in {*edits, target}:
        lines = texts.get(path, f"# {d.title}\n").splitlines()
        for start, end, replacement in sorted(edits.get(path, []), reverse=True):
            lines[start - 1 : end] = replacement.splitlines() if replacement is not None else []
        if path == target and added:
            while lines and not lines[-1].strip():
                lines.pop()
            lines += ["", f"## {d.title} (delta {d.id})", "", *added]
        out[path] = "\n".join(lines) + "\n"
    out[d.path] = with_meta(d, status="done")
    return out
