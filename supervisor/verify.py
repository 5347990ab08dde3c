"""`fac check`: run a stage of the suite on a commit (throw-away worktree) or on a working tree in place.

It runs in the system's environment (`supervisor.env`): a human's check builds it when main needs a
new one; an agent's uses the one that serves (the queue builds it), so an agent never waits on a build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from supervisor import checks, env, gate, guards, identity, repo, roles, worktrees
from supervisor.checks import CheckResult, Verdict
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.sandbox import Sandbox


@dataclass
class CheckReport:
    verdict: Verdict
    stage: str
    target: str  # what was checked: a sha, or a directory
    suite: str
    worker: str | None = None
    notes: list[str] = field(default_factory=list)
    sandbox: str = ""
    environment: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "stage": self.stage,
            "target": self.target,
            "suite": self.suite,
            "worker": self.worker,
            "notes": self.notes,
            "sandbox": self.sandbox,
            "environment": self.environment,
            **self.verdict.as_dict(),
        }


def check(
    fac: Factory,
    *,
    ref: str | None,
    worker: str | None,
    stage: str,
    use_cache: bool = False,
    cwd: Path | None = None,
    progress: checks.Progress | None = None,
) -> CheckReport:
    """Run `stage` on `ref` or on a working tree; `progress` hears each check start and end."""
    if ref and worker:
        raise FacError("pass --ref or --worker, not both")
    parallel = fac.config.queue.parallel
    environment = environment_for_check(fac)
    sb = env.sandbox_for(fac, environment)
    if ref:
        # An agent's --ref may name a commit only its own repository has (not submitted yet).
        agent = identity.caller().worker
        report = _check_ref(fac, ref, stage, parallel, use_cache, sb, progress, agent)
    else:
        w = fac.worker(worker) if worker else None
        workdir = Path(w.worktree) if w else Path(repo.git(cwd or Path.cwd(), "rev-parse", "--show-toplevel"))
        report = _check_dir(
            fac, workdir, stage, parallel, w.name if w else None, w.branch if w else None, sb, progress
        )
    report.sandbox = f"{sb.kind}: {sb.detail}"
    report.environment = environment.describe()
    return report


def environment_for_check(fac: Factory) -> env.Env:
    """A human's check builds main's environment if needed; an agent's uses the one that serves."""
    if identity.caller().is_agent:
        return env.current(fac)
    return env.ensure(fac, say=_progress)


def _progress(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


def _check_ref(
    fac: Factory,
    ref: str,
    stage: str,
    parallel: int,
    use_cache: bool,
    sb: Sandbox,
    progress: checks.Progress | None = None,
    agent: str | None = None,
) -> CheckReport:
    sha = repo.rev_parse(fac.root, ref) or (_agents_commit(fac, agent, ref) if agent else None)
    if sha is None:
        where = f"{fac.root}" + (f" nor in {agent}'s repository" if agent else "")
        raise FacError(f"{ref!r} is not a commit in {where}", hint="pass a branch, tag or sha")
    main = repo.rev_parse(fac.root, fac.main)
    suite_rev = fac.main if stage == "gate" else sha
    suite = checks.suite_from_rev(fac.root, suite_rev, fac.fac_dir / "suites")
    if stage == "gate":
        verdict = gate.judge(
            fac,
            sha,
            suite,
            cache="use" if use_cache else "refresh",
            parallel=parallel,
            base=main if main != sha else None,
            record_hit=False,
            progress=progress,
        )
        notes = ["cached result for this tree"] if verdict.cached else []
        return CheckReport(verdict, stage, sha, suite.origin, notes=notes)
    verdict = _run_in_worktree(fac, sha, suite, stage, parallel, sb, progress)
    fac.store.record_run(
        sha,
        repo.tree_of(fac.root, sha),
        stage,
        None,
        verdict.ok,
        [r.as_dict() for r in verdict.results],
        cached=False,
    )
    return CheckReport(verdict, stage, sha, suite.origin)


def _agents_commit(fac: Factory, agent: str, ref: str) -> str | None:
    """A commit only `agent`'s own repository has, fetched (checked) for its `fac check --ref`."""
    w = fac.worker(agent)
    try:
        return worktrees.collect_commit(fac.root, Path(w.worktree), agent, ref)
    except repo.GitError as e:
        refused = worktrees.fsck_refusal(e.message)
        raise FacError(
            f"cannot take {ref!r} from {agent}'s repository: "
            + (f"git's object check refused {refused}" if refused else e.message),
            hint="make the commits again with plain `git add` and `git commit`",
        ) from None


def _run_in_worktree(
    fac: Factory,
    sha: str,
    suite: checks.Suite,
    stage: str,
    parallel: int,
    sb: Sandbox,
    progress: checks.Progress | None = None,
) -> Verdict:
    import time

    from supervisor import worktrees

    with worktrees.detached(
        fac.root, fac.fac_dir / "tmp" / f"check-{sha[:10]}-{time.monotonic_ns()}", sha
    ) as wt:
        log_dir = fac.fac_dir / "logs" / "checks" / f"{sha[:12]}-{stage}-{time.strftime('%Y%m%d-%H%M%S')}"
        results = checks.run_suite(
            suite.for_stage(stage),
            wt,
            stage,
            parallel=parallel,
            log_dir=log_dir,
            sandbox=sb,
            progress=progress,
        )
    return Verdict(checks.suite_ok(results), results, False, sha, repo.tree_of(fac.root, sha))


def _check_dir(
    fac: Factory,
    workdir: Path,
    stage: str,
    parallel: int,
    worker: str | None,
    branch: str | None,
    sb: Sandbox,
    progress: checks.Progress | None = None,
) -> CheckReport:
    import time

    notes = []
    if stage == "gate":
        suite = checks.suite_from_rev(fac.root, fac.main, fac.fac_dir / "suites")
        notes.append(f"gate checks come from {fac.main}, not from this working tree")
    else:
        suite = checks.suite_from_dir(workdir)
    label = worker or "root"
    log_dir = fac.fac_dir / "logs" / "checks" / f"{label}-{stage}-{time.strftime('%Y%m%d-%H%M%S')}"
    results: list[CheckResult] = []
    if stage == "gate" and worker and branch:
        head = repo.rev_parse(fac.root, branch)
        main = repo.rev_parse(fac.root, fac.main)
        if head and main:
            record = fac.store.worker(worker)
            writable = roles.writable_at(fac.root, main, record.role if record else "worker")
            results += guards.branch_guards(fac.root, main, head, writable).results
            notes.append("guards judge committed changes only")
    results += checks.run_suite(
        suite.for_stage(stage),
        workdir,
        stage,
        parallel=parallel,
        log_dir=log_dir,
        sandbox=sb,
        progress=progress,
    )
    verdict = Verdict(checks.suite_ok(results), results, False, None, None)
    if not results:
        notes.append(
            f"no {stage} checks are configured: add [checks.NAME] to factory.toml or files to checks/"
        )
    return CheckReport(verdict, stage, str(workdir), suite.origin, worker, notes)
