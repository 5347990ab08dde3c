"""Deltas: the lifecycle of a requested change to the specs (`specs/deltas/NNNN-slug.md`).

The file format (parse, render, scaffold, what the fold writes) is `supervisor/specs/deltafiles.py`;
this module moves a delta along, writing main only through the queue's compare-and-swap.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from supervisor import checks, identity, observations, repo, specs
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.model import QueueEntry
from supervisor.specs import DELTAS, GitSource, LintError, Source
from supervisor.specs.deltafiles import (
    ASSIGNABLE,
    FILE_RE,
    ORDER,
    Delta,
    fold_changes,
    load,
    normalize_id,
    parse,
    scaffold,
    slugify,
    with_meta,
)

FACTORY = "factory"  # the queue's name for the factory's own entries (a reserved worker name)
MAX_FOLDS = 3  # fold attempts before a delta waits for a human


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
        return {
            **self.delta.as_dict(),
            "status": self.status,
            "file_status": self.file_status,
            "on_main": self.file_status is not None,
            "worker": s.get("worker"),
            "note": s.get("note"),
            "fold_entry": s.get("fold_entry"),
        }


def effective(file_status: str | None, store_status: str | None) -> str:
    if file_status is None:
        return store_status or "proposed"
    if file_status in ("done", "rejected") or store_status not in ORDER:
        return file_status
    return max(file_status, store_status, key=lambda s: ORDER.get(s, -1))


def _rows(fac: Factory) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in fac.store.delta_rows()}


def views(fac: Factory, source: Source | None = None) -> list[DeltaView]:
    """Every delta: the files on main (or `source`) joined with the store's rows, by id."""
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


def get(fac: Factory, ident: str) -> DeltaView:
    did = normalize_id(ident)
    for v in views(fac):
        if v.id == did:
            return v
    raise FacError(f"no delta {did}", hint="list them with `fac delta ls`")


def released_tests(d: Delta, current: list[specs.Statement]) -> list[str]:
    """The tests a delta lets go of (link specs such as `test_x`): those linked by the current
    statements it removes, and those a statement it replaces no longer links."""
    by_id = {st.id: st for st in current}
    replaced = {st.id: st for st in d.statements if st.id in by_id}
    out: list[str] = []
    for st in current:
        if st.id in d.removes:
            out += [link.test for link in st.links if link.test]
        elif st.id in replaced:
            kept = {link.test for link in replaced[st.id].links}
            out += [link.test for link in st.links if link.test and link.test not in kept]
    return list(dict.fromkeys(out))


def waived_tests(fac: Factory, did: str, main: str) -> list[str]:
    """What an approved (or in-progress) delta lets its branch drop or change: the per-test ratchet
    waives these tests for it (`released_tests`)."""
    source = GitSource(fac.root, main, fac.main)
    view = next((v for v in views(fac, source) if v.id == did), None)
    if view is None or view.status not in ("approved", "in-progress"):
        return []
    current = [st for f in specs.load_current(source) for st in f.statements]
    return released_tests(view.delta, current)


# --- commits fac makes on main (humans' actions) and for the factory (through the queue) ---


def commit_on_main(fac: Factory, changes: dict[str, str], message: str) -> str:
    """A human's change to specs/, committed on main by fac (compare-and-swap; the checkout follows)."""
    from supervisor.mainline import move_main, moved_outside

    for _ in range(5):
        old = repo.rev_parse(fac.root, f"refs/heads/{fac.main}")
        if old is None:
            raise FacError(f"branch {fac.main} does not exist", hint="check [factory] main in factory.toml")
        # fac commits only on a main it wrote or judged: never on top of (and so hiding) another's move
        move = moved_outside(fac)
        if move is not None:
            raise FacError(
                f"{move.describe(fac.main)}: it is not judged yet",
                hint="the merge queue judges it before its next round (`fac up`), or run `fac verify`",
            )
        new = repo.build_commit(fac.root, old, changes, message)
        if move_main(fac, old, new, by="delta"):
            return new
    raise FacError(f"{fac.main} kept moving while fac tried to commit", hint="try again")


def _no_local_edits(fac: Factory, v: DeltaView) -> None:
    """fac commits main's copy of the file: refuse when the human's checkout holds other, uncommitted text."""
    local = fac.root / v.delta.path
    if v.file_status and local.is_file() and local.read_text(encoding="utf-8") != v.delta.text:
        raise FacError(
            f"{v.delta.path} has edits that are not on {fac.main}",
            hint=f"commit them first (git commit {v.delta.path}), "
            f"or discard them (git checkout {v.delta.path})",
        )


def refuse_agents(action: str) -> None:
    identity.require_human(f"{action} deltas (they may propose them)")


def _lint_one(fac: Factory, d: Delta) -> list[LintError]:
    """A delta's own problems plus links to checks that do not exist on main."""
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


def new(
    fac: Factory,
    title: str,
    statements: list[str],
    checks: list[str],
    *,
    owner: str | None = None,
    spec: str | None = None,
) -> DeltaView:
    """Write a proposed delta: on main for a human, in the store for an agent (FAC_WORKER set)."""
    agent = identity.caller().worker
    if not title.strip():
        raise FacError("a delta needs a title", hint='fac delta new "Count characters" --statement "..."')
    # An agent's proposal is owned by the agent: the owner is who speaks, not a name it passes.
    owner = agent or owner or os.environ.get("USER") or "human"
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


def approve(fac: Factory, ident: str) -> DeltaView:
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


def reject(fac: Factory, ident: str, reason: str | None) -> DeltaView:
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


def assignable(fac: Factory, ident: str) -> str:
    """The canonical id of a delta a worker may be spawned for (approved, or already under way)."""
    v = get(fac, ident)
    if v.status not in ASSIGNABLE:
        hint = f"a human approves it first: `fac delta approve {v.id}`" if v.status == "proposed" else None
        raise FacError(f"delta {v.id} is {v.status}: only an approved delta can be assigned", hint=hint)
    return v.id


def start(fac: Factory, did: str, worker: str, db: Any) -> None:
    """Spawn assigned `worker` to delta `did`: it is in progress (inside spawn's transaction)."""
    row = fac.store.delta_row(did)
    if row is None or ORDER.get(row["status"], -1) < ORDER["in-progress"]:
        fac.store.update_delta(did, db=db, worker=worker, status="in-progress")
    else:
        fac.store.update_delta(did, db=db, worker=worker)
    fac.store.event("delta-in-progress", worker, correlation=did, db=db)


# --- the queue's hook: merged, acceptance on main, the fold, done ---


def is_factory_entry(fac: Factory, e: QueueEntry) -> bool:
    """The factory's own fold commit for a delta, exactly as fac made it (never a worker's branch)."""
    if e.worker != FACTORY or not e.delta or e.branch != fold_branch(e.delta):
        return False
    row = fac.store.delta_row(e.delta)
    return row is not None and row["fold_sha"] == e.sha


def fold_branch(did: str) -> str:
    # fac/factory/<id> can never be a worker's branch: worker names hold no '/' and `factory` is reserved.
    return f"fac/{FACTORY}/{did}"


def after_round(fac: Factory, say: Callable[[str], None] | None = None) -> None:
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


def acceptance(fac: Factory, d: Delta, sha: str) -> tuple[bool, str]:
    """Do the delta's acceptance checks pass on commit `sha`? (False, why) when not."""
    links = d.checks()
    if not links:
        return True, ""
    obs = observations.observe(fac, sha, links)
    bad = []
    for link in links:
        status, detail = observations.link_status(link, obs)
        if status != "pass":
            bad.append(f"{link}: {detail or status}")
    return (not bad), "; ".join(bad)


def fold_commit(fac: Factory, d: Delta, main: str) -> str:
    changes = fold_changes(GitSource(fac.root, main), d)
    message = (
        f"Fold delta {d.id} into specs/current: {d.title}\n\n"
        f"Its acceptance checks passed on {fac.main} {main[:10]}.\n\n"
        f"Fac-Worker: {FACTORY}\nFac-Delta: {d.id}\n"
    )
    ident = {
        "GIT_AUTHOR_NAME": "fac factory",
        "GIT_AUTHOR_EMAIL": "factory@fac.invalid",
        "GIT_COMMITTER_NAME": "fac factory",
        "GIT_COMMITTER_EMAIL": "factory@fac.invalid",
    }
    return repo.build_commit(fac.root, main, changes, message, env=ident)
