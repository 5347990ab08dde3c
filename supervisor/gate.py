"""The gate, one path for all its callers: the cached verdict for (tree, suite hash), or a run of main's
gate checks on the commit in a throw-away detached worktree; either way recorded as a run.

The merge queue judges candidates with it, `fac line`'s verify judges main, and
`fac check --ref ... --stage gate` reproduces a red candidate with it.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from supervisor import checks, env, guards, junit, observations, repo, worktrees
from supervisor.checks import CheckResult, Suite, Verdict
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.sandbox import Sandbox

# "use": answer from the cache when it knows the tree, else run and remember the verdict.
# "refresh": always run, and remember the new verdict (a retry that rules out a flaky check).
# "off": always run, remember nothing (the serial queue of the benchmarks, without a cache).
CachePolicy = Literal["use", "refresh", "off"]


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
) -> Verdict:
    """The gate's verdict on commit `sha` under `suite` (main's); `verdict.cached` tells a cache hit.

    `base` (main) turns on the test-count guard against it; `label` names the run's worktree and log
    directory and is asked only when the gate really runs; `tree` saves a git call when known;
    `record_hit=False` answers from the cache without recording a run (`fac check --ref --cache`).
    """
    tree = tree or repo.tree_of(fac.root, sha)
    if cache == "use":
        hit = fac.store.cached_result(tree, suite.hash)
        if hit is not None:
            ok, results = hit
            if record_hit:
                fac.store.record_run(sha, tree, "gate", None, ok, results, cached=True)
            return Verdict(ok, [CheckResult.from_dict(r) for r in results], True, sha, tree)
    par = fac.config.queue.parallel if parallel is None else parallel
    verdict = run_gate(fac, sha, suite, par, base=base, label=label() if label else None)
    remember = suite.hash if cache != "off" else None
    fac.store.record_run(
        sha, tree, "gate", remember, verdict.ok, [r.as_dict() for r in verdict.results], cached=False
    )
    return verdict


def run_gate(
    fac: Factory, sha: str, suite: Suite, parallel: int, *, base: str | None = None, label: str | None = None
) -> Verdict:
    """Run the gate stage of `suite` on commit `sha` in a throw-away detached worktree (no cache)."""
    root = fac.root
    label = label or f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    # The system's environment: built before the first run of its hash, then only read (EnvBuildFailed
    # when it does not build: the caller stops the line, nobody is blamed).
    sb = env.sandbox_for(fac, env.ensure(fac))
    with worktrees.detached(root, fac.fac_dir / "tmp" / f"cand-{sha[:10]}-{label}", sha) as wt:
        log_dir = fac.fac_dir / "logs" / "checks" / f"{sha[:12]}-{label}"
        # Pytest checks also report per test (junit): `fac state` and delta acceptance read that.
        gate, reports = junit.instrument(suite.for_stage("gate"), wt)
        extra: list[Callable[[], CheckResult]] = [
            functools.partial(count_guard, fac, c, wt, base, sb) for c in gate if base and _is_pytest(c)
        ]
        results = checks.run_suite(
            gate, wt, "gate", parallel=parallel, log_dir=log_dir, extra=extra, sandbox=sb
        )
        observations.record(fac, repo.tree_of(root, sha), suite.hash, results, reports, only_reports=True)
    return Verdict(checks.suite_ok(results), results, False, sha, repo.tree_of(root, sha))


def _is_pytest(c: Any) -> bool:
    try:
        return guards.collect_argv(checks.argv_of(c)) is not None
    except FacError:
        return False


def count_guard(fac: Factory, check: Any, workdir: Path, base: str, sb: Sandbox | None = None) -> CheckResult:
    """no-weakening: the candidate collects at least as many tests as `base` (main) for a pytest check."""
    name = f"guard:test-count:{check.name}"
    start = time.monotonic()
    argv = guards.collect_argv(checks.argv_of(check)) or []
    cenv = checks.check_env(workdir, "gate", check, sb)
    # Main's count, when not remembered, needs its own worktree and collection: do it alongside the
    # candidate's collection rather than after it (it was the gate's critical path on a fresh queue).
    # Only that thread touches the store until it is joined.
    with ThreadPoolExecutor(max_workers=1) as pool:
        wanted = pool.submit(main_count, fac, check, base, sb)
        have = guards.collected_count(argv, workdir / check.cwd, cenv, check.timeout)
        want = wanted.result()
    dur = round(time.monotonic() - start, 3)
    if have is not None:
        fac.store.remember_count(_tree_at(workdir), check.name, have)
    if have is None or want is None or have >= want:
        return CheckResult(name, True, 0, dur, "", f"collected {have} (main: {want})")
    return CheckResult(
        name,
        False,
        1,
        dur,
        f"{check.name}: the candidate collects {have} tests, {fac.main} collects {want}: "
        f"{want - have} test(s) disappeared (deleted, renamed away, deselected or skipped at collection).\n"
        "fix: keep every test; fix the code instead",
        f"collected {have} (main: {want})",
    )


def _tree_at(workdir: Path) -> str:
    return repo.git(workdir, "rev-parse", "HEAD^{tree}")


def main_count(fac: Factory, check: Any, base: str, sb: Sandbox | None = None) -> int | None:
    """Collected tests on `base`: remembered from when it was a candidate, else collected once now."""
    tree = repo.tree_of(fac.root, base)
    known = fac.store.test_count(tree, check.name)
    if known is not None:
        return known
    wt_path = fac.fac_dir / "tmp" / f"count-{base[:10]}-{os.getpid()}-{time.monotonic_ns()}"
    with worktrees.detached(fac.root, wt_path, base) as wt:
        argv = guards.collect_argv(checks.argv_of(check)) or []
        n = guards.collected_count(
            argv, wt / check.cwd, checks.check_env(wt, "gate", check, sb), check.timeout
        )
    if n is not None:
        fac.store.remember_count(tree, check.name, n)
    return n
