"""Deltas: requested changes to the specs, `specs/deltas/NNNN-slug.md`, and their lifecycle.

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

Lifecycle: a human (or an agent: status proposed) runs `fac delta new`; a human approves or rejects
it; `fac spawn --delta` puts it in progress; the queue merging a branch that carries it makes it
merged; once its acceptance checks pass on main, the factory commits the fold (statements into
specs/current, status done) and that commit goes through the queue like any other change.

The file on main is the record humans change (new, approve, reject; fac commits it on main). The
runtime steps (in-progress, merged, the fold in flight) live in the store's `deltas` table; the
status shown is the later of the two in the lifecycle, except that done and rejected in the file are
final. An agent's proposal lives only in the store until a human approves it.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import repo
from supervisor.errors import FacError
from supervisor.specs import DELTAS, Link, LintError, Source, Statement

STATUSES = ("proposed", "approved", "in-progress", "merged", "done", "rejected")
ORDER = {s: i for i, s in enumerate(STATUSES[:5])}
OPEN = ("proposed", "approved", "in-progress", "merged")
ASSIGNABLE = ("approved", "in-progress", "merged")
KEYS = ("id", "title", "status", "owner", "acceptance", "removes", "spec", "reason", "created")
FILE_RE = re.compile(r"^(\d{4})-([a-z0-9][a-z0-9-]*)\.md$")
FACTORY = "factory"  # the queue's name for the factory's own entries (a reserved worker name)
MAX_FOLDS = 3  # fold attempts before a delta waits for a human


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
        return {"id": self.id, "title": self.title, "file_status": self.status, "owner": self.owner,
                "acceptance": [str(a) for a in self.acceptance], "removes": list(self.removes), "spec": self.spec,
                "reason": self.reason, "path": self.path,
                "statements": [st.as_dict() for st in self.statements]}  # fmt: skip


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
    from supervisor import specs

    problems: list[LintError] = []

    def problem(line: int, message: str, hint: str) -> None:
        problems.append(LintError(path, line, message, hint, "delta"))

    lines = text.splitlines()
    m = FILE_RE.match(Path(path).name)
    if not m:
        problem(1, f"delta file name {Path(path).name!r} is not NNNN-slug.md",
                "rename it like 0007-count-characters.md (four digits, a dash, lower-case words)")  # fmt: skip
    meta: dict[str, Any] | None = None
    end = -1
    meta_lines: dict[str, int] = {}
    if not lines or lines[0].strip() != "+++":
        problem(1, "a delta starts with a `+++` line, then TOML front matter, then `+++`",
                "add the front matter: id, title, status, owner, acceptance (see specs/README.md)")  # fmt: skip
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
                problem(1 + int(ln.group(1)) if ln else 2, f"front matter is not valid TOML: {e}",
                        'fix the syntax, e.g. title = "Count characters"')  # fmt: skip
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
                problem(at("id", 2), f"id {did} differs from the file name's {m.group(1)}",
                        f'make them agree: id = "{m.group(1)}", or rename the file')  # fmt: skip
    title = meta.get("title")
    if meta_ok and (not isinstance(title, str) or not title.strip()):
        problem(
            at("title", 2), "the front matter needs a title", 'add title = "what changes, in a few words"'
        )
    status = meta.get("status", "proposed")
    if status not in STATUSES:
        problem(at("status", 2), f"status {status!r} is not one of {', '.join(STATUSES)}",
                'write e.g. status = "proposed"')  # fmt: skip
        status = "proposed"
    owner = meta.get("owner", "")
    if not isinstance(owner, str):
        problem(at("owner", 2), "owner must be a string", 'write e.g. owner = "alice"')
        owner = ""
    acceptance: list[Link] = []
    raw_acc = meta.get("acceptance", [])
    if not isinstance(raw_acc, list) or not all(isinstance(x, str) for x in raw_acc):
        problem(at("acceptance", 2), "acceptance must be a list of check links",
                'e.g. acceptance = ["tests::test_char_count", "lint"]')  # fmt: skip
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
    body = specs.parse(path, "\n".join(lines[body_start:]), first_line=body_start + 1)
    problems += body.problems
    if meta_ok and not body.statements and not acceptance:
        problem(2, "the delta states nothing and names no acceptance check",
                "add statements (list items with MUST/SHOULD/MAY) or acceptance checks")  # fmt: skip
    return Delta(
        id=did, title=title if isinstance(title, str) else "", status=status, owner=owner,
        acceptance=tuple(acceptance), removes=tuple(removes), spec=spec,
        reason=reason if isinstance(reason, str) else None, statements=body.statements, path=path, text=text,
        meta=meta if meta_ok else None, problems=problems, meta_lines=meta_lines,
    )  # fmt: skip


def load(source: Source) -> list[Delta]:
    from supervisor.specs import md_files

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
    meta: dict[str, Any] = {"id": did, "title": title, "status": "proposed", "owner": owner,
                            "acceptance": checks, "spec": spec, "created": time.strftime("%Y-%m-%d")}  # fmt: skip
    body = [f"# {did}: {title}", "", "## Statements", ""]
    body += [f"- {s.strip().removeprefix('- ')}" for s in statements] or [
        "(none: the acceptance checks say it all)"
    ]
    return render(meta, "\n".join(body) + "\n")


# --- the effective view: file on main + store ---


@dataclass
class DeltaView:
    delta: Delta
    status: str
    file_status: str | None  # None: not on main (an agent's proposal, in the store only)
    store: dict[str, Any] | None

    @property
    def id(self) -> str:
        return self.delta.id

    def as_dict(self) -> dict[str, Any]:
        s = self.store or {}
        return {**self.delta.as_dict(), "status": self.status, "file_status": self.file_status,
                "on_main": self.file_status is not None, "worker": s.get("worker"), "note": s.get("note"),
                "fold_entry": s.get("fold_entry")}  # fmt: skip


def effective(file_status: str | None, store_status: str | None) -> str:
    if file_status is None:
        return store_status or "proposed"
    if file_status in ("done", "rejected") or store_status not in ORDER:
        return file_status
    return max(file_status, store_status, key=lambda s: ORDER.get(s, -1))


def _rows(fac: Any) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in fac.store.delta_rows()}


def views(fac: Any, source: Source | None = None) -> list[DeltaView]:
    """Every delta: the files on main (or `source`) joined with the store's rows, by id."""
    from supervisor.specs import GitSource

    if source is None:
        main = repo.rev_parse(fac.root, f"refs/heads/{fac.main}")
        if main is None:
            raise FacError(f"branch {fac.main} does not exist", hint="check [factory] main in factory.toml")
        source = GitSource(fac.root, main, fac.main)
    rows = _rows(fac)
    out = {}
    for d in load(source):
        row = rows.get(d.id)
        out[d.id] = DeltaView(d, effective(d.status, row["status"] if row else None), d.status, row)
    for did, row in rows.items():
        if did not in out and row["text"]:
            d = parse(row["path"] or f"{DELTAS}/{did}-{slugify(row['title'])}.md", row["text"])
            out[did] = DeltaView(d, row["status"], None, row)
    return [out[k] for k in sorted(out)]


def get(fac: Any, ident: str) -> DeltaView:
    did = normalize_id(ident)
    for v in views(fac):
        if v.id == did:
            return v
    raise FacError(f"no delta {did}", hint="list them with `fac delta ls`")


# --- commits fac makes on main (humans' actions) and for the factory (through the queue) ---


def build_commit(root: Path, parent: str, changes: dict[str, str], message: str,
                 env: dict[str, str] | None = None) -> str:  # fmt: skip
    """A commit on `parent` with `changes` (path -> text), made without touching any checkout or index."""
    with tempfile.TemporaryDirectory(prefix="fac-index-") as tmp:
        ienv = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        repo.git(root, "read-tree", parent, env=ienv)
        for path, text in changes.items():
            blob = repo.git(root, "hash-object", "-w", "--stdin", input=text)
            repo.git(root, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=ienv)
        tree = repo.git(root, "write-tree", env=ienv)
    return repo.commit_tree(root, tree, [parent], message, env={**repo.identity_env(root), **(env or {})})


def commit_on_main(fac: Any, changes: dict[str, str], message: str) -> str:
    """A human's change to specs/, committed on main by fac (compare-and-swap; the checkout follows)."""
    from supervisor.mainline import move_main

    for _ in range(5):
        old = repo.rev_parse(fac.root, f"refs/heads/{fac.main}")
        if old is None:
            raise FacError(f"branch {fac.main} does not exist", hint="check [factory] main in factory.toml")
        new = build_commit(fac.root, old, changes, message)
        if move_main(fac, old, new):
            return new
    raise FacError(f"{fac.main} kept moving while fac tried to commit", hint="try again")


def _no_local_edits(fac: Any, v: DeltaView) -> None:
    """fac commits main's copy of the file: refuse when the human's checkout holds other, uncommitted text."""
    local = fac.root / v.delta.path
    if v.file_status and local.is_file() and local.read_text(encoding="utf-8") != v.delta.text:
        raise FacError(
            f"{v.delta.path} has edits that are not on {fac.main}",
            hint=f"commit them first (git commit {v.delta.path}), or discard them (git checkout {v.delta.path})",
        )


def refuse_agents(action: str) -> None:
    worker = os.environ.get("FAC_WORKER")
    if worker:
        raise FacError(
            f"agents may propose deltas but not {action} them (FAC_WORKER={worker})",
            hint='ask a human: `fac ask "please review delta ..."`',
        )


def _lint_one(fac: Any, d: Delta) -> list[LintError]:
    """A delta's own problems plus links to checks that do not exist on main."""
    from supervisor import checks, specs

    main = repo.rev_parse(fac.root, f"refs/heads/{fac.main}") or fac.main
    suite = checks.suite_from_rev(fac.root, main, fac.fac_dir / "suites")
    catalog = specs.Catalog(suite, specs.GitSource(fac.root, main))
    errors = list(d.problems)
    for st in d.statements:
        errors += specs.check_links(st.links, catalog, d.path, st.line, require_tests=False)
    errors += specs.check_links(d.acceptance, catalog, d.path, d.meta_line("acceptance"), require_tests=False)
    return errors


def _raise_lint(errors: list[LintError], what: str, *, draft: bool = False) -> None:
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more: `fac spec lint`)" if len(errors) > 1 else ""
        # A draft has no file yet: its path and line would point at nothing.
        where = "" if draft else f"{first.path}:{first.line}: "
        raise FacError(f"{what}: {where}{first.message}{more}", hint=first.hint)


def new(fac: Any, title: str, statements: list[str], checks: list[str], *, owner: str | None = None,
        spec: str | None = None) -> DeltaView:  # fmt: skip
    """Write a proposed delta: on main for a human, in the store for an agent (FAC_WORKER set)."""
    agent = os.environ.get("FAC_WORKER")
    if not title.strip():
        raise FacError("a delta needs a title", hint='fac delta new "Count characters" --statement "..."')
    owner = owner or agent or os.environ.get("USER") or "human"
    draft = parse(
        f"{DELTAS}/0000-{slugify(title)}.md", scaffold("0000", title, owner, statements, checks, spec)
    )
    _raise_lint(_lint_one(fac, draft), "the delta does not lint", draft=True)
    existing = {d.id for d in views(fac)}
    disk = fac.root / DELTAS
    if disk.is_dir():
        existing |= {m.group(1) for p in disk.iterdir() if (m := FILE_RE.match(p.name))}
    with fac.store.tx() as db:
        taken = existing | fac.store.delta_ids()
        did = f"{max((int(x) for x in taken), default=0) + 1:04d}"
        path = f"{DELTAS}/{did}-{slugify(title)}.md"
        text = scaffold(did, title, owner, statements, checks, spec)
        fac.store.add_delta(did, title, owner, path, text if agent else None, db)
        fac.store.event("delta-proposed", agent, correlation=did, db=db, title=title, owner=owner, path=path)
    if not agent:
        try:
            commit_on_main(fac, {path: text}, f"Delta {did}: {title} (proposed)\n\nFac-Delta: {did}\n")
        except BaseException:
            fac.store.delete_delta(did)
            raise
    return get(fac, did)


def approve(fac: Any, ident: str) -> DeltaView:
    refuse_agents("approve")
    v = get(fac, ident)
    if v.status != "proposed":
        raise FacError(f"delta {v.id} is {v.status}; only a proposed delta can be approved")
    _no_local_edits(fac, v)
    text = with_meta(v.delta, status="approved")
    d = parse(v.delta.path, text)
    _raise_lint(_lint_one(fac, d), f"delta {v.id} does not lint")
    commit_on_main(fac, {d.path: text}, f"Delta {v.id}: {d.title} (approved)\n\nFac-Delta: {v.id}\n")
    with fac.store.tx() as db:
        fac.store.update_delta(v.id, db=db, status="approved", title=d.title, path=d.path, text=None)
        fac.store.event("delta-approved", None, correlation=v.id, db=db, title=d.title)
    return get(fac, v.id)


def reject(fac: Any, ident: str, reason: str | None) -> DeltaView:
    refuse_agents("reject")
    v = get(fac, ident)
    if v.status not in ("proposed", "approved", "in-progress"):
        raise FacError(f"delta {v.id} is {v.status}; it can no longer be rejected")
    _no_local_edits(fac, v)
    if v.file_status:
        text = with_meta(v.delta, status="rejected", reason=reason or "")
        commit_on_main(
            fac, {v.delta.path: text}, f"Delta {v.id}: {v.delta.title} (rejected)\n\nFac-Delta: {v.id}\n"
        )
    with fac.store.tx() as db:
        fac.store.update_delta(v.id, db=db, status="rejected", title=v.delta.title, note=reason)
        fac.store.event("delta-rejected", None, correlation=v.id, db=db, reason=reason)
    return get(fac, v.id)


def assignable(fac: Any, ident: str) -> str:
    """The canonical id of a delta a worker may be spawned for (approved, or already under way)."""
    v = get(fac, ident)
    if v.status not in ASSIGNABLE:
        hint = f"a human approves it first: `fac delta approve {v.id}`" if v.status == "proposed" else None
        raise FacError(f"delta {v.id} is {v.status}: only an approved delta can be assigned", hint=hint)
    return v.id


def start(fac: Any, did: str, worker: str, db: Any) -> None:
    """Spawn assigned `worker` to delta `did`: it is in progress (inside spawn's transaction)."""
    row = fac.store.delta_row(did)
    if row is None or ORDER.get(row["status"], -1) < ORDER["in-progress"]:
        fac.store.update_delta(did, db=db, worker=worker, status="in-progress")
    else:
        fac.store.update_delta(did, db=db, worker=worker)
    fac.store.event("delta-in-progress", worker, correlation=did, db=db)


# --- the queue's hook: merged, acceptance on main, the fold, done ---


def is_factory_entry(fac: Any, e: Any) -> bool:
    """The factory's own fold commit for a delta, exactly as fac made it (never a worker's branch)."""
    if e.worker != FACTORY or not e.delta or e.branch != fold_branch(e.delta):
        return False
    row = fac.store.delta_row(e.delta)
    return row is not None and row["fold_sha"] == e.sha


def fold_branch(did: str) -> str:
    # fac/factory/<id> can never be a worker's branch: worker names hold no '/' and `factory` is reserved.
    return f"fac/{FACTORY}/{did}"


def after_round(fac: Any, say: Callable[[str], None] | None = None) -> None:
    """After each queue round: merged branches move their deltas on; green acceptance starts the fold."""
    say = say or (lambda _m: None)
    store = fac.store
    if not store.deltas_under_way():
        return  # nothing under way: the common case costs one query
    done = store.merged_deltas()
    for worker, did, merged_as, status in done:
        if worker == FACTORY:
            with store.tx() as db:
                store.update_delta(did, db=db, status="done", main_sha=merged_as, note=None)
                store.event("delta-done", None, correlation=did, db=db, main=merged_as)
            say(f"  delta {did}: done (folded into specs/current at {(merged_as or '')[:10]})")
        elif ORDER.get(status, 0) < ORDER["merged"]:
            with store.tx() as db:
                store.update_delta(did, db=db, status="merged", main_sha=merged_as)
                store.event("delta-merged", worker, correlation=did, db=db, main=merged_as)
            say(f"  delta {did}: merged ({worker})")
    pending = [v for v in views(fac) if v.status == "merged"]
    if not pending:
        return
    if any(e.worker == FACTORY for e in store.queue(("queued", "testing"))):
        return  # one fold at a time, each built on the main before it: folds never conflict
    main = repo.rev_parse(fac.root, f"refs/heads/{fac.main}")
    assert main is not None
    for v in pending:
        row = v.store or {}
        attempts = row.get("fold_attempts", 0)
        if attempts >= MAX_FOLDS:
            note = f"its fold was red or conflicting {attempts} times (fac queue --all); it needs a human"
            if row.get("note") != note:
                store.update_delta(v.id, note=note)
                store.event("delta-fold-stuck", None, correlation=v.id, attempts=attempts)
                say(f"  delta {v.id}: {note}")
            continue
        ok, why = acceptance(fac, v.delta, main)
        if not ok:
            note = f"acceptance on {fac.main} {main[:10]}: {why}"
            if row.get("note") != note:
                store.update_delta(v.id, note=note)
                store.event("delta-acceptance", None, correlation=v.id, ok=False, main=main, detail=why)
                say(f"  delta {v.id}: merged, acceptance not green yet ({why})")
            continue
        sha = fold_commit(fac, v.delta, main)
        ref = fold_branch(v.id)
        repo.git(fac.root, "update-ref", f"refs/heads/{ref}", sha)
        store.update_delta(v.id, fold_sha=sha, fold_attempts=attempts + 1, note=None)
        qid, _ = store.enqueue(FACTORY, ref, sha, v.id)
        store.update_delta(v.id, fold_entry=qid)
        store.event("delta-fold", None, correlation=v.id, sha=sha, entry=qid, main=main)
        say(f"  delta {v.id}: acceptance green on {fac.main}; folding it into specs/current (entry {qid})")
        return


def acceptance(fac: Any, d: Delta, sha: str) -> tuple[bool, str]:
    """Do the delta's acceptance checks pass on commit `sha`? (False, why) when not."""
    from supervisor import state

    links = d.checks()
    if not links:
        return True, ""
    obs = state.observe(fac, sha, links)
    bad = []
    for link in links:
        status, detail = state.link_status(link, obs)
        if status != "pass":
            bad.append(f"{link}: {detail or status}")
    return (not bad), "; ".join(bad)


def fold_changes(source: Source, d: Delta) -> dict[str, str]:
    """The files the fold writes: specs/current with the delta's statements, the delta marked done."""
    import textwrap

    from supervisor import specs

    current = specs.load_current(source)
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
    target: str | None = f"{specs.CURRENT}/{d.spec}" if d.spec else None
    if target is None and edits:
        target = next(iter(edits))
    if target is None:
        target = str(current[0].path) if len(current) == 1 else f"{specs.CURRENT}/{d.slug}.md"
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


def fold_commit(fac: Any, d: Delta, main: str) -> str:
    from supervisor.specs import GitSource

    changes = fold_changes(GitSource(fac.root, main), d)
    message = (f"Fold delta {d.id} into specs/current: {d.title}\n\n"
               f"Its acceptance checks passed on {fac.main} {main[:10]}.\n\n"
               f"Fac-Worker: {FACTORY}\nFac-Delta: {d.id}\n")  # fmt: skip
    ident = {"GIT_AUTHOR_NAME": "fac factory", "GIT_AUTHOR_EMAIL": "factory@fac.invalid",
             "GIT_COMMITTER_NAME": "fac factory", "GIT_COMMITTER_EMAIL": "factory@fac.invalid"}  # fmt: skip
    return build_commit(fac.root, main, changes, message, env=ident)
