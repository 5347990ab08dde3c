"""The context an agent is given: role prompt, task, delta, relevant specs, checks, messages, README.

`build` gathers the parts, each with a relevance, and fits them into `[context] max_chars`: when the
whole does not fit, the least relevant parts are cut first (shortened when enough of them still
fits, else left out) and a closing section says what was cut and where to read it in full. Spawn
writes the result where the runtime reads it ($FAC_CONTEXT); `fac context WORKER` prints the same.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from supervisor import checks, repo, roles, specs
from supervisor.config import CheckDef
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.roles import Role

DEFAULT_MAX_CHARS = 24_000
MIN_KEEP = 240  # a shortened part keeps at least this much, else it is left out


@dataclass(frozen=True)
class Part:
    key: str
    title: str
    text: str  # starts with its own heading
    relevance: int  # higher stays longer
    source: str  # where the full text is, for the note about what was cut
    essential: bool = False  # cut only when nothing else is left to cut


@dataclass
class Context:
    worker: str
    max_chars: int
    text: str
    parts: list[dict[str, Any]] = field(default_factory=list)
    cut: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "chars": len(self.text)}


def max_chars(fac: Factory) -> int:
    return int(getattr(fac.config, "context_max_chars", DEFAULT_MAX_CHARS))


def gather(
    fac: Factory, *, worker: str, role: Role, task: str | None, delta: str | None, worktree: Path
) -> list[Part]:
    main = repo.rev_parse(fac.root, f"refs/heads/{fac.main}")
    source = specs.GitSource(fac.root, main or fac.main, fac.main)
    parts = [
        Part(
            "role",
            f"role {role.name}",
            f"# Role: {role.name}\n\n{role.prompt.strip()}\n",
            100,
            f"roles/{role.name}.md",
            essential=True,
        )
    ]
    if task:
        parts.append(Part("task", "task", f"# Task\n\n{task.strip()}\n", 95, "$FAC_TASK", essential=True))
    d = None
    if delta:
        from supervisor import deltas  # only for a worker given a delta: its lifecycle's imports

        try:
            d = deltas.get(fac, delta)
        except FacError:
            d = None
    if d is not None:
        body = d.delta.text.split("+++", 2)[-1].strip() if d.delta.text.startswith("+++") else d.delta.text
        if body.startswith("# "):  # its own title: the heading below says it
            body = body.partition("\n")[2].strip()
        acc = ", ".join(str(a) for a in d.delta.checks()) or "none"
        parts.append(
            Part(
                "delta",
                f"delta {d.id}",
                f"# Your delta: {d.id} {d.delta.title}\n\n{body}\n\n"
                f"It is done when these pass on {fac.main}: {acc}\n",
                90,
                d.delta.path,
                essential=True,
            )
        )
    current = specs.load_current(source)
    touched = set()
    if d is not None:
        touched = set(d.delta.removes) | {st.id for st in d.delta.statements}
    related = [st for f in current for st in f.statements if st.id in touched]
    if related:
        lines = [f"- {st.raw.strip().removeprefix('- ')}  ({st.path}:{st.line})" for st in related]
        parts.append(
            Part(
                "related-specs",
                "statements your delta changes",
                "# Current statements your delta changes\n\n" + "\n".join(lines) + "\n",
                70,
                "specs/current/",
            )
        )
    wt_ok = worktree.is_dir()
    suite = (
        checks.suite_from_dir(worktree)
        if wt_ok
        else checks.suite_from_rev(fac.root, fac.main, fac.fac_dir / "suites")
    )
    lines = [
        "# How you work here",
        "",
        f"- Your worktree is {worktree}; you may change only: {', '.join(role.writable)}.",
        "- Loop: change, `fac check` (the fast checks), commit, `fac submit`. Verdicts come to `fac inbox`.",
        "- specs/, checks/, roles/ and factory.toml are for humans; propose a spec change with "
        '`fac delta new "TITLE" --statement "... MUST ..."`. Stuck on a decision: `fac ask "question"`.',
    ]
    inner = suite.for_stage("inner")
    if inner:
        lines.append("- The checks `fac check` runs:")
        for c in inner:
            lines.append(f"  - {c.name}: `{_cmd(c)}` in {c.cwd}/")
    if d is not None and d.delta.checks():
        by_name = {c.name: c for c in suite.checks}
        lines.append("- Your delta's acceptance checks (they must pass on main):")
        for link in d.delta.checks():
            linked = by_name.get(link.check)
            how = f"`{_cmd(linked, link.test)}` in {linked.cwd}/" if linked else "(no such check yet)"
            lines.append(f"  - {link}: {how}")
    parts.append(Part("workflow", "how you work here", "\n".join(lines) + "\n", 85, "fac --help"))
    msgs = fac.store.messages(worker, unread_only=True) if fac.store.worker(worker) else []
    if msgs:
        text = "\n\n".join(f"## message {m.id} from {m.sender} ({m.kind})\n\n{m.body.strip()}" for m in msgs)
        parts.append(
            Part(
                "messages",
                f"{len(msgs)} open message(s)",
                f"# Open messages\n\n{text}\n",
                80,
                "fac inbox --all",
            )
        )
    readme_rel = "system-under-construction/README.md"
    readme = worktree / readme_rel
    readme_text = (
        readme.read_text(encoding="utf-8", errors="replace")
        if readme.is_file()
        else (specs.read(source, readme_rel) if not wt_ok else None)
    )
    if readme_text:
        parts.append(
            Part(
                "readme",
                "the system's README",
                f"# The system's README\n\n{readme_text.strip()}\n",
                60,
                readme_rel,
            )
        )
    texts = source.read_many([f.path for f in current])
    for f in current:
        if f.path in texts:
            body = texts[f.path].strip()
            parts.append(Part(f"spec:{f.path}", f"spec {f.path}", f"# Spec {f.path}\n\n{body}\n", 50, f.path))
    return parts


def _cmd(c: CheckDef, test: str | None = None) -> str:
    from supervisor import guards

    argv = checks.argv_of(c)
    if test and guards.collect_argv(argv) is not None:
        argv = [*argv, "-k", test.split("::")[-1]]
    return shlex.join(argv)


def _marker(cut: int, source: str) -> str:
    return f"\n[... {cut} characters cut; full text: {source}]\n"


def fit(parts: list[Part], budget: int) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """Join parts within `budget` characters, cutting the least relevant first; say what was cut."""
    sep = "\n"
    order = sorted(range(len(parts)), key=lambda i: (parts[i].essential, parts[i].relevance, -i))
    reserve = 0
    for _ in range(8):
        kept = {p.key: p.text for p in parts}
        cut: list[dict[str, Any]] = []

        avail = budget - reserve
        for i in order:
            over = _joined_len(kept, sep) - avail
            if over <= 0:
                break
            p = parts[i]
            size = len(p.text)
            marker = _marker(size, p.source)
            keep = size - over - len(marker)
            if keep >= MIN_KEEP:
                kept[p.key] = p.text[:keep].rstrip() + _marker(size - len(p.text[:keep].rstrip()), p.source)
                cut.append(
                    {
                        "key": p.key,
                        "title": p.title,
                        "chars": size,
                        "cut_chars": size - keep,
                        "how": "shortened",
                        "source": p.source,
                    }
                )
            else:
                kept[p.key] = ""
                cut.append(
                    {
                        "key": p.key,
                        "title": p.title,
                        "chars": size,
                        "cut_chars": size,
                        "how": "left out",
                        "source": p.source,
                    }
                )
        note = _note(cut, budget)
        body = sep.join(t for t in kept.values() if t)
        text = body + (sep + note if note else "")
        if len(text) <= budget:
            break
        reserve = len(note) + len(sep) + (len(text) - budget if not note else 0) + 16
    else:  # pathological budgets: never exceed it
        text = text[: max(0, budget - 1)] + "\n"
    info = [
        {
            "key": p.key,
            "title": p.title,
            "relevance": p.relevance,
            "chars": len(p.text),
            "kept_chars": len(kept[p.key]),
        }
        for p in parts
    ]
    return text, info, cut


def _joined_len(kept: dict[str, str], sep: str) -> int:
    texts = [t for t in kept.values() if t]
    return sum(map(len, texts)) + len(sep) * max(0, len(texts) - 1)


def _note(cut: list[dict[str, Any]], budget: int) -> str:
    if not cut:
        return ""
    lines = [f"# Cut to fit {budget} characters (least relevant first)", ""]
    for c in cut:
        what = (
            f"{c['cut_chars']} of {c['chars']} characters cut"
            if c["how"] == "shortened"
            else f"left out ({c['chars']} characters)"
        )
        lines.append(f"- {c['title']}: {what}; full text: {c['source']}")
    return "\n".join(lines) + "\n"


def build(
    fac: Factory, *, worker: str, role: Role, task: str | None, delta: str | None, worktree: Path
) -> Context:
    budget = max_chars(fac)
    parts = gather(fac, worker=worker, role=role, task=task, delta=delta, worktree=worktree)
    text, info, cut = fit(parts, budget)
    return Context(worker, budget, text, info, cut)


def for_worker(fac: Factory, name: str) -> Context:
    """What `name`'s agent is given, built from its stored record."""
    w = fac.worker(name)
    role = roles.get(fac.root, w.role)
    return build(fac, worker=name, role=role, task=w.task, delta=w.delta, worktree=Path(w.worktree))
