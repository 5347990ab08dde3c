"""Executors: where the gate runs a candidate's suite. `local` (gate.LOCAL, subprocesses here) or
`dask`: one task per candidate on a Dask cluster (`[executor] kind = "dask"`, `scheduler = ...`).

A Dask task takes the candidate by its sha from the factory's git remote (fac pushes it under
`refs/fac/candidates/<sha>` first) into a replica of the factory's repository on the worker's
host, and runs `gate.run_suite` there: the same code, sandbox and environment as a local run. The
factory records the verdict and the observations; the cache by (tree, suite) is the factory's
store, whoever ran. A worker that dies mid-task makes the scheduler run the task again elsewhere:
nothing is decided until a result comes back, so a lost worker costs a rerun, never a verdict.

No verdict (`Unavailable`) blames nobody and makes the queue back off (`availability`: 5 s doubling
to 2 min, reset by the next verdict). A cancelled candidate stops on its worker too: the task polls
a `distributed.Event` that the factory sets, and its checks' processes are killed. A candidate's
ref leaves the remote once its verdict is in, and a red check's output comes back with the
verdict, so the owner's evidence is on the factory's host. `distributed` is imported only here,
and only when a Dask executor is used.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import replace
from pathlib import Path
from typing import Any

from supervisor import __version__, availability, checks, gate, locks, repo
from supervisor.availability import Availability
from supervisor.checks import Suite
from supervisor.errors import FacError
from supervisor.factory import Factory

CANDIDATES = "refs/fac/candidates/"


class Unavailable(FacError):
    """The executor could not give a verdict (no scheduler, every worker that ran it died, the task
    failed on its worker): nobody is blamed; the queue puts the entries back in line and waits."""


INSTALL = 'pip install "fac[dask]"'
CONNECT_TIMEOUT = 10.0


def for_factory(fac: Factory) -> gate.Executor:
    """The executor `[executor]` names: the local one, or a client of the Dask scheduler."""
    cfg = fac.config.executor
    if cfg.kind == "local":
        return gate.LOCAL
    assert cfg.scheduler is not None and fac.config.remote is not None  # config.parse requires both
    return Dask(cfg.scheduler, fac.config.remote)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise FacError(
            '[executor] kind = "dask" but Dask\'s `distributed` is not installed', hint=INSTALL
        ) from None
    return distributed


class Dask:
    """Each candidate's gate suite is one task on the cluster behind `scheduler`."""

    kind = "dask"

    def __init__(self, scheduler: str, remote: str, *, timeout: float = CONNECT_TIMEOUT) -> None:
        self.scheduler = scheduler
        self.remote = remote
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()
        self._refs = threading.Lock()  # pushes and deletions of candidate refs, one at a time
        self._pushed: Counter[str] = Counter()  # candidates whose refs runs in flight still need
        self._pruned = False  # stale candidate refs (an earlier queue's) are deleted before the first push
        self.availability = Availability()

    def client(self) -> Any:
        if self._client is None:
            distributed = _distributed()
            try:
                self._client = distributed.Client(self.scheduler, timeout=self.timeout, set_as_default=False)
            except OSError as e:  # distributed raises OSError (or its TimeoutError) when nobody answers
                raise Unavailable(
                    f"the Dask scheduler at {self.scheduler} does not answer: {e}",
                    hint="start it (`dask scheduler`, then `dask worker " + self.scheduler + "` on each "
                    "host), or fix [executor] scheduler in factory.toml",
                ) from None
        return self._client

    def workers(self) -> list[str]:
        """The addresses of the workers the scheduler knows now."""
        return sorted(self.client().nthreads())

    def wait(self, now: float) -> float:
        """Seconds before the executor may be tried again after its last failure (0: now)."""
        with self._lock:
            return availability.wait(self.availability, now)

    def run(
        self, fac: Factory, sha: str, suite: Suite, parallel: int, job: gate.Job, hooks: gate.Hooks
    ) -> gate.Run:
        """One task on the cluster (no per-check progress: the checks run on the worker);
        `hooks.cancel` stops its checks there. An `Unavailable` counts as a failure of the
        executor (it backs off), a verdict resets it."""
        try:
            run = self._run(fac, sha, suite, parallel, job, hooks.cancel)
        except Unavailable as e:
            now, why = time.time(), e.message
            after = self._record(fac, lambda a: availability.failed(a, why, now))
            left = availability.wait(after, now)
            hint = f"{e.hint}; " if e.hint else ""
            raise Unavailable(e.message, hint=f"{hint}the queue tries again in {left:.0f}s") from None
        self._record(fac, availability.succeeded)
        return run

    def _record(self, fac: Factory, change: Callable[[Availability], Availability]) -> Availability:
        """Change the availability; the store keeps it for `fac status` and the dashboard."""
        with self._lock:
            old, self.availability = self.availability, change(self.availability)
            new = self.availability
        if new != old:
            fac.store.set_executor_state(new.failures, new.reason, new.since, new.failed_at, new.retry_at)
            if new.available:
                fac.store.event("executor-available", None, after=old.failures, since=old.since)
        return new

    def _run(
        self, fac: Factory, sha: str, suite: Suite, parallel: int, job: gate.Job, cancel: checks.Cancel | None
    ) -> gate.Run:
        client = self.client()
        if cancel is not None:
            cancel.check()  # cancelled while connecting: nothing to push, nothing to stop
        self._push(fac, sha)
        try:
            url = repo.remote_url(fac.root, self.remote)
            key = f"fac-gate-{sha[:12]}-{os.urandom(4).hex()}"
            stop = f"{key}-cancel"  # the task's checks are killed once this distributed.Event is set
            future = client.submit(
                remote_run,
                __version__,
                url,
                fac.main,
                sha,
                suite.hash,
                parallel,
                job,
                stop,
                pure=False,
                key=key,
            )
            if cancel is not None:
                cancel.on_cancel(functools.partial(_cancel_remote, client, future, stop))
            try:
                run: gate.Run = future.result()
            except FacError as e:  # raised on the worker: its replica, its environment, its fac
                raise Unavailable(
                    f"candidate {sha[:10]} on the Dask cluster: {e.message}", hint=e.hint
                ) from None
            except (checks.Cancelled, CancelledError):
                if cancel is not None and cancel.cancelled:
                    raise checks.Cancelled() from None
                raise Unavailable(  # cancelled by the cluster, not by us: the scheduler went away
                    f"the Dask cluster dropped candidate {sha[:10]}",
                    hint="look at the `dask scheduler` log; the entries go back in line",
                ) from None
            except (_distributed().KilledWorker, OSError, TimeoutError) as e:
                raise Unavailable(
                    f"the Dask cluster lost candidate {sha[:10]} ({type(e).__name__}: {e})",
                    hint="look at the `dask scheduler` and `dask worker` logs; the entries go back in line",
                ) from None
            except Exception as e:  # noqa: BLE001 - the task broke on its worker (another fac there?)
                raise Unavailable(
                    f"candidate {sha[:10]} failed on its Dask worker ({type(e).__name__}: {e})",
                    hint="look at the `dask worker` log; `fac --version` must match on every worker host",
                ) from None
            finally:
                future.release()
        finally:
            self._unpush(fac, sha)
        if cancel is not None:
            cancel.check()
        return _with_local_logs(fac, sha, run)

    def _push(self, fac: Factory, sha: str) -> None:
        """Push the candidate's ref for the workers (once per sha in flight); before the first push,
        delete the candidate refs an earlier queue left on the remote (it stopped mid-run)."""
        with self._refs:
            self._pushed[sha] += 1
            if self._pushed[sha] > 1:
                return
            stale: list[str] = []
            if not self._pruned:
                self._pruned = True
                try:
                    stale = [
                        r for r in repo.remote_refs(fac.root, self.remote, CANDIDATES) if _is_candidate(r)
                    ]
                except repo.GitError:
                    pass  # tidying is not worth a failure: the push below says what is wrong
            mine = f"+{sha}:{CANDIDATES}{sha}"
            gone = [f":{r}" for r in stale if r != f"{CANDIDATES}{sha}"]
            try:
                try:
                    repo.push_refs(fac.root, self.remote, [mine, *gone])
                except repo.GitError:
                    if not gone:
                        raise
                    repo.push_refs(fac.root, self.remote, [mine])  # a stale ref already gone: ours alone
            except repo.GitError as e:
                self._pushed[sha] -= 1
                raise Unavailable(
                    e.message, hint=f"fac pushes each candidate to [factory] remote ({self.remote})"
                ) from None

    def _unpush(self, fac: Factory, sha: str) -> None:
        """The verdict is in (or there will be none): the candidate's ref leaves the remote once no
        other run of the same sha needs it."""
        with self._refs:
            self._pushed[sha] -= 1
            if self._pushed[sha] > 0:
                return
            del self._pushed[sha]
            try:
                repo.push_refs(fac.root, self.remote, [f":{CANDIDATES}{sha}"])
            except repo.GitError:
                pass  # a ref left behind is pruned by the next queue's first push

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def wait(executor: gate.Executor, now: float) -> float:
    """Seconds before the queue may try `executor` again (0: now; the local one never waits)."""
    return executor.wait(now) if isinstance(executor, Dask) else 0.0


def _is_candidate(ref: str) -> bool:
    name = ref.removeprefix(CANDIDATES)
    return ref.startswith(CANDIDATES) and len(name) == 40 and all(c in "0123456789abcdef" for c in name)


def _cancel_remote(client: Any, future: Any, stop: str) -> None:
    """Stop a task: its checks' processes are killed on the worker (the task polls the event),
    and the scheduler forgets it."""
    if future.done():
        return
    try:
        _distributed().Event(stop, client=client).set()
        future.cancel()
    except Exception:  # noqa: BLE001 - a cluster gone meanwhile has nothing left to stop
        pass


def _with_local_logs(fac: Factory, sha: str, run: gate.Run) -> gate.Run:
    """The failed checks' output, shipped back with the verdict, written under the factory's logs:
    the owner's message points at files on this host, not on the worker's."""
    shipped = dict(run.logs)
    if not shipped:
        return run
    where = fac.fac_dir / "logs" / "checks" / f"{sha[:12]}-dask-{os.urandom(3).hex()}"
    where.mkdir(parents=True, exist_ok=True)
    results = []
    for r in run.verdict.results:
        text = shipped.get(r.name)
        if text is None:
            results.append(r)
            continue
        local = where / f"{checks.safe_name(r.name)}.log"
        local.write_text(text, encoding="utf-8")
        results.append(replace(r, log=str(local)))
    return replace(run, verdict=replace(run.verdict, results=results), logs=())


# --- on the worker ---


def replica_dir(url: str) -> Path:
    """Where a worker's host keeps its replica of the factory at `url`: `$FAC_EXECUTOR_CACHE`, else
    `~/.cache/fac/executors`, one directory per remote URL (shared by the workers of one host)."""
    base = os.environ.get("FAC_EXECUTOR_CACHE") or str(Path.home() / ".cache" / "fac" / "executors")
    return Path(base) / hashlib.sha256(url.encode()).hexdigest()[:16]


def replica(url: str, main: str, sha: str, base: str | None) -> Factory:
    """The replica of the factory at `url` on this host, holding candidate `sha`, with its main at
    `base` (what decides the system's environment there, as main does in the factory)."""
    root = replica_dir(url)
    root.mkdir(parents=True, exist_ok=True)
    with locks.held(root.parent / f"{root.name}.lock"):
        if not (root / ".git").is_dir():
            repo.git(root, "init", "-q")
        config = root / "factory.toml"
        want = f'[factory]\nmain = "{main}"\n'
        if not config.is_file() or config.read_text(encoding="utf-8") != want:
            config.write_text(want, encoding="utf-8")
        repo.fetch_refs(root, url, [f"+{CANDIDATES}{sha}:{CANDIDATES}{sha}"])
        repo.git(root, "update-ref", f"refs/heads/{main}", base or sha)
    return Factory(root)


def remote_run(
    version: str,
    url: str,
    main: str,
    sha: str,
    suite_hash: str,
    parallel: int,
    job: gate.Job,
    stop: str | None = None,
) -> gate.Run:
    """The Dask task: candidate `sha` from `url`, judged by main's suite (rebuilt from `job.base` in the
    replica, and refused unless it is exactly the suite the factory asked for) by the same fac.
    Setting the `distributed.Event` named `stop` kills its checks (the factory cancelled it)."""
    import distributed

    where = distributed.get_worker().address
    if version != __version__:
        raise FacError(
            f"the Dask worker {where} runs fac {__version__}, the factory fac {version}",
            hint=f"install the factory's fac on every worker host (pip install fac=={version}), restart it",
        )
    fac = replica(url, main, sha, job.base)
    # A rerun after a worker died finds the dead run's worktrees still there: every attempt its own,
    # named with its process, so the next task on this host removes those whose process is gone.
    mark = f"dask{os.getpid()}x{os.urandom(3).hex()}"
    prune(fac)
    cancel = checks.Cancel()
    done = threading.Event()
    if stop is not None:
        event = distributed.Event(stop, client=distributed.get_client())  # type: ignore[no-untyped-call]
        threading.Thread(target=_watch, args=(event, cancel, done), daemon=True).start()
    label = f"{mark}-{job.label or 'gate'}"
    try:
        suite = checks.suite_from_rev(fac.root, job.base or sha, fac.fac_dir / "suites")
        if suite.hash != suite_hash:
            raise FacError(
                f"the replica on {where} read suite {suite.hash} at {(job.base or sha)[:10]}, "
                f"the factory asked for {suite_hash}",
                hint="the remote's objects differ from the factory's: check [factory] remote",
            )
        run = gate.run_suite(fac, sha, suite, parallel, replace(job, label=label), cancel=cancel)
        # The evidence of a red check travels with the verdict: its log stays on this host only
        # until the task ends.
        logs = tuple((r.name, _read(r.log)) for r in run.verdict.results if not r.ok and r.log)
        return replace(run, executor="dask", worker=where, logs=logs)
    finally:
        done.set()
        shutil.rmtree(fac.fac_dir / "logs" / "checks" / f"{sha[:12]}-{label}", ignore_errors=True)
        repo.git(fac.root, "update-ref", "-d", f"{CANDIDATES}{sha}", check=False)


def _watch(event: Any, cancel: checks.Cancel, done: threading.Event) -> None:
    """On the worker: cancel the run once the factory sets its event (polled while it runs)."""
    while not done.is_set():
        try:
            if event.wait(timeout=0.5):
                cancel.cancel()
                event.clear()
                return
        except Exception:  # noqa: BLE001 - the scheduler is gone: nobody can cancel any more
            return


SHIPPED_LOG = 256 * 1024  # the end of a red check's output that comes back with the verdict


def _read(path: str) -> str:
    try:
        text, cut = checks.tail(Path(path), SHIPPED_LOG)
    except OSError as e:
        return f"(the log on the worker could not be read: {e})\n"
    return f"... (the first {cut} bytes left out)\n" + text if cut else text


_OWNER = re.compile(r"-dask(\d+)x[0-9a-f]{6}-")


def prune(fac: Factory) -> None:
    """Remove the replica's worktrees and scratch files of gate runs whose worker process is gone
    (a worker killed mid-task leaves them behind; the scheduler reran the task elsewhere)."""
    tmp = fac.fac_dir / "tmp"
    if not tmp.is_dir():
        return
    gone = False
    for entry in tmp.iterdir():
        m = _OWNER.search(entry.name)
        if m and not _alive(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            gone = True
    if gone:
        repo.git(fac.root, "worktree", "prune", check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
