"""Screening: the per-branch gates that need no check run (already on main, guards, the human's
approval, conflicts with main), and `fac approve`, the human gate."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from supervisor import config as configmod
from supervisor import deltas, guards, identity, repo, roles, specs, testinfra
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.model import QueueEntry


@dataclass(frozen=True)
class Look:
    """What screening reads from git about one entry, in screening's order, stopping where it would."""

    exists: bool
    on_main: bool = False
    report: guards.GuardReport | None = None
    merged: repo.MergeResult | None = None


class Screener:
    """Screening's git reads as jobs that touch no store (safe to run in a thread), with the roles'
    writable globs read from git once per (role, main) rather than once per branch screened."""

    def __init__(self, fac: Factory) -> None:
        self.fac = fac
        self.root = fac.root
        self._writable: dict[tuple[str, str], tuple[str, ...]] = {}

    def role_writable(self, worker: str, main_sha: str) -> tuple[str, ...]:
        w = self.fac.store.worker(worker)
        key = (w.role if w else "worker", main_sha)
        if key not in self._writable:
            if len(self._writable) > 64:
                self._writable.clear()
            self._writable[key] = roles.writable_at(self.root, main_sha, key[0])
        return self._writable[key]

    def guard_job(self, e: QueueEntry, main_sha: str) -> Callable[[], guards.GuardReport]:
        """The guards of `e` as a job that only reads git (the store is read here, in the caller's thread).

        A worker's branch: the built-in guards. The factory's fold of a delta: specs/ and nothing
        else. Both: the spec lint, for problems the branch would bring to main.
        """
        if deltas.is_factory_entry(self.fac, e):
            first = functools.partial(guards.factory_guards, self.root, main_sha, e.sha)
        else:
            writable = self.role_writable(e.worker, main_sha)
            first = functools.partial(guards.branch_guards, self.root, main_sha, e.sha, writable)

        def report() -> guards.GuardReport:
            found = first()
            lint = specs.lint_guard(self.fac, main_sha, e.sha)
            return guards.GuardReport([*found.results, lint], holds=found.holds)

        return report

    def look_job(self, e: QueueEntry, main_sha: str) -> Callable[[], Look]:
        """Screening's git reads for `e` as a job that touches no store (safe to run in a thread)."""
        guard = self.guard_job(e, main_sha)
        root = self.root

        def look() -> Look:
            if repo.rev_parse(root, e.sha) is None:
                return Look(exists=False)
            if repo.is_ancestor(root, e.sha, main_sha):
                return Look(exists=True, on_main=True)
            report = guard()
            merged = repo.merge_tree(root, main_sha, e.sha) if report.ok else None
            return Look(exists=True, report=report, merged=merged)

        return look


@functools.lru_cache(maxsize=64)
def _approval_globs(root: Path, main_sha: str) -> tuple[str, ...]:
    """`[queue] approval_paths` as main's config has it (a commit's content never changes: cacheable)."""
    text = repo.show_file(root, main_sha, configmod.CONFIG_NAME) or ""
    try:
        return tuple(configmod.parse(text, default_name=root.name).queue.approval_paths)
    except FacError:
        return ()


def approval_needed(fac: Factory, main_sha: str, e: QueueEntry, builtin: tuple[str, ...] = ()) -> list[str]:
    """Why the entry waits for a human: the built-in holds (test infrastructure, from the guards) and
    its paths that match `[queue] approval_paths` (main's config), each as `path: reason`; nothing
    once a human approved its commit."""
    reasons = list(builtin)
    globs = _approval_globs(fac.root, main_sha)
    if globs:
        base = repo.merge_base(fac.root, main_sha, e.sha) or main_sha
        changed = [p for _s, p in repo.changed_paths(fac.root, base, e.sha)]
        hits = [p for p in changed if p not in guards.scope_violations([p], globs)]
        reasons += [f"{p}: matches [queue] approval_paths" for p in hits]
    if not reasons:
        return []
    approved = any(
        ev.kind == "approved" and ev.payload.get("sha") == e.sha for ev in fac.store.events(worker=e.worker)
    )
    return [] if approved else reasons


def waived_tests(fac: Factory, entries: Iterable[QueueEntry], main_sha: str) -> frozenset[str]:
    """Tests the ratchet lets these entries lose: those a human approved away for exactly their
    commits (`fac approve` after a ratchet's red), and those the approved delta of an entry removes
    or changes (its `removes` and the statements it replaces)."""
    out: set[str] = set()
    for e in entries:
        for ev in fac.store.events(worker=e.worker):
            if ev.kind == "approved" and ev.payload.get("sha") == e.sha:
                out.update(ev.payload.get("tests") or ())
        if e.delta:
            try:
                out.update(deltas.waived_tests(fac, e.delta, main_sha))
            except FacError:  # a broken delta file waives nothing
                pass
    return frozenset(out)


def trusted_infra(fac: Factory, entries: Iterable[QueueEntry], main_sha: str) -> frozenset[str]:
    """Test infrastructure (conftest.py, pytest configuration) that these entries change and a human
    approved for exactly their commits: the gate runs the candidate with it instead of main's."""
    out: set[str] = set()
    for e in entries:
        if not any(
            ev.kind == "approved" and ev.payload.get("sha") == e.sha
            for ev in fac.store.events(worker=e.worker)
        ):
            continue
        base = repo.merge_base(fac.root, main_sha, e.sha) or main_sha
        out.update(
            p
            for _s, p in repo.changed_paths(fac.root, base, e.sha)
            if Path(p).name == "conftest.py" or Path(p).name in testinfra.PYTEST_CONFIG
        )
    return frozenset(out)


def approve(fac: Factory, branch_or_worker: str, by: str = "human") -> list[int]:
    """`fac approve`: the human gate. Approves the held (or queued) head of a branch and requeues it;
    a head the ratchet sent back red (tests main has, lost or failing) is approved with exactly those
    tests and queued again."""
    branch = branch_or_worker if branch_or_worker.startswith("fac/") else f"fac/{branch_or_worker}"
    entries = [e for e in fac.store.queue(("held", "queued")) if e.branch == branch]
    if not entries:
        return _approve_red(fac, branch, by)
    with fac.store.tx() as db:
        for e in entries:
            fac.store.event("approved", e.worker, correlation=f"q{e.id}", db=db, sha=e.sha, by=by)
            if e.state == "held":
                fac.store.set_entry(e.id, db=db, state="queued")
    return [e.id for e in entries]


def refuse_agent_approval() -> None:
    """Approval is the human gate: an agent (on its channel, or in its pane) cannot approve."""
    identity.require_human("approve")


def _approve_red(fac: Factory, branch: str, by: str) -> list[int]:
    """Approve what the gate's ratchet found in the branch's latest red head, and queue it again."""
    mine = [e for e in fac.store.queue() if e.branch == branch]
    last = mine[-1] if mine else None
    tests = (
        sorted({t for f in (last.verdict or {}).get("failed", []) for t in f.get("waivable", [])})
        if last
        else []
    )
    if last is None or last.state != "red" or not tests:
        raise FacError(f"nothing of {branch} waits for approval", hint="`fac queue` lists held entries")
    if repo.rev_parse(fac.root, f"refs/heads/{branch}") != last.sha:
        raise FacError(
            f"{branch} moved on since {last.sha[:10]} was red", hint="approve after its new head is judged"
        )
    qid, _superseded = fac.store.enqueue(last.worker, last.branch, last.sha, last.delta)
    fac.store.event("approved", last.worker, correlation=f"q{qid}", sha=last.sha, by=by, tests=tests)
    return [qid]
