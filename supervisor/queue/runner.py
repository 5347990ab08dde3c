"""The merge queue's process loop: it wires the planner's decisions to their effects.

Oldest first, a batch of submitted heads is screened, merged onto main without a worktree
(`candidates`), judged by the gate (`supervisor.gate`), and on green main moves to exactly the
tested commit (`outcomes`, through `supervisor.mainline`). A red batch is searched for its first
culprit (`planner.Search`; the gate's cache makes re-testing a known tree free); the others merge.

With `[executor] slots` above 1 the queue is a speculative pipeline (`speculation` decides): up to
`slots` candidates are under test at once, each built on the one before it, landing in order; a
red one cancels everything built on it (those entries go back in line, never blamed) and is
searched with several probes at once.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from supervisor import checks, deltas, env, executors, gate, health, line, locks, mainline, repo, wake
from supervisor.checks import CheckResult, Suite, Verdict
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.model import QueueEntry
from supervisor.queue import candidates, planner, screening, speculation
from supervisor.queue.candidates import Candidate
from supervisor.queue.outcomes import Outcomes


class QueueLocked(FacError):
    pass


@dataclass(frozen=True)
class Settled:
    """How settling a batch ended: `main` is where the queue last put main (or the base it started
    from); `moved` says main changed under the queue, and what was not decided goes back in line."""

    main: str
    moved: bool = False


@dataclass
class Flight:
    """A candidate under test in one of the executor's slots (speculative: its base may be another
    candidate still under test)."""

    cand: Candidate
    suite: Suite
    future: Future[Verdict]
    cancel: checks.Cancel
    started: float
    ended: list[float] = field(default_factory=list)  # set once, from the thread that ran it


NO_CHECKS = (
    "no gate checks: nothing would be tested "
    "(add a [checks.NAME] on main, or set [queue] allow_no_checks = true)"
)


class MergeQueue:
    def __init__(
        self,
        fac: Factory,
        *,
        max_batch: int | None = None,
        retries: int | None = None,
        use_cache: bool = True,
        say: Callable[[str], None] | None = None,
        keep: tuple[str, ...] = (),
        slots: int | None = None,
    ) -> None:
        """`keep`: fac's own windows to bring back when they die (in its window: the supervisor's).
        `slots`: candidates under test at once (default `[executor] slots`; 1: one at a time)."""
        self.fac = fac
        self.root = fac.root
        self.keepers = [health.Keeper(fac, name, by="merge-queue") for name in keep]
        cfg = fac.config.queue
        self.max_batch = max_batch or cfg.max_batch
        self.batch_size = self.max_batch
        self.retries = cfg.retries if retries is None else retries
        self.parallel = cfg.parallel
        self.slots = slots or fac.config.executor.slots
        self.use_cache = use_cache
        self.say = say or (lambda _msg: None)
        self.stats: Counter[str] = Counter()
        self.main_ref = f"refs/heads/{fac.main}"
        self.outcomes = Outcomes(fac, self.say, self.stats, use_cache)
        self.screener = screening.Screener(fac)
        self._lock_fd: int | None = None
        self._seq = itertools.count(1)
        self._stats_lock = threading.Lock()
        self.chain: list[Flight] = []  # the speculative pipeline, oldest (built on main) first
        self._pool: ThreadPoolExecutor | None = None
        self._durations: list[float] = []  # wall times of the pipeline's gate runs, for `typical`
        self._screened: set[tuple[int, str]] = set()  # (entry, main) screened clean, waiting for a slot
        self._seen: tuple[int, float] = (-1, 0.0)  # the store's data_version last looked at, and until when
        self._said_stopped = False
        self._held_on: str | None = None  # main's sha the queue is holding on (no gate checks)
        self._said_env: str | None = None
        self._prefetched: dict[tuple[int, str], Future[screening.Look]] = {}
        self._said_sync: str | None = None
        self.executor = executors.for_factory(fac)  # a Dask client connects on its first candidate

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
            if store.requeue(e.id) == "queued":
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
            # A submit writes the store (its WAL in .fac/): inotify wakes the idle queue at once.
            watcher = None if once else wake.watch([self.fac.fac_dir])
            if watcher is not None and not watcher.active:
                self.say(f"no inotify ({watcher.reason}): polling the store every 0.2 s instead")
            try:
                while not (should_stop and should_stop()):
                    self.keep_alive()
                    if self.step():
                        continue
                    if once:
                        break
                    if watcher is not None and watcher.active:
                        watcher.event.wait(2.0)  # the 2 s tick is a safety net
                        watcher.event.clear()
                    else:
                        time.sleep(0.2)
            finally:
                if watcher is not None:
                    watcher.stop()
                self._stop_pipeline()
                self.executor.close()
        finally:
            self.unlock()
        return self.stats

    def keep_alive(self) -> None:
        for keeper in self.keepers:
            try:
                note = keeper.check()
            except FacError as e:  # tmux briefly unavailable: try again next time round
                note = f"could not check {health.WHAT[keeper.name]}: {e.message}"
            if note:
                self.say(note)

    # --- one round ---

    def step(self) -> bool:
        """Take the next batch and settle it. False when nothing was pending."""
        if self.slots > 1:
            return self.pipeline_step()
        store = self.fac.store
        # The system's environment first: a change to project-container/ on main is built before the
        # next gate run, outside it; one that does not build stops the line and waits for a human.
        if not self._environment_ready() or not self._executor_ready():
            return False
        took = self._take()
        if took is None:
            return False
        pending, base, suite = took
        batch: list[QueueEntry] = []
        # Screening is read-only git work (about 20 processes per branch): start it for the entries
        # this round will probably take, in parallel; screen() still decides one by one, in order.
        ahead = planner.prefetch(pending, self.batch_size)
        with ThreadPoolExecutor(max_workers=max(1, min(4, len(ahead)))) as pool:
            self._prefetched = {(e.id, base): pool.submit(self.screener.look_job(e, base)) for e in ahead}
            try:
                for e in pending:
                    if planner.batch_full(len(batch), self.batch_size):
                        break
                    if self.screen(e, base):
                        batch.append(e)
            finally:
                self._prefetched = {}
        if batch:
            self.say(
                f"batch of {len(batch)}: {', '.join(e.worker for e in batch)} on {self.fac.main} {base[:10]}"
            )
            try:
                if self.settle(base, batch, suite).moved:
                    self.say(f"{self.fac.main} moved under the queue; rebuilding the batch")
            except env.EnvBuildFailed as err:  # main's project-container/ changed mid-round
                line.env_failed(self.fac, err)
                self.say(f"  {err.message}: the batch waits (not a red verdict)")
            except executors.Unavailable as err:  # no verdict: nobody is blamed, the batch waits
                self.say(f"  {err.message}: the batch waits (not a red verdict); {err.hint}")
                store.event("executor-unavailable", None, error=err.message, entries=[e.id for e in batch])
            # What a settle left undecided (main moved mid-search, or it waited behind another
            # branch) goes back in line instead of staying "testing" until the queue restarts.
            for e in batch:
                now = store.queue_entry(e.id)
                if now is not None and now.state == "testing":
                    store.requeue(e.id)
        self._after_round()
        return True  # after an executor failure, the next round waits for its backoff

    def _synced(self) -> bool:
        """The local main follows the remote's; False (said once) while it cannot (a human decides)."""
        synced = mainline.sync(self.fac)
        if synced.ok:
            self._said_sync = None
            return True
        why = synced.why(self.fac)
        if why != self._said_sync:
            self._said_sync = why
            self.say(f"holding: {why}")
            self.fac.store.event("queue-held", None, reason=why, main=synced.local, remote=synced.remote)
        return False

    def _take(self) -> tuple[list[QueueEntry], str, Suite] | None:
        """What a round may take: the eligible pending entries, main's sha and main's suite. None when
        nothing is pending, or every entry is held (main has no gate check)."""
        store = self.fac.store
        # [factory] remote: the remote's main is the truth; before a round, fetch it and follow it
        # (what someone else pushed there is then an outside move, judged just below).
        if self.fac.config.remote is not None and store.queue(("queued",)) and not self._synced():
            return None
        # Main moves only through fac: a move by anything else is judged before anything builds on it.
        line.judge_outside_move(self.fac, say=self.say)
        pending = store.queue(("queued",))
        # Jidoka: while main is red only fixes merge; everyone else waits instead of being blamed.
        stopped = bool(pending) and line.get(self.fac).stopped
        pending = planner.eligible(pending, line_stopped=stopped, is_fix=self._is_fix)
        if stopped and not pending and not self._said_stopped:
            self.say("line STOPPED (main is red): only fixes merge; `fac line` says why")
        self._said_stopped = stopped
        if not pending:
            return None
        base = repo.rev_parse(self.root, self.main_ref)
        if base is None:
            raise FacError(
                f"branch {self.fac.main} does not exist", hint="check [factory] main in factory.toml"
            )
        suite = checks.suite_from_rev(self.root, base, self.fac.fac_dir / "suites")
        if planner.hold_for_no_checks(len(suite.for_stage("gate")), self.fac.config.queue.allow_no_checks):
            # Zero checks would call anything green: hold every entry until main has a gate check.
            if self._held_on != base:
                self._held_on = base
                self.say(f"holding {len(pending)} entr{'y' if len(pending) == 1 else 'ies'}: {NO_CHECKS}")
                store.event("queue-held", None, reason=NO_CHECKS, main=base, entries=[e.id for e in pending])
            return None
        self._held_on = None
        return pending, base, suite

    def _environment_ready(self) -> bool:
        """Build main's environment when it changed; False (said once) while it does not build."""
        built = line.ensure_env(self.fac, say=self.say)
        if built is None:
            err = env.failure(self.fac)
            if err is not None and err.hash != self._said_env:
                self._said_env = err.hash
                self.say(f"line STOPPED: {err.message}; log: {err.log}. Nobody is blamed; {err.hint}")
            return False
        self._said_env = None
        return True

    def _executor_ready(self) -> bool:
        """False while the executor backs off after a failure (`executors.wait`): nothing starts."""
        return executors.wait(self.executor, time.time()) <= 0

    def _after_round(self) -> None:
        """Deltas move on: a merged branch's delta is merged; green acceptance on main starts its fold."""
        try:
            deltas.after_round(self.fac, say=self.say)
        except FacError as e:  # a broken delta file must not stop the line for everyone
            self.say(f"  deltas: {e.message}")
            self.fac.store.event("delta-error", None, error=e.message)

    def _is_fix(self, e: QueueEntry) -> bool:
        w = self.fac.store.worker(e.worker)
        return w is not None and w.role in line.FIX_ROLES

    def screen(self, e: QueueEntry, main_sha: str) -> bool:
        """Per-branch gates that need no check run: already merged, guards, conflicts with main."""
        store = self.fac.store
        started = self._prefetched.pop((e.id, main_sha), None)
        look = started.result() if started is not None else self.screener.look_job(e, main_sha)()
        if not look.exists:
            store.set_entry(e.id, state="cancelled", verdict={"reason": f"commit {e.sha} no longer exists"})
            store.event("cancelled", e.worker, correlation=f"q{e.id}", reason="commit missing")
            return False
        if look.on_main:
            self.outcomes.merged([e], main_sha, note="already on main")
            return False
        report = look.report
        assert report is not None
        if not report.ok:
            # Every guard's problem at once, and what will need a human after: one round tells all.
            verdict = Verdict(ok=False, results=report.results)
            self.outcomes.blame(e, None, verdict, main_sha, reason="guard", holds=report.holds)
            return False
        needs = screening.approval_needed(self.fac, main_sha, e, report.holds)
        if needs:
            self.outcomes.hold(e, needs)
            return False
        merged = look.merged
        assert merged is not None
        if merged.tree is None:
            self.outcomes.conflict(e, main_sha, merged.conflicts)
            return False
        return True

    def settle(self, base: str, entries: list[QueueEntry], suite: Suite) -> Settled:
        """Test base+entries; merge what is green, search what is red."""
        cand, deferred = candidates.build(self.root, base, entries)
        for e in deferred:
            self.say(f"  {e.worker}: conflicts with another branch in the batch; waits for the next round")
        if not cand.entries:
            return Settled(base)
        verdict = self.test(cand, suite)
        after = planner.after_batch(len(cand.entries), verdict.ok)
        if after is planner.After.LAND:
            if not self.outcomes.land(cand):
                return Settled(base, moved=True)
            self.batch_size = planner.resize(self.batch_size, self.max_batch, after)
            return Settled(cand.sha)
        if after is planner.After.RETRY:
            return self.single(base, cand, verdict, suite)
        self.batch_size = planner.resize(self.batch_size, self.max_batch, after)
        return self.search(base, list(cand.entries), suite)

    def single(self, base: str, cand: Candidate, verdict: Verdict, suite: Suite) -> Settled:
        """A red single-branch candidate: run it again (a flaky check passes), else blame its owner."""
        e = cand.entries[0]
        step, latest = self._retry(cand, verdict, suite)
        if step is planner.Alone.FLAKY:
            self.stats["flaky"] += 1
            self.fac.store.event(
                "flaky",
                e.worker,
                correlation=f"q{e.id}",
                sha=cand.sha,
                failed=[r.name for r in verdict.failed()],
            )
            return self._landed(cand)
        # Blamed with the latest run: after a fresh retry, its logs are this candidate's own, not those
        # of the earlier run of the same tree that the cache answered for.
        self.outcomes.blame(e, cand, latest, base, reason="red")
        return Settled(base)

    def _retry(self, cand: Candidate, verdict: Verdict, suite: Suite) -> tuple[planner.Alone, Verdict]:
        """Fresh reruns of a red single candidate until one passes or every allowed one failed
        (`speculation.retries_now`): one after another with one slot, several at once with more."""
        e = cand.entries[0]
        reruns: list[bool] = []
        latest = verdict
        retryable = all(r.retryable for r in verdict.failed())
        while not isinstance(
            n := speculation.retries_now(self.retries, reruns, self.slots, retryable=retryable), planner.Alone
        ):
            if self.slots == 1:
                what = f"retry {len(reruns) + 1}/{self.retries} to rule out a flaky check"
            else:
                what = f"{n} retr{'y' if n == 1 else 'ies'} at once (a flaky check?)"
            self.say(f"  {e.worker}: red alone; {what}")
            got = self._run_all([(cand, True)] * n, suite)
            reruns += [v.ok for v in got]
            latest = next((v for v in got if v.ok), got[-1])
        return n, latest

    def search(self, base: str, entries: list[QueueEntry], suite: Suite) -> Settled:
        """A red batch: binary search for its shortest red prefix, oldest first (`planner.Search`).

        Each green prefix merges as soon as it is known; the first culprit is blamed (after its
        retries); the entries after it stay queued and are tested together in the next round.
        """
        self.say(f"  red batch of {len(entries)}: searching for the first culprit")
        search = planner.Search.over(len(entries))
        while not (probe := search.probe()).last:
            cand, deferred = candidates.build(self.root, base, entries[probe.lo : probe.hi])
            if deferred or not cand.entries:  # cannot happen for a prefix of a built batch; stay safe
                return Settled(base)
            verdict = self.test(cand, suite)
            if verdict.ok:
                if not self.outcomes.land(cand):
                    return Settled(base, moved=True)
                base = cand.sha
            search = search.after(verdict.ok)
        cand, _ = candidates.build(self.root, base, entries[probe.lo : probe.hi])
        verdict = self.test(cand, suite)  # the cache answers when this is the prefix that failed
        if verdict.ok:
            return self._landed(cand)
        return self.single(base, cand, verdict, suite)

    def _landed(self, cand: Candidate) -> Settled:
        return Settled(cand.sha) if self.outcomes.land(cand) else Settled(cand.base, moved=True)

    # --- running the gate ---

    def test(
        self,
        cand: Candidate,
        suite: Suite,
        *,
        fresh: bool = False,
        cancel: checks.Cancel | None = None,
        mark: bool = True,
    ) -> Verdict:
        """The gate's verdict on a candidate (a `fresh` one ignores the cache), counted and told.
        Safe to call from several threads at once; `cancel` stops it (`checks.Cancelled`). `mark`:
        put its entries under test (the pipeline did already, before the thread started)."""
        store = self.fac.store
        ids = [e.id for e in cand.entries]
        if mark:
            store.start_testing(ids)
        running: list[str] = []
        lock = threading.Lock()

        def progress(name: str, result: CheckResult | None) -> None:
            with lock:
                if result is None:
                    running.append(name)
                elif name in running:
                    running.remove(name)
                store.set_running(ids, list(running))

        cache: gate.CachePolicy = "off" if not self.use_cache else "refresh" if fresh else "use"
        verdict = gate.judge(
            self.fac,
            cand.sha,
            suite,
            cache=cache,
            parallel=self.parallel,
            base=cand.base,
            label=self._label,
            tree=cand.tree,
            waive=screening.waived_tests(self.fac, cand.entries, cand.base),
            trusted=screening.trusted_infra(self.fac, cand.entries, cand.base),
            progress=progress,
            executor=self.executor,
            cancel=cancel,
        )
        if verdict.cached:
            with self._stats_lock:
                self.stats["cache_hits"] += 1
            color = "green" if verdict.ok else "red"
            self.say(f"  candidate {cand.sha[:10]}: {color} (cached result for this tree)")
            return verdict
        with self._stats_lock:
            self.stats["check_runs"] += 1
        store.event(
            "candidate",
            None,
            sha=cand.sha,
            base=cand.base,
            entries=ids,
            ok=verdict.ok,
            failed=[r.name for r in verdict.failed()],
            executor=verdict.ran[0] if verdict.ran else "local",
            executor_worker=verdict.ran[1] if verdict.ran else None,
        )
        took = max((r.duration for r in verdict.results), default=0.0)
        color = "green" if verdict.ok else "RED"
        where = f" on {verdict.ran[1]}" if verdict.ran and verdict.ran[0] != "local" else ""
        self.say(f"  candidate {cand.sha[:10]} ({len(ids)} branch(es)): {color} in {took:.1f}s{where}")
        return verdict

    def _label(self) -> str:
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(self._seq)}"

    # --- the speculative pipeline (slots > 1) ---

    def pipeline_step(self) -> bool:
        """One round of the pipeline: land or settle what finished at the head of the chain, then
        start candidates for newly screened entries in free slots (or grow the youngest), then wait
        a little for a run to end. False when nothing is pending and nothing is under test."""
        store = self.fac.store
        progressed = self._harvest()
        # Looking for newcomers costs a dozen git calls: only when the store changed (a submission,
        # a verdict) or something settled, and every 2 s as a safety net.
        version, now = store.data_version(), time.monotonic()
        if self.chain and not progressed and version == self._seen[0] and now < self._seen[1]:
            wait([f.future for f in self.chain], timeout=0.2, return_when=FIRST_COMPLETED)
            return True
        self._seen = (version, now + 2.0)
        if not self._environment_ready():
            self._cancel_chain("main's environment does not build")
            return progressed
        if not self._executor_ready():
            return progressed
        took = self._take()
        if took is not None:
            pending, base, suite = took
            self._start_ready(self._screen_all(pending, base), base, suite)
        if not self.chain:
            return progressed
        wait([f.future for f in self.chain], timeout=0.2, return_when=FIRST_COMPLETED)
        return True

    def _screen_all(self, pending: Sequence[QueueEntry], base: str) -> list[QueueEntry]:
        """The pending entries that pass screening against main, in order; each is screened once per
        main (the prefetch pool reads git for several at once)."""
        self._screened = {k for k in self._screened if k[1] == base}  # another main: screen again
        fresh = [e for e in pending if (e.id, base) not in self._screened]
        ready: list[QueueEntry] = []
        with ThreadPoolExecutor(max_workers=max(1, min(4, len(fresh)))) as pool:
            self._prefetched = {(e.id, base): pool.submit(self.screener.look_job(e, base)) for e in fresh}
            try:
                for e in pending:
                    if (e.id, base) in self._screened or self.screen(e, base):
                        self._screened.add((e.id, base))
                        ready.append(e)
            finally:
                self._prefetched = {}
        return ready

    def _start_ready(self, ready: list[QueueEntry], base: str, suite: Suite) -> None:
        """Start what `speculation.starts` decides for the screened entries waiting for a slot."""
        now = time.monotonic()
        running = [
            speculation.Running(len(f.cand.entries), None if f.future.done() else now - f.started)
            for f in self.chain
        ]
        typical = speculation.typical_run(self._durations)
        hedge = speculation.hedge_now(self.fac.store.recent_reds(speculation.RECENT))
        plan = speculation.starts(len(ready), running, self.slots, self.max_batch, typical, hedge=hedge)
        if plan.absorb:
            tail = self.chain.pop()
            tail.cancel.cancel()
            grown = [*tail.cand.entries, *ready[: plan.absorb]]
            self.say(f"  candidate {tail.cand.sha[:10]} grows by {plan.absorb} (every slot is busy)")
            self.fac.store.event("speculation-grown", None, sha=tail.cand.sha, entries=[e.id for e in grown])
            self._start(tail.cand.base, grown, suite, requeue=list(tail.cand.entries))
        ready = ready[plan.absorb :]
        for size in plan.sizes:
            self._start(self.chain[-1].cand.sha if self.chain else base, ready[:size], suite)
            ready = ready[size:]

    def _start(
        self, parent: str, entries: list[QueueEntry], suite: Suite, requeue: Sequence[QueueEntry] = ()
    ) -> None:
        """Build a candidate of `entries` on `parent` (main or the youngest candidate) and start its
        gate run in a slot. An entry that conflicts with one under test waits in line; so do the
        `requeue` entries of a cancelled candidate that did not make it into this one."""
        cand, deferred = candidates.build(self.root, parent, entries)
        for e in deferred:
            self.say(f"  {e.worker}: conflicts with a branch under test; waits for the next round")
        ids = [e.id for e in cand.entries]
        back = [e for e in requeue if e.id not in ids]
        if back:
            self._requeue(back, "its candidate was cancelled")
        if not cand.entries:
            return
        if self._pool is None:
            # Twice the slots: the threads of cancelled runs may still be winding down.
            self._pool = ThreadPoolExecutor(max_workers=2 * self.slots, thread_name_prefix="fac-slot")
        self.fac.store.start_testing(ids)
        cancel = checks.Cancel()
        future = self._pool.submit(self.test, cand, suite, cancel=cancel, mark=False)
        flight = Flight(cand, suite, future, cancel, time.monotonic())
        future.add_done_callback(lambda _f: flight.ended.append(time.monotonic()))
        on = "main" if parent == repo.rev_parse(self.root, self.main_ref) else f"candidate {parent[:10]}"
        self.say(
            f"candidate {cand.sha[:10]}: {', '.join(e.worker for e in cand.entries)} on {on} "
            f"(slot {len(self.chain) + 1} of {self.slots})"
        )
        self.chain.append(flight)

    def _harvest(self) -> bool:
        """Settle the finished candidates at the head of the chain, in order: a green one lands (main
        moves by compare-and-swap from its base); a red one cancels everything built on it, which
        goes back in line, and is settled (searched, retried, blamed). True when any was settled."""
        settled = False
        while self.chain and self.chain[0].future.done():
            head = self.chain.pop(0)
            if head.ended and not head.cancel.cancelled:
                self._durations.append(head.ended[0] - head.started)
            try:
                verdict = head.future.result()
            except checks.Cancelled:  # (only a grown tail is cancelled, and it leaves the chain)
                self._requeue(head.cand.entries, "its candidate was cancelled")
                continue
            except env.EnvBuildFailed as err:  # main's project-container/ changed under the run
                self._cancel_chain("main's environment does not build")
                self._requeue(head.cand.entries, "main's environment does not build")
                line.env_failed(self.fac, err)
                self.say(f"  {err.message}: the batch waits (not a red verdict)")
                return True
            except executors.Unavailable as err:  # no verdict: nobody is blamed, the entries wait
                self._executor_down(head, err)
                return False
            settled = True
            if verdict.ok and self._held_by_stop(head.cand):
                # Jidoka: the line stopped while it was under test; only fixes merge until a human
                # resumes it. Nobody is blamed: the chain goes back in line, the verdict stays cached.
                self._cancel_chain("the line stopped")
                self._requeue(head.cand.entries, "the line stopped: only fixes merge")
                break
            if verdict.ok:
                if not self.outcomes.land(head.cand):
                    self._cancel_chain(f"{self.fac.main} moved under the queue")
                    self.say(f"{self.fac.main} moved under the queue; rebuilding the pipeline")
                    break
                continue
            self._cancel_chain(f"built on red candidate {head.cand.sha[:10]}")
            try:
                self._settle_red(head.cand, verdict, head.suite)
            except env.EnvBuildFailed as err:
                line.env_failed(self.fac, err)
                self.say(f"  {err.message}: the batch waits (not a red verdict)")
            except executors.Unavailable as err:
                self._executor_down(head, err)
            self._requeue([e for e in head.cand.entries if self._is_testing(e)], "not decided by its search")
            break
        if settled:
            self._after_round()
        return settled

    def _held_by_stop(self, cand: Candidate) -> bool:
        """Whether a green candidate must not land: the line is stopped and it is not all fixes."""
        return line.get(self.fac).stopped and not all(self._is_fix(e) for e in cand.entries)

    def _executor_down(self, head: Flight, err: executors.Unavailable) -> None:
        """The executor cannot run the gate: no verdict, nobody blamed; everything goes back in line
        and the queue tries again once the executor's backoff allows (`_executor_ready`)."""
        self._cancel_chain("the executor is unavailable")
        self.say(f"  {err.message}: the batch waits (not a red verdict); {err.hint}")
        self.fac.store.event(
            "executor-unavailable", None, error=err.message, entries=[e.id for e in head.cand.entries]
        )
        self._requeue([e for e in head.cand.entries if self._is_testing(e)], "the executor is unavailable")

    def _settle_red(self, cand: Candidate, verdict: Verdict, suite: Suite) -> None:
        """A red head of the chain (built on main): retry a single branch, search a batch."""
        if len(cand.entries) == 1:
            self.single(cand.base, cand, verdict, suite)
        else:
            self.probe_search(cand.base, list(cand.entries), suite)

    def probe_search(self, base: str, entries: list[QueueEntry], suite: Suite) -> Settled:
        """A red batch searched with several probes at once (`speculation.cuts`, one per slot): each
        round tests prefixes in parallel, lands the longest green one before the first red one, and
        narrows the range; the culprit, alone, is retried, then blamed. Later entries stay queued."""
        self.say(f"  red batch of {len(entries)}: {self.slots} probes at a time for the first culprit")
        lo, hi = 0, len(entries)
        while ends := speculation.cuts(lo, hi, self.slots):
            probes = [candidates.build(self.root, base, entries[lo:end])[0] for end in ends]
            verdicts = self._run_all([(p, False) for p in probes], suite)
            step = speculation.narrow(lo, hi, ends, [v.ok for v in verdicts])
            if step.land is not None:
                landed = probes[ends.index(step.land)]
                if not self.outcomes.land(landed):
                    return Settled(base, moved=True)
                base = landed.sha
            lo, hi = step.lo, step.hi
        cand, _ = candidates.build(self.root, base, entries[lo:hi])
        verdict = self.test(cand, suite)  # the cache answers: this prefix was probed red
        if verdict.ok:
            return self._landed(cand)
        return self.single(base, cand, verdict, suite)

    def _run_all(self, runs: list[tuple[Candidate, bool]], suite: Suite) -> list[Verdict]:
        """Gate runs of candidates (`fresh`: without the cache) at once, one per slot; in order."""
        if len(runs) == 1:
            cand, fresh = runs[0]
            return [self.test(cand, suite, fresh=fresh)]
        with ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="fac-probe") as pool:
            futures = [pool.submit(self.test, c, suite, fresh=fresh) for c, fresh in runs]
            return [f.result() for f in futures]

    def _is_testing(self, e: QueueEntry) -> bool:
        now = self.fac.store.queue_entry(e.id)
        return now is not None and now.state == "testing"

    def _requeue(self, entries: Sequence[QueueEntry], reason: str) -> None:
        """Entries of a cancelled candidate go back in line: not blamed, tested again later."""
        store = self.fac.store
        for e in entries:
            if store.requeue(e.id) == "queued":
                store.event("requeued", e.worker, correlation=f"q{e.id}", reason=reason)

    def _cancel_chain(self, reason: str) -> None:
        """Cancel every candidate under test (their check processes are killed); their entries go
        back in line."""
        chain, self.chain = self.chain, []
        for f in chain:
            f.cancel.cancel()
        if chain:
            self.say(f"  cancelled {len(chain)} candidate(s): {reason}; their entries are queued again")
            self.fac.store.event(
                "speculation-cancelled",
                None,
                reason=reason,
                candidates=[f.cand.sha for f in chain],
                entries=[e.id for f in chain for e in f.cand.entries],
            )
        self._requeue([e for f in chain for e in f.cand.entries], reason)

    def _stop_pipeline(self) -> None:
        """On the way out: nothing stays under test (entries back in line), no thread is left."""
        self._cancel_chain("the queue stopped")
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
