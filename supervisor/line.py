"""Jidoka: the line stops when main itself is red, and restarts when main is green again.

While the line is stopped the merge queue merges only fixes (entries from workers of the `fixer`
role), so nobody is blamed for a failure that main already had; every worker gets a notice, and
`fac status` shows STOPPED and why.

A system's environment that does not build (`supervisor.env`) stops the line the same way, with its
build log, but it is nobody's red verdict: agents cannot change `project-container/`, so it waits
for a human, and a successful build restarts the line.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from supervisor import checks, env, gate, mainline, repo
from supervisor.checks import Verdict
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.model import Line

FIX_ROLES = ("fixer",)


def get(fac: Factory) -> Line:
    return fac.store.line()


def stop(fac: Factory, reason: str, main_sha: str | None) -> bool:
    """Stop the line; False when it was already stopped (the first reason stays)."""
    with fac.store.tx() as db:
        if fac.store.set_line("stopped", db=db, reason=reason, main_sha=main_sha) is None:
            return False
        fac.store.event("line-stopped", None, db=db, reason=reason, main=main_sha)
    return True


def resume(fac: Factory, by: str, main_sha: str | None = None) -> bool:
    """Restart the line at main's sha (`main_sha`: the one a green verify tested, else main now).

    False when it was running."""
    sha = main_sha or repo.rev_parse(fac.root, f"refs/heads/{fac.main}")
    with fac.store.tx() as db:
        old = fac.store.set_line("running", db=db, main_sha=sha)
        if old is None:
            return False
        stopped_for = time.time() - old.since
        fac.store.event("line-resumed", None, db=db, by=by, stopped_seconds=round(stopped_for, 3))
    return True


def stopped_for_env(state: Line) -> bool:
    """Whether the line stands because the system's environment did not build (a human's job)."""
    return state.stopped and (state.reason or "").startswith(env.LINE_REASON)


def env_failed(fac: Factory, err: env.EnvBuildFailed) -> bool:
    """Stop the line for an environment that does not build; False when it was already stopped."""
    stopped = stop(fac, f"{err.message} (log: {err.log})", repo.rev_parse(fac.root, f"refs/heads/{fac.main}"))
    if stopped:
        fac.store.event("env-failed", None, hash=err.hash, log=str(err.log), detail=err.detail)
    return stopped


def ensure_env(
    fac: Factory, *, say: Callable[[str], None] | None = None, retry: bool = False
) -> env.Env | None:
    """Main's environment, built if main asks for a new one (`retry`: even after a failure); None (and
    the line stopped) when it does not build. A line that stood for the environment restarts once
    it builds."""
    try:
        e = env.ensure(fac, say=say, retry=retry)
    except env.EnvBuildFailed as err:
        env_failed(fac, err)
        return None
    if stopped_for_env(get(fac)):
        resume(fac, by=f"environment {e.hash} built")
    return e


def verify(fac: Factory, *, use_cache: bool = True, progress: checks.Progress | None = None) -> Verdict:
    """Run the gate on main itself; red stops the line, green restarts it (`progress`: each check's
    start and end as it happens)."""
    sha = repo.rev_parse(fac.root, f"refs/heads/{fac.main}")
    if sha is None:
        raise FacError(
            f"branch {fac.main} does not exist: there is no main to verify",
            hint=f"recreate it (git branch {fac.main} SHA) or set [factory] main in factory.toml",
        )
    suite = checks.suite_from_rev(fac.root, sha, fac.fac_dir / "suites")
    try:
        verdict = gate.judge(fac, sha, suite, cache="use" if use_cache else "refresh", progress=progress)
    except env.EnvBuildFailed as err:
        env_failed(fac, err)
        raise
    fac.store.event("verified", None, main=sha, ok=verdict.ok, failed=[r.name for r in verdict.failed()])
    if verdict.ok:
        if fac.store.last_main() != sha:  # a main moved outside fac, judged green here: adopted
            fac.store.record_main(sha, fac.store.last_main(), "verify, green")
            mainline.publish(fac, sha)
        resume(fac, by="green verify", main_sha=sha)
    else:
        stop(fac, f"{fac.main} {sha[:10]} is red: {red_detail(verdict)}", sha)
    return verdict


def red_detail(verdict: Verdict) -> str:
    """Each failed check with the first line of its feedback."""
    return "; ".join(
        f"{r.name}: {r.feedback.splitlines()[0] if r.feedback else 'failed'}" for r in verdict.failed()
    )


def judge_outside_move(fac: Factory, *, say: Callable[[str], None]) -> mainline.OutsideMove | None:
    """Before a round: if main moved other than through fac, record who and what, and run the gate on
    the new main before anything builds on it. Green adopts it; red stops the line with the move and
    the failures as its reason. None when main did not move (or its environment does not build yet:
    judged next round)."""
    move = mainline.moved_outside(fac)
    if move is None:
        return None
    what = move.describe(fac.main)
    fac.store.event("main-moved-outside", None, **move.as_dict())
    say(f"{what}: running the gate on it before building on it")
    suite = checks.suite_from_rev(fac.root, move.new, fac.fac_dir / "suites")
    try:
        verdict = gate.judge(fac, move.new, suite, cache="use")
    except env.EnvBuildFailed as err:
        env_failed(fac, err)
        return None
    fac.store.record_main(move.new, move.old, f"outside fac, judged {'green' if verdict.ok else 'red'}")
    if verdict.ok:
        fac.store.event("main-adopted", None, sha=move.new, old=move.old)
        mainline.publish(fac, move.new)
        say(f"  {fac.main} {move.new[:10]} is green: adopted")
    else:
        reason = f"{what}, and it is red: {red_detail(verdict)}"
        stop(fac, reason, move.new)
        say(f"  line STOPPED: {reason}")
    return move
