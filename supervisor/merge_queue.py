"""The merge queue, "the bot on main": plain deterministic code, no LLM.

Oldest first, a batch of submitted heads is merged onto main without a worktree (merge-tree,
commit-tree; one merge commit per branch), the gate runs on that candidate in a throw-away
detached worktree, and on green `main` moves to exactly the tested commit with a compare-and-swap.
A red batch is bisected to its culprits (the cache makes re-testing a known tree free); the others
merge. Red results and conflicts go back to the worker that owns the branch, with the evidence.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor import checks, guards, line, locks, messages, repo, roles, sandbox, worktrees
from supervisor.checks import CheckResult, Suite, Verdict
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.store import QueueEntry


@dataclass(frozen=True)
class Candidate:
    base: str
    sha: str
    tree: str
    entries: tuple[QueueEntry, ...]


def candidate_message(e: QueueEntry) -> str:
    lines = [f"Merge {e.branch} ({e.worker})", "", f"Fac-Worker: {e.worker}", f"Fac-Queue-Entry: {e.id}"]
    if e.delta:
        lines.append(f"Fac-Delta: {e.delta}")
    return "\n".join(lines) + "\n"


def _watch_store(fac_dir: Path) -> tuple[Any, Any]:
    """An Event set whenever a file directly in `.fac/` changes (the store's WAL on every commit)."""
    import threading

    wake = threading.Event()
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        class Poke(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if not str(getattr(event, "src_path", "")).endswith(("-shm", ".lock")):
                    wake.set()

        observer = Observer()
        observer.schedule(Poke(), str(fac_dir), recursive=False)
        observer.daemon = True
        observer.start()
    except Exception:  # no inotify here (limits, odd file systems): poll instead
        return None, None
    return wake, observer


def role_writable(fac: Factory, worker: str, main_sha: str) -> tuple[str, ...]:
    """The role's writable globs as main has them (a branch cannot widen its own scope)."""
    w = fac.store.worker(worker)
    role_name = w.role if w else "worker"
    text = repo.show_file(fac.root, main_sha, f"roles/{role_name}.md")
    if text is None:
        return roles.DEFAULT_WRITABLE
    try:
        return roles.parse(Path(f"roles/{role_name}.md"), text).writable
    except FacError:
        return roles.DEFAULT_WRITABLE


@dataclass(frozen=True)
class _Look:
    """What screen() reads from git about one entry, in screen's order, stopping where screen would."""

    exists: bool
    on_main: bool = False
    report: guards.GuardReport | None = None
    merged: repo.MergeResult | None = None


class QueueLocked(FacError):
    pass


class MergeQueue:
    def __init__(
        self,
        fac: Factory,
        *,
        max_batch: int | None = None,
        retries: int | None = None,
        use_cache: bool = True,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.fac = fac
        self.root = fac.root
        cfg = fac.config.queue
        self.max_batch = max_batch or cfg.max_batch
        self.batch_size = self.max_batch
        self.retries = cfg.retries if retries is None else retries
        self.parallel = cfg.parallel
        self.use_cache = use_cache
        self.say = say or (lambda _msg: None)
        self.stats: Counter[str] = Counter()
        self.main_ref = f"refs/heads/{fac.main}"
        self._lock_fd: int | None = None
        self._seq = 0
        self._said_stopped = False
        self._writable: dict[tuple[str, str], tuple[str, ...]] = {}
        self._prefetched: dict[tuple[int, str], Future[_Look]] = {}

    # --- lifecycle ---

    def lock(self) -> None:
        hint = "one queue per factory: watch it with `fac attach merge-queue` or `fac queue`"
        self._lock_fd = locks.acquire(self.fac.fac_dir / "queue.lock", "the merge queue", hint, QueueLocked)

    def unlock(self) -> None:
        locks.release(self._lock_fd)
        self._lock_fd = None

    def recover(self) -> None:
        """After a crash: entries caught mid-test go back in line; stale candidate worktrees go."""
        store = self.fac.store
        for e in store.queue(("testing",)):
            store.set_entry(e.id, state="queued")
            store.event("requeued", e.worker, correlation=f"q{e.id}", reason="queue restarted mid-test")
        tmp = self.fac.fac_dir / "tmp"
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        repo.git(self.root, "worktree", "prune", check=False)

    def run(self, *, once: bool = False, should_stop: Callable[[], bool] | None = None) -> Counter[str]:
        """Process the queue; with `once`, return when nothing is pending."""
        self.lock()
        try:
            self.recover()
            self.say(f"merge queue on {self.fac.main}: max batch {self.max_batch}, retries {self.retries}")
            wake, observer = (None, None) if once else _watch_store(self.fac.fac_dir)
            try:
                while not (should_stop and should_stop()):
                    if self.step():
                        continue
                    if once:
                        break
                    # Idle: a submit writes the store, inotify wakes us; the 2 s tick is a safety net.
                    if wake is not None:
                        wake.wait(2.0)
                        wake.clear()
                    else:
                        time.sleep(0.2)
            finally:
                if observer is not None:
                    observer.stop()
        finally:
            self.unlock()
        return self.stats

    # --- one round ---

    def step(self) -> bool:
        """Take the next batch and settle it. False when nothing was pending."""
        store = self.fac.store
        pending = store.queue(("queued",))
        if pending and line.get(self.fac).stopped:
            # Jidoka: while main is red only fixes merge; everyone else waits instead of being blamed.
            pending = [e for e in pending if self._is_fix(e)]
            if not pending and not self._said_stopped:
                self.say("line STOPPED (main is red): only fixes merge; `fac line` says why")
            self._said_stopped = True
        else:
            self._said_stopped = False
        if not pending:
            return False
        base = repo.rev_parse(self.root, self.main_ref)
        if base is None:
            raise FacError(
                f"branch {self.fac.main} does not exist", hint="check [factory] main in factory.toml"
            )
        suite = checks.suite_from_rev(self.root, base, self.fac.fac_dir / "suites")
        batch: list[QueueEntry] = []
        # Screening is read-only git work (about 20 processes per branch): start it for the entries
        # this round will probably take, in parallel; screen() still decides one by one, in order.
        ahead = pending[: self.batch_size] if self.batch_size > 1 else []
        with ThreadPoolExecutor(max_workers=max(1, min(4, len(ahead)))) as pool:
            self._prefetched = {(e.id, base): pool.submit(self._look_job(e, base)) for e in ahead}
            try:
                for e in pending:
                    if len(batch) >= self.batch_size:
                        break
                    if self.screen(e, base):
                        batch.append(e)
            finally:
                self._prefetched = {}
        if batch:
            self.say(
                f"batch of {len(batch)}: {', '.join(e.worker for e in batch)} on {self.fac.main} {base[:10]}"
            )
            new_base = self.settle(base, batch, suite)
            if new_base == "moved":
                self.say(f"{self.fac.main} moved under the queue; rebuilding the batch")
            # What a settle left undecided (main moved mid-bisection, or it waited behind another
            # branch) goes back in line instead of staying "testing" until the queue restarts.
            for e in batch:
                now = store.queue_entry(e.id)
                if now is not None and now.state == "testing":
                    store.set_entry(e.id, state="queued")
        self._after_round()
        return True

    def _after_round(self) -> None:
        """Deltas move on: a merged branch's delta is merged; green acceptance on main starts its fold."""
        from supervisor import deltas

        try:
            deltas.after_round(self.fac, say=self.say)
        except FacError as e:  # a broken delta file must not stop the line for everyone
            self.say(f"  deltas: {e.message}")
            self.fac.store.event("delta-error", None, error=e.message)

    def _is_fix(self, e: QueueEntry) -> bool:
        w = self.fac.store.worker(e.worker)
        return w is not None and w.role in line.FIX_ROLES

    def _guards(self, e: QueueEntry, main_sha: str) -> guards.GuardReport:
        """A worker's branch: the built-in guards. The factory's fold of a delta: specs/ and nothing
        else. Both: the spec lint, for problems the branch would bring to main."""
        return self._guard_job(e, main_sha)()

    def _guard_job(self, e: QueueEntry, main_sha: str) -> Callable[[], guards.GuardReport]:
        """The guards of `e` as a job that only reads git (the store is read here, in the caller's thread)."""
        from supervisor import deltas, specs

        if deltas.is_factory_entry(self.fac, e):
            first = functools.partial(guards.factory_guards, self.root, main_sha, e.sha)
        else:
            writable = self._role_writable(e.worker, main_sha)
            first = functools.partial(guards.branch_guards, self.root, main_sha, e.sha, writable)
        return lambda: guards.GuardReport([*first().results, specs.lint_guard(self.fac, main_sha, e.sha)])

    def _look_job(self, e: QueueEntry, main_sha: str) -> Callable[[], _Look]:
        """screen()'s git reads for `e` as a job that touches no store (safe to run in a thread)."""
        guard = self._guard_job(e, main_sha)

        def look() -> _Look:
            if repo.rev_parse(self.root, e.sha) is None:
                return _Look(exists=False)
            if repo.is_ancestor(self.root, e.sha, main_sha):
                return _Look(exists=True, on_main=True)
            report = guard()
            merged = repo.merge_tree(self.root, main_sha, e.sha) if report.ok else None
            return _Look(exists=True, report=report, merged=merged)

        return look

    def screen(self, e: QueueEntry, main_sha: str) -> bool:
        """Per-branch gates that need no check run: already merged, guards, conflicts with main."""
        store = self.fac.store
        started = self._prefetched.pop((e.id, main_sha), None)
        look = started.result() if started is not None else self._look_job(e, main_sha)()
        if not look.exists:
            store.set_entry(e.id, state="cancelled", verdict={"reason": f"commit {e.sha} no longer exists"})
            store.event("cancelled", e.worker, correlation=f"q{e.id}", reason="commit missing")
            return False
        if look.on_main:
            self._mark_merged([e], main_sha, note="already on main")
            return False
        report = look.report
        assert report is not None
        if not report.ok:
            self._blame(e, None, Verdict(ok=False, results=report.results), main_sha, reason="guard")
            return False
        needs = approval_needed(self.fac, main_sha, e)
        if needs:
            self._hold(e, needs)
            return False
        merged = look.merged
        assert merged is not None
        if merged.tree is None:
            self._conflict(e, main_sha, merged.conflicts)
            return False
        return True

    def _role_writable(self, worker: str, main_sha: str) -> tuple[str, ...]:
        """role_writable, read from git once per (role, main) rather than once per branch screened."""
        w = self.fac.store.worker(worker)
        key = (w.role if w else "worker", main_sha)
        if key not in self._writable:
            if len(self._writable) > 64:
                self._writable.clear()
            self._writable[key] = role_writable(self.fac, worker, main_sha)
        return self._writable[key]

    def build(self, base: str, entries: list[QueueEntry]) -> tuple[Candidate, list[QueueEntry]]:
        """Merge entries onto base one by one; an entry that conflicts only with another entry waits."""
        cur, taken, deferred = base, [], []
        ident = repo.identity_env(self.root)  # once per candidate, not twice per merge commit
        for e in entries:
            merged = repo.merge_tree(self.root, cur, e.sha)
            if merged.tree is None:
                deferred.append(e)
                continue
            cur = repo.commit_tree(self.root, merged.tree, [cur, e.sha], candidate_message(e), env=ident)
            taken.append(e)
        return Candidate(base, cur, repo.tree_of(self.root, cur), tuple(taken)), deferred

    def settle(self, base: str, entries: list[QueueEntry], suite: Suite) -> str:
        """Test base+entries; merge what is green, bisect what is red. Returns the new main sha,
        or "moved" when main changed under the queue (the rest stays queued)."""
        cand, deferred = self.build(base, entries)
        for e in deferred:
            self.say(f"  {e.worker}: conflicts with another branch in the batch; waits for the next round")
        if not cand.entries:
            return base
        verdict = self.test(cand, suite)
        if verdict.ok:
            if not self._land(cand, verdict):
                return "moved"
            self.batch_size = min(self.max_batch, self.batch_size * 2)
            return cand.sha
        if len(cand.entries) == 1:
            return self.single(base, cand, verdict, suite)
        self.batch_size = max(1, self.batch_size // 2)
        return self.bisect(base, list(cand.entries), suite)

    def single(self, base: str, cand: Candidate, verdict: Verdict, suite: Suite) -> str:
        """A red single-branch candidate: run it again (a flaky check passes), else blame its owner."""
        e = cand.entries[0]
        for attempt in range(self.retries):
            self.say(f"  {e.worker}: red alone; retry {attempt + 1}/{self.retries} to rule out a flaky check")
            again = self.test(cand, suite, fresh=True)
            if again.ok:
                self.stats["flaky"] += 1
                self.fac.store.event("flaky", e.worker, correlation=f"q{e.id}", sha=cand.sha,
                                     failed=[r.name for r in verdict.failed()])  # fmt: skip
                if not self._land(cand, again):
                    return "moved"
                return cand.sha
        self._blame(e, cand, verdict, base, reason="red")
        return base

    def bisect(self, base: str, entries: list[QueueEntry], suite: Suite) -> str:
        """A red batch: binary search for its shortest red prefix, oldest first.

        Each green prefix merges as soon as it is known; the first culprit is blamed (after its
        retry); the entries after it stay queued and are tested together in the next round. One
        culprit among n costs about log2(n) runs, plus its retry and one run for the rest.
        """
        self.say(f"  red batch of {len(entries)}: searching for the first culprit")
        lo, hi = 0, len(entries)  # entries[:lo] are merged; base + entries[lo:hi] is known red
        while hi - lo > 1:
            mid = (lo + hi) // 2
            cand, deferred = self.build(base, entries[lo:mid])
            if deferred or not cand.entries:  # cannot happen for a prefix of a built batch; stay safe
                return base
            verdict = self.test(cand, suite)
            if verdict.ok:
                if not self._land(cand, verdict):
                    return "moved"
                base, lo = cand.sha, mid
            else:
                hi = mid
        cand, _ = self.build(base, entries[lo : lo + 1])
        verdict = self.test(cand, suite)  # the cache answers when this is the prefix that failed
        if verdict.ok:
            return cand.sha if self._land(cand, verdict) else "moved"
        return self.single(base, cand, verdict, suite)

    # --- running the gate ---

    def test(self, cand: Candidate, suite: Suite, *, fresh: bool = False) -> Verdict:
        store = self.fac.store
        ids = [e.id for e in cand.entries]
        with store.tx() as db:
            for qid in ids:
                db.execute("UPDATE queue SET state = 'testing', attempts = attempts + 1, updated_at = ? WHERE id = ?",
                           (time.time(), qid))  # fmt: skip
        if self.use_cache and not fresh:
            hit = store.cached_result(cand.tree, suite.hash)
            if hit is not None:
                ok, results = hit
                self.stats["cache_hits"] += 1
                store.record_run(cand.sha, cand.tree, "gate", None, ok, results, cached=True)
                self.say(
                    f"  candidate {cand.sha[:10]}: {'green' if ok else 'red'} (cached result for this tree)"
                )
                return Verdict(ok, [CheckResult.from_dict(r) for r in results], True, cand.sha, cand.tree)
        verdict = run_gate(self.fac, cand.sha, suite, self.parallel, base=cand.base, label=self._label())
        self.stats["check_runs"] += 1
        store.record_run(cand.sha, cand.tree, "gate", suite.hash if self.use_cache else None, verdict.ok,
                         [r.as_dict() for r in verdict.results], cached=False)  # fmt: skip
        store.event("candidate", None, sha=cand.sha, base=cand.base, entries=ids, ok=verdict.ok,
                    failed=[r.name for r in verdict.failed()])  # fmt: skip
        took = max((r.duration for r in verdict.results), default=0.0)
        self.say(
            f"  candidate {cand.sha[:10]} ({len(ids)} branch(es)): {'green' if verdict.ok else 'RED'} in {took:.1f}s"
        )
        return verdict

    def _label(self) -> str:
        self._seq += 1
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self._seq}"

    # --- outcomes ---

    def _land(self, cand: Candidate, verdict: Verdict) -> bool:
        if not move_main(self.fac, cand.base, cand.sha):
            for e in cand.entries:
                self.fac.store.set_entry(e.id, state="queued")
            return False
        self._mark_merged(list(cand.entries), cand.sha, note=f"batch of {len(cand.entries)}")
        if self.fac.config.queue.verify_main or line.get(self.fac).stopped:
            # The tested tree is main's tree now, so this is answered by the cache unless it was a fix.
            v = line.verify(self.fac, use_cache=self.use_cache)
            self.say(f"  verify {self.fac.main}: {'green' if v.ok else 'RED: the line stops'}")
        self.say(f"  {self.fac.main} -> {cand.sha[:10]}: merged {', '.join(e.worker for e in cand.entries)}")
        return True

    def _mark_merged(self, entries: list[QueueEntry], main_sha: str, note: str) -> None:
        store = self.fac.store
        sent: list[tuple[str, int]] = []
        with store.tx() as db:
            for e in entries:
                store.set_entry(
                    e.id, db=db, state="merged", merged_as=main_sha, verdict={"ok": True, "note": note}
                )
                store.update_worker(e.worker, db=db, state="merged", red_streak=0)
                store.event(
                    "merged", e.worker, correlation=f"q{e.id}", db=db, sha=e.sha, main=main_sha, note=note
                )
                if store.worker(e.worker):
                    body = (
                        f"[fac] MERGED: {e.branch} at {e.sha[:10]} is on {self.fac.main} ({main_sha[:10]})."
                    )
                    sent.append((e.worker, messages.store(self.fac, db, e.worker, body, sender="merge-queue",
                                                          kind="merged", correlation=f"q{e.id}")))  # fmt: skip
        self.stats["merged"] += len(entries)
        for worker, mid in sent:
            messages.deliver(self.fac, worker, mid)

    def _blame(self, e: QueueEntry, cand: Candidate | None, verdict: Verdict, base: str, reason: str) -> None:
        store = self.fac.store
        tested = cand.sha if cand else e.sha
        if cand:
            # Keep the red candidate reachable so `fac check --ref` can reproduce it later.
            repo.git(self.root, "update-ref", f"refs/fac/candidates/q{e.id}", cand.sha, check=False)
        failed = verdict.failed()
        what = "a guard" if reason == "guard" else "the gate"
        lines = [f"[fac] RED: {e.branch} at {e.sha[:10]} failed {what}"
                 + (f" on candidate {cand.sha[:10]} ({self.fac.main} {base[:10]} + your branch)." if cand else ".")]  # fmt: skip
        logs = [r.log for r in failed if r.log]
        # How to reproduce comes before the feedback, so it survives when the pane shows only the
        # head of a long message.
        if cand:
            lines.append(f"reproduce: fac check --ref {cand.sha} --stage gate")
        if logs:
            lines.append("full output: " + ", ".join(logs))
        for r in failed:
            how = (
                "timed out"
                if r.timed_out
                else f"exit {r.exit_code}"
                if r.exit_code is not None
                else "did not run"
            )
            lines.append(f"check {r.name} failed ({how}):")
            lines.extend(f"  {line}" for line in r.feedback.splitlines())
        lines.append("Fix it, commit, then `fac submit` again.")
        body = "\n".join(lines)
        compact = {"ok": False, "reason": reason, "tested": tested, "failed": [
            {"name": r.name, "exit_code": r.exit_code, "feedback": r.feedback, "log": r.log} for r in failed]}  # fmt: skip
        with store.tx() as db:
            store.set_entry(e.id, db=db, state="red", verdict=compact)
            store.update_worker(e.worker, db=db, state="red")
            store.event("red", e.worker, correlation=f"q{e.id}", db=db, sha=e.sha, tested=tested, reason=reason,
                        failed=[r.name for r in failed])  # fmt: skip
            mid = None
            if store.worker(e.worker):
                mid = messages.store(self.fac, db, e.worker, body, sender="merge-queue", kind="red",
                                     correlation=f"q{e.id}", full_log=logs[0] if logs else None)  # fmt: skip
        self.stats["red"] += 1
        self.say(f"  {e.worker}: RED ({', '.join(r.name for r in failed)}); routed to its inbox and pane")
        if mid is not None:
            messages.deliver(self.fac, e.worker, mid)
        self._count_red(e.worker)

    def _count_red(self, worker: str) -> None:
        """Andon: a branch that keeps coming back red is escalated to a human."""
        w = self.fac.store.worker(worker)
        if w is None:
            return
        streak = w.red_streak + 1
        self.fac.store.update_worker(worker, red_streak=streak)
        limit = self.fac.config.supervisor.red_limit
        if streak >= limit and not w.question:
            from supervisor import andon

            andon.ask(self.fac, worker, f"{w.branch} came back red or conflicting {streak} times in a row; "
                      "it needs a human's look", by="merge-queue")  # fmt: skip
            self.say(f"  {worker}: red {streak} times in a row: andon cord pulled (needs-human)")

    def _hold(self, e: QueueEntry, paths: list[str]) -> None:
        """A human gate: the entry waits, untested, until `fac approve` names its commit."""
        store = self.fac.store
        body = (f"[fac] HELD: {e.branch} at {e.sha[:10]} changes paths that need a human's approval:\n"
                + "\n".join(f"  {p}" for p in paths[:20])
                + f"\nIt waits in the queue until a human runs `fac approve {e.branch}`.")  # fmt: skip
        with store.tx() as db:
            store.set_entry(
                e.id, db=db, state="held", verdict={"ok": False, "reason": "approval", "paths": paths}
            )
            store.event("held", e.worker, correlation=f"q{e.id}", db=db, sha=e.sha, paths=paths)
            mid = messages.store(self.fac, db, e.worker, body, sender="merge-queue", kind="held",
                                 correlation=f"q{e.id}") if store.worker(e.worker) else None  # fmt: skip
        self.say(f"  {e.worker}: HELD for approval ({', '.join(paths[:3])})")
        if mid is not None:
            messages.deliver(self.fac, e.worker, mid)

    def _conflict(self, e: QueueEntry, main_sha: str, paths: tuple[str, ...]) -> None:
        store = self.fac.store
        body = "\n".join(
            [f"[fac] CONFLICT: {e.branch} at {e.sha[:10]} does not merge cleanly with {self.fac.main} {main_sha[:10]}.",
             "conflicting paths:", *[f"  {p}" for p in paths],
             f"Merge {self.fac.main} into your branch (git merge {self.fac.main}), resolve, commit, then `fac submit`."]
        )  # fmt: skip
        with store.tx() as db:
            store.set_entry(
                e.id,
                db=db,
                state="conflict",
                verdict={"ok": False, "reason": "conflict", "paths": list(paths)},
            )
            store.update_worker(e.worker, db=db, state="conflict")
            store.event(
                "conflict",
                e.worker,
                correlation=f"q{e.id}",
                db=db,
                sha=e.sha,
                main=main_sha,
                paths=list(paths),
            )
            mid = None
            if store.worker(e.worker):
                mid = messages.store(self.fac, db, e.worker, body, sender="merge-queue", kind="conflict",
                                     correlation=f"q{e.id}")  # fmt: skip
        self.stats["conflict"] += 1
        self.say(f"  {e.worker}: CONFLICT in {', '.join(paths)}; routed to its inbox and pane")
        if mid is not None:
            messages.deliver(self.fac, e.worker, mid)
        self._count_red(e.worker)


@functools.lru_cache(maxsize=64)
def _approval_globs(root: Path, main_sha: str) -> tuple[str, ...]:
    """`[queue] approval_paths` as main's config has it (a commit's content never changes: cacheable)."""
    from supervisor import config as configmod

    text = repo.show_file(root, main_sha, configmod.CONFIG_NAME) or ""
    try:
        return tuple(configmod.parse(text, default_name=root.name).queue.approval_paths)
    except FacError:
        return ()


def approval_needed(fac: Factory, main_sha: str, e: QueueEntry) -> list[str]:
    """Paths of the entry that match `[queue] approval_paths` (main's config), unless its commit is approved."""
    globs = _approval_globs(fac.root, main_sha)
    if not globs:
        return []
    base = repo.merge_base(fac.root, main_sha, e.sha) or main_sha
    changed = [p for _s, p in repo.changed_paths(fac.root, base, e.sha)]
    hits = [p for p in changed if p not in guards.scope_violations([p], globs)]
    if not hits:
        return []
    approved = any(
        ev.kind == "approved" and ev.payload.get("sha") == e.sha for ev in fac.store.events(worker=e.worker)
    )
    return [] if approved else hits


def approve(fac: Factory, branch_or_worker: str, by: str = "human") -> list[int]:
    """`fac approve`: the human gate. Approves the held (or queued) head of a branch and requeues it."""
    branch = branch_or_worker if branch_or_worker.startswith("fac/") else f"fac/{branch_or_worker}"
    entries = [e for e in fac.store.queue(("held", "queued")) if e.branch == branch]
    if not entries:
        raise FacError(f"nothing of {branch} waits for approval", hint="`fac queue` lists held entries")
    with fac.store.tx() as db:
        for e in entries:
            fac.store.event("approved", e.worker, correlation=f"q{e.id}", db=db, sha=e.sha, by=by)
            if e.state == "held":
                fac.store.set_entry(e.id, db=db, state="queued")
    return [e.id for e in entries]


def run_gate(
    fac: Factory, sha: str, suite: Suite, parallel: int, *, base: str | None = None, label: str | None = None
) -> Verdict:
    """Run the gate stage of `suite` on commit `sha` in a throw-away detached worktree."""
    root = fac.root
    label = label or f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    with worktrees.detached(root, fac.fac_dir / "tmp" / f"cand-{sha[:10]}-{label}", sha) as wt:
        log_dir = fac.fac_dir / "logs" / "checks" / f"{sha[:12]}-{label}"
        from supervisor import junit, observations

        # Pytest checks also report per test (junit): `fac state` and delta acceptance read that.
        gate, reports = junit.instrument(suite.for_stage("gate"), wt)
        extra: list[Callable[[], CheckResult]] = [
            functools.partial(count_guard, fac, c, wt, base) for c in gate if base and _is_pytest(c)
        ]
        results = checks.run_suite(gate, wt, "gate", parallel=parallel, log_dir=log_dir, extra=extra,
                                   sandbox=sandbox.detect(root))  # fmt: skip
        observations.record(fac, repo.tree_of(root, sha), suite.hash, results, reports, only_reports=True)
    return Verdict(checks.suite_ok(results), results, False, sha, repo.tree_of(root, sha))


def _is_pytest(c: Any) -> bool:
    try:
        return guards.collect_argv(checks.argv_of(c)) is not None
    except FacError:
        return False


def count_guard(fac: Factory, check: Any, workdir: Path, base: str) -> CheckResult:
    """no-weakening: the candidate collects at least as many tests as `base` (main) for a pytest check."""
    name = f"guard:test-count:{check.name}"
    start = time.monotonic()
    argv = guards.collect_argv(checks.argv_of(check)) or []
    env = checks.check_env(workdir, "gate", check)
    # Main's count, when not remembered, needs its own worktree and collection: do it alongside the
    # candidate's collection rather than after it (it was the gate's critical path on a fresh queue).
    # Only that thread touches the store until it is joined.
    with ThreadPoolExecutor(max_workers=1) as pool:
        wanted = pool.submit(main_count, fac, check, base)
        have = guards.collected_count(argv, workdir / check.cwd, env, check.timeout)
        want = wanted.result()
    dur = round(time.monotonic() - start, 3)
    if have is not None:
        _remember_count(fac, _tree_at(workdir), check.name, have)
    if have is None or want is None or have >= want:
        return CheckResult(name, True, 0, dur, "", f"collected {have} (main: {want})")
    return CheckResult(
        name, False, 1, dur,
        f"{check.name}: the candidate collects {have} tests, {fac.main} collects {want}: {want - have} test(s) "
        "disappeared (deleted, renamed away, deselected or skipped at collection).\n"
        "fix: keep every test; fix the code instead",
        f"collected {have} (main: {want})",
    )  # fmt: skip


def _tree_at(workdir: Path) -> str:
    return repo.git(workdir, "rev-parse", "HEAD^{tree}")


def _count_key(check_name: str) -> str:
    return f"collect:{check_name}"


def _remember_count(fac: Factory, tree: str, check_name: str, n: int) -> None:
    import json

    with fac.store.tx() as db:
        db.execute(
            "INSERT OR REPLACE INTO check_cache (tree, suite, ok, results, ts) VALUES (?, ?, 1, ?, ?)",
            (tree, _count_key(check_name), json.dumps({"count": n}), time.time()),
        )


def main_count(fac: Factory, check: Any, base: str) -> int | None:
    """Collected tests on `base`: remembered from when it was a candidate, else collected once now."""
    import json

    tree = repo.tree_of(fac.root, base)
    row = fac.store.db.execute(
        "SELECT results FROM check_cache WHERE tree = ? AND suite = ?", (tree, _count_key(check.name))
    ).fetchone()
    if row:
        return int(json.loads(row[0])["count"])
    wt_path = fac.fac_dir / "tmp" / f"count-{base[:10]}-{os.getpid()}-{time.monotonic_ns()}"
    with worktrees.detached(fac.root, wt_path, base) as wt:
        argv = guards.collect_argv(checks.argv_of(check)) or []
        n = guards.collected_count(argv, wt / check.cwd, checks.check_env(wt, "gate", check), check.timeout)
    if n is not None:
        _remember_count(fac, tree, check.name, n)
    return n


def move_main(fac: Factory, old: str, new: str) -> bool:
    """Compare-and-swap main from `old` to `new`, carrying the human's checkout along when it is on main.

    A checkout of main whose local edits do not touch what changed is fast-forwarded (edits kept);
    one whose edits would be overwritten is detached at `old` first, so nothing of the human's is
    touched and `fac status` says main moved ahead.
    """
    root = fac.root
    on_main = repo.current_branch(root) == fac.main
    can_ff = False
    if on_main:
        dry = subprocess.run(["git", "read-tree", "-n", "-m", "-u", old, new], cwd=root, capture_output=True)
        can_ff = dry.returncode == 0
        if not can_ff:
            repo.git(root, "update-ref", "--no-deref", "HEAD", old)
    if not repo.update_ref_cas(root, f"refs/heads/{fac.main}", new, old):
        if on_main and not can_ff:
            repo.git(root, "symbolic-ref", "HEAD", f"refs/heads/{fac.main}")
        return False
    if on_main and can_ff:
        done = subprocess.run(["git", "read-tree", "-m", "-u", old, new], cwd=root, capture_output=True)
        if done.returncode != 0:  # the human edited in between: leave their files, detach at old
            repo.git(root, "update-ref", "--no-deref", "HEAD", old)
            can_ff = False
    if on_main and not can_ff:
        fac.store.event("checkout-detached", None, old=old, new=new,
                        reason="local edits overlap files main changed")  # fmt: skip
    return True


def queue_rows(fac: Factory, all_entries: bool = False) -> list[dict[str, Any]]:
    states = None if all_entries else ("queued", "testing", "held", "red", "conflict", "merged")
    rows = []
    for e in fac.store.queue(states):
        v = e.verdict or {}
        if not v:
            last = ""
        elif v.get("ok"):
            last = "green" + (f" ({v['note']})" if v.get("note") else "")
        elif v.get("failed"):
            last = "red: " + ", ".join(f["name"] for f in v["failed"])
        else:
            last = str(v.get("reason", "red")) + (f": {', '.join(v['paths'])}" if v.get("paths") else "")
        rows.append({"id": e.id, "worker": e.worker, "branch": e.branch, "sha": e.sha, "state": e.state,
                     "attempts": e.attempts, "submitted_at": e.submitted_at, "updated_at": e.updated_at,
                     "last_verdict": last, "merged_as": e.merged_as, "verdict": e.verdict})  # fmt: skip
    return rows
