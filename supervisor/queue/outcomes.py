"""Where each result of the queue goes: main moves (land), and the owner of every entry hears of it
(merged, red with the evidence, held for a human, conflicting paths), in the store, its inbox and
its pane. A branch that keeps coming back red pulls the andon cord."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from supervisor import andon, line, messages, repo
from supervisor.checks import Verdict
from supervisor.factory import Factory
from supervisor.mainline import move_main
from supervisor.model import QueueEntry
from supervisor.queue.candidates import Candidate


class Outcomes:
    """The queue's effects for one factory; `stats` counts merged, red and conflict."""

    def __init__(
        self, fac: Factory, say: Callable[[str], None], stats: Counter[str], use_cache: bool
    ) -> None:
        self.fac = fac
        self.root = fac.root
        self.say = say
        self.stats = stats
        self.use_cache = use_cache

    def land(self, cand: Candidate) -> bool:
        """Move main to the tested candidate; False (its entries back in line) when main moved under us."""
        if not move_main(self.fac, cand.base, cand.sha):
            for e in cand.entries:
                self.fac.store.requeue(e.id)
            return False
        self.merged(list(cand.entries), cand.sha, note=f"batch of {len(cand.entries)}")
        if self.fac.config.queue.verify_main or line.get(self.fac).stopped:
            # The tested tree is main's tree now, so this is answered by the cache unless it was a fix.
            v = line.verify(self.fac, use_cache=self.use_cache)
            self.say(f"  verify {self.fac.main}: {'green' if v.ok else 'RED: the line stops'}")
        self.say(f"  {self.fac.main} -> {cand.sha[:10]}: merged {', '.join(e.worker for e in cand.entries)}")
        return True

    def merged(self, entries: list[QueueEntry], main_sha: str, note: str) -> None:
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
                    mid = messages.store(
                        self.fac,
                        db,
                        e.worker,
                        body,
                        sender="merge-queue",
                        kind="merged",
                        correlation=f"q{e.id}",
                    )
                    sent.append((e.worker, mid))
        self.stats["merged"] += len(entries)
        for worker, mid in sent:
            messages.deliver(self.fac, worker, mid)

    def blame(
        self,
        e: QueueEntry,
        cand: Candidate | None,
        verdict: Verdict,
        base: str,
        reason: str,
        holds: tuple[str, ...] = (),
    ) -> None:
        """Red: the owner gets the failed checks, the tested commit and how to reproduce it (and, for a
        guard, what else will wait for a human, so one round tells everything)."""
        tested = cand.sha if cand else e.sha
        if cand:
            # Keep the red candidate reachable so `fac check --ref` can reproduce it later.
            repo.git(self.root, "update-ref", f"refs/fac/candidates/q{e.id}", cand.sha, check=False)
        failed = verdict.failed()
        what = "a guard" if reason == "guard" else "the gate"
        on = f" on candidate {cand.sha[:10]} ({self.fac.main} {base[:10]} + your branch)." if cand else "."
        lines = [f"[fac] RED: {e.branch} at {e.sha[:10]} failed {what}" + on]
        logs = [r.log for r in failed if r.log]
        # How to reproduce comes before the feedback, so it survives when the pane shows only the
        # head of a long message.
        if cand:
            lines.append(f"reproduce: fac check --ref {cand.sha} --stage gate")
        ran = verdict.ran if verdict.ran and verdict.ran[0] != "local" else None
        if ran:
            # Its logs were on the worker's host: the verdict brought their end back, kept here.
            lines.append(f"ran on the {ran[0]} worker {ran[1]}; its output was copied to this host")
        if logs:
            lines.append(full_output_line(logs, verdict.cached))
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
        if holds:
            lines.append("also, once the guards pass, a human must approve (`fac approve`):")
            lines.extend(f"  {h}" for h in holds)
        lines.append("Fix it, commit, then `fac submit` again.")
        body = "\n".join(lines)
        compact = {
            "ok": False,
            "reason": reason,
            "tested": tested,
            "executor": ran[0] if ran else "local",
            "executor_worker": ran[1] if ran else None,
            "failed": [
                {
                    "name": r.name,
                    "exit_code": r.exit_code,
                    "feedback": r.feedback,
                    "log": r.log,
                    "waivable": list(r.waivable),
                }
                for r in failed
            ],
        }
        self._route(
            e,
            "red",
            compact,
            body,
            full_log=logs[0] if logs else None,
            tested=tested,
            reason=reason,
            failed=[r.name for r in failed],
            executor_worker=ran[1] if ran else None,
        )
        self.stats["red"] += 1
        self.say(f"  {e.worker}: RED ({', '.join(r.name for r in failed)}); routed to its inbox and pane")
        self._count_red(e.worker)

    def _route(
        self,
        e: QueueEntry,
        state: Literal["red", "conflict", "held"],
        verdict: dict[str, Any],
        body: str,
        *,
        full_log: str | None = None,
        **payload: Any,
    ) -> None:
        """One outcome, in one transaction: the entry's state and verdict, the worker's state (a hold
        leaves it), the event, and the owner's message; then the message goes to its pane."""
        store = self.fac.store
        with store.tx() as db:
            store.set_entry(e.id, db=db, state=state, verdict=verdict)
            if state != "held":
                store.update_worker(e.worker, db=db, state=state)
            store.event(state, e.worker, correlation=f"q{e.id}", db=db, sha=e.sha, **payload)
            mid = None
            if store.worker(e.worker):
                mid = messages.store(
                    self.fac,
                    db,
                    e.worker,
                    body,
                    sender="merge-queue",
                    kind=state,
                    correlation=f"q{e.id}",
                    full_log=full_log,
                )
        if mid is not None:
            messages.deliver(self.fac, e.worker, mid)

    def _count_red(self, worker: str) -> None:
        """Andon: a branch that keeps coming back red is escalated to a human."""
        w = self.fac.store.worker(worker)
        if w is None:
            return
        streak = w.red_streak + 1
        self.fac.store.update_worker(worker, red_streak=streak)
        limit = self.fac.config.supervisor.red_limit
        if streak >= limit and not w.question:
            andon.ask(
                self.fac,
                worker,
                f"{w.branch} came back red or conflicting {streak} times in a row; it needs a human's look",
                by="merge-queue",
            )
            self.say(f"  {worker}: red {streak} times in a row: andon cord pulled (needs-human)")

    def hold(self, e: QueueEntry, reasons: list[str]) -> None:
        """A human gate: the entry waits, untested, until `fac approve` names its commit. Each reason
        is `path: why` (test infrastructure, or a match of `[queue] approval_paths`)."""
        paths = list(dict.fromkeys(r.split(": ", 1)[0] for r in reasons))
        shown = reasons[:20] + ([f"... and {len(reasons) - 20} more"] if len(reasons) > 20 else [])
        body = "\n".join(
            [
                f"[fac] HELD: {e.branch} at {e.sha[:10]} changes what only a human may change:",
                *[f"  {r}" for r in shown],
                "rule: test infrastructure (conftest.py, pytest configuration and its options, "
                ".gitattributes) and `[queue] approval_paths` are for humans: a branch never changes "
                "how it is judged.",
                f"It waits in the queue, untested, until a human runs `fac approve {e.branch}`. To merge "
                "without one, revert these changes: put tests and their fixtures in test_*.py files.",
            ]
        )
        verdict = {"ok": False, "reason": "approval", "paths": paths, "why": reasons}
        self._route(e, "held", verdict, body, paths=paths, why=reasons)
        self.say(f"  {e.worker}: HELD for approval: {'; '.join(reasons[:3])}")

    def conflict(self, e: QueueEntry, main_sha: str, paths: tuple[str, ...]) -> None:
        main = self.fac.main
        body = "\n".join(
            [
                f"[fac] CONFLICT: {e.branch} at {e.sha[:10]} does not merge cleanly with {main} "
                f"{main_sha[:10]}.",
                "conflicting paths:",
                *[f"  {p}" for p in paths],
                f"Merge {main} into your branch (git merge {main}), resolve, commit, then `fac submit`.",
            ]
        )
        verdict = {"ok": False, "reason": "conflict", "paths": list(paths)}
        self._route(e, "conflict", verdict, body, main=main_sha, paths=list(paths))
        self.stats["conflict"] += 1
        self.say(f"  {e.worker}: CONFLICT in {', '.join(paths)}; routed to its inbox and pane")
        self._count_red(e.worker)


def full_output_line(logs: list[str], cached: bool) -> str:
    """Where a red verdict's full output is. A verdict from the cache was judged on an earlier run of
    the same tree (another candidate, maybe another branch): its logs are that run's, and say so."""
    if not cached:
        return "full output: " + ", ".join(logs)
    return (
        "full output (this verdict came from the cache: the same tree failed before, and these logs are"
        " that earlier run's, not a run of this candidate): " + ", ".join(logs)
    )
