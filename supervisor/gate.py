"""The gate, one path for all its callers: the cached verdict for (tree, suite hash), or a run of main's
gate checks on the commit in a throw-away detached worktree; either way recorded as a run.

The merge queue judges candidates with it, `fac line`'s verify judges main, and
`fac check --ref ... --stage gate` reproduces a red candidate with it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from supervisor import checks, env, guards, junit, observations, repo, testinfra, worktrees
from supervisor.checks import CheckResult, Progress, Suite, Verdict
from supervisor.config import CheckDef
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.sandbox import Sandbox

# "use": answer from the cache when it knows the tree, else run and remember the verdict.
# "refresh": always run, and remember the new verdict (a retry that rules out a flaky check).
# "off": always run, remember nothing (the serial queue of the benchmarks, without a cache).
CachePolicy = Literal["use", "refresh", "off"]


class Executor(Protocol):
    """Where a gate suite runs: `run` returns what `run_suite` returns, from wherever it ran."""

    kind: str

    def run(self, fac: Factory, sha: str, suite: Suite, parallel: int, job: Job, hooks: Hooks) -> Run: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Job:
    """What one gate run needs besides the commit and the suite: plain data an executor can ship."""

    base: str | None = None
    label: str | None = None
    waive: frozenset[str] = frozenset()
    trusted: frozenset[str] = frozenset()
    # main's per-test outcomes per pytest check as the factory's store knows them (a remote
    # executor's replica has a store of its own)
    known: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()


@dataclass(frozen=True)
class Hooks:
    """What the caller of one gate run keeps on its side: who hears each check start and end (where
    the executor can tell), and the `Cancel` that stops the run, wherever it runs."""

    progress: Progress | None = None
    cancel: checks.Cancel | None = None


@dataclass(frozen=True)
class Run:
    """One gate run's outcome wherever it ran: the verdict, each junit-reported check's per-test
    outcomes (recorded as observations of the tree), the executor's kind and its worker's address."""

    verdict: Verdict
    tests: dict[str, dict[str, str]] = field(default_factory=dict)
    executor: str = "local"
    worker: str | None = None
    # (check, the end of its output) of each failed check, from a remote executor: its log files are
    # on the worker's host, and the factory keeps a copy (the owner's message points at it)
    logs: tuple[tuple[str, str], ...] = ()


class Local:
    """The default executor: subprocesses on this machine."""

    kind = "local"

    def run(self, fac: Factory, sha: str, suite: Suite, parallel: int, job: Job, hooks: Hooks) -> Run:
        return run_suite(fac, sha, suite, parallel, job, progress=hooks.progress, cancel=hooks.cancel)

    def close(self) -> None:
        pass


LOCAL = Local()


def judge(
    fac: Factory,
    sha: str,
    suite: Suite,
    *,
    cache: CachePolicy = "use",
    parallel: int | None = None,
    base: str | None = None,
    label: Callable[[], str] | None = None,
    tree: str | None = None,
    record_hit: bool = True,
    waive: frozenset[str] = frozenset(),
    trusted: frozenset[str] = frozenset(),
    progress: Progress | None = None,
    executor: Executor | None = None,
    cancel: checks.Cancel | None = None,
) -> Verdict:
    """The gate's verdict on commit `sha` under `suite` (main's); `verdict.cached` tells a cache hit.

    `base` (main) turns on what judges a candidate against main: main's test infrastructure, the
    per-test ratchet, main's copies of the test files it changes, the test-count guard. `waive`: test
    ids a human approved away (`fac approve`); `trusted`: test infrastructure paths a human approved,
    which the candidate keeps for its run. `label` names the run's worktree and log directory and
    is asked only when the gate really runs; `tree` saves a git call when known; `record_hit=False`
    answers from the cache without recording a run (`fac check --ref --cache`). `progress` hears each
    check start and end (not on a cache hit, nor from a remote executor). `executor` runs the suite
    (default: here); `verdict.ran` says where it ran. `cancel` stops the run, local or remote (its
    check processes killed): then `checks.Cancelled` is raised and nothing is recorded.
    """
    tree = tree or repo.tree_of(fac.root, sha)
    key = cache_key(suite.hash, waive | {f"infra:{p}" for p in trusted})
    if cache == "use":
        hit = fac.store.cached_result(tree, key)
        if hit is not None:
            ok, results = hit
            if record_hit:
                fac.store.record_run(sha, tree, "gate", None, ok, results, cached=True)
            return Verdict(ok, [CheckResult.from_dict(r) for r in results], True, sha, tree)
    par = fac.config.queue.parallel if parallel is None else parallel
    executor = executor or LOCAL
    # A remote executor's replica has a store of its own: it gets main's outcomes from this one.
    known = _known(fac, suite, base) if executor.kind != "local" else ()
    job = Job(base, label() if label else None, waive, trusted, known)
    run = executor.run(fac, sha, suite, par, job, Hooks(progress, cancel))
    if cancel is not None:
        cancel.check()  # a run cut short says nothing about the tree: never cached, never recorded
    observe(fac, suite, run)
    verdict = replace(run.verdict, ran=(run.executor, run.worker))
    remember = key if cache != "off" else None
    fac.store.record_run(
        sha, tree, "gate", remember, verdict.ok, [r.as_dict() for r in verdict.results], cached=False
    )
    return verdict


def _known(
    fac: Factory, suite: Suite, base: str | None
) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    if base is None:
        return ()
    out = []
    for c in suite.for_stage("gate"):
        seen = main_observed(fac, suite, c, base) if _is_pytest(c) else None
        if seen is not None:
            out.append((c.name, tuple(sorted(seen.items()))))
    return tuple(out)


def observe(fac: Factory, suite: Suite, run: Run) -> None:
    """Record what a run observed per test on its tree, in this factory's store."""
    v = run.verdict
    assert v.tree is not None
    results = [r for r in v.results if r.name in run.tests]
    observations.record_tests(fac, v.tree, suite.hash, results, run.tests)


def cache_key(suite_hash: str, waive: frozenset[str]) -> str:
    """The cache's suite key: a human's waiver (or trusted test infrastructure) changes the verdict,
    so it is part of the key."""
    if not waive:
        return suite_hash
    return suite_hash + "+" + hashlib.sha256("\n".join(sorted(waive)).encode()).hexdigest()[:12]


# --- what the candidate is judged on: its code under main's test infrastructure ---

# Files that change how pytest collects, runs and reports: the gate always takes main's copies.
TEST_INFRA = guards.TEST_CONFIG


@dataclass(frozen=True)
class Plan:
    """The commits the gate runs on: `run` is the candidate with main's test infrastructure; `second`
    adds main's copies of the test files the candidate changes (`files`), for the second run."""

    run: str
    second: str | None = None
    files: tuple[str, ...] = ()
    own: str | None = None  # the candidate itself, when it changes test infrastructure


def _test_support(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return path.endswith(".py") and (guards.is_test_file(path) or any(p in ("tests", "test") for p in parts))


def plan_for(changed: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """From what a candidate changes against main ((status, path)): the test infrastructure to take
    from main, and the test files main has that it changes (modified or deleted: the second run)."""
    infra = [p for _s, p in changed if PurePosixPath(p).name in TEST_INFRA]
    tests = [p for s, p in changed if s[:1] in ("M", "D") and _test_support(p) and p not in infra]
    return infra, tests


def plan(root: Path, sha: str, base: str | None, trusted: frozenset[str] = frozenset()) -> Plan:
    """The commits to run on. `trusted`: test infrastructure a human approved for this candidate,
    which it keeps; everything else of its test infrastructure comes from main. A configuration
    file whose pytest section did not change (a version bump in pyproject.toml) is the candidate's."""
    if base is None:
        return Plan(sha)
    infra, tests = plan_for(repo.changed_paths(root, base, sha))
    infra = [
        p
        for p in infra
        if p not in trusted
        and (
            PurePosixPath(p).name == "conftest.py"
            or testinfra.infrastructure_change(p, repo.show_file(root, base, p), repo.show_file(root, sha, p))
        )
    ]
    run = repo.overlay_commit(root, sha, base, infra, "fac: the candidate under main's test infrastructure")
    own = sha if run != sha else None
    if not any(guards.is_test_file(p) for p in tests):
        return Plan(run, own=own)
    second = repo.overlay_commit(root, run, base, tests, "fac: main's copies of the test files it changes")
    return Plan(run, second, tuple(p for p in tests if guards.is_test_file(p)), own)


@dataclass(frozen=True)
class Context:
    """One gate run's places: the worktrees, logs, where junit reports go, the sandbox, main."""

    fac: Factory
    suite: Suite
    wt: Path
    second: Path | None
    own: Path | None
    files: tuple[str, ...]
    log_dir: Path
    reports: Path
    sandbox: Sandbox
    base: str | None
    waive: frozenset[str]
    known: dict[str, dict[str, str]] = field(default_factory=dict)  # main's outcomes, from the factory
    cancel: checks.Cancel | None = None


def run_gate(
    fac: Factory,
    sha: str,
    suite: Suite,
    parallel: int,
    *,
    base: str | None = None,
    label: str | None = None,
    waive: frozenset[str] = frozenset(),
    trusted: frozenset[str] = frozenset(),
    progress: Progress | None = None,
    cancel: checks.Cancel | None = None,
) -> Verdict:
    """Run the gate stage of `suite` on commit `sha` here, now (no cache), and record what it observed."""
    run = run_suite(
        fac, sha, suite, parallel, Job(base, label, waive, trusted), progress=progress, cancel=cancel
    )
    observe(fac, suite, run)
    return run.verdict


def run_suite(
    fac: Factory,
    sha: str,
    suite: Suite,
    parallel: int,
    job: Job,
    *,
    progress: Progress | None = None,
    cancel: checks.Cancel | None = None,
) -> Run:
    """Run the gate stage of `suite` on commit `sha` of `fac`'s repository in a throw-away detached
    worktree, in the system's environment and sandbox: what every executor runs (locally on the
    factory, or on a Dask worker's replica of it).

    Pytest checks are judged by their per-test results (`judge_pytest`), not by their exit code.
    """
    root = fac.root
    base = job.base
    label = job.label or f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    tmp = fac.fac_dir / "tmp"
    # The system's environment: built before the first run of its hash, then only read (EnvBuildFailed
    # when it does not build: the caller stops the line, nobody is blamed).
    sb = env.sandbox_for(fac, env.ensure(fac))
    gate = suite.for_stage("gate")
    pytests = {c.name for c in gate if _is_pytest(c)}
    p = plan(root, sha, base, job.trusted) if pytests else Plan(sha)
    with ExitStack() as stack:
        wt = stack.enter_context(worktrees.detached(root, tmp / f"cand-{sha[:10]}-{label}", p.run))
        second = (
            stack.enter_context(worktrees.detached(root, tmp / f"main-tests-{sha[:10]}-{label}", p.second))
            if p.second
            else None
        )
        own = (
            stack.enter_context(worktrees.detached(root, tmp / f"own-{sha[:10]}-{label}", p.own))
            if p.own
            else None
        )
        ctx = Context(
            fac,
            suite,
            wt,
            second,
            own,
            p.files,
            fac.fac_dir / "logs" / "checks" / f"{sha[:12]}-{label}",
            tmp / f"junit-{sha[:10]}-{label}",  # outside every tree and every sandbox's writable paths
            sb,
            base,
            job.waive,
            {name: dict(tests) for name, tests in job.known},
            cancel,
        )
        stack.callback(shutil.rmtree, ctx.reports, ignore_errors=True)
        guard_results: dict[str, CheckResult] = {}
        jobs: list[Callable[[], CheckResult]] = [
            functools.partial(judge_pytest, ctx, c, guard_results)
            if c.name in pytests
            else functools.partial(checks.run_one, c, wt, "gate", ctx.log_dir, ctx.sandbox, cancel=cancel)
            for c in gate
        ]
        results = checks.run_suite(
            (),
            wt,
            "gate",
            parallel=parallel,
            log_dir=ctx.log_dir,
            extra=jobs,
            extra_names=tuple(c.name for c in gate),
            progress=progress,
        )
        results += [guard_results[c.name] for c in gate if c.name in guard_results]
        tests = {
            name: junit.junit_outcomes(path) for name, path in junit.reports_for(gate, ctx.reports).items()
        }
    tree = repo.tree_of(root, sha)
    return Run(Verdict(checks.suite_ok(results), results, False, sha, tree), tests)


def _is_pytest(c: CheckDef) -> bool:
    try:
        return checks.pytest_at(checks.argv_of(c)) is not None
    except FacError:
        return False


def report_path(ctx: Context, c: CheckDef, part: str = "") -> Path:
    """The junit report of `c` in this run (`part` names the second run's); `junit.reports_for` agrees."""
    return ctx.reports / f"{checks.safe_name(c.name)}{part}.xml"


def collect(
    c: CheckDef, wt: Path, log_dir: Path, sb: Sandbox, cancel: checks.Cancel | None = None
) -> list[str] | None:
    """The junit keys of the tests `c` collects in `wt`, by a run of its own (in the sandbox) that only
    collects, under main's test infrastructure; None when collection fails."""
    probe = replace(c, name=f"{c.name}.collect")
    args = tuple(junit.collect_args(checks.argv_of(c)))
    r = checks.run_one(probe, wt, "gate", log_dir, sb, args=args, cancel=cancel)
    if r.exit_code not in (0, 5) or r.log is None:  # 5: no tests collected
        return None
    return junit.collected_keys(Path(r.log).read_text(encoding="utf-8", errors="replace"))


def judge_pytest(ctx: Context, c: CheckDef, guard_results: dict[str, CheckResult]) -> CheckResult:
    """A pytest check judged by its per-test results: green only when it exited 0 and its report (written
    where the code under test cannot reach it) is complete, no test that passes on main was lost
    (the ratchet), and main's copies of the test files the candidate changes pass against its code."""
    fac, base = ctx.fac, ctx.base
    known = (ctx.known.get(c.name) or main_observed(fac, ctx.suite, c, base)) if base else None
    with ThreadPoolExecutor(max_workers=4) as pool:
        # Main's outcomes unknown (main was never a candidate): its collection stands in while the
        # candidate is green; main's own run is paid for only when the answer depends on it.
        main_ids_f = (
            pool.submit(main_collected, fac, c, base, ctx.sandbox, ctx.cancel)
            if base and known is None
            else None
        )
        ids_f = pool.submit(collect, c, ctx.wt, ctx.log_dir, ctx.sandbox, ctx.cancel)
        # The candidate's own test configuration decides what main will run once it merges: the
        # count guard collects with it (main's infrastructure judges everything else).
        own_f = (
            pool.submit(
                collect, replace(c, name=f"{c.name}.own"), ctx.own, ctx.log_dir, ctx.sandbox, ctx.cancel
            )
            if ctx.own
            else None
        )
        second_f = pool.submit(second_run, ctx, c) if ctx.second else None
        run = checks.run_one(
            c, ctx.wt, "gate", ctx.log_dir, ctx.sandbox, report=report_path(ctx, c), cancel=ctx.cancel
        )
        collected = ids_f.result()
        main_ids = main_ids_f.result() if main_ids_f else None
        second = second_f.result() if second_f else None
        own = own_f.result() if own_f else collected
    report = junit.read_report(report_path(ctx, c))
    main = known
    if base is not None and main is None:
        if needs_main_run(run, report, main_ids, second):
            main = main_outcomes(fac, ctx.suite, c, base, ctx.sandbox, ctx.cancel)
        elif main_ids is not None:
            main = dict.fromkeys(main_ids, "passed")
    if base is not None:
        guard_results[c.name] = count_guard(fac, c, own, main)
    return verdict_of(run, report, collected, main, second, junit.waived(main or {}, ctx.waive))


def needs_main_run(
    run: CheckResult,
    report: junit.Report | None,
    main_ids: list[str] | None,
    second: tuple[CheckResult, junit.Report | None, tuple[str, ...]] | None,
) -> bool:
    """Whether judging needs main's real per-test outcomes, not just which tests main has: a red run
    (which failures does main know, may it retry), a test main has that is skipped here, a failure
    in the second run, or main's tests that could not be collected."""
    if main_ids is None or run.exit_code != 0 or report is None:
        return True
    ids = set(main_ids)
    if any(v == "skipped" and k in ids for k, v in report.outcomes.items()):
        return True
    if second is not None and (second[1] is None or any(v != "passed" for v in second[1].outcomes.values())):
        return True
    return False


def verdict_of(
    run: CheckResult,
    report: junit.Report | None,
    collected: list[str] | None,
    main: dict[str, str] | None,
    second: tuple[CheckResult, junit.Report | None, tuple[str, ...]] | None,
    waive: frozenset[str],
) -> CheckResult:
    """One pytest check's result from its run, its report, its collection, main's per-test outcomes and
    the second run of main's copies of the changed test files. Each problem names the rule it breaks."""
    if run.timed_out:
        return run
    problems: list[str] = []
    retryable = True
    waivable: list[str] = []
    why = junit.incomplete(run.exit_code, report, collected)
    if why:
        problems.append(f"rule per-test report: {why}")
        retryable = False
    if report is not None and main is not None:
        present = frozenset(collected or ()) if run.exit_code != 0 else frozenset()
        lost = junit.ratchet(main, report.outcomes, waive, present)
        problems += [f"rule ratchet: {x.message()}" for x in lost]
        waivable += [x.test for x in lost]
        if any(x.how != "failed" for x in lost):
            retryable = False
    if report is not None and run.exit_code != 0:
        new = [k for k in report.failed if main is None or main.get(k) != "passed"]
        if new:
            retryable = False  # a failing test main does not know is never retried: it is not flaky
    if second is not None:
        run2, report2, files = second
        where = ", ".join(files)
        if report2 is None or report2.declared != report2.counted:
            problems.append(
                f"rule main's tests: main's copy of {where} gave no complete report against your code "
                f"(exit {run2.exit_code}); let the test session finish normally"
            )
            retryable = False
        else:
            bad = junit.main_copy_lost(main, report2.outcomes, waive)
            for k in bad:
                problems.append(
                    f"rule main's tests: {junit.shown(k)} in main's copy of {where} fails against your code: "
                    "your branch changes that test file, but main's version of it must still pass; fix the "
                    "code, or ask a human to approve the change to the test"
                )
            waivable += bad
    if run.ok and not problems:
        return run
    lines = [run.feedback] if run.feedback else []
    if run.ok:
        lines.insert(0, f"exit code 0, but the gate does not believe this run ({len(problems)} problem(s)):")
    lines += problems
    if waivable:
        lines.append("a human approves what is really meant to go with `fac approve <branch>`")
    return replace(
        run,
        ok=False,
        feedback=checks._clip("\n".join(lines)),
        retryable=retryable,
        waivable=tuple(dict.fromkeys(waivable)),
    )


def second_run(ctx: Context, c: CheckDef) -> tuple[CheckResult, junit.Report | None, tuple[str, ...]]:
    """Main's copies of the test files the candidate changes, with main's test infrastructure, against
    the candidate's code: a neutered, moved or redefined test still fails there."""
    assert ctx.second is not None
    cwd = PurePosixPath(c.cwd)
    args = tuple(
        str(PurePosixPath(f).relative_to(cwd)) for f in ctx.files if PurePosixPath(f).is_relative_to(cwd)
    )
    files = tuple(f for f in ctx.files if PurePosixPath(f).is_relative_to(cwd))
    probe = replace(c, name=f"{c.name}.main-tests")
    rep = report_path(ctx, c, ".main-tests")
    if not args:
        return CheckResult(probe.name, True, 0, 0.0, "", ""), junit.Report({}, {}, {}), ()
    run = checks.run_one(
        probe, ctx.second, "gate", ctx.log_dir, ctx.sandbox, report=rep, args=args, cancel=ctx.cancel
    )
    return run, junit.read_report(rep), files


def main_observed(fac: Factory, suite: Suite, c: CheckDef, base: str) -> dict[str, str] | None:
    """Main's per-test outcomes for check `c` as observed when main was a candidate (or run before)."""
    seen = fac.store.observation(repo.tree_of(fac.root, base), suite.hash, c.name)
    return seen[2] if seen is not None else None


def main_collected(
    fac: Factory, c: CheckDef, base: str, sb: Sandbox, cancel: checks.Cancel | None = None
) -> list[str] | None:
    """The tests `c` collects on main (in a worktree of main, in the sandbox)."""
    label = f"{os.getpid()}-{time.monotonic_ns()}"
    with worktrees.detached(fac.root, fac.fac_dir / "tmp" / f"main-ids-{base[:10]}-{label}", base) as wt:
        log_dir = fac.fac_dir / "logs" / "checks" / f"main-{base[:12]}-{label}"
        return collect(c, wt, log_dir, sb, cancel)


def main_outcomes(
    fac: Factory, suite: Suite, c: CheckDef, base: str, sb: Sandbox, cancel: checks.Cancel | None = None
) -> dict[str, str] | None:
    """Main's per-test outcomes for check `c`: observed when main was a candidate, else run once now
    (and remembered)."""
    seen = main_observed(fac, suite, c, base)
    if seen is not None:
        return seen
    tree = repo.tree_of(fac.root, base)
    label = f"{os.getpid()}-{time.monotonic_ns()}"
    tmp = fac.fac_dir / "tmp"
    with worktrees.detached(fac.root, tmp / f"main-{base[:10]}-{label}", base) as wt:
        report = tmp / f"junit-main-{base[:10]}-{label}" / f"{checks.safe_name(c.name)}.xml"
        log_dir = fac.fac_dir / "logs" / "checks" / f"main-{base[:12]}-{label}"
        r = checks.run_one(c, wt, "gate", log_dir, sb, report=report, cancel=cancel)
        got = junit.read_report(report)
        shutil.rmtree(report.parent, ignore_errors=True)
    if got is None:
        return None
    with fac.store.tx() as db:
        fac.store.record_observation(tree, suite.hash, c.name, r.ok, r.feedback, got.outcomes, db)
    return got.outcomes


def count_guard(
    fac: Factory, check: CheckDef, collected: list[str] | None, main: dict[str, str] | None
) -> CheckResult:
    """no-weakening: the candidate collects at least as many tests as main runs for a pytest check."""
    name = f"guard:test-count:{check.name}"
    have = len(collected) if collected is not None else None
    want = len(main) if main is not None else None
    if have is None or want is None or have >= want:
        return CheckResult(name, True, 0, 0.0, "", f"collected {have} (main: {want})")
    return CheckResult(
        name,
        False,
        1,
        0.0,
        f"{check.name}: the candidate collects {have} tests, {fac.main} collects {want}: "
        f"{want - have} test(s) disappeared (deleted, renamed away, deselected or skipped at collection).\n"
        "fix: keep every test; fix the code instead",
        f"collected {have} (main: {want})",
        retryable=False,
    )
